// Cancel scopes and deadlines: the Python-facing `CancelScope` and its constructors.
//
// A `CancelScope` object is a handle: while active, its position in the scope tree, its
// deadline and its cancellation message live in the thread's runtime (`runtime.rs`); before
// entry and after exit the handle alone holds its state. Enter and exit run synchronously on the
// loop thread and never touch the loop unless the scope has a finite deadline (then one push on
// the loop's deadline heap, and a timer re-arm only when it became the earliest deadline).
//
// Lifecycle (`ScopeState`): IDLE -> ACTIVE -> EXITED; a scope is entered at most once.
//
// Swallowing rule (AnyIO's): on exit, a scope swallows a `CancelledError` only if the scope
// itself was cancelled, no cancellation from outside reaches it (parent not effectively
// cancelled, or this scope shielded), the error carries this library's message, and no native
// `Task.cancel()` is pending (the task's `cancelling()` count, after balancing our own
// deliveries, is above its value at entry: AnyIO #1214).

pub mod deadline;
pub mod tree;

use pyo3::exceptions::{PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::asyncio;
use crate::awaitable::Ready;
use crate::runtime::{self, ScopeEntry};
use tree::{ExitError, ScopeKey, TaskKey};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ScopeState {
    /// Created, not entered yet.
    Idle,
    /// Entered and not exited.
    Active,
    /// Exited (or torn down because its task ended or it was exited out of order).
    Exited,
}

impl ScopeState {
    fn name(self) -> &'static str {
        match self {
            ScopeState::Idle => "idle",
            ScopeState::Active => "active",
            ScopeState::Exited => "exited",
        }
    }
}

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
#[pyclass(module = "toolcase_rs", name = "CancelScope")]
pub struct CancelScope {
    state: ScopeState,
    /// Absolute deadline. While IDLE with `timeout` set, it is resolved at entry.
    deadline: f64,
    timeout: Option<f64>,
    shield: bool,
    cancel_called: bool,
    cancelled_caught: bool,
    reason: Option<String>,
    /// Set by the constructors `fail_after` / `fail_at`: raise TimeoutError (with this message)
    /// when the scope's own deadline cancelled it.
    fail: Option<Option<String>>,
    /// The message of the `CancelledError`s this scope delivers, once cancelled.
    message: Option<Py<PyString>>,
    // While ACTIVE:
    key: Option<ScopeKey>,
    host: Option<TaskKey>,
    owner: Option<usize>,
    /// The host task (for cross-thread cancel and for `uncancel`); None for an eager child
    /// in its first step.
    host_task: Option<Py<PyAny>>,
    /// The loop, kept once a deadline is registered on it.
    loop_: Option<Py<PyAny>>,
}

fn check_not_nan(value: f64, what: &str) -> PyResult<f64> {
    if value.is_nan() {
        Err(PyValueError::new_err(format!("{what} must not be NaN")))
    } else {
        Ok(value)
    }
}

impl CancelScope {
    pub fn with_options(
        deadline: f64,
        timeout: Option<f64>,
        shield: bool,
        fail: Option<Option<String>>,
    ) -> PyResult<Self> {
        check_not_nan(deadline, "deadline")?;
        if let Some(t) = timeout {
            check_not_nan(t, "timeout")?;
        }
        Ok(CancelScope {
            state: ScopeState::Idle,
            deadline,
            timeout,
            shield,
            cancel_called: false,
            cancelled_caught: false,
            reason: None,
            fail,
            message: None,
            key: None,
            host: None,
            owner: None,
            host_task: None,
            loop_: None,
        })
    }

    pub fn key(&self) -> Option<ScopeKey> {
        self.key
    }

