// The per-thread runtime: the scope tree, the registry of tasks it knows, the per-loop deadline
// heaps and timers, and the engine that delivers cancellation to tasks.
//
// Thread. Everything here belongs to the thread that runs the event loop; it lives in a
// thread-local, so a second loop in another thread has its own runtime and never contends for
// a lock. Objects that are touched from other threads (a `CancelScope.cancel()` from a worker)
// hop onto their loop with `call_soon_threadsafe` before they reach this module.
//
// Re-entrancy. `with_rt` hands out the runtime mutably, and the closure must not call into
// Python: Python code (a finaliser, a done-callback, a `__del__`) may re-enter the library. Every
// function below therefore works in three steps: read what it needs under the borrow, release it,
// then make the Python calls. Python references removed from the runtime are returned to the
// caller and dropped after the borrow ends, for the same reason.
//
// Delivery of cancellation (ARCHITECTURE rule 7). A task that becomes effectively cancelled
// gets `Task.cancel(msg)` with a message naming the scope, edge-triggered:
// * never for the task that is running right now (a synchronous cancel would leave
//   `_must_cancel` set after the scope exits, gh-116720) nor for a child that has not started
//   yet (it must reach its first checkpoint, as in trio and AnyIO): those wait for the next
//   delivery batch, one `call_soon` per loop;
// * after each delivery the task is looked at again once it has consumed the cancellation (its
//   waiter completed, or it stepped): if it is still inside a cancelled scope it swallowed the
//   `CancelledError` and is cancelled again (level-triggered, as trio and AnyIO promise).
// Nothing polls: a task parked on a waiter that ignores cancellation (a shielded future, a task
// that catches its cancellation) is looked at only when that waiter completes, so it costs no
// CPU while parked (AnyIO's per-iteration delivery loop spun at 100% there: AnyIO #1111, #1257).
// Every `Task.cancel()` issued is counted on the task and balanced by `uncancel()` when the
// scope that swallows the cancellation exits.

use std::cell::RefCell;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;
use rustc_hash::FxHashMap;

use crate::asyncio;
use crate::scope::deadline::DeadlineHeap;
use crate::scope::tree::{ScopeKey, ScopeTree, TaskKey};
use crate::scope::CancelScope;

/// What the runtime keeps per task.
pub struct TaskEntry {
    /// The `asyncio.Task`; `None` while an eager child runs its first step synchronously.
    pub task: Option<Py<PyAny>>,
    /// True for children of a `TaskGroup` (they are forgotten by the group's done-callback).
    pub child: bool,
}

impl TaskEntry {
    pub fn new(task: Option<Py<PyAny>>, child: bool) -> Self {
        Self { task, child }
    }
}

/// Per-task state of a cancellation being delivered; kept in a side table (only tasks being
/// cancelled have one), so that the per-task entry every child carries stays small.
#[derive(Default)]
struct Delivery {
    /// The waiter the task was parked on when we last delivered a cancellation; the delivery
    /// is consumed once the task is parked on something else.
    waiter: Option<Py<PyAny>>,
    /// Deliveries re-examined without visible progress; bounds the work spent on tasks whose
    /// state cannot be observed (custom Task classes without asyncio's private attributes).
    stalls: u8,
}

/// What the runtime keeps per active scope.
pub struct ScopeEntry {
    pub scope: Py<CancelScope>,
    /// `task.cancelling()` of the host task when the scope was entered.
    pub baseline: isize,
    /// The `CancelledError` message of this scope once it is cancelled.
    pub message: Option<Py<PyString>>,
    /// Identifies the live heap entry for this scope's deadline (see `deadline.rs`).
    pub deadline_gen: u32,
    /// Key of the loop whose heap holds the deadline, when one is registered.
    pub deadline_loop: Option<usize>,
}

struct LoopState {
    /// A weak reference: the runtime must not keep a loop alive after its user dropped it.
    loop_: Py<PyAny>,
    heap: DeadlineHeap<ScopeKey>,
    /// The armed loop timer and the time it fires.
    timer: Option<(f64, Py<PyAny>)>,
    /// Tasks to look at in the next delivery batch.
    pending: Vec<TaskKey>,
    batch_scheduled: bool,
}

