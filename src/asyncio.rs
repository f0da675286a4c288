// The asyncio objects the core talks to, looked up once per interpreter and cached.
//
// Everything here is a thin, named wrapper around one asyncio call, so that the rest of the
// crate reads as "what" rather than "which attribute of which module". All of it runs on the
// thread that calls it, which for every caller in this crate is the loop thread.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

/// Prefix of the message of every `CancelledError` this library delivers or raises. A scope
/// swallows only cancellations that carry it (and only its own, see `scope::exit`); it is
/// deliberately not AnyIO's prefix, so neither library's scopes swallow the other's.
pub const CANCEL_PREFIX: &str = "Cancelled by toolcase_rs cancel scope ";

/// Where the running task is found. On 3.11 `asyncio.current_task` is a Python function
/// (~240 ns); the dict it reads, keyed by loop, is exposed by the C accelerator and read here
/// directly (~30 ns). Later versions have a C `current_task`.
enum TaskSource {
    Function(Py<PyAny>),
    Dict(Py<PyDict>),
}

struct Cache {
    current_task: TaskSource,
    get_running_loop: Py<PyAny>,
    cancelled_error: Py<PyType>,
    invalid_state_error: Py<PyType>,
    base_exception_group: Py<PyType>,
    task_type: Py<PyType>,
    future_type: Py<PyType>,
}

static CACHE: PyOnceLock<Cache> = PyOnceLock::new();

fn cache(py: Python<'_>) -> &Cache {
    CACHE
        .get_or_try_init(py, || -> PyResult<Cache> {
            let asyncio = py.import("asyncio")?;
            let builtins = py.import("builtins")?;
            let accel = py.import("_asyncio").ok();
            let c_func = accel.as_ref().and_then(|m| m.getattr("current_task").ok());
            let dict = accel
                .as_ref()
                .and_then(|m| m.getattr("_current_tasks").ok())
                .and_then(|d| d.cast_into::<PyDict>().ok());
            // The dict, where the accelerator exposes it (3.11-3.13): it is what its own
            // `current_task()` reads, minus a second lookup of the running loop.
            let current_task = match (dict, c_func) {
                (Some(d), _) => TaskSource::Dict(d.unbind()),
                (None, Some(f)) => TaskSource::Function(f.unbind()),
                (None, None) => TaskSource::Function(asyncio.getattr("current_task")?.unbind()),
            };
            Ok(Cache {
                current_task,
                get_running_loop: asyncio.getattr("get_running_loop")?.unbind(),
                cancelled_error: asyncio.getattr("CancelledError")?.cast_into()?.unbind(),
                invalid_state_error: asyncio.getattr("InvalidStateError")?.cast_into()?.unbind(),
                base_exception_group: builtins
                    .getattr("BaseExceptionGroup")?
                    .cast_into()?
                    .unbind(),
                task_type: asyncio.getattr("Task")?.cast_into()?.unbind(),
                future_type: asyncio.getattr("Future")?.cast_into()?.unbind(),
            })
        })
        .expect("the asyncio module provides these names")
}

/// The running `asyncio.Task`, or `None` outside one.
#[inline]
pub fn current_task(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let cache = cache(py);
    // Without a running loop there is no task (asyncio would raise RuntimeError).
    let found = match &cache.current_task {
        TaskSource::Dict(tasks) => match running_loop_opt(py)? {
            Some(loop_) => tasks.bind(py).get_item(loop_)?,
            None => None,
        },
        TaskSource::Function(f) => match f.bind(py).call0() {
            Ok(t) => Some(t),
            Err(e) if e.is_instance_of::<PyRuntimeError>(py) => None,
            Err(e) => return Err(e),
        },
    };
    Ok(found.filter(|t| !t.is_none()))
}

/// The task running on `loop_`, which the caller knows to be the running loop.
#[inline]
pub fn current_task_on<'py>(
    py: Python<'py>,
    loop_: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match &cache(py).current_task {
        TaskSource::Dict(tasks) => Ok(tasks.bind(py).get_item(loop_)?.filter(|t| !t.is_none())),
        TaskSource::Function(_) => current_task(py),
    }
}

