// Cancel scopes and deadlines: the Python-facing `CancelScope` and its constructors.
//
// A `CancelScope` object is a handle on a `ScopeRecord` (loop_runtime/scopes.rs): while
// active, its position in the scope tree, its deadline and its cancellation message live in its
// loop's runtime; before entry and after exit the record alone holds its state. Enter and exit
// run synchronously on the loop thread and never touch the loop unless the scope has a finite
// deadline (then one push on the loop's deadline heap, and a timer re-arm only when it became
// the earliest deadline). `cancel()` and the `deadline` / `shield` setters work from any thread.
//
// Lifecycle (`Phase`): IDLE -> ACTIVE -> EXITED; a scope is entered at most once.
//
// Swallowing rule (AnyIO's): on exit, a scope swallows a `CancelledError` only if the scope
// itself was cancelled, no cancellation from outside reaches it (parent not effectively
// cancelled, or this scope shielded), the error carries this library's message, and no native
// `Task.cancel()` is pending (the task's `cancelling()` count, after balancing our own
// deliveries, is above its value at entry: AnyIO #1214).

pub mod deadline;
pub mod tree;

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::asyncio;
use crate::awaitable::Ready;
use crate::loop_runtime::scopes::{self, EnterError, Fail, Phase};
use crate::loop_runtime::tasks::{self, Current};
use crate::loop_runtime::{deadlines, delivery, LoopRuntime, ScopeRecord};
use tree::ExitError;

/// A cancel scope: code inside it can be cancelled, by `cancel()` or by a deadline.
///
/// Use it with `with` or `async with`. Cancelling a scope cancels everything running inside
/// it, task-group children included, at their next checkpoint; the scope then swallows the
/// resulting `CancelledError` at its exit (`cancelled_caught` becomes True). Scopes nest: an
/// inner scope never swallows an outer scope's cancellation, and a shielded scope is not
/// reached by cancellation from outside until it exits.
///
/// Args:
///     deadline: absolute time on the loop clock (`current_time()`) at which to cancel.
///     shield: protect the body from cancellation coming from outside this scope.
///     timeout: seconds from scope entry after which to cancel (instead of `deadline`).
///
/// Raises:
///     ValueError: a NaN deadline or timeout, or both `deadline` and `timeout`.
#[pyclass(module = "toolcase_rs", name = "CancelScope", frozen)]
pub struct CancelScope {
    rec: Arc<ScopeRecord>,
}

fn check_not_nan(value: f64, what: &str) -> PyResult<f64> {
    if value.is_nan() {
        Err(PyValueError::new_err(format!("{what} must not be NaN")))
    } else {
        Ok(value)
    }
}

/// The message for a scope exited by another task than the one that entered it. `what` names
/// the object ("TaskGroup", "CancelScope").
pub fn cross_task_message(what: &str, host_ended: Option<&str>) -> String {
    let entered = match host_ended {
        Some(name) if !name.is_empty() => {
            format!("it was entered in task {name:?}, which has finished since")
        }
        Some(_) => "the task that entered it has finished since".to_owned(),
        None => "it was entered in another task".to_owned(),
    };
    format!(
        "{what} must be exited by the task that entered it, but {entered}. An async-generator \
         fixture (pytest-asyncio) runs its setup and teardown in different tasks: use the \
         {what} inside the test itself, or run it in a task of its own that the fixture starts \
         and stops"
    )
}

impl CancelScope {
    pub fn with_options(
        deadline: f64,
        timeout: Option<f64>,
        shield: bool,
        fail: Option<Fail>,
    ) -> PyResult<Self> {
        check_not_nan(deadline, "deadline")?;
        if let Some(t) = timeout {
            check_not_nan(t, "timeout")?;
        }
        Ok(CancelScope {
            rec: Arc::new(ScopeRecord::new(deadline, timeout, shield, fail)),
        })
    }

    pub fn record(&self) -> &Arc<ScopeRecord> {
        &self.rec
    }

    /// Enters the scope in the current task.
    pub fn enter(&self, py: Python<'_>) -> PyResult<()> {
        let Some(cur) = tasks::current(py, true)? else {
            // Distinguish "no loop" from "loop but no task" for a helpful message.
            asyncio::running_loop(py, "entering a CancelScope")?;
            return Err(PyRuntimeError::new_err(
                "a CancelScope must be entered inside an asyncio task \
                 (not in a loop callback)",
            ));
        };
        self.enter_in(py, &cur)
    }

