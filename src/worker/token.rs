// Cancel tokens: a cancellation that blocking code in any thread can see.
//
// A `TokenState` is a one-shot flag (once set it stays set) with a condition variable, so a
// thread can sleep on it with the GIL released and wake the moment it is set, and a list of
// callbacks run once when it is set. It is set by whoever cancels: the loop thread when a scope
// around the job (or the task that made the token) becomes cancelled, or any thread that calls
// `CancelToken.cancel()`.
//
// Callbacks run in the thread that sets the token, outside the token's lock (a callback may use
// the token); one that raises is reported through `sys.unraisablehook` and the others still
// run. A callback registered after the token was set runs at once, in the caller.
//
// `deadline` is a snapshot, in the loop clock, of the effective deadline when the token was
// made (`inf` if none); passing it cancels the scope that owns it, and that sets the token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};

use crate::asyncio;

struct Flag {
    cancelled: bool,
    next_id: u64,
    callbacks: Vec<(u64, Py<PyAny>)>,
}

/// The shared state behind a `CancelToken`.
pub struct TokenState {
    flag: Mutex<Flag>,
    cv: Condvar,
    /// The effective deadline (loop clock) when the token was made.
    deadline: f64,
    /// The loop whose clock `deadline` is in (a weak reference), for `remaining()`.
    clock: Option<Py<PyAny>>,
}

impl TokenState {
    pub fn new(deadline: f64, clock: Option<Py<PyAny>>) -> Arc<Self> {
        Arc::new(TokenState {
            flag: Mutex::new(Flag {
                cancelled: false,
                next_id: 0,
                callbacks: Vec::new(),
            }),
            cv: Condvar::new(),
            deadline,
            clock,
        })
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.lock().cancelled
    }

    /// Sets the token; runs its callbacks (once) in this thread. False if it was set already.
    pub fn set(&self, py: Python<'_>) -> bool {
        let callbacks = {
            let mut f = self.flag.lock();
            if f.cancelled {
                return false;
            }
            f.cancelled = true;
            std::mem::take(&mut f.callbacks)
        };
        self.cv.notify_all();
        for (_, cb) in callbacks {
            if let Err(e) = cb.bind(py).call0() {
                e.write_unraisable(py, Some(cb.bind(py)));
            }
        }
        true
    }

    /// Blocks (the GIL released) until set or `timeout` passes; true if set.
    fn wait(&self, py: Python<'_>, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        py.detach(|| {
            let mut f = self.flag.lock();
            while !f.cancelled {
                match deadline {
                    Some(d) => {
                        if self.cv.wait_until(&mut f, d).timed_out() {
                            break;
                        }
                    }
                    None => self.cv.wait(&mut f),
                }
            }
            f.cancelled
        })
    }
}

/// A cancellation that blocking code can see from any thread.
///
/// Inside a worker job (`to_thread.run_sync`, `run_in_thread`, a `ThreadPool` job),
/// `current_cancel_token()` is that job's token: it is set when the task awaiting the job is
/// cancelled (a scope around it cancelled or past its deadline, or a native cancel), never
/// through a shielded scope. `CancelToken()` makes a free-standing token for your own use.
#[pyclass(module = "toolcase_rs", name = "CancelToken", frozen)]
pub struct CancelToken {
    pub state: Arc<TokenState>,
}

impl CancelToken {
    pub fn wrap(state: Arc<TokenState>) -> Self {
        CancelToken { state }
    }
}

fn timeout_arg(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    let Some(t) = timeout.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    let secs: Option<f64> = if t.is_instance_of::<pyo3::types::PyBool>() {
        None
    } else {
        t.extract().ok()
    };
    let Some(secs) = secs else {
        return Err(PyTypeError::new_err(format!(
            "CancelToken.wait(timeout): timeout must be a number of seconds or None, not {}",
            t.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    };
    Ok(crate::sync::check_timeout(Some(secs))?.map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))))
}

#[pymethods]
impl CancelToken {
    #[new]
    fn py_new() -> Self {
        CancelToken::wrap(TokenState::new(f64::INFINITY, None))
    }

