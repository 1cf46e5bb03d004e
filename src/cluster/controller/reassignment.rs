//! Partition reassignment (KIP-455): AlterPartitionReassignments (API 45) and
//! ListPartitionReassignments (API 46) as controller decisions. A reassignment to `target`
//! writes the partition with replicas = target followed by the original replicas it drops,
//! `adding_replicas` = target − original and `removing_replicas` = original − target; the
//! added replicas start following (their brokers host the partition from the published
//! metadata), catch up, and join the ISR through the leader's AlterPartition. The change that
//! makes the ISR hold every target replica also completes the move (`PartitionFields::
//! complete_reassignment`, as Kafka's PartitionChangeBuilder): replicas = target, the removing
//! replicas leave the ISR/ELR, and when the leader itself is removed a target ISR member is
//! elected. Cancelling (null replicas) reverts to the original replicas. Everything lives in
//! the metadata log, so a new active controller carries on where the old one stopped.
//!
//! Kafka's codes: UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT (an empty list, a
//! duplicate broker, an unregistered broker, a revert that would need an unclean election),
//! INVALID_REPLICATION_FACTOR (v1 with allow_replication_factor_change=false),
//! NO_REASSIGNMENT_IN_PROGRESS (a cancel of nothing), INVALID_REQUEST (a partition named twice).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{Controller, ControllerError, Decision, codes};
use crate::cluster::metadata_log::image::{MetadataImage, PartitionImage};
use crate::cluster::metadata_log::records::{MetadataRecord, NO_LEADER, PartitionChangeRecord};

/// One partition of an AlterPartitionReassignments: the target replicas, None to cancel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassignmentChange {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

/// A partition's replica fields as a change would leave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PartitionFields {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub elr: Vec<i32>,
    pub leader: i32,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl PartitionFields {
    pub fn of(p: &PartitionImage) -> Self {
        Self {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            elr: p.elr.clone(),
            leader: p.leader,
            adding: p.adding_replicas.clone(),
            removing: p.removing_replicas.clone(),
        }
    }

    fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.removing.contains(b))
            .collect()
    }

    /// Keeps only `replicas` in the ISR and ELR; a leader outside them gives way to the first
    /// unfenced ISR member in replica order (NO_LEADER when none).
    fn restrict_to(&mut self, image: &MetadataImage, replicas: Vec<i32>) {
        self.isr.retain(|b| replicas.contains(b));
        self.elr.retain(|b| replicas.contains(b));
        if !replicas.contains(&self.leader) || !self.isr.contains(&self.leader) {
            self.leader = replicas
                .iter()
                .copied()
                .find(|b| self.isr.contains(b) && image.is_unfenced(*b))
                .unwrap_or(NO_LEADER);
        }
        self.replicas = replicas;
    }

    /// Once every target replica is in the ISR, the reassignment is over: the removing
    /// replicas go, and a removed leader hands over to a target ISR member.
    pub fn complete_reassignment(&mut self, image: &MetadataImage) {
        if self.adding.is_empty() && self.removing.is_empty() {
            return;
        }
        let target = self.target();
        if !target.iter().all(|b| self.isr.contains(b)) {
            return;
        }
        self.restrict_to(image, target);
        self.adding.clear();
        self.removing.clear();
    }

    /// The record that turns `p` into these fields (None: nothing changes).
    pub fn change_from(
        &self,
        topic_id: Uuid,
        partition: i32,
        p: &PartitionImage,
    ) -> Option<PartitionChangeRecord> {
        let c = PartitionChangeRecord {
            topic_id,
            partition,
            replicas: (self.replicas != p.replicas).then(|| self.replicas.clone()),
            isr: (self.isr != p.isr).then(|| self.isr.clone()),
            elr: (self.elr != p.elr).then(|| self.elr.clone()),
            leader: (self.leader != p.leader).then_some(self.leader),
            adding_replicas: (self.adding != p.adding_replicas).then(|| self.adding.clone()),
            removing_replicas: (self.removing != p.removing_replicas)
                .then(|| self.removing.clone()),
        };
        let unchanged = c.replicas.is_none()
            && c.isr.is_none()
            && c.elr.is_none()
            && c.leader.is_none()
            && c.adding_replicas.is_none()
            && c.removing_replicas.is_none();
        (!unchanged).then_some(c)
    }
}

fn refuse(code: i16, message: impl Into<String>) -> ControllerError {
    ControllerError::new(code, message)
}

