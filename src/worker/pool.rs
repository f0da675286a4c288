// Worker threads owned by the library.
//
// A `Pool` is a FIFO of jobs and a set of threads that take them. Threads are started on
// demand (when a job arrives and no thread is idle, up to `max_workers`) and end after
// `idle_timeout` without work. Each thread is a Python `threading.Thread` (so it has a name,
// shows up in `threading.enumerate()` and keeps one thread state for its whole life, which is
// what makes `threading.local` and the per-thread caches of C extensions work) whose body is
// Rust: wait for a job with the GIL released, run it attached, repeat.
//
// Interpreter exit. A thread that tries to take the GIL while the interpreter finalises is
// ended with `pthread_exit`, which cannot unwind through Rust frames; so every pool is shut
// down from `threading._register_atexit` (before finalisation, like `concurrent.futures`):
// idle threads leave at once, queued jobs are dropped (their awaiters are gone with their
// loops), and the exit waits for running jobs to return, as `concurrent.futures` does.
//
// Fork. The child has none of the parent's threads: a pool made before the fork is replaced
// by a fresh one on first use in the child (the old one, whose lock a parent thread may have
// held, is never touched again).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::process;

/// One unit of work: runs on a worker thread, attached to the interpreter.
pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// Idle threads notified that have not woken yet.
    waking: usize,
    /// Threads started that have not taken their first job yet.
    starting: usize,
    busy: usize,
    shutdown: bool,
}

pub struct Pool {
    prefix: String,
    max_workers: usize,
    idle_timeout: Duration,
    generation: u64,
    next_thread: AtomicU64,
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool shuts down (workers wait on it).
    work: Condvar,
    /// Signalled when a worker exits, or runs out of jobs (shutdown waits on it).
    done: Condvar,
}

/// Counters for `statistics()`.
pub struct PoolStats {
    pub threads: usize,
    pub idle: usize,
    pub busy: usize,
    pub queued: usize,
}

impl PoolStats {
    /// `(threads, idle, busy, queued)`, as the Python side reads it.
    pub fn as_tuple(&self) -> (usize, usize, usize, usize) {
        (self.threads, self.idle, self.busy, self.queued)
    }
}

static POOLS: Mutex<Vec<Weak<Pool>>> = Mutex::new(Vec::new());

impl Pool {
    pub fn new(prefix: &str, max_workers: usize, idle_timeout: Duration) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            prefix: prefix.to_owned(),
            max_workers: max_workers.max(1),
            idle_timeout,
            generation: process::generation(),
            next_thread: AtomicU64::new(0),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                waking: 0,
                starting: 0,
                busy: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let mut pools = POOLS.lock();
        pools.retain(|w| w.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        pool
    }

    /// Made in this process (not inherited through `fork()`).
    pub fn is_current(&self) -> bool {
        self.generation == process::generation()
    }

    pub fn is_shut_down(&self) -> bool {
        self.state.lock().shutdown
    }

    pub fn stats(&self) -> PoolStats {
        let st = self.state.lock();
        PoolStats {
            threads: st.threads,
            idle: st.idle,
            busy: st.busy,
            queued: st.queue.len(),
        }
    }

    /// Queues a job and makes sure a thread will take it: wakes an idle one (unless one is
    /// already being woken: it passes the wake-up on if more jobs are queued when it takes its
    /// job), or starts one. `RuntimeError` after shutdown.
    pub fn submit(self: &Arc<Self>, py: Python<'_>, job: Job) -> PyResult<()> {
        let spawn = {
            let mut st = self.state.lock();
            if st.shutdown {
                return Err(PyRuntimeError::new_err(
                    "the worker pool is shut down: no new jobs can be submitted",
                ));
            }
            st.queue.push_back(job);
            self.wake_or_spawn(&mut st)
        };
        if spawn {
            self.spawn_or_undo(py)?;
        }
        Ok(())
    }

    /// Under the state lock, with jobs queued: wake an idle thread if none is on its way, else
    /// reserve a new thread (true: the caller starts it, after releasing the lock).
    fn wake_or_spawn(&self, st: &mut State) -> bool {
        if st.queue.is_empty() || st.waking > 0 || st.starting > 0 {
            return false;
        }
        if st.idle > 0 {
            st.waking += 1;
            self.work.notify_one();
            false
        } else if st.threads < self.max_workers {
            st.threads += 1;
            st.starting += 1;
            true
        } else {
            false
        }
    }

