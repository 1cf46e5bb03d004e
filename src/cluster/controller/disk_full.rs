//! Brokers whose log dir is below its free-space floor (`tern.log.dir.min.free.bytes`): each
//! heartbeat says whether it is (as Kafka's broker reports offline log dirs), the active
//! controller keeps the last answer in the broker's session, and while it holds every partition
//! the broker leads moves to another unfenced ISR member whose log dir has room (the
//! broker stays in the ISR: as a follower it appends what the floor leaves room for, and falls
//! out after `replica.lag.time.max.ms` when it cannot). A partition with no such member keeps its
//! leader, which refuses produce but serves reads. Elections (fencing, leaderless partitions)
//! prefer ISR members with room, and a preferred-replica election (ElectLeaders,
//! `auto.leader.rebalance.enable`) does not move a leadership to a full broker; once space is
//! back, the same preferred-replica elections bring leaderships back to it. The state is
//! volatile, as sessions are: a new active controller learns it from the next heartbeat.

use std::collections::BTreeSet;

use super::Controller;
use crate::cluster::metadata_log::records::{MetadataRecord, PartitionChangeRecord};

impl Controller {
    /// Records what the heartbeat of `broker_id` said about its log dir; logs the transitions.
    pub(super) fn note_log_dir(&mut self, broker_id: i32, full: bool) {
        let Some(session) = self.sessions.get_mut(&broker_id) else {
            return;
        };
        if session.log_dir_full == full {
            return;
        }
        session.log_dir_full = full;
        if full {
            log::warn!(
                "controller: broker {broker_id} reports its log dir below the free-space floor; its leaderships move to in-sync replicas with room"
            );
        } else {
            log::info!(
                "controller: broker {broker_id} reports room in its log dir again; preferred-replica elections may lead there"
            );
        }
    }

    /// Whether the last heartbeat of `broker_id` said its log dir is below the floor.
    pub fn log_dir_full(&self, broker_id: i32) -> bool {
        self.sessions
            .get(&broker_id)
            .is_some_and(|s| s.log_dir_full)
    }

