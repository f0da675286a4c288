// Eager start: running a child's first step synchronously inside `start_soon`.
//
// A child that finishes without suspending never becomes an `asyncio.Task` (0.13-0.15 us against
// 3.8 us for a Task, measured). A child that suspends has already run part of its body, so it
// cannot be handed to `asyncio.Task` as is (the Task would send `None` into it, resuming it as if
// the future it yielded had completed). `EagerCoroutine` wraps it: its first `send` hands the
// Task the object the child yielded, and every later call goes straight to the child.
//
// Python 3.12's eager tasks (`eager_start=True`) do the same inside asyncio and also make the
// child the current task during its first step; on 3.11 there is no way to do that, so during the
// first step `asyncio.current_task()` still names the spawning task (documented). The runtime
// knows better: it attributes scopes entered during that step to the child (`eager_current`).

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;

use crate::asyncio::{self, Sent};
use crate::awaitable::thrown_error;

/// The coroutine of an eager child that suspended during its first step.
#[pyclass(module = "toolcase_rs._toolcase_rs", name = "EagerCoroutine")]
pub struct EagerCoroutine {
    coro: Py<PyAny>,
    /// What the child yielded in its first step, until the Task takes it.
    first: Option<Py<PyAny>>,
}

impl EagerCoroutine {
    pub fn new(coro: Py<PyAny>, first: Py<PyAny>) -> Self {
        EagerCoroutine {
            coro,
            first: Some(first),
        }
    }
}

fn finish(py: Python<'_>, sent: Sent<'_>) -> PyResult<Py<PyAny>> {
    match sent {
        Sent::Yielded(v) => Ok(v.unbind()),
        Sent::Returned(v) if v.is_none() => Err(PyStopIteration::new_err(())),
        Sent::Returned(v) => {
            let _ = py;
            Err(PyStopIteration::new_err((v.unbind(),)))
        }
    }
}

#[pymethods]
impl EagerCoroutine {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let none = slf.py().None().into_bound(slf.py());
        Self::send(slf, none)
    }

    fn send(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (first, coro) = {
            let mut s = slf.borrow_mut();
            (s.first.take(), s.coro.clone_ref(py))
        };
        if let Some(first) = first {
            return Ok(first);
        }
        finish(py, asyncio::send(coro.bind(py), &value)?)
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        slf: &Bound<'_, Self>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (first, coro) = {
            let mut s = slf.borrow_mut();
            (s.first.take(), s.coro.clone_ref(py))
        };
        // Cancelled before the Task ever waited on what the child yielded: cancel that future
        // as the Task would have, so a timer behind it does not fire for nobody.
        if let Some(first) = first {
            let first = first.bind(py);
            if asyncio::is_future(first) {
                first.call_method0(intern!(py, "cancel"))?;
            }
        }
        let err = thrown_error(typ, val, tb);
        let out = coro
            .bind(py)
            .call_method1(intern!(py, "throw"), (err.into_value(py),));
        out.map(Bound::unbind)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.coro.bind(py).call_method0(intern!(py, "close"))?;
        Ok(())
    }

    fn __traverse__(
        &self,
        visit: pyo3::pyclass::PyVisit<'_>,
    ) -> Result<(), pyo3::pyclass::PyTraverseError> {
        visit.call(&self.coro)?;
        visit.call(&self.first)
    }

    fn __clear__(&mut self) {
        self.first = None;
    }

    /// Everything else (`cr_frame`, `cr_code`, `__qualname__`, ...) is the child's.
    fn __getattr__(
        &self,
        py: Python<'_>,
        name: Bound<'_, pyo3::types::PyString>,
    ) -> PyResult<Py<PyAny>> {
        Ok(self.coro.bind(py).getattr(name)?.unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<eager {}>", self.coro.bind(py).repr()?))
    }
}