    /// Enters the scope in the current task.
    pub fn enter(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let s = slf.borrow();
            if s.state != ScopeState::Idle {
                return Err(PyRuntimeError::new_err(
                    "Each CancelScope may only be used for a single 'with' block; \
                     create a new scope for each use",
                ));
            }
        }
        let Some(cur) = runtime::current(py, true)? else {
            // Distinguish "no loop" from "loop but no task" for a helpful message.
            asyncio::running_loop(py, "entering a CancelScope")?;
            return Err(PyRuntimeError::new_err(
                "a CancelScope must be entered inside an asyncio task \
                 (not in a loop callback)",
            ));
        };
        let baseline: isize = match &cur.task {
            Some(t) => t.call_method0(intern!(py, "cancelling"))?.extract()?,
            None => 0,
        };
        let (cancel_called, shield, mut deadline, timeout, message) = {
            let s = slf.borrow();
            (
                s.cancel_called,
                s.shield,
                s.deadline,
                s.timeout,
                s.message.as_ref().map(|m| m.clone_ref(py)),
            )
        };
        // -inf is "already passed", like any deadline in the past.
        let loop_ = if timeout.is_some() || deadline != f64::INFINITY {
            Some(asyncio::running_loop(py, "entering a CancelScope")?)
        } else {
            None
        };
        let mut now = None;
        if let (Some(t), Some(l)) = (timeout, &loop_) {
            let t0: f64 = l.call_method0(intern!(py, "time"))?.extract()?;
            deadline = t0 + t.max(0.0);
            now = Some(t0);
        }
        let entry = ScopeEntry {
            scope: slf.clone().unbind(),
            baseline,
            message,
            deadline_gen: 0,
            deadline_loop: None,
        };
        let (key, eff) = runtime::with_rt(|rt| {
            rt.tree
                .enter(cur.key, cancel_called, shield, deadline, entry)
        });
        {
            let mut s = slf.borrow_mut();
            s.state = ScopeState::Active;
            s.deadline = deadline;
            s.key = Some(key);
            s.host = Some(cur.key);
            s.owner = Some(runtime::thread_token());
            s.host_task = cur.task.as_ref().map(|t| t.clone().unbind());
            s.loop_ = loop_.as_ref().map(|l| l.clone().unbind());
        }
        if let Some(l) = &loop_ {
            if deadline != f64::INFINITY {
                Self::apply_deadline(slf, l, key, deadline, now)?;
            }
        }
        if eff {
            runtime::defer(py, cur.key)?;
        }
        Ok(())
    }

    /// Registers `deadline` for the active scope, or cancels now if it already passed.
    /// `now` is the loop time when the caller already read it.
    fn apply_deadline(
        slf: &Bound<'_, Self>,
        loop_: &Bound<'_, PyAny>,
        key: ScopeKey,
        deadline: f64,
        now: Option<f64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let now: f64 = match now {
            Some(t) => t,
            None => loop_.call_method0(intern!(py, "time"))?.extract()?,
        };
        if deadline <= now {
            runtime::set_deadline(py, loop_, key, f64::INFINITY)?;
            return Self::cancel_by_deadline(slf);
        }
        runtime::set_deadline(py, loop_, key, deadline)
    }

    /// Exits the scope; returns whether the exception is swallowed.
    pub fn exit(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let (state, key, host) = {
            let s = slf.borrow();
            (s.state, s.key, s.host)
        };
        let (Some(key), Some(host), ScopeState::Active) = (key, host, state) else {
            return Err(PyRuntimeError::new_err(format!(
                "This cancel scope is not active (it is {})",
                state.name()
            )));
        };
        let current = runtime::current(py, false)?;
        if current.as_ref().map(|c| c.key) != Some(host) {
            let closing =
                exc.is_some_and(|e| e.is_instance_of::<pyo3::exceptions::PyGeneratorExit>());
            if closing {
                // The coroutine is being closed outside its task (garbage collection): tear
                // the scope down quietly rather than raise into a finaliser.
                Self::teardown(slf, host, key);
                return Ok(false);
            }
            return Err(PyRuntimeError::new_err(
                "Attempted to exit cancel scope in a different task than it was entered in",
            ));
        }
        let exited = match runtime::with_rt(|rt| rt.tree.exit(key, host)) {
            Ok(exited) => exited,
            Err(ExitError::NotInnermost) => {
                Self::teardown(slf, host, key);
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
        let ScopeEntry {
            baseline,
            deadline_loop,
            ..
        } = exited.payload;
        if let Some(loop_id) = deadline_loop {
            runtime::clear_deadline(loop_id, key);
        }
        {
            let mut s = slf.borrow_mut();
            s.state = ScopeState::Exited;
            s.key = None;
            s.host = None;
            s.owner = None;
            s.loop_ = None;
            s.host_task = None;
        }
        // The host's Task (None only if the scope lives and dies within an eager first step).
        let task = current.and_then(|c| c.task);
        if exited.parent_eff {
            // Back in a cancelled scope (leaving a shield, or an inner scope swallowed):
            // cancellation resumes at the next checkpoint.
            runtime::defer(py, host)?;
        }
        let swallow = if exited.cancel_called && !exited.parent_cancel_visible {
            Self::swallow(slf, host, task.as_ref(), baseline, exc)?
        } else {
            false
        };
        if swallow {
            Self::maybe_timeout(slf, exc)?;
        }
        Ok(swallow)
    }

    /// Balances our deliveries and decides whether to swallow `exc` (see module notes).
    fn swallow(
        slf: &Bound<'_, Self>,
        host: TaskKey,
        task: Option<&Bound<'_, PyAny>>,
        baseline: isize,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let delivered = runtime::with_rt(|rt| {
            rt.tree
                .task_mut(host)
                .map(|n| std::mem::take(&mut n.delivered))
                .unwrap_or(0)
        });
        if let Some(task) = task {
            let cancelling = runtime::uncancel(task, delivered)?;
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
            slf.borrow_mut().cancelled_caught = true;
            let Some(rest) = rest else {
                return Ok(true);
            };
            return Err(PyErr::from_value(rest));
        }
        if asyncio::is_own_cancellation(py, exc) {
            slf.borrow_mut().cancelled_caught = true;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `fail_after` / `fail_at`: turn a caught cancellation caused by the deadline into
    /// `TimeoutError`.
    fn maybe_timeout(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let (fail, deadline, caught) = {
            let s = slf.borrow();
            (s.fail.clone(), s.deadline, s.cancelled_caught)
        };
        let Some(reason) = fail else { return Ok(()) };
        if !caught || deadline == f64::INFINITY {
            return Ok(());
        }
        let now: f64 = asyncio::running_loop(py, "fail_after")?
            .call_method0(intern!(py, "time"))?
            .extract()?;
        if now < deadline {
            return Ok(());
        }
        let err = match reason {
            Some(r) => PyTimeoutError::new_err(r),
            None => PyTimeoutError::new_err(()),
        };
        if let Some(exc) = exc {
            err.set_cause(py, Some(PyErr::from_value(exc.clone())));
        }
        Err(err)
    }

    /// Removes this scope (and any scopes entered inside it by the same task) from the tree.
    fn teardown(slf: &Bound<'_, Self>, host: TaskKey, key: ScopeKey) {
        let py = slf.py();
        let removed = runtime::with_rt(|rt| {
            let mut out = rt.tree.unwind_own_scopes(host, Some(key));
            if let Ok(exited) = rt.tree.exit(key, host) {
                out.push(exited.payload);
            }
            out
        });
        for entry in removed {
            Self::mark_closed(py, &entry);
        }
    }

    /// Marks the handle of a scope removed from the tree without a normal exit.
    pub fn mark_closed(py: Python<'_>, entry: &ScopeEntry) {
        if let (Some(loop_id), Ok(s)) = (entry.deadline_loop, entry.scope.try_borrow(py)) {
            if let Some(key) = s.key {
                drop(s);
                runtime::clear_deadline(loop_id, key);
            }
        }
        if let Ok(mut s) = entry.scope.try_borrow_mut(py) {
            s.state = ScopeState::Exited;
            s.key = None;
            s.host = None;
            s.owner = None;
            s.host_task = None;
            s.loop_ = None;
        }
    }

    /// `cancel()`: on the owning loop thread directly, from any other thread by a hop onto
    /// the loop.
    pub fn cancel_internal(slf: &Bound<'_, Self>, reason: Option<String>) -> PyResult<()> {
        let py = slf.py();
        let (foreign, task) = {
            let s = slf.borrow();
            if s.cancel_called {
                return Ok(());
            }
            let foreign = s.state == ScopeState::Active
                && s.owner.is_some_and(|o| o != runtime::thread_token());
            (foreign, s.host_task.as_ref().map(|t| t.clone_ref(py)))
        };
        if foreign {
            slf.borrow_mut().cancel_called = true;
            if let Some(task) = task {
                let loop_ = task.bind(py).call_method0(intern!(py, "get_loop"))?;
                let method = slf.getattr(intern!(py, "_cancel_on_loop"))?;
                // A loop that closed meanwhile has nothing left to cancel.
                let _ = loop_.call_method1(intern!(py, "call_soon_threadsafe"), (method, reason));
            }
            return Ok(());
        }
        Self::cancel_on_loop(slf, reason)
    }

    /// Cancels because the deadline passed.
    pub fn cancel_by_deadline(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::cancel_on_loop(slf, Some("deadline exceeded".to_owned()))
    }

    fn make_message(slf: &Bound<'_, Self>, reason: Option<&str>) -> Py<PyString> {
        let py = slf.py();
        let id = slf.as_ptr() as usize;
        let text = match reason {
            Some(r) => format!("{}{id:x}; reason: {r}", asyncio::CANCEL_PREFIX),
            None => format!("{}{id:x}", asyncio::CANCEL_PREFIX),
        };
        PyString::new(py, &text).unbind()
    }

    /// Cancels on the loop thread that owns the scope.
    fn cancel_on_loop(slf: &Bound<'_, Self>, reason: Option<String>) -> PyResult<()> {
        let py = slf.py();
        let message = Self::make_message(slf, reason.as_deref());
        let key = {
            let mut s = slf.borrow_mut();
            if s.cancel_called && s.message.is_some() {
                return Ok(());
            }
            s.cancel_called = true;
            s.reason = reason;
            s.message = Some(message.clone_ref(py));
            s.key
        };
        let Some(key) = key else { return Ok(()) };
        let hit = runtime::with_rt(|rt| {
            if let Some(node) = rt.tree.scope_mut(key) {
                node.payload.message = Some(message);
            }
            rt.tree.cancel(key)
        });
        runtime::deliver(py, hit)
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
        Self::enter(&slf)?;
        Ok(slf)
    }

    #[pyo3(signature = (_exc_type=None, exc=None, _tb=None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        _exc_type: Option<Bound<'_, PyAny>>,
        exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Self::exit(slf, exc.as_ref().filter(|e| !e.is_none()))
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Ready>> {
        Self::enter(&slf)?;
        let py = slf.py();
        Ready::new(py, slf.into_any().unbind())
    }

    #[pyo3(signature = (_exc_type=None, exc=None, _tb=None))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_type: Option<Bound<'py, PyAny>>,
        exc: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Ready>> {
        let swallow = Self::exit(slf, exc.as_ref().filter(|e| !e.is_none()))?;
        let py = slf.py();
        Ready::new(py, swallow.into_py_any(py)?)
    }

    /// Cancel this scope: everything inside it is cancelled at its next checkpoint.
    ///
    /// Calling it again has no effect. Safe to call from any thread.
    ///
    /// Args:
    ///     reason: a note added to the message of the `CancelledError`s this scope delivers.
    #[pyo3(signature = (reason=None))]
    fn cancel(slf: &Bound<'_, Self>, reason: Option<String>) -> PyResult<()> {
        Self::cancel_internal(slf, reason)
    }

    #[pyo3(signature = (reason=None))]
    fn _cancel_on_loop(slf: &Bound<'_, Self>, reason: Option<String>) -> PyResult<()> {
        Self::cancel_on_loop(slf, reason)
    }

    /// Absolute deadline on the loop clock (`math.inf` for none); settable, also while active.
    #[getter]
    fn deadline(&self) -> f64 {
        self.deadline
    }

    #[setter]
    fn set_deadline(slf: &Bound<'_, Self>, value: f64) -> PyResult<()> {
        check_not_nan(value, "deadline")?;
        let (key, loop_) = {
            let mut s = slf.borrow_mut();
            s.deadline = value;
            s.timeout = None;
            (s.key, s.loop_.as_ref().map(|l| l.clone_ref(slf.py())))
        };
        let Some(key) = key else { return Ok(()) };
        let py = slf.py();
        let loop_ = match loop_ {
            Some(l) => l.into_bound(py),
            None => {
                let l = asyncio::running_loop(py, "setting CancelScope.deadline")?;
                slf.borrow_mut().loop_ = Some(l.clone().unbind());
                l
            }
        };
        if value == f64::INFINITY {
            runtime::set_deadline(py, &loop_, key, value)
        } else {
            Self::apply_deadline(slf, &loop_, key, value, None)
        }
    }

    /// True if this scope is shielded from cancellation coming from outside it; settable.
    #[getter]
    fn shield(&self) -> bool {
        self.shield
    }

    #[setter]
    fn set_shield(slf: &Bound<'_, Self>, value: bool) -> PyResult<()> {
        let key = {
            let mut s = slf.borrow_mut();
            s.shield = value;
            s.key
        };
        if let Some(key) = key {
            let hit = runtime::with_rt(|rt| rt.tree.set_shield(key, value));
            runtime::deliver(slf.py(), hit)?;
        }
        Ok(())
    }

    /// True once `cancel()` was called or the deadline passed.
    #[getter]
    fn cancel_called(&self) -> bool {
        self.cancel_called
    }

    /// True if the scope swallowed a cancellation at its exit.
    #[getter]
    fn cancelled_caught(&self) -> bool {
        self.cancelled_caught
    }

    /// The reason given to `cancel()` ("deadline exceeded" for a deadline), or None.
    #[getter]
    fn cancel_reason(&self) -> Option<String> {
        self.reason.clone()
    }

    fn __repr__(&self) -> String {
        let mut parts = vec![self.state.name().to_owned()];
        if self.cancel_called {
            parts.push("cancel_called".into());
        }
        if self.shield {
            parts.push("shield".into());
        }
        if self.deadline.is_finite() {
            parts.push(format!("deadline={:.3}", self.deadline));
        } else if let Some(t) = self.timeout {
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
    CancelScope::with_options(
        f64::INFINITY,
        relative(delay, "delay")?,
        shield,
        Some(reason),
    )
}

/// A cancel scope that raises `TimeoutError` if its body runs past `deadline` (loop clock).
#[pyfunction]
#[pyo3(signature = (deadline, shield=false, reason=None))]
pub fn fail_at(
    deadline: Option<f64>,
    shield: bool,
    reason: Option<String>,
) -> PyResult<CancelScope> {
    CancelScope::with_options(
        deadline.unwrap_or(f64::INFINITY),
        None,
        shield,
        Some(reason),
    )
}

/// The nearest deadline in effect for the current task.
///
/// Returns `math.inf` when there is none and `-math.inf` when an enclosing scope is already
/// cancelled. Scopes outside the innermost shielded scope do not count.
#[pyfunction]
pub fn current_effective_deadline(py: Python<'_>) -> PyResult<f64> {
    asyncio::running_loop(py, "current_effective_deadline()")?;
    let Some(cur) = runtime::current(py, false)? else {
        return Ok(f64::INFINITY);
    };
    Ok(runtime::with_rt(|rt| rt.tree.effective_deadline(cur.key)))
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
