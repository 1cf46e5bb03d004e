//! Unit tests of the controller state machine: registration and broker epochs, heartbeats,
//! fencing (ISR removal and KIP-966 election before the fence record), unfencing after catch-up,
//! placement (spread, racks, INVALID_REPLICATION_FACTOR), producer-id blocks, failover.

use uuid::Uuid;

use super::*;
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{MetadataRecord, NO_LEADER};

/// A controller that commits its own batches at once (a one-node quorum).
struct Harness {
    c: Controller,
    offset: u64,
    now: u64,
}

impl Harness {
    fn new(cfg: ControllerConfig) -> Self {
        let mut h = Self {
            c: Controller::new(cfg, MetadataImage::default()),
            offset: 0,
            now: 1_000,
        };
        let first = h.c.become_active(h.now, "cluster-a");
        h.commit(first);
        h
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) -> u64 {
        if records.is_empty() {
            return self.offset;
        }
        self.offset += 1;
        self.c
            .apply_committed(self.offset, &records)
            .expect("applies");
        self.offset
    }

    fn register(&mut self, id: i32, rack: Option<&str>) -> i64 {
        let req = BrokerRegistration {
            broker_id: id,
            cluster_id: None,
            incarnation_id: Uuid::from_u128(id as u128),
            endpoints: Vec::new(),
            rack: rack.map(str::to_string),
        };
        let (epoch, records) = self.c.register_broker(&req, self.now).unwrap();
        self.commit(records);
        epoch
    }

    fn heartbeat(&mut self, id: i32, epoch: i64) -> HeartbeatReply {
        let req = BrokerHeartbeat {
            broker_id: id,
            broker_epoch: epoch,
            current_metadata_offset: self.offset,
            want_fence: false,
            want_shutdown: false,
            log_dir_full: false,
        };
        let (reply, records) = self.c.heartbeat(&req, self.now).unwrap();
        self.commit(records);
        reply
    }