impl Controller {
    /// AlterPartitionReassignments: one result per change, in order, and the records (one
    /// batch) that start, replace, complete or cancel the reassignments.
    pub fn alter_partition_reassignments(
        &mut self,
        changes: &[ReassignmentChange],
        allow_replication_factor_change: bool,
    ) -> Decision<(Vec<Decision<()>>, Vec<MetadataRecord>)> {
        self.require_active()?;
        let mut seen = BTreeSet::new();
        let mut results = Vec::new();
        let mut records = Vec::new();
        for c in changes {
            if !seen.insert((c.topic.clone(), c.partition)) {
                results.push(Err(refuse(
                    codes::INVALID_REQUEST,
                    format!("{}-{} appears twice in the request", c.topic, c.partition),
                )));
                continue;
            }
            match self.reassign_one(c, allow_replication_factor_change) {
                Ok(record) => {
                    records.extend(record.map(MetadataRecord::PartitionChange));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        Ok((results, self.stage(records)?))
    }

    fn reassign_one(
        &self,
        c: &ReassignmentChange,
        allow_replication_factor_change: bool,
    ) -> Decision<Option<PartitionChangeRecord>> {
        let image = &self.working;
        let (topic_id, p) = image
            .topic_by_name(&c.topic)
            .and_then(|t| t.partitions.get(&c.partition).map(|p| (t.id, p)))
            .ok_or_else(|| {
                refuse(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("{}-{} does not exist", c.topic, c.partition),
                )
            })?;
        let original = p.original_replicas();
        let mut f = PartitionFields::of(p);
        match &c.replicas {
            None => {
                if !p.reassigning() {
                    return Err(refuse(
                        codes::NO_REASSIGNMENT_IN_PROGRESS,
                        format!(
                            "no reassignment of {}-{} is in progress",
                            c.topic, c.partition
                        ),
                    ));
                }
                f.restrict_to(image, original);
                if f.leader == NO_LEADER {
                    return Err(refuse(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "Unable to revert partition assignment for {}-{} because it would require an unclean leader election.",
                            c.topic, c.partition
                        ),
                    ));
                }
                f.adding.clear();
                f.removing.clear();
            }
            Some(target) => {
                if target.is_empty() {
                    return Err(refuse(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        "The manual partition assignment includes an empty replica list.",
                    ));
                }
                let mut distinct = BTreeSet::new();
                if let Some(b) = target.iter().find(|b| !distinct.insert(**b)) {
                    return Err(refuse(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "The manual partition assignment includes the broker {b} more than once."
                        ),
                    ));
                }
                if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
                    return Err(refuse(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "The manual partition assignment includes broker {b}, but no such broker is registered."
                        ),
                    ));
                }
                if !allow_replication_factor_change && target.len() != original.len() {
                    return Err(refuse(
                        codes::INVALID_REPLICATION_FACTOR,
                        format!(
                            "The replication factor is changed from {} to {} but allowReplicationFactorChange is false",
                            original.len(),
                            target.len()
                        ),
                    ));
                }
                let mut replicas = target.clone();
                replicas.extend(original.iter().copied().filter(|b| !target.contains(b)));
                f.restrict_to(image, replicas);
                if f.leader == NO_LEADER && p.leader != NO_LEADER {
                    return Err(refuse(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "moving {}-{} to {target:?} would leave it without an in-sync leader",
                            c.topic, c.partition
                        ),
                    ));
                }
                f.adding = target
                    .iter()
                    .copied()
                    .filter(|b| !original.contains(b))
                    .collect();
                f.removing = original
                    .iter()
                    .copied()
                    .filter(|b| !target.contains(b))
                    .collect();
                f.complete_reassignment(image);
            }
        }
        let record = f.change_from(topic_id, c.partition, p);
        if record.is_some() {
            log::info!(
                "controller: reassignment of {}-{}: replicas {:?} -> {:?} (adding {:?}, removing {:?}, ISR {:?}, leader {})",
                c.topic,
                c.partition,
                p.replicas,
                f.replicas,
                f.adding,
                f.removing,
                f.isr,
                f.leader
            );
        }
        Ok(record)
    }

    /// ListPartitionReassignments: the reassignments in progress among `partitions` (None:
    /// all). Partitions that do not exist or are not moving are left out, as in Kafka.
    pub fn list_partition_reassignments(
        &self,
        partitions: Option<&[(String, i32)]>,
    ) -> Decision<Vec<OngoingReassignment>> {
        self.require_active()?;
        let wanted: Option<BTreeSet<(&str, i32)>> =
            partitions.map(|l| l.iter().map(|(t, p)| (t.as_str(), *p)).collect());
        let mut out = Vec::new();
        for t in self.working.topics.values() {
            for (&partition, p) in &t.partitions {
                if !p.reassigning()
                    || wanted
                        .as_ref()
                        .is_some_and(|w| !w.contains(&(t.name.as_str(), partition)))
                {
                    continue;
                }
                out.push(OngoingReassignment {
                    topic: t.name.clone(),
                    partition,
                    replicas: p.replicas.clone(),
                    adding_replicas: p.adding_replicas.clone(),
                    removing_replicas: p.removing_replicas.clone(),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of reassignments: adding replicas and completing once they are in the ISR,
    //! moving the leader off a removed replica, cancelling, the error codes, listing, and a
    //! controller failover in the middle of a move.

    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::controller::{BrokerHeartbeat, BrokerRegistration, ControllerConfig};
    use crate::cluster::metadata_log::image::MetadataImage;
    use crate::cluster::replication::{AlterPartitionRequest, PartitionState};

    /// (topic, partition, replicas, adding, removing) of a move in progress.
    type Listed = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

    struct Harness {
        c: Controller,
        /// Every committed entry, for a second controller to replay.
        log: Vec<Vec<MetadataRecord>>,
        epochs: BTreeMap<i32, i64>,
    }

    impl Harness {
        fn new(brokers: i32) -> Self {
            let cfg = ControllerConfig {
                auto_leader_rebalance_enable: false,
                ..ControllerConfig::default()
            };
            let mut h = Self {
                c: Controller::new(cfg, MetadataImage::default()),
                log: Vec::new(),
                epochs: BTreeMap::new(),
            };
            let first = h.c.become_active(1_000, "cluster-r");
            h.commit(first);
            for id in 1..=brokers {
                let req = BrokerRegistration {
                    broker_id: id,
                    cluster_id: None,
                    incarnation_id: Uuid::new_v4(),
                    endpoints: Vec::new(),
                    rack: None,
                };
                let (epoch, records) = h.c.register_broker(&req, 1_000).unwrap();
                h.commit(records);
                h.epochs.insert(id, epoch);
                let hb = BrokerHeartbeat {
                    broker_id: id,
                    broker_epoch: epoch,
                    current_metadata_offset: h.log.len() as u64,
                    want_fence: false,
                    want_shutdown: false,
                    log_dir_full: false,
                };
                let (reply, records) = h.c.heartbeat(&hb, 1_000).unwrap();
                h.commit(records);
                assert!(!reply.is_fenced);
            }
            h
        }

        fn commit(&mut self, records: Vec<MetadataRecord>) {
            if records.is_empty() {
                return;
            }
            self.log.push(records.clone());
            self.c
                .apply_committed(self.log.len() as u64, &records)
                .unwrap();
        }

        fn create(&mut self, name: &str, assignments: Vec<Vec<i32>>) {
            let t = crate::cluster::controller::CreateTopic {
                name: name.into(),
                topic_id: Uuid::new_v4(),
                num_partitions: -1,
                replication_factor: -1,
                assignments,
                ..Default::default()
            };
            let (results, records) = self.c.create_topics(&[t], false).unwrap();
            assert!(results[0].is_ok(), "{results:?}");
            self.commit(records);
        }

        fn part(&self, name: &str, p: i32) -> PartitionImage {
            self.c.committed().topic_by_name(name).unwrap().partitions[&p].clone()
        }

        /// Reassigns one partition; the result code (0 = accepted).
        fn reassign(&mut self, name: &str, p: i32, replicas: Option<Vec<i32>>) -> i16 {
            let change = ReassignmentChange {
                topic: name.into(),
                partition: p,
                replicas,
            };
            let (results, records) = self
                .c
                .alter_partition_reassignments(&[change], true)
                .unwrap();
            self.commit(records);
            results[0].as_ref().map_or_else(|e| e.code, |_| 0)
        }

        /// The leader's AlterPartition adding `joiner` to the ISR (it caught up).
        fn join_isr(&mut self, name: &str, p: i32, joiner: i32) -> PartitionState {
            let part = self.part(name, p);
            let mut new_isr: Vec<(i32, i64)> =
                part.isr.iter().map(|&b| (b, self.epochs[&b])).collect();
            new_isr.push((joiner, self.epochs[&joiner]));
            let req = AlterPartitionRequest {
                broker_id: part.leader,
                broker_epoch: self.epochs[&part.leader],
                topic_id: self.c.committed().topic_ids[name],
                partition: p,
                leader_epoch: part.leader_epoch,
                partition_epoch: part.partition_epoch,
                new_isr,
            };
            let (state, records) = self.c.alter_partition(&req).unwrap();
            self.commit(records);
            state
        }

        fn listed(&self) -> Vec<Listed> {
            self.c
                .list_partition_reassignments(None)
                .unwrap()
                .into_iter()
                .map(|r| {
                    (
                        r.topic,
                        r.partition,
                        r.replicas,
                        r.adding_replicas,
                        r.removing_replicas,
                    )
                })
                .collect()
        }
    }

    #[test]
    fn adding_replicas_follow_and_the_move_completes_once_they_are_in_the_isr() {
        let mut h = Harness::new(3);
        h.create("a", vec![vec![1]]);
        assert_eq!(h.reassign("a", 0, Some(vec![1, 2, 3])), 0);
        let p = h.part("a", 0);
        assert_eq!(p.replicas, vec![1, 2, 3]);
        assert_eq!(p.adding_replicas, vec![2, 3]);
        assert!(p.removing_replicas.is_empty());
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
        assert_eq!(
            h.listed(),
            vec![("a".into(), 0, vec![1, 2, 3], vec![2, 3], vec![])]
        );
        // One new replica caught up: still in progress.
        h.join_isr("a", 0, 2);
        let p = h.part("a", 0);
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(
            p.adding_replicas,
            vec![2, 3],
            "adding replicas stay listed until the move completes, as in Kafka"
        );
        // The last one: the same change completes the move.
        let state = h.join_isr("a", 0, 3);
        let p = h.part("a", 0);
        assert!(!p.reassigning());
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![1, 2, 3], vec![1, 2, 3])
        );
        assert_eq!(state.isr, vec![1, 2, 3]);
        assert_eq!(p.leader, 1);
        assert!(h.listed().is_empty());
    }

    #[test]
    fn removing_the_leader_elects_a_target_replica_when_the_move_completes() {
        let mut h = Harness::new(3);
        h.create("b", vec![vec![1, 2]]);
        let epoch = h.part("b", 0).leader_epoch;
        assert_eq!(h.reassign("b", 0, Some(vec![3, 2])), 0);
        let p = h.part("b", 0);
        assert_eq!(
            p.replicas,
            vec![3, 2, 1],
            "target first, then the removed ones"
        );
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![3], vec![1])
        );
        assert_eq!(p.leader, 1, "the leader stays until the move completes");
        let state = h.join_isr("b", 0, 3);
        let p = h.part("b", 0);
        assert_eq!(p.replicas, vec![3, 2]);
        assert!(!p.reassigning());
        assert!(!p.isr.contains(&1));
        assert_eq!(p.leader, 3, "first target replica in the ISR");
        assert_eq!(p.leader_epoch, epoch + 1);
        assert_eq!((state.leader, state.leader_epoch), (3, epoch + 1));
    }

    #[test]
    fn a_pure_removal_within_the_isr_completes_at_once() {
        let mut h = Harness::new(3);
        h.create("c", vec![vec![1, 2, 3]]);
        assert_eq!(h.reassign("c", 0, Some(vec![2, 3])), 0);
        let p = h.part("c", 0);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![2, 3], vec![2, 3])
        );
        assert_eq!(p.leader, 2);
        assert!(!p.reassigning());
        // The same target again: nothing to do, no record.
        let before = h.log.len();
        assert_eq!(h.reassign("c", 0, Some(vec![2, 3])), 0);
        assert_eq!(h.log.len(), before);
    }

    #[test]
    fn cancel_reverts_to_the_original_replicas() {
        let mut h = Harness::new(4);
        h.create("d", vec![vec![1, 2]]);
        assert_eq!(h.reassign("d", 0, Some(vec![2, 3])), 0);
        assert_eq!(h.part("d", 0).replicas, vec![2, 3, 1]);
        assert_eq!(h.reassign("d", 0, None), 0);
        let p = h.part("d", 0);
        // Kafka's revert keeps the merged order minus the adding replicas: [2, 1], so the
        // preferred replica may differ from before the move; the leader stays.
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2, 1], vec![1, 2], 1)
        );
        assert!(!p.reassigning());
        assert_eq!(
            h.reassign("d", 0, None),
            codes::NO_REASSIGNMENT_IN_PROGRESS,
            "nothing to cancel"
        );
        // A new target replaces one in progress, from the original replicas: a replica the
        // first move added (already in the ISR) goes again.
        assert_eq!(h.reassign("d", 0, Some(vec![3, 4])), 0);
        h.join_isr("d", 0, 3);
        assert_eq!(h.part("d", 0).isr, vec![1, 2, 3]);
        assert_eq!(h.reassign("d", 0, Some(vec![1, 2])), 0);
        let p = h.part("d", 0);
        assert_eq!(
            p.replicas,
            vec![1, 2],
            "back to the original: nothing left to move"
        );
        assert!(!p.reassigning());
        assert_eq!(p.isr, vec![1, 2]);
    }

    #[test]
    fn invalid_reassignments_get_kafkas_codes() {
        let mut h = Harness::new(3);
        h.create("e", vec![vec![1, 2]]);
        assert_eq!(
            h.reassign("e", 0, Some(vec![])),
            codes::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(
            h.reassign("e", 0, Some(vec![1, 1])),
            codes::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(
            h.reassign("e", 0, Some(vec![1, 9])),
            codes::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(
            h.reassign("e", 5, Some(vec![1])),
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            h.reassign("nope", 0, Some(vec![1])),
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert!(!h.part("e", 0).reassigning());
        // v1 without replication factor changes.
        let change = |replicas| ReassignmentChange {
            topic: "e".into(),
            partition: 0,
            replicas: Some(replicas),
        };
        let (results, records) =
            h.c.alter_partition_reassignments(&[change(vec![1, 2, 3]), change(vec![2, 3])], false)
                .unwrap();
        assert_eq!(
            results[0].as_ref().unwrap_err().code,
            codes::INVALID_REPLICATION_FACTOR
        );
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            codes::INVALID_REQUEST,
            "named twice"
        );
        assert!(records.is_empty());
        let (results, records) =
            h.c.alter_partition_reassignments(&[change(vec![2, 3])], false)
                .unwrap();
        assert!(results[0].is_ok());
        h.commit(records);
        // Not the active controller.
        h.c.resign();
        assert_eq!(
            h.c.alter_partition_reassignments(&[change(vec![1, 2])], true)
                .unwrap_err()
                .code,
            codes::NOT_CONTROLLER
        );
        assert_eq!(
            h.c.list_partition_reassignments(None).unwrap_err().code,
            codes::NOT_CONTROLLER
        );
    }

    #[test]
    fn a_new_controller_carries_on_a_reassignment_from_the_log() {
        let mut h = Harness::new(3);
        h.create("f", vec![vec![1, 2], vec![2, 3]]);
        assert_eq!(h.reassign("f", 0, Some(vec![3, 2])), 0);
        assert_eq!(h.reassign("f", 1, Some(vec![1, 2, 3])), 0);
        // Another node replays the committed log and takes over.
        let mut next = Controller::new(h.c.config().clone(), MetadataImage::default());
        for (i, e) in h.log.iter().enumerate() {
            next.apply_committed(i as u64 + 1, e).unwrap();
        }
        h.c.resign();
        next.become_active(5_000, "unused");
        h.c = next;
        let listed = h.listed();
        assert_eq!(
            listed,
            vec![
                ("f".into(), 0, vec![3, 2, 1], vec![3], vec![1]),
                ("f".into(), 1, vec![1, 2, 3], vec![1], vec![]),
            ]
        );
        h.join_isr("f", 0, 3);
        let p = h.part("f", 0);
        assert_eq!((p.replicas.clone(), p.leader), (vec![3, 2], 3));
        assert_eq!(h.reassign("f", 1, None), 0, "cancel on the new controller");
        assert_eq!(h.part("f", 1).replicas, vec![2, 3]);
        assert!(h.listed().is_empty());
        // A snapshot of the image keeps a move in progress too.
        assert_eq!(h.reassign("f", 1, Some(vec![1, 3])), 0);
        let image = MetadataImage::from_snapshot(&h.c.committed().to_snapshot()).unwrap();
        let p = &image.topic_by_name("f").unwrap().partitions[&1];
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![1], vec![2])
        );
    }
}
