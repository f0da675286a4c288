// LoopRuntime: everything toolcase_rs keeps per event loop, in one object.
//
// What it owns. The scope tree (which scopes are active, which tasks sit in them, which are
// effectively cancelled), the registry of tasks it knows (`tasks.rs`), cancellation delivery
// (`delivery.rs`), the deadline heap with its single loop timer (`deadlines.rs`), and the
// loop's LoopPort: the queue and eventfd through which other threads reach the loop.
//
// Lifecycle. Created on the loop's first use (on the loop's own thread), found again by loop
// identity: the thread-local cache and the registry compare the loop object behind a weak
// reference, never a bare address that a new loop may reuse. At creation the runtime registers
// its port's eventfd with `loop.add_reader`; the loop then holds the `PortReader`, and drops it
// when it closes (or is collected). That drop tears the runtime down: every Python object it
// holds (tasks, timer handles, queued completions) is released, scopes still active are marked
// closed, and what producers send afterwards is dropped quietly. A loop without `add_reader`
// (the Windows proactor, custom loops) gets `call_soon_threadsafe` kicks instead and is torn
// down when it is found closed (the next time a runtime is created, or a producer notices).
//
// Handles (`CancelScope`, `TaskGroup`, `TaskHandle`, primitive waiters) hold an `Arc` to their
// own runtime plus their key, so a key is never looked up in another loop's tree. A handle
// called from another thread posts a `Completion` to its runtime's port; it runs on the loop.
//
// Threads. `state` is locked only on the loop's thread in normal operation (other threads post
// instead) and never across a call into Python: every function reads what it needs under the
// lock, releases it, then makes its Python calls; Python references removed from the state are
// dropped after the lock is released (a finaliser may re-enter the library). A foreign thread
// may lock it briefly to read (statistics naming a task), holding the GIL throughout.
//
// Dependencies point one way: `scope::tree` and `scope::deadline` (pure Rust) <- this module
// <- the Python-facing types (`CancelScope`, `TaskGroup`, primitives).
//
// Rejected: a thread-local runtime plus a separate address-keyed port map (the first version):
// cross-thread setters acted on the calling thread's scopes, cancels were lost, and tasks of
// closed loops stayed alive for the thread's lifetime. A runtime stored as an attribute on the
// loop: uvloop's loop accepts it, but not every loop has a `__dict__`, and closing would still
// go unnoticed.

pub mod deadlines;
pub mod delivery;
pub mod scopes;
pub mod tasks;

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use pyo3::exceptions::PyNotImplementedError;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::types::{PyDict, PyString};
use pyo3::{ffi, intern};
use rustc_hash::FxHashMap;

use crate::asyncio;
use crate::bridge::{self, PortQueue};
use crate::process;
use crate::scope::deadline::DeadlineHeap;
use crate::scope::tree::{ScopeKey, ScopeTree, TaskKey};
pub use scopes::ScopeRecord;

/// What the runtime keeps per task.
pub struct TaskEntry {
    /// The `asyncio.Task`; `None` while an eager child runs its first step synchronously, or a
    /// child is being created (its Task does not exist yet).
    pub task: Option<Py<PyAny>>,
}

/// What the runtime keeps per active scope.
pub struct ScopeEntry {
    pub record: Arc<ScopeRecord>,
    /// `task.cancelling()` of the host task when the scope was entered.
    pub baseline: isize,
    /// The `CancelledError` message of this scope once it is cancelled.
    pub message: Option<Py<PyString>>,
    /// Identifies the live heap entry for this scope's deadline (see `deadline.rs`).
    pub deadline_gen: u32,
    /// The scope has an entry in the deadline heap.
    pub has_deadline: bool,
}

/// Per-task state of a cancellation being delivered; kept in a side table (only tasks being
/// cancelled have one), so that the entry every child carries stays small.
#[derive(Default)]
pub struct Delivery {
    /// The waiter the task was parked on when we last delivered a cancellation; the delivery
    /// is consumed once the task is parked on something else.
    pub waiter: Option<Py<PyAny>>,
    /// Deliveries re-examined without visible progress; bounds the work spent on tasks whose
    /// state cannot be observed (custom Task classes without asyncio's private attributes).
    pub stalls: u8,
}