pub struct Runtime {
    pub tree: ScopeTree<TaskEntry, ScopeEntry>,
    /// `id(task)` -> key. Entries hold a strong reference to the task (in `TaskEntry`), so an
    /// id cannot be reused while it is in this map.
    by_task: FxHashMap<usize, TaskKey>,
    /// Set while an eager child runs its first step: code running then belongs to that child,
    /// although `asyncio.current_task()` still names the spawning task.
    pub eager_current: Option<TaskKey>,
    /// Keyed by `id(loop)`; each state holds a strong reference to its loop.
    loops: FxHashMap<usize, LoopState>,
    /// Done-callback that forgets plain tasks (created on first use).
    forget_cb: Option<Py<ForgetTask>>,
    /// For children of `TaskGroup.start()`: the future `task_status.started()` resolves.
    statuses: FxHashMap<TaskKey, Py<PyAny>>,
    /// Tasks with a cancellation in flight.
    deliveries: FxHashMap<TaskKey, Delivery>,
}

thread_local! {
    static RUNTIME: RefCell<Runtime> = RefCell::new(Runtime {
        tree: ScopeTree::new(),
        by_task: FxHashMap::default(),
        eager_current: None,
        loops: FxHashMap::default(),
        forget_cb: None,
        statuses: FxHashMap::default(),
        deliveries: FxHashMap::default(),
    });
}

/// A token that identifies the calling thread (the address of its runtime): cheaper than
/// `std::thread::current().id()`, which clones an `Arc`.
#[inline]
pub fn thread_token() -> usize {
    RUNTIME.with(|rt| rt as *const RefCell<Runtime> as usize)
}

/// Runs `f` with this thread's runtime. `f` must not call into Python (see the module notes).
#[inline]
pub fn with_rt<R>(f: impl FnOnce(&mut Runtime) -> R) -> R {
    RUNTIME.with(|rt| f(&mut rt.borrow_mut()))
}

fn ptr_key(obj: &Bound<'_, PyAny>) -> usize {
    obj.as_ptr() as usize
}

// ----- the task registry ----------------------------------------------------------------------

/// The task running now, as the runtime sees it.
pub struct Current<'py> {
    pub key: TaskKey,
    /// `None` while an eager child runs its first step.
    pub task: Option<Bound<'py, PyAny>>,
}

/// The current task's key, registering a plain asyncio task on first use when `register` is
/// set. `Ok(None)` outside any task.
pub fn current<'py>(py: Python<'py>, register: bool) -> PyResult<Option<Current<'py>>> {
    if let Some(key) = with_rt(|rt| rt.eager_current) {
        return Ok(Some(Current { key, task: None }));
    }
    let Some(task) = asyncio::current_task(py)? else {
        return Ok(None);
    };
    let id = ptr_key(&task);
    let found = with_rt(|rt| rt.by_task.get(&id).copied());
    let key = match found {
        Some(k) => k,
        None if register => register_plain(py, &task)?,
        None => return Ok(None),
    };
    Ok(Some(Current {
        key,
        task: Some(task),
    }))
}

