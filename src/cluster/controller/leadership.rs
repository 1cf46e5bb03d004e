//! Leader elections the controller decides outside fencing: unclean elections
//! (`unclean.leader.election.enable`, topic then cluster-wide dynamic then static setting: an
//! out-of-sync live replica may lead a partition none of whose ISR or ELR members is alive;
//! logged and counted), preferred-replica elections (ElectLeaders PREFERRED, and
//! `auto.leader.rebalance.enable` every `leader.imbalance.check.interval.seconds` for brokers
//! above `leader.imbalance.per.broker.percentage`; never to a broker whose log dir is below its
//! free-space floor), and ElectLeaders UNCLEAN. Kafka's result
//! codes: ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
//! UNKNOWN_TOPIC_OR_PARTITION.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{Controller, Decision, codes};
use crate::cluster::metadata_log::image::PartitionImage;
use crate::cluster::metadata_log::records::{
    ConfigResource, MetadataRecord, NO_LEADER, PartitionChangeRecord,
};

/// ElectLeaders' election type (Kafka: 0 preferred, 1 unclean).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl ElectionType {
    /// From the wire value; None for a type Kafka does not define.
    pub fn from_wire(v: i8) -> Option<Self> {
        match v {
            0 => Some(Self::Preferred),
            1 => Some(Self::Unclean),
            _ => None,
        }
    }
}

/// One partition's ElectLeaders outcome (code 0 = elected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionOutcome {
    pub topic: String,
    pub partition: i32,
    pub code: i16,
    pub message: Option<String>,
}

/// The config key (topic and broker level).
pub const UNCLEAN_KEY: &str = "unclean.leader.election.enable";

type Refusal = (i16, String);

/// A clean choice of leader for a leaderless partition: the first unfenced ISR member in
/// replica order (one whose log dir is not in `full` first), else an unfenced ELR member (it
/// rejoins the ISR). Returns the change.
fn clean_choice(
    image: &crate::cluster::metadata_log::image::MetadataImage,
    p: &PartitionImage,
    full: &BTreeSet<i32>,
) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let alive = |b: &&i32| image.is_unfenced(**b);
    let in_isr = p.replicas.iter().filter(|b| p.isr.contains(b));
    let with_room = in_isr.clone().filter(|b| !full.contains(b)).find(alive);
    if let Some(&b) = with_room.or_else(|| in_isr.clone().find(alive)) {
        return Some((b, p.isr.clone(), p.elr.clone()));
    }
    let &b = p
        .replicas
        .iter()
        .filter(|b| p.elr.contains(b))
        .find(alive)?;
    let mut isr = p.isr.clone();
    isr.push(b);
    Some((b, isr, p.elr.iter().copied().filter(|&x| x != b).collect()))
}

impl Controller {
    /// Unclean elections decided by this controller since it started (a metric).
    pub fn unclean_elections(&self) -> u64 {
        self.unclean_elections
    }

