// `TaskHandle`: what spawning a child returns, and `FutureSetter`, the small callable that
// resolves a native future when something completes.
//
// A handle wraps the child's `asyncio.Task`, or, for an eager child that finished without ever
// suspending, the outcome itself (no Task was created). It is frozen: nothing about it changes
// after creation; its state is read from the Task.

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use std::sync::Arc;

use crate::asyncio;
use crate::awaitable::{Drive, Input, Ready, Step, Waiting};
use crate::errors::TaskCancelled;
use crate::loop_runtime::{Completion, LoopRuntime};
use pyo3::pyclass::{PyTraverseError, PyVisit};

/// How an eager child that never became a Task ended.
pub enum Outcome {
    Returned(Py<PyAny>),
    Raised(Py<PyAny>),
    Cancelled(Py<PyAny>),
}

/// A handle on a child task: its name, state, outcome, and a way to cancel or await it.
///
/// `await handle` returns the child's result (re-raising its exception, or raising
/// `TaskCancelled` if it was cancelled). Cancelling the task that awaits a handle does not
/// cancel the child.
#[pyclass(module = "toolcase_rs", name = "TaskHandle", frozen, generic)]
pub struct TaskHandle {
    task: Option<Py<PyAny>>,
    outcome: Option<Outcome>,
    name: Option<Py<PyAny>>,
    /// The runtime of the task's loop (for a `cancel()` from another thread).
    rt: Option<Arc<LoopRuntime>>,
}

impl TaskHandle {
    pub fn for_task(
        task: Py<PyAny>,
        name: Option<Py<PyAny>>,
        rt: Option<Arc<LoopRuntime>>,
    ) -> Self {
        TaskHandle {
            task: Some(task),
            outcome: None,
            name,
            rt,
        }
    }

    pub fn finished(outcome: Outcome, name: Option<Py<PyAny>>) -> Self {
        TaskHandle {
            task: None,
            outcome: Some(outcome),
            name,
            rt: None,
        }
    }

    pub fn get_task(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task.as_ref().map(|t| t.clone_ref(py))
    }

    /// The child's result, or the error `result()` raises.
    fn outcome(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(o) = &self.outcome {
            return match o {
                Outcome::Returned(v) => Ok(v.clone_ref(py)),
                Outcome::Raised(e) => Err(PyErr::from_value(e.bind(py).clone())),
                Outcome::Cancelled(e) => Err(task_cancelled(py, Some(e.bind(py)))),
            };
        }
        let task = self
            .task
            .as_ref()
            .expect("a handle has a task or an outcome")
            .bind(py);
        if !asyncio::is_done(task)? {
            return Err(asyncio::invalid_state_error(
                py,
                format!(
                    "task {} has not finished yet; await the handle first",
                    self.name_of(py)
                ),
            ));
        }
        outcome_of(task)
    }

    fn name_of(&self, py: Python<'_>) -> String {
        self.name(py)
            .and_then(|n| n.bind(py).str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".to_owned())
    }
}

/// The result of a finished Task, with cancellation reported as `TaskCancelled`.
pub fn outcome_of(task: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = task.py();
    if task.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
        let cause = task.call_method0(intern!(py, "result")).err();
        return Err(task_cancelled(
            py,
            cause.as_ref().map(|e| e.value(py).as_any()),
        ));
    }
    Ok(task.call_method0(intern!(py, "result"))?.unbind())
}

fn task_cancelled(py: Python<'_>, cause: Option<&Bound<'_, PyAny>>) -> PyErr {
    let err = TaskCancelled::new_err("the task was cancelled");
    if let Some(c) = cause {
        err.set_cause(py, Some(PyErr::from_value(c.clone())));
    }
    err
}

struct StateNames {
    pending: Py<PyAny>,
    running: Py<PyAny>,
    completed: Py<PyAny>,
    failed: Py<PyAny>,
    cancelled: Py<PyAny>,
}

static STATES: PyOnceLock<StateNames> = PyOnceLock::new();

