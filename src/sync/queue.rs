// Queue: a FIFO channel between tasks of any loop and plain threads, bounded or not, closable.
//
// Hand-off. An item put while a getter waits goes straight into that getter's mailbox (the
// buffer stays empty), and a getter that frees buffer space while a putter waits grants that
// putter a reserved slot (`reserved`), which it fills when it runs. So no waiter is overtaken and
// no wake-up is wasted on a race for the same item or slot.
//
// Close. After `close()`, puts raise `ClosedResourceError`; gets drain what is buffered, then
// raise `EndOfStream` (async iteration ends); every waiter is woken to see it. A putter that
// was granted a slot but had not filled it when the queue closed raises too: the getters were
// already told the stream ended, so its item could never be received.
//
// Cancel safety: a getter cancelled after an item was handed to it gives the item back to the
// front of the queue (or to the next getter), so no item is lost and order is kept; a putter
// cancelled after it was granted a slot returns the slot to the next putter. A cancelled put
// never leaves its item in the queue.
//
// Unlike Lock/Semaphore, `put`/`get` that complete at once do not yield to the loop (asyncio's
// Queue semantics); they still raise if the task is cancelled.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyTimeoutError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::{check_blocking_allowed, prune_dead, stats_type, IntArg, Slot, Waiting, Wake, Wakeups};
use crate::asyncio;
use crate::awaitable::{Drive, Input, Step};
use crate::bridge::{self, Parker};
use crate::errors::{self, ClosedResourceError, EndOfStream};
use crate::process;
use crate::sync::waiters::WaiterQueue;
use pyo3::pyclass::{PyTraverseError, PyVisit};

type Mailbox = Arc<Mutex<Option<Py<PyAny>>>>;

struct GetEntry {
    slot: Arc<Slot>,
    wake: Wake,
    mailbox: Mailbox,
}

struct PutEntry {
    slot: Arc<Slot>,
    wake: Wake,
}

struct State {
    items: VecDeque<Py<PyAny>>,
    /// 0: unbounded.
    maxsize: usize,
    /// Buffer slots granted to waiting putters that have not filled them yet.
    reserved: usize,
    closed: bool,
    getters: WaiterQueue<GetEntry>,
    putters: WaiterQueue<PutEntry>,
    /// The fork generation the queues were last pruned in (see `prune_dead`).
    generation: u64,
}

type Shared = Arc<Mutex<State>>;

/// The queue's state, with waiters lost to a `fork()` pruned.
fn lock(shared: &Shared) -> parking_lot::MutexGuard<'_, State> {
    let mut st = shared.lock();
    if st.generation != process::generation() {
        let st = &mut *st;
        let mut generation = st.generation;
        prune_dead(&mut st.getters, &mut generation, |g| &g.wake);
        prune_dead(&mut st.putters, &mut st.generation, |p| &p.wake);
    }
    st
}

impl State {
    fn has_space(&self) -> bool {
        self.maxsize == 0 || self.items.len() + self.reserved < self.maxsize
    }

    /// Gives `item` to the first waiting getter, or buffers it (at the front if `front`).
    fn deliver(&mut self, shared: &Shared, item: Py<PyAny>, front: bool, out: &mut Wakeups) {
        if let Some(g) = self.getters.pop_front() {
            *g.mailbox.lock() = Some(item);
            g.slot.grant();
            let (shared, mailbox) = (shared.clone(), g.mailbox.clone());
            out.push_grant(
                g.wake,
                g.slot,
                Box::new(move |_py| give_back_item(&shared, &mailbox)),
            );
        } else if front {
            self.items.push_front(item);
        } else {
            self.items.push_back(item);
        }
    }

    /// Grants free buffer slots to waiting putters.
    fn grant_putters(&mut self, shared: &Shared, out: &mut Wakeups) {
        while self.has_space() {
            let Some(p) = self.putters.pop_front() else {
                break;
            };
            self.reserved += 1;
            p.slot.grant();
            let shared = shared.clone();
            out.push_grant(p.wake, p.slot, Box::new(move |_py| give_back_slot(&shared)));
        }
    }

    fn take_item(&mut self, shared: &Shared, out: &mut Wakeups) -> Option<Py<PyAny>> {
        let item = self.items.pop_front()?;
        self.grant_putters(shared, out);
        Some(item)
    }
}

