// The bridge into an event loop from other threads: `LoopPort`, and `Parker` for blocked
// threads.
//
// LoopPort (ARCHITECTURE rule 4). One per event loop, created on the loop's thread the first
// time something may need to wake that loop from outside. Producers (another loop's thread, a
// plain thread, later the worker pool) push a `Completion` onto a queue and write one byte to an
// eventfd only when the `armed` flag was clear; the loop watches the eventfd with `add_reader`,
// and its reader clears `armed` first, then drains the whole batch. So a burst of N wake-ups
// costs one system call and one loop callback, and a producer never calls into the event loop.
// Producers here still hold the GIL (they are Python callers); the queue and the flag do not
// need it, which is what lets threads without it (the worker pool) produce too.
//
// Loops without `add_reader` (the Windows proactor loop) get `call_soon_threadsafe` per kick
// instead. Completions sent after the loop closed are dropped quietly: the port notices the
// closed loop when the thread's next loop registers its port, or when a producer checks
// `is_closed()` before sending (primitives do, so a grant to a dead loop goes to the next waiter).
//
// Rejected: `call_soon_threadsafe` per completion (20-52 us and one `send()` per call on the
// stdlib loop, measured); a tokio channel polled by the loop (needs a runtime and a thread hop on
// the path of every wake-up).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyNotImplementedError, PyOSError};
use pyo3::intern;
use pyo3::prelude::*;
use rustc_hash::FxHashMap;

use crate::asyncio;
use crate::runtime;

/// Something to do on a loop's thread.
pub enum Completion {
    /// `fut.set_result(value)` unless the future is already done.
    Resolve(Py<PyAny>, Option<Py<PyAny>>),
}

impl Completion {
    fn run(self, py: Python<'_>) -> PyResult<()> {
        match self {
            Completion::Resolve(fut, value) => {
                let value = value.unwrap_or_else(|| py.None());
                asyncio::resolve(fut.bind(py), value.bind(py))
            }
        }
    }
}

pub struct LoopPort {
    /// `id(loop)`; a weak reference to the loop serves the fallback path and closed checks
    /// (a port must not keep its loop alive).
    pub loop_id: usize,
    loop_: Py<PyAny>,
    queue: Mutex<Vec<Completion>>,
    /// Set by the producer that writes the wake-up byte; cleared by the reader before it drains.
    armed: AtomicBool,
    /// The loop is gone: drop what arrives.
    closed: AtomicBool,
    /// The eventfd the loop watches; `None` when the loop has no `add_reader`.
    fd: Option<OwnedFd>,
}

impl LoopPort {
    /// Queues `c` for the loop and wakes it if needed.
    pub fn send(self: &Arc<Self>, c: Completion) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.queue.lock().push(c);
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.kick();
        }
    }

    fn kick(self: &Arc<Self>) {
        match &self.fd {
            Some(fd) => {
                let one: u64 = 1;
                // SAFETY: `fd` is an open eventfd owned by this port; we write 8 bytes from a
                // live u64. A full counter (EAGAIN) still leaves the fd readable, so the error
                // is ignored.
                unsafe {
                    libc::write(
                        fd.as_raw_fd(),
                        (&one as *const u64).cast(),
                        std::mem::size_of::<u64>(),
                    );
                }
            }
            None => Python::attach(|py| {
                let drain = Bound::new(py, PortReader { port: self.clone() });
                if let (Ok(drain), Some(loop_)) = (drain, runtime::upgrade(self.loop_.bind(py))) {
                    let _ = loop_.call_method1(intern!(py, "call_soon_threadsafe"), (drain,));
                }
            }),
        }
    }

    /// Runs on the loop thread: take every queued completion and run it.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(fd) = &self.fd {
            let mut buf: u64 = 0;
            // SAFETY: reading 8 bytes into a live u64 from our own non-blocking eventfd.
            unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    (&mut buf as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
        self.armed.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *self.queue.lock());
        let mut first_err = None;
        for c in batch {
            if let Err(e) = c.run(py) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// True when the port's loop is closed (its waiters will never run).
    pub fn loop_closed(&self, py: Python<'_>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        runtime::upgrade(self.loop_.bind(py)).is_none_or(|l| {
            l.call_method0(intern!(py, "is_closed"))
                .and_then(|v| v.is_truthy())
                .unwrap_or(true)
        })
    }

    fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        drop(std::mem::take(&mut *self.queue.lock()));
    }
}