    /// True once the token is set.
    #[getter]
    fn cancelled(&self) -> bool {
        self.state.is_cancelled()
    }

    /// Sets the token (from any thread): wakes every `wait()` and runs the callbacks once.
    /// Returns False if it was already set.
    fn cancel(&self, py: Python<'_>) -> bool {
        self.state.set(py)
    }

    /// Raises the cancelled-exception class (`asyncio.CancelledError`) if the token is set.
    pub fn check(&self, py: Python<'_>) -> PyResult<()> {
        if self.state.is_cancelled() {
            return Err(PyErr::from_type(
                asyncio::cancelled_error_type(py).clone(),
                "the cancel token was set: the scope that started this work was cancelled",
            ));
        }
        Ok(())
    }

    /// Sleeps until the token is set or `timeout` seconds pass, with the GIL released.
    /// Returns True if the token is set.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let timeout = timeout_arg(timeout)?;
        Ok(self.state.wait(py, timeout))
    }

    /// Calls `callback()` once when the token is set (at once, here, if it already is).
    /// Returns a registration whose `unregister()` removes it.
    pub fn on_cancel(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
    ) -> PyResult<Py<TokenRegistration>> {
        let py = slf.py();
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "CancelToken.on_cancel(callback): callback must be callable, got {}",
                callback.get_type().name()?
            )));
        }
        let state = slf.get().state.clone();
        let id = {
            let mut f = state.flag.lock();
            if f.cancelled {
                None
            } else {
                let id = f.next_id;
                f.next_id += 1;
                f.callbacks.push((id, callback.clone().unbind()));
                Some(id)
            }
        };
        if id.is_none() {
            callback.call0()?;
        }
        Py::new(py, TokenRegistration { state, id })
    }

    /// The effective deadline (loop clock) of the scopes around the work when the token was
    /// made; `inf` if none.
    #[getter]
    fn deadline(&self) -> f64 {
        self.state.deadline
    }

    /// Seconds until `deadline` (negative once passed; `inf` if none).
    fn remaining(&self, py: Python<'_>) -> PyResult<f64> {
        let d = self.state.deadline;
        if d.is_infinite() {
            return Ok(d);
        }
        let now: f64 = match self
            .state
            .clock
            .as_ref()
            .and_then(|w| crate::loop_runtime::upgrade(w.bind(py)))
        {
            Some(loop_) => loop_.call_method0("time")?.extract()?,
            None => py.import("time")?.call_method0("monotonic")?.extract()?,
        };
        Ok(d - now)
    }

    fn __repr__(&self) -> String {
        let state = if self.state.is_cancelled() {
            "cancelled"
        } else {
            "not cancelled"
        };
        if self.state.deadline.is_finite() {
            format!("<CancelToken {state}, deadline {:.3}>", self.state.deadline)
        } else {
            format!("<CancelToken {state}>")
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Callbacks are released once the token is set or they are unregistered; a cycle
        // through a callback that holds its own token is broken by either.
        if let Some(f) = self.state.flag.try_lock() {
            for (_, cb) in &f.callbacks {
                visit.call(cb)?;
            }
        }
        Ok(())
    }
}

/// What `CancelToken.on_cancel()` returns: `unregister()` removes the callback.
#[pyclass(module = "toolcase_rs", name = "TokenRegistration", frozen)]
pub struct TokenRegistration {
    state: Arc<TokenState>,
    id: Option<u64>,
}

#[pymethods]
impl TokenRegistration {
    /// Removes the callback; True if it was still registered (it had not run).
    fn unregister(&self) -> bool {
        let Some(id) = self.id else {
            return false;
        };
        let removed = {
            let mut f = self.state.flag.lock();
            f.callbacks
                .iter()
                .position(|(i, _)| *i == id)
                .map(|pos| f.callbacks.remove(pos))
        };
        // The callback is dropped here, outside the lock (its finaliser may use the token).
        removed.is_some()
    }

    fn __call__(&self) -> bool {
        self.unregister()
    }
}
