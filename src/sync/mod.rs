// Synchronisation primitives that work across tasks, event loops and threads.
//
// Shape. Each primitive keeps its state behind a `parking_lot::Mutex` inside an `Arc`, so one
// object can be used by tasks of several loops in different threads and by plain threads. A
// waiter records how to wake it (`Wake`): a native future on its loop (with that loop's
// `LoopPort` for wake-ups from other threads), or a `Parker` for a blocked thread. A release
// picks the next waiter in FIFO order, marks its `Slot` granted under the mutex, and the wake-up
// itself happens after the mutex is released (rule 6: never call into Python under a Rust lock):
// `set_result` directly when the waiter's loop is the caller's, else through the port, or an
// unpark.
//
// Grant and cancellation (rule 2). A `Slot` goes WAITING -> GRANTED -> TAKEN, or to ABANDONED.
// Only one side wins each transition (compare-and-swap), so a waiter cancelled after it was
// granted gives the permit back exactly once, and a grant to a waiter whose loop has closed is
// passed on to the next waiter instead of being lost.
//
// Checkpoints (AnyIO semantics). An async acquire first checks for cancellation; if it can take
// the permit at once it still yields to the loop once (a "cancel-shielded checkpoint"), unless
// the primitive was made with `fast_acquire=True`.
//
// `Core<P>` is the generic permit machinery (Lock, RLock, Semaphore, CapacityLimiter differ only
// in their `Permits` rules); Event and Queue use `Wake`, `Slot` and `Wakeups` directly.

pub mod event;
pub mod lock;
pub mod queue;
pub mod rate;
pub mod semaphore;
pub mod waiters;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::{PyTraverseError, PyVisit};
use pyo3::sync::PyOnceLock;

use crate::asyncio;
use crate::awaitable::{Drive, Input, Step};
use crate::bridge::{self, Parker};
use crate::loop_runtime::tasks;
use crate::loop_runtime::{Completion, Handoff, LoopRuntime};
use crate::process::{self, Origin};
use waiters::WaiterQueue;

// ----- slots and wake-ups --------------------------------------------------------------------

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const TAKEN: u8 = 2;
const ABANDONED: u8 = 3;

/// The grant state of one waiter, shared by its queue entry and the code waiting.
pub struct Slot(AtomicU8);

impl Slot {
    pub fn new() -> Arc<Slot> {
        Arc::new(Slot(AtomicU8::new(WAITING)))
    }

    fn swap(&self, from: u8, to: u8) -> bool {
        self.0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn grant(&self) -> bool {
        self.swap(WAITING, GRANTED)
    }

    /// The waiter takes what it was granted.
    pub fn take(&self) -> bool {
        self.swap(GRANTED, TAKEN)
    }

    /// The waiter leaves before being granted.
    pub fn leave(&self) -> bool {
        self.swap(WAITING, ABANDONED)
    }

    /// The waiter gives up a grant it will not use.
    pub fn refuse(&self) -> bool {
        self.swap(GRANTED, ABANDONED)
    }
}

/// Who to wake.
pub enum Target {
    /// A task parked on `fut`, on the loop of `rt`.
    Future {
        fut: Py<PyAny>,
        rt: Arc<LoopRuntime>,
    },
    /// A plain thread parked in a blocking call.
    Thread(Arc<Parker>),
}

/// How to wake a waiter, and where it came from (after `fork()`, waiters of threads that do
/// not exist in the child are skipped).
pub struct Wake {
    pub target: Target,
    origin: Origin,
}

impl Wake {
    /// A future on the running loop to park the current task on.
    pub fn for_task(py: Python<'_>) -> PyResult<(Wake, Bound<'_, PyAny>)> {
        let loop_ = asyncio::running_loop(py, "waiting on a toolcase_rs primitive")?;
        let rt = LoopRuntime::running(py, "waiting on a toolcase_rs primitive")?;
        let fut = asyncio::create_future(&loop_)?;
        Ok((
            Wake {
                target: Target::Future {
                    fut: fut.clone().unbind(),
                    rt,
                },
                origin: Origin::here(),
            },
            fut,
        ))
    }