/// The loop's reader callback for a port.
#[pyclass(module = "toolcase_rs._toolcase_rs", frozen)]
pub struct PortReader {
    port: Arc<LoopPort>,
}

#[pymethods]
impl PortReader {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        self.port.drain(py)
    }
}

thread_local! {
    /// This thread's ports, by `id(loop)`.
    static PORTS: std::cell::RefCell<FxHashMap<usize, Arc<LoopPort>>> =
        std::cell::RefCell::new(FxHashMap::default());
}

/// The port of the loop running in this thread, created on first use.
pub fn port_for(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> PyResult<Arc<LoopPort>> {
    let id = loop_.as_ptr() as usize;
    if let Some(p) = PORTS.with(|m| m.borrow().get(&id).cloned()) {
        // Keyed by address with a weak reference: a port whose loop died may sit under the
        // address of a new loop.
        let same = runtime::upgrade(p.loop_.bind(py)).is_some_and(|l| l.is(loop_));
        if same && !p.closed.load(Ordering::Acquire) {
            return Ok(p);
        }
        if !same {
            p.shut();
            PORTS.with(|m| m.borrow_mut().remove(&id));
        }
    }
    sweep_closed(py);
    // SAFETY: eventfd has no memory-safety preconditions; a negative result is an error.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(PyOSError::new_err(format!(
            "eventfd failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let raw = fd.as_raw_fd();
    let mut port = LoopPort {
        loop_id: id,
        loop_: runtime::weak(loop_),
        queue: Mutex::new(Vec::new()),
        armed: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        fd: Some(fd),
    };
    // Register the reader; a loop without add_reader falls back to call_soon_threadsafe.
    let port = match loop_.getattr(intern!(py, "add_reader")) {
        Ok(add_reader) => {
            let port = Arc::new(port);
            let reader = Bound::new(py, PortReader { port: port.clone() })?;
            match add_reader.call1((raw, reader)) {
                Ok(_) => port,
                Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => {
                    let mut p = Arc::try_unwrap(port).unwrap_or_else(|_| unreachable!());
                    p.fd = None;
                    Arc::new(p)
                }
                Err(e) => return Err(e),
            }
        }
        Err(_) => {
            port.fd = None;
            Arc::new(port)
        }
    };
    PORTS.with(|m| m.borrow_mut().insert(id, port.clone()));
    Ok(port)
}

/// Shuts the ports of this thread's loops that have closed.
fn sweep_closed(py: Python<'_>) {
    let ports: Vec<Arc<LoopPort>> = PORTS.with(|m| m.borrow().values().cloned().collect());
    for p in ports {
        if p.loop_closed(py) {
            p.shut();
            PORTS.with(|m| m.borrow_mut().remove(&p.loop_id));
        }
    }
}

/// A blocked plain thread's wake-up.
#[derive(Default)]
pub struct Parker {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Parker {
    pub fn unpark(&self) {
        *self.woken.lock() = true;
        self.cv.notify_one();
    }

    /// Waits until unparked or `deadline` passes; true if unparked.
    pub fn park(&self, deadline: Option<Instant>) -> bool {
        let mut woken = self.woken.lock();
        while !*woken {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut woken, d).timed_out() {
                        return *woken;
                    }
                }
                None => self.cv.wait(&mut woken),
            }
        }
        true
    }
}

/// Converts a (validated, non-NaN) timeout in seconds to a deadline (None: wait forever).
pub fn deadline_after(timeout: Option<f64>) -> Option<Instant> {
    timeout
        .filter(|t| !t.is_nan())
        .map(|t| Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)))
}
