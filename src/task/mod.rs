// Task groups: `TaskGroup`, its children's done-callback, the wait in `__aexit__`, and
// `start()` with its `TaskStatus`.
//
// Children are plain `asyncio.Task`s created on the group's loop (directly as `asyncio.Task`
// when the loop has no task factory, else through `loop.create_task`). There is no wrapper
// coroutine and no per-child scope or event: the runtime registers each child in the scope tree
// under the group's scope, and one Rust done-callback per group (`ChildDone`) records the outcome,
// forgets the child and, when the last child finishes while the host waits in `__aexit__`,
// resolves the single future the host is parked on.
//
// Lifecycle (`GroupState`): IDLE -> ACTIVE (after `__aenter__`) -> EXITING (in `__aexit__`,
// waiting for children; spawning is still allowed, as children may start siblings) -> CLOSED.
//
// Error shape (AnyIO's): the first child failure cancels the group scope; every child error and
// the body's own non-cancellation exception leave together as one `BaseExceptionGroup`
// ("unhandled errors in a TaskGroup"), even when there is only one. A child that is cancelled
// (by `handle.cancel()`, a native `task.cancel()`, or the group) is not an error.
//
// The host in `__aexit__`. While it waits, the runtime delivers no cancellation to it (it is
// "exempt"): a cancellation of the group scope, or of a scope around it, reaches the children
// through the tree, and the host only needs to know about it when the children are done, at
// which point it re-raises it (AnyIO gets the same outcome by waking the host, catching the
// CancelledError and shielding its wait, #695). A native cancel of the host (`task.cancel()`)
// still arrives as a thrown `CancelledError`: it cancels the group and is re-raised at the end.

pub mod eager;
pub mod handle;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use std::sync::Arc;

use crate::asyncio::{self, Sent};
use crate::awaitable::{Drive, Input, Ready, Step, Waiting};
use crate::loop_runtime::tasks;
use crate::loop_runtime::{delivery, LoopRuntime};
use crate::scope::tree::{ScopeKey, TaskKey};
use crate::scope::{cross_task_message, CancelScope};
use eager::EagerCoroutine;
use handle::{AwaitTask, Outcome, TaskHandle};
use pyo3::pyclass::{PyTraverseError, PyVisit};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GroupState {
    /// Created, not entered.
    Idle,
    /// Entered; the body runs.
    Active,
    /// In `__aexit__`, waiting for children.
    Exiting,
    /// Exited.
    Closed,
}

impl GroupState {
    fn name(self) -> &'static str {
        match self {
            GroupState::Idle => "idle",
            GroupState::Active => "active",
            GroupState::Exiting => "exiting",
            GroupState::Closed => "closed",
        }
    }
}

/// A task group: starts child tasks and waits for all of them before its `async with` block
/// ends.
///
/// The first child that fails cancels the others and the body; the errors then leave the
/// block together as one `BaseExceptionGroup` (also for a single error). Cancelling the group
/// (`tg.cancel()`, or a scope around it) cancels every child.
///
/// Args:
///     name: a name for the group (shown in its repr).
///     eager: run each child's first step synchronously in `start_soon` / `spawn` (see
///         `start_soon`); off by default.
#[pyclass(module = "toolcase_rs", name = "TaskGroup")]
pub struct TaskGroup {
    state: GroupState,
    name: Option<Py<PyAny>>,
    eager: bool,
    /// The group's scope, entered by the host in `__aenter__`.
    scope: Py<CancelScope>,
    // While entered:
    loop_: Option<Py<PyAny>>,
    rt: Option<Arc<LoopRuntime>>,
    host: Option<TaskKey>,
    /// Children started and not finished. Invariant: equals the number of runtime tasks
    /// registered by this group.
    children: usize,
    /// Child errors (and the body's error), in the order they happened.
    errors: Vec<Py<PyAny>>,
    /// The future the host waits on in `__aexit__`; resolved when `children` reaches 0.
    waiter: Option<Py<PyAny>>,
    /// The done-callback shared by all children (holds the group; dropped at close).
    done_cb: Option<Py<ChildDone>>,
}

/// What spawning needs, read from the group in one borrow.
struct SpawnTarget {
    loop_: Py<PyAny>,
    rt: Arc<LoopRuntime>,
    scope: ScopeKey,
    done_cb: Py<ChildDone>,
    eager: bool,
}

