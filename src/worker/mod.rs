// Worker threads: running blocking code off the loop thread, with a cancel token it can see.
//
//   token.rs  CancelToken: a one-shot cancellation any thread can wait on (GIL released)
//   pool.rs   Pool: library-owned worker threads, started on demand, ended when idle
//   job.rs    JobWait (the awaitable of a job), from_thread calls into a loop, LoopToken
//   process.rs ProcessWorker: a child interpreter, its framed pipes, kill and reap
//
// Nothing here sits on the path of an ordinary await: a job is queued with one lock and one
// condition-variable signal, and its completion reaches the loop through the loop's LoopPort,
// batched with every other cross-thread completion.

pub mod job;
pub mod pool;
pub mod process;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::awaitable::Waiting;
use crate::sync::IntArg;
use pool::Pool;
use token::TokenState;

/// Idle worker threads end after this long without work (as AnyIO's do).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

static DEFAULT: Mutex<Option<Arc<Pool>>> = Mutex::new(None);

/// The process-wide pool behind `to_thread.run_sync` and `run_in_thread` (how many of its
/// threads run at once is bounded by the thread limiter, not by the pool).
fn default_pool() -> Arc<Pool> {
    let mut d = DEFAULT.lock();
    match d.as_ref() {
        Some(p) if p.is_current() && !p.is_shut_down() => p.clone(),
        _ => {
            let p = Pool::new("toolcase_rs-worker-", usize::MAX, IDLE_TIMEOUT);
            *d = Some(p.clone());
            p
        }
    }
}

/// A pool of worker threads (`ThreadPool` in Python wraps one).
#[pyclass(module = "toolcase_rs._toolcase_rs", name = "WorkerPool", frozen)]
pub struct WorkerPool {
    pool: Arc<Pool>,
}

fn job_awaitable<'py>(
    py: Python<'py>,
    pool: Arc<Pool>,
    func: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    kwargs: Option<Bound<'py, PyDict>>,
    abandon_on_cancel: bool,
    what: &'static str,
) -> PyResult<Bound<'py, Waiting>> {
    if crate::asyncio::is_coroutine(&func) {
        let _ = func.call_method0("close");
        return Err(PyTypeError::new_err(format!(
            "{what} runs a sync function in a worker thread, but got a coroutine object; \
             await it instead"
        )));
    }
    if !func.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "{what}: the function must be callable, got {}",
            func.get_type().name()?
        )));
    }
    let clock = crate::asyncio::running_loop_opt(py)?
        .map(|l| crate::loop_runtime::weak(&l))
        .transpose()?;
    let deadline = match crate::loop_runtime::tasks::current(py, false)? {
        Some(cur) => cur.rt.with(|st| st.tree.effective_deadline(cur.key)),
        None => f64::INFINITY,
    };
    let token = TokenState::new(deadline, clock);
    Waiting::op(
        py,
        what,
        job::JobWait::new(
            pool,
            func.unbind(),
            args.unbind(),
            kwargs.map(Bound::unbind),
            abandon_on_cancel,
            token,
        ),
    )
}

#[pymethods]
impl WorkerPool {
    #[new]
    #[pyo3(signature = (max_workers, thread_name_prefix="toolcase_rs-pool-"))]
    fn py_new(max_workers: Bound<'_, PyAny>, thread_name_prefix: &str) -> PyResult<Self> {
        let IntArg(n) = max_workers.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "max_workers must be an int >= 1, got {}",
                max_workers
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if n < 1 {
            return Err(PyValueError::new_err(format!(
                "max_workers must be at least 1, got {n}"
            )));
        }
        Ok(WorkerPool {
            pool: Pool::new(thread_name_prefix, n as usize, IDLE_TIMEOUT),
        })
    }

    /// The awaitable that runs `func(*args, **kwargs)` on this pool.
    #[pyo3(signature = (func, args, kwargs=None, abandon_on_cancel=false))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        func: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
        abandon_on_cancel: bool,
    ) -> PyResult<Bound<'py, Waiting>> {
        if !self.pool.is_current() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this ThreadPool was created before os.fork(); its threads do not exist in \
                 this process: create a new pool",
            ));
        }
        job_awaitable(
            py,
            self.pool.clone(),
            func,
            args,
            kwargs,
            abandon_on_cancel,
            "ThreadPool.run()",
        )
    }

    /// Stops accepting jobs; `wait`: block until running jobs finish; `cancel_futures`: drop
    /// queued jobs (their awaiters get `RuntimeError`).
    #[pyo3(signature = (wait=true, cancel_futures=false))]
    fn shutdown(&self, py: Python<'_>, wait: bool, cancel_futures: bool) {
        self.pool.shutdown(py, wait, cancel_futures);
    }

    #[getter]
    fn is_shutdown(&self) -> bool {
        self.pool.is_shut_down()
    }

    /// (threads, idle, busy, queued)
    fn counts(&self) -> (usize, usize, usize, usize) {
        self.pool.stats().as_tuple()
    }
}

/// The awaitable behind `to_thread.run_sync` / `run_in_thread` (the limiter is taken in Python).
#[pyfunction]
#[pyo3(signature = (func, args, kwargs=None, abandon_on_cancel=false))]
pub fn run_job<'py>(
    py: Python<'py>,
    func: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    kwargs: Option<Bound<'py, PyDict>>,
    abandon_on_cancel: bool,
) -> PyResult<Bound<'py, Waiting>> {
    job_awaitable(
        py,
        default_pool(),
        func,
        args,
        kwargs,
        abandon_on_cancel,
        "to_thread.run_sync()",
    )
}

/// (threads, idle, busy, queued) of the default pool.
#[pyfunction]
pub fn default_pool_counts() -> (usize, usize, usize, usize) {
    default_pool().stats().as_tuple()
}

/// Shuts every worker pool down (registered with `threading._register_atexit`).
#[pyfunction]
pub fn shutdown_pools(py: Python<'_>) {
    pool::shutdown_all(py);
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<token::CancelToken>()?;
    m.add_class::<token::TokenRegistration>()?;
    m.add_class::<job::LoopToken>()?;
    m.add_class::<WorkerPool>()?;
    m.add_class::<pool::WorkerEntry>()?;
    m.add_class::<process::ProcessWorker>()?;
    m.add_function(wrap_pyfunction!(run_job, m)?)?;
    m.add_function(wrap_pyfunction!(default_pool_counts, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown_pools, m)?)?;
    m.add_function(wrap_pyfunction!(job::current_token, m)?)?;
    m.add_function(wrap_pyfunction!(job::current_cancel_token, m)?)?;
    m.add_function(wrap_pyfunction!(job::check_cancelled, m)?)?;
    m.add_function(wrap_pyfunction!(job::call_in_loop, m)?)?;
    // Worker threads must be gone before the interpreter finalises (see pool.rs).
    let threading = py.import("threading")?;
    let shutdown = m.getattr("shutdown_pools")?;
    match threading.getattr("_register_atexit") {
        Ok(reg) => reg.call1((shutdown,))?,
        Err(_) => py.import("atexit")?.call_method1("register", (shutdown,))?,
    };
    Ok(())
}