    /// A blocked thread.
    pub fn thread(parker: Arc<Parker>) -> Wake {
        Wake {
            target: Target::Thread(parker),
            origin: Origin::here(),
        }
    }

    /// Another handle on the same waiter.
    pub fn clone_ref(&self, py: Python<'_>) -> Wake {
        let target = match &self.target {
            Target::Future { fut, rt } => Target::Future {
                fut: fut.clone_ref(py),
                rt: rt.clone(),
            },
            Target::Thread(p) => Target::Thread(p.clone()),
        };
        Wake {
            target,
            origin: self.origin,
        }
    }

    /// False for the waiter of a thread that does not exist in this (forked) process.
    pub fn alive(&self) -> bool {
        self.origin.alive()
    }
}

/// Drops, after `fork()`, the waiters of threads the child does not have. `generation` is the
/// fork generation the queue was last pruned in.
pub fn prune_dead<W>(queue: &mut WaiterQueue<W>, generation: &mut u64, wake: impl Fn(&W) -> &Wake) {
    let now = process::generation();
    if *generation != now {
        *generation = now;
        queue.retain(|w| wake(w).alive());
    }
}

/// Gives back a grant its waiter could not use (its loop closed).
type GiveBack = Box<dyn FnOnce(Python<'_>) -> Wakeups + Send>;

struct Wakeup {
    wake: Wake,
    value: Option<Py<PyAny>>,
    slot: Option<Arc<Slot>>,
    give_back: Option<GiveBack>,
}

/// A wake-up on its way to another loop: resolved there, or, if that loop closes first, its
/// grant is passed on.
struct Remote {
    fut: Py<PyAny>,
    value: Option<Py<PyAny>>,
    slot: Option<Arc<Slot>>,
    give_back: Option<GiveBack>,
}

impl Handoff for Remote {
    fn run(self: Box<Self>, py: Python<'_>) -> PyResult<()> {
        let value = self.value.unwrap_or_else(|| py.None());
        asyncio::resolve(self.fut.bind(py), value.bind(py))
    }

    fn refuse(self: Box<Self>, py: Python<'_>) {
        if let (Some(slot), Some(give_back)) = (self.slot, self.give_back) {
            if slot.refuse() {
                let _ = give_back(py).run(py);
            }
        }
    }
}

/// Wake-ups collected under a primitive's mutex, performed after it is released.
#[derive(Default)]
#[must_use = "wake-ups must be run after the lock is released"]
pub struct Wakeups(Vec<Wakeup>);

impl Wakeups {
    pub fn push(&mut self, wake: Wake, value: Option<Py<PyAny>>) {
        self.0.push(Wakeup {
            wake,
            value,
            slot: None,
            give_back: None,
        });
    }

    /// A grant: if the waiter's loop is gone, `give_back` passes it on.
    pub fn push_grant(&mut self, wake: Wake, slot: Arc<Slot>, give_back: GiveBack) {
        self.0.push(Wakeup {
            wake,
            value: None,
            slot: Some(slot),
            give_back: Some(give_back),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Performs the wake-ups (call with no primitive lock held).
    pub fn run(self, py: Python<'_>) -> PyResult<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let current = LoopRuntime::current(py)?;
        // In grant order: waiters granted first must wake first.
        let mut queue: std::collections::VecDeque<Wakeup> = self.0.into();
        let mut first_err = None;
        while let Some(w) = queue.pop_front() {
            match w.wake.target {
                Target::Future { fut, rt } => {
                    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &rt)) {
                        let value = w.value.unwrap_or_else(|| py.None());
                        if let Err(e) = asyncio::resolve(fut.bind(py), value.bind(py)) {
                            first_err.get_or_insert(e);
                        }
                    } else {
                        let remote = Box::new(Remote {
                            fut,
                            value: w.value,
                            slot: w.slot,
                            give_back: w.give_back,
                        });
                        // A loop that closed refuses the hand-off: its grant goes on.
                        rt.post(py, Completion::Handoff(remote));
                    }
                }
                Target::Thread(parker) => parker.unpark(),
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

// ----- the generic permit machinery ----------------------------------------------------------

/// What distinguishes Lock, RLock, Semaphore and CapacityLimiter.
pub trait Permits: Send + 'static {
    /// Who asks: the owner for a lock, the borrower for a limiter, nothing for a semaphore.
    type Claim: Clone + Send + Sync + 'static;

    /// Takes a permit for `claim` if one is free.
    fn try_take(&mut self, claim: &Self::Claim) -> bool;

    /// Returns a permit `claim` held.
    fn put_back(&mut self, claim: &Self::Claim);

    /// True if `claim` may take a permit ahead of queued waiters (an RLock owner re-entering).
    fn may_barge(&self, _claim: &Self::Claim) -> bool {
        false
    }
}

struct Entry<C> {
    slot: Arc<Slot>,
    wake: Wake,
    claim: C,
}

pub struct Core<P: Permits> {
    pub permits: P,
    waiters: WaiterQueue<Entry<P::Claim>>,
    /// The fork generation the queue was last pruned in (see `prune_dead`).
    generation: u64,
}

impl<P: Permits> Core<P> {
    pub fn waiters_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    fn prune(&mut self) {
        prune_dead(&mut self.waiters, &mut self.generation, |e| &e.wake);
    }
}

/// A primitive's shared state.
pub struct Shared<P: Permits>(Mutex<Core<P>>);

pub type SharedRef<P> = Arc<Shared<P>>;

impl<P: Permits> Shared<P> {
    pub fn new(permits: P) -> SharedRef<P> {
        Arc::new(Shared(Mutex::new(Core {
            permits,
            waiters: WaiterQueue::default(),
            generation: process::generation(),
        })))
    }

    /// The state, with the waiters of threads lost to a `fork()` pruned.
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, Core<P>> {
        let mut core = self.0.lock();
        core.prune();
        core
    }

    /// Takes a permit now if one is free and nobody is queued ahead.
    pub fn try_acquire(&self, claim: &P::Claim) -> bool {
        let mut core = self.lock();
        (core.waiters.is_empty() || core.permits.may_barge(claim)) && core.permits.try_take(claim)
    }

    /// Returns a permit and grants it onwards.
    pub fn release(self: &Arc<Self>, claim: &P::Claim) -> Wakeups {
        self.change(|p| {
            p.put_back(claim);
            Ok(())
        })
        .expect("put_back cannot fail")
    }

    /// Changes the permits under the lock (a release, a new total), then grants waiters what
    /// that freed. `f` may refuse with an error, in which case nothing is granted.
    pub fn change(self: &Arc<Self>, f: impl FnOnce(&mut P) -> PyResult<()>) -> PyResult<Wakeups> {
        let mut core = self.lock();
        f(&mut core.permits)?;
        let mut out = Wakeups::default();
        self.grant_waiting(&mut core, &mut out);
        Ok(out)
    }

    /// Grants permits to queued waiters, in order, while they can take one.
    pub fn grant_waiting(self: &Arc<Self>, core: &mut Core<P>, out: &mut Wakeups) {
        while let Some(front) = core.waiters.front() {
            if !core.permits.try_take(&front.claim) {
                break;
            }
            let entry = core.waiters.pop_front().expect("front exists");
            entry.slot.grant();
            let me = self.clone();
            let claim = entry.claim;
            out.push_grant(
                entry.wake,
                entry.slot,
                Box::new(move |_py| me.release(&claim)),
            );
        }
    }

    /// Enqueues unless a permit can be taken now (checked under the same lock).
    fn acquire_or_enqueue(&self, claim: &P::Claim, wake: Wake) -> Option<(u64, Arc<Slot>)> {
        let mut core = self.lock();
        if (core.waiters.is_empty() || core.permits.may_barge(claim))
            && core.permits.try_take(claim)
        {
            return None;
        }
        let slot = Slot::new();
        let id = core.waiters.push(Entry {
            slot: slot.clone(),
            wake,
            claim: claim.clone(),
        });
        Some((id, slot))
    }

    /// A waiter leaves: dequeue it, or give back what it was granted.
    pub fn abandon(self: &Arc<Self>, id: u64, slot: &Slot, claim: &P::Claim) -> Wakeups {
        let mut core = self.lock();
        let mut out = Wakeups::default();
        if slot.leave() {
            core.waiters.remove(id);
            // Leaving may let the next waiter in (a limiter's waiters can differ).
            self.grant_waiting(&mut core, &mut out);
        } else if slot.refuse() {
            core.permits.put_back(claim);
            self.grant_waiting(&mut core, &mut out);
        }
        out
    }

    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }
}

// ----- acquiring: async and blocking ---------------------------------------------------------

/// A Python `False` to resolve a waiter's future with when its timeout passes.
fn timeout_marker(py: Python<'_>) -> Py<PyAny> {
    static MARK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    MARK.get_or_init(py, || {
        pyo3::types::PyBool::new(py, false)
            .to_owned()
            .into_any()
            .unbind()
    })
    .clone_ref(py)
}

/// Arms a loop timer that resolves `fut` with the timeout marker after `timeout` seconds.
pub fn arm_timeout(py: Python<'_>, fut: &Bound<'_, PyAny>, timeout: f64) -> PyResult<Py<PyAny>> {
    let loop_ = fut.call_method0(intern!(py, "get_loop"))?;
    let setter = Bound::new(
        py,
        TimeoutSetter {
            fut: fut.clone().unbind(),
        },
    )?;
    Ok(loop_
        .call_method1(intern!(py, "call_later"), (timeout.max(0.0), setter))?
        .unbind())
}

/// Whether a resumed waiter's future was resolved by its timeout.
pub fn timed_out(py: Python<'_>, fut: &Bound<'_, PyAny>) -> bool {
    fut.call_method0(intern!(py, "result"))
        .is_ok_and(|r| r.is(timeout_marker(py).bind(py)))
}

#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct TimeoutSetter {
    fut: Py<PyAny>,
}

#[pymethods]
impl TimeoutSetter {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        asyncio::resolve(self.fut.bind(py), timeout_marker(py).bind(py))
    }
}

pub fn disarm(py: Python<'_>, timer: &mut Option<Py<PyAny>>) {
    if let Some(t) = timer.take() {
        let _ = t.bind(py).call_method0(intern!(py, "cancel"));
    }
}

enum Phase {
    Start,
    /// Took the permit at once; yielding once before returning (the checkpoint).
    Yielded,
    /// Queued; parked on a future.
    Queued {
        id: u64,
        slot: Arc<Slot>,
    },
    Done,
}

/// `await primitive.acquire()`.
///
/// Cancel safety: cancelled while queued, the waiter leaves the queue; cancelled after it was
/// granted (or during the checkpoint yield after taking the permit), the permit is given back
/// and passed on. A timeout behaves like a cancellation but returns False.
pub struct Acquire<P: Permits> {
    shared: SharedRef<P>,
    claim: P::Claim,
    fast: bool,
    timeout: Option<f64>,
    phase: Phase,
    fut: Option<Py<PyAny>>,
    timer: Option<Py<PyAny>>,
}

impl<P: Permits> Acquire<P> {
    /// `timeout` must have gone through `check_timeout`.
    pub fn new(shared: SharedRef<P>, claim: P::Claim, fast: bool, timeout: Option<f64>) -> Self {
        Acquire {
            shared,
            claim,
            fast,
            timeout,
            phase: Phase::Start,
            fut: None,
            timer: None,
        }
    }

    /// Gives back whatever this acquire holds or waits for.
    fn unwind(&mut self, py: Python<'_>) -> PyResult<()> {
        disarm(py, &mut self.timer);
        let wakeups = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Yielded => self.shared.release(&self.claim),
            Phase::Queued { id, slot } => self.shared.abandon(id, &slot, &self.claim),
            Phase::Start | Phase::Done => return Ok(()),
        };
        wakeups.run(py)
    }
}

impl<P: Permits> Drive for Acquire<P> {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(err) = input {
            self.unwind(py)?;
            return Err(err);
        }
        let true_ = || {
            pyo3::types::PyBool::new(py, true)
                .to_owned()
                .into_any()
                .unbind()
        };
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Start => {
                let (wake, fut) = if self.shared.try_acquire(&self.claim) {
                    if self.fast {
                        return Ok(Step::Return(true_()));
                    }
                    self.phase = Phase::Yielded;
                    return Ok(Step::Yield(py.None()));
                } else {
                    Wake::for_task(py)?
                };
                match self.shared.acquire_or_enqueue(&self.claim, wake) {
                    None => {
                        // A permit freed up meanwhile.
                        if self.fast {
                            return Ok(Step::Return(true_()));
                        }
                        self.phase = Phase::Yielded;
                        Ok(Step::Yield(py.None()))
                    }
                    Some((id, slot)) => {
                        if let Some(t) = self.timeout {
                            self.timer = Some(arm_timeout(py, &fut, t)?);
                        }
                        asyncio::mark_blocking(&fut)?;
                        self.fut = Some(fut.clone().unbind());
                        self.phase = Phase::Queued { id, slot };
                        Ok(Step::Yield(fut.unbind()))
                    }
                }
            }
            Phase::Yielded => Ok(Step::Return(true_())),
            Phase::Queued { id, slot } => {
                if slot.take() {
                    disarm(py, &mut self.timer);
                    return Ok(Step::Return(true_()));
                }
                // Not granted: only the timeout resolves the future otherwise.
                self.phase = Phase::Queued { id, slot };
                let fut = self.fut.as_ref().expect("queued").clone_ref(py);
                if timed_out(py, fut.bind(py)) {
                    self.unwind(py)?;
                    // Granted in the same instant the timer fired: keep it.
                    return Ok(Step::Return(
                        pyo3::types::PyBool::new(py, false)
                            .to_owned()
                            .into_any()
                            .unbind(),
                    ));
                }
                Err(PyRuntimeError::new_err(
                    "internal error: a primitive waiter resumed without a grant",
                ))
            }
            Phase::Done => Err(PyRuntimeError::new_err("acquire() awaited twice")),
        }
    }

