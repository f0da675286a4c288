"""Plain-Python types shared by the native core and the public modules."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "BarrierStatistics",
    "CapacityLimiterStatistics",
    "ConditionStatistics",
    "EventStatistics",
    "LockStatistics",
    "QueueStatistics",
    "RLockStatistics",
    "RateLimiterStatistics",
    "SemaphoreStatistics",
    "TaskState",
]


class TaskState(enum.StrEnum):
    """Where a child task is in its life (see `TaskHandle.state`)."""

    PENDING = "pending"
    """Created, not started yet."""
    RUNNING = "running"
    """Started and not finished."""
    COMPLETED = "completed"
    """Returned a value."""
    FAILED = "failed"
    """Raised an exception."""
    CANCELLED = "cancelled"
    """Was cancelled."""


TaskState.__module__ = "toolcase_rs"


# ---- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockStatistics:
    """`Lock.statistics()`."""

    locked: bool
    owner: object | None
    tasks_waiting: int


@dataclass(frozen=True)
class RLockStatistics:
    """`RLock.statistics()`; `count` is how many times the owner holds it."""

    locked: bool
    owner: object | None
    tasks_waiting: int
    count: int


@dataclass(frozen=True)
class SemaphoreStatistics:
    """`Semaphore.statistics()`."""

    tasks_waiting: int


@dataclass(frozen=True)
class CapacityLimiterStatistics:
    """`CapacityLimiter.statistics()`."""

    borrowed_tokens: int
    total_tokens: float
    borrowers: tuple[object, ...]
    tasks_waiting: int


@dataclass(frozen=True)
class EventStatistics:
    """`Event.statistics()`."""

    tasks_waiting: int


@dataclass(frozen=True)
class ConditionStatistics:
    """`Condition.statistics()`."""

    tasks_waiting: int
    lock_statistics: LockStatistics


@dataclass(frozen=True)
class BarrierStatistics:
    """`Barrier.statistics()`."""

    parties: int
    n_waiting: int
    broken: bool


@dataclass(frozen=True)
class RateLimiterStatistics:
    """`RateLimiter.statistics()`."""

    rate: float
    burst: int
    tasks_waiting: int


@dataclass(frozen=True)
class QueueStatistics:
    """`Queue.statistics()`."""

    current_buffer_used: int
    max_buffer_size: float
    tasks_waiting_send: int
    tasks_waiting_receive: int


for _cls in (
    LockStatistics,
    RLockStatistics,
    SemaphoreStatistics,
    CapacityLimiterStatistics,
    EventStatistics,
    ConditionStatistics,
    BarrierStatistics,
    QueueStatistics,
    RateLimiterStatistics,
):
    _cls.__module__ = "toolcase_rs"
del _cls