/// The per-loop state. Guarded by `LoopRuntime::state` (see the module notes).
#[derive(Default)]
pub struct RtState {
    pub tree: ScopeTree<TaskEntry, ScopeEntry>,
    /// `id(task)` -> key. Entries hold a strong reference to the task (in `TaskEntry`), so an
    /// id cannot be reused while it is in this map.
    pub by_task: FxHashMap<usize, TaskKey>,
    /// Set while an eager child runs its first step: code running then belongs to that child,
    /// although `asyncio.current_task()` still names the spawning task.
    pub eager_current: Option<TaskKey>,
    /// Children being created (innermost last): an eager task factory runs the child's first
    /// step inside `loop.create_task`, before the Task is returned to us; a task the registry
    /// does not know that runs then is the child on top of this stack.
    pub spawning: Vec<TaskKey>,
    pub heap: DeadlineHeap<ScopeKey>,
    /// The armed loop timer and the time it fires.
    pub timer: Option<(f64, Py<PyAny>)>,
    /// Tasks to look at in the next delivery batch.
    pub pending: Vec<TaskKey>,
    pub batch_scheduled: bool,
    /// For children of `TaskGroup.start()`: the future `task_status.started()` resolves.
    pub statuses: FxHashMap<TaskKey, Py<PyAny>>,
    /// Tasks with a cancellation in flight.
    pub deliveries: FxHashMap<TaskKey, Delivery>,
    /// Done-callback that forgets plain tasks (created on first use).
    pub forget_cb: Option<Py<PyAny>>,
    /// Cancel tokens that mirror a task (`current_cancel_token()` in a task): set when the
    /// task becomes effectively cancelled.
    pub token_watchers: FxHashMap<TaskKey, Vec<Weak<crate::worker::token::TokenState>>>,
}

