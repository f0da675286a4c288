// Running sync functions on worker threads, and calling back into the loop from them.
//
// A job. `JobWait` is the awaitable of `to_thread.run_sync` and friends. On its first resume it
// queues the job on a pool and suspends on a fresh future of its loop. The worker runs
// `context.run(fn, *args, **kwargs)` with a copy of the caller's contextvars, stores the outcome
// in the shared `JobShared` and posts one wake-up to the loop's runtime through its LoopPort
// (batched: a burst of completions costs one eventfd write and one loop callback). The wake-up
// resolves whichever future the awaiter is suspended on.
//
// Cancellation. A cancellation thrown into the awaiter sets the job's token. With
// `abandon_on_cancel` the await raises at once and the outcome is dropped when it comes.
// Without it the awaiter keeps waiting (on a new future each time: the cancelled one is spent)
// until the function returns; then a cancellation of one of our scopes lets the result through
// (the scope delivers again at the next checkpoint, as in AnyIO), and a native
// `task.cancel()` is raised, since nothing would re-deliver it.
//
// Worker context. While a job runs, the worker thread knows its job (`JOB`): the runtime of the
// loop that awaits it and its token. That is what lets `from_thread.run()`,
// `from_thread.check_cancelled()` and `current_cancel_token()` work there without arguments.
//
// Calling into a loop (`from_thread`). The call is posted to the loop's runtime as a
// `Handoff`: on the loop it runs the function (or starts a task for an async one); if the loop
// closes first it is refused and the caller gets a `RuntimeError`. The calling thread waits
// with the GIL released and looks every 50 ms whether the loop has closed meanwhile, so a call
// into a dying loop raises instead of hanging.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::types::{PyDict, PyTuple};

use super::pool::Pool;
use super::token::{CancelToken, TokenState};
use crate::asyncio;
use crate::awaitable::{Drive, Input, Step};
use crate::loop_runtime::{self, delivery, tasks, Completion, Handoff, LoopRuntime};

/// What a worker thread knows about the job it runs.
#[derive(Clone)]
pub struct JobContext {
    pub rt: Arc<LoopRuntime>,
    pub token: Arc<TokenState>,
}

thread_local! {
    static JOB: RefCell<Option<JobContext>> = const { RefCell::new(None) };
}

/// The job running in this thread, if any.
pub fn current_job() -> Option<JobContext> {
    JOB.with(|j| j.borrow().clone())
}

/// Shared between a job on its worker and the awaiter on the loop.
struct JobShared {
    outcome: Mutex<Option<PyResult<Py<PyAny>>>>,
    /// The future the awaiter is suspended on (loop thread only).
    waker: Mutex<Option<Py<PyAny>>>,
}

impl JobShared {
    /// On the loop thread: wake the awaiter, if it is waiting.
    fn wake(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.waker.lock().take();
        match fut {
            Some(fut) => asyncio::resolve(fut.bind(py), &py.None().into_bound(py)),
            None => Ok(()),
        }
    }

    fn finish(
        &self,
        py: Python<'_>,
        rt: &Arc<LoopRuntime>,
        shared: Arc<JobShared>,
        out: PyResult<Py<PyAny>>,
    ) {
        *self.outcome.lock() = Some(out);
        rt.post(py, Completion::Run(Box::new(move |py| shared.wake(py))));
    }
}

/// Fails the awaiter if the job is dropped without running (its pool shut down).
struct Unrun {
    shared: Option<Arc<JobShared>>,
    rt: Arc<LoopRuntime>,
}

impl Drop for Unrun {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            Python::attach(|py| {
                let err = PyRuntimeError::new_err(
                    "the worker pool was shut down before this job could run",
                );
                shared.finish(py, &self.rt, shared.clone(), Err(err));
            });
        }
    }
}

enum Phase {
    /// Not started: what to run.
    Pending {
        pool: Arc<Pool>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
    },
    Waiting,
    Done,
}

/// The awaitable state machine of a job.
pub struct JobWait {
    phase: Phase,
    shared: Arc<JobShared>,
    token: Arc<TokenState>,
    abandon: bool,
    /// A cancellation thrown in while we wait for the function to return.
    pending_cancel: Option<PyErr>,
}

impl JobWait {
    pub fn new(
        pool: Arc<Pool>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        abandon: bool,
        token: Arc<TokenState>,
    ) -> Self {
        JobWait {
            phase: Phase::Pending {
                pool,
                func,
                args,
                kwargs,
            },
            shared: Arc::new(JobShared {
                outcome: Mutex::new(None),
                waker: Mutex::new(None),
            }),
            token,
            abandon,
            pending_cancel: None,
        }
    }