    /// Registers and unfences brokers 1..=n (racks optional), returning their epochs.
    fn brokers(&mut self, racks: &[Option<&str>]) -> Vec<i64> {
        let epochs: Vec<i64> = racks
            .iter()
            .enumerate()
            .map(|(i, r)| self.register(i as i32 + 1, *r))
            .collect();
        for (i, e) in epochs.iter().enumerate() {
            assert!(!self.heartbeat(i as i32 + 1, *e).is_fenced);
        }
        epochs
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> Decision<CreatedTopic> {
        let t = CreateTopic {
            name: name.into(),
            topic_id: Uuid::from_u128(0xabc0 + self.offset as u128),
            num_partitions: partitions,
            replication_factor: rf,
            ..Default::default()
        };
        let (mut results, records) = self.c.create_topics(&[t], false).unwrap();
        self.commit(records);
        results.remove(0)
    }
}

fn partitions(
    image: &MetadataImage,
    name: &str,
) -> Vec<crate::cluster::metadata_log::image::PartitionImage> {
    image
        .topic_by_name(name)
        .unwrap()
        .partitions
        .values()
        .cloned()
        .collect()
}

#[test]
fn cluster_controller_registration_epochs_and_unfence_after_catch_up() {
    let mut h = Harness::new(ControllerConfig::default());
    assert_eq!(h.c.committed().cluster_id.as_deref(), Some("cluster-a"));
    let e1 = h.register(1, None);
    let e2 = h.register(2, None);
    assert!(e2 > e1, "broker epochs grow: {e1} {e2}");
    assert!(
        h.c.committed().brokers[&1].fenced,
        "a new registration starts fenced"
    );
    // A heartbeat from behind the registration's offset does not unfence.
    let behind = BrokerHeartbeat {
        broker_id: 1,
        broker_epoch: e1,
        current_metadata_offset: h.offset - 2,
        want_fence: false,
        want_shutdown: false,
        log_dir_full: false,
    };
    let (reply, records) = h.c.heartbeat(&behind, h.now).unwrap();
    assert!(records.is_empty() && reply.is_fenced && !reply.is_caught_up);
    // Caught up: unfenced.
    let reply = h.heartbeat(1, e1);
    assert!(reply.is_caught_up && !reply.is_fenced);
    assert!(!h.c.committed().brokers[&1].fenced);
    // Stale epoch and unknown broker are refused with Kafka's codes.
    let stale = BrokerHeartbeat {
        broker_epoch: e1 - 1,
        ..behind
    };
    assert_eq!(
        h.c.heartbeat(&stale, h.now).unwrap_err().code,
        codes::STALE_BROKER_EPOCH
    );
    let unknown = BrokerHeartbeat {
        broker_id: 9,
        ..behind
    };
    assert_eq!(
        h.c.heartbeat(&unknown, h.now).unwrap_err().code,
        codes::BROKER_ID_NOT_REGISTERED
    );
    // Another process with the same node.id while the first is alive: refused.
    let dup = BrokerRegistration {
        broker_id: 1,
        cluster_id: None,
        incarnation_id: Uuid::from_u128(999),
        endpoints: Vec::new(),
        rack: None,
    };
    assert_eq!(
        h.c.register_broker(&dup, h.now).unwrap_err().code,
        codes::DUPLICATE_BROKER_REGISTRATION
    );
    // A broker of another cluster: refused.
    let other = BrokerRegistration {
        cluster_id: Some("cluster-b".into()),
        broker_id: 5,
        ..dup.clone()
    };
    assert_eq!(
        h.c.register_broker(&other, h.now).unwrap_err().code,
        codes::INCONSISTENT_CLUSTER_ID
    );
    // Once its session expired, a restart (new incarnation) registers with a new epoch.
    h.now += 10_000;
    let fenced = h.c.tick(h.now);
    assert_eq!(
        fenced.len(),
        1,
        "the unfenced silent broker is fenced (2 never was unfenced)"
    );
    for b in fenced {
        h.commit(b);
    }
    let (e1b, records) = h.c.register_broker(&dup, h.now).unwrap();
    h.commit(records);
    assert!(e1b > e2);
}

#[test]
fn cluster_controller_fencing_removes_from_isr_and_elects_before_fence() {
    let mut h = Harness::new(ControllerConfig {
        min_insync_replicas: 2,
        ..Default::default()
    });
    let epochs = h.brokers(&[None, None, None]);
    h.create("t", 6, 3).unwrap();
    let led_by_1 = partitions(h.c.committed(), "t")
        .iter()
        .filter(|p| p.leader == 1)
        .count();
    assert_eq!(led_by_1, 2);
    // Brokers 2 and 3 keep heartbeating; broker 1 goes silent past its session.
    h.now += 5_000;
    h.heartbeat(2, epochs[1]);
    h.heartbeat(3, epochs[2]);
    h.now += 5_000;
    let batches = h.c.tick(h.now);
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    // Every partition change comes before the fence record, which is last.
    assert!(matches!(
        batch.last(),
        Some(MetadataRecord::FenceBroker { broker_id: 1, .. })
    ));
    assert_eq!(
        batch
            .iter()
            .filter(|r| matches!(r, MetadataRecord::PartitionChange(_)))
            .count(),
        6
    );
    let before = partitions(h.c.committed(), "t");
    h.commit(batch.clone());
    let after = partitions(h.c.committed(), "t");
    for (b, a) in before.iter().zip(&after) {
        assert!(!a.isr.contains(&1), "{a:?}");
        assert_eq!(a.isr.len(), 2);
        assert_eq!(a.partition_epoch, b.partition_epoch + 1);
        if b.leader == 1 {
            // The new leader is the next ISR member in replica order; the epoch moves on.
            let next = *b.replicas.iter().find(|&&r| r != 1).unwrap();
            assert_eq!(a.leader, next);
            assert_eq!(a.leader_epoch, b.leader_epoch + 1);
        } else {
            assert_eq!((a.leader, a.leader_epoch), (b.leader, b.leader_epoch));
        }
    }
    assert!(h.c.committed().brokers[&1].fenced);
    // Fence 2 as well: the ISR drops below min.insync.replicas=2, so 2 joins the ELR.
    h.now += 5_000;
    h.heartbeat(3, epochs[2]);
    h.now += 5_000;
    for b in h.c.tick(h.now) {
        h.commit(b);
    }
    for p in partitions(h.c.committed(), "t") {
        assert_eq!((p.isr.as_slice(), p.leader), (&[3][..], 3));
        assert_eq!(p.elr, vec![2]);
    }
    // Fence 3: no ISR member left, no unfenced ELR member: no leader; ISR empty, ELR [2, 3].
    h.now += 10_000;
    for b in h.c.tick(h.now) {
        h.commit(b);
    }
    for p in partitions(h.c.committed(), "t") {
        assert_eq!(p.leader, NO_LEADER);
        assert!(p.isr.is_empty());
        assert_eq!(p.elr, vec![2, 3]);
    }
    // Broker 3 comes back and catches up: it is unfenced and elected from the ELR.
    let e3 = h.register(3, None);
    let before = partitions(h.c.committed(), "t");
    assert!(!h.heartbeat(3, e3).is_fenced);
    for (p, b) in partitions(h.c.committed(), "t").into_iter().zip(&before) {
        assert_eq!(
            (p.leader, p.isr.as_slice(), p.elr.as_slice()),
            (3, &[3][..], &[2][..])
        );
        assert_eq!(p.leader_epoch, b.leader_epoch + 1);
    }
}

#[test]
fn cluster_controller_placement_racks_and_replication_factor() {
    let mut h = Harness::new(ControllerConfig {
        default_replication_factor: 2,
        default_partitions: 4,
        ..Default::default()
    });
    h.brokers(&[
        Some("az1"),
        Some("az1"),
        Some("az2"),
        Some("az2"),
        Some("az3"),
        Some("az3"),
    ]);
    let created = h.create("racked", 12, 3).unwrap();
    assert_eq!(
        (created.num_partitions, created.replication_factor),
        (12, 3)
    );
    let rack = |b: i32| (b + 1) / 2; // 1,2 -> 1; 3,4 -> 2; 5,6 -> 3
    let parts = partitions(h.c.committed(), "racked");
    for p in &parts {
        let mut racks: Vec<i32> = p.replicas.iter().map(|&b| rack(b)).collect();
        racks.sort();
        racks.dedup();
        assert_eq!(racks.len(), 3, "{p:?}");
        assert_eq!((p.leader, &p.isr), (p.replicas[0], &p.replicas));
    }
    let mut leaders = std::collections::BTreeMap::<i32, usize>::new();
    for p in &parts {
        *leaders.entry(p.leader).or_default() += 1;
    }
    assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");
    // -1 takes the defaults.
    let d = h.create("defaults", -1, -1).unwrap();
    assert_eq!((d.num_partitions, d.replication_factor), (4, 2));
    // Factor above the unfenced brokers, zero, bad names, duplicates.
    let e = h.create("big", 1, 7).unwrap_err();
    assert_eq!(e.code, codes::INVALID_REPLICATION_FACTOR);
    assert!(e.message.contains("only 6 broker(s)"), "{}", e.message);
    assert_eq!(
        h.create("zero", 1, 0).unwrap_err().code,
        codes::INVALID_REPLICATION_FACTOR
    );
    assert_eq!(
        h.create("racked", 1, 1).unwrap_err().code,
        codes::TOPIC_ALREADY_EXISTS
    );
    assert_eq!(
        h.create("bad/name", 1, 1).unwrap_err().code,
        codes::INVALID_TOPIC_EXCEPTION
    );
    assert_eq!(
        h.create("nopart", 0, 1).unwrap_err().code,
        codes::INVALID_PARTITIONS
    );
    // Explicit assignment.
    let t = CreateTopic {
        name: "manual".into(),
        topic_id: Uuid::from_u128(77),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![vec![2, 4], vec![4, 6]],
        ..Default::default()
    };
    let (res, records) = h.c.create_topics(std::slice::from_ref(&t), false).unwrap();
    assert!(res[0].is_ok());
    h.commit(records);
    assert_eq!(
        partitions(h.c.committed(), "manual")[1].replicas,
        vec![4, 6]
    );
    let bad = CreateTopic {
        name: "manual2".into(),
        topic_id: Uuid::from_u128(78),
        assignments: vec![vec![2, 9]],
        ..t.clone()
    };
    let (res, _) = h.c.create_topics(&[bad], false).unwrap();
    assert_eq!(
        res[0].as_ref().unwrap_err().code,
        codes::INVALID_REPLICA_ASSIGNMENT
    );
    // validate_only writes nothing.
    let v = CreateTopic {
        name: "dry".into(),
        topic_id: Uuid::from_u128(79),
        num_partitions: 2,
        replication_factor: 2,
        ..Default::default()
    };
    let (res, records) = h.c.create_topics(&[v], true).unwrap();
    assert!(res[0].is_ok() && records.is_empty());
    // CreatePartitions keeps the factor and the spread; shrinking is refused.
    let records =
        h.c.create_partitions(
            &CreatePartitions {
                name: "racked".into(),
                count: 18,
                assignments: vec![],
            },
            false,
        )
        .unwrap();
    h.commit(records);
    let parts = partitions(h.c.committed(), "racked");
    assert_eq!(parts.len(), 18);
    assert!(parts.iter().all(|p| p.replicas.len() == 3));
    let e =
        h.c.create_partitions(
            &CreatePartitions {
                name: "racked".into(),
                count: 3,
                assignments: vec![],
            },
            false,
        )
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_PARTITIONS);
    let e =
        h.c.create_partitions(
            &CreatePartitions {
                name: "nope".into(),
                count: 3,
                assignments: vec![],
            },
            false,
        )
        .unwrap_err();
    assert_eq!(e.code, codes::UNKNOWN_TOPIC_OR_PARTITION);
    // Delete.
    let (_, records) = h.c.delete_topic("defaults").unwrap();
    h.commit(records);
    assert!(h.c.committed().topic_by_name("defaults").is_none());
}

