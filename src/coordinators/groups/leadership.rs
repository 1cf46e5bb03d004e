//! Coordinator leadership (cluster mode): which partitions of an internal, replicated
//! coordinator topic (`__consumer_offsets` today; `__transaction_state` can reuse it) this shard
//! serves, decided from the published metadata as Kafka does: a broker coordinates the keys of a
//! partition while it is that partition's leader. On becoming leader (a new leader epoch) the
//! partition is *loading*: its state is rebuilt from the log, and requests get
//! COORDINATOR_LOAD_IN_PROGRESS; once loaded it is served. On losing leadership it is unloaded
//! and requests get NOT_COORDINATOR, so clients find the new coordinator.
//!
//! `CoordinatorLeadership` is the sans-IO state machine (unit-tested below); the group
//! coordinator's driver (`groups::on_metadata`) carries out its `LeadershipAction`s.

use std::collections::BTreeMap;

/// What this shard does with one partition of the coordinator topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionStatus {
    /// Leader at `epoch`, state being read from the log.
    Loading { epoch: i32 },
    /// Leader at `epoch`, state in memory: requests are served.
    Loaded { epoch: i32 },
}

/// An action for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeadershipAction {
    /// Read `partition`'s log and rebuild its state, then call `on_loaded(partition, epoch)`.
    Load { partition: i32, epoch: i32 },
    /// Drop `partition`'s state; parked requests answer NOT_COORDINATOR.
    Unload { partition: i32 },
}

/// The partitions this shard leads, with their load status.
#[derive(Debug, Default)]
pub struct CoordinatorLeadership {
    partitions: BTreeMap<i32, PartitionStatus>,
}

impl CoordinatorLeadership {
    /// New metadata: `led` holds (partition, leader epoch) of every partition this shard owns
    /// and this broker leads. Partitions no longer led, or led at another epoch (leadership
    /// went away and came back), are unloaded; new ones start loading.
    pub fn on_metadata(&mut self, led: &[(i32, i32)]) -> Vec<LeadershipAction> {
        let wanted: BTreeMap<i32, i32> = led.iter().copied().collect();
        let mut out = Vec::new();
        let current: Vec<(i32, PartitionStatus)> =
            self.partitions.iter().map(|(p, s)| (*p, *s)).collect();
        for (p, status) in current {
            let epoch = match status {
                PartitionStatus::Loading { epoch } | PartitionStatus::Loaded { epoch } => epoch,
            };
            if wanted.get(&p) != Some(&epoch) {
                self.partitions.remove(&p);
                out.push(LeadershipAction::Unload { partition: p });
            }
        }
        for (p, epoch) in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = self.partitions.entry(p) {
                e.insert(PartitionStatus::Loading { epoch });
                out.push(LeadershipAction::Load {
                    partition: p,
                    epoch,
                });
            }
        }
        out
    }

    /// A load finished. True when the partition is still wanted at that epoch (it becomes
    /// `Loaded`); false when leadership moved meanwhile: the driver discards what it read.
    pub fn on_loaded(&mut self, partition: i32, epoch: i32) -> bool {
        match self.partitions.get_mut(&partition) {
            Some(s) if *s == PartitionStatus::Loading { epoch } => {
                *s = PartitionStatus::Loaded { epoch };
                true
            }
            _ => false,
        }
    }

    /// A load failed: the partition stays unserved (NOT_COORDINATOR) until leadership changes.
    pub fn on_load_failed(&mut self, partition: i32, epoch: i32) {
        if self.partitions.get(&partition) == Some(&PartitionStatus::Loading { epoch }) {
            self.partitions.remove(&partition);
        }
    }

    /// The leader epoch a loaded partition's writes carry (None: not served here).
    pub fn loaded_epoch(&self, partition: i32) -> Option<i32> {
        match self.partitions.get(&partition)? {
            PartitionStatus::Loaded { epoch } => Some(*epoch),
            PartitionStatus::Loading { .. } => None,
        }
    }

    /// The error code for a request to `partition`: None when served here.
    pub fn refusal(&self, partition: i32) -> Option<i16> {
        match self.partitions.get(&partition) {
            Some(PartitionStatus::Loaded { .. }) => None,
            Some(PartitionStatus::Loading { .. }) => Some(COORDINATOR_LOAD_IN_PROGRESS),
            None => Some(NOT_COORDINATOR),
        }
    }
}

pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const NOT_COORDINATOR: i16 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use LeadershipAction::{Load, Unload};

    #[test]
    fn groups_leadership_gain_loads_then_serves() {
        let mut l = CoordinatorLeadership::default();
        assert_eq!(l.refusal(3), Some(NOT_COORDINATOR));
        let acts = l.on_metadata(&[(3, 7)]);
        assert_eq!(
            acts,
            vec![Load {
                partition: 3,
                epoch: 7
            }]
        );
        assert_eq!(l.refusal(3), Some(COORDINATOR_LOAD_IN_PROGRESS));
        assert_eq!(l.loaded_epoch(3), None);
        // The same metadata again (e.g. an ISR change) does not reload.
        assert!(l.on_metadata(&[(3, 7)]).is_empty());
        assert!(l.on_loaded(3, 7));
        assert_eq!(l.refusal(3), None);
        assert_eq!(l.loaded_epoch(3), Some(7));
    }

    #[test]
    fn groups_leadership_loss_unloads() {
        let mut l = CoordinatorLeadership::default();
        l.on_metadata(&[(1, 2), (4, 2)]);
        assert!(l.on_loaded(1, 2));
        assert!(l.on_loaded(4, 2));
        assert_eq!(l.on_metadata(&[(4, 2)]), vec![Unload { partition: 1 }]);
        assert_eq!(l.refusal(1), Some(NOT_COORDINATOR));
        assert_eq!(l.refusal(4), None);
    }

    #[test]
    fn groups_leadership_lost_during_load_discards_the_load() {
        let mut l = CoordinatorLeadership::default();
        l.on_metadata(&[(0, 5)]);
        assert_eq!(l.on_metadata(&[]), vec![Unload { partition: 0 }]);
        assert!(
            !l.on_loaded(0, 5),
            "a load for a lost leadership must be discarded"
        );
        assert_eq!(l.refusal(0), Some(NOT_COORDINATOR));
    }

    #[test]
    fn groups_leadership_new_epoch_reloads() {
        // Leadership moved away and back between two metadata snapshots: the log may have
        // been truncated or extended by the other leader, so the state is rebuilt.
        let mut l = CoordinatorLeadership::default();
        l.on_metadata(&[(2, 1)]);
        assert!(l.on_loaded(2, 1));
        let acts = l.on_metadata(&[(2, 3)]);
        assert_eq!(
            acts,
            vec![
                Unload { partition: 2 },
                Load {
                    partition: 2,
                    epoch: 3
                }
            ]
        );
        // A late completion of the old epoch's load changes nothing.
        assert!(!l.on_loaded(2, 1));
        assert_eq!(l.refusal(2), Some(COORDINATOR_LOAD_IN_PROGRESS));
        assert!(l.on_loaded(2, 3));
        assert_eq!(l.loaded_epoch(2), Some(3));
    }

    #[test]
    fn groups_leadership_failed_load_is_not_served() {
        let mut l = CoordinatorLeadership::default();
        l.on_metadata(&[(6, 4)]);
        l.on_load_failed(6, 4);
        assert_eq!(l.refusal(6), Some(NOT_COORDINATOR));
        // The next metadata for the same leadership retries the load.
        assert_eq!(
            l.on_metadata(&[(6, 4)]),
            vec![Load {
                partition: 6,
                epoch: 4
            }]
        );
    }
}