/// A wake-up that carries something (a permit, an item) to a waiter on a loop: if that loop
/// closes before it runs, it is refused, and what it carries goes to the next waiter.
pub trait Handoff: Send {
    /// On the loop thread: wake the waiter.
    fn run(self: Box<Self>, py: Python<'_>) -> PyResult<()>;
    /// The loop is gone: give what it carries back.
    fn refuse(self: Box<Self>, py: Python<'_>);
}

/// Something to do on a loop's thread, sent from another thread.
pub enum Completion {
    /// `fut.set_result(value)` unless the future is already done.
    Resolve(Py<PyAny>, Option<Py<PyAny>>),
    /// A grant for a waiter (see `Handoff`).
    Handoff(Box<dyn Handoff>),
    /// Any other work (a scope cancelled or re-configured from another thread, ...).
    Run(Box<dyn FnOnce(Python<'_>) -> PyResult<()> + Send>),
}

impl Completion {
    fn run(self, py: Python<'_>) -> PyResult<()> {
        match self {
            Completion::Resolve(fut, value) => {
                let value = value.unwrap_or_else(|| py.None());
                asyncio::resolve(fut.bind(py), value.bind(py))
            }
            Completion::Handoff(h) => h.run(py),
            Completion::Run(f) => f(py),
        }
    }

    /// It will never run (the loop closed): hand-offs give back what they carry, the rest is
    /// dropped quietly.
    fn discard(self, py: Python<'_>) {
        if let Completion::Handoff(h) = self {
            h.refuse(py);
        }
    }
}

pub struct LoopRuntime {
    /// Unique for the process lifetime (never reused), for identities that outlive a runtime
    /// (lock holders).
    pub id: u64,
    /// Address of the loop, a first cheap filter; identity is confirmed through `loop_weak`.
    loop_ptr: usize,
    /// A weak reference to the loop: the runtime never keeps its loop alive.
    loop_weak: Py<PyAny>,
    closed: AtomicBool,
    port: PortQueue<Completion>,
    /// The eventfd the loop watches (`None` without `add_reader`, and after teardown). Locked
    /// by producers around the write, so teardown never closes it under a writer.
    fd: Mutex<Option<OwnedFd>>,
    /// The thread the loop ran on when last looked up from it.
    thread: AtomicU64,
    /// Eager first steps running now (see `RtState::eager_current`); lets hot paths skip the
    /// state lock when there are none.
    eager_steps: std::sync::atomic::AtomicU32,
    state: Mutex<RtState>,
}

static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);

/// Every runtime not yet torn down. Small (one per live loop), so a linear scan is fine.
static REGISTRY: Mutex<Vec<Weak<LoopRuntime>>> = Mutex::new(Vec::new());

thread_local! {
    /// The runtime of the loop this thread ran last: the hot-path lookup.
    static CURRENT: RefCell<Option<Arc<LoopRuntime>>> = const { RefCell::new(None) };
}

impl LoopRuntime {
    /// Locks the per-loop state. The closure must not call into Python (module notes).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut RtState) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// True while an eager child runs its first step on this loop.
    #[inline]
    pub fn in_eager_step(&self) -> bool {
        self.eager_steps.load(Ordering::Relaxed) != 0
    }

    /// Runs `f` as the first step of eager child `key` (see `RtState::eager_current`).
    pub fn eager_step<R>(&self, key: TaskKey, f: impl FnOnce() -> R) -> R {
        let previous = self.with(|st| st.eager_current.replace(key));
        self.eager_steps.fetch_add(1, Ordering::Relaxed);
        let out = f();
        self.eager_steps.fetch_sub(1, Ordering::Relaxed);
        self.with(|st| st.eager_current = previous);
        out
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The loop, while it exists.
    pub fn event_loop<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        upgrade(self.loop_weak.bind(py))
    }

    /// True when `loop_` is this runtime's loop (identity, not address).
    #[inline]
    pub fn is_loop(&self, loop_: &Bound<'_, PyAny>) -> bool {
        if loop_.as_ptr() as usize != self.loop_ptr {
            return false;
        }
        // SAFETY: attached (we hold a Bound); `loop_weak` is a weakref object, and
        // PyWeakref_GetObject returns a borrowed pointer (None once dead) that we only compare.
        let target = unsafe { ffi::PyWeakref_GetObject(self.loop_weak.as_ptr()) };
        target == loop_.as_ptr()
    }

    /// True when the calling thread is running this runtime's loop right now.
    #[inline]
    pub fn is_current(&self, py: Python<'_>) -> bool {
        matches!(asyncio::running_loop_opt(py), Ok(Some(l)) if self.is_loop(&l))
    }

    /// The runtime of the running loop, created on first use. `Ok(None)` without a running
    /// loop.
    #[inline]
    pub fn current(py: Python<'_>) -> PyResult<Option<Arc<LoopRuntime>>> {
        Ok(Self::current_with_loop(py)?.map(|(rt, _)| rt))
    }

    /// `current`, with the running loop it found.
    #[inline]
    pub fn current_with_loop(
        py: Python<'_>,
    ) -> PyResult<Option<(Arc<LoopRuntime>, Bound<'_, PyAny>)>> {
        let Some(loop_) = asyncio::running_loop_opt(py)? else {
            return Ok(None);
        };
        let cached = CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|rt| !rt.is_closed() && rt.is_loop(&loop_))
                .cloned()
        });
        let rt = match cached {
            Some(rt) => rt,
            None => Self::switch_to(py, &loop_)?,
        };
        Ok(Some((rt, loop_)))
    }

    /// The runtime of the running loop, or a RuntimeError naming `what` needs one.
    pub fn running(py: Python<'_>, what: &str) -> PyResult<Arc<LoopRuntime>> {
        Self::current(py)?.ok_or_else(|| asyncio::no_loop_error(what))
    }

    /// The cache missed: find or create the runtime of `loop_` and make it this thread's.
    #[cold]
    fn switch_to(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> PyResult<Arc<LoopRuntime>> {
        let previous = CURRENT.with(|c| c.borrow_mut().take());
        if let Some(prev) = previous {
            prev.teardown_if_closed(py);
        }
        let rt = match Self::find(py, loop_) {
            Some(rt) => rt,
            None => Self::create(py, loop_)?,
        };
        rt.thread.store(process::thread_id(), Ordering::Relaxed);
        CURRENT.with(|c| *c.borrow_mut() = Some(rt.clone()));
        Ok(rt)
    }

    /// The runtime of `loop_`, if it has one (any thread; creates nothing).
    pub fn find(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> Option<Arc<LoopRuntime>> {
        let _ = py;
        REGISTRY
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|rt| !rt.is_closed() && rt.is_loop(loop_))
    }

    /// A runtime by its id, while it is alive.
    pub fn by_id(id: u64) -> Option<Arc<LoopRuntime>> {
        REGISTRY
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|rt| rt.id == id)
    }