impl TaskGroup {
    fn target(slf: &Bound<'_, Self>, what: &str) -> PyResult<SpawnTarget> {
        let py = slf.py();
        let g = slf.borrow();
        if !matches!(g.state, GroupState::Active | GroupState::Exiting) {
            return Err(PyRuntimeError::new_err(format!(
                "This task group is not active ({}); no new tasks can be started. \
                 Use {what} inside its `async with` block.",
                g.state.name()
            )));
        }
        let rt = g.rt.as_ref().expect("entered");
        if !rt.is_current(py) {
            return Err(PyRuntimeError::new_err(format!(
                "{what} must be called from the thread running the group's event loop; from \
                 another thread use loop.call_soon_threadsafe or toolcase_rs.from_thread"
            )));
        }
        let scope = match g.scope.get().record().location() {
            Some((scope_rt, key)) if Arc::ptr_eq(&scope_rt, rt) => key,
            _ => {
                return Err(PyRuntimeError::new_err(
                    "This task group's cancel scope is not active (the task that entered the \
                     group has finished)",
                ))
            }
        };
        Ok(SpawnTarget {
            loop_: g.loop_.as_ref().expect("entered").clone_ref(py),
            rt: rt.clone(),
            scope,
            done_cb: g.done_cb.as_ref().expect("entered").clone_ref(py),
            eager: g.eager,
        })
    }