    /// Whether `topic` allows unclean elections: its own config, else the cluster-wide
    /// dynamic broker config, else the static setting.
    pub fn unclean_allowed(&self, topic: &str) -> bool {
        let get = |resource, name: &str| {
            self.working
                .configs
                .get(&(resource, name.to_string()))
                .and_then(|c| c.get(UNCLEAN_KEY))
                .map(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        get(ConfigResource::Topic, topic)
            .or_else(|| get(ConfigResource::Broker, ""))
            .unwrap_or(self.cfg.unclean_leader_election_enable)
    }

    /// A leader for a leaderless partition: clean when an ISR/ELR member is alive, else (when
    /// `unclean`) the first unfenced replica, which becomes the whole ISR. None: nobody.
    fn leaderless_change(
        &mut self,
        topic_id: Uuid,
        topic: &str,
        partition: i32,
        unclean: bool,
    ) -> Option<PartitionChangeRecord> {
        let p = &self.working.topics[&topic_id].partitions[&partition];
        if p.leader != NO_LEADER {
            return None;
        }
        if let Some((leader, isr, elr)) = clean_choice(&self.working, p, &self.full_log_dirs()) {
            return Some(PartitionChangeRecord {
                topic_id,
                partition,
                leader: Some(leader),
                elr: (elr != p.elr).then_some(elr),
                isr: (isr != p.isr).then_some(isr),
                replicas: None,
                ..Default::default()
            });
        }
        if !unclean {
            return None;
        }
        let &b = p.replicas.iter().find(|&&b| self.working.is_unfenced(b))?;
        log::warn!(
            "controller: unclean leader election: broker {b} leads {topic}-{partition} without being in its ISR {:?}; records it lacks are lost",
            p.isr
        );
        self.unclean_elections += 1;
        Some(PartitionChangeRecord {
            topic_id,
            partition,
            leader: Some(b),
            isr: Some(vec![b]),
            elr: (!p.elr.is_empty()).then(Vec::new),
            replicas: None,
            ..Default::default()
        })
    }

    /// The change that makes the preferred replica (the first one) the leader.
    fn preferred_change(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<PartitionChangeRecord, Refusal> {
        let p = &self.working.topics[&topic_id].partitions[&partition];
        let Some(&preferred) = p.replicas.first() else {
            return Err((codes::PREFERRED_LEADER_NOT_AVAILABLE, "no replicas".into()));
        };
        if p.leader == preferred {
            return Err((
                codes::ELECTION_NOT_NEEDED,
                format!("the preferred replica {preferred} already leads"),
            ));
        }
        if !p.isr.contains(&preferred) || !self.working.is_unfenced(preferred) {
            return Err((
                codes::PREFERRED_LEADER_NOT_AVAILABLE,
                format!("the preferred replica {preferred} is not an alive member of the ISR"),
            ));
        }
        if self.log_dir_full(preferred) {
            return Err((
                codes::PREFERRED_LEADER_NOT_AVAILABLE,
                format!(
                    "the preferred replica {preferred} has its log dir below the free-space floor"
                ),
            ));
        }
        Ok(PartitionChangeRecord {
            topic_id,
            partition,
            leader: Some(preferred),
            isr: None,
            elr: None,
            replicas: None,
            ..Default::default()
        })
    }

    /// ElectLeaders (API 43): `partitions` None means every partition (then partitions that
    /// need no election are left out of the answer, as in Kafka).
    pub fn elect_leaders(
        &mut self,
        kind: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> Decision<(Vec<ElectionOutcome>, Vec<MetadataRecord>)> {
        self.require_active()?;
        let all = partitions.is_none();
        let wanted: BTreeSet<(String, i32)> = match partitions {
            Some(list) => list.iter().cloned().collect(),
            None => self
                .working
                .topics
                .values()
                .flat_map(|t| t.partitions.keys().map(|&p| (t.name.clone(), p)))
                .collect(),
        };
        let mut outcomes = Vec::new();
        let mut records = Vec::new();
        for (topic, partition) in wanted {
            let found = self
                .working
                .topic_by_name(&topic)
                .filter(|t| t.partitions.contains_key(&partition))
                .map(|t| t.id);
            let decided = match found {
                None => Err((
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("{topic}-{partition} does not exist"),
                )),
                Some(id) => match kind {
                    ElectionType::Preferred => self.preferred_change(id, partition),
                    ElectionType::Unclean => {
                        let p = &self.working.topics[&id].partitions[&partition];
                        if p.leader != NO_LEADER {
                            Err((
                                codes::ELECTION_NOT_NEEDED,
                                format!("broker {} leads it", p.leader),
                            ))
                        } else {
                            self.leaderless_change(id, &topic, partition, true)
                                .ok_or_else(|| {
                                    (
                                        codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                                        "no replica of it is alive".to_string(),
                                    )
                                })
                        }
                    }
                },
            };
            match decided {
                Ok(change) => {
                    records.push(MetadataRecord::PartitionChange(change));
                    outcomes.push(ElectionOutcome {
                        topic,
                        partition,
                        code: 0,
                        message: None,
                    });
                }
                Err((code, _)) if all && code == codes::ELECTION_NOT_NEEDED => {}
                Err((code, message)) => outcomes.push(ElectionOutcome {
                    topic,
                    partition,
                    code,
                    message: Some(message),
                }),
            }
        }
        Ok((outcomes, self.stage(records)?))
    }

    /// Clock tick: unclean elections for leaderless partitions that allow them, and (every
    /// check interval, when enabled) preferred-leader elections for imbalanced brokers.
    pub(super) fn leadership_tick(&mut self, now_ms: u64) -> Vec<Vec<MetadataRecord>> {
        let mut out = Vec::new();
        let leaderless: Vec<(Uuid, String, i32)> = self
            .working
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|(_, p)| p.leader == NO_LEADER)
                    .map(|(&p, _)| (t.id, t.name.clone(), p))
            })
            .collect();
        let mut changes = Vec::new();
        for (id, topic, partition) in leaderless {
            if self.unclean_allowed(&topic)
                && let Some(c) = self.leaderless_change(id, &topic, partition, true)
            {
                changes.push(MetadataRecord::PartitionChange(c));
            }
        }
        if !changes.is_empty() {
            out.push(self.stage(changes).expect("active"));
        }
        if self.cfg.auto_leader_rebalance_enable {
            let due = match self.last_imbalance_check_ms {
                None => {
                    self.last_imbalance_check_ms = Some(now_ms);
                    false
                }
                Some(t) => now_ms >= t + self.cfg.leader_imbalance_check_interval_ms,
            };
            if due {
                self.last_imbalance_check_ms = Some(now_ms);
                let moves = self.rebalance_records();
                if !moves.is_empty() {
                    log::info!(
                        "controller: auto leader rebalance: {} partitions move back to their preferred replica",
                        moves.len()
                    );
                    out.push(self.stage(moves).expect("active"));
                }
            }
        }
        out
    }

    /// Preferred elections for every broker whose share of partitions it prefers but does not
    /// lead is above `leader.imbalance.per.broker.percentage` (only where the preferred replica
    /// is an alive ISR member).
    fn rebalance_records(&self) -> Vec<MetadataRecord> {
        let mut preferred: BTreeMap<i32, (usize, Vec<(Uuid, i32)>)> = BTreeMap::new();
        for t in self.working.topics.values() {
            for (&partition, p) in &t.partitions {
                let Some(&first) = p.replicas.first() else {
                    continue;
                };
                let e = preferred.entry(first).or_default();
                e.0 += 1;
                if p.leader != first {
                    e.1.push((t.id, partition));
                }
            }
        }
        let pct = self.cfg.leader_imbalance_per_broker_percentage as usize;
        let mut out = Vec::new();
        for (total, off) in preferred.values() {
            if off.len() * 100 <= pct * total {
                continue;
            }
            for &(id, partition) in off {
                if let Ok(c) = self.preferred_change(id, partition) {
                    out.push(MetadataRecord::PartitionChange(c));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests of the elections: controlled shutdown's should_shut_down, unclean election
    //! (off by default, topic and cluster-level config, counted), ElectLeaders' codes, and
    //! auto rebalance with its threshold and interval.

    use super::*;
    use crate::cluster::controller::{
        BrokerHeartbeat, BrokerRegistration, ConfigChange, ControllerConfig, CreateTopic,
    };
    use crate::cluster::metadata_log::image::MetadataImage;

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
            let first = h.c.become_active(h.now, "cluster-l");
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
            let r = self.heartbeat(id, false);
            assert!(!r.is_fenced);
        }

        fn heartbeat(
            &mut self,
            id: i32,
            shutdown: bool,
        ) -> crate::cluster::controller::HeartbeatReply {
            let req = BrokerHeartbeat {
                broker_id: id,
                broker_epoch: self.epochs[&id],
                current_metadata_offset: self.offset,
                want_fence: false,
                want_shutdown: shutdown,
                log_dir_full: false,
            };
            let (reply, records) = self.c.heartbeat(&req, self.now).unwrap();
            self.commit(records);
            reply
        }

        /// Fences `id` as a session expiry does (the broker died).
        fn crash(&mut self, id: i32) {
            self.c.forget_session(id);
            for b in self.c.tick(self.now) {
                self.commit(b);
            }
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

        /// Advances the clock by `ms`, with a heartbeat from every registered broker (their
        /// sessions stay alive).
        fn advance(&mut self, ms: u64) {
            self.now += ms;
            for id in self.epochs.keys().copied().collect::<Vec<_>>() {
                self.heartbeat(id, false);
            }
        }

        fn tick(&mut self) {
            for b in self.c.tick(self.now) {
                self.commit(b);
            }
        }

        fn part(&self, name: &str, p: i32) -> PartitionImage {
            self.c.committed().topic_by_name(name).unwrap().partitions[&p].clone()
        }

        fn set(&mut self, resource: ConfigResource, name: &str, key: &str, value: &str) {
            let change = ConfigChange {
                resource,
                resource_name: name.into(),
                name: key.into(),
                value: Some(value.into()),
            };
            let records = self.c.alter_configs(&[vec![change]]).unwrap().1;
            self.commit(records);
        }
    }

    fn no_rebalance() -> ControllerConfig {
        ControllerConfig {
            auto_leader_rebalance_enable: false,
            ..ControllerConfig::default()
        }
    }

    #[test]
    fn controlled_shutdown_moves_leadership_to_the_isr_before_should_shut_down() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("t", vec![vec![1, 2, 3], vec![1, 3, 2], vec![2, 1, 3]]);
        h.create("one", vec![vec![1]]);
        let r = h.heartbeat(1, true);
        assert!(r.should_shut_down && r.is_fenced);
        assert_eq!(h.c.committed().leader_count(1), 0);
        assert_eq!(h.part("t", 0).leader, 2, "next ISR member in replica order");
        assert_eq!(h.part("t", 1).leader, 3);
        assert_eq!(h.part("t", 2).leader, 2, "untouched");
        assert!(!h.part("t", 0).isr.contains(&1));
        assert_eq!(
            h.part("one", 0).leader,
            NO_LEADER,
            "no other replica: offline"
        );
        // A repeated heartbeat changes nothing and still says shut down.
        let before = h.offset;
        assert!(h.heartbeat(1, true).should_shut_down);
        assert_eq!(h.offset, before);
    }

    #[test]
    fn unclean_election_only_when_enabled_and_counted() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("u", vec![vec![1, 2]]);
        // The follower dies (out of the ISR), then the leader.
        h.crash(2);
        assert_eq!(h.part("u", 0).isr, vec![1]);
        h.crash(1);
        assert_eq!(h.part("u", 0).leader, NO_LEADER);
        // The follower comes back: it is not in the ISR or ELR, so nothing happens by default.
        h.register(2);
        h.tick();
        assert_eq!(h.part("u", 0).leader, NO_LEADER);
        assert_eq!(h.c.unclean_elections(), 0);
        // ElectLeaders PREFERRED cannot help; UNCLEAN could, but first the topic config.
        h.set(ConfigResource::Topic, "u", UNCLEAN_KEY, "true");
        h.tick();
        let p = h.part("u", 0);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (2, vec![2], vec![])
        );
        assert_eq!(h.c.unclean_elections(), 1);
        h.tick();
        assert_eq!(
            h.c.unclean_elections(),
            1,
            "one election per leaderless spell"
        );
    }

    #[test]
    fn unclean_election_by_cluster_config_prefers_a_clean_candidate() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("v", vec![vec![1, 2, 3]]);
        h.set(ConfigResource::Broker, "", UNCLEAN_KEY, "true");
        assert!(h.c.unclean_allowed("v"));
        h.set(ConfigResource::Topic, "v", UNCLEAN_KEY, "false");
        assert!(!h.c.unclean_allowed("v"), "the topic's own setting wins");
        h.set(ConfigResource::Topic, "v", UNCLEAN_KEY, "true");
        // Fencing elects from the ISR: no unclean election.
        h.crash(1);
        h.tick();
        assert_eq!(h.part("v", 0).leader, 2);
        assert_eq!(h.c.unclean_elections(), 0);
    }