    fn close(&mut self, py: Python<'_>) {
        let _ = self.unwind(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)?;
        visit.call(&self.timer)
    }
}

impl<P: Permits> Drop for Acquire<P> {
    fn drop(&mut self) {
        if !matches!(self.phase, Phase::Done | Phase::Start) {
            Python::attach(|py| {
                let _ = self.unwind(py);
            });
        }
    }
}

/// Rejects a NaN timeout (None and infinities are fine).
pub fn check_timeout(timeout: Option<f64>) -> PyResult<Option<f64>> {
    match timeout {
        Some(t) if t.is_nan() => Err(pyo3::exceptions::PyValueError::new_err(
            "timeout must not be NaN",
        )),
        Some(t) if t == f64::INFINITY => Ok(None),
        other => Ok(other),
    }
}

/// Undoes an acquire whose checkpoint yield was interrupted.
pub type Undo = Box<dyn FnOnce(Python<'_>) -> PyResult<()> + Send + Sync>;

/// An acquire that already succeeded: yields to the loop once (AnyIO's cancel-shielded
/// checkpoint), then finishes with `value`.
///
/// Cancel safety: interrupted during that yield (a native cancel, or the coroutine closed), it
/// releases what was acquired before propagating.
pub struct CheckpointAfter {
    value: Py<PyAny>,
    undo: Option<Undo>,
    yielded: bool,
}

impl CheckpointAfter {
    pub fn new(value: Py<PyAny>, undo: Undo) -> Self {
        CheckpointAfter {
            value,
            undo: Some(undo),
            yielded: false,
        }
    }
}

impl Drive for CheckpointAfter {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(err) = input {
            if let Some(undo) = self.undo.take() {
                undo(py)?;
            }
            return Err(err);
        }
        if !self.yielded {
            self.yielded = true;
            return Ok(Step::Yield(py.None()));
        }
        self.undo = None;
        Ok(Step::Return(self.value.clone_ref(py)))
    }

    fn close(&mut self, py: Python<'_>) {
        if let Some(undo) = self.undo.take() {
            let _ = undo(py);
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.value)
    }
}