/// The running loop, or a RuntimeError that says what the caller must do.
pub fn running_loop<'py>(py: Python<'py>, what: &str) -> PyResult<Bound<'py, PyAny>> {
    running_loop_opt(py)?.ok_or_else(|| no_loop_error(what))
}

// Reading the running loop without `get_running_loop()`.
//
// On 3.11 `asyncio.get_running_loop()` makes a `getpid()` system call on every call (a fork
// check), which made it the largest single cost of entering and exiting a scope. asyncio keeps
// the running loop in a small "holder" object (`{PyObject_HEAD; PyObject *rl_loop; pid_t
// rl_pid}`) stored in the thread-state dict under this key. The first time `get_running_loop()`
// finds a loop, we check that the holder's type and layout are exactly that (the loop pointer
// sits right after the object header) and from then on read the loop straight from the
// holder, comparing its pid with ours (kept current across `fork()` by `process.rs`).
// 3.12 and 3.13 store the loop itself under the same key (asyncio resets it in a forked
// child): once an entry is seen to be the very loop `get_running_loop()` returned, entries are
// read as loops. Nothing is cached per thread, so no reference to a loop outlives it. Where
// neither check passes (other versions store the loop elsewhere) every call goes to
// `get_running_loop()`.
const HOLDER_KEY: &str = "__asyncio_running_event_loop__";

/// The holder type, once its layout was verified (0: not verified yet; 1: not usable;
/// `DIRECT`: the entry is the loop itself).
static HOLDER_TYPE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const DIRECT: usize = 2;

#[repr(C)]
struct RunningLoopHolder {
    ob_base: ffi::PyObject,
    rl_loop: *mut ffi::PyObject,
    rl_pid: libc::pid_t,
}

fn running_loop_holder(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    // SAFETY: attached; PyThreadState_GetDict returns a borrowed reference (or NULL) to this
    // thread's state dict, which lives as long as the thread state.
    let dict = unsafe { ffi::PyThreadState_GetDict() };
    if dict.is_null() {
        return None;
    }
    // SAFETY: `dict` is a live borrowed dict (see above); we take our own reference.
    let dict = unsafe { Bound::from_borrowed_ptr(py, dict) };
    let dict = dict.cast_into::<PyDict>().ok()?;
    dict.get_item(intern!(py, HOLDER_KEY)).ok().flatten()
}

/// Reads the loop out of a holder whose type was verified. `Some(None)`: no loop running.
fn read_holder<'py>(holder: &Bound<'py, PyAny>) -> Option<Option<Bound<'py, PyAny>>> {
    let verified = HOLDER_TYPE.load(std::sync::atomic::Ordering::Acquire);
    if verified == DIRECT {
        return Some((!holder.is_none()).then(|| holder.clone()));
    }
    if verified <= 1 || holder.get_type().as_ptr() as usize != verified {
        return None;
    }
    let raw = holder.as_ptr().cast::<RunningLoopHolder>();
    // SAFETY: the object's type is the verified holder type, whose layout was checked against
    // a live loop (see `verify_holder`); the holder is alive (we hold a reference) and its
    // fields are only written when a new holder replaces it.
    let (lp, pid) = unsafe { ((*raw).rl_loop, (*raw).rl_pid) };
    if lp.is_null() || pid != crate::process::pid() {
        return None;
    }
    // SAFETY: `lp` is the holder's strong reference to the loop (or None); we take our own.
    let lp = unsafe { Bound::from_borrowed_ptr(holder.py(), lp) };
    Some((!lp.is_none()).then_some(lp))
}

/// Checks once that `holder` has the expected layout, given the loop it must hold.
fn verify_holder(holder: &Bound<'_, PyAny>, loop_: &Bound<'_, PyAny>) {
    if HOLDER_TYPE.load(std::sync::atomic::Ordering::Acquire) != 0 {
        return;
    }
    if holder.is(loop_) {
        HOLDER_TYPE.store(DIRECT, std::sync::atomic::Ordering::Release);
        return;
    }
    let ty = holder.get_type();
    let named = ty.name().is_ok_and(|n| n == "_RunningLoopHolder");
    // SAFETY: only reads the pointer-sized word after the object header when the type name
    // matches asyncio's holder, which is at least that large (tp_basicsize checked).
    let ok = named
        && unsafe { (*ty.as_type_ptr()).tp_basicsize as usize }
            >= std::mem::size_of::<RunningLoopHolder>()
        && unsafe { (*holder.as_ptr().cast::<RunningLoopHolder>()).rl_loop } == loop_.as_ptr();
    let value = if ok { ty.as_ptr() as usize } else { 1 };
    HOLDER_TYPE.store(value, std::sync::atomic::Ordering::Release);
}