    /// Every runtime not torn down.
    pub fn all() -> Vec<Arc<LoopRuntime>> {
        REGISTRY.lock().iter().filter_map(Weak::upgrade).collect()
    }

    fn create(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> PyResult<Arc<LoopRuntime>> {
        sweep_closed(py);
        let fd = bridge::new_eventfd().ok();
        let rt = Arc::new(LoopRuntime {
            id: NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed),
            loop_ptr: loop_.as_ptr() as usize,
            loop_weak: weak(loop_)?,
            closed: AtomicBool::new(false),
            port: PortQueue::new(),
            fd: Mutex::new(None),
            thread: AtomicU64::new(process::thread_id()),
            eager_steps: std::sync::atomic::AtomicU32::new(0),
            state: Mutex::new(RtState::default()),
        });
        if let Some(fd) = fd {
            let raw = fd.as_raw_fd();
            let reader = Bound::new(
                py,
                PortReader {
                    rt: rt.clone(),
                    registered: AtomicBool::new(true),
                },
            )?;
            match loop_.call_method1(intern!(py, "add_reader"), (raw, &reader)) {
                Ok(_) => *rt.fd.lock() = Some(fd),
                // The fallback: `call_soon_threadsafe` per kick. The reader object is dropped
                // right here, so it must not tear the runtime down.
                Err(e)
                    if e.is_instance_of::<PyNotImplementedError>(py)
                        || e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) =>
                {
                    reader.get().disarm_teardown();
                }
                Err(e) => {
                    reader.get().disarm_teardown();
                    return Err(e);
                }
            }
        }
        let mut registry = REGISTRY.lock();
        registry.retain(|w| w.strong_count() > 0);
        registry.push(Arc::downgrade(&rt));
        Ok(rt)
    }

    /// Queues `c` for the loop thread and wakes the loop if needed. After the loop closed,
    /// `c` is dropped quietly.
    pub fn post(self: &Arc<Self>, py: Python<'_>, c: Completion) {
        match self.port.push(c) {
            Ok(true) => self.kick(py),
            Ok(false) => {}
            Err(c) => c.discard(py),
        }
    }

    /// Wakes the loop: one eventfd write, or a `call_soon_threadsafe` for the fallback.
    fn kick(self: &Arc<Self>, py: Python<'_>) {
        {
            let fd = self.fd.lock();
            if let Some(fd) = fd.as_ref() {
                if bridge::signal_eventfd(fd).is_err() {
                    self.port.kick_failed();
                }
                return;
            }
        }
        if self.is_closed() {
            return;
        }
        // Fallback (no add_reader): one call_soon_threadsafe per batch.
        let kicked = self.event_loop(py).is_some_and(|loop_| {
            let reader = PortReader {
                rt: self.clone(),
                registered: AtomicBool::new(false),
            };
            Bound::new(py, reader)
                .and_then(|r| loop_.call_method1(intern!(py, "call_soon_threadsafe"), (r,)))
                .is_ok()
        });
        if !kicked {
            // The loop is gone or closed: nothing will ever drain the queue.
            self.port.kick_failed();
            self.teardown_if_closed(py);
        }
    }

    /// Runs on the loop thread: take every queued completion and run it. Each one runs on its
    /// own: a failure is reported to the loop's exception handler and the rest still run.
    fn drain(self: &Arc<Self>, py: Python<'_>) {
        if let Some(fd) = self.fd.lock().as_ref() {
            bridge::reset_eventfd(fd);
        }
        for c in self.port.take_batch() {
            if let Err(e) = c.run(py) {
                self.report(
                    py,
                    "toolcase_rs: a cross-thread operation failed on the loop",
                    e,
                );
            }
        }
    }

    /// Reports an error that has no caller to raise into (a callback's), through the loop's
    /// exception handler, like asyncio does for its own callbacks.
    pub fn report(&self, py: Python<'_>, message: &str, err: PyErr) {
        let Some(loop_) = self.event_loop(py) else {
            return;
        };
        let context = PyDict::new(py);
        let _ = context.set_item("message", message);
        let _ = context.set_item("exception", err.into_value(py));
        if loop_
            .call_method1(intern!(py, "call_exception_handler"), (context,))
            .is_err()
        {
            // Even the handler failed: nothing else can be done without raising here.
        }
    }

    /// Tears the runtime down if its loop is closed or gone.
    pub fn teardown_if_closed(&self, py: Python<'_>) {
        if self.is_closed() {
            return;
        }
        let closed = self.event_loop(py).is_none_or(|l| {
            l.call_method0(intern!(py, "is_closed"))
                .and_then(|v| v.is_truthy())
                .unwrap_or(true)
        });
        if closed {
            self.teardown(py);
        }
    }

    /// Releases everything the runtime holds: the loop closed (see the module notes).
    pub fn teardown(&self, py: Python<'_>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let queued = self.port.close();
        let state = std::mem::take(&mut *self.state.lock());
        let fd = self.fd.lock().take();
        REGISTRY
            .lock()
            .retain(|w| w.upgrade().is_some_and(|rt| rt.id != self.id));
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_some_and(|rt| rt.id == self.id) {
                *c = None;
            }
        });
        let RtState { mut tree, .. } = state;
        let (tasks, scopes) = tree.drain();
        for scope in &scopes {
            scope.record.mark_closed(None);
        }
        // Dropped here, with the lock released (finalisers may run), and attached.
        drop((tasks, scopes, fd));
        for c in queued {
            c.discard(py);
        }
    }

    /// Visits the Python objects the state holds (for the cycle collector, see PortReader).
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never block here: a thread holding the lock cannot be running Python code that
        // needs the collector, but the collector must not wait on it either.
        let Some(st) = self.state.try_lock() else {
            return Ok(());
        };
        for task in st.tree.task_payloads() {
            visit.call(&task.task)?;
        }
        for scope in st.tree.scope_payloads() {
            visit.call(&scope.message)?;
        }
        visit.call(st.timer.as_ref().map(|(_, h)| h))?;
        for s in st.statuses.values() {
            visit.call(s)?;
        }
        for d in st.deliveries.values() {
            visit.call(&d.waiter)?;
        }
        visit.call(&st.forget_cb)
    }
}

