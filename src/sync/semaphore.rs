// Semaphore and CapacityLimiter.
//
// Semaphore: a counter of anonymous permits, optionally bounded by `max_value` (releasing past it
// is an error). CapacityLimiter: `total_tokens` tokens, each held by a named borrower (a task, a
// thread, or any object passed to `*_on_behalf_of`); a borrower holds at most one token. Lowering
// `total_tokens` below the borrowed count stops new grants until enough are returned; raising it
// grants queued waiters at once.
//
// Cancel safety: as for every permit primitive (see `Acquire` in mod.rs).

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    acquire_blocking, check_blocking_allowed, current_holder, entered, holder_for, stats_type,
    Acquire, Holder, HolderAcquire, HolderRecord, Permits, Ready, Shared, SharedRef, Waiting,
};
use crate::awaitable::{Drive, Input, Step};
use crate::errors::WouldBlock;
use crate::loop_runtime::{delivery, tasks};
use pyo3::pyclass::{PyTraverseError, PyVisit};

// ----- Semaphore -----------------------------------------------------------------------------

pub struct SemPermits {
    value: usize,
}

impl Permits for SemPermits {
    type Claim = ();

    fn try_take(&mut self, _: &()) -> bool {
        if self.value > 0 {
            self.value -= 1;
            true
        } else {
            false
        }
    }

    fn put_back(&mut self, _: &()) {
        self.value += 1;
    }
}

/// Makes an acquire finish with a fixed value (the semaphore itself for `async with`).
struct Yielding<P: Permits> {
    inner: Acquire<P>,
    value: Py<PyAny>,
}

impl<P: Permits> Drive for Yielding<P> {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        match self.inner.resume(py, input)? {
            Step::Return(_) => Ok(Step::Return(self.value.clone_ref(py))),
            other => Ok(other),
        }
    }

    fn close(&mut self, py: Python<'_>) {
        self.inner.close(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.traverse(visit)?;
        visit.call(&self.value)
    }
}

fn count_arg(value: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    if value.is_instance_of::<pyo3::types::PyBool>()
        || !value.is_instance_of::<pyo3::types::PyInt>()
    {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, got {}",
            value.get_type().name()?
        )));
    }
    let v: i64 = value.extract()?;
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{what} must be >= 0, got {v}")))
}

/// A semaphore: at most `initial_value` holders at once, for tasks of any loop and threads.
///
/// Args:
///     initial_value: the number of permits.
///     max_value: if set, `release()` beyond this many permits raises ValueError.
///     fast_acquire: take a free permit without yielding to the event loop.
#[pyclass(module = "toolcase_rs", name = "Semaphore", frozen)]
pub struct Semaphore {
    shared: SharedRef<SemPermits>,
    max_value: Option<usize>,
    fast: bool,
}

