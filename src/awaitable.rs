// Awaitables implemented in Rust: the await protocol for every operation of the library.
//
// Two types cover everything:
// * `Ready` holds a value that is already known. Awaiting it returns the value without touching
//   the event loop (docs/architecture.md: an operation that can finish now never suspends).
// * `Waiting` drives a small state machine (`Drive`) that suspends by yielding a native
//   `asyncio.Future` (or `None`, for a bare one-iteration yield) straight to the Task, and is
//   resumed with `send` or `throw` like a generator.
//
// The fast path. PyO3 declares the await protocol through Python-level methods; the slots that
// `await` actually uses are patched once at module initialisation with plain C functions:
// * `am_await` (`__await__`) returns the object itself;
// * `am_send` (3.11's `await` resumes through it): the value comes back without a
//   `StopIteration` (33-41 ns instead of 130-210 ns);
// * `tp_iternext`: 3.12 and later never call `am_send` (their SEND goes through `tp_iternext`
//   when resuming with None). A result of None is reported as NULL with no exception set (which
//   SEND reads as "returned None"), True and False as pre-built `StopIteration`s, anything else
//   as a fresh `StopIteration(value)` raised without chaining. That is the cheapest way to finish
//   an await from C on 3.12+.
//
// Checkpoints. A `Waiting` made with `Waiting::checkpoint` is a toolcase_rs checkpoint: before
// its state machine starts, it asks whether the current task is inside a cancelled scope; if so
// it passes through the event loop once (a bare yield) and then raises the cancellation, as
// trio's checkpoints do. Code that swallows cancellation in a loop therefore cannot starve the
// other tasks of its loop. The uncancelled path pays one O(1) check, nothing more.
//
// A forgotten `await`. A `Waiting` made with `Waiting::op` or `Waiting::checkpoint` that is
// dropped without ever being resumed emits `RuntimeWarning("... was never awaited")` naming its
// operation, like an un-awaited coroutine; nothing it would have done has happened (every
// operation does its work on the first resume).
//
// Threads: these run on the loop thread of the task that awaits them. Drop order: a `Waiting`
// dropped mid-flight (its coroutine was garbage-collected) drops its state machine, which
// releases the Python references it holds; nothing else is left armed, because every wait
// registers its wake-up on a future that dies with it or cleans up in `close`/`Drop`.

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyRuntimeWarning, PyStopIteration, PyTypeError};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyTuple, PyType};

use crate::loop_runtime::delivery;

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
                    value: PyBool::new(py, true).to_owned().into_any().unbind(),
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

/// Where a checkpoint is, before the state machine starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Not a checkpoint, or already past the check.
    Passed,
    /// A checkpoint that has not looked yet.
    Pending,
    /// Cancelled: yielded to the loop once; the next resume raises (if still cancelled).
    Yielded,
}

/// Await helper that suspends on native futures; see the module notes.
#[pyclass(module = "toolcase_rs._toolcase_rs", name = "Waiting")]
pub struct Waiting {
    /// `None` once finished or closed.
    drive: Option<Box<dyn Drive>>,
    /// The operation, for the "never awaited" warning (None: internal, no warning).
    op: Option<&'static str>,
    started: bool,
    check: Check,
}

