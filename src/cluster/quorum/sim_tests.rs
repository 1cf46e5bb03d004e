//! A small deterministic in-process run of three `MetadataQuorum`s + `Controller`s in one
//! thread: virtual time in ticks, every message and every disk completion delivered in an order
//! a seeded PRNG picks (with some messages lost), a crash that loses unsynced writes, a restart
//! from the persisted state. Checked: one leader per term, the committed logs agree entry for
//! entry (log matching), an acknowledged metadata change survives the leader's crash, all
//! nodes converge to one image, and the same seed replays the same run. The seed of issue 12's
//! simulator. Teeth, checked by hand when this was written: sending raft-rs' "after persist"
//! messages before the fsync fails seed 4 (log matching); a disk that forgets its writes fails
//! seed 1 (two leaders in one term).

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::*;
use crate::cluster::controller::{
    BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig, CreateTopic,
};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{MetadataRecord, decode_entry, encode_entry};

const TICK_MS: u64 = 100;
const NODES: i32 = 3;

struct Node {
    id: i32,
    quorum: MetadataQuorum,
    controller: Controller,
    /// What survives a crash.
    disk: PersistedState,
    /// Persist outputs written but not yet synced (lost on crash).
    unsynced: VecDeque<QuorumOutput>,
    up: bool,
}

struct Sim {
    rng: ChaCha8Rng,
    seed: u64,
    nodes: Vec<Node>,
    net: Vec<(i32, Message)>,
    now_ms: u64,
    /// index -> (term, data) of every entry any node committed (log matching).
    committed: BTreeMap<u64, (u64, Vec<u8>)>,
    leaders_by_term: BTreeMap<u64, i32>,
    /// Proposals of the active controller: (node, term, index) -> topic name (if a topic).
    proposals: BTreeMap<(i32, u64, u64), Option<String>>,
    acked_topics: BTreeSet<String>,
    next_topic: u32,
    trace: Vec<String>,
}

fn quorum_config(id: i32, seed: u64) -> QuorumConfig {
    QuorumConfig::from_timeouts(id, (0..NODES).collect(), TICK_MS, 1000, 2000, seed)
}