/// Registers a plain asyncio task (one that entered a scope); it is forgotten when it is done.
fn register_plain(py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<TaskKey> {
    let entry = TaskEntry::new(Some(task.clone().unbind()), false);
    let id = ptr_key(task);
    let (key, cb) = with_rt(|rt| {
        let (k, _) = rt.tree.add_task(entry, None);
        rt.by_task.insert(id, k);
        (k, rt.forget_cb.as_ref().map(|c| c.clone_ref(py)))
    });
    let cb = match cb {
        Some(cb) => cb,
        None => {
            let cb = Py::new(py, ForgetTask)?;
            with_rt(|rt| rt.forget_cb = Some(cb.clone_ref(py)));
            cb
        }
    };
    task.call_method1(intern!(py, "add_done_callback"), (cb,))?;
    Ok(key)
}

/// Done-callback of plain tasks known to the runtime.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct ForgetTask;

#[pymethods]
impl ForgetTask {
    fn __call__(&self, py: Python<'_>, task: Bound<'_, PyAny>) {
        let id = ptr_key(&task);
        let key = with_rt(|rt| rt.by_task.get(&id).copied());
        if let Some(key) = key {
            drop(forget_task(py, key));
        }
    }
}

/// Registers a task-group child. Returns its key and whether it starts out cancelled.
pub fn register_child(
    task: Option<&Bound<'_, PyAny>>,
    scope: ScopeKey,
    status: Option<Py<PyAny>>,
) -> (TaskKey, bool) {
    let entry = TaskEntry::new(task.map(|t| t.clone().unbind()), true);
    let id = task.map(ptr_key);
    with_rt(|rt| {
        let (k, eff) = rt.tree.add_task(entry, Some(scope));
        if let Some(id) = id {
            rt.by_task.insert(id, k);
        }
        if let Some(status) = status {
            rt.statuses.insert(k, status);
        }
        (k, eff)
    })
}

/// Gives a provisional (eager) child its Task once it suspended.
pub fn bind_task(key: TaskKey, task: &Bound<'_, PyAny>) {
    let id = ptr_key(task);
    let task = task.clone().unbind();
    with_rt(|rt| {
        if let Some(node) = rt.tree.task_mut(key) {
            node.payload.task = Some(task);
            rt.by_task.insert(id, key);
        }
    });
}

/// A task removed from the registry, with the `start()` status future it had, if any.
pub struct Forgotten {
    pub entry: TaskEntry,
    pub status: Option<Py<PyAny>>,
}

/// Removes a finished task from the registry. Scopes it left open are closed (their objects
/// report that they are no longer active).
pub fn forget_task(py: Python<'_>, key: TaskKey) -> Option<Forgotten> {
    let removed = with_rt(|rt| {
        let (entry, leaked) = rt.tree.remove_task(key)?;
        if let Some(t) = &entry.task {
            let id = t.as_ptr() as usize;
            if rt.by_task.get(&id) == Some(&key) {
                rt.by_task.remove(&id);
            }
        }
        let status = rt.statuses.remove(&key);
        let delivery = rt.deliveries.remove(&key);
        Some((entry, leaked, status, delivery))
    })?;
    // Dropped here, outside the runtime borrow (a finaliser may re-enter it).
    let (entry, leaked, status, delivery) = removed;
    drop(delivery);
    for scope in leaked {
        CancelScope::mark_closed(py, &scope);
    }
    Some(Forgotten { entry, status })
}

/// The Task object of a task this thread's runtime knows (None for an eager child still in
/// its first step, or a key of another thread).
pub fn task_object(py: Python<'_>, key: TaskKey) -> Option<Py<PyAny>> {
    with_rt(|rt| {
        rt.tree
            .task(key)
            .and_then(|n| n.payload.task.as_ref().map(|t| t.clone_ref(py)))
    })
}

/// Looks up a task-group child by its Task.
pub fn child_key(task: &Bound<'_, PyAny>) -> Option<TaskKey> {
    let id = ptr_key(task);
    with_rt(|rt| rt.by_task.get(&id).copied())
}

/// True when code running in the current task is inside an effectively cancelled scope; the
/// error to raise is returned then.
pub fn current_cancellation(py: Python<'_>) -> PyResult<Option<PyErr>> {
    if !with_rt(|rt| rt.tree.any_cancelled()) {
        return Ok(None);
    }
    let Some(cur) = current(py, false)? else {
        return Ok(None);
    };
    Ok(cancellation_of(py, cur.key))
}

/// The `CancelledError` that code in task `key` must see now, if it is cancelled.
pub fn cancellation_of(py: Python<'_>, key: TaskKey) -> Option<PyErr> {
    let msg = with_rt(|rt| {
        if !rt.tree.is_cancelled(key) {
            return None;
        }
        let origin = rt.tree.cancel_origin(key)?;
        rt.tree
            .scope(origin)
            .and_then(|s| s.payload.message.as_ref().map(|m| m.clone_ref(py)))
    })?;
    Some(asyncio::cancelled(py, msg.bind(py)))
}

// ----- delivery ------------------------------------------------------------------------------

/// Delivers cancellation to tasks that just became effectively cancelled.
pub fn deliver(py: Python<'_>, tasks: Vec<TaskKey>) -> PyResult<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let current = asyncio::current_task(py)?.map(|t| ptr_key(&t));
    let eager = with_rt(|rt| rt.eager_current);
    for key in tasks {
        let task = with_rt(|rt| {
            rt.tree
                .task(key)
                .map(|n| n.payload.task.as_ref().map(|t| t.clone_ref(py)))
        });
        match task {
            None => {}
            Some(None) => defer(py, key)?,
            Some(Some(task)) => {
                let task = task.into_bound(py);
                if Some(key) == eager || Some(ptr_key(&task)) == current || !has_started(&task) {
                    defer(py, key)?;
                } else {
                    deliver_now(py, key, &task)?;
                }
            }
        }
    }
    Ok(())
}

/// Makes sure the runtime has a state for `loop_` and returns its key. A loop's state lives
/// until the loop is closed; states of closed loops are dropped when a new loop shows up.
fn loop_state(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> usize {
    let id = ptr_key(loop_);
    // The state is keyed by address and holds the loop weakly, so a state whose loop died may
    // sit under the address of a new loop: only a state whose reference is to this very loop
    // counts.
    let known = with_rt(|rt| rt.loops.get(&id).map(|s| s.loop_.clone_ref(py)));
    let current = known.is_some_and(|w| upgrade(w.bind(py)).is_some_and(|l| l.is(loop_)));
    if !current {
        sweep_closed_loops(py);
        let state = LoopState::new(weak(loop_));
        let stale = with_rt(|rt| rt.loops.insert(id, state));
        drop(stale);
    }
    id
}

/// Queues a task for the next delivery batch on the running loop.
pub fn defer(py: Python<'_>, key: TaskKey) -> PyResult<()> {
    let loop_ = asyncio::running_loop(py, "cancellation")?;
    let id = loop_state(py, &loop_);
    let schedule = with_rt(|rt| {
        let Some(state) = rt.loops.get_mut(&id) else {
            return false;
        };
        state.pending.push(key);
        !std::mem::replace(&mut state.batch_scheduled, true)
    });
    if schedule {
        let batch = Bound::new(py, DeliveryBatch { loop_id: id })?;
        loop_.call_method1(intern!(py, "call_soon"), (batch,))?;
    }
    Ok(())
}

/// A task has started once its coroutine ran its first step. One parked on a future has.
fn has_started(task: &Bound<'_, PyAny>) -> bool {
    let py = task.py();
    if task
        .getattr(intern!(py, "_fut_waiter"))
        .is_ok_and(|w| !w.is_none())
    {
        return true;
    }
    let Ok(coro) = task.call_method0(intern!(py, "get_coro")) else {
        return true;
    };
    let flag = |name| {
        coro.getattr(name)
            .and_then(|v| v.is_truthy())
            .unwrap_or(true)
    };
    flag(intern!(py, "cr_suspended")) || flag(intern!(py, "cr_running"))
}

fn deliver_now(py: Python<'_>, key: TaskKey, task: &Bound<'_, PyAny>) -> PyResult<()> {
    if task.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    let msg = with_rt(|rt| {
        let origin = rt.tree.cancel_origin(key)?;
        rt.tree
            .scope(origin)
            .and_then(|s| s.payload.message.as_ref().map(|m| m.clone_ref(py)))
    });
    let Some(msg) = msg else {
        return Ok(());
    };
    task.call_method1(intern!(py, "cancel"), (msg,))?;
    let waiter = task
        .getattr(intern!(py, "_fut_waiter"))
        .ok()
        .filter(|w| !w.is_none());
    let waiter_owned = waiter.as_ref().map(|w| w.clone().unbind());
    let previous = with_rt(|rt| {
        let node = rt.tree.task_mut(key)?;
        node.delivered += 1;
        std::mem::replace(
            &mut rt.deliveries.entry(key).or_default().waiter,
            waiter_owned,
        )
    });
    drop(previous);
    // Look again once the task has consumed this cancellation: when the future it is parked on
    // completes (a Task being cancelled can take several iterations), or at the next batch.
    match waiter {
        Some(w) if !asyncio::is_done(&w)? => {
            let recheck = Bound::new(py, Recheck { key })?;
            w.call_method1(intern!(py, "add_done_callback"), (recheck,))?;
            Ok(())
        }
        _ => defer(py, key),
    }
}

/// Looks at a task again after a delivery or a deferral.
fn examine(py: Python<'_>, key: TaskKey) -> PyResult<()> {
    let snapshot = with_rt(|rt| {
        let node = rt.tree.task(key)?;
        let cancelled = rt.tree.is_cancelled(key) && !node.exempt;
        Some((
            node.payload.task.as_ref().map(|t| t.clone_ref(py)),
            rt.deliveries
                .get(&key)
                .and_then(|d| d.waiter.as_ref().map(|w| w.clone_ref(py))),
            cancelled,
        ))
    });
    let Some((task, delivered_waiter, cancelled)) = snapshot else {
        return Ok(());
    };
    let Some(task) = task.map(|t| t.into_bound(py)) else {
        // Still running its eager first step: try again next batch.
        return defer(py, key);
    };
    if !cancelled || task.call_method0(intern!(py, "done"))?.is_truthy()? {
        let finished = with_rt(|rt| rt.deliveries.remove(&key));
        drop(finished);
        return Ok(());
    }
    if !has_started(&task) {
        return defer(py, key);
    }
    // Has the task consumed the previous delivery? Not while a cancel is still pending
    // (`_must_cancel`) or while it still sits on the waiter it was parked on then.
    let pending = task
        .getattr(intern!(py, "_must_cancel"))
        .and_then(|v| v.is_truthy())
        .ok();
    let waiter = task.getattr(intern!(py, "_fut_waiter")).ok();
    let observable = pending.is_some() && waiter.is_some();
    let unconsumed = pending == Some(true)
        || match (&waiter, &delivered_waiter) {
            (Some(w), Some(d)) => w.is(d.bind(py)),
            _ => false,
        };
    let stalls = with_rt(|rt| {
        rt.tree.task(key)?;
        let d = rt.deliveries.entry(key).or_default();
        if unconsumed || !observable {
            d.stalls = d.stalls.saturating_add(1);
        } else {
            d.stalls = 0;
        }
        Some(d.stalls)
    });
    // Bounded: a task whose progress we cannot observe is re-delivered a few times at most;
    // after that it is cancelled again only at its next toolcase_rs checkpoint.
    if stalls.unwrap_or(u8::MAX) > 8 {
        return Ok(());
    }
    if unconsumed {
        return defer(py, key);
    }
    deliver_now(py, key, &task)
}

/// The callback that runs a loop's delivery batch.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct DeliveryBatch {
    loop_id: usize,
}

#[pymethods]
impl DeliveryBatch {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let batch = with_rt(|rt| {
            let state = rt.loops.get_mut(&self.loop_id)?;
            state.batch_scheduled = false;
            Some(std::mem::take(&mut state.pending))
        })
        .unwrap_or_default();
        for key in batch {
            examine(py, key)?;
        }
        Ok(())
    }
}

