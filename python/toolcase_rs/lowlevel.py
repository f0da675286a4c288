"""Low-level pieces (AnyIO's `lowlevel`): loop tokens and the checkpoint variants."""

from __future__ import annotations

from ._toolcase_rs import (
    CancelScope,
    LoopToken,
    checkpoint,
    current_effective_deadline,
    current_token,
    sleep,
)

__all__ = [
    "LoopToken",
    "cancel_shielded_checkpoint",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current_token",
]


async def checkpoint_if_cancelled() -> None:
    """Raise the cancellation if the current task's scopes are cancelled; else return at once
    (without yielding to the loop)."""
    if current_effective_deadline() == float("-inf"):
        await checkpoint()


async def cancel_shielded_checkpoint() -> None:
    """Yield to the loop once without raising for cancellation (shielded)."""
    with CancelScope(shield=True):
        await sleep(0)