    /// Enters the scope in task `cur`.
    pub fn enter_in(&self, py: Python<'_>, cur: &Current<'_>) -> PyResult<()> {
        let baseline: isize = match &cur.task {
            Some(t) => t.call_method0(intern!(py, "cancelling"))?.extract()?,
            None => 0,
        };
        let needs_clock = {
            let f = self.rec.fields();
            f.timeout.is_some() || f.deadline.is_finite()
        };
        let now = if needs_clock {
            let loop_ = asyncio::running_loop(py, "entering a CancelScope")?;
            Some(loop_.call_method0(intern!(py, "time"))?.extract::<f64>()?)
        } else {
            None
        };
        match scopes::enter(py, &self.rec, cur, baseline, now)? {
            Ok(()) => Ok(()),
            Err(EnterError::Reused) => Err(PyRuntimeError::new_err(
                "Each CancelScope may only be used for a single 'with' block; \
                 create a new scope for each use",
            )),
        }
    }

    /// Exits the scope; returns whether the exception is swallowed.
    pub fn exit(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let (phase, location, host_ended) = {
            let f = self.rec.fields();
            (
                f.phase,
                f.active
                    .as_ref()
                    .map(|a| (a.rt.clone(), a.key, a.host, a.host_task)),
                f.host_ended.clone(),
            )
        };
        let closing = exc.is_some_and(|e| e.is_instance_of::<pyo3::exceptions::PyGeneratorExit>());
        let Some((rt, key, host, host_task)) = location else {
            if closing {
                // Its coroutine is being closed after the scope was torn down: nothing to do.
                return Ok(false);
            }
            if host_ended.is_some() {
                return Err(PyRuntimeError::new_err(cross_task_message(
                    "CancelScope",
                    host_ended.as_deref(),
                )));
            }
            return Err(PyRuntimeError::new_err(format!(
                "This cancel scope is not active (it is {})",
                phase.name()
            )));
        };
        // The exit must run in the host task, on the host's loop.
        let current = Self::host_running(py, &rt, host, host_task)?;
        let Some(current) = current else {
            if closing {
                // The coroutine is being closed outside its task (garbage collection, possibly
                // in another thread): tear the scope down quietly, on its own loop.
                Self::teardown_elsewhere(py, &self.rec, &rt, key, host);
                return Ok(false);
            }
            return Err(PyRuntimeError::new_err(cross_task_message(
                "CancelScope",
                None,
            )));
        };
        self.exit_in(py, &current, key, exc)
    }

