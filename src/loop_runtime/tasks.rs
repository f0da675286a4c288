// The task registry of a loop runtime: which asyncio Tasks the runtime knows, under which key.
//
// A task gets a key the first time it matters: a plain asyncio task when it enters a scope or
// takes a lock (`current(register=true)`), a task-group child when it is spawned. Plain tasks
// are forgotten by a done-callback; children by their group's done-callback.
//
// Children are registered *before* their Task exists (`begin_spawn`): under an eager task
// factory (Python 3.12+) `loop.create_task` runs the child's first step synchronously, and if
// that step enters a scope or takes a lock the child must already be a child of its group, not
// a newly found plain task (which made a group wait forever). While a child is being created,
// a task the registry does not know that asks who it is, is that child (`spawning`).
//
// Loop thread only (the state lock is taken briefly, never across Python calls).

use std::sync::{Arc, Weak};

use pyo3::intern;
use pyo3::prelude::*;

use super::{ptr_key, LoopRuntime, ScopeEntry, TaskEntry};
use crate::asyncio;
use crate::scope::tree::{ScopeKey, TaskKey};

/// The task running now, as its loop's runtime sees it.
pub struct Current<'py> {
    pub rt: Arc<LoopRuntime>,
    pub key: TaskKey,
    /// `None` while an eager child runs its first step.
    pub task: Option<Bound<'py, PyAny>>,
}

enum Found {
    Known(TaskKey),
    /// An eager child in its first step (no Task, or not the current one).
    Eager(TaskKey),
    Unknown,
}

/// The current task of the running loop, registering a plain asyncio task on first use when
/// `register` is set. `Ok(None)` outside any task (or without a running loop).
#[inline]
pub fn current<'py>(py: Python<'py>, register: bool) -> PyResult<Option<Current<'py>>> {
    let Some((rt, loop_)) = LoopRuntime::current_with_loop(py)? else {
        return Ok(None);
    };
    let task = asyncio::current_task_on(py, &loop_)?;
    resolve(py, rt, task, register)
}

/// `current` for a runtime already looked up (whose loop is running in this thread).
pub fn current_in<'py>(
    py: Python<'py>,
    rt: Arc<LoopRuntime>,
    register: bool,
) -> PyResult<Option<Current<'py>>> {
    let task = asyncio::current_task(py)?;
    resolve(py, rt, task, register)
}

fn resolve<'py>(
    py: Python<'py>,
    rt: Arc<LoopRuntime>,
    task: Option<Bound<'py, PyAny>>,
    register: bool,
) -> PyResult<Option<Current<'py>>> {
    let id = task.as_ref().map(ptr_key);
    let found = rt.with(|st| {
        if let Some(k) = st.eager_current {
            return Found::Eager(k);
        }
        let Some(id) = id else {
            return Found::Unknown;
        };
        if let Some(k) = st.by_task.get(&id) {
            return Found::Known(*k);
        }
        // A child whose Task is being created runs its first step now (eager factory).
        if let Some(&k) = st.spawning.last() {
            let unbound = st.tree.task(k).is_some_and(|n| n.payload.task.is_none());
            if unbound {
                st.by_task.insert(id, k);
                return Found::Known(k);
            }
        }
        Found::Unknown
    });
    match found {
        Found::Eager(key) => Ok(Some(Current {
            rt,
            key,
            task: None,
        })),
        Found::Known(key) => {
            let task = task.expect("known tasks have a Task");
            bind_if_unbound(&rt, key, &task);
            Ok(Some(Current {
                rt,
                key,
                task: Some(task),
            }))
        }
        Found::Unknown => match task {
            Some(task) if register => {
                let key = register_plain(py, &rt, &task)?;
                Ok(Some(Current {
                    rt,
                    key,
                    task: Some(task),
                }))
            }
            _ => Ok(None),
        },
    }
}

/// Stores the Task object of a child found through `spawning` (it had none yet).
fn bind_if_unbound(rt: &LoopRuntime, key: TaskKey, task: &Bound<'_, PyAny>) {
    let needs = rt.with(|st| st.tree.task(key).is_some_and(|n| n.payload.task.is_none()));
    if needs {
        let owned = task.clone().unbind();
        let rest = rt.with(|st| match st.tree.task_mut(key) {
            Some(n) if n.payload.task.is_none() => {
                n.payload.task = Some(owned);
                None
            }
            _ => Some(owned),
        });
        drop(rest);
    }
}

/// Registers a plain asyncio task (one that entered a scope); it is forgotten when it is done.
fn register_plain(
    py: Python<'_>,
    rt: &Arc<LoopRuntime>,
    task: &Bound<'_, PyAny>,
) -> PyResult<TaskKey> {
    let entry = TaskEntry {
        task: Some(task.clone().unbind()),
    };
    let id = ptr_key(task);
    let (key, cb) = rt.with(|st| {
        let (k, _) = st.tree.add_task(entry, None);
        st.by_task.insert(id, k);
        (k, st.forget_cb.as_ref().map(|c| c.clone_ref(py)))
    });
    let cb = match cb {
        Some(cb) => cb,
        None => {
            let cb = Py::new(
                py,
                ForgetTask {
                    rt: Arc::downgrade(rt),
                },
            )?
            .into_any();
            rt.with(|st| st.forget_cb = Some(cb.clone_ref(py)));
            cb
        }
    };
    task.call_method1(intern!(py, "add_done_callback"), (cb,))?;
    Ok(key)
}