/// Done-callback on the waiter of a task we cancelled: look at the task again.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct Recheck {
    key: TaskKey,
}

#[pymethods]
impl Recheck {
    fn __call__(&self, py: Python<'_>, _fut: Bound<'_, PyAny>) -> PyResult<()> {
        defer(py, self.key)
    }
}

// ----- deadlines -----------------------------------------------------------------------------

impl LoopState {
    fn new(loop_: Py<PyAny>) -> Self {
        Self {
            loop_,
            heap: DeadlineHeap::new(),
            timer: None,
            pending: Vec::new(),
            batch_scheduled: false,
        }
    }
}

fn deadline_live(tree: &ScopeTree<TaskEntry, ScopeEntry>) -> impl Fn(ScopeKey, u32) -> bool + '_ {
    |k, g| tree.scope(k).is_some_and(|s| s.payload.deadline_gen == g)
}

/// Registers (or moves) the deadline of active scope `key` on the running loop.
pub fn set_deadline(
    py: Python<'_>,
    loop_: &Bound<'_, PyAny>,
    key: ScopeKey,
    deadline: f64,
) -> PyResult<()> {
    let id = loop_state(py, loop_);
    let rearm = with_rt(|rt| {
        let Runtime { tree, loops, .. } = rt;
        let node = tree.scope_mut(key)?;
        node.deadline = deadline;
        let had = node.payload.deadline_loop.replace(id).is_some();
        node.payload.deadline_gen = node.payload.deadline_gen.wrapping_add(1);
        let generation = node.payload.deadline_gen;
        let state = loops.get_mut(&id)?;
        if had {
            state.heap.forget(deadline_live(tree));
        }
        if deadline.is_finite() {
            state.heap.push(deadline, key, generation);
        }
        let armed_for = state.timer.as_ref().map(|(when, _)| *when);
        (deadline.is_finite() && armed_for.is_none_or(|when| deadline < when)).then_some(())
    });
    if rearm.is_some() {
        arm_timer(py, loop_, deadline)?;
    }
    Ok(())
}

