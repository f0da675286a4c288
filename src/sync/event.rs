// Event: a flag that tasks of any loop, and plain threads, can wait for.
//
// `set()` wakes every waiter: those on the caller's loop directly, the others through their
// loop's port, blocked threads by unparking. Waiting does not consume anything, so there is no
// grant to give back: a cancelled or timed-out waiter just leaves the queue.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use super::{
    arm_timeout, check_blocking_allowed, disarm, stats_type, timed_out, Waiting, Wake, Wakeups,
};
use crate::asyncio;
use crate::awaitable::{Drive, Input, Step};
use crate::bridge::{self, Parker};
use crate::process;
use crate::sync::waiters::WaiterQueue;
use pyo3::pyclass::{PyTraverseError, PyVisit};

struct EventState {
    flag: bool,
    waiters: WaiterQueue<Wake>,
    /// The fork generation the queue was last pruned in (see `prune_dead`).
    generation: u64,
}

impl EventState {
    fn new() -> Self {
        EventState {
            flag: false,
            waiters: WaiterQueue::default(),
            generation: process::generation(),
        }
    }

    fn prune(&mut self) {
        super::prune_dead(&mut self.waiters, &mut self.generation, |w| w);
    }
}

/// The event's state, with waiters lost to a `fork()` pruned.
fn lock(state: &Mutex<EventState>) -> parking_lot::MutexGuard<'_, EventState> {
    let mut st = state.lock();
    st.prune();
    st
}

/// An event flag for tasks of any event loop and for plain threads.
///
/// `set()` may be called from any thread; waiters on other loops wake within milliseconds.
#[pyclass(module = "toolcase_rs", name = "Event", frozen)]
pub struct Event {
    state: Arc<Mutex<EventState>>,
}

enum Phase {
    Start,
    /// Already set: yielding once (the checkpoint).
    Yielded,
    Queued(u64),
    Done,
}

/// `await event.wait()`.
///
/// Cancel safety: a cancelled wait leaves the queue; nothing else changes.
struct Wait {
    state: Arc<Mutex<EventState>>,
    timeout: Option<f64>,
    phase: Phase,
    fut: Option<Py<PyAny>>,
    timer: Option<Py<PyAny>>,
}

impl Wait {
    fn leave(&mut self, py: Python<'_>) -> bool {
        disarm(py, &mut self.timer);
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Queued(id) => self.state.lock().waiters.remove(id).is_some(),
            _ => false,
        }
    }
}

fn py_bool(py: Python<'_>, v: bool) -> Py<PyAny> {
    PyBool::new(py, v).to_owned().into_any().unbind()
}

impl Drive for Wait {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(err) = input {
            self.leave(py);
            return Err(err);
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Start => {
                if lock(&self.state).flag {
                    self.phase = Phase::Yielded;
                    return Ok(Step::Yield(py.None()));
                }
                let (wake, fut) = Wake::for_task(py)?;
                let queued = {
                    let mut st = lock(&self.state);
                    if st.flag {
                        None
                    } else {
                        Some(st.waiters.push(wake))
                    }
                };
                let Some(id) = queued else {
                    self.phase = Phase::Yielded;
                    return Ok(Step::Yield(py.None()));
                };
                if let Some(t) = self.timeout {
                    self.timer = Some(arm_timeout(py, &fut, t)?);
                }
                asyncio::mark_blocking(&fut)?;
                self.fut = Some(fut.clone().unbind());
                self.phase = Phase::Queued(id);
                Ok(Step::Yield(fut.unbind()))
            }
            Phase::Yielded => Ok(Step::Return(py_bool(py, true))),
            Phase::Queued(id) => {
                self.phase = Phase::Queued(id);
                let fut = self.fut.as_ref().expect("queued").clone_ref(py);
                if timed_out(py, fut.bind(py)) {
                    // Still queued: the timeout won; otherwise set() got there first.
                    return Ok(Step::Return(py_bool(py, !self.leave(py))));
                }
                self.leave(py);
                Ok(Step::Return(py_bool(py, true)))
            }
            Phase::Done => Ok(Step::Return(py_bool(py, true))),
        }
    }

    fn close(&mut self, py: Python<'_>) {
        self.leave(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)?;
        visit.call(&self.timer)
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Phase::Queued(id) = self.phase {
            self.state.lock().waiters.remove(id);
        }
    }
}

#[pymethods]
impl Event {
    #[new]
    fn py_new() -> Self {
        Event {
            state: Arc::new(Mutex::new(EventState::new())),
        }
    }

    /// Set the flag and wake every waiter. Safe from any thread.
    fn set(&self, py: Python<'_>) -> PyResult<()> {
        let wakeups = {
            let mut st = lock(&self.state);
            st.flag = true;
            let mut out = Wakeups::default();
            for w in st.waiters.drain() {
                out.push(w, None);
            }
            out
        };
        wakeups.run(py)
    }

    fn is_set(&self) -> bool {
        self.state.lock().flag
    }

    /// Reset the flag; later waiters wait again.
    fn clear(&self) {
        self.state.lock().flag = false;
    }

    /// Wait until the flag is set; a checkpoint. Returns True, or False after `timeout` s.
    #[pyo3(signature = (timeout=None))]
    fn wait<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, Waiting>> {
        let timeout = super::check_timeout(timeout)?;
        Waiting::checkpoint(
            py,
            "Event.wait()",
            Wait {
                state: self.state.clone(),
                timeout,
                phase: Phase::Start,
                fut: None,
                timer: None,
            },
        )
    }

    /// Wait from a plain thread, blocking it (the GIL is released meanwhile).
    #[pyo3(signature = (timeout=None))]
    fn wait_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = super::check_timeout(timeout)?;
        check_blocking_allowed(py, "Event.wait_blocking()")?;
        let parker = Arc::new(Parker::default());
        let id = {
            let mut st = lock(&self.state);
            if st.flag {
                return Ok(true);
            }
            st.waiters.push(Wake::thread(parker.clone()))
        };
        let deadline = bridge::deadline_after(timeout);
        py.detach(|| parker.park(deadline));
        // Still queued means set() never reached us.
        Ok(self.state.lock().waiters.remove(id).is_none())
    }

    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let waiting = lock(&self.state).waiters.len();
        stats_type(py, "EventStatistics")?.call1((waiting,))
    }

    fn __repr__(&self) -> String {
        let st = self.state.lock();
        format!(
            "<Event {} waiters={}>",
            if st.flag { "set" } else { "unset" },
            st.waiters.len()
        )
    }
}