impl Semaphore {
    fn acquire_impl<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
        yield_self: bool,
    ) -> PyResult<Bound<'py, Waiting>> {
        let py = slf.py();
        let me = slf.get();
        let inner = Acquire::new(me.shared.clone(), (), me.fast, timeout);
        if yield_self {
            Waiting::checkpoint(
                py,
                "Semaphore.__aenter__()",
                Yielding {
                    inner,
                    value: slf.clone().into_any().unbind(),
                },
            )
        } else {
            Waiting::checkpoint(py, "Semaphore.acquire()", inner)
        }
    }
}

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (initial_value, *, max_value=None, fast_acquire=false))]
    fn py_new(
        initial_value: &Bound<'_, PyAny>,
        max_value: Option<&Bound<'_, PyAny>>,
        fast_acquire: bool,
    ) -> PyResult<Self> {
        let value = count_arg(initial_value, "initial_value")?;
        let max_value = match max_value {
            Some(m) if !m.is_none() => {
                let m = count_arg(m, "max_value")?;
                if m < value {
                    return Err(PyValueError::new_err(format!(
                        "max_value ({m}) must be >= initial_value ({value})"
                    )));
                }
                Some(m)
            }
            _ => None,
        };
        Ok(Semaphore {
            shared: Shared::new(SemPermits { value }),
            max_value,
            fast: fast_acquire,
        })
    }

    /// Take a permit, waiting in FIFO order; a checkpoint. Returns True (False on timeout).
    #[pyo3(signature = (timeout=None))]
    fn acquire<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, Waiting>> {
        let timeout = super::check_timeout(timeout)?;
        Self::acquire_impl(slf, timeout, false)
    }

    /// Take a permit without waiting; raises WouldBlock if none is free.
    fn acquire_nowait(&self) -> PyResult<()> {
        if self.shared.try_acquire(&()) {
            Ok(())
        } else {
            Err(WouldBlock::new_err("no permit is free"))
        }
    }

    /// Take a permit from a plain thread, blocking it (the GIL is released meanwhile).
    #[pyo3(signature = (timeout=None))]
    fn acquire_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = super::check_timeout(timeout)?;
        check_blocking_allowed(py, "Semaphore.acquire_blocking()")?;
        acquire_blocking(py, &self.shared, &(), timeout)
    }

    /// Return a permit (ValueError past `max_value`).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let max_value = self.max_value;
        self.shared
            .change(|p| {
                if let Some(max) = max_value.filter(|max| p.value >= *max) {
                    return Err(PyValueError::new_err(format!(
                        "semaphore released too many times (max_value={max})"
                    )));
                }
                p.put_back(&());
                Ok(())
            })?
            .run(py)
    }

    /// The number of free permits.
    #[getter]
    fn value(&self) -> usize {
        self.shared.lock().permits.value
    }

    #[getter]
    fn max_value(&self) -> Option<usize> {
        self.max_value
    }

    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        stats_type(py, "SemaphoreStatistics")?.call1((self.shared.waiting(),))
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        if let Some(err) = delivery::current_cancellation(py)? {
            return Ok(Waiting::cancelled(py, err)?.into_any());
        }
        if !me.shared.try_acquire(&()) {
            return Ok(Self::acquire_impl(slf, None, true)?.into_any());
        }
        let shared = me.shared.clone();
        entered(py, me.fast, slf.clone().into_any().unbind(), move || {
            Box::new(move |py| shared.release(&()).run(py))
        })
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Option<&Bound<'py, PyAny>>,
        _exc: Option<&Bound<'py, PyAny>>,
        _tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Ready>> {
        self.release(py)?;
        Ready::none(py)
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        slf.get().acquire_blocking(slf.py(), None)?;
        Ok(slf.clone().unbind())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Semaphore value={} waiters={}>",
            self.value(),
            self.shared.waiting()
        )
    }
}

// ----- CapacityLimiter -----------------------------------------------------------------------

pub struct LimiterPermits {
    /// `f64::INFINITY` for unlimited.
    total: f64,
    borrowers: FxHashSet<Holder>,
}

impl Permits for LimiterPermits {
    type Claim = Holder;

    fn try_take(&mut self, claim: &Holder) -> bool {
        if (self.borrowers.len() as f64) < self.total && !self.borrowers.contains(claim) {
            self.borrowers.insert(*claim);
            true
        } else {
            false
        }
    }

    fn put_back(&mut self, claim: &Holder) {
        self.borrowers.remove(claim);
    }
}

/// The borrower objects, for `statistics()`; outside the primitive's mutex (see OwnerRecord).
#[derive(Default)]
struct Borrowers(Mutex<FxHashMap<Holder, Py<PyAny>>>);

impl Borrowers {
    // Task borrowers are looked up in the runtime instead (see lock.rs OwnerRecord).
    fn add(&self, holder: Holder, obj: Py<PyAny>) {
        if holder.is_task() {
            return;
        }
        let old = self.0.lock().insert(holder, obj);
        drop(old);
    }

    fn remove(&self, holder: Holder) {
        if holder.is_task() {
            return;
        }
        let old = self.0.lock().remove(&holder);
        drop(old);
    }

    fn object(&self, py: Python<'_>, holder: Holder) -> Option<Py<PyAny>> {
        let recorded = self.0.lock().get(&holder).map(|o| o.clone_ref(py));
        holder.object(py, recorded)
    }
}

impl HolderRecord for Borrowers {
    fn add(&self, holder: Holder, obj: Py<PyAny>) {
        Borrowers::add(self, holder, obj);
    }
}

fn check_not_borrowing(shared: &SharedRef<LimiterPermits>, holder: Holder) -> PyResult<()> {
    if shared.lock().permits.borrowers.contains(&holder) {
        return Err(PyRuntimeError::new_err(
            "this borrower is already holding one of this CapacityLimiter's tokens",
        ));
    }
    Ok(())
}