/// Drops the deadline of a scope that is exiting.
pub fn clear_deadline(loop_id: usize, key: ScopeKey) {
    with_rt(|rt| {
        let Runtime { tree, loops, .. } = rt;
        if let Some(node) = tree.scope_mut(key) {
            node.payload.deadline_gen = node.payload.deadline_gen.wrapping_add(1);
            node.payload.deadline_loop = None;
        }
        if let Some(state) = loops.get_mut(&loop_id) {
            state.heap.forget(deadline_live(tree));
        }
    });
}

fn arm_timer(py: Python<'_>, loop_: &Bound<'_, PyAny>, when: f64) -> PyResult<()> {
    let id = ptr_key(loop_);
    let callback = Bound::new(py, DeadlineTimer { loop_id: id })?;
    let handle = loop_.call_method1(intern!(py, "call_at"), (when, callback))?;
    let old = with_rt(|rt| {
        rt.loops
            .get_mut(&id)
            .and_then(|s| s.timer.replace((when, handle.unbind())))
    });
    if let Some((_, old)) = old {
        old.bind(py).call_method0(intern!(py, "cancel"))?;
    }
    Ok(())
}

/// The single loop timer of a loop's deadline heap.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct DeadlineTimer {
    loop_id: usize,
}

#[pymethods]
impl DeadlineTimer {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let loop_ = with_rt(|rt| {
            let state = rt.loops.get_mut(&self.loop_id)?;
            // Only the timer that is still armed may act (an older one raced its cancel).
            state
                .timer
                .take()
                .map(|(_, h)| (state.loop_.clone_ref(py), h))
        });
        let Some((loop_, _handle)) = loop_ else {
            return Ok(());
        };
        let Some(loop_) = upgrade(loop_.bind(py)) else {
            return Ok(());
        };
        let now: f64 = loop_.call_method0(intern!(py, "time"))?.extract()?;
        let (due, next) = with_rt(|rt| {
            let Runtime { tree, loops, .. } = rt;
            let Some(state) = loops.get_mut(&self.loop_id) else {
                return (Vec::new(), None);
            };
            let keys = state.heap.pop_due(now, deadline_live(tree));
            let next = state.heap.earliest(deadline_live(tree));
            let scopes: Vec<Py<CancelScope>> = keys
                .into_iter()
                .filter_map(|k| tree.scope(k).map(|s| s.payload.scope.clone_ref(py)))
                .collect();
            (scopes, next)
        });
        let mut first_err = None;
        for scope in due {
            if let Err(e) = CancelScope::cancel_by_deadline(scope.bind(py)) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(when) = next {
            arm_timer(py, &loop_, when)?;
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Drops the state of loops that were closed with deadlines or deliveries still pending
/// (their timers will never fire). Called when a new loop shows up.
pub fn sweep_closed_loops(py: Python<'_>) {
    let loops: Vec<(usize, Py<PyAny>)> = with_rt(|rt| {
        rt.loops
            .iter()
            .map(|(id, s)| (*id, s.loop_.clone_ref(py)))
            .collect()
    });
    for (id, loop_) in loops {
        let closed = upgrade(loop_.bind(py)).is_none_or(|l| {
            l.call_method0(intern!(py, "is_closed"))
                .and_then(|v| v.is_truthy())
                .unwrap_or(false)
        });
        if closed {
            let gone = with_rt(|rt| rt.loops.remove(&id));
            drop(gone);
        }
    }
}

/// A weak reference to `obj` (for loops: the runtime and ports must not keep them alive).
pub fn weak(obj: &Bound<'_, PyAny>) -> Py<PyAny> {
    use pyo3::types::PyWeakrefReference;
    PyWeakrefReference::new(obj)
        .map(|w| w.into_any().unbind())
        .unwrap_or_else(|_| obj.clone().unbind())
}

/// The object behind a reference made by `weak` (None once it is gone).
pub fn upgrade<'py>(weak: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};
    match weak.cast::<PyWeakrefReference>() {
        Ok(w) => w.upgrade(),
        Err(_) => Some(weak.clone()),
    }
}

/// `task.uncancel()` `n` times; returns `task.cancelling()` afterwards.
pub fn uncancel(task: &Bound<'_, PyAny>, n: u32) -> PyResult<isize> {
    let py = task.py();
    for _ in 0..n {
        task.call_method0(intern!(py, "uncancel"))?;
    }
    task.call_method0(intern!(py, "cancelling"))?.extract()
}