/// What `__aenter__` returns once the permit is held: done at once with `fast_acquire`, else
/// after one checkpoint yield (`undo` is only built for that case).
pub fn entered<'py>(
    py: Python<'py>,
    fast: bool,
    value: Py<PyAny>,
    undo: impl FnOnce() -> Undo,
) -> PyResult<Bound<'py, PyAny>> {
    if fast {
        if value.is_none(py) {
            return Ok(Ready::none(py)?.into_any());
        }
        return Ok(Ready::new(py, value)?.into_any());
    }
    Ok(Waiting::new(py, CheckpointAfter::new(value, undo()))?.into_any())
}

/// Keeps the objects behind holders for `statistics()` (a lock's owner, a limiter's
/// borrowers), outside the primitive's mutex.
pub trait HolderRecord: Send + Sync + 'static {
    fn add(&self, holder: Holder, obj: Py<PyAny>);
}

/// An acquire on behalf of a holder (Lock, RLock, CapacityLimiter). With no holder given, the
/// holder is the task that runs the acquire, resolved when it starts (so an `acquire()` created
/// in one task and awaited in another belongs to the second); `check` refuses a holder that
/// may not acquire (it already holds a non-reentrant permit). On success the holder is
/// recorded.
pub struct HolderAcquire<P: Permits<Claim = Holder>, R: HolderRecord> {
    pub shared: SharedRef<P>,
    pub record: Arc<R>,
    pub check: fn(&SharedRef<P>, Holder) -> PyResult<()>,
    pub fast: bool,
    pub timeout: Option<f64>,
    /// None: the running task, resolved on the first resume.
    pub holder: Option<(Holder, Py<PyAny>)>,
    /// `async with` yields None rather than the acquire's True.
    pub yield_none: bool,
    /// Built on the first resume.
    pub inner: Option<Acquire<P>>,
}