fn states(py: Python<'_>) -> PyResult<&StateNames> {
    STATES.get_or_try_init(py, || {
        let cls = py.import("toolcase_rs._types")?.getattr("TaskState")?;
        let get = |n: &str| cls.getattr(n).map(Bound::unbind);
        Ok(StateNames {
            pending: get("PENDING")?,
            running: get("RUNNING")?,
            completed: get("COMPLETED")?,
            failed: get("FAILED")?,
            cancelled: get("CANCELLED")?,
        })
    })
}

#[pymethods]
impl TaskHandle {
    /// The child's name (the Task's name when none was given).
    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(n) = &self.name {
            return Ok(n.clone_ref(py));
        }
        match &self.task {
            Some(t) => Ok(t.bind(py).call_method0(intern!(py, "get_name"))?.unbind()),
            None => Ok(py.None()),
        }
    }

    /// The underlying `asyncio.Task`, or None for an eager child that finished without
    /// suspending.
    #[getter]
    fn task(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task.as_ref().map(|t| t.clone_ref(py))
    }

    /// A `TaskState`: PENDING, RUNNING, COMPLETED, FAILED or CANCELLED.
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = states(py)?;
        let pick = |p: &Py<PyAny>| p.clone_ref(py);
        if let Some(o) = &self.outcome {
            return Ok(pick(match o {
                Outcome::Returned(_) => &s.completed,
                Outcome::Raised(_) => &s.failed,
                Outcome::Cancelled(_) => &s.cancelled,
            }));
        }
        let task = self.task.as_ref().expect("task or outcome").bind(py);
        if asyncio::is_done(task)? {
            if task.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
                return Ok(pick(&s.cancelled));
            }
            let failed = !task.call_method0(intern!(py, "exception"))?.is_none();
            return Ok(pick(if failed { &s.failed } else { &s.completed }));
        }
        let coro = task.call_method0(intern!(py, "get_coro"))?;
        let flag = |n| coro.getattr(n).and_then(|v| v.is_truthy()).unwrap_or(true);
        let started = flag(intern!(py, "cr_suspended")) || flag(intern!(py, "cr_running"));
        Ok(pick(if started { &s.running } else { &s.pending }))
    }

    /// True once the child finished (in any way).
    #[getter]
    fn done(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.task {
            Some(t) => asyncio::is_done(t.bind(py)),
            None => Ok(true),
        }
    }

    /// The child's return value.
    ///
    /// Raises:
    ///     the child's exception if it failed; `TaskCancelled` if it was cancelled;
    ///     `asyncio.InvalidStateError` if it has not finished.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.outcome(py)
    }

    /// The child's exception, or None (not finished, cancelled, or succeeded).
    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if let Some(o) = &self.outcome {
            return Ok(match o {
                Outcome::Raised(e) => Some(e.clone_ref(py)),
                _ => None,
            });
        }
        let task = self.task.as_ref().expect("task or outcome").bind(py);
        if !asyncio::is_done(task)? || task.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            return Ok(None);
        }
        let e = task.call_method0(intern!(py, "exception"))?;
        Ok((!e.is_none()).then(|| e.unbind()))
    }

    /// Cancel this child only; its cancellation is not an error for its group.
    ///
    /// Returns False if it had already finished. Safe to call from any thread (the cancel
    /// then happens on the child's loop).
    #[pyo3(signature = (msg=None))]
    fn cancel(&self, py: Python<'_>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let Some(t) = &self.task else {
            return Ok(false);
        };
        match &self.rt {
            Some(rt) if !rt.is_current(py) => {
                let done = asyncio::is_done(t.bind(py))?;
                let task = t.clone_ref(py);
                rt.post(
                    py,
                    Completion::Run(Box::new(move |py| {
                        task.bind(py).call_method1(intern!(py, "cancel"), (msg,))?;
                        Ok(())
                    })),
                );
                Ok(!done)
            }
            _ => t
                .bind(py)
                .call_method1(intern!(py, "cancel"), (msg,))?
                .is_truthy(),
        }
    }

    /// Wait until the child finishes; never raises for the child's outcome.
    ///
    /// Cancel safety: cancelling the waiter leaves the child running and nothing registered.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.task {
            Some(t) if !asyncio::is_done(t.bind(py))? => Ok(Waiting::op(
                py,
                "TaskHandle.wait()",
                AwaitTask::new(t.clone_ref(py), false),
            )?
            .into_any()),
            _ => Ok(Ready::none(py)?.into_any()),
        }
    }

    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.task {
            Some(t) if !asyncio::is_done(t.bind(py))? => {
                Ok(Waiting::new(py, AwaitTask::new(t.clone_ref(py), true))?.into_any())
            }
            _ => match self.outcome(py) {
                Ok(v) => Ok(Ready::new(py, v)?.into_any()),
                Err(e) => Ok(Waiting::new(py, RaiseOnAwait(Some(e)))?.into_any()),
            },
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = self
            .state(py)
            .and_then(|s| s.bind(py).str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".into());
        format!("<TaskHandle {} {}>", self.name_of(py), state)
    }
}