    fn spawn_or_undo(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        let Err(e) = self.spawn_thread(py) else {
            return Ok(());
        };
        let dropped: Vec<Job> = {
            let mut st = self.state.lock();
            st.threads -= 1;
            st.starting -= 1;
            // Without any thread the queued jobs would wait forever: fail them.
            if st.threads == 0 {
                st.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        drop(dropped);
        Err(e)
    }

    fn spawn_thread(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        let n = self.next_thread.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{}", self.prefix, n);
        let entry = Bound::new(py, WorkerEntry { pool: self.clone() })?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("target", entry)?;
        kwargs.set_item("name", name)?;
        kwargs.set_item("daemon", true)?;
        let thread = py
            .import("threading")?
            .getattr("Thread")?
            .call((), Some(&kwargs))?;
        thread.call_method0("start")?;
        Ok(())
    }

    /// Attached: takes the next job, passing the wake-up on if more are queued. `finished`: the
    /// caller just finished a job (counted here, under the same lock).
    fn take(self: &Arc<Self>, py: Python<'_>, finished: bool) -> Option<Job> {
        let (job, spawn) = {
            let mut st = self.state.lock();
            if finished {
                st.busy -= 1;
            }
            let job = st.queue.pop_front();
            if job.is_some() {
                st.busy += 1;
            }
            let spawn = self.wake_or_spawn(&mut st);
            (job, spawn)
        };
        if spawn {
            let _ = self.spawn_or_undo(py);
        }
        job
    }

    /// The body of a worker thread. The job is taken while attached, and after a job the next
    /// one is taken before the GIL is released: a burst of short jobs then runs on one thread
    /// in one stretch, instead of handing the GIL from thread to thread for every job (each
    /// hand-off is a thread switch). Only one idle thread is woken at a time; it wakes the
    /// next if jobs are still queued when it takes its own, so blocking jobs still spread over
    /// as many threads as they need.
    fn work_loop(self: &Arc<Self>, py: Python<'_>) {
        self.state.lock().starting -= 1;
        let mut finished = false;
        loop {
            let Some(job) = self.take(py, finished) else {
                if finished {
                    self.done.notify_all();
                }
                if !py.detach(|| self.wait_for_work()) {
                    return;
                }
                finished = false;
                continue;
            };
            job(py);
            finished = true;
        }
    }

    /// Waits (GIL released) until jobs are queued; false when the thread should exit (idle
    /// timeout or shutdown, with nothing queued).
    fn wait_for_work(&self) -> bool {
        let mut st = self.state.lock();
        let deadline = Instant::now() + self.idle_timeout;
        loop {
            if !st.queue.is_empty() {
                return true;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let timed_out = self.work.wait_until(&mut st, deadline).timed_out();
            st.idle -= 1;
            // Whoever returns first takes the pending wake-up (the one it was meant for may
            // have timed out at the same moment).
            if st.waking > 0 {
                st.waking -= 1;
            }
            if timed_out && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
        drop(st);
        self.done.notify_all();
        false
    }

    /// Stops taking jobs. `cancel_queued`: drop jobs not started yet. `wait`: block (GIL
    /// released) until every thread has finished its job and exited.
    pub fn shutdown(&self, py: Python<'_>, wait: bool, cancel_queued: bool) {
        let dropped: Vec<Job> = {
            let mut st = self.state.lock();
            st.shutdown = true;
            if cancel_queued {
                st.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        self.work.notify_all();
        drop(dropped);
        if wait {
            py.detach(|| {
                let mut st = self.state.lock();
                while st.threads > 0 {
                    self.done.wait(&mut st);
                }
            });
        }
    }
}

/// Shuts every pool of this process down; runs before the interpreter finalises.
pub fn shutdown_all(py: Python<'_>) {
    let pools: Vec<Arc<Pool>> = POOLS.lock().iter().filter_map(Weak::upgrade).collect();
    for pool in pools.iter().filter(|p| p.is_current()) {
        pool.shutdown(py, false, true);
    }
    for pool in pools.iter().filter(|p| p.is_current()) {
        pool.shutdown(py, true, true);
    }
}

/// The `target` of a worker's `threading.Thread`.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct WorkerEntry {
    pool: Arc<Pool>,
}

#[pymethods]
impl WorkerEntry {
    fn __call__(&self, py: Python<'_>) {
        self.pool.work_loop(py);
    }
}