    /// Creates, registers and returns the handle of a child running `coro`.
    #[allow(clippy::too_many_arguments)]
    fn spawn_coro<'py>(
        slf: &Bound<'py, Self>,
        target: &SpawnTarget,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        eager: bool,
        context: Option<Bound<'py, PyAny>>,
        base: ScopeKey,
    ) -> PyResult<Bound<'py, TaskHandle>> {
        let py = slf.py();
        if eager {
            return Self::spawn_eager(slf, target, coro, name);
        }
        let (task, _) = Self::spawn_task(
            slf,
            target,
            &coro,
            name.as_ref(),
            context.as_ref(),
            None,
            base,
        )?;
        Bound::new(
            py,
            TaskHandle::for_task(
                task.unbind(),
                name.map(Bound::unbind),
                Some(target.rt.clone()),
            ),
        )
    }

    /// Registers a child, creates its Task and adopts it into the group. The child is known to
    /// the runtime before its Task exists: an eager task factory runs its first step inside
    /// `create_task`. On failure the coroutine is closed.
    #[allow(clippy::too_many_arguments)]
    fn spawn_task<'py>(
        slf: &Bound<'py, Self>,
        target: &SpawnTarget,
        coro: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
        status: Option<&Bound<'py, TaskStatus>>,
        base: ScopeKey,
    ) -> PyResult<(Bound<'py, PyAny>, TaskKey)> {
        let py = slf.py();
        let rt = &target.rt;
        let fut = status.and_then(|s| s.get().fut.as_ref().map(|f| f.clone_ref(py)));
        let (key, _) = tasks::begin_spawn(rt, base, fut);
        if let Some(s) = status {
            // Before the Task exists: its first step may call `started()` (eager factory).
            *s.get().child.lock() = Some(key);
        }
        let task = match asyncio::new_task(target.loop_.bind(py), coro, name, context) {
            Ok(t) => t,
            Err(e) => {
                tasks::abort_spawn(py, rt, key);
                let _ = coro.call_method0(intern!(py, "close"));
                return Err(e);
            }
        };
        tasks::end_spawn(rt, key, &task);
        task.call_method1(intern!(py, "add_done_callback"), (target.done_cb.bind(py),))?;
        slf.borrow_mut().children += 1;
        // Cancelled already (the group, or a scope around it), or by its own first step.
        if rt.with(|st| st.tree.is_cancelled(key)) {
            delivery::deliver(py, rt, vec![key])?;
        }
        Ok((task, key))
    }

    fn spawn_eager<'py>(
        slf: &Bound<'py, Self>,
        target: &SpawnTarget,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, TaskHandle>> {
        let py = slf.py();
        let rt = &target.rt;
        let ctx = asyncio::copy_context(py)?;
        let (key, _) = tasks::register_eager_child(rt, target.scope);
        let none = py.None().into_bound(py);
        let sent = rt.eager_step(key, || {
            asyncio::in_context(&ctx, || asyncio::send(&coro, &none))
        });
        let name_owned = name.as_ref().map(|n| n.clone().unbind());
        let finished =
            |outcome, name: Option<Py<PyAny>>| Bound::new(py, TaskHandle::finished(outcome, name));
        match sent {
            Ok(Sent::Returned(value)) => {
                drop(tasks::forget_task(py, rt, key));
                finished(Outcome::Returned(value.unbind()), name_owned)
            }
            Err(err) => {
                drop(tasks::forget_task(py, rt, key));
                let exc = err.into_value(py).into_any();
                if asyncio::is_cancelled_error(py, exc.bind(py)) {
                    finished(Outcome::Cancelled(exc), name_owned)
                } else {
                    Self::child_failed(slf, exc.clone_ref(py))?;
                    finished(Outcome::Raised(exc), name_owned)
                }
            }
            Ok(Sent::Yielded(first)) => {
                let adapter = Bound::new(py, EagerCoroutine::new(coro.unbind(), first.unbind()))?;
                let task = match asyncio::new_task(
                    target.loop_.bind(py),
                    adapter.as_any(),
                    name.as_ref(),
                    Some(&ctx),
                ) {
                    Ok(t) => t,
                    Err(e) => {
                        drop(tasks::forget_task(py, rt, key));
                        let _ = adapter.call_method0(intern!(py, "close"));
                        return Err(e);
                    }
                };
                tasks::bind_child(rt, key, &task);
                task.call_method1(intern!(py, "add_done_callback"), (target.done_cb.bind(py),))?;
                slf.borrow_mut().children += 1;
                if rt.with(|st| st.tree.is_cancelled(key)) {
                    delivery::deliver(py, rt, vec![key])?;
                }
                Bound::new(
                    py,
                    TaskHandle::for_task(task.unbind(), name_owned, Some(rt.clone())),
                )
            }
        }
    }

    /// Records a child failure and cancels the group (AnyIO: unless already cancelled).
    fn child_failed(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let scope = {
            let mut g = slf.borrow_mut();
            g.errors.push(exc);
            g.scope.clone_ref(py)
        };
        let already = scope
            .get()
            .record()
            .location()
            .is_some_and(|(rt, k)| rt.with(|st| st.tree.scope_is_cancelled(k)));
        if !already {
            scope.get().record().cancel(py, None)?;
        }
        Ok(())
    }

    fn call_for_coroutine<'py>(
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
        what: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        if asyncio::is_coroutine(func) {
            // It would never run: close it so no "never awaited" warning joins the error.
            let _ = func.call_method0(intern!(func.py(), "close"));
            return Err(PyTypeError::new_err(format!(
                "{what}() expected an async function and its arguments, got a coroutine object \
                 {}; pass the function itself ({what}(fn, *args)), or use tg.spawn(coro)",
                func.repr()?
            )));
        }
        if !func.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "{what}() expected an async function, got {} object {}",
                func.get_type().name()?,
                func.repr()?
            )));
        }
        let coro = func.call(args, kwargs)?;
        if asyncio::is_coroutine(&coro) {
            return Ok(coro);
        }
        let py = func.py();
        let kind = coro.get_type().name()?;
        if coro.hasattr(intern!(py, "close"))? && coro.hasattr(intern!(py, "send"))? {
            let _ = coro.call_method0(intern!(py, "close"));
        }
        Err(PyTypeError::new_err(format!(
            "{what}() expected an async function, but {} returned a {kind}, not a coroutine; \
             define it with `async def`",
            func.repr()?
        )))
    }
}

