// Awaitables implemented in Rust: the await protocol for every operation of the library.
//
// Two types cover everything:
// * `Ready` holds a value that is already known. Awaiting it returns the value without touching
//   the event loop (rule 1 of ARCHITECTURE.md: an operation that can finish now never suspends).
// * `Waiting` drives a small state machine (`Drive`) that suspends by yielding a native
//   `asyncio.Future` (or `None`, for a bare one-iteration yield) straight to the Task, and is
//   resumed with `send` or `throw` like a generator.
//
// Both also get the `am_send` slot of their type patched at module initialisation. PyO3 cannot
// declare that slot, and without it CPython resumes a non-generator awaitable through
// `tp_iternext` plus a `StopIteration` carrying the result (130-210 ns); with it,
// `PyIter_Send` hands the result back directly (33-41 ns).
//
// Threads: these run on the loop thread of the task that awaits them. Drop order: a `Waiting`
// dropped mid-flight (its coroutine was garbage-collected) drops its state machine, which
// releases the Python references it holds; nothing else is left armed, because every wait
// registers its wake-up on a future that dies with it or cleans up in `close`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

/// What a state machine does next.
pub enum Step {
    /// Suspend: hand this object (a native future, or `None` for a bare yield) to the Task.
    Yield(Py<PyAny>),
    /// Finish with this value.
    Return(Py<PyAny>),
}

/// How the awaiting coroutine resumed us.
pub enum Input<'py> {
    Send(Bound<'py, PyAny>),
    Throw(PyErr),
}

/// A suspended operation. `resume` is called once to start (with `Send(None)`), then once per
/// wake-up. Implementations document their cancel safety: what a `CancelledError` thrown in
/// while suspended leaves behind.
pub trait Drive: Send + Sync + 'static {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step>;

    /// The awaiting coroutine was closed while we were suspended.
    fn close(&mut self, _py: Python<'_>) {}

    /// Visits the Python objects the machine holds, for the cycle collector: a task suspended
    /// on us forms the cycle Task -> coroutine -> this awaitable -> future -> Task, which must
    /// be collectable when the task is abandoned. Must only call `visit.call`.
    fn traverse(&self, _visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }
}

/// Await helper for a value that is already known.
#[pyclass(module = "toolcase_rs._toolcase_rs", name = "Ready", frozen)]
pub struct Ready {
    value: Py<PyAny>,
}

