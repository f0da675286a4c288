"""Structured concurrency for asyncio on a Rust core.

Task groups, cancel scopes and deadlines with AnyIO's semantics, running as plain asyncio
tasks on any asyncio event loop (uvloop included).
"""

from ._core import (
    create_task_group as create_task_group,
    current_task as current_task,
    effective_deadline as effective_deadline,
    get_cancelled_exc_class as get_cancelled_exc_class,
    is_cancelled as is_cancelled,
    run as run,
    shield as shield,
)
from ._toolcase_rs import (
    TASK_STATUS_IGNORED as TASK_STATUS_IGNORED,
    CancelScope as CancelScope,
    TaskCancelled as TaskCancelled,
    TaskGroup as TaskGroup,
    TaskHandle as TaskHandle,
    TaskStatus as TaskStatus,
    checkpoint as checkpoint,
    current_effective_deadline as current_effective_deadline,
    current_time as current_time,
    fail_after as fail_after,
    fail_at as fail_at,
    move_on_after as move_on_after,
    move_on_at as move_on_at,
    sleep as sleep,
    sleep_forever as sleep_forever,
    sleep_until as sleep_until,
)
from ._types import TaskState as TaskState

__version__ = "0.1.0"

__all__ = [
    "TASK_STATUS_IGNORED",
    "CancelScope",
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
