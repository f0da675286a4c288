"""Plain-Python types shared by the native core and the public modules."""

from __future__ import annotations

import enum

__all__ = ["TaskState"]


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