    /// The brokers whose log dir is below the floor, as far as this controller knows.
    pub(super) fn full_log_dirs(&self) -> BTreeSet<i32> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.log_dir_full)
            .map(|(&b, _)| b)
            .collect()
    }

    /// Leader changes for every partition `broker` leads that has another unfenced ISR member
    /// with room: the first in replica order leads (ISR, ELR and replicas unchanged).
    pub(super) fn moves_off_full_log_dir(&self, broker: i32) -> Vec<MetadataRecord> {
        let full = self.full_log_dirs();
        let mut out = Vec::new();
        for t in self.working.topics.values() {
            for (&partition, p) in &t.partitions {
                if p.leader != broker {
                    continue;
                }
                let Some(&to) = p.replicas.iter().find(|&&b| {
                    b != broker
                        && p.isr.contains(&b)
                        && self.working.is_unfenced(b)
                        && !full.contains(&b)
                }) else {
                    continue;
                };
                log::info!(
                    "controller: {}-{partition}: leadership moves from broker {broker} (log dir below its floor) to {to}",
                    t.name
                );
                out.push(MetadataRecord::PartitionChange(PartitionChangeRecord {
                    topic_id: t.id,
                    partition,
                    leader: Some(to),
                    isr: None,
                    elr: None,
                    replicas: None,
                    ..Default::default()
                }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! The rule: a full broker's leaderships move to ISR members with room, it keeps the ones
    //! nobody else can take, elections prefer brokers with room, preferred-replica elections
    //! skip a full broker and bring leadership back once it has room.

    use std::collections::BTreeMap;

    use uuid::Uuid;

    use crate::cluster::controller::leadership::ElectionType;
    use crate::cluster::controller::{
        BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig, CreateTopic, codes,
    };
    use crate::cluster::metadata_log::image::{MetadataImage, PartitionImage};
    use crate::cluster::metadata_log::records::MetadataRecord;
    use crate::cluster::replication::AlterPartitionRequest;

    struct Harness {
        c: Controller,
        offset: u64,
        now: u64,
        epochs: BTreeMap<i32, i64>,
    }

    impl Harness {
        fn new(cfg: ControllerConfig, brokers: i32) -> Self {
            let mut h = Self {
                c: Controller::new(cfg, MetadataImage::default()),
                offset: 0,
                now: 1_000,
                epochs: BTreeMap::new(),
            };
            let first = h.c.become_active(h.now, "cluster-d");
            h.commit(first);
            for id in 1..=brokers {
                h.register(id);
            }
            h
        }

        fn commit(&mut self, records: Vec<MetadataRecord>) {
            if records.is_empty() {
                return;
            }
            self.offset += 1;
            self.c.apply_committed(self.offset, &records).unwrap();
        }

        fn register(&mut self, id: i32) {
            let req = BrokerRegistration {
                broker_id: id,
                cluster_id: None,
                incarnation_id: Uuid::new_v4(),
                endpoints: Vec::new(),
                rack: None,
            };
            let (epoch, records) = self.c.register_broker(&req, self.now).unwrap();
            self.commit(records);
            self.epochs.insert(id, epoch);
            assert!(!self.heartbeat(id, false, false));
        }

        /// A heartbeat; returns is_fenced.
        fn heartbeat(&mut self, id: i32, full: bool, fence: bool) -> bool {
            let req = BrokerHeartbeat {
                broker_id: id,
                broker_epoch: self.epochs[&id],
                current_metadata_offset: self.offset,
                want_fence: fence,
                want_shutdown: false,
                log_dir_full: full,
            };
            let (reply, records) = self.c.heartbeat(&req, self.now).unwrap();
            self.commit(records);
            reply.is_fenced
        }

        fn create(&mut self, name: &str, assignments: Vec<Vec<i32>>) {
            let t = CreateTopic {
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

        /// The leader's AlterPartition setting the ISR of `name`-`p` to `isr`.
        fn set_isr(&mut self, name: &str, p: i32, isr: &[i32]) {
            let part = self.part(name, p);
            let req = AlterPartitionRequest {
                broker_id: part.leader,
                broker_epoch: self.epochs[&part.leader],
                topic_id: self.c.committed().topic_ids[name],
                partition: p,
                leader_epoch: part.leader_epoch,
                partition_epoch: part.partition_epoch,
                new_isr: isr.iter().map(|&b| (b, self.epochs[&b])).collect(),
            };
            let (_, records) = self.c.alter_partition(&req).unwrap();
            self.commit(records);
        }

        fn tick(&mut self) {
            for b in self.c.tick(self.now) {
                self.commit(b);
            }
        }
    }

    fn no_rebalance() -> ControllerConfig {
        ControllerConfig {
            auto_leader_rebalance_enable: false,
            ..ControllerConfig::default()
        }
    }

    #[test]
    fn a_full_broker_hands_its_leaderships_to_isr_members_with_room() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("t", vec![vec![1, 2, 3], vec![1, 3, 2], vec![2, 1, 3]]);
        h.create("one", vec![vec![1]]);
        let epoch0 = h.part("t", 0).leader_epoch;
        assert!(!h.heartbeat(1, true, false), "a full broker stays unfenced");
        assert!(h.c.log_dir_full(1));
        assert_eq!(h.part("t", 0).leader, 2, "next ISR member in replica order");
        assert_eq!(h.part("t", 0).leader_epoch, epoch0 + 1);
        assert_eq!(h.part("t", 0).isr, vec![1, 2, 3], "it stays in the ISR");
        assert_eq!(h.part("t", 1).leader, 3);
        assert_eq!(h.part("t", 2).leader, 2, "not led by it: untouched");
        assert_eq!(h.part("one", 0).leader, 1, "nobody else: it keeps leading");
        // Further heartbeats while full change nothing.
        let before = h.offset;
        h.heartbeat(1, true, false);
        assert_eq!(h.offset, before);
    }

    #[test]
    fn a_leadership_moves_once_an_isr_member_with_room_exists() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("t", vec![vec![1, 2, 3]]);
        h.set_isr("t", 0, &[1]);
        h.heartbeat(1, true, false);
        assert_eq!(
            h.part("t", 0).leader,
            1,
            "the only ISR member keeps leading"
        );
        // Broker 3 is full too, then both 2 and 3 catch up: the move goes to 2, which has room.
        h.heartbeat(3, true, false);
        h.set_isr("t", 0, &[1, 2, 3]);
        h.heartbeat(1, true, false);
        assert_eq!(h.part("t", 0).leader, 2);
    }

    #[test]
    fn no_move_to_another_full_broker() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("t", vec![vec![1, 2, 3]]);
        h.heartbeat(2, true, false);
        h.heartbeat(1, true, false);
        assert_eq!(h.part("t", 0).leader, 3, "2 is full too: 3 leads");
        h.heartbeat(3, true, false);
        assert_eq!(h.part("t", 0).leader, 3, "all full: the leader stays");
    }

    #[test]
    fn elections_prefer_isr_members_with_room() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("t", vec![vec![1, 2, 3]]);
        h.heartbeat(2, true, false);
        // Broker 1 is fenced (a leader move): 2 is next in replica order but full.
        assert!(h.heartbeat(1, false, true));
        assert_eq!(h.part("t", 0).leader, 3);
        // With every other candidate full, a full one is still elected (reads keep working).
        h.register(1);
        assert_eq!(h.part("t", 0).isr, vec![2, 3]);
        h.heartbeat(3, true, false);
        assert_eq!(h.part("t", 0).leader, 3, "2 is full too: no move");
        // The session of 3 ends: 2 is the only ISR member left, full or not.
        h.c.forget_session(3);
        h.tick();
        let p = h.part("t", 0);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn preferred_elections_skip_a_full_broker_and_bring_leadership_back_after() {
        let cfg = ControllerConfig {
            leader_imbalance_check_interval_ms: 1_000,
            leader_imbalance_per_broker_percentage: 0,
            ..ControllerConfig::default()
        };
        let mut h = Harness::new(cfg, 3);
        h.create("t", vec![vec![1, 2, 3]]);
        h.tick(); // starts the rebalance interval
        h.heartbeat(1, true, false);
        assert_eq!(h.part("t", 0).leader, 2);
        let ask = |h: &mut Harness| {
            let (out, records) =
                h.c.elect_leaders(ElectionType::Preferred, Some(&[("t".to_string(), 0)]))
                    .unwrap();
            h.commit(records);
            out[0].code
        };
        assert_eq!(ask(&mut h), codes::PREFERRED_LEADER_NOT_AVAILABLE);
        // The auto rebalance does not move it back while broker 1 is full.
        h.now += 2_000;
        for b in 1..=3 {
            h.heartbeat(b, b == 1, false);
        }
        h.tick();
        assert_eq!(h.part("t", 0).leader, 2);
        // Space is back: the next rebalance brings leadership home.
        h.now += 2_000;
        for b in 1..=3 {
            h.heartbeat(b, false, false);
        }
        assert!(!h.c.log_dir_full(1));
        assert_eq!(h.part("t", 0).leader, 2, "space back alone moves nothing");
        h.tick();
        assert_eq!(h.part("t", 0).leader, 1);
        // And ElectLeaders PREFERRED works again (nothing to do now).
        assert_eq!(ask(&mut h), codes::ELECTION_NOT_NEEDED);
    }

    #[test]
    fn a_new_active_controller_learns_the_state_from_the_next_heartbeat() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("t", vec![vec![1, 2, 3]]);
        h.heartbeat(1, true, false);
        assert_eq!(h.part("t", 0).leader, 2);
        h.c.resign();
        let none = h.c.become_active(h.now, "cluster-d");
        assert!(none.is_empty());
        assert!(!h.c.log_dir_full(1), "sessions are volatile");
        h.heartbeat(1, true, false);
        assert!(h.c.log_dir_full(1));
    }
}