    fn start(&mut self, py: Python<'_>) -> PyResult<()> {
        let Phase::Pending {
            pool,
            func,
            args,
            kwargs,
        } = std::mem::replace(&mut self.phase, Phase::Waiting)
        else {
            return Ok(());
        };
        let rt = LoopRuntime::running(py, "to_thread.run_sync()")?;
        let ctx = asyncio::copy_context(py)?.unbind();
        let shared = self.shared.clone();
        let token = self.token.clone();
        let job_rt = rt.clone();
        let mut unrun = Unrun {
            shared: Some(shared.clone()),
            rt: rt.clone(),
        };
        pool.submit(
            py,
            Box::new(move |py| {
                unrun.shared = None;
                let previous = JOB.with(|j| {
                    j.borrow_mut().replace(JobContext {
                        rt: job_rt.clone(),
                        token,
                    })
                });
                let out = call_in_context(
                    py,
                    ctx.bind(py),
                    func.bind(py),
                    args.bind(py),
                    kwargs.as_ref().map(|k| k.bind(py)),
                );
                JOB.with(|j| *j.borrow_mut() = previous);
                // Release the job's arguments here, on the worker, with the GIL held.
                drop((func, args, kwargs, ctx));
                shared.finish(py, &job_rt, shared.clone(), out.map(Bound::unbind));
                drop(unrun);
            }),
        )
    }

    fn suspend(&mut self, py: Python<'_>) -> PyResult<Step> {
        let loop_ = asyncio::running_loop(py, "to_thread.run_sync()")?;
        let fut = asyncio::create_future(&loop_)?;
        asyncio::mark_blocking(&fut)?;
        *self.shared.waker.lock() = Some(fut.clone().unbind());
        Ok(Step::Yield(fut.unbind()))
    }

    fn outcome(&mut self, py: Python<'_>) -> Option<PyResult<Step>> {
        let out = self.shared.outcome.lock().take()?;
        self.phase = Phase::Done;
        Some(match (self.pending_cancel.take(), out) {
            // The function saw its token and stopped with a cancellation (`token.check()`):
            // what the caller gets is the cancellation that set the token.
            (Some(cancel), Err(e)) if asyncio::is_cancelled_error(py, e.value(py)) => Err(cancel),
            (Some(cancel), out) => {
                if asyncio::is_own_cancellation(py, cancel.value(py)) {
                    out.map(Step::Return)
                } else {
                    Err(cancel)
                }
            }
            (None, out) => out.map(Step::Return),
        })
    }
}

/// `ctx.run(func, *args, **kwargs)`.
fn call_in_context<'py>(
    py: Python<'py>,
    ctx: &Bound<'py, PyAny>,
    func: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(func.clone());
    all.extend(args.iter());
    let all = PyTuple::new(py, all)?;
    ctx.getattr(intern!(py, "run"))?.call(all, kwargs)
}

impl Drive for JobWait {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        match input {
            Input::Send(_) => {
                if matches!(self.phase, Phase::Pending { .. }) {
                    self.start(py)?;
                }
                if let Some(done) = self.outcome(py) {
                    return done;
                }
                self.suspend(py)
            }
            Input::Throw(err) => {
                self.shared.waker.lock().take();
                self.token.set(py);
                if self.abandon || matches!(self.phase, Phase::Pending { .. } | Phase::Done) {
                    self.phase = Phase::Done;
                    return Err(err);
                }
                if !asyncio::is_cancelled_error(py, err.value(py)) {
                    // Not a cancellation (KeyboardInterrupt, ...): leave at once.
                    self.phase = Phase::Done;
                    return Err(err);
                }
                if self.pending_cancel.is_none() || !asyncio::is_own_cancellation(py, err.value(py))
                {
                    self.pending_cancel = Some(err);
                }
                if let Some(done) = self.outcome(py) {
                    return done;
                }
                self.suspend(py)
            }
        }
    }

    fn close(&mut self, py: Python<'_>) {
        self.shared.waker.lock().take();
        self.token.set(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Phase::Pending {
            func, args, kwargs, ..
        } = &self.phase
        {
            visit.call(func)?;
            visit.call(args)?;
            if let Some(k) = kwargs {
                visit.call(k)?;
            }
        }
        Ok(())
    }
}

/// A handle on one event loop, for calling into it from other threads (`from_thread.run(...,
/// token=)`, `BlockingPortal`). `lowlevel.current_token()` returns the running loop's.
#[pyclass(module = "toolcase_rs", name = "LoopToken", frozen)]
pub struct LoopToken {
    pub rt: Arc<LoopRuntime>,
}

