// Process and thread identity: which thread is this, and does a waiter recorded earlier still
// have a thread to run on after `fork()`.
//
// Thread ids are small integers handed out from a process-wide counter the first time a thread
// asks (never an address: a new thread may reuse a dead thread's stack or TLS block, and an id
// must not be confused with it). After `os.fork()` only the thread that forked exists in the
// child; the child's `after_fork` hook bumps the fork generation and records that thread as the
// survivor. An `Origin` taken before the fork is then alive only if it belongs to the survivor.
//
// Runs on any thread; lock-free (atomics and a thread-local).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
/// The thread that called `fork()` in the latest generation (0 before any fork).
static SURVIVOR: AtomicU64 = AtomicU64::new(0);
/// This process's pid, kept current across `fork()` by `after_fork_in_child`.
static PID: AtomicI32 = AtomicI32::new(0);

thread_local! {
    static THREAD_ID: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// A process-unique id of the calling thread (stable for the thread's lifetime, also in a
/// forked child for the thread that forked).
#[inline]
pub fn thread_id() -> u64 {
    THREAD_ID.with(|t| *t)
}

/// The current pid (cheap: no system call once known).
#[inline]
pub fn pid() -> i32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: getpid has no preconditions.
    let p = unsafe { libc::getpid() };
    PID.store(p, Ordering::Relaxed);
    p
}

/// Where a waiter came from: the thread that queued it and the fork generation it was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    generation: u64,
    thread: u64,
}

impl Origin {
    /// The calling thread, now.
    #[inline]
    pub fn here() -> Origin {
        Origin {
            generation: FORK_GENERATION.load(Ordering::Relaxed),
            thread: thread_id(),
        }
    }

    /// False for a waiter of a thread that does not exist in this process (it was queued by a
    /// thread of a parent process that did not call `fork()`).
    #[inline]
    pub fn alive(self) -> bool {
        self.generation == FORK_GENERATION.load(Ordering::Relaxed)
            || self.thread == SURVIVOR.load(Ordering::Relaxed)
    }
}

/// The fork generation: changes in a forked child. Primitives compare it with the one they
/// last pruned their queues in.
#[inline]
pub fn generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Called in the child right after `fork()`, on the only thread it has.
pub fn after_fork_in_child() {
    SURVIVOR.store(thread_id(), Ordering::Relaxed);
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_are_distinct_and_stable() {
        let here = thread_id();
        assert_eq!(here, thread_id());
        let other = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, other);
    }

    #[test]
    fn origins_of_other_threads_die_with_a_fork() {
        let mine = Origin::here();
        let theirs = std::thread::spawn(Origin::here).join().unwrap();
        assert!(mine.alive() && theirs.alive());
        // What the child sees: this thread forked.
        after_fork_in_child();
        assert!(mine.alive(), "the forking thread's waiters survive");
        assert!(!theirs.alive(), "other threads do not exist in the child");
        assert!(Origin::here().alive());
    }
}
