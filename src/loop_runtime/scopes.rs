// The runtime side of a cancel scope: `ScopeRecord`, the state a `CancelScope` object shares
// with its loop's runtime, and the operations that change it.
//
// A record is created with its `CancelScope` and lives as long as either holds it. While the
// scope is active, `active` names its runtime, its key in that runtime's tree and its host
// task; before entry and after exit the record alone holds its state.
//
// Threads. The fields sit behind a mutex: `cancel()`, and the `deadline` and `shield` setters,
// may be called from any thread. They update the record at once (so it reads back the new
// value) and then act on the tree: directly on the loop's thread, else by posting to the
// runtime's port. A call that would fail (a NaN deadline) raises in the caller before anything
// changes. Entering checks `cancel_called` and marks the scope active in one critical section
// of the record, after every call into Python (reading the clock), so a `cancel()` from
// another thread either sees the scope idle (and entry picks the cancellation up) or active
// (and its post finds the scope in the tree): never neither.
//
// Lock order: a record's mutex, then the runtime's state. Nothing here calls into Python while
// holding either.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::deadlines;
use super::delivery;
use super::tasks::Current;
use super::{Completion, LoopRuntime, ScopeEntry};
use crate::asyncio;
use crate::scope::tree::{ScopeKey, TaskKey};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Created, not entered yet.
    Idle,
    /// Entered and not exited.
    Active,
    /// Exited (or torn down because its task ended, its loop closed, or it was exited out of
    /// order).
    Exited,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Active => "active",
            Phase::Exited => "exited",
        }
    }
}

/// What a `fail_after` / `fail_at` scope raises when its own deadline cancels it.
#[derive(Clone, Debug)]
pub enum Fail {
    /// `fail_after(delay)`.
    After(f64, Option<String>),
    /// `fail_at(deadline)`.
    At(f64, Option<String>),
}

/// Where an active scope lives.
pub struct Active {
    pub rt: Arc<LoopRuntime>,
    pub key: ScopeKey,
    pub host: TaskKey,
    /// Address of the host's Task (0 for an eager child in its first step): lets the exit
    /// check "same task" without a registry lookup. The registry holds the Task, so the
    /// address cannot be reused while the scope is active.
    pub host_task: usize,
}

pub struct ScopeFields {
    pub phase: Phase,
    /// Absolute deadline. While IDLE with `timeout` set, it is resolved at entry.
    pub deadline: f64,
    pub timeout: Option<f64>,
    pub shield: bool,
    pub cancel_called: bool,
    pub cancelled_caught: bool,
    pub reason: Option<String>,
    /// The scope was cancelled by its own deadline (not by `cancel()`).
    pub by_deadline: bool,
    pub fail: Option<Fail>,
    /// Set while ACTIVE.
    pub active: Option<Active>,
    /// The host task finished while the scope was still active (its name), so a later exit is
    /// one from another task.
    pub host_ended: Option<String>,
    /// Tasks that ran inside the scope when its host finished (a task group's children): they
    /// lost the scope, and are cancelled directly if the scope is then exited by another task.
    pub orphans: Vec<TaskKey>,
}

pub struct ScopeRecord {
    fields: Mutex<ScopeFields>,
}

impl ScopeRecord {
    pub fn new(deadline: f64, timeout: Option<f64>, shield: bool, fail: Option<Fail>) -> Self {
        ScopeRecord {
            fields: Mutex::new(ScopeFields {
                phase: Phase::Idle,
                deadline,
                timeout,
                shield,
                cancel_called: false,
                cancelled_caught: false,
                reason: None,
                by_deadline: false,
                fail,
                active: None,
                host_ended: None,
                orphans: Vec::new(),
            }),
        }
    }

