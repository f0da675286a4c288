// Checkpoints and sleeping: the places where cancellation is delivered to code that runs in a
// cancelled scope.
//
// Every function here returns a `Waiting::checkpoint`: it first asks the runtime whether the
// current task is inside an effectively cancelled scope (an O(1) read of the cached state in
// the scope tree); if so it passes through the loop once and raises `CancelledError` (see
// awaitable.rs); otherwise it suspends: once for `checkpoint()`, until a loop timer for
// `sleep()`. Raising directly (rather than through `Task.cancel()`) costs nothing to undo: no
// `uncancel()` is owed for it.
//
// Argument checks follow AnyIO 4.16: a negative (or NaN) delay is a `ValueError`.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;

use crate::asyncio;
use crate::awaitable::{Drive, Input, Step, Waiting};
use crate::task::handle::FutureSetter;
use pyo3::pyclass::{PyTraverseError, PyVisit};

/// How long a suspension lasts.
enum Until {
    /// One loop iteration (a bare yield).
    NextIteration,
    /// A loop-clock time.
    Time(f64),
    /// Until cancelled.
    Forever,
}

/// Cancel safety: a thrown-in exception cancels the timer and propagates; nothing is left.
struct Sleep {
    until: Until,
    /// The loop timer of a timed sleep, once armed.
    timer: Option<Py<PyAny>>,
    started: bool,
}

impl Sleep {
    fn new(until: Until) -> Self {
        Sleep {
            until,
            timer: None,
            started: false,
        }
    }

    fn disarm(&mut self, py: Python<'_>) {
        if let Some(t) = self.timer.take() {
            let _ = t.bind(py).call_method0(intern!(py, "cancel"));
        }
    }
}

impl Drive for Sleep {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(e) = input {
            self.disarm(py);
            return Err(e);
        }
        if self.started {
            self.timer = None;
            return Ok(Step::Return(py.None()));
        }
        self.started = true;
        let when = match self.until {
            Until::NextIteration => return Ok(Step::Yield(py.None())),
            Until::Time(t) => Some(t),
            Until::Forever => None,
        };
        let loop_ = asyncio::running_loop(py, "sleep()")?;
        let fut = asyncio::create_future(&loop_)?;
        if let Some(when) = when {
            let setter = Bound::new(py, FutureSetter::new(fut.clone().unbind()))?;
            let handle = loop_.call_method1(intern!(py, "call_at"), (when, setter))?;
            self.timer = Some(handle.unbind());
        }
        asyncio::mark_blocking(&fut)?;
        Ok(Step::Yield(fut.unbind()))
    }

    fn close(&mut self, py: Python<'_>) {
        self.disarm(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.timer)
    }
}

/// A checkpoint: raise `CancelledError` if the current scope is cancelled (after passing
/// through the event loop once), else yield to the event loop once.
#[pyfunction]
pub fn checkpoint(py: Python<'_>) -> PyResult<Bound<'_, Waiting>> {
    Waiting::checkpoint(py, "checkpoint()", Sleep::new(Until::NextIteration))
}

/// Sleep for `delay` seconds (a checkpoint; `0` yields once).
///
/// Raises:
///     ValueError: `delay` is negative or NaN.
#[pyfunction]
pub fn sleep(py: Python<'_>, delay: f64) -> PyResult<Bound<'_, Waiting>> {
    if delay.is_nan() || delay < 0.0 {
        return Err(PyValueError::new_err(format!(
            "delay must be a non-negative number, got {delay}"
        )));
    }
    if delay == 0.0 {
        return Waiting::checkpoint(py, "sleep()", Sleep::new(Until::NextIteration));
    }
    if delay.is_infinite() {
        return Waiting::checkpoint(py, "sleep()", Sleep::new(Until::Forever));
    }
    let now: f64 = asyncio::running_loop(py, "sleep()")?
        .call_method0(intern!(py, "time"))?
        .extract()?;
    Waiting::checkpoint(py, "sleep()", Sleep::new(Until::Time(now + delay)))
}

/// Sleep until `deadline` on the loop clock (`current_time()`); a deadline in the past
/// yields once.
///
/// Raises:
///     ValueError: `deadline` is NaN.
#[pyfunction]
pub fn sleep_until(py: Python<'_>, deadline: f64) -> PyResult<Bound<'_, Waiting>> {
    if deadline.is_nan() {
        return Err(PyValueError::new_err("deadline must not be NaN"));
    }
    let until = if deadline == f64::INFINITY {
        Until::Forever
    } else {
        Until::Time(deadline)
    };
    Waiting::checkpoint(py, "sleep_until()", Sleep::new(until))
}

/// Sleep until cancelled.
#[pyfunction]
pub fn sleep_forever(py: Python<'_>) -> PyResult<Bound<'_, Waiting>> {
    Waiting::checkpoint(py, "sleep_forever()", Sleep::new(Until::Forever))
}