fn total_arg(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(f) = value.extract::<f64>() {
        if value.is_instance_of::<pyo3::types::PyFloat>() {
            if f == f64::INFINITY {
                return Ok(f);
            }
            return Err(PyTypeError::new_err(
                "total_tokens must be an int or math.inf",
            ));
        }
    }
    if value.is_instance_of::<pyo3::types::PyBool>()
        || !value.is_instance_of::<pyo3::types::PyInt>()
    {
        return Err(PyTypeError::new_err(format!(
            "total_tokens must be an int or math.inf, got {}",
            value.get_type().name()?
        )));
    }
    let v: i64 = value.extract()?;
    if v < 1 {
        return Err(PyValueError::new_err(format!(
            "total_tokens must be >= 1, got {v}"
        )));
    }
    Ok(v as f64)
}

/// Limits how many borrowers (tasks, threads, or any object) hold a token at once.
///
/// Args:
///     total_tokens: how many tokens there are (an int >= 1 or `math.inf`); settable later.
///     fast_acquire: take a free token without yielding to the event loop.
#[pyclass(module = "toolcase_rs", name = "CapacityLimiter", frozen)]
pub struct CapacityLimiter {
    shared: SharedRef<LimiterPermits>,
    borrowers: Arc<Borrowers>,
    fast: bool,
}

impl CapacityLimiter {
    /// `holder` None: the task that runs the acquire.
    fn borrow_wait<'py>(
        &self,
        py: Python<'py>,
        holder: Option<(Holder, Py<PyAny>)>,
        timeout: Option<f64>,
        yield_none: bool,
    ) -> PyResult<Bound<'py, Waiting>> {
        Waiting::checkpoint(
            py,
            "CapacityLimiter.acquire()",
            HolderAcquire {
                shared: self.shared.clone(),
                record: self.borrowers.clone(),
                check: check_not_borrowing,
                fast: self.fast,
                timeout,
                holder,
                yield_none,
                inner: None,
            },
        )
    }

    fn check_not_borrowing(&self, holder: Holder) -> PyResult<()> {
        check_not_borrowing(&self.shared, holder)
    }

    fn take_nowait(&self, holder: Holder, obj: Py<PyAny>) -> PyResult<()> {
        self.check_not_borrowing(holder)?;
        if !self.shared.try_acquire(&holder) {
            return Err(WouldBlock::new_err("no token is free"));
        }
        self.borrowers.add(holder, obj);
        Ok(())
    }

    fn give_back(&self, py: Python<'_>, holder: Holder) -> PyResult<()> {
        let wakeups = self.shared.change(|p| {
            if !p.borrowers.contains(&holder) {
                return Err(PyRuntimeError::new_err(
                    "this borrower isn't holding any of this CapacityLimiter's tokens",
                ));
            }
            p.put_back(&holder);
            Ok(())
        })?;
        self.borrowers.remove(holder);
        wakeups.run(py)
    }

    fn total_value(&self) -> f64 {
        self.shared.lock().permits.total
    }

    fn borrowed(&self) -> usize {
        self.shared.lock().permits.borrowers.len()
    }
}

fn tokens_object(py: Python<'_>, v: f64) -> PyResult<Py<PyAny>> {
    use pyo3::IntoPyObjectExt;
    if v.is_infinite() {
        v.into_py_any(py)
    } else {
        (v as u64).into_py_any(py)
    }
}

#[pymethods]
impl CapacityLimiter {
    #[new]
    #[pyo3(signature = (total_tokens, *, fast_acquire=false))]
    fn py_new(total_tokens: &Bound<'_, PyAny>, fast_acquire: bool) -> PyResult<Self> {
        Ok(CapacityLimiter {
            shared: Shared::new(LimiterPermits {
                total: total_arg(total_tokens)?,
                borrowers: FxHashSet::default(),
            }),
            borrowers: Arc::new(Borrowers::default()),
            fast: fast_acquire,
        })
    }

    /// Borrow a token for the current task (or thread); a checkpoint. True, or False on timeout.
    #[pyo3(signature = (timeout=None))]
    fn acquire<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, Waiting>> {
        let timeout = super::check_timeout(timeout)?;
        self.borrow_wait(py, None, timeout, false)
    }

    fn acquire_nowait(&self, py: Python<'_>) -> PyResult<()> {
        let (holder, obj) = current_holder(py)?;
        self.take_nowait(holder, obj)
    }