    /// The fields (no Python calls while held).
    pub fn fields(&self) -> MutexGuard<'_, ScopeFields> {
        self.fields.lock()
    }

    /// Where the scope lives while active.
    pub fn location(&self) -> Option<(Arc<LoopRuntime>, ScopeKey)> {
        self.fields().active.as_ref().map(|a| (a.rt.clone(), a.key))
    }

    /// The scope left the tree without a normal exit: its task ended (`host_ended` names
    /// it), or its loop closed (`None`).
    pub fn mark_closed(&self, host_ended: Option<String>) {
        self.mark_orphaned(host_ended, Vec::new());
    }

    /// `mark_closed` for a scope whose host finished while `orphans` ran inside it.
    pub fn mark_orphaned(&self, host_ended: Option<String>, orphans: Vec<TaskKey>) {
        let active = {
            let mut f = self.fields();
            if f.phase == Phase::Active {
                f.phase = Phase::Exited;
                if host_ended.is_some() {
                    f.host_ended = host_ended;
                    f.orphans = orphans;
                }
            }
            f.active.take()
        };
        drop(active);
    }

    /// The message of the `CancelledError`s this scope delivers.
    fn message(self: &Arc<Self>, py: Python<'_>) -> Py<PyString> {
        let id = Arc::as_ptr(self) as usize;
        let reason = self.fields().reason.clone();
        let text = match reason {
            Some(r) => format!("{}{id:x}; reason: {r}", asyncio::CANCEL_PREFIX),
            None => format!("{}{id:x}", asyncio::CANCEL_PREFIX),
        };
        PyString::new(py, &text).unbind()
    }

    /// `cancel()`, from any thread.
    pub fn cancel(self: &Arc<Self>, py: Python<'_>, reason: Option<String>) -> PyResult<()> {
        let target = {
            let mut f = self.fields();
            if f.cancel_called {
                return Ok(());
            }
            f.cancel_called = true;
            f.reason = reason;
            f.active.as_ref().map(|a| (a.rt.clone(), a.key))
        };
        // Idle: entry picks the cancellation up. Exited: nothing left to cancel.
        let Some((rt, key)) = target else {
            return Ok(());
        };
        on_loop(py, &rt, self, move |py, rt, rec| {
            apply_cancel(py, rt, rec, key)
        })
    }

    /// The `deadline` setter, from any thread. `value` is not NaN (checked by the caller).
    pub fn set_deadline(self: &Arc<Self>, py: Python<'_>, value: f64) -> PyResult<()> {
        let target = {
            let mut f = self.fields();
            f.deadline = value;
            f.timeout = None;
            f.active.as_ref().map(|a| (a.rt.clone(), a.key))
        };
        let Some((rt, key)) = target else {
            return Ok(());
        };
        on_loop(py, &rt, self, move |py, rt, rec| {
            apply_deadline(py, rt, rec, key, value, None)
        })
    }

    /// The `shield` setter, from any thread.
    pub fn set_shield(self: &Arc<Self>, py: Python<'_>, value: bool) -> PyResult<()> {
        let target = {
            let mut f = self.fields();
            f.shield = value;
            f.active.as_ref().map(|a| (a.rt.clone(), a.key))
        };
        let Some((rt, key)) = target else {
            return Ok(());
        };
        on_loop(py, &rt, self, move |py, rt, rec| {
            if !in_tree(rt, rec, key) {
                return Ok(());
            }
            let hit = rt.with(|st| st.tree.set_shield(key, value));
            delivery::deliver(py, rt, hit)
        })
    }
}