#[test]
fn cluster_controller_replication_factor_counts_only_unfenced_brokers() {
    let mut h = Harness::new(ControllerConfig::default());
    let epochs = h.brokers(&[None, None, None]);
    h.now += 5_000;
    h.heartbeat(1, epochs[0]);
    h.heartbeat(2, epochs[1]);
    h.now += 5_000;
    for b in h.c.tick(h.now) {
        h.commit(b);
    }
    let e = h.create("t", 1, 3).unwrap_err();
    assert_eq!(e.code, codes::INVALID_REPLICATION_FACTOR);
    assert!(h.create("t", 1, 2).is_ok());
}

#[test]
fn cluster_controller_producer_id_blocks_never_overlap() {
    let mut h = Harness::new(ControllerConfig {
        producer_id_block_size: 100,
        ..Default::default()
    });
    let epochs = h.brokers(&[None, None]);
    let mut blocks = Vec::new();
    for i in 0..4 {
        let b = (i % 2) as usize;
        let (block, records) = h.c.allocate_producer_ids(b as i32 + 1, epochs[b]).unwrap();
        h.commit(records);
        blocks.push(block);
    }
    assert_eq!(blocks, vec![(0, 100), (100, 100), (200, 100), (300, 100)]);
    assert_eq!(h.c.committed().next_producer_id, 400);
    assert_eq!(
        h.c.allocate_producer_ids(1, epochs[0] + 10)
            .unwrap_err()
            .code,
        codes::STALE_BROKER_EPOCH
    );
}