#[pymethods]
impl LoopToken {
    /// The event loop, or None once it is gone.
    #[getter]
    fn event_loop<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.rt.event_loop(py)
    }

    /// True once the loop has closed (calls into it raise).
    #[getter]
    fn closed(&self) -> bool {
        self.rt.is_closed()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<LoopToken>()
            .is_ok_and(|o| Arc::ptr_eq(&o.get().rt, &self.rt))
    }

    fn __hash__(&self) -> u64 {
        Arc::as_ptr(&self.rt) as usize as u64
    }

    fn __repr__(&self) -> String {
        format!(
            "<LoopToken{}>",
            if self.rt.is_closed() { " (closed)" } else { "" }
        )
    }
}

/// `lowlevel.current_token()`: a token for the running loop.
#[pyfunction]
pub fn current_token(py: Python<'_>) -> PyResult<LoopToken> {
    Ok(LoopToken {
        rt: LoopRuntime::running(py, "current_token()")?,
    })
}

/// `current_cancel_token()`: the job's token in a worker job; in a task, a token mirroring the
/// task's effective cancellation; elsewhere `RuntimeError`.
#[pyfunction]
pub fn current_cancel_token(py: Python<'_>) -> PyResult<CancelToken> {
    if let Some(job) = current_job() {
        return Ok(CancelToken::wrap(job.token));
    }
    let Some(cur) = tasks::current(py, true)? else {
        return Err(PyRuntimeError::new_err(
            "current_cancel_token() must be called in a worker job (to_thread.run_sync, \
             run_in_thread, a ThreadPool job) or in a task of a running event loop",
        ));
    };
    let deadline = cur.rt.with(|st| st.tree.effective_deadline(cur.key));
    let clock = cur
        .rt
        .event_loop(py)
        .map(|l| loop_runtime::weak(&l))
        .transpose()?;
    let state = TokenState::new(deadline, clock);
    if delivery::cancellation_of(py, &cur.rt, cur.key).is_some() {
        state.set(py);
    } else {
        cur.rt.with(|st| {
            st.token_watchers
                .entry(cur.key)
                .or_default()
                .push(Arc::downgrade(&state))
        });
    }
    Ok(CancelToken::wrap(state))
}

/// `from_thread.check_cancelled()`.
#[pyfunction]
pub fn check_cancelled(py: Python<'_>) -> PyResult<()> {
    let Some(job) = current_job() else {
        return Err(PyRuntimeError::new_err(
            "from_thread.check_cancelled() must be called from a worker thread started by \
             toolcase_rs (to_thread.run_sync, run_in_thread)",
        ));
    };
    CancelToken::wrap(job.token).check(py)
}

/// Where the outcome of a call into a loop lands.
pub struct CallSlot {
    result: Mutex<Option<PyResult<Py<PyAny>>>>,
    cv: Condvar,
}

