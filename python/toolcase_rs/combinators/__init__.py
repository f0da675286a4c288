"""Waiting on many: gather, race, first_success, map_async, as_completed, retry (spec section 3).

The combinators that run several awaitables at once and hand back their outcomes, and `retry`.
Everything is plain Python over the native `TaskGroup` / `CancelScope`; nothing keeps state
between calls. This module only re-exports; each concern has its own private module, which
opens with its design note:

- `_gather`: `gather`, `gather_settled`, `Settled`, `SettledStatus`.
- `_race`: `race` and `first_success`, one shared "first finisher of a kind wins" runner.
- `_map`: `map_async` (alias `bounded_map`).
- `_completion`: `CompletionStream`, `as_completed`.
- `_retry`: `retry`.
- `_arguments`: argument checks, and closing coroutines that will never run.
- `_errors`: which error a combinator raises, and how.

The modules carry a leading underscore so that none is named like the function it defines:
`combinators.race` is the function, and `import toolcase_rs.combinators.race as m` would bind
the function, not a module.

Contract shared by every combinator (docs/many-api.md):
- Structured: when a combinator returns or raises, every task it started has finished (the one
  documented exception is an abandoned `CompletionStream`, see `_completion`).
- Children run in a native `TaskGroup`, so the caller's cancel scopes and deadlines reach them,
  and a caller that is cancelled cancels them, waits for them, then sees its own cancellation.
- The first error (in completion order) is raised itself, not wrapped in a group; cancellation
  is never an error and never retried (see `_errors`).
- No coroutine passed in is left un-awaited, and every child's outcome is retrieved.

The public objects are re-exported by `toolcase_rs`, which sets their `__module__` to
`"toolcase_rs"`.
"""

from ._completion import (
    CompletionStream as CompletionStream,
    as_completed as as_completed,
)
from ._gather import (
    Settled as Settled,
    SettledStatus as SettledStatus,
    gather as gather,
    gather_settled as gather_settled,
)
from ._map import (
    bounded_map as bounded_map,
    map_async as map_async,
)
from ._race import (
    first_success as first_success,
    race as race,
)
from ._retry import retry as retry

__all__ = [
    "CompletionStream",
    "Settled",
    "SettledStatus",
    "as_completed",
    "bounded_map",
    "first_success",
    "gather",
    "gather_settled",
    "map_async",
    "race",
    "retry",
]