impl<P: Permits<Claim = Holder>, R: HolderRecord> Drive for HolderAcquire<P, R> {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if self.inner.is_none() {
            if let Input::Throw(err) = input {
                return Err(err);
            }
            let (holder, obj) = match self.holder.take() {
                Some(h) => h,
                None => current_holder(py)?,
            };
            (self.check)(&self.shared, holder)?;
            self.inner = Some(Acquire::new(
                self.shared.clone(),
                holder,
                self.fast,
                self.timeout,
            ));
            self.holder = Some((holder, obj));
        }
        let step = self
            .inner
            .as_mut()
            .expect("built above")
            .resume(py, input)?;
        if let Step::Return(v) = &step {
            if v.bind(py).is_truthy()? {
                if let Some((holder, obj)) = self.holder.take() {
                    self.record.add(holder, obj);
                }
                if self.yield_none {
                    return Ok(Step::Return(py.None()));
                }
            }
        }
        Ok(step)
    }

    fn close(&mut self, py: Python<'_>) {
        if let Some(inner) = &mut self.inner {
            inner.close(py);
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(inner) = &self.inner {
            inner.traverse(visit)?;
        }
        visit.call(self.holder.as_ref().map(|(_, o)| o))
    }
}

/// Refuses blocking calls on a thread that runs an event loop (they would freeze it).
pub fn check_blocking_allowed(py: Python<'_>, what: &str) -> PyResult<()> {
    if asyncio::running_loop_opt(py)?.is_some() {
        return Err(PyRuntimeError::new_err(format!(
            "{what} would block the running event loop; use the async form \
             (`await ...` / `async with`) in async code"
        )));
    }
    Ok(())
}