/// A getter that will not use the item handed to it puts it back at the front.
fn give_back_item(shared: &Shared, mailbox: &Mailbox) -> Wakeups {
    let mut out = Wakeups::default();
    if let Some(item) = mailbox.lock().take() {
        lock(shared).deliver(shared, item, true, &mut out);
    }
    out
}

/// A putter that will not fill its reserved slot frees it for the next putter.
fn give_back_slot(shared: &Shared) -> Wakeups {
    let mut out = Wakeups::default();
    let mut st = lock(shared);
    st.reserved -= 1;
    st.grant_putters(shared, &mut out);
    out
}

/// What filling a reserved slot did: the wake-ups to run, and whether the item went in.
#[must_use = "wake-ups must be run after the lock is released"]
struct Filled(Wakeups, bool);

impl Filled {
    fn run(self, py: Python<'_>) -> PyResult<bool> {
        self.0.run(py)?;
        Ok(self.1)
    }
}

/// A putter granted a slot fills it; if the queue closed meanwhile the slot is dropped and the
/// item stays with the putter (see the module notes).
fn fill_reserved(shared: &Shared, item: &mut Option<Py<PyAny>>) -> Filled {
    let mut out = Wakeups::default();
    let mut st = lock(shared);
    st.reserved -= 1;
    if st.closed {
        return Filled(out, false);
    }
    let item = item.take().expect("item present until put");
    st.deliver(shared, item, false, &mut out);
    // Handed straight to a waiting getter, the slot is free again: the next putter gets it.
    st.grant_putters(shared, &mut out);
    Filled(out, true)
}

fn closed_error(_py: Python<'_>) -> PyErr {
    ClosedResourceError::new_err("the queue is closed")
}

fn end_error(_py: Python<'_>, iterating: bool) -> PyErr {
    if iterating {
        PyStopAsyncIteration::new_err(())
    } else {
        EndOfStream::new_err("the queue is closed and empty")
    }
}

enum Phase {
    Start,
    Queued { id: u64, slot: Arc<Slot> },
    Done,
}

/// `await queue.get()` (and `__anext__`).
///
/// Cancel safety: see the module notes (an item handed over is given back to the front).
struct Get {
    shared: Shared,
    iterating: bool,
    phase: Phase,
    mailbox: Mailbox,
}

impl Get {
    fn leave(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Phase::Queued { id, slot } = std::mem::replace(&mut self.phase, Phase::Done) {
            if slot.leave() {
                lock(&self.shared).getters.remove(id);
            } else if slot.refuse() {
                give_back_item(&self.shared, &self.mailbox).run(py)?;
            }
        }
        Ok(())
    }
}

impl Drive for Get {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(err) = input {
            self.leave(py)?;
            return Err(err);
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Start => {
                let mut out = Wakeups::default();
                let (item, closed) = {
                    let mut st = lock(&self.shared);
                    (st.take_item(&self.shared, &mut out), st.closed)
                };
                out.run(py)?;
                if let Some(item) = item {
                    return Ok(Step::Return(item));
                }
                if closed {
                    return Err(end_error(py, self.iterating));
                }
                let (wake, fut) = Wake::for_task(py)?;
                let mut out = Wakeups::default();
                let outcome = {
                    let mut st = lock(&self.shared);
                    if let Some(item) = st.take_item(&self.shared, &mut out) {
                        Ok(item)
                    } else if st.closed {
                        Err(())
                    } else {
                        let slot = Slot::new();
                        let id = st.getters.push(GetEntry {
                            slot: slot.clone(),
                            wake,
                            mailbox: self.mailbox.clone(),
                        });
                        self.phase = Phase::Queued { id, slot };
                        asyncio::mark_blocking(&fut)?;
                        return Ok(Step::Yield(fut.unbind()));
                    }
                };
                out.run(py)?;
                match outcome {
                    Ok(item) => Ok(Step::Return(item)),
                    Err(()) => Err(end_error(py, self.iterating)),
                }
            }
            Phase::Queued { id, slot } => {
                if slot.take() {
                    let item = self.mailbox.lock().take();
                    return item.map(Step::Return).ok_or_else(|| {
                        PyRuntimeError::new_err("internal error: empty queue mailbox")
                    });
                }
                self.phase = Phase::Queued { id, slot };
                self.leave(py)?;
                Err(end_error(py, self.iterating))
            }
            Phase::Done => Err(PyRuntimeError::new_err("get() awaited twice")),
        }
    }

    fn close(&mut self, py: Python<'_>) {
        let _ = self.leave(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self.mailbox.try_lock() {
            Some(item) => visit.call(item.as_ref()),
            None => Ok(()),
        }
    }
}