fn controller_config() -> ControllerConfig {
    ControllerConfig {
        session_timeout_ms: 9000,
        ..Default::default()
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let nodes = (0..NODES)
            .map(|id| Node {
                id,
                quorum: MetadataQuorum::new(quorum_config(id, seed)).unwrap(),
                controller: Controller::new(controller_config(), MetadataImage::default()),
                disk: PersistedState::default(),
                unsynced: VecDeque::new(),
                up: true,
            })
            .collect();
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            nodes,
            net: Vec::new(),
            now_ms: 0,
            committed: BTreeMap::new(),
            leaders_by_term: BTreeMap::new(),
            proposals: BTreeMap::new(),
            acked_topics: BTreeSet::new(),
            next_topic: 0,
            trace: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.trace.iter().rev().take(30).collect();
        panic!(
            "seed {}: {what}\nlast events (newest first): {tail:#?}",
            self.seed
        );
    }

    /// Handles node `i`'s outputs until it has none.
    fn drain(&mut self, i: usize) {
        loop {
            let outputs = self.nodes[i].quorum.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for o in outputs {
                self.handle(i, o);
            }
        }
    }

    fn handle(&mut self, i: usize, o: QuorumOutput) {
        let id = self.nodes[i].id;
        match o {
            QuorumOutput::Send { to, message } => self.net.push((to, message)),
            p @ QuorumOutput::Persist { .. } => self.nodes[i].unsynced.push_back(p),
            QuorumOutput::Committed { index, term, data } => {
                match self.committed.get(&index) {
                    Some((t, d)) if (*t, d) != (term, &data) => self.fail(format!(
                        "node {id} committed {index}@{term}, another node {index}@{t}"
                    )),
                    _ => {
                        self.committed.insert(index, (term, data.clone()));
                    }
                }
                if let Some(topic) = self.proposals.remove(&(id, term, index)) {
                    self.trace
                        .push(format!("ack {index}@{term} by {id} {topic:?}"));
                    self.acked_topics.extend(topic);
                }
                if !data.is_empty() {
                    let records = decode_entry(&data).unwrap();
                    let node = &mut self.nodes[i];
                    if let Err(e) = node.controller.apply_committed(index, &records) {
                        self.fail(format!("node {id}: entry {index} does not apply: {e}"));
                    }
                }
            }
            QuorumOutput::InstallSnapshot { index, data, .. } => {
                self.trace.push(format!("{id}: snapshot at {index}"));
                let image = MetadataImage::from_snapshot(&data).unwrap();
                self.nodes[i].controller.install_snapshot(image);
            }
            QuorumOutput::LeaderChanged { term, leader } => {
                self.trace
                    .push(format!("{id}: term {term} leader {leader:?}"));
                if leader == Some(id) {
                    if let Some(&other) = self.leaders_by_term.get(&term)
                        && other != id
                    {
                        self.fail(format!("two leaders in term {term}: {other} and {id}"));
                    }
                    self.leaders_by_term.insert(term, id);
                } else if self.nodes[i].controller.is_active() {
                    self.nodes[i].controller.resign();
                }
            }
            QuorumOutput::LeaderReady { term } => {
                self.trace.push(format!("{id}: ready to lead term {term}"));
                let records = self.nodes[i]
                    .controller
                    .become_active(self.now_ms, "sim-cluster");
                self.propose(i, records, None);
            }
        }
    }

    fn propose(&mut self, i: usize, records: Vec<MetadataRecord>, topic: Option<String>) {
        if records.is_empty() {
            return;
        }
        let node = &mut self.nodes[i];
        match node.quorum.propose(encode_entry(&records)) {
            Ok((term, index)) => {
                self.proposals.insert((node.id, term, index), topic);
            }
            Err(_) => node.controller.resign(),
        }
        self.drain(i);
    }

    fn active(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.up && n.controller.is_active())
    }

    /// One tick of virtual time: every live node ticks, the workload acts, then messages and
    /// disk completions are delivered in a seeded order until none is left (some lost).
    fn round(&mut self) {
        self.now_ms += TICK_MS;
        for i in 0..self.nodes.len() {
            if self.nodes[i].up {
                self.nodes[i].quorum.tick();
                self.drain(i);
            }
        }
        self.workload();
        for _ in 0..10_000 {
            let syncs: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| !self.nodes[i].unsynced.is_empty())
                .collect();
            // A slow disk: writes may still be unsynced when the round ends (and a crash then
            // loses them).
            if self.net.is_empty() && (syncs.is_empty() || self.rng.gen_bool(0.3)) {
                return;
            }
            if !self.net.is_empty() && (syncs.is_empty() || self.rng.gen_bool(0.6)) {
                let (to, msg) = self.net.swap_remove(self.rng.gen_range(0..self.net.len()));
                let t = to as usize;
                if !self.nodes[t].up || self.rng.gen_bool(0.03) {
                    continue; // lost
                }
                let _ = self.nodes[t].quorum.step(msg);
                self.drain(t);
            } else {
                let i = syncs[self.rng.gen_range(0..syncs.len())];
                self.sync_one(i);
            }
        }
        self.fail("a round did not quiesce".into());
    }

    /// Completes node i's oldest unsynced write: it becomes durable.
    fn sync_one(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(QuorumOutput::Persist {
            ready,
            hard_state,
            entries,
            snapshot,
            ..
        }) = node.unsynced.pop_front()
        else {
            unreachable!("only Persist outputs are queued")
        };
        if let Some(s) = snapshot {
            let idx = s.get_metadata().index;
            node.disk.entries.retain(|e| e.index > idx);
            node.disk.snapshot = Some(s);
        }
        if let Some(first) = entries.first() {
            let first = first.index;
            node.disk.entries.retain(|e| e.index < first);
            node.disk.entries.extend(entries);
        }
        if let Some(hs) = hard_state {
            node.disk.hard_state = hs;
        }
        node.quorum.persisted(ready);
        self.drain(i);
    }

    /// Registers the three brokers, keeps them heartbeating, creates a topic every few rounds.
    fn workload(&mut self) {
        let Some(a) = self.active() else { return };
        let now = self.now_ms;
        let fences = self.nodes[a].controller.tick(now);
        for f in fences {
            self.propose(a, f, None);
        }
        for b in 0..NODES {
            let Some(a) = self.active() else { return };
            let registered = self.nodes[a]
                .controller
                .image()
                .brokers
                .get(&b)
                .map(|r| r.registration.broker_epoch);
            let offset = self.nodes[b as usize].controller.committed().last_offset;
            let result = match registered {
                None => {
                    let req = BrokerRegistration {
                        broker_id: b,
                        cluster_id: None,
                        incarnation_id: Uuid::from_u128(b as u128 + 1),
                        endpoints: Vec::new(),
                        rack: None,
                    };
                    self.nodes[a]
                        .controller
                        .register_broker(&req, now)
                        .map(|(_, r)| r)
                }
                Some(epoch) if self.nodes[b as usize].up && now.is_multiple_of(1000) => {
                    let hb = BrokerHeartbeat {
                        broker_id: b,
                        broker_epoch: epoch,
                        current_metadata_offset: offset,
                        want_fence: false,
                        want_shutdown: false,
                        log_dir_full: false,
                    };
                    self.nodes[a].controller.heartbeat(&hb, now).map(|(_, r)| r)
                }
                Some(_) => Ok(Vec::new()),
            };
            if let Ok(records) = result {
                self.propose(a, records, None);
            }
        }
        let Some(a) = self.active() else { return };
        if now.is_multiple_of(500)
            && self.nodes[a].controller.image().unfenced_brokers().count() > 0
        {
            let name = format!("topic-{}", self.next_topic);
            self.next_topic += 1;
            let t = CreateTopic {
                name: name.clone(),
                topic_id: Uuid::from_u128(self.rng.r#gen::<u128>() | 1),
                num_partitions: 3,
                replication_factor: 1,
                ..Default::default()
            };
            if let Ok((results, records)) = self.nodes[a].controller.create_topics(&[t], false)
                && results[0].is_ok()
            {
                self.trace
                    .push(format!("{}: propose {name}", self.nodes[a].id));
                self.propose(a, records, Some(name));
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.trace.push(format!("crash {}", self.nodes[i].id));
        let node = &mut self.nodes[i];
        node.up = false;
        node.unsynced.clear();
        let id = node.id;
        self.net
            .retain(|(to, m)| *to != id && m.from != raft_id(id));
        self.proposals.retain(|(n, _, _), _| *n != id);
    }

    fn restart(&mut self, i: usize) {
        let id = self.nodes[i].id;
        self.trace.push(format!("restart {id}"));
        let seed = self.seed.wrapping_add(self.now_ms);
        let node = &mut self.nodes[i];
        node.quorum = MetadataQuorum::restart(quorum_config(id, seed), node.disk.clone()).unwrap();
        node.controller = Controller::new(controller_config(), MetadataImage::default());
        node.up = true;
        self.drain(i);
    }

    fn run_until(&mut self, max_rounds: usize, what: &str, done: impl Fn(&Sim) -> bool) {
        for _ in 0..max_rounds {
            if done(self) {
                return;
            }
            self.round();
        }
        self.fail(format!("not reached within {max_rounds} rounds: {what}"));
    }
}

/// One full scenario; returns its trace (for the replay check).
fn scenario(seed: u64) -> Vec<String> {
    let mut sim = Sim::new(seed);
    sim.run_until(300, "a leader's controller is active", |s| {
        s.active().is_some()
    });
    sim.run_until(600, "5 topics acknowledged", |s| s.acked_topics.len() >= 5);
    // Three times: crash the active controller, check the new one has every acknowledged
    // change, make more changes, restart the crashed node from its disk.
    for _ in 0..3 {
        let old = sim.active().expect("active");
        let acked_before_crash = sim.acked_topics.clone();
        sim.crash(old);
        sim.run_until(300, "another controller is active", |s| {
            s.active().is_some_and(|a| a != old)
        });
        let new = sim.active().unwrap();
        let image = sim.nodes[new].controller.committed();
        for t in &acked_before_crash {
            if image.topic_by_name(t).is_none() {
                sim.fail(format!(
                    "acknowledged topic {t} lost in the failover to node {new}"
                ));
            }
        }
        let target = sim.acked_topics.len() + 3;
        sim.run_until(600, "3 more topics acknowledged", |s| {
            s.acked_topics.len() >= target
        });
        sim.restart(old);
    }
    // Two of three crash at once (unsynced writes lost on both) and restart from their disks:
    // every acknowledged change was on a majority's disk, so it survives.
    let a = sim.active().expect("active");
    let other = (a + 1) % sim.nodes.len();
    let acked_before_crash = sim.acked_topics.clone();
    sim.crash(a);
    sim.crash(other);
    for _ in 0..5 {
        sim.round();
    }
    sim.restart(a);
    sim.restart(other);
    sim.run_until(300, "a controller after the double crash", |s| {
        s.active().is_some()
    });
    let new = sim.active().unwrap();
    for t in &acked_before_crash {
        if sim.nodes[new]
            .controller
            .committed()
            .topic_by_name(t)
            .is_none()
        {
            sim.fail(format!("acknowledged topic {t} lost in the double crash"));
        }
    }
    // Converge: every node's committed image holds every acknowledged topic, and they agree.
    sim.run_until(600, "all nodes converge", |s| {
        let images: Vec<&MetadataImage> =
            s.nodes.iter().map(|n| n.controller.committed()).collect();
        s.acked_topics
            .iter()
            .all(|t| images.iter().all(|i| i.topic_by_name(t).is_some()))
            && images
                .windows(2)
                .all(|w| w[0].topics == w[1].topics && w[0].brokers == w[1].brokers)
    });
    // The restarted nodes rejoined and the cluster agreed on one id.
    let ids: BTreeSet<_> = sim
        .nodes
        .iter()
        .map(|n| n.controller.committed().cluster_id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(sim.leaders_by_term.len() >= 4, "{:?}", sim.leaders_by_term);
    assert!(sim.acked_topics.len() >= 14);
    sim.trace
}

#[test]
fn cluster_quorum_three_nodes_elect_commit_fail_over_and_converge() {
    for seed in 0..200 {
        scenario(seed);
    }
}

#[test]
fn cluster_quorum_same_seed_same_run() {
    assert_eq!(scenario(7), scenario(7));
}

#[test]
fn cluster_quorum_snapshot_compacts_and_restores() {
    let mut sim = Sim::new(9);
    sim.run_until(600, "5 topics acknowledged", |s| s.acked_topics.len() >= 5);
    let a = sim.active().unwrap();
    // Snapshot the leader's image at its applied offset; the log before it is dropped.
    let image = sim.nodes[a].controller.committed().clone();
    let at = image.last_offset;
    let snap = sim.nodes[a]
        .quorum
        .compact(at, image.to_snapshot())
        .unwrap();
    assert_eq!(snap.get_metadata().index, at);
    let restored = MetadataImage::from_snapshot(snap.get_data()).unwrap();
    assert_eq!(restored, image);
    // The cluster carries on after the compaction.
    let target = sim.acked_topics.len() + 2;
    sim.run_until(600, "2 more topics", |s| s.acked_topics.len() >= target);
    // A follower that was down while the leader compacted catches up from the snapshot.
    let a = sim.active().unwrap();
    let follower = (a + 1) % sim.nodes.len();
    sim.crash(follower);
    let target = sim.acked_topics.len() + 3;
    sim.run_until(600, "3 topics while a follower is down", |s| {
        s.acked_topics.len() >= target
    });
    let a = sim.active().unwrap();
    let image = sim.nodes[a].controller.committed().clone();
    sim.nodes[a]
        .quorum
        .compact(image.last_offset, image.to_snapshot())
        .unwrap();
    sim.restart(follower);
    sim.run_until(600, "the follower catches up from the snapshot", |s| {
        s.nodes[follower].controller.committed().topics == s.nodes[a].controller.committed().topics
    });
    assert!(
        sim.trace
            .iter()
            .any(|t| t.starts_with(&format!("{follower}: snapshot"))),
        "the follower caught up without a snapshot: {:?}",
        sim.trace
    );
    // Malformed peer bytes are an error, not a panic.
    assert!(decode_message(&[0xff, 0xff, 0xff]).is_err());
    let m = Message {
        from: raft_id(1),
        to: raft_id(0),
        term: 3,
        ..Default::default()
    };
    assert_eq!(decode_message(&encode_message(&m)).unwrap(), m);
}

#[test]
fn cluster_quorum_config_from_kafka_timeouts() {
    let map: std::collections::BTreeMap<String, String> = [
        ("process.roles", "broker,controller"),
        ("node.id", "2"),
        ("controller.quorum.voters", "1@h:9093,2@h:9094,3@h:9095"),
        ("controller.listener.names", "CONTROLLER"),
        ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9094"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cluster =
        crate::cluster::config::ClusterConfig::from_props(|k| map.get(k).map(String::as_str), "")
            .unwrap();
    let q = QuorumConfig::from_cluster(&cluster, 100, 0);
    // Defaults: elections between 1000 ms (election timeout) and 2000 ms (fetch timeout).
    assert_eq!((q.node_id, q.voters.clone()), (2, vec![1, 2, 3]));
    assert_eq!(
        (
            q.election_ticks_min,
            q.election_ticks_max,
            q.heartbeat_ticks
        ),
        (10, 20, 1)
    );
    let c = ControllerConfig::from_cluster(&cluster, 1, 2);
    assert_eq!(
        (c.session_timeout_ms, c.default_replication_factor),
        (9000, 1)
    );
}

/// A follower whose log is another cluster's (entries 1..=4 of term 1, all committed).
fn foreign_follower() -> MetadataQuorum {
    let entries: Vec<Entry> = (1..=4)
        .map(|i| Entry {
            index: i,
            term: 1,
            data: b"x".to_vec().into(),
            ..Default::default()
        })
        .collect();
    let hs = HardState {
        term: 1,
        commit: 4,
        ..Default::default()
    };
    let state = PersistedState {
        hard_state: hs,
        snapshot: None,
        entries,
    };
    MetadataQuorum::restart(quorum_config(2, 7), state).unwrap()
}

fn from_leader(kind: MessageType, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = raft_id(0);
    m.to = raft_id(2);
    m.term = term;
    m
}

#[test]
fn a_heartbeat_past_the_log_end_is_refused_not_a_panic() {
    let mut q = foreign_follower();
    // raft-rs asserts "to_commit 9 is out of range [last_index 4]" on this one.
    let mut m = from_leader(MessageType::MsgHeartbeat, 5);
    m.commit = 9;
    match q.step(m) {
        Err(StepError::Diverged(why)) => assert!(why.contains("ends at 4"), "{why}"),
        other => panic!("expected Diverged, got {other:?}"),
    }
    // A heartbeat that fits is taken.
    let mut ok = from_leader(MessageType::MsgHeartbeat, 5);
    ok.commit = 4;
    q.step(ok).unwrap();
    assert_eq!(q.leader(), Some(0));
}

#[test]
fn an_append_of_another_history_below_the_commit_index_changes_nothing() {
    let mut q = foreign_follower();
    // Another history from index 2 on, below our commit index: raft-rs answers with its commit
    // index and keeps its log (the cluster-id check of the driver refuses such a leader first).
    let mut m = from_leader(MessageType::MsgAppend, 5);
    m.index = 1;
    m.log_term = 1;
    m.commit = 3;
    let e = Entry {
        index: 2,
        term: 3,
        ..Default::default()
    };
    m.entries = vec![e].into();
    q.step(m).unwrap();
    assert_eq!(q.last_index(), 4);
    assert_eq!(q.committed_index(), 4);
}

/// Rounds from crashing the active controller until another one is active; with `notice`, the
/// survivors learn right after the crash that its process is gone (their connections to its
/// controller listener are refused).
fn failover_rounds(seed: u64, notice: bool) -> usize {
    let mut sim = Sim::new(seed);
    sim.run_until(300, "a leader's controller is active", |s| {
        s.active().is_some()
    });
    sim.run_until(600, "2 topics acknowledged", |s| s.acked_topics.len() >= 2);
    let old = sim.active().expect("active");
    sim.crash(old);
    if notice {
        let gone = sim.nodes[old].id;
        for i in (0..sim.nodes.len()).filter(|&i| i != old) {
            sim.nodes[i].quorum.peer_process_gone(gone);
            sim.drain(i);
        }
    }
    for rounds in 0..300 {
        if sim.active().is_some_and(|a| a != old) {
            return rounds;
        }
        sim.round();
    }
    sim.fail("no controller after the crash".into());
}

#[test]
fn cluster_quorum_followers_elect_at_once_when_the_leaders_process_is_gone() {
    let seeds = 0..40u64;
    let with: Vec<usize> = seeds.clone().map(|s| failover_rounds(s, true)).collect();
    let without: Vec<usize> = seeds.map(|s| failover_rounds(s, false)).collect();
    // Without the notice a follower waits out at least the minimum election timeout
    // (10 ticks) since the leader's last heartbeat; with it, the first survivor calls the
    // election at its next tick and the second one `ELECTION_STAGGER_TICKS` later. This
    // simulated disk is slow (a follower's vote waits for its persist, often several rounds
    // behind), and a lost message costs a full election timeout, so not every run is fast.
    let median = |v: &[usize]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    assert!(without.iter().all(|&r| r >= 9), "{without:?}");
    assert!(median(&without) >= 10, "{without:?}");
    assert!(median(&with) <= 4, "{with:?}");
    let fast = with.iter().filter(|&&r| r <= 5).count();
    assert!(fast * 4 >= with.len() * 3, "{with:?}");
}