/// Blocking acquire for plain threads; the GIL is released while parked.
pub fn acquire_blocking<P: Permits>(
    py: Python<'_>,
    shared: &SharedRef<P>,
    claim: &P::Claim,
    timeout: Option<f64>,
) -> PyResult<bool> {
    check_blocking_allowed(py, "a blocking acquire")?;
    let parker = Arc::new(Parker::default());
    let Some((id, slot)) = shared.acquire_or_enqueue(claim, Wake::thread(parker.clone())) else {
        return Ok(true);
    };
    let deadline = bridge::deadline_after(timeout);
    py.detach(|| parker.park(deadline));
    if slot.take() {
        return Ok(true);
    }
    shared.abandon(id, &slot, claim).run(py)?;
    Ok(false)
}

/// The identity of whoever holds a permit: a task, a thread, or a borrower object.
///
/// A task holder is its runtime's id (unique, never reused) and its key there, so it stays the
/// same while an eager child turns into a Task and is never confused with a task of another
/// loop; other holders use `rt = 0` and the object's address (the object is kept alive by the
/// primitive's holder record while it holds).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Holder {
    rt: u64,
    id: u64,
}

impl Holder {
    /// A task known to `rt`.
    pub fn task(rt: &LoopRuntime, key: crate::scope::tree::TaskKey) -> Holder {
        use slotmap::Key;
        Holder {
            rt: rt.id,
            id: key.data().as_ffi(),
        }
    }