#[pymethods]
impl TaskGroup {
    #[new]
    #[pyo3(signature = (*, name=None, eager=false))]
    fn py_new(py: Python<'_>, name: Option<Py<PyAny>>, eager: bool) -> PyResult<Self> {
        let scope = Py::new(
            py,
            CancelScope::with_options(f64::INFINITY, None, false, None)?,
        )?;
        Ok(TaskGroup {
            state: GroupState::Idle,
            name,
            eager,
            scope,
            loop_: None,
            rt: None,
            host: None,
            children: 0,
            errors: Vec::new(),
            waiter: None,
            done_cb: None,
        })
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Ready>> {
        let py = slf.py();
        if slf.borrow().state != GroupState::Idle {
            return Err(PyRuntimeError::new_err(
                "TaskGroup cannot be entered more than once; create a new group",
            ));
        }
        let loop_ = asyncio::running_loop(py, "entering a TaskGroup")?;
        let Some(cur) = tasks::current(py, true)? else {
            return Err(PyRuntimeError::new_err(
                "a TaskGroup must be entered inside an asyncio task (not in a loop callback)",
            ));
        };
        let scope = slf.borrow().scope.clone_ref(py);
        scope.get().enter_in(py, &cur)?;
        let done_cb = Py::new(
            py,
            ChildDone {
                group: slf.clone().unbind(),
            },
        )?;
        {
            let mut g = slf.borrow_mut();
            g.state = GroupState::Active;
            g.loop_ = Some(loop_.unbind());
            g.rt = Some(cur.rt.clone());
            g.host = Some(cur.key);
            g.done_cb = Some(done_cb);
        }
        Ready::new(py, slf.into_any().unbind())
    }

    #[pyo3(signature = (_exc_type=None, exc=None, _tb=None))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_type: Option<Bound<'py, PyAny>>,
        exc: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Waiting>> {
        let py = slf.py();
        if slf.borrow().state != GroupState::Active {
            return Err(PyRuntimeError::new_err(format!(
                "TaskGroup.__aexit__ called on a group that is {}",
                slf.borrow().state.name()
            )));
        }
        // Exited by the task that entered it? (A pytest-asyncio fixture that holds a group
        // across `yield` runs its teardown in another task.)
        let (rt, host) = {
            let g = slf.borrow();
            (g.rt.clone().expect("entered"), g.host)
        };
        let current = tasks::current(py, false)?.filter(|c| Arc::ptr_eq(&c.rt, &rt));
        let foreign = current.map(|c| c.key) != host;
        Waiting::new(
            py,
            GroupExit {
                group: slf.clone().unbind(),
                exc: exc.filter(|e| !e.is_none()).map(Bound::unbind),
                started: false,
                waited: false,
                foreign,
            },
        )
    }

    /// Start `func(*args)` as a child task and return its handle.
    ///
    /// Args:
    ///     func: an async function (a callable returning a coroutine).
    ///     *args: positional arguments for `func`.
    ///     name: the task's name.
    ///     eager: run the child's first step now, synchronously (default: the group's
    ///         setting). A child that finishes without suspending then never becomes an
    ///         `asyncio.Task`. During that first step `asyncio.current_task()` is still the
    ///         spawning task: do not enter `asyncio.timeout()` before the child's first await.
    ///
    /// Raises:
    ///     TypeError: `func` is not an async function.
    ///     RuntimeError: the group is not active.
    #[pyo3(signature = (func, *args, name=None, eager=None))]
    fn start_soon<'py>(
        slf: &Bound<'py, Self>,
        func: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        name: Option<Bound<'py, PyAny>>,
        eager: Option<bool>,
    ) -> PyResult<Bound<'py, TaskHandle>> {
        let target = Self::target(slf, "start_soon()")?;
        let coro = Self::call_for_coroutine(&func, &args, None, "start_soon")?;
        let eager = eager.unwrap_or(target.eager);
        let base = target.scope;
        Self::spawn_coro(slf, &target, coro, name, eager, None, base)
    }

    /// Start a child from a coroutine object, or from an async function and its arguments.
    ///
    /// Same as `start_soon`, but `fn_or_coro` may also be a coroutine object (then no `args`).
    #[pyo3(signature = (fn_or_coro, *args, name=None, eager=None))]
    fn spawn<'py>(
        slf: &Bound<'py, Self>,
        fn_or_coro: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        name: Option<Bound<'py, PyAny>>,
        eager: Option<bool>,
    ) -> PyResult<Bound<'py, TaskHandle>> {
        let py = slf.py();
        let is_coro = asyncio::is_coroutine(&fn_or_coro);
        let target = match Self::target(slf, "spawn()") {
            Ok(t) => t,
            Err(e) => {
                if is_coro {
                    fn_or_coro.call_method0(intern!(py, "close"))?;
                }
                return Err(e);
            }
        };
        let coro = if is_coro {
            if !args.is_empty() {
                fn_or_coro.call_method0(intern!(py, "close"))?;
                return Err(PyTypeError::new_err(
                    "spawn() got a coroutine object and extra arguments: pass either a \
                     coroutine, or an async function followed by its arguments",
                ));
            }
            fn_or_coro
        } else {
            Self::call_for_coroutine(&fn_or_coro, &args, None, "spawn")?
        };
        let eager = eager.unwrap_or(target.eager);
        let base = target.scope;
        Self::spawn_coro(slf, &target, coro, name, eager, None, base)
    }

    /// Start one child per coroutine object and return their Tasks (no handles): the bulk
    /// path of `gather` and friends. On a failure part-way, the coroutines not yet started are
    /// closed and the error is raised; those already started stay in the group.
    fn _spawn_tasks<'py>(
        slf: &Bound<'py, Self>,
        coros: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let target = Self::target(slf, "_spawn_tasks()")?;
        let out = PyList::empty(py);
        let mut items = coros.try_iter()?;
        let close_rest = |items: Bound<'py, pyo3::types::PyIterator>| {
            for c in items.flatten() {
                if asyncio::is_coroutine(&c) {
                    let _ = c.call_method0(intern!(py, "close"));
                }
            }
        };
        while let Some(coro) = items.next() {
            let coro = coro?;
            if !asyncio::is_coroutine(&coro) {
                let err = PyTypeError::new_err(format!(
                    "expected a coroutine, got {}",
                    coro.get_type().name()?
                ));
                close_rest(items);
                return Err(err);
            }
            match Self::spawn_task(slf, &target, &coro, None, None, None, target.scope) {
                Ok((task, _)) => out.append(task)?,
                Err(e) => {
                    close_rest(items);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Start a child from a coroutine object, as `asyncio.TaskGroup.create_task` does.
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, TaskHandle>> {
        let py = slf.py();
        if !asyncio::is_coroutine(&coro) {
            return Err(PyTypeError::new_err(format!(
                "create_task() expected a coroutine, got {}",
                coro.get_type().name()?
            )));
        }
        let context = context.filter(|c| !c.is_none());
        if let Some(ctx) = &context {
            if !asyncio::is_context(ctx) {
                coro.call_method0(intern!(py, "close"))?;
                return Err(PyTypeError::new_err(format!(
                    "create_task(): context must be a contextvars.Context (from \
                     contextvars.copy_context()) or None, not {}",
                    ctx.get_type().name()?
                )));
            }
        }
        let target = match Self::target(slf, "create_task()") {
            Ok(t) => t,
            Err(e) => {
                coro.call_method0(intern!(py, "close"))?;
                return Err(e);
            }
        };
        let base = target.scope;
        Self::spawn_coro(slf, &target, coro, name, false, context, base)
    }

    /// Start `func(*args, task_status=...)` and wait until it calls `task_status.started()`.
    ///
    /// Returns the value passed to `started()`. Until then the child belongs to the caller's
    /// cancel scope, and an exception it raises is raised here (not in the group).
    ///
    /// Raises:
    ///     RuntimeError: the child returned without calling `started()`, or the group is not
    ///         active.
    ///
    /// Cancel safety: cancelling the caller cancels that child, waits for it, and re-raises.
    #[pyo3(signature = (func, *args, name=None))]
    fn start<'py>(
        slf: &Bound<'py, Self>,
        func: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        name: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Waiting>> {
        let py = slf.py();
        let target = Self::target(slf, "start()")?;
        let fut = asyncio::create_future(target.loop_.bind(py))?;
        let status = Bound::new(
            py,
            TaskStatus {
                fut: Some(fut.clone().unbind()),
                group: Some(slf.clone().unbind()),
                child: parking_lot::Mutex::new(None),
            },
        )?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "task_status"), &status)?;
        let coro = Self::call_for_coroutine(&func, &args, Some(&kwargs), "start")?;
        // Until `started()`, the child belongs to the caller's scope.
        let caller_scope = tasks::current_in(py, target.rt.clone(), false)?
            .and_then(|c| c.rt.with(|st| st.tree.task_scope(c.key)))
            .unwrap_or(target.scope);
        let (task, _) = Self::spawn_task(
            slf,
            &target,
            &coro,
            name.as_ref(),
            None,
            Some(&status),
            caller_scope,
        )?;
        Waiting::op(
            py,
            "TaskGroup.start()",
            StartWait {
                fut: fut.unbind(),
                task: task.unbind(),
                saved: None,
                drain: None,
            },
        )
    }

    /// Cancel every child and the body.
    #[pyo3(signature = (reason=None))]
    fn cancel(slf: &Bound<'_, Self>, reason: Option<String>) -> PyResult<()> {
        let py = slf.py();
        let scope = slf.borrow().scope.clone_ref(py);
        scope.get().record().cancel(py, reason)
    }

    /// The group's cancel scope.
    #[getter]
    fn cancel_scope(&self, py: Python<'_>) -> Py<CancelScope> {
        self.scope.clone_ref(py)
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.name.as_ref().map(|n| n.clone_ref(py))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let name = self
            .name
            .as_ref()
            .and_then(|n| n.bind(py).str().ok().map(|s| format!(" {s}")))
            .unwrap_or_default();
        format!(
            "<TaskGroup{name} {} children={}>",
            self.state.name(),
            self.children
        )
    }
}