#[test]
fn cluster_controller_failover_forgets_uncommitted_and_restarts_sessions() {
    let mut h = Harness::new(ControllerConfig::default());
    h.brokers(&[None, None]);
    // An uncommitted decision is visible to the next decision, then lost on resign.
    let t = CreateTopic {
        name: "pending".into(),
        topic_id: Uuid::from_u128(5),
        num_partitions: 1,
        replication_factor: 1,
        ..Default::default()
    };
    let (_, records) = h.c.create_topics(&[t], false).unwrap();
    assert!(!records.is_empty());
    assert!(h.c.image().topic_by_name("pending").is_some());
    assert!(h.c.committed().topic_by_name("pending").is_none());
    h.c.resign();
    assert!(h.c.image().topic_by_name("pending").is_none());
    assert_eq!(
        h.c.create_topics(&[], false).unwrap_err().code,
        codes::NOT_CONTROLLER
    );
    assert!(
        h.c.tick(h.now + 60_000).is_empty(),
        "a standby fences nobody"
    );
    // A new term: everyone gets a full session from now, so nobody is fenced at once.
    h.now += 60_000;
    assert!(
        h.c.become_active(h.now, "ignored").is_empty(),
        "the cluster id is already set"
    );
    assert!(h.c.tick(h.now + 8_000).is_empty());
    assert_eq!(h.c.tick(h.now + 9_000).len(), 2);
}