    /// Borrow a token on behalf of `borrower` (any object).
    #[pyo3(signature = (borrower, timeout=None))]
    fn acquire_on_behalf_of<'py>(
        &self,
        py: Python<'py>,
        borrower: Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, Waiting>> {
        let timeout = super::check_timeout(timeout)?;
        let holder = holder_for(py, &borrower)?;
        self.check_not_borrowing(holder)?;
        self.borrow_wait(py, Some((holder, borrower.unbind())), timeout, false)
    }

    fn acquire_on_behalf_of_nowait(
        &self,
        py: Python<'_>,
        borrower: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let holder = holder_for(py, &borrower)?;
        self.take_nowait(holder, borrower.unbind())
    }

    /// Borrow a token from a plain thread, blocking it (the GIL is released meanwhile).
    #[pyo3(signature = (timeout=None))]
    fn acquire_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = super::check_timeout(timeout)?;
        check_blocking_allowed(py, "CapacityLimiter.acquire_blocking()")?;
        let (holder, obj) = current_holder(py)?;
        self.check_not_borrowing(holder)?;
        let got = acquire_blocking(py, &self.shared, &holder, timeout)?;
        if got {
            self.borrowers.add(holder, obj);
        }
        Ok(got)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let (holder, _) = current_holder(py)?;
        self.give_back(py, holder)
    }

    fn release_on_behalf_of(&self, py: Python<'_>, borrower: Bound<'_, PyAny>) -> PyResult<()> {
        let holder = holder_for(py, &borrower)?;
        self.give_back(py, holder)
    }

    /// Total number of tokens (an int, or `math.inf`); setting it wakes waiters at once.
    #[getter]
    fn total_tokens(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        tokens_object(py, self.total_value())
    }

    #[setter]
    fn set_total_tokens(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let total = total_arg(value)?;
        self.shared
            .change(|p| {
                p.total = total;
                Ok(())
            })?
            .run(py)
    }

    #[getter]
    fn borrowed_tokens(&self) -> usize {
        self.borrowed()
    }

    #[getter]
    fn available_tokens(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let total = self.total_value();
        tokens_object(py, (total - self.borrowed() as f64).max(0.0))
    }

    /// Alias of `total_tokens` (toolcase).
    #[getter]
    fn total(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.total_tokens(py)
    }

    #[setter(total)]
    fn set_total(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_total_tokens(py, value)
    }

    /// Alias of `borrowed_tokens` (toolcase).
    #[getter(borrowed)]
    fn borrowed_alias(&self) -> usize {
        self.borrowed()
    }

    /// Alias of `available_tokens` (toolcase).
    #[getter]
    fn available(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.available_tokens(py)
    }

    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let holders: Vec<Holder> = self
            .shared
            .lock()
            .permits
            .borrowers
            .iter()
            .copied()
            .collect();
        let borrowers: Vec<Py<PyAny>> = holders
            .into_iter()
            .filter_map(|h| self.borrowers.object(py, h))
            .collect();
        stats_type(py, "CapacityLimiterStatistics")?.call1((
            self.borrowed(),
            self.total_tokens(py)?,
            PyTuple::new(py, borrowers)?,
            self.shared.waiting(),
        ))
    }

    fn __aenter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some(cur) = tasks::current(py, true)? else {
            return Ok(self.borrow_wait(py, None, None, true)?.into_any());
        };
        if let Some(err) = delivery::cancellation_of(py, &cur.rt, cur.key) {
            return Ok(Waiting::cancelled(py, err)?.into_any());
        }
        let holder = Holder::task(&cur.rt, cur.key);
        let taken = {
            let mut core = self.shared.lock();
            if core.permits.borrowers.contains(&holder) {
                return Err(PyRuntimeError::new_err(
                    "this borrower is already holding one of this CapacityLimiter's tokens",
                ));
            }
            core.waiters_empty() && core.permits.try_take(&holder)
        };
        if !taken {
            return Ok(self.borrow_wait(py, None, None, true)?.into_any());
        }
        let shared = self.shared.clone();
        entered(py, self.fast, py.None(), move || {
            Box::new(move |py| shared.release(&holder).run(py))
        })
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Option<&Bound<'py, PyAny>>,
        _exc: Option<&Bound<'py, PyAny>>,
        _tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Ready>> {
        self.release(py)?;
        Ready::none(py)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire_blocking(py, None).map(|_| ())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<CapacityLimiter {}/{} borrowed waiters={}>",
            self.borrowed(),
            self.total_value(),
            self.shared.waiting()
        )
    }
}
