// The exception classes of toolcase_rs, created here in Rust and exported by the module.
//
// `WouldBlock`, `ClosedResourceError`, `EndOfStream` and `TaskCancelled` are plain subclasses
// of `Exception` (`create_exception!`). `QueueEmpty` and `QueueFull` also subclass asyncio's
// exceptions of the same name (so `except asyncio.QueueEmpty` keeps working for code moving
// from `asyncio.Queue`); `create_exception!` takes one base, so they are made once per
// interpreter with `PyErr_NewExceptionWithDoc` and a tuple of bases.
//
// Rust code raises them through the constructors below; nothing looks them up from Python.

use std::ffi::CStr;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

create_exception!(
    toolcase_rs,
    WouldBlock,
    PyException,
    "A `*_nowait` operation could not complete at once."
);

create_exception!(
    toolcase_rs,
    ClosedResourceError,
    PyException,
    "The resource (a queue) was closed; it takes no more input."
);

create_exception!(
    toolcase_rs,
    EndOfStream,
    PyException,
    "The queue was closed and everything in it has been read."
);

create_exception!(
    toolcase_rs,
    TaskCancelled,
    PyException,
    "The task whose result was requested was cancelled.\n\nRaised by `await handle` and \
     `handle.result()`, so that awaiting a cancelled sibling is not mistaken for the caller's \
     own cancellation."
);

struct QueueErrors {
    empty: Py<PyType>,
    full: Py<PyType>,
}

static QUEUE_ERRORS: PyOnceLock<QueueErrors> = PyOnceLock::new();

fn with_bases(
    py: Python<'_>,
    name: &CStr,
    doc: &CStr,
    bases: Bound<'_, PyTuple>,
) -> PyResult<Py<PyType>> {
    // SAFETY: attached; `name` and `doc` are NUL-terminated; `bases` is a live tuple of
    // exception types. The function returns a new reference to the class, or NULL with an
    // exception set.
    let cls = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyErr_NewExceptionWithDoc(
                name.as_ptr(),
                doc.as_ptr(),
                bases.as_ptr(),
                std::ptr::null_mut(),
            ),
        )?
    };
    Ok(cls.cast_into::<PyType>()?.unbind())
}

fn queue_errors(py: Python<'_>) -> PyResult<&QueueErrors> {
    QUEUE_ERRORS.get_or_try_init(py, || {
        let asyncio = py.import("asyncio")?;
        let would_block = py.get_type::<WouldBlock>().into_any();
        let empty = with_bases(
            py,
            c"toolcase_rs.QueueEmpty",
            c"`Queue.get_nowait()` on an empty queue.",
            PyTuple::new(py, [would_block.clone(), asyncio.getattr("QueueEmpty")?])?,
        )?;
        let full = with_bases(
            py,
            c"toolcase_rs.QueueFull",
            c"`Queue.put_nowait()` on a full queue.",
            PyTuple::new(py, [would_block, asyncio.getattr("QueueFull")?])?,
        )?;
        Ok(QueueErrors { empty, full })
    })
}

/// `QueueEmpty(msg)`.
pub fn queue_empty(py: Python<'_>, msg: &str) -> PyErr {
    match queue_errors(py) {
        Ok(e) => PyErr::from_type(e.empty.bind(py).clone(), msg.to_owned()),
        Err(e) => e,
    }
}

/// `QueueFull(msg)`.
pub fn queue_full(py: Python<'_>, msg: &str) -> PyErr {
    match queue_errors(py) {
        Ok(e) => PyErr::from_type(e.full.bind(py).clone(), msg.to_owned()),
        Err(e) => e,
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WouldBlock", py.get_type::<WouldBlock>())?;
    m.add("ClosedResourceError", py.get_type::<ClosedResourceError>())?;
    m.add("EndOfStream", py.get_type::<EndOfStream>())?;
    m.add("TaskCancelled", py.get_type::<TaskCancelled>())?;
    let q = queue_errors(py)?;
    m.add("QueueEmpty", q.empty.bind(py))?;
    m.add("QueueFull", q.full.bind(py))?;
    Ok(())
}