/// The done-callback of every child of one group.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct ChildDone {
    group: Py<TaskGroup>,
}

#[pymethods]
impl ChildDone {
    fn __call__(&self, py: Python<'_>, task: Bound<'_, PyAny>) -> PyResult<()> {
        let group = self.group.bind(py);
        let Some(rt) = group.borrow().rt.clone() else {
            return Ok(());
        };
        let Some(key) = tasks::key_of(&rt, &task) else {
            return Ok(());
        };
        let status = tasks::forget_task(py, &rt, key).and_then(|f| f.status);
        let waiter = {
            let mut g = group.borrow_mut();
            g.children = g.children.saturating_sub(1);
            if g.children == 0 {
                g.waiter.take()
            } else {
                None
            }
        };
        if let Some(w) = waiter {
            asyncio::resolve(w.bind(py), &py.None().into_bound(py))?;
        }
        let status = status.map(|s| s.into_bound(py));
        let status_open = match &status {
            Some(s) if s.call_method0(intern!(py, "cancelled"))?.is_truthy()? => return Ok(()),
            Some(s) => !asyncio::is_done(s)?,
            None => false,
        };
        // One call answers the common case: `exception()` is None (success) or the error; it
        // raises CancelledError for a cancelled task.
        let exc = match task.call_method0(intern!(py, "exception")) {
            Ok(exc) => exc,
            Err(cancelled) => {
                if let (true, Some(s)) = (status_open, &status) {
                    s.call_method1(intern!(py, "set_exception"), (cancelled.into_value(py),))?;
                }
                return Ok(());
            }
        };
        match (&status, status_open, exc.is_none()) {
            (Some(s), true, false) => {
                s.call_method1(intern!(py, "set_exception"), (exc,))?;
            }
            (Some(s), true, true) => {
                let err =
                    PyRuntimeError::new_err("Child exited without calling task_status.started()");
                s.call_method1(intern!(py, "set_exception"), (err.into_value(py),))?;
            }
            (_, _, false) => TaskGroup::child_failed(group, exc.unbind())?,
            _ => {}
        }
        Ok(())
    }
}