impl Drop for Get {
    fn drop(&mut self) {
        // Dropped without close() (its Task was destroyed pending): leave the queue, or hand
        // back an item that was already given to us.
        if matches!(self.phase, Phase::Queued { .. }) {
            Python::attach(|py| {
                let _ = self.leave(py);
            });
        }
    }
}

/// `await queue.put(item)`.
///
/// Cancel safety: the item is never left in the queue by a cancelled put; a slot granted to it
/// goes to the next putter.
struct Put {
    shared: Shared,
    item: Option<Py<PyAny>>,
    phase: Phase,
}

impl Put {
    fn leave(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Phase::Queued { id, slot } = std::mem::replace(&mut self.phase, Phase::Done) {
            if slot.leave() {
                lock(&self.shared).putters.remove(id);
            } else if slot.refuse() {
                give_back_slot(&self.shared).run(py)?;
            }
        }
        Ok(())
    }

    /// Puts now if possible. Err(()) if the queue is closed, Ok(false) if it is full.
    fn try_put(&mut self, out: &mut Wakeups) -> Result<bool, ()> {
        let mut st = lock(&self.shared);
        if st.closed {
            return Err(());
        }
        if st.getters.is_empty() && !st.has_space() {
            return Ok(false);
        }
        let item = self.item.take().expect("item present until put");
        st.deliver(&self.shared, item, false, out);
        Ok(true)
    }
}

impl Drive for Put {
    fn resume(&mut self, py: Python<'_>, input: Input<'_>) -> PyResult<Step> {
        if let Input::Throw(err) = input {
            self.leave(py)?;
            return Err(err);
        }
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Start => {
                let mut out = Wakeups::default();
                let done = self.try_put(&mut out);
                out.run(py)?;
                match done {
                    Err(()) => return Err(closed_error(py)),
                    Ok(true) => return Ok(Step::Return(py.None())),
                    Ok(false) => {}
                }
                let (wake, fut) = Wake::for_task(py)?;
                let mut out = Wakeups::default();
                let done = {
                    let done = self.try_put(&mut out);
                    if let Ok(false) = done {
                        let slot = Slot::new();
                        let id = lock(&self.shared).putters.push(PutEntry {
                            slot: slot.clone(),
                            wake,
                        });
                        self.phase = Phase::Queued { id, slot };
                    }
                    done
                };
                out.run(py)?;
                match done {
                    Err(()) => Err(closed_error(py)),
                    Ok(true) => Ok(Step::Return(py.None())),
                    Ok(false) => {
                        asyncio::mark_blocking(&fut)?;
                        Ok(Step::Yield(fut.unbind()))
                    }
                }
            }
            Phase::Queued { id, slot } => {
                if slot.take() {
                    if !fill_reserved(&self.shared, &mut self.item).run(py)? {
                        return Err(closed_error(py));
                    }
                    return Ok(Step::Return(py.None()));
                }
                self.phase = Phase::Queued { id, slot };
                self.leave(py)?;
                Err(closed_error(py))
            }
            Phase::Done => Err(PyRuntimeError::new_err("put() awaited twice")),
        }
    }

    fn close(&mut self, py: Python<'_>) {
        let _ = self.leave(py);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.item)
    }
}

impl Drop for Put {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Queued { .. }) {
            Python::attach(|py| {
                let _ = self.leave(py);
            });
        }
    }
}