impl Waiting {
    fn make<'py>(
        py: Python<'py>,
        drive: Box<dyn Drive>,
        op: Option<&'static str>,
        check: Check,
    ) -> PyResult<Bound<'py, Waiting>> {
        Bound::new(
            py,
            Waiting {
                drive: Some(drive),
                op,
                started: false,
                check,
            },
        )
    }

    /// An internal wait (part of a protocol the caller always drives, like `__aexit__`).
    pub fn new(py: Python<'_>, drive: impl Drive) -> PyResult<Bound<'_, Waiting>> {
        Self::make(py, Box::new(drive), None, Check::Passed)
    }

    /// A user-facing operation: warns if dropped without being awaited.
    pub fn op<'py>(
        py: Python<'py>,
        op: &'static str,
        drive: impl Drive,
    ) -> PyResult<Bound<'py, Waiting>> {
        Self::make(py, Box::new(drive), Some(op), Check::Passed)
    }

    /// A user-facing operation that is a checkpoint (see the module notes).
    pub fn checkpoint<'py>(
        py: Python<'py>,
        op: &'static str,
        drive: impl Drive,
    ) -> PyResult<Bound<'py, Waiting>> {
        Self::make(py, Box::new(drive), Some(op), Check::Pending)
    }

    /// A checkpoint whose task is already known to be cancelled: passes through the loop once,
    /// then raises. For the fast paths (`async with lock:`) that find the cancellation before
    /// building a state machine.
    pub fn cancelled(py: Python<'_>, err: PyErr) -> PyResult<Bound<'_, Waiting>> {
        Self::make(
            py,
            Box::new(RaiseAfterYield(Some(err))),
            None,
            Check::Passed,
        )
    }

    fn step(slf: &Bound<'_, Self>, input: Input<'_>) -> PyResult<Step> {
        let py = slf.py();
        // Take the machine out while it runs, so Python code it calls can never observe (or
        // re-enter) a borrowed `Waiting`.
        let (mut drive, check) =
            {
                let mut w = slf.borrow_mut();
                w.started = true;
                match w.drive.take() {
                    Some(d) => (d, w.check),
                    None => return match input {
                        Input::Throw(err) => Err(err),
                        Input::Send(_) => Err(PyTypeError::new_err(
                            "cannot reuse an awaitable that already finished; call the API again",
                        )),
                    },
                }
            };
        let input = match (check, input) {
            (Check::Passed, input) => input,
            (Check::Pending, Input::Send(v)) => {
                if delivery::current_cancellation(py)?.is_some() {
                    let mut w = slf.borrow_mut();
                    w.check = Check::Yielded;
                    w.drive = Some(drive);
                    return Ok(Step::Yield(py.None()));
                }
                slf.borrow_mut().check = Check::Passed;
                Input::Send(v)
            }
            (Check::Yielded, Input::Send(v)) => {
                if let Some(err) = delivery::current_cancellation(py)? {
                    return Err(err);
                }
                // No longer cancelled (a shield went up meanwhile): start after all.
                slf.borrow_mut().check = Check::Passed;
                Input::Send(v)
            }
            // Thrown in before the machine started: nothing to undo.
            (_, Input::Throw(err)) => return Err(err),
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
        let drive = {
            let mut w = slf.borrow_mut();
            w.started = true;
            w.drive.take()
        };
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

    fn __repr__(&self) -> String {
        let state = match (&self.drive, self.started) {
            (None, _) => "finished",
            (Some(_), false) => "not awaited yet",
            (Some(_), true) => "waiting",
        };
        format!("<{} {state}>", self.op.unwrap_or("toolcase_rs awaitable"))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let (false, Some(op), Some(_)) = (self.started, self.op, &self.drive) {
            Python::attach(|py| warn_never_awaited(py, op));
        }
    }
}

/// Emits the "never awaited" RuntimeWarning from a destructor: the exception being handled (if
/// any) is kept, and a warning turned into an error is reported as unraisable.
fn warn_never_awaited(py: Python<'_>, op: &str) {
    let saved = PyErr::take(py);
    let message = CString::new(format!("toolcase_rs.{op} was never awaited"))
        .unwrap_or_else(|_| c"a toolcase_rs operation was never awaited".to_owned());
    let category = py.get_type::<PyRuntimeWarning>();
    if let Err(err) = PyErr::warn(py, &category, &message, 1) {
        err.write_unraisable(py, None);
    }
    if let Some(saved) = saved {
        saved.restore(py);
    }
}

/// Yields once, then raises the error it holds (a cancelled checkpoint's fast path).
struct RaiseAfterYield(Option<PyErr>);

impl Drive for RaiseAfterYield {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        match (input, self.0.take()) {
            (Input::Throw(err), _) => Err(err),
            (Input::Send(_), Some(err)) => {
                self.0 = Some(err);
                Ok(Step::Yield(py.None()))
            }
            (Input::Send(_), None) => {
                Err(delivery::current_cancellation(py)?.unwrap_or_else(|| {
                    pyo3::exceptions::PyRuntimeError::new_err("awaitable already used")
                }))
            }
        }
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

// ----- the C slots -----------------------------------------------------------------------------

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic in toolcase_rs".to_owned());
    PanicException::new_err(msg)
}

/// Pre-built `StopIteration(True)` and `StopIteration(False)`: the results of most acquires and
/// waits. Raised without chaining, never shown to Python code (SEND consumes them at once).
struct StopValues {
    true_: Py<PyAny>,
    false_: Py<PyAny>,
}

static STOPS: PyOnceLock<StopValues> = PyOnceLock::new();

fn stops(py: Python<'_>) -> PyResult<&StopValues> {
    STOPS.get_or_try_init(py, || {
        let cls = py.get_type::<PyStopIteration>();
        Ok(StopValues {
            true_: cls.call1((true,))?.unbind(),
            false_: cls.call1((false,))?.unbind(),
        })
    })
}

/// Finishes an iteration with `value` the cheapest way (see the module notes): NULL, with a
/// `StopIteration` set unless the value is None.
fn finish_iteration(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<*mut ffi::PyObject> {
    if value.is_none() {
        return Ok(std::ptr::null_mut());
    }
    let exc = if value.is_exact_instance_of::<PyBool>() {
        let s = stops(py)?;
        let cached = if value.is_truthy()? {
            &s.true_
        } else {
            &s.false_
        };
        cached.clone_ref(py)
    } else {
        // SAFETY: attached; both pointers are live; returns a new reference or NULL with an
        // exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyObject_CallOneArg(ffi::PyExc_StopIteration, value.as_ptr()),
            )?
        }
        .unbind()
    };
    // SAFETY: attached; PyErr_Restore steals both references (type and instance) and does not
    // chain the exception onto the one being handled.
    #[allow(deprecated)]
    unsafe {
        ffi::Py_INCREF(ffi::PyExc_StopIteration);
        ffi::PyErr_Restore(
            ffi::PyExc_StopIteration,
            exc.into_ptr(),
            std::ptr::null_mut(),
        );
    }
    Ok(std::ptr::null_mut())
}

/// Writes an `am_send` outcome.
///
/// # Safety
/// `presult` must be valid for writes; the caller is attached to the interpreter.
unsafe fn report_send(
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

// The slots run inside `Python::attach` (am_send) or PyO3's own trampoline (iternext): both
// mark the thread as attached for PyO3, so Python references dropped while the state machine
// runs are released at once instead of going through PyO3's deferred-release pool.

unsafe extern "C" fn waiting_am_send(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    presult: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // CPython calls am_send with the interpreter attached, so this attach is the cheap path.
    Python::attach(|py| {
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
        unsafe { report_send(py, out, presult) }
    })
}

/// # Safety
/// Called through PyO3's iternext trampoline with a live `Waiting`.
unsafe fn waiting_next(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: installed only on `Waiting`, so `slf` is a live `Waiting`.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Waiting>() };
    match Waiting::step(&slf, Input::Send(py.None().into_bound(py)))? {
        Step::Yield(v) => Ok(v.into_ptr()),
        Step::Return(v) => finish_iteration(py, v.bind(py)),
    }
}

unsafe extern "C" fn ready_am_send(
    slf: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    presult: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython calls am_send with the interpreter attached; no Python reference is
    // dropped here (the value's new reference goes to the caller).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the slot is installed only on the `Ready` type, so `slf` is a live `Ready`.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Ready>() };
    let value = slf.get().value.clone_ref(py);
    // SAFETY: `presult` comes from CPython's PyIter_Send and is writable.
    unsafe { report_send(py, Ok(Ok(Step::Return(value))), presult) }
}

/// # Safety
/// Called through PyO3's iternext trampoline with a live `Ready`.
unsafe fn ready_next(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: installed only on `Ready`, so `slf` is a live `Ready`.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Ready>() };
    finish_iteration(py, slf.get().value.bind(py))
}

