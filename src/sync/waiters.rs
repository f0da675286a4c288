// The FIFO waiter queue shared by every primitive.
//
// Pure Rust, no Python types: waiters are served in arrival order and any waiter can leave
// (cancelled, timed out) in O(log n). Guarded by the owning primitive's mutex.
//
// Rejected: a `VecDeque` with linear removal (cancelling many waiters of a long queue is
// quadratic); an intrusive list (needs unsafe for no measured gain at these sizes).

use std::collections::BTreeMap;

pub struct WaiterQueue<W> {
    next_id: u64,
    /// Keyed by arrival order.
    waiters: BTreeMap<u64, W>,
}

impl<W> Default for WaiterQueue<W> {
    fn default() -> Self {
        Self {
            next_id: 0,
            waiters: BTreeMap::new(),
        }
    }
}

impl<W> WaiterQueue<W> {
    /// Adds a waiter at the back; returns its id.
    pub fn push(&mut self, waiter: W) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiters.insert(id, waiter);
        id
    }

    pub fn front(&self) -> Option<&W> {
        self.waiters.values().next()
    }

    /// The id of the waiter at the front.
    pub fn front_id(&self) -> Option<u64> {
        self.waiters.keys().next().copied()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut W> {
        self.waiters.get_mut(&id)
    }

    pub fn pop_front(&mut self) -> Option<W> {
        self.waiters.pop_first().map(|(_, w)| w)
    }

    /// Removes a waiter that is still queued.
    pub fn remove(&mut self, id: u64) -> Option<W> {
        self.waiters.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Keeps only the waiters for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&W) -> bool) {
        self.waiters.retain(|_, w| keep(w));
    }

    /// Removes every waiter, in arrival order.
    pub fn drain(&mut self) -> impl Iterator<Item = W> {
        std::mem::take(&mut self.waiters).into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_removal() {
        let mut q = WaiterQueue::default();
        let ids: Vec<u64> = (0..5).map(|i| q.push(i)).collect();
        assert_eq!(q.remove(ids[1]), Some(1));
        assert_eq!(q.remove(ids[1]), None);
        assert_eq!(q.pop_front(), Some(0));
        assert_eq!(q.front(), Some(&2));
        assert_eq!(q.len(), 3);
        assert_eq!(q.drain().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(q.is_empty());
    }
}
