//! The hot tail: a per-shard memory budget for batches kept in memory after they were
//! written, so fetches near the end of the log are served without disk. Shared by all
//! partitions of one shard via `Rc`. Eviction is a global FIFO in insertion (= append)
//! order. The cached `Bytes` are the very buffers that were appended (no copy).
//!
//! Each cached batch is an [`Rc<Slot>`] held both by the FIFO and by its partition's lookup
//! map; emptying the slot (eviction or release by the partition) frees the bytes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// One cached batch.
pub(crate) struct Slot {
    data: RefCell<Option<Bytes>>,
    len: usize,
}

impl Slot {
    pub(crate) fn get(&self) -> Option<Bytes> {
        self.data.borrow().clone()
    }
}

/// Per-shard budget for the hot tail.
pub struct TailCache {
    budget: usize,
    used: Cell<usize>,
    live: Cell<usize>,
    fifo: RefCell<VecDeque<Rc<Slot>>>,
}

impl TailCache {
    pub fn new(budget_bytes: usize) -> Rc<TailCache> {
        Rc::new(TailCache {
            budget: budget_bytes,
            used: Cell::new(0),
            live: Cell::new(0),
            fifo: RefCell::new(VecDeque::new()),
        })
    }

    /// Bytes currently held.
    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget
    }

    /// Adds a batch; evicts the oldest batches while over budget (possibly this one).
    pub(crate) fn insert(&self, data: Bytes) -> Rc<Slot> {
        let slot = Rc::new(Slot {
            len: data.len(),
            data: RefCell::new(Some(data)),
        });
        self.used.set(self.used.get() + slot.len);
        self.live.set(self.live.get() + 1);
        let mut fifo = self.fifo.borrow_mut();
        fifo.push_back(slot.clone());
        while self.used.get() > self.budget {
            let Some(old) = fifo.pop_front() else { break };
            self.drop_slot(&old);
        }
        // Keep released (empty) slots from piling up in the FIFO.
        if fifo.len() > 2 * self.live.get() + 64 {
            fifo.retain(|s| s.data.borrow().is_some());
        }
        slot
    }

    /// Frees a slot's bytes now (partition truncated, closed or dropped).
    pub(crate) fn release(&self, slot: &Slot) {
        self.drop_slot(slot);
    }

    fn drop_slot(&self, slot: &Slot) {
        if slot.data.borrow_mut().take().is_some() {
            assert!(
                self.used.get() >= slot.len,
                "tail cache accounting underflow"
            );
            self.used.set(self.used.get() - slot.len);
            self.live.set(self.live.get() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_eviction_and_release() {
        let c = TailCache::new(100);
        let a = c.insert(Bytes::from(vec![1u8; 60]));
        let b = c.insert(Bytes::from(vec![2u8; 30]));
        assert_eq!(c.used_bytes(), 90);
        let d = c.insert(Bytes::from(vec![3u8; 30]));
        assert!(a.get().is_none());
        assert!(b.get().is_some() && d.get().is_some());
        assert_eq!(c.used_bytes(), 60);
        c.release(&b);
        c.release(&b);
        assert_eq!(c.used_bytes(), 30);
        let big = c.insert(Bytes::from(vec![4u8; 500]));
        assert!(big.get().is_none());
        assert_eq!(c.used_bytes(), 0);
    }
}