/// The running loop, or None.
pub fn running_loop_opt(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let holder = running_loop_holder(py);
    if let Some(found) = holder.as_ref().and_then(read_holder) {
        return Ok(found);
    }
    if holder.is_none() && HOLDER_TYPE.load(std::sync::atomic::Ordering::Acquire) == DIRECT {
        // No entry at all: this thread never ran a loop.
        return Ok(None);
    }
    let found = match cache(py).get_running_loop.bind(py).call0() {
        Ok(l) => Some(l),
        Err(e) if e.is_instance_of::<PyRuntimeError>(py) => None,
        Err(e) => return Err(e),
    };
    if let (Some(h), Some(l)) = (&holder, &found) {
        verify_holder(h, l);
    }
    Ok(found)
}

/// Runs in a forked child (`os.register_at_fork(after_in_child=...)`): records the new process
/// id, so holders inherited from the parent are not read as running loops in the child, marks
/// the threads that did not survive, and tears down the runtimes of their loops.
#[pyfunction]
pub fn after_fork(py: Python<'_>) {
    crate::process::after_fork_in_child();
    crate::loop_runtime::after_fork_in_child(py);
}

pub fn no_loop_error(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "{what} needs a running asyncio event loop: call it from async code \
         (inside asyncio.run(), toolcase_rs.run() or a running task)"
    ))
}

pub fn cancelled_error_type(py: Python<'_>) -> &Bound<'_, PyType> {
    cache(py).cancelled_error.bind(py)
}

pub fn invalid_state_error(py: Python<'_>, msg: String) -> PyErr {
    PyErr::from_type(cache(py).invalid_state_error.bind(py).clone(), msg)
}

pub fn base_exception_group_type(py: Python<'_>) -> &Bound<'_, PyType> {
    cache(py).base_exception_group.bind(py)
}

pub fn task_type(py: Python<'_>) -> &Bound<'_, PyType> {
    cache(py).task_type.bind(py)
}

/// True for instances of `asyncio.Task`.
pub fn is_task(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance(task_type(obj.py())).unwrap_or(false)
}

/// True for `contextvars.Context` objects.
pub fn is_context(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: attached; PyContext_CheckExact only reads the type pointer.
    unsafe { ffi::PyContext_CheckExact(obj.as_ptr()) != 0 }
}

/// True for instances of `asyncio.Future` (tasks included).
pub fn is_future(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance(cache(obj.py()).future_type.bind(obj.py()))
        .unwrap_or(false)
}

/// A new `CancelledError(msg)`, ready to raise.
pub fn cancelled(py: Python<'_>, msg: &Bound<'_, PyString>) -> PyErr {
    PyErr::from_type(cancelled_error_type(py).clone(), (msg.clone().unbind(),))
}

pub fn is_cancelled_error(py: Python<'_>, exc: &Bound<'_, PyAny>) -> bool {
    exc.is_instance(cancelled_error_type(py)).unwrap_or(false)
}

/// True when `exc` (or a `CancelledError` it was raised while handling) carries this
/// library's cancellation message. Frameworks sometimes catch a `CancelledError` and raise a
/// fresh one, so the `__context__` chain is followed like AnyIO does.
pub fn is_own_cancellation(py: Python<'_>, exc: &Bound<'_, PyAny>) -> bool {
    let mut cur = exc.clone();
    for _ in 0..64 {
        if !is_cancelled_error(py, &cur) {
            return false;
        }
        if let Ok(args) = cur.getattr(intern!(py, "args")) {
            if let Ok(args) = args.cast::<PyTuple>() {
                if let Ok(first) = args.get_item(0) {
                    if let Ok(s) = first.cast::<PyString>() {
                        if s.to_str().is_ok_and(|s| s.starts_with(CANCEL_PREFIX)) {
                            return true;
                        }
                    }
                }
            }
        }
        match cur.getattr(intern!(py, "__context__")) {
            Ok(ctx) if !ctx.is_none() => cur = ctx,
            _ => return false,
        }
    }
    false
}

/// Creates a future on `loop_`.
#[inline]
pub fn create_future<'py>(loop_: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    loop_.call_method0(intern!(loop_.py(), "create_future"))
}

/// Prepares a native future to be yielded straight to the Task that awaits us: the Task
/// only accepts a future whose `_asyncio_future_blocking` flag is set (as `Future.__await__`
/// would have done).
#[inline]
pub fn mark_blocking(fut: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fut.py();
    fut.setattr(intern!(py, "_asyncio_future_blocking"), true)
}

/// `fut.set_result(value)` unless the future is already done (cancelled by its awaiter).
pub fn resolve(fut: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fut.py();
    if !fut.call_method0(intern!(py, "done"))?.is_truthy()? {
        fut.call_method1(intern!(py, "set_result"), (value,))?;
    }
    Ok(())
}

pub fn is_done(fut: &Bound<'_, PyAny>) -> PyResult<bool> {
    fut.call_method0(intern!(fut.py(), "done"))?.is_truthy()
}

/// Runs `f` with `ctx` as the current contextvars context.
pub fn in_context<R>(ctx: &Bound<'_, PyAny>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    let py = ctx.py();
    // SAFETY: we are attached to the interpreter; `ctx` is a live object. PyContext_Enter
    // type-checks its argument and reports failure with -1 and an exception set.
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let out = f();
    // SAFETY: as above; exiting the context entered just before cannot fail.
    unsafe { ffi::PyContext_Exit(ctx.as_ptr()) };
    out
}

/// A copy of the current contextvars context.
pub fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: attached; PyContext_CopyCurrent returns a new reference or NULL with an error.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }
}

