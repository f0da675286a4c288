// Lock and RLock.
//
// One owner at a time (a task, or a thread for blocking callers); FIFO hand-off: `release()`
// gives the lock straight to the next waiter, so a newcomer cannot overtake it. RLock lets its
// owner re-enter (and re-entering never queues behind other waiters).
//
// Cancel safety: see `Acquire` in mod.rs: a cancelled acquire leaves the queue, or passes on a
// lock it was granted; nothing is lost.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::{
    acquire_blocking, check_blocking_allowed, current_holder, entered, stats_type, Holder,
    HolderAcquire, HolderRecord, Permits, Ready, Shared, SharedRef, Waiting,
};
use crate::errors::WouldBlock;
use crate::loop_runtime::{delivery, tasks};

pub struct LockPermits {
    reentrant: bool,
    owner: Option<Holder>,
    /// Acquisitions by the owner not yet released (1 for a plain lock).
    count: usize,
}

impl Permits for LockPermits {
    type Claim = Holder;

    fn try_take(&mut self, claim: &Holder) -> bool {
        match self.owner {
            None => {
                self.owner = Some(*claim);
                self.count = 1;
                true
            }
            Some(o) if self.reentrant && o == *claim => {
                self.count += 1;
                true
            }
            Some(_) => false,
        }
    }

    fn put_back(&mut self, claim: &Holder) {
        if self.owner == Some(*claim) {
            self.count -= 1;
            if self.count == 0 {
                self.owner = None;
            }
        }
    }

    fn may_barge(&self, claim: &Holder) -> bool {
        self.reentrant && self.owner == Some(*claim)
    }
}

/// The object that owns a lock, for `statistics()`, recorded by the acquire paths that wait
/// (the task may have finished by the time anyone asks) and by the blocking API; kept outside
/// the primitive's mutex so dropping it never happens under that lock. The uncontended
/// `async with` path skips it: that owner is a running task the runtime can name.
#[derive(Default)]
pub struct OwnerRecord(Mutex<Option<(Holder, Py<PyAny>)>>);

impl OwnerRecord {
    pub fn set(&self, holder: Holder, obj: Py<PyAny>) {
        let old = self.0.lock().replace((holder, obj));
        drop(old);
    }

    pub fn clear_if(&self, holder: Holder) {
        let old = {
            let mut g = self.0.lock();
            if g.as_ref().is_some_and(|(h, _)| *h == holder) {
                g.take()
            } else {
                None
            }
        };
        drop(old);
    }

    pub fn get(&self, py: Python<'_>, holder: Holder) -> Option<Py<PyAny>> {
        let recorded = self
            .0
            .lock()
            .as_ref()
            .filter(|(h, _)| *h == holder)
            .map(|(_, o)| o.clone_ref(py));
        holder.object(py, recorded)
    }
}

impl HolderRecord for OwnerRecord {
    fn add(&self, holder: Holder, obj: Py<PyAny>) {
        self.set(holder, obj);
    }
}

fn check_not_owner(shared: &SharedRef<LockPermits>, holder: Holder) -> PyResult<()> {
    let core = shared.lock();
    if !core.permits.reentrant && core.permits.owner == Some(holder) {
        return Err(PyRuntimeError::new_err(
            "Attempted to acquire an already held Lock (it is not re-entrant; use RLock)",
        ));
    }
    Ok(())
}

/// Shared implementation of Lock and RLock.
pub struct LockCore {
    shared: SharedRef<LockPermits>,
    owner: Arc<OwnerRecord>,
    fast: bool,
    reentrant: bool,
}

impl LockCore {
    fn new(reentrant: bool, fast: bool) -> Self {
        LockCore {
            shared: Shared::new(LockPermits {
                reentrant,
                owner: None,
                count: 0,
            }),
            owner: Arc::new(OwnerRecord::default()),
            fast,
            reentrant,
        }
    }

    fn reentrant(&self) -> bool {
        self.reentrant
    }