/// Runs `f` on the loop of `rt`: now if this is its thread, else through its port.
fn on_loop(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    rec: &Arc<ScopeRecord>,
    f: impl FnOnce(Python<'_>, &Arc<LoopRuntime>, &Arc<ScopeRecord>) -> PyResult<()> + Send + 'static,
) -> PyResult<()> {
    if rt.is_current(py) {
        return f(py, rt, rec);
    }
    let (rt2, rec2) = (rt.clone(), rec.clone());
    rt.post(py, Completion::Run(Box::new(move |py| f(py, &rt2, &rec2))));
    Ok(())
}

/// True while `key` in `rt`'s tree is this record's scope (keys of exited scopes go stale).
fn in_tree(rt: &LoopRuntime, rec: &Arc<ScopeRecord>, key: ScopeKey) -> bool {
    rt.with(|st| {
        st.tree
            .scope(key)
            .is_some_and(|n| Arc::ptr_eq(&n.payload.record, rec))
    })
}

/// Marks scope `key` cancelled in the tree and delivers to the tasks that became cancelled.
fn apply_cancel(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    rec: &Arc<ScopeRecord>,
    key: ScopeKey,
) -> PyResult<()> {
    let message = rec.message(py);
    let hit = rt.with(|st| {
        let node = st.tree.scope_mut(key)?;
        if !Arc::ptr_eq(&node.payload.record, rec) {
            return None;
        }
        node.payload.message = Some(message);
        Some(st.tree.cancel(key))
    });
    match hit {
        Some(hit) => delivery::deliver(py, rt, hit),
        None => Ok(()),
    }
}

/// The scope's own deadline passed (loop thread). Reports failures to the loop's handler.
pub fn cancel_by_deadline(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    rec: &Arc<ScopeRecord>,
    key: ScopeKey,
) {
    {
        let mut f = rec.fields();
        if f.cancel_called {
            return;
        }
        f.cancel_called = true;
        f.by_deadline = true;
        f.reason = Some("deadline exceeded".to_owned());
    }
    if let Err(e) = apply_cancel(py, rt, rec, key) {
        rt.report(
            py,
            "toolcase_rs: cancelling a scope at its deadline failed",
            e,
        );
    }
}

/// Registers `deadline` for active scope `key`, or cancels now if it already passed. `now`
/// is the loop time when the caller already read it.
fn apply_deadline(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    rec: &Arc<ScopeRecord>,
    key: ScopeKey,
    deadline: f64,
    now: Option<f64>,
) -> PyResult<()> {
    if !in_tree(rt, rec, key) {
        return Ok(());
    }
    if deadline == f64::INFINITY {
        return deadlines::set_deadline(py, rt, key, deadline);
    }
    let now = match now {
        Some(t) => t,
        None => match rt.event_loop(py) {
            Some(l) => l.call_method0(intern!(py, "time"))?.extract()?,
            None => return Ok(()),
        },
    };
    if deadline <= now {
        deadlines::set_deadline(py, rt, key, f64::INFINITY)?;
        cancel_by_deadline(py, rt, rec, key);
        return Ok(());
    }
    deadlines::set_deadline(py, rt, key, deadline)
}

/// Why a scope could not be entered.
pub enum EnterError {
    /// The scope was already entered once.
    Reused,
}

/// Enters `rec` in the current task (loop thread). `baseline` is the host's `cancelling()`,
/// `now` the loop time if the caller read it.
pub fn enter(
    py: Python<'_>,
    rec: &Arc<ScopeRecord>,
    cur: &Current<'_>,
    baseline: isize,
    now: Option<f64>,
) -> PyResult<Result<(), EnterError>> {
    let rt = &cur.rt;
    let (key, eff, deadline, cancel_called) = {
        let mut f = rec.fields();
        if f.phase != Phase::Idle {
            return Ok(Err(EnterError::Reused));
        }
        let mut deadline = f.deadline;
        if let (Some(t), Some(now)) = (f.timeout, now) {
            deadline = now + t.max(0.0);
        }
        let entry = ScopeEntry {
            record: rec.clone(),
            baseline,
            message: None,
            deadline_gen: 0,
            has_deadline: false,
        };
        let cancel_called = f.cancel_called;
        let shield = f.shield;
        let (key, eff) = rt.with(|st| {
            st.tree
                .enter(cur.key, cancel_called, shield, deadline, entry)
        });
        f.phase = Phase::Active;
        f.deadline = deadline;
        f.active = Some(Active {
            rt: rt.clone(),
            key,
            host: cur.key,
            host_task: cur.task.as_ref().map_or(0, |t| t.as_ptr() as usize),
        });
        (key, eff, deadline, cancel_called)
    };
    if cancel_called {
        let message = rec.message(py);
        rt.with(|st| {
            if let Some(node) = st.tree.scope_mut(key) {
                node.payload.message = Some(message);
            }
        });
    }
    // -inf is "already passed", like any deadline in the past.
    if deadline != f64::INFINITY {
        apply_deadline(py, rt, rec, key, deadline, now)?;
    }
    if eff {
        delivery::defer(py, rt, cur.key)?;
    }
    Ok(Ok(()))
}