/// Tears down runtimes whose loops closed without telling us (loops without `add_reader`).
fn sweep_closed(py: Python<'_>) {
    let runtimes = LoopRuntime::all();
    for rt in runtimes {
        if rt.fd.lock().is_none() {
            rt.teardown_if_closed(py);
        }
    }
}

/// After `fork()`, in the child: the loops of other threads will never run again here.
pub fn after_fork_in_child(py: Python<'_>) {
    let me = process::thread_id();
    for rt in LoopRuntime::all() {
        if rt.thread.load(Ordering::Relaxed) != me {
            rt.teardown(py);
        }
    }
}

/// The loop's reader callback for a runtime's port. The one registered with `add_reader` is
/// owned by the loop, and its drop means the loop let go of it: closed, or collected.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct PortReader {
    rt: Arc<LoopRuntime>,
    /// This reader is the one the loop holds (not a fallback kick).
    registered: AtomicBool,
}

impl PortReader {
    /// For a reader the loop never accepted: dropping it must not tear the runtime down.
    fn disarm_teardown(&self) {
        self.registered.store(false, Ordering::Relaxed);
    }

    fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }
}

#[pymethods]
impl PortReader {
    fn __call__(&self, py: Python<'_>) {
        self.rt.drain(py);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if self.is_registered() {
            self.rt.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        // The loop and our tasks form a cycle that only we can see through: tear down.
        if self.is_registered() {
            Python::attach(|py| self.rt.teardown(py));
        }
    }
}

impl Drop for PortReader {
    fn drop(&mut self) {
        if self.is_registered() {
            Python::attach(|py| self.rt.teardown(py));
        }
    }
}

/// A weak reference to `obj` (the runtime must not keep its loop alive).
pub fn weak(obj: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    use pyo3::types::PyWeakrefReference;
    Ok(PyWeakrefReference::new(obj)?.into_any().unbind())
}

/// The object behind a reference made by `weak` (None once it is gone).
pub fn upgrade<'py>(weak: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};
    match weak.cast::<PyWeakrefReference>() {
        Ok(w) => w.upgrade(),
        Err(_) => Some(weak.clone()),
    }
}

/// Address of a Python object, as a map key (valid while a reference is held).
#[inline]
pub fn ptr_key(obj: &Bound<'_, PyAny>) -> usize {
    obj.as_ptr() as usize
}