/// The wait in `TaskGroup.__aexit__` (see the module notes).
///
/// Cancel safety: a `CancelledError` thrown in (a native cancel of the host) cancels the group
/// and keeps waiting; the group never exits while a child runs.
struct GroupExit {
    group: Py<TaskGroup>,
    /// The exception the body raised, then the one to re-raise.
    exc: Option<Py<PyAny>>,
    started: bool,
    waited: bool,
    /// Exited by another task than the one that entered the group: the children are
    /// cancelled and awaited, then a RuntimeError says what happened.
    foreign: bool,
}

impl GroupExit {
    fn set_exempt(&self, py: Python<'_>, exempt: bool) {
        if self.foreign {
            return;
        }
        let g = self.group.borrow(py);
        if let (Some(host), Some(rt)) = (g.host, &g.rt) {
            rt.with(|st| {
                if let Some(n) = st.tree.task_mut(host) {
                    n.exempt = exempt;
                }
            });
        }
    }

    fn cancel_group(&self, py: Python<'_>) -> PyResult<()> {
        let scope = self.group.borrow(py).scope.clone_ref(py);
        scope.get().record().cancel(py, None)
    }

    fn begin(&mut self, py: Python<'_>) -> PyResult<()> {
        self.group.borrow_mut(py).state = GroupState::Exiting;
        self.set_exempt(py, true);
        if self.foreign {
            // The host is gone or elsewhere: cancel the children however they can be reached.
            self.cancel_group(py)?;
            let (scope, rt) = {
                let g = self.group.borrow(py);
                (g.scope.clone_ref(py), g.rt.clone())
            };
            if let Some(rt) = rt {
                scope.get().cancel_orphans(py, &rt)?;
            }
            return Ok(());
        }
        if let Some(exc) = &self.exc {
            let exc = exc.clone_ref(py);
            self.cancel_group(py)?;
            if !asyncio::is_cancelled_error(py, exc.bind(py)) {
                self.group.borrow_mut(py).errors.push(exc);
            }
        }
        Ok(())
    }