#[test]
fn cluster_image_snapshot_round_trips() {
    let mut h = Harness::new(ControllerConfig::default());
    h.brokers(&[Some("r1"), None]);
    h.create("a", 3, 2).unwrap();
    let image = h.c.committed().clone();
    let restored = MetadataImage::from_snapshot(&image.to_snapshot()).unwrap();
    assert_eq!(restored, image);
    let mut bytes = image.to_snapshot();
    bytes[0] = 9;
    assert!(MetadataImage::from_snapshot(&bytes).is_err());
    // A controller started from the snapshot decides on it.
    let mut c = Controller::new(ControllerConfig::default(), restored);
    c.become_active(0, "x");
    assert_eq!(c.image().topic_by_name("a").unwrap().partitions.len(), 3);
}

#[test]
fn cluster_alter_partition_accepts_only_the_current_partition_epoch_and_eligible_members() {
    use crate::cluster::replication::{AlterPartitionRequest, codes as rcodes};
    let mut h = Harness::new(ControllerConfig {
        min_insync_replicas: 2,
        ..Default::default()
    });
    let epochs = h.brokers(&[None, None, None]);
    h.create("t", 1, 3).unwrap();
    let topic_id = h.c.image().topic_by_name("t").unwrap().id;
    let p = partitions(h.c.image(), "t").remove(0);
    let leader = p.leader;
    let epoch_of = |b: i32| epochs[b as usize - 1];
    let others: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|&b| b != leader)
        .collect();
    let req = |isr: &[i32], partition_epoch: i32| AlterPartitionRequest {
        broker_id: leader,
        broker_epoch: epoch_of(leader),
        topic_id,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch,
        new_isr: isr.iter().map(|&b| (b, epoch_of(b))).collect(),
    };
    // Shrink to {leader, others[0]}: accepted, partition epoch bumps, leader epoch does not.
    let (state, records) =
        h.c.alter_partition(&req(&[leader, others[0]], p.partition_epoch))
            .unwrap();
    h.commit(records);
    let now = partitions(h.c.image(), "t").remove(0);
    assert_eq!(now.isr, vec![leader, others[0]]);
    assert_eq!(now.partition_epoch, p.partition_epoch + 1);
    assert_eq!(now.leader_epoch, p.leader_epoch);
    assert_eq!(state.partition_epoch, now.partition_epoch);
    assert!(now.elr.is_empty(), "still at min.insync.replicas");
    // The same request again is stale: INVALID_UPDATE_VERSION.
    let e =
        h.c.alter_partition(&req(&[leader, others[0]], p.partition_epoch))
            .unwrap_err();
    assert_eq!(e.code, rcodes::INVALID_UPDATE_VERSION);
    // A non-leader cannot alter the ISR.
    let mut wrong = req(&[leader], now.partition_epoch);
    wrong.broker_id = others[0];
    wrong.broker_epoch = epoch_of(others[0]);
    assert_eq!(
        h.c.alter_partition(&wrong).unwrap_err().code,
        rcodes::NOT_LEADER_OR_FOLLOWER
    );
    // Shrinking below min.insync.replicas puts the removed member into the ELR (KIP-966).
    let (_, records) =
        h.c.alter_partition(&req(&[leader], now.partition_epoch))
            .unwrap();
    h.commit(records);
    let now = partitions(h.c.image(), "t").remove(0);
    assert_eq!(now.isr, vec![leader]);
    assert_eq!(now.elr, vec![others[0]]);
    // Expanding with a stale broker epoch is refused (KIP-903): INELIGIBLE_REPLICA.
    let mut stale = req(&[leader, others[1]], now.partition_epoch);
    stale.new_isr[1].1 -= 1;
    assert_eq!(
        h.c.alter_partition(&stale).unwrap_err().code,
        rcodes::INELIGIBLE_REPLICA
    );
    // With the current epoch it joins. The ISR is back at min.insync.replicas, so the ELR is
    // cleared: others[0] missed what is committed from now on (KIP-966; simulator seed 13).
    let (_, records) =
        h.c.alter_partition(&req(&[leader, others[1]], now.partition_epoch))
            .unwrap();
    h.commit(records);
    let now = partitions(h.c.image(), "t").remove(0);
    assert_eq!(now.isr, vec![leader, others[1]]);
    assert!(now.elr.is_empty(), "{:?}", now.elr);
    // A fenced broker may not join: fence others[1] (out of the ISR first), then try to add it.
    h.now += 100_000;
    for &b in &[leader, others[0]] {
        let reply = h.heartbeat(b, epoch_of(b));
        assert!(!reply.is_fenced);
    }
    for batch in h.c.tick(h.now) {
        h.commit(batch);
    }
    let now = partitions(h.c.image(), "t").remove(0);
    assert!(!now.isr.contains(&others[1]));
    let e =
        h.c.alter_partition(&req(&[leader, others[0], others[1]], now.partition_epoch))
            .unwrap_err();
    assert_eq!(e.code, rcodes::INELIGIBLE_REPLICA);
}

