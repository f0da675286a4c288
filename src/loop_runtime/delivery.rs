// Delivering cancellation to tasks (see docs/architecture.md).
//
// A task that becomes effectively cancelled gets `Task.cancel(msg)` with a message naming the
// scope, edge-triggered:
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
//
// Isolation: each task's delivery stands on its own. A `Task.cancel()` that raises (a Task
// subclass) is reported to the loop's exception handler and the other tasks still get theirs.
//
// Loop thread only.

use std::sync::{Arc, Weak};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::{ptr_key, LoopRuntime};
use crate::asyncio;
use crate::scope::tree::TaskKey;

/// Delivers cancellation to tasks that just became effectively cancelled.
pub fn deliver(py: Python<'_>, rt: &Arc<LoopRuntime>, tasks: Vec<TaskKey>) -> PyResult<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let (eager, watchers) = rt.with(|st| {
        let watchers: Vec<_> = if st.token_watchers.is_empty() {
            Vec::new()
        } else {
            tasks
                .iter()
                .filter_map(|k| st.token_watchers.remove(k))
                .flatten()
                .collect()
        };
        (st.eager_current, watchers)
    });
    for token in watchers.iter().filter_map(Weak::upgrade) {
        token.set(py);
    }
    let current = asyncio::current_task(py)?.map(|t| ptr_key(&t));
    for key in tasks {
        let task = rt.with(|st| {
            st.tree
                .task(key)
                .map(|n| n.payload.task.as_ref().map(|t| t.clone_ref(py)))
        });
        let outcome = match task {
            None => Ok(()),
            Some(None) => defer(py, rt, key),
            Some(Some(task)) => {
                let task = task.into_bound(py);
                if asyncio::is_done(&task).unwrap_or(false) {
                    // Finished already (an eager child that completed in its first step):
                    // nothing to deliver.
                    continue;
                }
                if Some(key) == eager || Some(ptr_key(&task)) == current || !has_started(&task) {
                    defer(py, rt, key)
                } else {
                    deliver_now(py, rt, key, &task)
                }
            }
        };
        if let Err(e) = outcome {
            rt.report(
                py,
                "toolcase_rs: delivering a cancellation to a task failed",
                e,
            );
        }
    }
    Ok(())
}

/// Queues a task for the next delivery batch on the runtime's loop.
pub fn defer(py: Python<'_>, rt: &Arc<LoopRuntime>, key: TaskKey) -> PyResult<()> {
    if rt.is_closed() {
        return Ok(());
    }
    let schedule = rt.with(|st| {
        st.pending.push(key);
        !std::mem::replace(&mut st.batch_scheduled, true)
    });
    if schedule {
        let Some(loop_) = rt.event_loop(py) else {
            return Ok(());
        };
        let batch = Bound::new(
            py,
            DeliveryBatch {
                rt: Arc::downgrade(rt),
            },
        )?;
        if let Err(e) = loop_.call_method1(intern!(py, "call_soon"), (batch,)) {
            rt.with(|st| st.batch_scheduled = false);
            return Err(e);
        }
    }
    Ok(())
}

/// A task has started once its coroutine ran its first step. One parked on a future has.
/// Only for a task that is not done: an eager task that finished in its first step has no
/// coroutine any more, and `get_coro()` on it crashes CPython 3.12.1 (both callers look first).
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
    if coro.is_none() {
        // An eager task whose coroutine already finished (3.12+ clears it).
        return true;
    }
    let flag = |name| {
        coro.getattr(name)
            .and_then(|v| v.is_truthy())
            .unwrap_or(true)
    };
    flag(intern!(py, "cr_suspended")) || flag(intern!(py, "cr_running"))
}

/// The message of the scope whose cancellation reaches task `key`.
fn message_for(py: Python<'_>, rt: &LoopRuntime, key: TaskKey) -> Option<Py<PyString>> {
    rt.with(|st| {
        let origin = st.tree.cancel_origin(key)?;
        st.tree
            .scope(origin)
            .and_then(|s| s.payload.message.as_ref().map(|m| m.clone_ref(py)))
    })
}