    #[test]
    fn elect_leaders_preferred_and_unclean_codes() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("e", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        let ask = |h: &mut Harness, kind, list: Option<Vec<(String, i32)>>| {
            let (out, records) = h.c.elect_leaders(kind, list.as_deref()).unwrap();
            h.commit(records);
            out.into_iter()
                .map(|o| ((o.topic, o.partition), o.code))
                .collect::<BTreeMap<_, _>>()
        };
        let e = |p: i32| ("e".to_string(), p);
        // Leaders are the preferred replicas already.
        let got = ask(
            &mut h,
            ElectionType::Preferred,
            Some(vec![e(0), e(9), ("x".into(), 0)]),
        );
        assert_eq!(got[&e(0)], codes::ELECTION_NOT_NEEDED);
        assert_eq!(got[&e(9)], codes::UNKNOWN_TOPIC_OR_PARTITION);
        assert_eq!(got[&("x".into(), 0)], codes::UNKNOWN_TOPIC_OR_PARTITION);
        assert!(
            ask(&mut h, ElectionType::Preferred, None).is_empty(),
            "all: none needed"
        );
        // Broker 1 shuts down: its leadership moves; while it is away, PREFERRED is refused.
        h.heartbeat(1, true);
        assert_eq!(h.part("e", 0).leader, 2);
        let got = ask(&mut h, ElectionType::Preferred, Some(vec![e(0)]));
        assert_eq!(got[&e(0)], codes::PREFERRED_LEADER_NOT_AVAILABLE);
        // Back and in the ISR again (as the leader's AlterPartition would do): elected.
        h.register(1);
        let p = h.part("e", 0);
        let req = crate::cluster::replication::AlterPartitionRequest {
            broker_id: 2,
            broker_epoch: h.epochs[&2],
            topic_id: h.c.committed().topic_ids["e"],
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![(2, h.epochs[&2]), (3, h.epochs[&3]), (1, h.epochs[&1])],
        };
        let (_, records) = h.c.alter_partition(&req).unwrap();
        h.commit(records);
        let got = ask(&mut h, ElectionType::Preferred, None);
        assert_eq!(got.len(), 1);
        assert_eq!(got[&e(0)], 0);
        assert_eq!(h.part("e", 0).leader, 1);
        // UNCLEAN: not needed while a leader exists.
        let got = ask(&mut h, ElectionType::Unclean, Some(vec![e(1)]));
        assert_eq!(got[&e(1)], codes::ELECTION_NOT_NEEDED);
    }