fn maxsize_arg(obj: &Bound<'_, PyAny>) -> PyResult<IntArg> {
    obj.extract::<IntArg>().map_err(|_| {
        PyTypeError::new_err(format!(
            "maxsize must be an int (0 or less: unbounded), got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// A FIFO queue for tasks of any event loop and for plain threads; `Queue[T]` for typing.
///
/// Args:
///     maxsize: buffer size; `put` waits while it is full. 0 or less: unbounded.
#[pyclass(module = "toolcase_rs", name = "Queue", frozen)]
pub struct Queue {
    shared: Shared,
}

impl Queue {
    fn get_impl<'py>(&self, py: Python<'py>, iterating: bool) -> PyResult<Bound<'py, Waiting>> {
        Waiting::checkpoint(
            py,
            if iterating {
                "Queue.__anext__()"
            } else {
                "Queue.get()"
            },
            Get {
                shared: self.shared.clone(),
                iterating,
                phase: Phase::Start,
                mailbox: Arc::new(Mutex::new(None)),
            },
        )
    }
}

#[pymethods]
impl Queue {
    #[new]
    #[pyo3(signature = (maxsize=IntArg(0)), text_signature = "(maxsize=0)")]
    fn py_new(#[pyo3(from_py_with = maxsize_arg)] maxsize: IntArg) -> PyResult<Self> {
        let maxsize = maxsize.0;
        Ok(Queue {
            shared: Arc::new(Mutex::new(State {
                items: VecDeque::new(),
                maxsize: usize::try_from(maxsize).unwrap_or(0),
                reserved: 0,
                closed: false,
                getters: WaiterQueue::default(),
                putters: WaiterQueue::default(),
                generation: process::generation(),
            })),
        })
    }

    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: &Bound<'_, PyAny>) -> Py<PyType> {
        let _ = item;
        cls.clone().unbind()
    }

    /// Put an item, waiting while the queue is full. Raises ClosedResourceError if closed.
    fn put<'py>(&self, py: Python<'py>, item: Py<PyAny>) -> PyResult<Bound<'py, Waiting>> {
        Waiting::checkpoint(
            py,
            "Queue.put()",
            Put {
                shared: self.shared.clone(),
                item: Some(item),
                phase: Phase::Start,
            },
        )
    }

    /// Take the next item, waiting while the queue is empty. Raises EndOfStream once the
    /// queue is closed and drained.
    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Waiting>> {
        self.get_impl(py, false)
    }

    /// Put without waiting: QueueFull if full, ClosedResourceError if closed.
    fn put_nowait(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
        let mut out = Wakeups::default();
        let res = {
            let mut st = lock(&self.shared);
            if st.closed {
                Err(closed_error(py))
            } else if st.getters.is_empty() && !st.has_space() {
                Err(errors::queue_full(py, "the queue is full"))
            } else {
                st.deliver(&self.shared, item, false, &mut out);
                Ok(())
            }
        };
        out.run(py)?;
        res
    }

    /// Take an item without waiting: QueueEmpty if empty, EndOfStream if closed and drained.
    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut out = Wakeups::default();
        let (item, closed) = {
            let mut st = lock(&self.shared);
            (st.take_item(&self.shared, &mut out), st.closed)
        };
        out.run(py)?;
        match item {
            Some(item) => Ok(item),
            None if closed => Err(end_error(py, false)),
            None => Err(errors::queue_empty(py, "the queue is empty")),
        }
    }

    /// Put from a plain thread, blocking while full (the GIL is released meanwhile).
    /// Raises TimeoutError after `timeout` seconds.
    #[pyo3(signature = (item, timeout=None))]
    fn put_blocking(&self, py: Python<'_>, item: Py<PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = super::check_timeout(timeout)?;
        check_blocking_allowed(py, "Queue.put_blocking()")?;
        let mut put = Put {
            shared: self.shared.clone(),
            item: Some(item),
            phase: Phase::Done,
        };
        let mut out = Wakeups::default();
        match put.try_put(&mut out) {
            Err(()) => return Err(closed_error(py)),
            Ok(true) => return out.run(py),
            Ok(false) => {}
        }
        let parker = Arc::new(Parker::default());
        let slot = Slot::new();
        let id = {
            let mut st = lock(&self.shared);
            // Re-check under the lock that queues us.
            if st.closed {
                return Err(closed_error(py));
            }
            if !st.getters.is_empty() || st.has_space() {
                let item = put.item.take().expect("not yet put");
                st.deliver(&self.shared, item, false, &mut out);
                drop(st);
                return out.run(py);
            }
            st.putters.push(PutEntry {
                slot: slot.clone(),
                wake: Wake::thread(parker.clone()),
            })
        };
        let deadline = bridge::deadline_after(timeout);
        py.detach(|| parker.park(deadline));
        put.phase = Phase::Queued {
            id,
            slot: slot.clone(),
        };
        if slot.take() {
            put.phase = Phase::Done;
            if !fill_reserved(&self.shared, &mut put.item).run(py)? {
                return Err(closed_error(py));
            }
            return Ok(());
        }
        put.leave(py)?;
        if lock(&self.shared).closed {
            Err(closed_error(py))
        } else {
            Err(PyTimeoutError::new_err("Queue.put_blocking() timed out"))
        }
    }

    /// Take an item from a plain thread, blocking while empty (the GIL is released
    /// meanwhile). Raises TimeoutError after `timeout` seconds, EndOfStream once closed and
    /// drained.
    #[pyo3(signature = (timeout=None))]
    fn get_blocking(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = super::check_timeout(timeout)?;
        check_blocking_allowed(py, "Queue.get_blocking()")?;
        let parker = Arc::new(Parker::default());
        let mailbox: Mailbox = Arc::new(Mutex::new(None));
        let slot = Slot::new();
        let mut out = Wakeups::default();
        // Take an item now, or queue as a getter, under one lock.
        let queued = {
            let mut st = lock(&self.shared);
            match st.take_item(&self.shared, &mut out) {
                Some(item) => Err(Some(item)),
                None if st.closed => Err(None),
                None => Ok(st.getters.push(GetEntry {
                    slot: slot.clone(),
                    wake: Wake::thread(parker.clone()),
                    mailbox: mailbox.clone(),
                })),
            }
        };
        out.run(py)?;
        let id = match queued {
            Err(Some(item)) => return Ok(item),
            Err(None) => return Err(end_error(py, false)),
            Ok(id) => id,
        };
        let deadline = bridge::deadline_after(timeout);
        py.detach(|| parker.park(deadline));
        if slot.take() {
            return mailbox
                .lock()
                .take()
                .ok_or_else(|| PyRuntimeError::new_err("internal error: empty queue mailbox"));
        }
        let mut get = Get {
            shared: self.shared.clone(),
            iterating: false,
            phase: Phase::Queued { id, slot },
            mailbox,
        };
        get.leave(py)?;
        if lock(&self.shared).closed {
            Err(end_error(py, false))
        } else {
            Err(PyTimeoutError::new_err("Queue.get_blocking() timed out"))
        }
    }

    /// Close the queue: puts fail from now on, gets drain what is left, waiters wake.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut out = Wakeups::default();
        {
            let mut st = lock(&self.shared);
            st.closed = true;
            for g in st.getters.drain() {
                out.push(g.wake, None);
            }
            for p in st.putters.drain() {
                out.push(p.wake, None);
            }
        }
        out.run(py)
    }

    #[getter]
    fn closed(&self) -> bool {
        self.shared.lock().closed
    }

    #[getter]
    fn maxsize(&self) -> usize {
        self.shared.lock().maxsize
    }

    fn qsize(&self) -> usize {
        self.shared.lock().items.len()
    }

    fn empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    fn full(&self) -> bool {
        let st = self.shared.lock();
        st.maxsize > 0 && st.items.len() >= st.maxsize
    }

    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (used, max, send, recv) = {
            let st = lock(&self.shared);
            (
                st.items.len(),
                st.maxsize,
                st.putters.len(),
                st.getters.len(),
            )
        };
        let max: Py<PyAny> = if max == 0 {
            pyo3::IntoPyObjectExt::into_py_any(f64::INFINITY, py)?
        } else {
            pyo3::IntoPyObjectExt::into_py_any(max, py)?
        };
        stats_type(py, "QueueStatistics")?.call1((used, max, send, recv))
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Waiting>> {
        self.get_impl(py, true)
    }

    fn __len__(&self) -> usize {
        self.qsize()
    }

    fn __repr__(&self) -> String {
        let st = self.shared.lock();
        format!(
            "<Queue size={} maxsize={} {}>",
            st.items.len(),
            st.maxsize,
            if st.closed { "closed" } else { "open" }
        )
    }
}