/// What sending a value into a coroutine produced.
pub enum Sent<'py> {
    Yielded(Bound<'py, PyAny>),
    Returned(Bound<'py, PyAny>),
}

/// `coro.send(value)` through `PyIter_Send`, with `StopIteration` already unpacked.
pub fn send<'py>(coro: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> PyResult<Sent<'py>> {
    let py = coro.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: attached; `coro` and `value` are live objects; PyIter_Send writes a new reference
    // to `out` for NEXT/RETURN and leaves an exception set for ERROR.
    let status = unsafe { ffi::PyIter_Send(coro.as_ptr(), value.as_ptr(), &mut out) };
    match status {
        ffi::PySendResult::PYGEN_NEXT => {
            // SAFETY: `out` is a new reference (see above).
            Ok(Sent::Yielded(unsafe { Bound::from_owned_ptr(py, out) }))
        }
        ffi::PySendResult::PYGEN_RETURN => {
            // SAFETY: as above.
            Ok(Sent::Returned(unsafe { Bound::from_owned_ptr(py, out) }))
        }
        ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
    }
}

/// True for coroutine objects (native ones, and anything registered as
/// `collections.abc.Coroutine`), the objects `asyncio.Task` accepts.
pub fn is_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: attached; PyCoro_CheckExact only reads the type pointer.
    if unsafe { ffi::PyCoro_CheckExact(obj.as_ptr()) } != 0 {
        return true;
    }
    static ISCORO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = obj.py();
    ISCORO
        .get_or_try_init(py, || {
            py.import("asyncio")?
                .getattr("iscoroutine")
                .map(Bound::unbind)
        })
        .and_then(|f| f.bind(py).call1((obj,)))
        .and_then(|r| r.is_truthy())
        .unwrap_or(false)
}