    #[test]
    fn elect_leaders_unclean_elects_a_live_replica_or_reports_none() {
        let mut h = Harness::new(no_rebalance(), 3);
        h.create("w", vec![vec![1, 2]]);
        h.crash(2);
        h.crash(1);
        let one = vec![("w".to_string(), 0)];
        let (out, records) =
            h.c.elect_leaders(ElectionType::Unclean, Some(&one))
                .unwrap();
        assert_eq!(out[0].code, codes::ELIGIBLE_LEADERS_NOT_AVAILABLE);
        assert!(records.is_empty());
        h.register(2);
        let (out, records) =
            h.c.elect_leaders(ElectionType::Unclean, Some(&one))
                .unwrap();
        h.commit(records);
        assert_eq!(out[0].code, 0);
        assert_eq!(h.part("w", 0).leader, 2);
        assert_eq!(h.c.unclean_elections(), 1);
    }

    #[test]
    fn auto_rebalance_moves_back_above_the_threshold_after_the_interval() {
        let cfg = ControllerConfig {
            leader_imbalance_check_interval_ms: 10_000,
            leader_imbalance_per_broker_percentage: 10,
            ..ControllerConfig::default()
        };
        let mut h = Harness::new(cfg, 3);
        h.create("r", vec![vec![1, 2, 3], vec![1, 3, 2], vec![2, 3, 1]]);
        h.tick(); // starts the interval
        h.heartbeat(1, true);
        h.register(1);
        for p in 0..2 {
            let part = h.part("r", p);
            let leader = part.leader;
            let mut new_isr: Vec<(i32, i64)> =
                part.isr.iter().map(|&b| (b, h.epochs[&b])).collect();
            new_isr.push((1, h.epochs[&1]));
            let req = crate::cluster::replication::AlterPartitionRequest {
                broker_id: leader,
                broker_epoch: h.epochs[&leader],
                topic_id: h.c.committed().topic_ids["r"],
                partition: p,
                leader_epoch: part.leader_epoch,
                partition_epoch: part.partition_epoch,
                new_isr,
            };
            let (_, records) = h.c.alter_partition(&req).unwrap();
            h.commit(records);
        }
        assert_eq!(h.c.committed().leader_count(1), 0);
        h.advance(5_000);
        h.tick();
        assert_eq!(
            h.c.committed().leader_count(1),
            0,
            "before the interval: no move"
        );
        h.advance(5_000);
        h.tick();
        assert_eq!(h.part("r", 0).leader, 1);
        assert_eq!(h.part("r", 1).leader, 1);
        assert_eq!(h.part("r", 2).leader, 2);
    }

