"""Structured concurrency for asyncio on a Rust core.

Task groups, cancel scopes and deadlines with AnyIO's semantics, running as plain asyncio
tasks on any asyncio event loop (uvloop included).
"""

from ._core import (
    create_task_group as create_task_group,
)
from ._core import (
    current_task as current_task,
)
from ._core import (
    effective_deadline as effective_deadline,
)
from ._core import (
    get_cancelled_exc_class as get_cancelled_exc_class,
)
from ._core import (
    is_cancelled as is_cancelled,
)
from ._core import (
    run as run,
)
from ._core import (
    shield as shield,
)
from ._toolcase_rs import (
    TASK_STATUS_IGNORED as TASK_STATUS_IGNORED,
)
from ._toolcase_rs import (
    CancelScope as CancelScope,
)
from ._toolcase_rs import (
    TaskCancelled as TaskCancelled,
)
from ._toolcase_rs import (
    TaskGroup as TaskGroup,
)
from ._toolcase_rs import (
    TaskHandle as TaskHandle,
)
from ._toolcase_rs import (
    TaskStatus as TaskStatus,
)
from ._toolcase_rs import (
    checkpoint as checkpoint,
)
from ._toolcase_rs import (
    current_effective_deadline as current_effective_deadline,
)
from ._toolcase_rs import (
    current_time as current_time,
)
from ._toolcase_rs import (
    fail_after as fail_after,
)
from ._toolcase_rs import (
    fail_at as fail_at,
)
from ._toolcase_rs import (
    move_on_after as move_on_after,
)
from ._toolcase_rs import (
    move_on_at as move_on_at,
)
from ._toolcase_rs import (
    sleep as sleep,
)
from ._toolcase_rs import (
    sleep_forever as sleep_forever,
)
from ._toolcase_rs import (
    sleep_until as sleep_until,
)
from ._types import TaskState as TaskState

__version__ = "0.1.0"

# Public names report the public module (the native functions would say `_toolcase_rs`).
for _name in (
    "checkpoint",
    "current_effective_deadline",
    "current_time",
    "fail_after",
    "fail_at",
    "move_on_after",
    "move_on_at",
    "sleep",
    "sleep_forever",
    "sleep_until",
    "create_task_group",
    "current_task",
    "effective_deadline",
    "get_cancelled_exc_class",
    "is_cancelled",
    "run",
    "shield",
):
    globals()[_name].__module__ = __name__
del _name

__all__ = [
    "CancelScope",
    "TASK_STATUS_IGNORED",
    "TaskCancelled",
    "TaskGroup",
    "TaskHandle",
    "TaskState",
    "TaskStatus",
    "checkpoint",
    "create_task_group",
    "current_effective_deadline",
    "current_task",
    "current_time",
    "effective_deadline",
    "fail_after",
    "fail_at",
    "get_cancelled_exc_class",
    "is_cancelled",
    "move_on_after",
    "move_on_at",
    "run",
    "shield",
    "sleep",
    "sleep_forever",
    "sleep_until",
]