    fn poll(&mut self, py: Python<'_>) -> PyResult<Step> {
        let loop_ = {
            let g = self.group.borrow(py);
            if g.children == 0 {
                None
            } else {
                Some(g.loop_.as_ref().expect("entered").clone_ref(py))
            }
        };
        let Some(loop_) = loop_ else {
            return self.finish(py);
        };
        let fut = asyncio::create_future(loop_.bind(py))?;
        asyncio::mark_blocking(&fut)?;
        self.group.borrow_mut(py).waiter = Some(fut.clone().unbind());
        self.waited = true;
        Ok(Step::Yield(fut.unbind()))
    }

    fn finish(&mut self, py: Python<'_>) -> PyResult<Step> {
        self.set_exempt(py, false);
        let (scope, errors, host, rt) = {
            let mut g = self.group.borrow_mut(py);
            g.state = GroupState::Closed;
            g.done_cb = None;
            g.waiter = None;
            g.loop_ = None;
            (
                g.scope.clone_ref(py),
                std::mem::take(&mut g.errors),
                g.host,
                g.rt.clone(),
            )
        };
        let scope = scope.get();
        if self.foreign {
            let host_ended = scope.record().fields().host_ended.clone();
            scope.abandon(py);
            return Err(PyRuntimeError::new_err(cross_task_message(
                "TaskGroup",
                host_ended.as_deref(),
            )));
        }
        // Had the host been woken while it waited, it would have seen the cancellation that
        // reached the group's scope: re-raise it so the right scope swallows it.
        if self.waited && self.exc.is_none() {
            if let (Some(host), Some(rt)) = (host, &rt) {
                if let Some(err) = delivery::cancellation_of(py, rt, host) {
                    self.exc = Some(err.into_value(py).into_any());
                }
            }
        }
        if !errors.is_empty() {
            let list = PyList::new(py, errors)?;
            let group_exc = asyncio::base_exception_group_type(py)
                .call1(("unhandled errors in a TaskGroup", list))?;
            group_exc.setattr(intern!(py, "__suppress_context__"), true)?;
            return if scope.exit(py, Some(&group_exc))? {
                Ok(Step::Return(true.into_py_any(py)?))
            } else {
                Err(PyErr::from_value(group_exc))
            };
        }
        if let Some(exc) = self.exc.take() {
            let exc = exc.into_bound(py);
            return if scope.exit(py, Some(&exc))? {
                Ok(Step::Return(true.into_py_any(py)?))
            } else {
                Err(PyErr::from_value(exc))
            };
        }
        scope.exit(py, None)?;
        Ok(Step::Return(false.into_py_any(py)?))
    }
}