/// Raises a stored error when awaited.
pub struct RaiseOnAwait(pub Option<PyErr>);

impl Drive for RaiseOnAwait {
    fn resume(&mut self, _py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        match input {
            Input::Throw(e) => Err(e),
            Input::Send(_) => Err(self
                .0
                .take()
                .unwrap_or_else(|| PyRuntimeError::new_err("awaitable already used"))),
        }
    }
}

/// Waits for a Task to finish without awaiting the Task itself (so cancelling the waiter does
/// not cancel the Task). With `want_result`, finishes with the Task's result.
///
/// Cancel safety: a thrown-in exception removes the done-callback and propagates; the Task is
/// untouched.
pub struct AwaitTask {
    task: Py<PyAny>,
    want_result: bool,
    setter: Option<Py<PyAny>>,
}

impl AwaitTask {
    pub fn new(task: Py<PyAny>, want_result: bool) -> Self {
        AwaitTask {
            task,
            want_result,
            setter: None,
        }
    }

    fn unregister(&mut self, py: Python<'_>) {
        if let Some(setter) = self.setter.take() {
            let _ = self
                .task
                .bind(py)
                .call_method1(intern!(py, "remove_done_callback"), (setter,));
        }
    }
}

impl Drive for AwaitTask {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(e) = input {
            self.unregister(py);
            return Err(e);
        }
        let task = self.task.clone_ref(py).into_bound(py);
        let task = &task;
        if asyncio::is_done(task)? {
            self.unregister(py);
            return if self.want_result {
                Ok(Step::Return(outcome_of(task)?))
            } else {
                Ok(Step::Return(py.None()))
            };
        }
        self.unregister(py);
        let loop_ = task.call_method0(intern!(py, "get_loop"))?;
        let fut = asyncio::create_future(&loop_)?;
        let setter = Bound::new(py, FutureSetter::new(fut.clone().unbind()))?;
        task.call_method1(intern!(py, "add_done_callback"), (&setter,))?;
        self.setter = Some(setter.into_any().unbind());
        asyncio::mark_blocking(&fut)?;
        Ok(Step::Yield(fut.unbind()))
    }

    fn close(&mut self, py: Python<'_>) {
        self.unregister(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.task)?;
        visit.call(&self.setter)
    }
}

/// A callable that resolves a future with None (unless it is already done), whatever it is
/// called with. Used as a done-callback and as a timer callback.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct FutureSetter {
    fut: Py<PyAny>,
}

impl FutureSetter {
    pub fn new(fut: Py<PyAny>) -> Self {
        FutureSetter { fut }
    }
}

#[pymethods]
impl FutureSetter {
    #[pyo3(signature = (*_args))]
    fn __call__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        asyncio::resolve(self.fut.bind(py), &py.None().into_bound(py))
    }
}