/// Calls `func(*args, **dict(zip(kwnames, kwargs)))` through vectorcall, so no kwargs dict is
/// built (a dict holding tracked objects is itself tracked, which adds collector pressure on
/// every spawn).
pub fn call_with_kwnames<'py>(
    func: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
    kwnames: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    let ptrs: Vec<*mut ffi::PyObject> = args.iter().map(|a| a.as_ptr()).collect();
    let positional = ptrs.len() - kwnames.len();
    // SAFETY: attached; `ptrs` holds live borrowed references for the duration of the call and
    // its last `kwnames.len()` entries are the keyword values, as the vectorcall protocol
    // requires; the result is a new reference or NULL with an error set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_Vectorcall(func.as_ptr(), ptrs.as_ptr(), positional, kwnames.as_ptr()),
        )
    }
}

/// The Task constructor of a factory made by `asyncio.create_eager_task_factory` (which
/// `asyncio.eager_task_factory` is), recognised by its code object; None for other factories.
fn eager_factory_constructor<'py>(
    py: Python<'py>,
    factory: &Bound<'py, PyAny>,
) -> Option<Bound<'py, PyAny>> {
    if factory.is_none() {
        return None;
    }
    static EAGER_CODE: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let code = EAGER_CODE
        .get_or_init(py, || {
            py.import("asyncio")
                .and_then(|m| m.getattr("eager_task_factory"))
                .and_then(|f| f.getattr("__code__"))
                .map(Bound::unbind)
                .ok()
        })
        .as_ref()?;
    let own = factory.getattr(intern!(py, "__code__")).ok()?;
    if !own.is(code.bind(py)) {
        return None;
    }
    let closure = factory.getattr(intern!(py, "__closure__")).ok()?;
    let cell = closure.cast::<PyTuple>().ok()?.get_item(0).ok()?;
    cell.getattr(intern!(py, "cell_contents")).ok()
}

/// A new Task for `coro` on `loop_`, with an optional name and context: `asyncio.Task` itself
/// when the loop has no task factory (what `loop.create_task` does then, minus its Python
/// frame), else `loop.create_task` so factories keep working.
pub fn new_task<'py>(
    loop_: &Bound<'py, PyAny>,
    coro: &Bound<'py, PyAny>,
    name: Option<&Bound<'py, PyAny>>,
    context: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    static KWNAMES: PyOnceLock<[Py<PyTuple>; 4]> = PyOnceLock::new();
    let py = loop_.py();
    let names = KWNAMES.get_or_init(py, || {
        let t = |names: &[&str]| PyTuple::new(py, names).expect("tuple of str").unbind();
        [
            t(&["loop"]),
            t(&["loop", "name"]),
            t(&["loop", "context"]),
            t(&["loop", "name", "context"]),
        ]
    });
    // `BaseEventLoop` keeps the factory in `_task_factory`; other loops are asked.
    let factory = match loop_.getattr(intern!(py, "_task_factory")) {
        Ok(f) => f,
        Err(_) => loop_.call_method0(intern!(py, "get_task_factory"))?,
    };
    if let Some(constructor) = eager_factory_constructor(py, &factory) {
        // An eager task factory (3.12+): build the task as the factory would, calling its Task
        // constructor ourselves. uvloop passes `eager_start=` on to the factory, which 3.13.0's
        // factory rejects; calling the constructor directly works on every loop.
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item(intern!(py, "loop"), loop_)?;
        if let Some(n) = name {
            kwargs.set_item(intern!(py, "name"), n)?;
        }
        if let Some(c) = context {
            kwargs.set_item(intern!(py, "context"), c)?;
        }
        kwargs.set_item(intern!(py, "eager_start"), true)?;
        return constructor.call((coro,), Some(&kwargs));
    }
    let (func, mut args): (Bound<'py, PyAny>, Vec<&Bound<'py, PyAny>>) = if factory.is_none() {
        (task_type(py).clone().into_any(), vec![coro, loop_])
    } else {
        (loop_.getattr(intern!(py, "create_task"))?, vec![coro])
    };
    let which = usize::from(name.is_some()) + 2 * usize::from(context.is_some());
    args.extend(name);
    args.extend(context);
    let all_names = names[which].bind(py);
    if factory.is_none() {
        return call_with_kwnames(&func, &args, all_names);
    }
    // `loop.create_task(coro, name=..., context=...)`: the same keywords without `loop`.
    let kw = all_names.get_slice(1, all_names.len());
    call_with_kwnames(&func, &args, &kw)
}