impl Drive for GroupExit {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        match input {
            Input::Send(_) => {
                if !self.started {
                    self.started = true;
                    self.begin(py)?;
                }
            }
            Input::Throw(err) => {
                let exc = err.into_value(py).into_any();
                self.cancel_group(py)?;
                if asyncio::is_cancelled_error(py, exc.bind(py)) {
                    let replace = match &self.exc {
                        None => true,
                        Some(prev) => {
                            asyncio::is_cancelled_error(py, prev.bind(py))
                                && !asyncio::is_own_cancellation(py, exc.bind(py))
                        }
                    };
                    if replace {
                        self.exc = Some(exc);
                    }
                } else {
                    self.group.borrow_mut(py).errors.push(exc);
                }
            }
        }
        self.poll(py)
    }

    fn close(&mut self, py: Python<'_>) {
        self.set_exempt(py, false);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.group)?;
        visit.call(&self.exc)
    }
}

/// The wait in `TaskGroup.start()`.
///
/// Cancel safety: if the caller is cancelled before the child called `started()`, the child
/// is cancelled and awaited (further cancellations are ignored while it winds down), then the
/// caller's cancellation is re-raised. Nothing is left running.
struct StartWait {
    fut: Py<PyAny>,
    task: Py<PyAny>,
    saved: Option<PyErr>,
    drain: Option<AwaitTask>,
}

impl Drive for StartWait {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Some(drain) = &mut self.drain {
            // Winding the child down: shielded, so a second cancellation only re-parks us.
            let none = py.None().into_bound(py);
            return match drain.resume(py, Input::Send(none))? {
                Step::Yield(f) => Ok(Step::Yield(f)),
                Step::Return(_) => Err(self.saved.take().expect("saved before draining")),
            };
        }
        match input {
            Input::Send(_) => {
                let fut = self.fut.bind(py);
                if asyncio::is_done(fut)? {
                    return Ok(Step::Return(
                        fut.call_method0(intern!(py, "result"))?.unbind(),
                    ));
                }
                asyncio::mark_blocking(fut)?;
                Ok(Step::Yield(self.fut.clone_ref(py)))
            }
            Input::Throw(err) => {
                let task = self.task.bind(py);
                if asyncio::is_done(task)? {
                    return Err(err);
                }
                task.call_method0(intern!(py, "cancel"))?;
                self.saved = Some(err);
                let mut drain = AwaitTask::new(self.task.clone_ref(py), false);
                let none = py.None().into_bound(py);
                let step = drain.resume(py, Input::Send(none))?;
                self.drain = Some(drain);
                match step {
                    Step::Yield(f) => Ok(Step::Yield(f)),
                    Step::Return(_) => Err(self.saved.take().expect("just saved")),
                }
            }
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)?;
        visit.call(&self.task)?;
        match &self.drain {
            Some(d) => d.traverse(visit),
            None => Ok(()),
        }
    }
}

/// Passed as `task_status` to the function started by `TaskGroup.start()`.
#[pyclass(module = "toolcase_rs", name = "TaskStatus", frozen, generic)]
pub struct TaskStatus {
    fut: Option<Py<PyAny>>,
    group: Option<Py<TaskGroup>>,
    /// The child's key, set before its Task is created.
    child: parking_lot::Mutex<Option<TaskKey>>,
}

impl TaskStatus {
    pub fn ignored() -> Self {
        TaskStatus {
            fut: None,
            group: None,
            child: parking_lot::Mutex::new(None),
        }
    }
}

#[pymethods]
impl TaskStatus {
    /// Report that the task has started; `start()` returns `value`.
    ///
    /// Raises:
    ///     RuntimeError: called twice.
    #[pyo3(signature = (value=None))]
    fn started(&self, py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<()> {
        let Some(fut) = &self.fut else { return Ok(()) };
        let fut = fut.bind(py);
        if asyncio::is_done(fut)? {
            if fut.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
                return Ok(());
            }
            return Err(PyRuntimeError::new_err(
                "called 'started' twice on the same task status",
            ));
        }
        fut.call_method1(intern!(py, "set_result"), (value,))?;
        // The child now belongs to the group's scope.
        let child = *self.child.lock();
        let target = self
            .group
            .as_ref()
            .and_then(|g| g.borrow(py).scope.get().record().location());
        if let (Some(child), Some((rt, scope))) = (child, target) {
            let hit = rt.with(|st| st.tree.reparent_task(child, scope));
            delivery::deliver(py, &rt, hit)?;
        }
        Ok(())
    }

    fn __repr__(&self) -> &'static str {
        if self.fut.is_some() {
            "<TaskStatus>"
        } else {
            "TASK_STATUS_IGNORED"
        }
    }
}