    /// The current task, if it is `host` of runtime `rt` (None otherwise). The common case
    /// (a Task, not an eager child's first step) needs no registry lookup.
    fn host_running<'py>(
        py: Python<'py>,
        rt: &Arc<LoopRuntime>,
        host: tree::TaskKey,
        host_task: usize,
    ) -> PyResult<Option<Current<'py>>> {
        if host_task != 0 && !rt.in_eager_step() {
            // The task running on the scope's loop right now. If it is the host, it is also
            // the code running here: a Task's step runs on its loop's thread, and its
            // coroutine cannot run anywhere else at the same time.
            let Some(loop_) = rt.event_loop(py) else {
                return Ok(None);
            };
            let task = asyncio::current_task_on(py, &loop_)?;
            return Ok(task
                .filter(|t| t.as_ptr() as usize == host_task)
                .map(|t| Current {
                    rt: rt.clone(),
                    key: host,
                    task: Some(t),
                }));
        }
        Ok(tasks::current(py, false)?.filter(|c| Arc::ptr_eq(&c.rt, rt) && c.key == host))
    }

    /// Exits scope `key` in task `cur` (its host).
    pub fn exit_in(
        &self,
        py: Python<'_>,
        cur: &Current<'_>,
        key: tree::ScopeKey,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let rt = &cur.rt;
        let host = cur.key;
        let result = rt.with(|st| {
            let result = st.tree.exit(key, host);
            if result.as_ref().is_ok_and(|e| e.payload.has_deadline) {
                deadlines::forget_entry(st);
            }
            result
        });
        let exited = match result {
            Ok(exited) => exited,
            Err(ExitError::NotInnermost) => {
                Self::teardown(py, rt, host, key);
                return Err(PyRuntimeError::new_err(
                    "Attempted to exit a cancel scope that isn't the current task's innermost \
                     cancel scope: exit scopes in the reverse order of entry (the scopes \
                     entered inside it have been closed)",
                ));
            }
            Err(e) => {
                return Err(PyRuntimeError::new_err(format!(
                    "cancel scope exit failed: {e:?}"
                )))
            }
        };
        let active = {
            let mut f = self.rec.fields();
            f.phase = Phase::Exited;
            f.active.take()
        };
        drop(active);
        let baseline = exited.payload.baseline;
        if exited.parent_eff {
            // Back in a cancelled scope (leaving a shield, or an inner scope swallowed):
            // cancellation resumes at the next checkpoint.
            delivery::defer(py, rt, host)?;
        }
        let swallow = if exited.cancel_called && !exited.parent_cancel_visible {
            self.swallow(py, rt, host, cur.task.as_ref(), baseline, exc)?
        } else {
            false
        };
        drop(exited);
        if swallow {
            self.maybe_timeout(py, exc)?;
        }
        Ok(swallow)
    }

    /// Balances our deliveries and decides whether to swallow `exc` (see module notes).
    fn swallow(
        &self,
        py: Python<'_>,
        rt: &LoopRuntime,
        host: tree::TaskKey,
        task: Option<&Bound<'_, PyAny>>,
        baseline: isize,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let delivered = rt.with(|st| {
            st.tree
                .task_mut(host)
                .map(|n| std::mem::take(&mut n.delivered))
                .unwrap_or(0)
        });
        if let Some(task) = task {
            let cancelling = delivery::uncancel(task, delivered)?;
            if cancelling > baseline {
                return Ok(false);
            }
        }
        let Some(exc) = exc else {
            return Ok(false);
        };
        if exc.is_instance(asyncio::base_exception_group_type(py))? {
            let (caught, rest) = split_own_cancellations(exc)?;
            if caught.is_none() {
                return Ok(false);
            }
            self.rec.fields().cancelled_caught = true;
            let Some(rest) = rest else {
                return Ok(true);
            };
            return Err(PyErr::from_value(rest));
        }
        if asyncio::is_own_cancellation(py, exc) {
            self.rec.fields().cancelled_caught = true;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `fail_after` / `fail_at`: turn a caught cancellation caused by the deadline into
    /// `TimeoutError`, naming the deadline that passed.
    fn maybe_timeout(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let (fail, deadline, by_deadline) = {
            let f = self.rec.fields();
            (f.fail.clone(), f.deadline, f.by_deadline)
        };
        let Some(fail) = fail else { return Ok(()) };
        if !by_deadline {
            return Ok(());
        }
        let message = match fail {
            Fail::After(_, Some(r)) | Fail::At(_, Some(r)) => r,
            Fail::After(delay, None) => format!(
                "fail_after({delay}) timed out: its deadline {deadline:.6} (loop clock) passed"
            ),
            Fail::At(at, None) => {
                format!("fail_at({at}) timed out: its deadline {deadline:.6} (loop clock) passed")
            }
        };
        let err = PyTimeoutError::new_err(message);
        if let Some(exc) = exc {
            err.set_cause(py, Some(PyErr::from_value(exc.clone())));
        }
        Err(err)
    }

    /// Removes this scope (and any scopes entered inside it by the same task) from the tree.
    fn teardown(_py: Python<'_>, rt: &LoopRuntime, host: tree::TaskKey, key: tree::ScopeKey) {
        let removed = rt.with(|st| {
            let mut out = st.tree.unwind_own_scopes(host, Some(key));
            if let Ok(exited) = st.tree.exit(key, host) {
                out.push(exited.payload);
            }
            for entry in &out {
                if entry.has_deadline {
                    deadlines::forget_entry(st);
                }
            }
            out
        });
        for entry in &removed {
            entry.record.mark_closed(None);
        }
        // Dropped after the lock is released.
        drop(removed);
    }

    /// Closes the scope without a normal exit, from a task other than its host on its loop (a
    /// task group exited by another task): it leaves the tree with the scopes inside it.
    pub fn abandon(&self, py: Python<'_>) {
        let location = {
            let f = self.rec.fields();
            f.active.as_ref().map(|a| (a.rt.clone(), a.key, a.host))
        };
        match location {
            Some((rt, key, host)) => Self::teardown(py, &rt, host, key),
            None => self.rec.mark_closed(None),
        }
    }

    /// Cancels, natively, the tasks that lost this scope when its host finished (see
    /// `ScopeFields::orphans`). `rt` is the runtime they live in.
    pub fn cancel_orphans(&self, py: Python<'_>, rt: &LoopRuntime) -> PyResult<()> {
        let orphans = std::mem::take(&mut self.rec.fields().orphans);
        for key in orphans {
            if let Some(task) = tasks::task_object(py, rt, key) {
                task.bind(py).call_method0(intern!(py, "cancel"))?;
            }
        }
        Ok(())
    }

    /// Tears the scope down on its own loop, from whatever thread closes its coroutine.
    fn teardown_elsewhere(
        py: Python<'_>,
        rec: &Arc<ScopeRecord>,
        rt: &Arc<LoopRuntime>,
        key: tree::ScopeKey,
        host: tree::TaskKey,
    ) {
        rec.mark_closed(None);
        let (rt2, rec2) = (rt.clone(), rec.clone());
        let work = move |py: Python<'_>| {
            let ours = rt2.with(|st| {
                st.tree
                    .scope(key)
                    .is_some_and(|n| Arc::ptr_eq(&n.payload.record, &rec2))
            });
            if ours {
                Self::teardown(py, &rt2, host, key);
            }
            Ok(())
        };
        if rt.is_current(py) {
            let _ = work(py);
        } else {
            rt.post(py, crate::loop_runtime::Completion::Run(Box::new(work)));
        }
    }
}