    /// True for task holders (of any loop).
    pub fn is_task(self) -> bool {
        self.rt != 0
    }

    /// The object to report for this holder in `statistics()`: the recorded object, or the task
    /// (while its runtime knows it).
    pub fn object(self, py: Python<'_>, recorded: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        if recorded.is_some() || !self.is_task() {
            return recorded;
        }
        let rt = LoopRuntime::by_id(self.rt)?;
        let key: crate::scope::tree::TaskKey = slotmap::KeyData::from_ffi(self.id).into();
        tasks::task_object(py, &rt, key)
    }

    /// Any other object (a thread, an explicit borrower), by identity.
    pub fn of(obj: &Bound<'_, PyAny>) -> Holder {
        Holder {
            rt: 0,
            id: obj.as_ptr() as u64,
        }
    }
}

/// The current task (registered with its runtime, so its identity is stable), or the current
/// thread outside a task; with the object to report in `statistics()`.
pub fn current_holder(py: Python<'_>) -> PyResult<(Holder, Py<PyAny>)> {
    if let Some(cur) = tasks::current(py, true)? {
        let obj = match cur.task {
            Some(t) => t.unbind(),
            None => asyncio::current_task(py)?.map_or_else(|| py.None(), Bound::unbind),
        };
        return Ok((Holder::task(&cur.rt, cur.key), obj));
    }
    let thread = py
        .import("threading")?
        .call_method0(intern!(py, "current_thread"))?;
    Ok((Holder::of(&thread), thread.unbind()))
}

/// The holder for an explicit borrower: a Task of the running loop is the same holder as that
/// task acquiring for itself (AnyIO: `acquire()` is `acquire_on_behalf_of(current_task())`).
pub fn holder_for(py: Python<'_>, borrower: &Bound<'_, PyAny>) -> PyResult<Holder> {
    if asyncio::is_task(borrower) {
        if let Some(cur) = tasks::current(py, false)? {
            if cur.task.as_ref().is_some_and(|t| t.is(borrower)) {
                return Ok(Holder::task(&cur.rt, cur.key));
            }
            if let Some(key) = tasks::key_of(&cur.rt, borrower) {
                return Ok(Holder::task(&cur.rt, key));
            }
        }
        let is_current = asyncio::current_task(py)?.is_some_and(|t| t.is(borrower));
        if is_current {
            return Ok(current_holder(py)?.0);
        }
    }
    Ok(Holder::of(borrower))
}

/// An int argument that must really be an int (not a bool, a float or None).
#[derive(Clone, Copy, Debug)]
pub struct IntArg(pub i64);

impl<'a, 'py> FromPyObject<'a, 'py> for IntArg {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<pyo3::types::PyBool>()
            || !obj.is_instance_of::<pyo3::types::PyInt>()
        {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "expected an int, got {}",
                obj.get_type().name()?
            )));
        }
        Ok(IntArg(obj.extract::<i64>().unwrap_or(i64::MAX)))
    }
}

/// Python-level statistics types (frozen dataclasses defined in `toolcase_rs._types`).
pub fn stats_type<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("toolcase_rs._types")?.getattr(name)
}

// Re-exported for the primitives' modules.
pub(crate) use crate::awaitable::{Ready, Waiting};