/// `__await__` for both types: the object is its own iterator.
unsafe extern "C" fn self_await(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a live object; we return a new reference to it.
    unsafe { ffi::Py_INCREF(slf) };
    slf
}

/// Installs the C slots on both awaitable types. Called once from module init.
pub fn install_slots(py: Python<'_>) -> PyResult<()> {
    use pyo3::PyTypeInfo;
    stops(py)?;
    let table: [(*mut ffi::PyTypeObject, ffi::sendfunc, ffi::iternextfunc); 2] = [
        (
            Waiting::type_object_raw(py),
            waiting_am_send,
            pyo3::impl_::trampoline::get_trampoline_function!(iternextfunc, waiting_next),
        ),
        (
            Ready::type_object_raw(py),
            ready_am_send,
            pyo3::impl_::trampoline::get_trampoline_function!(iternextfunc, ready_next),
        ),
    ];
    for (ty, send, next) in table {
        // SAFETY: `ty` is a heap type created by PyO3 for a class that defines `__await__` and
        // `__next__`, so `tp_as_async` points at the `as_async` block embedded in its
        // PyHeapTypeObject and is writable, as is `tp_iternext`; no instance has been awaited
        // yet (this runs during module init, attached). `PyType_Modified` invalidates any
        // cached slot lookups.
        unsafe {
            let as_async = (*ty).tp_as_async;
            if as_async.is_null() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "internal error: awaitable type without tp_as_async",
                ));
            }
            (*as_async).am_await = Some(self_await);
            (*as_async).am_send = Some(send);
            (*ty).tp_iternext = Some(next);
            ffi::PyType_Modified(ty);
        }
    }
    Ok(())
}
