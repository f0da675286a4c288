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
    /// Signalled when a worker finishes a job or exits (shutdown waits on it).
    done: Condvar,
}

/// Counters for `statistics()`.
pub struct PoolStats {
    pub threads: usize,
    pub idle: usize,
    pub busy: usize,
    pub queued: usize,
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

    /// Queues a job; starts a thread if none is free. `RuntimeError` after shutdown.
    pub fn submit(self: &Arc<Self>, py: Python<'_>, job: Job) -> PyResult<()> {
        let spawn = {
            let mut st = self.state.lock();
            if st.shutdown {
                return Err(PyRuntimeError::new_err(
                    "the worker pool is shut down: no new jobs can be submitted",
                ));
            }
            st.queue.push_back(job);
            let spawn = st.queue.len() > st.idle && st.threads < self.max_workers;
            if spawn {
                st.threads += 1;
            }
            spawn
        };
        self.work.notify_one();
        if spawn {
            if let Err(e) = self.spawn_thread(py) {
                let mut st = self.state.lock();
                st.threads -= 1;
                // Without any thread the job would wait forever: hand it back as an error.
                if st.threads == 0 {
                    let jobs: Vec<Job> = st.queue.drain(..).collect();
                    drop(st);
                    drop(jobs);
                }
                return Err(e);
            }
        }
        Ok(())
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

    /// The body of a worker thread.
    fn work_loop(&self, py: Python<'_>) {
        loop {
            let job = py.detach(|| self.next_job());
            let Some(job) = job else {
                return;
            };
            job(py);
            let mut st = self.state.lock();
            st.busy -= 1;
            drop(st);
            self.done.notify_all();
        }
    }

    /// Waits (GIL released) for a job; None when the thread should exit.
    fn next_job(&self) -> Option<Job> {
        let mut st = self.state.lock();
        let mut idle_since = Instant::now();
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.busy += 1;
                return Some(job);
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let timed_out = self
                .work
                .wait_until(&mut st, idle_since + self.idle_timeout)
                .timed_out();
            st.idle -= 1;
            if timed_out && st.queue.is_empty() {
                break;
            }
            if !timed_out {
                idle_since = Instant::now();
            }
        }
        st.threads -= 1;
        drop(st);
        self.done.notify_all();
        None
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
