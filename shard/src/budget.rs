//! A per-shard bound on work in flight, counted in units (the broker counts bytes): `acquire(n)`
//! waits, without blocking the shard thread, until `n` units are free and holds them until the
//! returned guard is dropped. Waiters are served in arrival order (glommio's semaphore is FIFO),
//! so a large request is not overtaken forever by small ones. A request larger than the whole
//! bound takes all of it and runs alone. Capacity 0 means unbounded (acquire never waits).

use glommio::sync::{Permit, Semaphore};

pub struct InFlightBudget {
    sem: Option<Semaphore>,
    capacity: u64,
}

/// Units held from an [`InFlightBudget`]; given back when dropped.
pub struct BudgetGuard<'a> {
    _permit: Option<Permit<'a>>,
}

impl InFlightBudget {
    pub fn new(capacity: u64) -> Self {
        Self {
            sem: (capacity > 0).then(|| Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Waits until `units` (at least 1, at most the capacity) are free and takes them.
    pub async fn acquire(&self, units: u64) -> BudgetGuard<'_> {
        let Some(sem) = &self.sem else {
            return BudgetGuard { _permit: None };
        };
        let n = units.clamp(1, self.capacity);
        // The semaphore is never closed, so acquiring only fails if that changes; then the
        // work goes ahead unbounded rather than not at all.
        BudgetGuard {
            _permit: sem.acquire_permit(n).await.ok(),
        }
    }

    /// Units held now (0 when unbounded).
    pub fn in_use(&self) -> u64 {
        self.sem
            .as_ref()
            .map_or(0, |s| self.capacity - s.available())
    }
}

#[cfg(test)]
mod tests {
    use super::InFlightBudget;
    use futures::FutureExt;

    #[test]
    fn waits_for_room_and_serves_in_order() {
        glommio::LocalExecutor::default().run(async {
            let b = InFlightBudget::new(10);
            let g1 = b.acquire(6).await;
            assert_eq!(b.in_use(), 6);
            // 6 more do not fit while the first 6 are held.
            let mut second = Box::pin(b.acquire(6));
            assert!(second.as_mut().now_or_never().is_none());
            drop(g1);
            let g2 = second.await;
            assert_eq!(b.in_use(), 6);
            // A request beyond the capacity takes all of it once the others are done.
            let mut big = Box::pin(b.acquire(100));
            assert!(big.as_mut().now_or_never().is_none());
            drop(g2);
            let g3 = big.await;
            assert_eq!(b.in_use(), 10);
            drop(g3);
            assert_eq!(b.in_use(), 0);
        });
    }

    #[test]
    fn zero_capacity_is_unbounded() {
        glommio::LocalExecutor::default().run(async {
            let b = InFlightBudget::new(0);
            let _a = b.acquire(u64::MAX).await;
            let _b = b.acquire(u64::MAX).await;
            assert_eq!(b.in_use(), 0);
        });
    }
}