    pub fn acquire<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        yield_none: bool,
    ) -> PyResult<Bound<'py, Waiting>> {
        Waiting::checkpoint(
            py,
            if self.reentrant() {
                "RLock.acquire()"
            } else {
                "Lock.acquire()"
            },
            HolderAcquire {
                shared: self.shared.clone(),
                record: self.owner.clone(),
                check: check_not_owner,
                fast: self.fast,
                timeout,
                holder: None,
                yield_none,
                inner: None,
            },
        )
    }

    /// `async with lock:` entry: takes the lock at once when it is free (one lookup of the
    /// current task, no awaitable state machine), else waits like `acquire()`.
    pub fn enter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some(cur) = tasks::current(py, true)? else {
            return Ok(self.acquire(py, None, true)?.into_any());
        };
        if let Some(err) = delivery::cancellation_of(py, &cur.rt, cur.key) {
            return Ok(Waiting::cancelled(py, err)?.into_any());
        }
        let holder = Holder::task(&cur.rt, cur.key);
        if !self.take_now(holder)? {
            return Ok(self.acquire(py, None, true)?.into_any());
        }
        let shared = self.shared.clone();
        entered(py, self.fast, py.None(), move || {
            Box::new(move |py| shared.release(&holder).run(py))
        })
    }

    /// Takes the lock for `holder` if it is free and nobody waits, in one critical section.
    fn take_now(&self, holder: Holder) -> PyResult<bool> {
        let mut core = self.shared.lock();
        if !core.permits.reentrant && core.permits.owner == Some(holder) {
            return Err(PyRuntimeError::new_err(
                "Attempted to acquire an already held Lock (it is not re-entrant; use RLock)",
            ));
        }
        Ok((core.waiters_empty() || core.permits.may_barge(&holder))
            && core.permits.try_take(&holder))
    }

    pub fn acquire_nowait(&self, py: Python<'_>) -> PyResult<()> {
        let (holder, obj) = current_holder(py)?;
        check_not_owner(&self.shared, holder)?;
        if !self.shared.try_acquire(&holder) {
            return Err(WouldBlock::new_err("the lock is held"));
        }
        self.owner.set(holder, obj);
        Ok(())
    }

    pub fn acquire_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = super::check_timeout(timeout)?;
        check_blocking_allowed(py, "Lock.acquire_blocking()")?;
        let (holder, obj) = current_holder(py)?;
        if !self.reentrant() && self.shared.lock().permits.owner == Some(holder) {
            return Err(PyRuntimeError::new_err(
                "Attempted to acquire an already held Lock from the same thread",
            ));
        }
        let got = acquire_blocking(py, &self.shared, &holder, timeout)?;
        if got {
            self.owner.set(holder, obj);
        }
        Ok(got)
    }

    pub fn release(&self, py: Python<'_>) -> PyResult<()> {
        let (holder, _) = current_holder(py)?;
        let wakeups = self.shared.change(|p| {
            if p.owner != Some(holder) {
                return Err(PyRuntimeError::new_err(if p.owner.is_none() {
                    "release() called on an unlocked lock"
                } else {
                    "The current task is not holding this lock"
                }));
            }
            p.put_back(&holder);
            Ok(())
        })?;
        self.owner.clear_if(holder);
        wakeups.run(py)
    }

    pub fn locked(&self) -> bool {
        self.shared.lock().permits.owner.is_some()
    }

    pub fn statistics<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let (owner, count) = {
            let core = self.shared.lock();
            (core.permits.owner, core.permits.count)
        };
        let locked = owner.is_some();
        let owner = owner.and_then(|h| self.owner.get(py, h));
        let waiting = self.shared.waiting();
        let cls = stats_type(py, name)?;
        if self.reentrant() {
            cls.call1((locked, owner, waiting, count))
        } else {
            cls.call1((locked, owner, waiting))
        }
    }
}

macro_rules! lock_methods {
    ($ty:ident, $stats:literal, $reentrant:literal) => {
        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (*, fast_acquire=false))]
            fn py_new(fast_acquire: bool) -> Self {
                $ty {
                    core: LockCore::new($reentrant, fast_acquire),
                }
            }

            /// Acquire the lock, waiting in FIFO order; a checkpoint.
            ///
            /// Returns True, or False if `timeout` seconds passed first.
            #[pyo3(signature = (timeout=None))]
            fn acquire<'py>(
                &self,
                py: Python<'py>,
                timeout: Option<f64>,
            ) -> PyResult<Bound<'py, Waiting>> {
                let timeout = super::check_timeout(timeout)?;
                self.core.acquire(py, timeout, false)
            }

            /// Acquire without waiting; raises WouldBlock if the lock is held.
            fn acquire_nowait(&self, py: Python<'_>) -> PyResult<()> {
                self.core.acquire_nowait(py)
            }

            /// Acquire from a plain thread, blocking it (the GIL is released meanwhile).
            #[pyo3(signature = (timeout=None))]
            fn acquire_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
                let timeout = super::check_timeout(timeout)?;
                self.core.acquire_blocking(py, timeout)
            }

            /// Release the lock; RuntimeError unless the caller holds it.
            fn release(&self, py: Python<'_>) -> PyResult<()> {
                self.core.release(py)
            }

            /// True if the lock is held.
            fn locked(&self) -> bool {
                self.core.locked()
            }

            fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.core.statistics(py, $stats)
            }

            fn __aenter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.core.enter(py)
            }

            #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
            fn __aexit__<'py>(
                &self,
                py: Python<'py>,
                _exc_type: Option<&Bound<'py, PyAny>>,
                _exc: Option<&Bound<'py, PyAny>>,
                _tb: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, Ready>> {
                self.core.release(py)?;
                Ready::none(py)
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
                self.core.acquire_blocking(py, None).map(|_| ())
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(
                &self,
                py: Python<'_>,
                _args: &Bound<'_, pyo3::types::PyTuple>,
            ) -> PyResult<()> {
                self.core.release(py)
            }

            fn __repr__(&self) -> String {
                let state = if self.core.locked() {
                    "locked"
                } else {
                    "unlocked"
                };
                format!(
                    "<{} {state} waiters={}>",
                    stringify!($ty),
                    self.core.shared.waiting()
                )
            }
        }
    };
}

/// A mutual-exclusion lock for tasks of any event loop and for plain threads.
///
/// `async with lock:` in async code; `with lock:` or `acquire_blocking()` in a plain thread.
/// Waiters are served first come, first served.
///
/// Args:
///     fast_acquire: when the lock is free, take it without yielding to the event loop (the
///         acquire still raises if the task is cancelled).
#[pyclass(module = "toolcase_rs", name = "Lock", frozen)]
pub struct Lock {
    core: LockCore,
}

lock_methods!(Lock, "LockStatistics", false);

/// A re-entrant lock: its owner (task, or thread for blocking use) may acquire it again, and
/// must release it as many times.
#[pyclass(module = "toolcase_rs", name = "RLock", frozen)]
pub struct RLock {
    core: LockCore,
}

lock_methods!(RLock, "RLockStatistics", true);
