"""Structured concurrency for asyncio on a Rust core.

Task groups, cancel scopes and deadlines, synchronisation primitives that work across event
loops and threads, with AnyIO's semantics, running as plain asyncio tasks on any asyncio event
loop (uvloop included).
"""

import types as _pytypes

from . import (
    from_thread as from_thread,
    lowlevel as lowlevel,
    streams as streams,
    to_process as to_process,
    to_thread as to_thread,
)
from ._core import (
    create_task_group as create_task_group,
    current_task as current_task,
    effective_deadline as effective_deadline,
    get_cancelled_exc_class as get_cancelled_exc_class,
    is_cancelled as is_cancelled,
    run as run,
    shield as shield,
)
from ._interop import (
    AsyncAdapter as AsyncAdapter,
    SyncAdapter as SyncAdapter,
    ThreadContext as ThreadContext,
    async_to_sync as async_to_sync,
    processpool as processpool,
    sync_to_async as sync_to_async,
    threadpool as threadpool,
)
from ._processes import (
    ProcessPool as ProcessPool,
    run_in_process as run_in_process,
)
from ._sync import (
    Barrier as Barrier,
    Condition as Condition,
)
from ._threads import (
    ThreadPool as ThreadPool,
    ThreadPoolStatistics as ThreadPoolStatistics,
    run_in_thread as run_in_thread,
    run_sync as run_sync,
    worker_thread_statistics as worker_thread_statistics,
)
from ._toolcase_rs import (
    TASK_STATUS_IGNORED as TASK_STATUS_IGNORED,
    CancelScope as CancelScope,
    CancelToken as CancelToken,
    CapacityLimiter as CapacityLimiter,
    ClosedResourceError as ClosedResourceError,
    EndOfStream as EndOfStream,
    Event as Event,
    Lock as Lock,
    LoopToken as LoopToken,
    Queue as Queue,
    QueueEmpty as QueueEmpty,
    QueueFull as QueueFull,
    RateLimiter as RateLimiter,
    RLock as RLock,
    Semaphore as Semaphore,
    TaskCancelled as TaskCancelled,
    TaskGroup as TaskGroup,
    TaskHandle as TaskHandle,
    TaskStatus as TaskStatus,
    TokenRegistration as TokenRegistration,
    WouldBlock as WouldBlock,
    checkpoint as checkpoint,
    current_cancel_token as current_cancel_token,
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
from ._types import (
    BarrierStatistics as BarrierStatistics,
    CapacityLimiterStatistics as CapacityLimiterStatistics,
    ConditionStatistics as ConditionStatistics,
    EventStatistics as EventStatistics,
    LockStatistics as LockStatistics,
    QueueStatistics as QueueStatistics,
    RateLimiterStatistics as RateLimiterStatistics,
    RLockStatistics as RLockStatistics,
    SemaphoreStatistics as SemaphoreStatistics,
    TaskState as TaskState,
)
from .combinators import (
    CompletionStream as CompletionStream,
    Settled as Settled,
    SettledStatus as SettledStatus,
    as_completed as as_completed,
    bounded_map as bounded_map,
    first_success as first_success,
    gather as gather,
    gather_settled as gather_settled,
    map_async as map_async,
    race as race,
    retry as retry,
)
from .streams import (
    BackpressureController as BackpressureController,
    StreamMerger as StreamMerger,
    backpressure_stream as backpressure_stream,
    batch_stream as batch_stream,
    buffer_stream as buffer_stream,
    chain_streams as chain_streams,
    enumerate_stream as enumerate_stream,
    filter_stream as filter_stream,
    flatten_stream as flatten_stream,
    interleave_streams as interleave_streams,
    map_stream as map_stream,
    merge_streams as merge_streams,
    skip_stream as skip_stream,
    take_stream as take_stream,
    throttle_stream as throttle_stream,
    timeout_stream as timeout_stream,
    zip_streams as zip_streams,
)

__version__ = "0.1.0"


__all__ = [
    "AsyncAdapter",
    "BackpressureController",
    "Barrier",
    "BarrierStatistics",
    "CancelScope",
    "CancelToken",
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "ClosedResourceError",
    "CompletionStream",
    "Condition",
    "ConditionStatistics",
    "EndOfStream",
    "Event",
    "EventStatistics",
    "Lock",
    "LockStatistics",
    "LoopToken",
    "ProcessPool",
    "Queue",
    "QueueEmpty",
    "QueueFull",
    "QueueStatistics",
    "RLock",
    "RLockStatistics",
    "RateLimiter",
    "RateLimiterStatistics",
    "Semaphore",
    "SemaphoreStatistics",
    "Settled",
    "SettledStatus",
    "StreamMerger",
    "SyncAdapter",
    "TASK_STATUS_IGNORED",
    "TaskCancelled",
    "TaskGroup",
    "TaskHandle",
    "TaskState",
    "TaskStatus",
    "ThreadContext",
    "ThreadPool",
    "ThreadPoolStatistics",
    "TokenRegistration",
    "WouldBlock",
    "as_completed",
    "async_to_sync",
    "backpressure_stream",
    "batch_stream",
    "bounded_map",
    "buffer_stream",
    "chain_streams",
    "checkpoint",
    "create_task_group",
    "current_cancel_token",
    "current_effective_deadline",
    "current_task",
    "current_time",
    "effective_deadline",
    "enumerate_stream",
    "fail_after",
    "fail_at",
    "filter_stream",
    "first_success",
    "flatten_stream",
    "gather",
    "gather_settled",
    "get_cancelled_exc_class",
    "interleave_streams",
    "is_cancelled",
    "map_async",
    "map_stream",
    "merge_streams",
    "move_on_after",
    "move_on_at",
    "processpool",
    "race",
    "retry",
    "run",
    "run_in_process",
    "run_in_thread",
    "run_sync",
    "shield",
    "skip_stream",
    "sleep",
    "sleep_forever",
    "sleep_until",
    "sync_to_async",
    "take_stream",
    "threadpool",
    "throttle_stream",
    "timeout_stream",
    "worker_thread_statistics",
    "zip_streams",
]

# Functions and classes defined in the private modules report this module as theirs (the
# native functions would say `toolcase_rs._toolcase_rs`); the native classes and exceptions
# are declared in `toolcase_rs` already. tests/test_public_api.py checks that `__all__` is
# exactly the names imported above.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type | _pytypes.FunctionType | _pytypes.BuiltinFunctionType) and (
        _value.__module__.startswith(__name__ + ".")
    ):
        _value.__module__ = __name__
del _name, _value