fn deliver_now(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    key: TaskKey,
    task: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if task.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    let Some(msg) = message_for(py, rt, key) else {
        return Ok(());
    };
    task.call_method1(intern!(py, "cancel"), (msg,))?;
    let waiter = task
        .getattr(intern!(py, "_fut_waiter"))
        .ok()
        .filter(|w| !w.is_none());
    let waiter_owned = waiter.as_ref().map(|w| w.clone().unbind());
    let previous = rt.with(|st| {
        let node = st.tree.task_mut(key)?;
        node.delivered += 1;
        std::mem::replace(
            &mut st.deliveries.entry(key).or_default().waiter,
            waiter_owned,
        )
    });
    drop(previous);
    // Look again once the task has consumed this cancellation: when the future it is parked on
    // completes (a Task being cancelled can take several iterations), or at the next batch.
    match waiter {
        Some(w) if !asyncio::is_done(&w)? => {
            let recheck = Bound::new(
                py,
                Recheck {
                    rt: Arc::downgrade(rt),
                    key,
                },
            )?;
            w.call_method1(intern!(py, "add_done_callback"), (recheck,))?;
            Ok(())
        }
        _ => defer(py, rt, key),
    }
}

/// Looks at a task again after a delivery or a deferral.
fn examine(py: Python<'_>, rt: &Arc<LoopRuntime>, key: TaskKey) -> PyResult<()> {
    let snapshot = rt.with(|st| {
        let node = st.tree.task(key)?;
        let cancelled = st.tree.is_cancelled(key) && !node.exempt;
        Some((
            node.payload.task.as_ref().map(|t| t.clone_ref(py)),
            st.deliveries
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
        return defer(py, rt, key);
    };
    if !cancelled || task.call_method0(intern!(py, "done"))?.is_truthy()? {
        let finished = rt.with(|st| st.deliveries.remove(&key));
        drop(finished);
        return Ok(());
    }
    if !has_started(&task) {
        return defer(py, rt, key);
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
    let stalls = rt.with(|st| {
        st.tree.task(key)?;
        let d = st.deliveries.entry(key).or_default();
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
        return defer(py, rt, key);
    }
    deliver_now(py, rt, key, &task)
}

/// The callback that runs a loop's delivery batch.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct DeliveryBatch {
    rt: Weak<LoopRuntime>,
}

#[pymethods]
impl DeliveryBatch {
    fn __call__(&self, py: Python<'_>) {
        let Some(rt) = self.rt.upgrade() else { return };
        let batch = rt.with(|st| {
            st.batch_scheduled = false;
            std::mem::take(&mut st.pending)
        });
        for key in batch {
            if let Err(e) = examine(py, &rt, key) {
                rt.report(
                    py,
                    "toolcase_rs: delivering a cancellation to a task failed",
                    e,
                );
            }
        }
    }
}

/// Done-callback on the waiter of a task we cancelled: look at the task again.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct Recheck {
    rt: Weak<LoopRuntime>,
    key: TaskKey,
}

#[pymethods]
impl Recheck {
    fn __call__(&self, py: Python<'_>, _fut: Bound<'_, PyAny>) -> PyResult<()> {
        match self.rt.upgrade() {
            Some(rt) => defer(py, &rt, self.key),
            None => Ok(()),
        }
    }
}

/// The `CancelledError` that code in task `key` must see now, if it is cancelled.
pub fn cancellation_of(py: Python<'_>, rt: &LoopRuntime, key: TaskKey) -> Option<PyErr> {
    if !crate::scope::tree::any_cancelled_anywhere() {
        return None;
    }
    let msg = rt.with(|st| {
        if !st.tree.is_cancelled(key) {
            return None;
        }
        let origin = st.tree.cancel_origin(key)?;
        st.tree
            .scope(origin)
            .and_then(|s| s.payload.message.as_ref().map(|m| m.clone_ref(py)))
    })?;
    Some(asyncio::cancelled(py, msg.bind(py)))
}

/// The cancellation the current task must see at a checkpoint, if any. Cheap when no scope of
/// the running loop is cancelled (no task lookup then).
pub fn current_cancellation(py: Python<'_>) -> PyResult<Option<PyErr>> {
    if !crate::scope::tree::any_cancelled_anywhere() {
        return Ok(None);
    }
    let Some(rt) = LoopRuntime::current(py)? else {
        return Ok(None);
    };
    if !rt.with(|st| st.tree.any_cancelled()) {
        return Ok(None);
    }
    let Some(cur) = super::tasks::current_in(py, rt, false)? else {
        return Ok(None);
    };
    Ok(cancellation_of(py, &cur.rt, cur.key))
}

/// `task.uncancel()` `n` times; returns `task.cancelling()` afterwards.
pub fn uncancel(task: &Bound<'_, PyAny>, n: u32) -> PyResult<isize> {
    let py = task.py();
    for _ in 0..n {
        task.call_method0(intern!(py, "uncancel"))?;
    }
    task.call_method0(intern!(py, "cancelling"))?.extract()
}