impl Ready {
    pub fn new(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, Ready>> {
        Bound::new(py, Ready { value })
    }

    /// A shared, already-complete awaitable of None (no allocation per use).
    pub fn none(py: Python<'_>) -> PyResult<Bound<'_, Ready>> {
        static NONE: PyOnceLock<Py<Ready>> = PyOnceLock::new();
        let ready = NONE.get_or_try_init(py, || Py::new(py, Ready { value: py.None() }))?;
        Ok(ready.bind(py).clone())
    }

    /// A shared, already-complete awaitable of True.
    pub fn true_(py: Python<'_>) -> PyResult<Bound<'_, Ready>> {
        static TRUE: PyOnceLock<Py<Ready>> = PyOnceLock::new();
        let ready = TRUE.get_or_try_init(py, || {
            Py::new(
                py,
                Ready {
                    value: pyo3::types::PyBool::new(py, true)
                        .to_owned()
                        .into_any()
                        .unbind(),
                },
            )
        })?;
        Ok(ready.bind(py).clone())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Err(stop_iteration(py, self.value.clone_ref(py)))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.value)
    }

    #[pyo3(signature = (value=None))]
    fn send(&self, py: Python<'_>, value: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let _ = value;
        Err(stop_iteration(py, self.value.clone_ref(py)))
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &self,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Err(thrown_error(typ, val, tb))
    }

    fn close(&self) {}
}

/// Await helper that suspends on native futures; see the module notes.
#[pyclass(module = "toolcase_rs._toolcase_rs", name = "Waiting")]
pub struct Waiting {
    /// `None` once finished or closed.
    drive: Option<Box<dyn Drive>>,
}

impl Waiting {
    pub fn new(py: Python<'_>, drive: impl Drive) -> PyResult<Bound<'_, Waiting>> {
        Bound::new(
            py,
            Waiting {
                drive: Some(Box::new(drive)),
            },
        )
    }

    fn step(slf: &Bound<'_, Self>, input: Input<'_>) -> PyResult<Step> {
        let py = slf.py();
        // Take the machine out while it runs, so Python code it calls can never observe (or
        // re-enter) a borrowed `Waiting`.
        let mut drive = match slf.borrow_mut().drive.take() {
            Some(d) => d,
            None => {
                return match input {
                    Input::Throw(err) => Err(err),
                    Input::Send(_) => Err(PyTypeError::new_err(
                        "cannot reuse an awaitable that already finished; call the API again",
                    )),
                }
            }
        };
        let out = drive.resume(py, input);
        if let Ok(Step::Yield(_)) = out {
            slf.borrow_mut().drive = Some(drive);
        }
        out
    }
}

#[pymethods]
impl Waiting {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let none = slf.py().None().into_bound(slf.py());
        match Self::step(slf, Input::Send(none))? {
            Step::Yield(v) => Ok(Some(v)),
            Step::Return(v) => Err(stop_iteration(slf.py(), v)),
        }
    }

    #[pyo3(signature = (value=None))]
    fn send(slf: &Bound<'_, Self>, value: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let value = value.unwrap_or_else(|| slf.py().None().into_bound(slf.py()));
        match Self::step(slf, Input::Send(value))? {
            Step::Yield(v) => Ok(v),
            Step::Return(v) => Err(stop_iteration(slf.py(), v)),
        }
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        slf: &Bound<'_, Self>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let err = thrown_error(typ, val, tb);
        match Self::step(slf, Input::Throw(err))? {
            Step::Yield(v) => Ok(v),
            Step::Return(v) => Err(stop_iteration(slf.py(), v)),
        }
    }

    fn close(slf: &Bound<'_, Self>) {
        let drive = slf.borrow_mut().drive.take();
        if let Some(mut d) = drive {
            d.close(slf.py());
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        match &self.drive {
            Some(d) => d.traverse(&visit),
            None => Ok(()),
        }
    }

    fn __clear__(&mut self) {
        // Breaks the cycle; the machine's Drop releases what it holds.
        self.drive = None;
    }
}

fn stop_iteration(py: Python<'_>, value: Py<PyAny>) -> PyErr {
    if value.is_none(py) {
        PyStopIteration::new_err(())
    } else {
        PyStopIteration::new_err((value,))
    }
}

/// The exception described by generator-style `throw(typ[, val[, tb]])` arguments.
pub fn thrown_error(
    typ: Bound<'_, PyAny>,
    val: Option<Bound<'_, PyAny>>,
    tb: Option<Bound<'_, PyAny>>,
) -> PyErr {
    let py = typ.py();
    let exc = if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        Ok(typ)
    } else if let Ok(cls) = typ.cast::<PyType>() {
        match val {
            Some(v) if v.is_instance(cls).unwrap_or(false) => Ok(v),
            Some(v) if v.is_instance_of::<PyTuple>() => {
                cls.call1(v.cast_into::<PyTuple>().unwrap())
            }
            Some(v) if !v.is_none() => cls.call1((v,)),
            _ => cls.call0(),
        }
    } else {
        return PyTypeError::new_err("throw() expects an exception type or instance");
    };
    match exc {
        Ok(exc) => {
            if let Some(tb) = tb.filter(|t| !t.is_none()) {
                let _ = exc.call_method1(pyo3::intern!(py, "with_traceback"), (tb,));
            }
            PyErr::from_value(exc)
        }
        Err(e) => e,
    }
}

// ----- the am_send fast path ------------------------------------------------------------------

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic in toolcase_rs".to_owned());
    PanicException::new_err(msg)
}

/// Writes an outcome the way `am_send` must report it.
///
/// # Safety
/// `presult` must be valid for writes; the caller is attached to the interpreter.
unsafe fn report(
    py: Python<'_>,
    out: std::thread::Result<PyResult<Step>>,
    presult: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    let out = out.unwrap_or_else(|payload| Err(panic_error(payload)));
    match out {
        Ok(Step::Yield(v)) => {
            // SAFETY: the caller guarantees `presult` is writable; we hand over a new reference.
            unsafe { *presult = v.into_ptr() };
            ffi::PySendResult::PYGEN_NEXT
        }
        Ok(Step::Return(v)) => {
            // SAFETY: as above.
            unsafe { *presult = v.into_ptr() };
            ffi::PySendResult::PYGEN_RETURN
        }
        Err(e) => {
            e.restore(py);
            // SAFETY: as above; on error CPython expects NULL.
            unsafe { *presult = std::ptr::null_mut() };
            ffi::PySendResult::PYGEN_ERROR
        }
    }
}

unsafe extern "C" fn waiting_am_send(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    presult: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython calls am_send with the interpreter attached (it holds the GIL).
    let py = unsafe { Python::assume_attached() };
    let out = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the slot is installed only on the `Waiting` type, so `slf` is a live
        // `Waiting`; `arg` is a live borrowed reference (CPython passes None for a plain
        // resume).
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Waiting>() };
        // SAFETY: see above.
        let arg = unsafe { Bound::from_borrowed_ptr(py, arg) };
        Waiting::step(&slf, Input::Send(arg))
    }));
    // SAFETY: `presult` comes from CPython's PyIter_Send and is writable.
    unsafe { report(py, out, presult) }
}

unsafe extern "C" fn ready_am_send(
    slf: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    presult: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython calls am_send with the interpreter attached.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the slot is installed only on the `Ready` type, so `slf` is a live `Ready`.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Ready>() };
    let value = slf.get().value.clone_ref(py);
    // SAFETY: `presult` comes from CPython's PyIter_Send and is writable.
    unsafe { report(py, Ok(Ok(Step::Return(value))), presult) }
}

/// Installs the `am_send` fast path on both awaitable types. Called once from module init.
pub fn install_am_send(py: Python<'_>) -> PyResult<()> {
    use pyo3::PyTypeInfo;
    for (ty, send) in [
        (
            Waiting::type_object_raw(py),
            waiting_am_send as ffi::sendfunc,
        ),
        (Ready::type_object_raw(py), ready_am_send as ffi::sendfunc),
    ] {
        // SAFETY: `ty` is a heap type created by PyO3 for a class that defines `__await__`, so
        // `tp_as_async` points at the `as_async` block embedded in its PyHeapTypeObject and is
        // writable; no instance has been resumed yet (this runs during module init, under the
        // GIL). `PyType_Modified` invalidates any cached slot lookups.
        unsafe {
            let as_async = (*ty).tp_as_async;
            if as_async.is_null() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "internal error: awaitable type without tp_as_async",
                ));
            }
            (*as_async).am_send = Some(send);
            ffi::PyType_Modified(ty);
        }
    }
    Ok(())
}