/// Done-callback of the plain tasks a runtime knows.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct ForgetTask {
    rt: Weak<LoopRuntime>,
}

#[pymethods]
impl ForgetTask {
    fn __call__(&self, py: Python<'_>, task: Bound<'_, PyAny>) {
        let Some(rt) = self.rt.upgrade() else { return };
        if let Some(key) = key_of(&rt, &task) {
            drop(forget_task(py, &rt, key));
        }
    }
}

/// Registers a task-group child before its Task exists (see the module notes). Returns its key
/// and whether it starts out cancelled. Must be followed by `end_spawn` or `abort_spawn`.
pub fn begin_spawn(
    rt: &LoopRuntime,
    scope: ScopeKey,
    status: Option<Py<PyAny>>,
) -> (TaskKey, bool) {
    rt.with(|st| {
        let (k, eff) = st.tree.add_task(TaskEntry { task: None }, Some(scope));
        if let Some(status) = status {
            st.statuses.insert(k, status);
        }
        st.spawning.push(k);
        (k, eff)
    })
}

/// The child's Task exists: record it (unless its first step already did).
pub fn end_spawn(rt: &LoopRuntime, key: TaskKey, task: &Bound<'_, PyAny>) {
    rt.with(|st| {
        if st.spawning.last() == Some(&key) {
            st.spawning.pop();
        } else {
            st.spawning.retain(|k| *k != key);
        }
    });
    bind_child(rt, key, task);
}

/// Creating the child failed: forget it.
pub fn abort_spawn(py: Python<'_>, rt: &LoopRuntime, key: TaskKey) {
    rt.with(|st| st.spawning.retain(|k| *k != key));
    drop(forget_task(py, rt, key));
}

/// Gives a child (eager, or being spawned) its Task.
pub fn bind_child(rt: &LoopRuntime, key: TaskKey, task: &Bound<'_, PyAny>) {
    let id = ptr_key(task);
    let owned = task.clone().unbind();
    let rest = rt.with(|st| match st.tree.task_mut(key) {
        Some(node) => {
            let old = node.payload.task.replace(owned);
            st.by_task.insert(id, key);
            old
        }
        None => Some(owned),
    });
    drop(rest);
}

/// Registers an eager child (no Task: it runs its first step synchronously).
pub fn register_eager_child(rt: &LoopRuntime, scope: ScopeKey) -> (TaskKey, bool) {
    rt.with(|st| st.tree.add_task(TaskEntry { task: None }, Some(scope)))
}

/// A task removed from the registry, with the `start()` status future it had, if any.
pub struct Forgotten {
    pub entry: TaskEntry,
    pub status: Option<Py<PyAny>>,
}

/// Removes a finished task from the registry. Scopes it left open are closed (their objects
/// report that they are no longer active, and that their task ended).
pub fn forget_task(py: Python<'_>, rt: &LoopRuntime, key: TaskKey) -> Option<Forgotten> {
    let removed = rt.with(|st| {
        let orphans = st.tree.tasks_below(key);
        let (entry, leaked) = st.tree.remove_task(key)?;
        if let Some(t) = &entry.task {
            let id = t.as_ptr() as usize;
            if st.by_task.get(&id) == Some(&key) {
                st.by_task.remove(&id);
            }
        }
        for scope in &leaked {
            if scope.has_deadline {
                super::deadlines::forget_entry(st);
            }
        }
        let status = st.statuses.remove(&key);
        let delivery = st.deliveries.remove(&key);
        st.token_watchers.remove(&key);
        Some((entry, leaked, status, delivery, orphans))
    })?;
    // Dropped here, outside the lock (a finaliser may re-enter the runtime).
    let (entry, leaked, status, delivery, orphans) = removed;
    drop(delivery);
    let host = entry.task.as_ref().and_then(|t| task_name(t.bind(py)));
    for scope in &leaked {
        scope
            .record
            .mark_orphaned(Some(host.clone().unwrap_or_default()), orphans.clone());
    }
    drop::<Vec<ScopeEntry>>(leaked);
    Some(Forgotten { entry, status })
}

/// The Task object of a task this runtime knows (None for an eager child in its first step).
pub fn task_object(py: Python<'_>, rt: &LoopRuntime, key: TaskKey) -> Option<Py<PyAny>> {
    rt.with(|st| {
        st.tree
            .task(key)
            .and_then(|n| n.payload.task.as_ref().map(|t| t.clone_ref(py)))
    })
}

/// The key of a Task this runtime knows.
pub fn key_of(rt: &LoopRuntime, task: &Bound<'_, PyAny>) -> Option<TaskKey> {
    let id = ptr_key(task);
    rt.with(|st| st.by_task.get(&id).copied())
}

/// `task.get_name()`, for messages.
pub fn task_name(task: &Bound<'_, PyAny>) -> Option<String> {
    let py = task.py();
    task.call_method0(intern!(py, "get_name"))
        .and_then(|n| n.str().map(|s| s.to_string()))
        .ok()
}