#[test]
fn cluster_controller_duplicate_is_proven_by_the_live_sessions_heartbeats() {
    let mut h = Harness::new(ControllerConfig::default());
    let epochs = h.brokers(&[None, None]);
    let dup = |id: i32, inc: u128| BrokerRegistration {
        broker_id: id,
        cluster_id: None,
        incarnation_id: Uuid::from_u128(inc),
        endpoints: Vec::new(),
        rack: None,
    };
    // Broker 1's process keeps heartbeating: another process with node.id 1 is refused, at
    // first as "maybe a restart", and for good after two heartbeats of the live one.
    let second = dup(1, 999);
    assert_eq!(
        h.c.register_broker(&second, h.now).unwrap_err().code,
        codes::DUPLICATE_BROKER_REGISTRATION
    );
    assert!(!h.c.is_proven_duplicate(1, second.incarnation_id));
    h.now += 100;
    h.heartbeat(1, epochs[0]);
    // One heartbeat may have been in flight when the second process asked: not a proof.
    assert!(!h.c.is_proven_duplicate(1, second.incarnation_id));
    h.now += 100;
    h.heartbeat(1, epochs[0]);
    assert!(h.c.is_proven_duplicate(1, second.incarnation_id));
    let err = h.c.register_broker(&second, h.now).unwrap_err();
    assert_eq!(err.code, codes::DUPLICATE_BROKER_REGISTRATION);
    assert!(err.message.contains("alive"), "{}", err.message);
    // A third incarnation is not proven by heartbeats counted for the second.
    assert!(!h.c.is_proven_duplicate(1, Uuid::from_u128(1000)));

    // Broker 2's process died (a restart): its session is silent, so the new incarnation is
    // never proven a duplicate and registers once the session expired.
    let restart = dup(2, 777);
    assert!(h.c.register_broker(&restart, h.now).is_err());
    for _ in 0..100 {
        h.now += 100;
        h.heartbeat(1, epochs[0]);
        for b in h.c.tick(h.now) {
            h.commit(b);
        }
        assert!(!h.c.is_proven_duplicate(2, restart.incarnation_id));
        if let Ok((epoch, records)) = h.c.register_broker(&restart, h.now) {
            h.commit(records);
            assert!(epoch > epochs[1]);
            return;
        }
    }
    panic!("the restarted broker 2 never registered");
}