    #[test]
    fn auto_rebalance_leaves_a_broker_at_or_below_the_threshold() {
        let cfg = ControllerConfig {
            leader_imbalance_check_interval_ms: 1_000,
            leader_imbalance_per_broker_percentage: 50,
            ..ControllerConfig::default()
        };
        let mut h = Harness::new(cfg, 3);
        h.create("s", vec![vec![1, 2], vec![1, 2]]);
        h.tick();
        // Partition 0 moves to broker 2 by a controlled shutdown of 1; 1 comes back in the ISR.
        h.heartbeat(1, true);
        h.register(1);
        for p in 0..2 {
            let part = h.part("s", p);
            let req = crate::cluster::replication::AlterPartitionRequest {
                broker_id: 2,
                broker_epoch: h.epochs[&2],
                topic_id: h.c.committed().topic_ids["s"],
                partition: p,
                leader_epoch: part.leader_epoch,
                partition_epoch: part.partition_epoch,
                new_isr: vec![(2, h.epochs[&2]), (1, h.epochs[&1])],
            };
            let (_, records) = h.c.alter_partition(&req).unwrap();
            h.commit(records);
        }
        // Move partition 1 back by hand: broker 1 is then 1 of 2 off (50%), not above 50%.
        let (_, records) =
            h.c.elect_leaders(ElectionType::Preferred, Some(&[("s".to_string(), 1)]))
                .unwrap();
        h.commit(records);
        h.advance(2_000);
        h.tick();
        assert_eq!(h.part("s", 0).leader, 2);
    }
}