#[pymethods]
impl CancelScope {
    #[new]
    #[pyo3(signature = (*, deadline=f64::INFINITY, shield=false, timeout=None))]
    fn py_new(deadline: f64, shield: bool, timeout: Option<f64>) -> PyResult<Self> {
        if timeout.is_some() && deadline != f64::INFINITY {
            return Err(PyValueError::new_err(
                "pass either deadline= (absolute) or timeout= (relative), not both",
            ));
        }
        Self::with_options(deadline, timeout, shield, None)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().enter(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (_exc_type=None, exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<Bound<'_, PyAny>>,
        exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.exit(py, exc.as_ref().filter(|e| !e.is_none()))
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Ready>> {
        slf.get().enter(slf.py())?;
        let py = slf.py();
        Ready::new(py, slf.into_any().unbind())
    }

    #[pyo3(signature = (_exc_type=None, exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Option<Bound<'py, PyAny>>,
        exc: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Ready>> {
        let swallow = self.exit(py, exc.as_ref().filter(|e| !e.is_none()))?;
        Ready::new(py, swallow.into_py_any(py)?)
    }

    /// Cancel this scope: everything inside it is cancelled at its next checkpoint.
    ///
    /// Calling it again has no effect. Safe to call from any thread.
    ///
    /// Args:
    ///     reason: a note added to the message of the `CancelledError`s this scope delivers.
    #[pyo3(signature = (reason=None))]
    fn cancel(&self, py: Python<'_>, reason: Option<String>) -> PyResult<()> {
        self.rec.cancel(py, reason)
    }

    /// Absolute deadline on the loop clock (`math.inf` for none); settable, also while active
    /// and from any thread.
    #[getter]
    fn deadline(&self) -> f64 {
        self.rec.fields().deadline
    }

    #[setter]
    fn set_deadline(&self, py: Python<'_>, value: f64) -> PyResult<()> {
        self.rec.set_deadline(py, check_not_nan(value, "deadline")?)
    }

    /// True if this scope is shielded from cancellation coming from outside it; settable,
    /// also while active and from any thread.
    #[getter]
    fn shield(&self) -> bool {
        self.rec.fields().shield
    }

    #[setter]
    fn set_shield(&self, py: Python<'_>, value: bool) -> PyResult<()> {
        self.rec.set_shield(py, value)
    }

    /// True once `cancel()` was called or the deadline passed.
    #[getter]
    fn cancel_called(&self) -> bool {
        self.rec.fields().cancel_called
    }

    /// True if the scope swallowed a cancellation at its exit.
    #[getter]
    fn cancelled_caught(&self) -> bool {
        self.rec.fields().cancelled_caught
    }

    /// The reason given to `cancel()` ("deadline exceeded" for a deadline), or None.
    #[getter]
    fn cancel_reason(&self) -> Option<String> {
        self.rec.fields().reason.clone()
    }

    fn __repr__(&self) -> String {
        let f = self.rec.fields();
        let mut parts = vec![f.phase.name().to_owned()];
        if f.cancel_called {
            parts.push("cancel_called".into());
        }
        if f.shield {
            parts.push("shield".into());
        }
        if f.deadline.is_finite() {
            parts.push(format!("deadline={:.3}", f.deadline));
        } else if let Some(t) = f.timeout {
            parts.push(format!("timeout={t}"));
        }
        format!("<CancelScope {}>", parts.join(" "))
    }
}

fn relative(delay: Option<f64>, what: &str) -> PyResult<Option<f64>> {
    match delay {
        Some(d) => Ok(Some(check_not_nan(d, what)?)),
        None => Ok(None),
    }
}

/// A cancel scope that cancels its body `delay` seconds after entry (`None`: never).
///
/// The deadline is computed when the scope is entered. Leaving early by timeout is silent;
/// check `scope.cancelled_caught` to know whether it happened.
#[pyfunction]
#[pyo3(signature = (delay, shield=false))]
pub fn move_on_after(delay: Option<f64>, shield: bool) -> PyResult<CancelScope> {
    CancelScope::with_options(f64::INFINITY, relative(delay, "delay")?, shield, None)
}

/// A cancel scope that cancels its body at `deadline` on the loop clock (`None`: never).
#[pyfunction]
#[pyo3(signature = (deadline, shield=false))]
pub fn move_on_at(deadline: Option<f64>, shield: bool) -> PyResult<CancelScope> {
    CancelScope::with_options(deadline.unwrap_or(f64::INFINITY), None, shield, None)
}

/// A cancel scope that raises `TimeoutError` if its body runs `delay` seconds past entry.
///
/// Only its own deadline turns into `TimeoutError` (the `CancelledError` is its `__cause__`);
/// a cancellation from an enclosing scope passes through unchanged.
#[pyfunction]
#[pyo3(signature = (delay, shield=false, reason=None))]
pub fn fail_after(
    delay: Option<f64>,
    shield: bool,
    reason: Option<String>,
) -> PyResult<CancelScope> {
    let timeout = relative(delay, "delay")?;
    let fail = Fail::After(delay.unwrap_or(f64::INFINITY), reason);
    CancelScope::with_options(f64::INFINITY, timeout, shield, Some(fail))
}

/// A cancel scope that raises `TimeoutError` if its body runs past `deadline` (loop clock).
#[pyfunction]
#[pyo3(signature = (deadline, shield=false, reason=None))]
pub fn fail_at(
    deadline: Option<f64>,
    shield: bool,
    reason: Option<String>,
) -> PyResult<CancelScope> {
    let at = deadline.unwrap_or(f64::INFINITY);
    CancelScope::with_options(at, None, shield, Some(Fail::At(at, reason)))
}

/// The nearest deadline in effect for the current task.
///
/// Returns `math.inf` when there is none and `-math.inf` when an enclosing scope is already
/// cancelled. Scopes outside the innermost shielded scope do not count.
#[pyfunction]
pub fn current_effective_deadline(py: Python<'_>) -> PyResult<f64> {
    asyncio::running_loop(py, "current_effective_deadline()")?;
    let Some(cur) = tasks::current(py, false)? else {
        return Ok(f64::INFINITY);
    };
    Ok(cur.rt.with(|st| st.tree.effective_deadline(cur.key)))
}

/// The running loop's clock (`loop.time()`), the clock deadlines are measured on.
#[pyfunction]
pub fn current_time(py: Python<'_>) -> PyResult<f64> {
    asyncio::running_loop(py, "current_time()")?
        .call_method0(intern!(py, "time"))?
        .extract()
}

/// (ours, the rest); either may be absent.
type Split<'py> = (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>);

/// Splits an exception group into this library's cancellations and the rest, like
/// `BaseExceptionGroup.split` with a predicate (which on 3.11 accepts only Python functions).
fn split_own_cancellations<'py>(exc: &Bound<'py, PyAny>) -> PyResult<Split<'py>> {
    let py = exc.py();
    if !exc.is_instance(asyncio::base_exception_group_type(py))? {
        return Ok(if asyncio::is_own_cancellation(py, exc) {
            (Some(exc.clone()), None)
        } else {
            (None, Some(exc.clone()))
        });
    }
    let members = exc.getattr(intern!(py, "exceptions"))?;
    let (mut matched, mut rest) = (Vec::new(), Vec::new());
    for member in members.cast::<PyTuple>()?.iter() {
        let (m, r) = split_own_cancellations(&member)?;
        matched.extend(m);
        rest.extend(r);
    }
    let derive = |parts: Vec<Bound<'py, PyAny>>| -> PyResult<Option<Bound<'py, PyAny>>> {
        if parts.is_empty() {
            return Ok(None);
        }
        let derived = exc.call_method1(intern!(py, "derive"), (PyList::new(py, parts)?,))?;
        for attr in ["__traceback__", "__cause__", "__context__"] {
            derived.setattr(attr, exc.getattr(attr)?)?;
        }
        Ok(Some(derived))
    };
    Ok((derive(matched)?, derive(rest)?))
}