#[test]
fn cluster_controller_lost_connection_fences_after_the_grace_not_the_session() {
    let mut h = Harness::new(ControllerConfig::default());
    let epochs = h.brokers(&[None, None, None]);
    h.create("t", 3, 3).unwrap();
    // Broker 1's heartbeat connection closed (a kill -9 closes every socket at once).
    h.c.broker_connection_lost(1, Some(epochs[0]), h.now);
    h.now += CONNECTION_LOSS_GRACE_MS - 1;
    assert!(h.c.tick(h.now).is_empty(), "fenced inside the grace");
    h.now += 1;
    tick_fences(&mut h, 1, "t");
    // Far inside the 9 s session timeout: the grace, not the session, ended it.
    assert!(CONNECTION_LOSS_GRACE_MS < h.c.cfg.session_timeout_ms);
}

#[test]
fn cluster_controller_heartbeat_after_a_lost_connection_keeps_the_session() {
    let mut h = Harness::new(ControllerConfig::default());
    let epochs = h.brokers(&[None, None]);
    // A failed connection to broker 2's controller listener, then it heartbeats again on a
    // new connection within the grace: a live broker, not fenced.
    h.c.broker_connection_lost(2, None, h.now);
    h.now += CONNECTION_LOSS_GRACE_MS / 2;
    h.heartbeat(2, epochs[1]);
    h.now += CONNECTION_LOSS_GRACE_MS;
    h.heartbeat(1, epochs[0]);
    assert!(h.c.tick(h.now).is_empty());
    assert!(!h.c.committed().brokers[&2].fenced);
}

#[test]
fn cluster_controller_old_incarnations_closed_connection_does_not_end_a_new_session() {
    let mut h = Harness::new(ControllerConfig::default());
    let epochs = h.brokers(&[None]);
    // The heartbeats of an older epoch came on the connection that closed: not this session.
    h.c.broker_connection_lost(1, Some(epochs[0] - 1), h.now);
    h.now += CONNECTION_LOSS_GRACE_MS * 4;
    assert!(h.c.tick(h.now).is_empty());
    assert!(!h.c.committed().brokers[&1].fenced);
}

#[test]
fn cluster_controller_refused_connection_fences_at_the_next_tick() {
    let mut h = Harness::new(ControllerConfig::default());
    h.brokers(&[None, None, None]);
    h.create("t", 3, 3).unwrap();
    // Broker 1's controller listener refused a connection: its process is gone. No grace:
    // the next tick fences it and its leaderships move.
    h.c.broker_process_gone(1);
    h.now += 1;
    tick_fences(&mut h, 1, "t");
    // Once fenced, another refusal changes nothing.
    h.c.broker_process_gone(1);
    h.now += 1;
    assert!(h.c.tick(h.now).is_empty());
}

#[test]
fn cluster_controller_heartbeat_after_a_refused_connection_keeps_the_session() {
    let mut h = Harness::new(ControllerConfig::default());
    let epochs = h.brokers(&[None, None]);
    // The refusal raced a heartbeat of a live process (it restarted its listener, or the
    // refusal was from before it bound it): the heartbeat wins, nothing is fenced.
    h.c.broker_process_gone(2);
    h.heartbeat(2, epochs[1]);
    h.now += 1;
    assert!(h.c.tick(h.now).is_empty());
    assert!(!h.c.committed().brokers[&2].fenced);
}

/// The next tick fences `broker` in one batch: it leads nothing of `topic` and is in none of
/// its ISRs.
fn tick_fences(h: &mut Harness, broker: i32, topic: &str) {
    let batches = h.c.tick(h.now);
    assert_eq!(batches.len(), 1);
    assert!(matches!(
        batches[0].last(),
        Some(MetadataRecord::FenceBroker { broker_id, .. }) if *broker_id == broker
    ));
    h.commit(batches[0].clone());
    for p in partitions(h.c.committed(), topic) {
        assert_ne!(p.leader, broker);
        assert!(!p.isr.contains(&broker));
    }
}
