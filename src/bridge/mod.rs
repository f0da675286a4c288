// The bridge into an event loop from other threads: the LoopPort protocol, its eventfd, and
// `Parker` for blocked threads.
//
// LoopPort (see docs/architecture.md). One per event loop (owned by its `LoopRuntime`). Producers
// (another loop's thread, a plain thread, a worker) push an item onto `PortQueue` and write one
// byte to the loop's eventfd only when they were the ones to set the `armed` flag; the loop
// watches the eventfd with `add_reader`, and its reader clears `armed` first, then drains the
// whole batch. A burst of N wake-ups costs one system call and one loop callback, and producers
// never call into the event loop.
//
// Why clearing `armed` before draining is enough: a producer that pushes after the drain took the
// batch finds `armed` clear (the clear happened before the drain's lock, which happened before
// the producer's lock) and kicks; a producer that pushes before the drain took the batch is in
// the batch. A kick may find an empty batch (harmless).
//
// Closing. `close()` marks the queue closed under its lock and hands back what was queued; a
// producer that pushes afterwards gets its item back (it is dropped on the producer's side), so
// nothing is left in a queue nobody drains.
//
// This module holds no Python types: `cargo test` covers the protocol. The loop side (reader,
// fallback for loops without `add_reader`) is in `loop_runtime`.
//
// Rejected: `call_soon_threadsafe` per wake-up (20-52 us and one `send()` per call on the stdlib
// loop, measured); a tokio channel polled by the loop (a runtime and a thread hop on the path of
// every wake-up).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

struct Inner<T> {
    items: Vec<T>,
    closed: bool,
}

/// The producer/consumer queue of a LoopPort.
pub struct PortQueue<T> {
    inner: Mutex<Inner<T>>,
    /// Set by the producer that must kick the consumer; cleared by the consumer before it
    /// drains. Invariant: while set, a kick is on its way (or the consumer is draining).
    armed: AtomicBool,
}

impl<T> Default for PortQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PortQueue<T> {
    pub const fn new() -> Self {
        PortQueue {
            inner: Mutex::new(Inner {
                items: Vec::new(),
                closed: false,
            }),
            armed: AtomicBool::new(false),
        }
    }

    /// Queues `item`. `Ok(true)`: the caller must kick the consumer; `Ok(false)`: a kick is
    /// already on its way; `Err(item)`: the queue is closed and the item is handed back.
    pub fn push(&self, item: T) -> Result<bool, T> {
        {
            let mut inner = self.inner.lock();
            if inner.closed {
                return Err(item);
            }
            inner.items.push(item);
        }
        Ok(!self.armed.swap(true, Ordering::AcqRel))
    }

    /// The kick could not be delivered: let the next producer try again.
    pub fn kick_failed(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// Consumer side: clears `armed`, then takes everything queued.
    pub fn take_batch(&self) -> Vec<T> {
        self.armed.store(false, Ordering::SeqCst);
        std::mem::take(&mut self.inner.lock().items)
    }

    /// Closes the queue; returns what was still queued (the caller drops it).
    pub fn close(&self) -> Vec<T> {
        let mut inner = self.inner.lock();
        inner.closed = true;
        std::mem::take(&mut inner.items)
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A non-blocking, close-on-exec eventfd.
pub fn new_eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory-safety preconditions; a negative result is an error.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Makes the eventfd readable. A full counter (EAGAIN) still leaves it readable: only other
/// errors are reported.
pub fn signal_eventfd(fd: &OwnedFd) -> std::io::Result<()> {
    let one: u64 = 1;
    // SAFETY: `fd` is an open eventfd; we write 8 bytes from a live u64.
    let n = unsafe {
        libc::write(
            fd.as_raw_fd(),
            (&one as *const u64).cast(),
            std::mem::size_of::<u64>(),
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock {
            return Err(err);
        }
    }
    Ok(())
}

/// Resets the eventfd (consumer side).
pub fn reset_eventfd(fd: &OwnedFd) {
    let mut buf: u64 = 0;
    // SAFETY: reading 8 bytes into a live u64 from our own non-blocking eventfd; EAGAIN (not
    // signalled) is fine.
    unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut buf as *mut u64).cast(),
            std::mem::size_of::<u64>(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn first_push_kicks_and_later_ones_ride_along() {
        let q = PortQueue::new();
        assert_eq!(q.push(1), Ok(true));
        assert_eq!(q.push(2), Ok(false));
        assert_eq!(q.take_batch(), vec![1, 2]);
        assert_eq!(q.push(3), Ok(true), "the drain re-armed the port");
    }

    #[test]
    fn closed_queue_hands_items_back() {
        let q = PortQueue::new();
        q.push(1).unwrap();
        assert_eq!(q.close(), vec![1]);
        assert_eq!(q.push(2), Err(2));
        assert!(q.take_batch().is_empty());
    }

    #[test]
    fn failed_kick_lets_the_next_producer_kick() {
        let q = PortQueue::new();
        assert_eq!(q.push(1), Ok(true));
        q.kick_failed();
        assert_eq!(q.push(2), Ok(true));
    }

    /// Many producers, one consumer that drains only when kicked: every item arrives, and
    /// there is never an item left while no kick is pending (no lost wake-up).
    #[test]
    fn no_lost_wakeups_under_contention() {
        const PRODUCERS: usize = 4;
        const ITEMS: usize = 20_000;
        let q = Arc::new(PortQueue::new());
        let kicks = Arc::new((Mutex::new(0usize), Condvar::new()));
        let received = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (q, kicks) = (q.clone(), kicks.clone());
                std::thread::spawn(move || {
                    for i in 0..ITEMS {
                        if q.push(p * ITEMS + i).unwrap() {
                            *kicks.0.lock() += 1;
                            kicks.1.notify_one();
                        }
                    }
                })
            })
            .collect();
        let consumer = {
            let (q, kicks, received) = (q.clone(), kicks.clone(), received.clone());
            std::thread::spawn(move || {
                while received.load(Ordering::Relaxed) < PRODUCERS * ITEMS {
                    {
                        let mut pending = kicks.0.lock();
                        while *pending == 0 {
                            let timed_out = kicks
                                .1
                                .wait_for(&mut pending, Duration::from_secs(5))
                                .timed_out();
                            assert!(!timed_out, "items queued but no kick arrived");
                        }
                        *pending -= 1;
                    }
                    received.fetch_add(q.take_batch().len(), Ordering::Relaxed);
                }
            })
        };
        for p in producers {
            p.join().unwrap();
        }
        consumer.join().unwrap();
        assert_eq!(received.load(Ordering::Relaxed), PRODUCERS * ITEMS);
    }
}
