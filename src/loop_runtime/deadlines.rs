// Deadlines of a loop runtime: its deadline heap (`scope::deadline`) and the single loop timer
// armed for the earliest entry (see docs/architecture.md).
//
// The timer is re-armed only when the earliest deadline changes. When it fires, every deadline
// due by `loop.time()`, or by the time the timer was armed for if that is later, cancels its
// scope. The second part matters on loops with millisecond timers: uvloop rounds a delay to
// whole milliseconds and fires up to half a millisecond before `loop.time()` reaches the
// deadline; taking the loop's word that the timer is due (as `asyncio.timeout` does) avoids
// re-arming for the same instant again and again, which was a bounded busy-wait of about fifty
// re-arms per deadline on uvloop.
//
// Loop thread only.

use std::sync::{Arc, Weak};

use pyo3::intern;
use pyo3::prelude::*;

use super::{scopes, LoopRuntime, RtState};
use crate::scope::tree::{ScopeKey, ScopeTree};

fn live(
    tree: &ScopeTree<super::TaskEntry, super::ScopeEntry>,
) -> impl Fn(ScopeKey, u32) -> bool + '_ {
    |k, g| {
        tree.scope(k)
            .is_some_and(|s| s.payload.has_deadline && s.payload.deadline_gen == g)
    }
}

/// Records that one heap entry went stale (its scope left the tree).
pub fn forget_entry(st: &mut RtState) {
    let RtState { tree, heap, .. } = st;
    heap.forget(live(tree));
}

/// Registers (or moves) the deadline of active scope `key`. `f64::INFINITY` removes it.
pub fn set_deadline(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    key: ScopeKey,
    deadline: f64,
) -> PyResult<()> {
    let rearm = rt.with(|st| {
        let RtState {
            tree, heap, timer, ..
        } = st;
        let node = tree.scope_mut(key)?;
        node.deadline = deadline;
        let had = std::mem::replace(&mut node.payload.has_deadline, deadline.is_finite());
        node.payload.deadline_gen = node.payload.deadline_gen.wrapping_add(1);
        let generation = node.payload.deadline_gen;
        if had {
            heap.forget(live(tree));
        }
        if !deadline.is_finite() {
            return None;
        }
        heap.push(deadline, key, generation);
        let armed_for = timer.as_ref().map(|(when, _)| *when);
        armed_for.is_none_or(|when| deadline < when).then_some(())
    });
    if rearm.is_some() {
        arm_timer(py, rt, deadline)?;
    }
    Ok(())
}

fn arm_timer(py: Python<'_>, rt: &Arc<LoopRuntime>, when: f64) -> PyResult<()> {
    let Some(loop_) = rt.event_loop(py) else {
        return Ok(());
    };
    let callback = Bound::new(
        py,
        DeadlineTimer {
            rt: Arc::downgrade(rt),
        },
    )?;
    let handle = loop_.call_method1(intern!(py, "call_at"), (when, callback))?;
    let old = rt.with(|st| st.timer.replace((when, handle.unbind())));
    if let Some((_, old)) = old {
        old.bind(py).call_method0(intern!(py, "cancel"))?;
    }
    Ok(())
}

/// The single loop timer of a runtime's deadline heap.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct DeadlineTimer {
    rt: Weak<LoopRuntime>,
}

#[pymethods]
impl DeadlineTimer {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let Some(rt) = self.rt.upgrade() else {
            return Ok(());
        };
        // Only the timer that is still armed may act (an older one raced its cancel).
        let Some((armed_for, handle)) = rt.with(|st| st.timer.take()) else {
            return Ok(());
        };
        drop(handle);
        let Some(loop_) = rt.event_loop(py) else {
            return Ok(());
        };
        let now: f64 = loop_.call_method0(intern!(py, "time"))?.extract()?;
        let (due, next) = rt.with(|st| {
            let RtState { tree, heap, .. } = st;
            let keys = heap.pop_due(now.max(armed_for), live(tree));
            let next = heap.earliest(live(tree));
            let due: Vec<_> = keys
                .into_iter()
                .filter_map(|k| {
                    let node = tree.scope_mut(k)?;
                    node.payload.has_deadline = false;
                    Some((k, node.payload.record.clone()))
                })
                .collect();
            (due, next)
        });
        for (key, record) in due {
            scopes::cancel_by_deadline(py, &rt, &record, key);
        }
        if let Some(when) = next {
            arm_timer(py, &rt, when)?;
        }
        Ok(())
    }
}