impl CallSlot {
    pub fn new() -> Arc<Self> {
        Arc::new(CallSlot {
            result: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    pub fn set(&self, out: PyResult<Py<PyAny>>) {
        let mut r = self.result.lock();
        if r.is_none() {
            *r = Some(out);
        }
        drop(r);
        self.cv.notify_all();
    }
}

struct FromThread {
    slot: Arc<CallSlot>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    is_async: bool,
    ctx: Py<PyAny>,
    job_token: Option<Arc<TokenState>>,
}

impl Handoff for FromThread {
    fn run(self: Box<Self>, py: Python<'_>) -> PyResult<()> {
        let FromThread {
            slot,
            func,
            args,
            is_async,
            ctx,
            job_token,
        } = *self;
        let out = call_in_context(py, ctx.bind(py), func.bind(py), args.bind(py), None);
        if !is_async {
            slot.set(out.map(Bound::unbind));
            return Ok(());
        }
        let coro = match out {
            Ok(c) => c,
            Err(e) => {
                slot.set(Err(e));
                return Ok(());
            }
        };
        if !asyncio::is_coroutine(&coro) {
            let msg = format!(
                "from_thread.run() expects an async function, but {} returned {} (use \
                 from_thread.run_sync() for a sync function)",
                func.bind(py)
                    .repr()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                coro.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            );
            slot.set(Err(PyTypeError::new_err(msg)));
            return Ok(());
        }
        let started: PyResult<()> = (|| {
            let kwargs = PyDict::new(py);
            kwargs.set_item("context", ctx.bind(py))?;
            let loop_ = asyncio::running_loop(py, "from_thread.run()")?;
            let task = loop_.call_method(intern!(py, "create_task"), (&coro,), Some(&kwargs))?;
            let done = Bound::new(py, SlotDone { slot: slot.clone() })?;
            task.call_method1(intern!(py, "add_done_callback"), (done,))?;
            if let Some(token) = job_token {
                // The worker's host was cancelled: the call is cancelled with it.
                let cancel = loop_.getattr(intern!(py, "call_soon_threadsafe"))?;
                let partial = py
                    .import("functools")?
                    .getattr("partial")?
                    .call1((cancel, task.getattr(intern!(py, "cancel"))?))?;
                let reg = Bound::new(py, CancelToken::wrap(token))?;
                CancelToken::on_cancel(&reg, partial)?;
            }
            Ok(())
        })();
        if let Err(e) = started {
            let _ = coro.call_method0(intern!(py, "close"));
            slot.set(Err(e));
        }
        Ok(())
    }

    fn refuse(self: Box<Self>, _py: Python<'_>) {
        self.slot.set(Err(PyRuntimeError::new_err(
            "the event loop closed before the call from another thread could run",
        )));
    }
}

/// The done-callback of a task started by `from_thread.run()`.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
struct SlotDone {
    slot: Arc<CallSlot>,
}

#[pymethods]
impl SlotDone {
    fn __call__(&self, py: Python<'_>, task: Bound<'_, PyAny>) {
        let out = if task
            .call_method0(intern!(py, "cancelled"))
            .and_then(|c| c.is_truthy())
            .unwrap_or(false)
        {
            Err(PyErr::from_type(
                asyncio::cancelled_error_type(py).clone(),
                "the call into the event loop was cancelled",
            ))
        } else {
            task.call_method0(intern!(py, "result")).map(Bound::unbind)
        };
        self.slot.set(out);
    }
}

/// The runtime behind a `LoopToken` argument.
fn token_runtime(token: &Bound<'_, PyAny>, what: &str) -> PyResult<Arc<LoopRuntime>> {
    Ok(token
        .cast::<LoopToken>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}: token must be a LoopToken from toolcase_rs.lowlevel.current_token(), \
                 got {}",
                token
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?
        .get()
        .rt
        .clone())
}

/// Calls `func(*args)` on a loop and blocks, with the GIL released, until it returns. The loop:
/// `token`'s, else that of the worker job running here, else `fallback`'s (an open
/// `ThreadContext`). `is_async`: `func` is an async function, run as a task of that loop.
#[pyfunction]
#[pyo3(signature = (func, args, is_async, token=None, what="from_thread.run()", fallback=None))]
pub fn call_in_loop(
    py: Python<'_>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    is_async: bool,
    token: Option<&Bound<'_, PyAny>>,
    what: &str,
    fallback: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    if !func.bind(py).is_callable() {
        return Err(PyTypeError::new_err(format!(
            "{what}: the first argument must be callable, got {}",
            func.bind(py).get_type().name()?
        )));
    }
    let job = current_job();
    let rt = match (
        token.filter(|t| !t.is_none()),
        &job,
        fallback.filter(|t| !t.is_none()),
    ) {
        (Some(t), _, _) => token_runtime(t, what)?,
        (None, Some(j), _) => j.rt.clone(),
        (None, None, Some(t)) => token_runtime(t, what)?,
        (None, None, None) => {
            return Err(PyRuntimeError::new_err(format!(
                "{what} does not know which event loop to call: call it from a worker \
                 thread started by toolcase_rs (to_thread.run_sync, run_in_thread), inside a \
                 ThreadContext, or pass token=toolcase_rs.lowlevel.current_token() taken on \
                 the loop"
            )))
        }
    };
    if rt.is_current(py) {
        return Err(PyRuntimeError::new_err(format!(
            "{what} was called from the event loop's own thread, which would deadlock: in async \
             code, await the function (or call it) directly"
        )));
    }
    if rt.is_closed() {
        return Err(PyRuntimeError::new_err(format!(
            "{what}: the event loop is closed"
        )));
    }
    let slot = CallSlot::new();
    let job_token = job.filter(|j| Arc::ptr_eq(&j.rt, &rt)).map(|j| j.token);
    rt.post(
        py,
        Completion::Handoff(Box::new(FromThread {
            slot: slot.clone(),
            func,
            args,
            is_async,
            ctx: asyncio::copy_context(py)?.unbind(),
            job_token,
        })),
    );
    let out = py.detach(|| {
        let mut r = slot.result.lock();
        loop {
            if let Some(out) = r.take() {
                return Some(out);
            }
            if rt.is_closed() {
                return None;
            }
            slot.cv.wait_for(&mut r, Duration::from_millis(50));
        }
    });
    out.unwrap_or_else(|| {
        Err(PyRuntimeError::new_err(format!(
            "{what}: the event loop closed while the call was waiting to finish"
        )))
    })
}
