//! The simulated world: an event queue in virtual time, the nodes (quorum, controller, broker
//! side with one `PartitionLogModel` and role per partition), the network (latency, loss,
//! duplication, reordering, partitions), the disks (raft persists and log fdatasyncs completing
//! after a latency; slow and full disks), the model clients and the fault schedule. Every choice
//! comes from one seeded ChaCha RNG and the queue breaks ties by insertion order, so a seed
//! replays exactly.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::hash::{Hash, Hasher};

use raft::prelude::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::checks::{Check, Checker};
use super::{Failure, SimConfig, Stats};
use crate::cluster::controller::reassignment::ReassignmentChange;
use crate::cluster::controller::{
    BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig, CreateTopic,
};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{
    MetadataRecord, NO_LEADER, decode_entry, encode_entry,
};
use crate::cluster::quorum::{MetadataQuorum, PersistedState, QuorumConfig, QuorumOutput};
use crate::cluster::replication::follower::{FetchResponse, FollowerAction, FollowerPartition};
use crate::cluster::replication::leader::{LeaderOutput, LeaderPartition};
use crate::cluster::replication::log_model::SequenceCheck;
use crate::cluster::replication::{
    AckDurability, AlterPartitionRequest, FetchAnswer, FetchRequest, LogEntry, PartitionLogModel,
    PartitionState, ReplicaLog, ReplicationConfig, codes,
};

const TICK_MS: u64 = 100;
const HEARTBEAT_MS: u64 = 500;
const SESSION_MS: u64 = 3_000;
const CLIENT_TIMEOUT_MS: u64 = 3_000;
const PRODUCE_TIMEOUT_MS: u64 = 2_500;
const FETCH_TIMEOUT_MS: u64 = 500;
const IDLE_FETCH_MS: u64 = 20;
const HEAL_LIMIT_MS: u64 = 90_000;
const TOPIC: &str = "sim";
const TOPIC_ID: Uuid = Uuid::from_u128(0x5151);
const MIN_ISR: usize = 2;
const TRACE_LINES: usize = 60;

#[derive(Clone, Debug)]
enum Msg {
    Raft(Box<Message>),
    Register {
        incarnation: Uuid,
    },
    Heartbeat {
        epoch: i64,
        offset: u64,
        want_fence: bool,
        /// The node's disk is full (the broker's log dir below its floor).
        log_dir_full: bool,
    },
    Alter(AlterPartitionRequest),
    AlterReply {
        part: usize,
        result: Result<PartitionState, i16>,
    },
    Fetch {
        part: usize,
        id: u64,
        req: FetchRequest,
    },
    FetchReply {
        part: usize,
        id: u64,
        resp: FetchResponse,
    },
    Produce {
        req: u64,
        part: usize,
        acks_all: bool,
        pid: i64,
        seq: i32,
        payload: u64,
    },
    ProduceReply {
        req: u64,
        result: Result<i64, i16>,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER, with the leader epoch of the leader that answered.
    OutOfOrder {
        req: u64,
        leader_epoch: i32,
    },
    Consume {
        req: u64,
        part: usize,
        offset: i64,
    },
    ConsumeReply {
        req: u64,
        result: Result<Vec<LogEntry>, i16>,
    },
}

#[derive(Clone, Debug)]
enum Event {
    Tick(usize),
    Deliver {
        from: i32,
        to: i32,
        to_inc: u32,
        msg: Msg,
    },
    RaftDiskDone(usize, u32),
    LogSynced {
        node: usize,
        inc: u32,
        part: usize,
        upto: i64,
        generation: u64,
    },
    FollowerFetch {
        node: usize,
        inc: u32,
        part: usize,
        timer: u64,
    },
    Client(usize, u64),
    Fault,
    Restart(usize),
    Heal(u64),
    DiskBack(usize),
    /// `observer` learns that node `gone`'s process is gone (its controller listener refused
    /// a connection); `gone_inc` is the incarnation that crashed.
    ProcessGone {
        observer: usize,
        gone: usize,
        gone_inc: u32,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // min-heap
    }
}

enum Role {
    None,
    Leader(Box<LeaderPartition>),
    Follower(FollowerPartition),
}

struct Replica {
    log: PartitionLogModel,
    role: Role,
    /// The HW this replica knows (kept across role changes; 0 after a restart).
    hw: i64,
    sync_in_flight: bool,
    fetch_gen: u64,
    /// Bumped for every follower role: a fetch answer meant for an earlier role (delayed or
    /// duplicated by the network) is dropped, as the broker's fetcher matches answers to the
    /// round that asked. Without it, a replica removed and re-added by a reassignment took a
    /// stale answer whose fetch id the new role reused.
    role_gen: u64,
}

struct Node {
    id: i32,
    up: bool,
    inc: u32,
    quorum: MetadataQuorum,
    controller: Controller,
    raft_disk: PersistedState,
    raft_unsynced: VecDeque<QuorumOutput>,
    incarnation: Uuid,
    broker_epoch: Option<i64>,
    roles_at: (u64, Option<i64>),
    want_fence: bool,
    replicas: Vec<Replica>,
    disk_full: bool,
    slow_disk: bool,
    /// Proposals whose commit answers someone: (term, index) -> (to, reply).
    replies: BTreeMap<(u64, u64), (i32, Msg)>,
}

#[derive(Clone, Debug)]
enum ClientKind {
    Producer { acks_all: bool },
    Consumer,
}

#[derive(Clone, Debug)]
struct Inflight {
    req: u64,
    seq: i32,
    payload: u64,
}

struct Client {
    id: i32,
    kind: ClientKind,
    part: usize,
    pid: i64,
    seq: i32,
    next_payload: u64,
    inflight: Option<Inflight>,
    position: i64,
    req: u64,
    timer: u64,
}

pub struct World {
    seed: u64,
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    /// Leader waiter id -> (client, request id).
    waiters: BTreeMap<u64, (usize, u64)>,
    next_waiter: u64,
    next_pid: i64,
    blocked: BTreeMap<u64, Vec<bool>>,
    next_partition: u64,
    faults_on: bool,
    clients_on: bool,
    checker: Checker,
    trace: VecDeque<String>,
    digest: std::collections::hash_map::DefaultHasher,
    stats: Stats,
    failure: Option<String>,
}

fn quorum_config(nodes: usize, id: i32, seed: u64) -> QuorumConfig {
    QuorumConfig::from_timeouts(id, (0..nodes as i32).collect(), TICK_MS, 1000, 2000, seed)
}

fn controller_config() -> ControllerConfig {
    ControllerConfig {
        session_timeout_ms: SESSION_MS,
        min_insync_replicas: MIN_ISR,
        ..Default::default()
    }
}

fn partition_state(image: &MetadataImage, part: usize) -> Option<PartitionState> {
    let t = image.topic_by_name(TOPIC)?;
    let p = t.partitions.get(&(part as i32))?;
    Some(PartitionState {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: p.isr.clone(),
        replicas: p.replicas.clone(),
    })
}

fn client_index(id: i32) -> Option<usize> {
    (id >= 1000).then(|| (id - 1000) as usize)
}

impl World {
    pub fn new(seed: u64, cfg: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = (0..cfg.nodes as i32)
            .map(|id| Node {
                id,
                up: true,
                inc: 0,
                quorum: MetadataQuorum::new(quorum_config(cfg.nodes, id, seed)).expect("quorum"),
                controller: Controller::new(controller_config(), MetadataImage::default()),
                raft_disk: PersistedState::default(),
                raft_unsynced: VecDeque::new(),
                incarnation: Uuid::from_u128(rng.r#gen::<u128>()),
                broker_epoch: None,
                roles_at: (0, None),
                want_fence: false,
                replicas: (0..cfg.partitions)
                    .map(|_| Replica {
                        log: PartitionLogModel::default(),
                        role: Role::None,
                        hw: 0,
                        sync_in_flight: false,
                        fetch_gen: 0,
                        role_gen: 0,
                    })
                    .collect(),
                disk_full: false,
                slow_disk: false,
                replies: BTreeMap::new(),
            })
            .collect();
        let mut clients = Vec::new();
        for part in 0..cfg.partitions {
            clients.push((part, ClientKind::Producer { acks_all: true }));
            clients.push((part, ClientKind::Consumer));
            if part == 0 {
                clients.push((part, ClientKind::Producer { acks_all: false }));
            }
        }
        let clients = clients
            .into_iter()
            .enumerate()
            .map(|(i, (part, kind))| Client {
                id: 1000 + i as i32,
                part,
                kind,
                pid: i as i64,
                seq: 0,
                next_payload: 0,
                inflight: None,
                position: 0,
                req: 0,
                timer: 0,
            })
            .collect::<Vec<_>>();
        let n = clients.len() as i64;
        Self {
            checker: Checker::new(cfg.partitions),
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            waiters: BTreeMap::new(),
            next_waiter: 0,
            next_pid: n,
            blocked: BTreeMap::new(),
            next_partition: 0,
            faults_on: false,
            clients_on: false,
            trace: VecDeque::new(),
            digest: Default::default(),
            stats: Stats::default(),
            failure: None,
            cfg,
        }
    }

    fn config_line(&self) -> String {
        format!(
            "{} nodes, {} partitions, {:?}, mutation {:?}",
            self.cfg.nodes, self.cfg.partitions, self.cfg.durability, self.cfg.mutation
        )
    }

    /// Runs the three phases: start (a leader, the topic, full ISRs), faults with clients,
    /// healing (everything back, clients stopped) until every replica converges.
    pub fn run(mut self) -> Result<Stats, Failure> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.phases()));
        let message = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(m)) => Some(m),
            Err(p) => Some(format!(
                "panic in the code under test: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        self.stats.virtual_ms = self.now;
        self.stats.digest = self.digest.finish();
        match message {
            None => Ok(self.stats.clone()),
            Some(message) => Err(Failure {
                seed: self.seed,
                config: self.config_line(),
                message,
                virtual_ms: self.now,
                trace: self.trace.iter().cloned().collect(),
            }),
        }
    }

    fn phases(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            let at = self.rng.gen_range(0..TICK_MS);
            self.schedule(at, Event::Tick(i));
        }
        self.run_until(60_000, "start: topic created with full ISRs", |w| {
            w.converged()
        })?;
        self.trace("started".into());
        self.clients_on = true;
        self.faults_on = true;
        for c in 0..self.clients.len() {
            self.schedule(1, Event::Client(c, 0));
        }
        self.schedule(500, Event::Fault);
        let end = self.now + self.cfg.fault_ms;
        self.run_until(self.cfg.fault_ms, "fault phase", |w| w.now >= end)?;
        // Heal: every node back, the network whole, disks fine, clients stopped.
        self.faults_on = false;
        self.clients_on = false;
        self.blocked.clear();
        for i in 0..self.nodes.len() {
            self.nodes[i].disk_full = false;
            self.nodes[i].slow_disk = false;
            if !self.nodes[i].up {
                self.restart(i);
            }
        }
        self.trace("healing".into());
        self.run_until(HEAL_LIMIT_MS, "convergence after healing", |w| {
            w.converged()
        })
        .map_err(|e| format!("{e}; state: {}", self.summary()))?;
        // The replica sets as `converged` judged them: the active controller's image (another
        // node's may not have applied the last reassignment step yet).
        let image = self
            .nodes
            .iter()
            .find(|n| n.up && n.controller.is_active())
            .expect("converged")
            .controller
            .committed()
            .clone();
        for p in 0..self.cfg.partitions {
            let s = partition_state(&image, p).expect("converged");
            for &r in &s.replicas {
                let log = &self.nodes[r as usize].replicas[p].log;
                self.checker.check_final_log(r, p, log)?;
            }
        }
        Ok(())
    }

    fn run_until(
        &mut self,
        limit_ms: u64,
        what: &str,
        done: impl Fn(&World) -> bool,
    ) -> Result<(), String> {
        let deadline = self.now + limit_ms;
        let mut checks = 0u32;
        loop {
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            checks += 1;
            if checks.is_multiple_of(64) && done(self) {
                return Ok(());
            }
            let Some(s) = self.queue.pop() else {
                return Err(format!("no events left before: {what}"));
            };
            if s.at > deadline {
                self.queue.push(s);
                self.now = deadline;
                return if done(self) {
                    Ok(())
                } else {
                    Err(format!("not reached within {limit_ms} ms: {what}"))
                };
            }
            self.now = s.at;
            self.stats.events += 1;
            self.handle(s.ev);
        }
    }

    /// Every node up and registered; each partition led, ISR = all replicas, every replica's
    /// log equal to the leader's, and the leader's HW at its log end.
    fn converged(&self) -> bool {
        let Some(a) = self.nodes.iter().find(|n| n.up && n.controller.is_active()) else {
            return false;
        };
        let image = a.controller.committed();
        if self.nodes.iter().any(|n| {
            !n.up || n.broker_epoch.is_none() || image.brokers.get(&n.id).is_none_or(|b| b.fenced)
        }) {
            return false;
        }
        (0..self.cfg.partitions).all(|p| {
            let Some(s) = partition_state(image, p) else {
                return false;
            };
            if s.leader == NO_LEADER || s.isr.len() != s.replicas.len() {
                return false;
            }
            let leader = &self.nodes[s.leader as usize].replicas[p];
            let Role::Leader(l) = &leader.role else {
                return false;
            };
            l.leader_epoch() == s.leader_epoch
                && l.high_watermark() == leader.log.log_end_offset()
                && s.replicas.iter().all(|&r| {
                    self.nodes[r as usize].replicas[p].log.entries() == leader.log.entries()
                })
        })
    }

    /// Who is up, fenced and leading what, for a failure message.
    fn summary(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let image = n.controller.committed();
            let fenced = image.brokers.get(&n.id).map(|b| b.fenced);
            out.push_str(&format!(
                "\n  node {} up {} active {} broker epoch {:?} fenced {fenced:?} metadata offset {}",
                n.id,
                n.up,
                n.controller.is_active(),
                n.broker_epoch,
                image.last_offset
            ));
            for (p, r) in n.replicas.iter().enumerate() {
                let role = match &r.role {
                    Role::Leader(l) => format!(
                        "leader epoch {} isr {:?} hw {}",
                        l.leader_epoch(),
                        l.isr(),
                        l.high_watermark()
                    ),
                    Role::Follower(f) => {
                        format!("follower of {} epoch {}", f.leader(), f.leader_epoch())
                    }
                    Role::None => "none".into(),
                };
                let st = image
                    .topic_by_name(TOPIC)
                    .and_then(|t| t.partitions.get(&(p as i32)))
                    .map(|x| format!("{x:?}"));
                out.push_str(&format!(
                    "\n    p{p}: {role}, leo {} synced {}; image {st:?}",
                    r.log.log_end_offset(),
                    r.log.synced_end_offset()
                ));
            }
        }
        out
    }

    fn schedule(&mut self, after: u64, ev: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + after,
            seq: self.seq,
            ev,
        });
    }

    fn trace(&mut self, line: String) {
        let line = format!("{:>7} {line}", self.now);
        line.hash(&mut self.digest);
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn check(&mut self, c: Check) {
        if let Err(e) = c
            && self.failure.is_none()
        {
            self.failure = Some(e);
        }
    }

    fn fail(&mut self, e: String) {
        self.check(Err(e));
    }

    fn disk_latency(&mut self, i: usize) -> u64 {
        let base = self.rng.gen_range(1..8);
        if self.nodes[i].slow_disk {
            base * 30
        } else {
            base
        }
    }

    // ---- network ----

    fn is_blocked(&self, a: i32, b: i32) -> bool {
        if a >= 1000 || b >= 1000 {
            return false;
        }
        self.blocked
            .values()
            .any(|side| side[a as usize] != side[b as usize])
    }

    fn send(&mut self, from: i32, to: i32, msg: Msg) {
        if self.is_blocked(from, to) || self.rng.gen_bool(0.02) {
            return;
        }
        let to_inc = if to >= 1000 {
            0
        } else {
            self.nodes[to as usize].inc
        };
        let copies = if self.rng.gen_bool(0.01) { 2 } else { 1 };
        for _ in 0..copies {
            let latency = if self.rng.gen_bool(0.05) {
                self.rng.gen_range(10..120)
            } else {
                self.rng.gen_range(1..6)
            };
            self.schedule(
                latency,
                Event::Deliver {
                    from,
                    to,
                    to_inc,
                    msg: msg.clone(),
                },
            );
        }
    }

    // ---- event dispatch ----

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Tick(i) => {
                self.schedule(TICK_MS, Event::Tick(i));
                if self.nodes[i].up {
                    self.tick(i);
                    self.after(i);
                }
            }
            Event::Deliver {
                from,
                to,
                to_inc,
                msg,
            } => {
                if let Some(c) = client_index(to) {
                    self.client_message(c, msg);
                    return;
                }
                let i = to as usize;
                if !self.nodes[i].up || self.nodes[i].inc != to_inc || self.is_blocked(from, to) {
                    return;
                }
                self.node_message(i, from, msg);
                self.after(i);
            }
            Event::RaftDiskDone(i, inc) => {
                if self.nodes[i].up && self.nodes[i].inc == inc {
                    self.raft_synced(i);
                    self.after(i);
                }
            }
            Event::LogSynced {
                node,
                inc,
                part,
                upto,
                generation,
            } => {
                if self.nodes[node].up && self.nodes[node].inc == inc {
                    let r = &mut self.nodes[node].replicas[part];
                    r.sync_in_flight = false;
                    r.log.synced_to(upto, generation);
                    self.log_progress(node, part);
                    self.maybe_sync(node, part);
                    if let Role::Follower(f) = &self.nodes[node].replicas[part].role
                        && !f.in_flight()
                    {
                        self.fetch_soon(node, part, 0);
                    }
                    self.after(node);
                }
            }
            Event::FollowerFetch {
                node,
                inc,
                part,
                timer,
            } => {
                let n = &self.nodes[node];
                if n.up && n.inc == inc && n.replicas[part].fetch_gen == timer {
                    self.send_fetch(node, part);
                }
            }
            Event::Client(c, timer) => {
                if self.clients_on && self.clients[c].timer == timer {
                    self.client_act(c);
                }
            }
            Event::Fault => {
                if self.faults_on {
                    self.inject_fault();
                    let next = self.rng.gen_range(300..2_500);
                    self.schedule(next, Event::Fault);
                }
            }
            Event::Restart(i) => {
                if !self.nodes[i].up {
                    self.restart(i);
                }
            }
            Event::Heal(id) => {
                if self.blocked.remove(&id).is_some() {
                    self.trace(format!("heal network partition {id}"));
                }
            }
            Event::DiskBack(i) => {
                self.nodes[i].disk_full = false;
                self.nodes[i].slow_disk = false;
            }
            Event::ProcessGone {
                observer,
                gone,
                gone_inc,
            } => {
                // Mostly while it is still down; sometimes late, about a restarted process
                // (a refusal from before its listener was bound): harmless but disruptive.
                let still_gone = !self.nodes[gone].up && self.nodes[gone].inc == gone_inc;
                if self.nodes[observer].up && (still_gone || self.rng.gen_bool(0.1)) {
                    self.stats.process_gone += 1;
                    let id = self.nodes[gone].id;
                    self.trace(format!(
                        "node {observer}: node {id}'s process is gone{}",
                        if still_gone { "" } else { " (stale)" }
                    ));
                    self.nodes[observer].quorum.peer_process_gone(id);
                    self.nodes[observer].controller.broker_process_gone(id);
                    self.after(observer);
                }
            }
        }
    }

    /// After any event on node i: drain the quorum, follow metadata, check the HWs.
    fn after(&mut self, i: usize) {
        self.drain(i);
        let me = &self.nodes[i];
        let image = me.controller.committed();
        let last_offset = image.last_offset;
        let registered = image
            .brokers
            .get(&me.id)
            .filter(|b| b.registration.incarnation_id == me.incarnation)
            .map(|b| b.registration.broker_epoch);
        if (last_offset, registered) != me.roles_at {
            if registered != me.broker_epoch {
                // A new broker epoch (a re-registration): every role restarts with it, or its
                // fetches and AlterPartitions carry a stale epoch forever (seed 493).
                for p in 0..self.cfg.partitions {
                    if let Role::Leader(l) = &mut self.nodes[i].replicas[p].role {
                        let out = l.resign();
                        self.handle_leader_outputs(i, p, out);
                    }
                    self.nodes[i].replicas[p].role = Role::None;
                }
            }
            self.nodes[i].broker_epoch = registered;
            self.nodes[i].roles_at = (last_offset, registered);
            self.sync_roles(i);
        }
        for p in 0..self.cfg.partitions {
            let n = &self.nodes[i];
            let r = &n.replicas[p];
            let (epoch, hw) = match &r.role {
                Role::Leader(l) => (Some(l.leader_epoch()), l.high_watermark()),
                Role::Follower(f) => (None, f.high_watermark()),
                Role::None => continue,
            };
            let c = self.checker.observe_hw(n.id, n.inc, p, epoch, hw, &r.log);
            self.nodes[i].replicas[p].hw = hw;
            self.check(c);
        }
    }

    // ---- metadata quorum and controller ----

    fn drain(&mut self, i: usize) {
        loop {
            let outputs = self.nodes[i].quorum.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for o in outputs {
                self.quorum_output(i, o);
            }
        }
    }

    fn quorum_output(&mut self, i: usize, o: QuorumOutput) {
        let id = self.nodes[i].id;
        match o {
            QuorumOutput::Send { to, message } => self.send(id, to, Msg::Raft(Box::new(message))),
            p @ QuorumOutput::Persist { .. } => {
                self.nodes[i].raft_unsynced.push_back(p);
                let d = self.disk_latency(i);
                let inc = self.nodes[i].inc;
                self.schedule(d, Event::RaftDiskDone(i, inc));
            }
            QuorumOutput::Committed { index, term, data } => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                data.hash(&mut h);
                let c = self
                    .checker
                    .observe_raft_commit(id, index, term, h.finish());
                self.check(c);
                if !data.is_empty() {
                    let records = match decode_entry(&data) {
                        Ok(r) => r,
                        Err(e) => return self.fail(format!("undecodable metadata entry: {e}")),
                    };
                    if let Err(e) = self.nodes[i].controller.apply_committed(index, &records) {
                        return self.fail(format!("node {id}: metadata entry {index}: {e}"));
                    }
                }
                if let Some((to, reply)) = self.nodes[i].replies.remove(&(term, index)) {
                    self.send(id, to, reply);
                }
            }
            QuorumOutput::InstallSnapshot { data, .. } => {
                let image = MetadataImage::from_snapshot(&data).expect("snapshot");
                self.nodes[i].controller.install_snapshot(image);
            }
            QuorumOutput::LeaderChanged { term, leader } => {
                if leader == Some(id) {
                    let c = self.checker.observe_raft_leader(term, id);
                    self.check(c);
                    self.stats.leader_changes += 1;
                    self.trace(format!("node {id} leads metadata term {term}"));
                } else if self.nodes[i].controller.is_active() {
                    self.nodes[i].controller.resign();
                    self.nodes[i].replies.clear();
                }
            }
            QuorumOutput::LeaderReady { .. } => {
                let records = self.nodes[i].controller.become_active(self.now, "sim");
                self.propose(i, records, None);
            }
        }
    }

    fn raft_synced(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(QuorumOutput::Persist {
            ready,
            hard_state,
            entries,
            snapshot,
            ..
        }) = node.raft_unsynced.pop_front()
        else {
            return;
        };
        if let Some(s) = snapshot {
            let idx = s.get_metadata().index;
            node.raft_disk.entries.retain(|e| e.index > idx);
            node.raft_disk.snapshot = Some(s);
        }
        if let Some(first) = entries.first() {
            let first = first.index;
            node.raft_disk.entries.retain(|e| e.index < first);
            node.raft_disk.entries.extend(entries);
        }
        if let Some(hs) = hard_state {
            node.raft_disk.hard_state = hs;
        }
        node.quorum.persisted(ready);
    }

    fn propose(&mut self, i: usize, records: Vec<MetadataRecord>, reply: Option<(i32, Msg)>) {
        if records.is_empty() {
            return;
        }
        match self.nodes[i].quorum.propose(encode_entry(&records)) {
            Ok(at) => {
                if let Some(r) = reply {
                    self.nodes[i].replies.insert(at, r);
                }
            }
            Err(_) => self.nodes[i].controller.resign(),
        }
    }

    fn tick(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].quorum.tick();
        self.drain(i);
        let id = self.nodes[i].id;
        if self.nodes[i].controller.is_active() {
            for batch in self.nodes[i].controller.tick(now) {
                self.trace(
                    format!("controller {id} fences: {batch:?}")
                        .chars()
                        .take(160)
                        .collect(),
                );
                self.propose(i, batch, None);
            }
            self.maybe_create_topic(i);
        }
        // The broker side: register, then heartbeat.
        if now % HEARTBEAT_MS < TICK_MS
            && let Some(to) = self.nodes[i].quorum.leader()
        {
            let msg = match self.nodes[i].broker_epoch {
                None => Msg::Register {
                    incarnation: self.nodes[i].incarnation,
                },
                Some(epoch) => Msg::Heartbeat {
                    epoch,
                    offset: self.nodes[i].controller.committed().last_offset,
                    want_fence: std::mem::take(&mut self.nodes[i].want_fence),
                    log_dir_full: self.nodes[i].disk_full,
                },
            };
            self.send_or_local(i, to, msg);
        }
        for p in 0..self.cfg.partitions {
            if let Role::Leader(l) = &mut self.nodes[i].replicas[p].role {
                l.tick(now);
                self.leader_outputs(i, p);
            }
        }
    }

    /// Requests to the controller go over the network even to this node (uniform loss).
    fn send_or_local(&mut self, i: usize, to: i32, msg: Msg) {
        let id = self.nodes[i].id;
        self.send(id, to, msg);
    }

    fn maybe_create_topic(&mut self, i: usize) {
        let c = &self.nodes[i].controller;
        let rf = self.cfg.nodes.min(3);
        if c.image().topic_by_name(TOPIC).is_some()
            || c.image().unfenced_brokers().count() < self.cfg.nodes
        {
            return;
        }
        let t = CreateTopic {
            name: TOPIC.into(),
            topic_id: TOPIC_ID,
            num_partitions: self.cfg.partitions as i32,
            replication_factor: rf as i16,
            configs: [("min.insync.replicas".to_string(), MIN_ISR.to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        if let Ok((results, records)) = self.nodes[i].controller.create_topics(&[t], false)
            && results[0].is_ok()
        {
            self.propose(i, records, None);
        }
    }

    fn node_message(&mut self, i: usize, from: i32, msg: Msg) {
        let now = self.now;
        let id = self.nodes[i].id;
        match msg {
            Msg::Raft(m) => {
                let _ = self.nodes[i].quorum.step(*m);
            }
            Msg::Register { incarnation } => {
                let req = BrokerRegistration {
                    broker_id: from,
                    cluster_id: None,
                    incarnation_id: incarnation,
                    endpoints: Vec::new(),
                    rack: None,
                };
                if let Ok((_, records)) = self.nodes[i].controller.register_broker(&req, now) {
                    self.propose(i, records, None);
                }
            }
            Msg::Heartbeat {
                epoch,
                offset,
                want_fence,
                log_dir_full,
            } => {
                let hb = BrokerHeartbeat {
                    broker_id: from,
                    broker_epoch: epoch,
                    current_metadata_offset: offset,
                    want_fence,
                    want_shutdown: false,
                    log_dir_full,
                };
                if let Ok((_, records)) = self.nodes[i].controller.heartbeat(&hb, now) {
                    if want_fence {
                        self.trace(format!("broker {from} asks to be fenced (leader move)"));
                    } else if log_dir_full {
                        let moved: Vec<i32> = records
                            .iter()
                            .filter_map(|r| match r {
                                MetadataRecord::PartitionChange(c) => {
                                    c.leader.filter(|&l| l != from).map(|_| c.partition)
                                }
                                _ => None,
                            })
                            .collect();
                        if !moved.is_empty() {
                            self.trace(format!(
                                "broker {from}'s disk is full: leaderships of {moved:?} move"
                            ));
                            self.stats.full_disk_moves += moved.len() as u64;
                        }
                    }
                    self.propose(i, records, None);
                }
            }
            Msg::Alter(req) => {
                let part = req.partition as usize;
                match self.nodes[i].controller.alter_partition(&req) {
                    Ok((state, records)) => {
                        self.trace(format!(
                            "controller {id}: p{part} ISR -> {:?} (partition epoch {})",
                            state.isr, state.partition_epoch
                        ));
                        self.stats.isr_changes += 1;
                        let reply = Msg::AlterReply {
                            part,
                            result: Ok(state),
                        };
                        if records.is_empty() {
                            self.send(id, from, reply);
                        } else {
                            self.propose(i, records, Some((from, reply)));
                        }
                    }
                    Err(e) => self.send(
                        id,
                        from,
                        Msg::AlterReply {
                            part,
                            result: Err(e.code),
                        },
                    ),
                }
            }
            Msg::AlterReply { part, result } => {
                if let Role::Leader(l) = &mut self.nodes[i].replicas[part].role {
                    let ours = result.as_ref().map_or(true, |s| {
                        s.leader_epoch == l.leader_epoch() && s.leader == id
                    });
                    if ours {
                        l.on_alter_partition_response(result);
                        self.leader_outputs(i, part);
                    }
                }
            }
            Msg::Fetch { part, id: fid, req } => self.serve_fetch(i, from, part, fid, req),
            Msg::FetchReply {
                part,
                id: fid,
                resp,
            } => self.follower_reply(i, part, fid, resp),
            Msg::Produce {
                req,
                part,
                acks_all,
                pid,
                seq,
                payload,
            } => self.serve_produce(i, from, req, part, acks_all, pid, seq, payload),
            Msg::Consume { req, part, offset } => {
                let r = &self.nodes[i].replicas[part];
                let result = match &r.role {
                    Role::Leader(l) => {
                        let limit = l.consumer_read_limit();
                        if offset > r.log.log_end_offset() {
                            Err(codes::OFFSET_OUT_OF_RANGE)
                        } else if offset >= limit {
                            Ok(Vec::new())
                        } else {
                            Ok(r.log.read(offset, (limit - offset).min(50) as usize))
                        }
                    }
                    _ => Err(codes::NOT_LEADER_OR_FOLLOWER),
                };
                self.send(id, from, Msg::ConsumeReply { req, result });
            }
            Msg::ProduceReply { .. } | Msg::OutOfOrder { .. } | Msg::ConsumeReply { .. } => {}
        }
    }

    // ---- replication: roles, fetches, produce ----

    /// Follows the committed metadata: leader, follower or nothing for each partition.
    fn sync_roles(&mut self, i: usize) {
        let now = self.now;
        let id = self.nodes[i].id;
        for p in 0..self.cfg.partitions {
            let state = partition_state(self.nodes[i].controller.committed(), p);
            let be = self.nodes[i].broker_epoch;
            let desired = match (&state, be) {
                (Some(s), Some(_)) if s.leader == id => Some((true, s.leader, s.leader_epoch)),
                (Some(s), Some(_)) if s.leader != NO_LEADER && s.replicas.contains(&id) => {
                    Some((false, s.leader, s.leader_epoch))
                }
                _ => None,
            };
            let r = &mut self.nodes[i].replicas[p];
            let current = match &r.role {
                Role::Leader(l) => Some((true, id, l.leader_epoch())),
                Role::Follower(f) => Some((false, f.leader(), f.leader_epoch())),
                Role::None => None,
            };
            if current == desired {
                if let (Role::Leader(l), Some(s)) = (&mut r.role, &state) {
                    l.on_partition_state(s);
                    self.leader_outputs(i, p);
                }
                continue;
            }
            if let Role::Leader(l) = &mut r.role {
                let out = l.resign();
                self.handle_leader_outputs(i, p, out);
            }
            let r = &mut self.nodes[i].replicas[p];
            r.role = Role::None;
            // A reassignment removed this replica: its log is deleted, as the broker does.
            if let Some(s) = &state
                && !s.replicas.contains(&id)
                && r.log.log_end_offset() > 0
            {
                r.log.truncate_to(0);
                r.hw = 0;
                self.trace(format!(
                    "node {id}: no replica of p{p} any more; log deleted"
                ));
            }
            let r = &mut self.nodes[i].replicas[p];
            match desired {
                Some((true, _, epoch)) => {
                    let s = state.expect("desired from a state");
                    r.log.start_epoch(epoch);
                    let mut rc = ReplicationConfig {
                        min_insync_replicas: MIN_ISR,
                        replica_lag_time_max_ms: 2_000,
                        alter_partition_retry_ms: 3_000,
                        max_fetch_entries: 64,
                        ack_durability: self.cfg.durability,
                        ..Default::default()
                    };
                    rc.mutation = self.cfg.mutation;
                    let l = LeaderPartition::new(
                        rc,
                        id,
                        be.expect("registered"),
                        TOPIC_ID,
                        p as i32,
                        &s,
                        &r.log,
                        r.hw,
                        now,
                    );
                    let leo = r.log.log_end_offset();
                    r.role = Role::Leader(Box::new(l));
                    self.trace(format!(
                        "node {id} leads p{p} epoch {epoch} isr {:?} leo {leo}",
                        s.isr
                    ));
                    self.leader_outputs(i, p);
                }
                Some((false, leader, epoch)) => {
                    r.role_gen += 1;
                    r.role = Role::Follower(FollowerPartition::new(
                        id,
                        be.expect("registered"),
                        leader,
                        epoch,
                        self.cfg.durability,
                        r.hw,
                    ));
                    self.fetch_soon(i, p, 0);
                }
                None => {}
            }
        }
    }

    fn leader_outputs(&mut self, i: usize, p: usize) {
        if let Role::Leader(l) = &mut self.nodes[i].replicas[p].role {
            let out = l.take_outputs();
            self.handle_leader_outputs(i, p, out);
        }
    }

    fn handle_leader_outputs(&mut self, i: usize, _p: usize, out: Vec<LeaderOutput>) {
        let id = self.nodes[i].id;
        for o in out {
            match o {
                LeaderOutput::AlterPartition(req) => {
                    if let Some(to) = self.nodes[i].quorum.leader() {
                        self.send(id, to, Msg::Alter(req));
                    }
                }
                LeaderOutput::ProduceDone { id: w, result } => {
                    if let Some((c, req)) = self.waiters.remove(&w) {
                        let to = self.clients[c].id;
                        self.send(id, to, Msg::ProduceReply { req, result });
                    }
                }
            }
        }
    }

    fn fetch_soon(&mut self, i: usize, p: usize, after: u64) {
        let inc = self.nodes[i].inc;
        let r = &mut self.nodes[i].replicas[p];
        r.fetch_gen += 1;
        let ev = Event::FollowerFetch {
            node: i,
            inc,
            part: p,
            timer: r.fetch_gen,
        };
        self.schedule(after, ev);
    }

    fn send_fetch(&mut self, i: usize, p: usize) {
        let id = self.nodes[i].id;
        let r = &mut self.nodes[i].replicas[p];
        let Role::Follower(f) = &mut r.role else {
            return;
        };
        let (fid, req) = f.next_fetch(&r.log);
        let leader = f.leader();
        // The role's generation rides in the high half of the id (echoed by the leader).
        let tagged = (r.role_gen << 32) | (fid & 0xffff_ffff);
        self.send(
            id,
            leader,
            Msg::Fetch {
                part: p,
                id: tagged,
                req,
            },
        );
        // If nothing comes back, the timeout sends the next one.
        self.fetch_soon(i, p, FETCH_TIMEOUT_MS);
    }

    fn serve_fetch(&mut self, i: usize, from: i32, p: usize, fid: u64, req: FetchRequest) {
        let now = self.now;
        let id = self.nodes[i].id;
        let eligible = self.nodes[i]
            .controller
            .committed()
            .brokers
            .get(&from)
            .is_some_and(|b| !b.fenced && b.registration.broker_epoch == req.broker_epoch);
        let r = &mut self.nodes[i].replicas[p];
        let Role::Leader(l) = &mut r.role else {
            self.send(
                id,
                from,
                Msg::FetchReply {
                    part: p,
                    id: fid,
                    resp: FetchResponse::Error(codes::NOT_LEADER_OR_FOLLOWER),
                },
            );
            return;
        };
        let resp = match l.on_fetch(&req, &r.log, eligible, now) {
            FetchAnswer::Read {
                from: at,
                max_entries,
                high_watermark,
            } => FetchResponse::Records {
                entries: r.log.read(at, max_entries),
                high_watermark,
            },
            FetchAnswer::Diverging {
                epoch,
                end_offset,
                high_watermark,
            } => FetchResponse::Diverging {
                epoch,
                end_offset,
                high_watermark,
            },
            FetchAnswer::Error(c) => FetchResponse::Error(c),
            FetchAnswer::TruncateLeader { to } => {
                r.log.truncate_to(to);
                l.on_log_progress(&r.log);
                FetchResponse::Records {
                    entries: Vec::new(),
                    high_watermark: l.high_watermark(),
                }
            }
        };
        self.leader_outputs(i, p);
        self.send(
            id,
            from,
            Msg::FetchReply {
                part: p,
                id: fid,
                resp,
            },
        );
    }

    fn follower_reply(&mut self, i: usize, p: usize, fid: u64, resp: FetchResponse) {
        let disk_full = self.nodes[i].disk_full;
        let id = self.nodes[i].id;
        let r = &mut self.nodes[i].replicas[p];
        let Role::Follower(f) = &mut r.role else {
            return;
        };
        if fid >> 32 != r.role_gen {
            return; // meant for an earlier follower role
        }
        match f.on_fetch_response(fid & 0xffff_ffff, resp, &r.log) {
            FollowerAction::Append(entries) => {
                if disk_full {
                    self.fetch_soon(i, p, 100);
                    return;
                }
                r.log.append_as_follower(&entries);
                f.appended(&r.log);
                self.maybe_sync(i, p);
                self.fetch_soon(i, p, 0);
            }
            FollowerAction::Truncate(to) => {
                let leo = r.log.log_end_offset();
                r.log.truncate_to(to);
                f.truncated(&r.log);
                self.stats.truncations += 1;
                self.trace(format!("node {id} truncates p{p} from {leo} to {to}"));
                self.fetch_soon(i, p, 0);
            }
            // The model log has no log start (its leaders never answer OFFSET_OUT_OF_RANGE):
            // a restart there is a backoff; the rule has unit tests and the broker runs it.
            FollowerAction::Backoff(_)
            | FollowerAction::RestartAt(_)
            | FollowerAction::RestartAndAppend { .. } => self.fetch_soon(i, p, 100),
            FollowerAction::Idle => {
                if !f.in_flight() {
                    self.fetch_soon(i, p, IDLE_FETCH_MS);
                }
            }
        }
    }

    /// Synced mode: an fdatasync of everything written so far, one at a time per log.
    fn maybe_sync(&mut self, i: usize, p: usize) {
        if self.cfg.durability != AckDurability::Synced {
            return;
        }
        let d = self.disk_latency(i);
        let inc = self.nodes[i].inc;
        let r = &mut self.nodes[i].replicas[p];
        if r.sync_in_flight || r.log.synced_end_offset() >= r.log.log_end_offset() {
            return;
        }
        r.sync_in_flight = true;
        let ev = Event::LogSynced {
            node: i,
            inc,
            part: p,
            upto: r.log.log_end_offset(),
            generation: r.log.generation(),
        };
        self.schedule(d, ev);
    }

    fn log_progress(&mut self, i: usize, p: usize) {
        let r = &mut self.nodes[i].replicas[p];
        if let Role::Leader(l) = &mut r.role {
            l.on_log_progress(&r.log);
            self.leader_outputs(i, p);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn serve_produce(
        &mut self,
        i: usize,
        from: i32,
        req: u64,
        p: usize,
        acks_all: bool,
        pid: i64,
        seq: i32,
        payload: u64,
    ) {
        let id = self.nodes[i].id;
        let disk_full = self.nodes[i].disk_full;
        let r = &mut self.nodes[i].replicas[p];
        let Role::Leader(l) = &mut r.role else {
            let result = Err(codes::NOT_LEADER_OR_FOLLOWER);
            return self.send(id, from, Msg::ProduceReply { req, result });
        };
        if let Err(code) = l.check_produce(acks_all) {
            return self.send(
                id,
                from,
                Msg::ProduceReply {
                    req,
                    result: Err(code),
                },
            );
        }
        let offset = match r.log.check_sequence(pid, seq) {
            SequenceCheck::OutOfOrder => {
                let leader_epoch = l.leader_epoch();
                return self.send(id, from, Msg::OutOfOrder { req, leader_epoch });
            }
            SequenceCheck::Duplicate(offset) => offset,
            SequenceCheck::Next => {
                if disk_full {
                    let result = Err(codes::KAFKA_STORAGE_ERROR);
                    return self.send(id, from, Msg::ProduceReply { req, result });
                }
                let epoch = l.leader_epoch();
                let offset = r.log.append_as_leader(epoch, pid, seq, payload);
                l.on_log_progress(&r.log);
                let c = self.checker.observe_write(p, epoch, id);
                self.check(c);
                self.maybe_sync(i, p);
                offset
            }
        };
        let c = client_index(from).expect("produce comes from a client");
        if acks_all {
            self.next_waiter += 1;
            let w = self.next_waiter;
            self.waiters.insert(w, (c, req));
            let deadline = self.now + PRODUCE_TIMEOUT_MS;
            if let Role::Leader(l) = &mut self.nodes[i].replicas[p].role {
                l.await_replication(w, offset, deadline);
            }
            self.leader_outputs(i, p);
        } else {
            self.leader_outputs(i, p);
            // A zombie (a leader of an older epoch, cut off from the controller) acknowledges
            // acks=1 writes, in Kafka too: such a record is lost, and the producer's next one
            // may land on the real leader below it.
            if let Role::Leader(l) = &self.nodes[i].replicas[p].role
                && l.leader_epoch() < self.newest_leader_epoch(p)
            {
                self.checker.observe_zombie_ack(pid, seq, offset);
            }
            self.send(
                id,
                from,
                Msg::ProduceReply {
                    req,
                    result: Ok(offset),
                },
            );
        }
    }

    /// The newest leader epoch of partition `p` any node's committed metadata holds.
    fn newest_leader_epoch(&self, p: usize) -> i32 {
        self.nodes
            .iter()
            .filter_map(|n| partition_state(n.controller.committed(), p))
            .map(|s| s.leader_epoch)
            .max()
            .unwrap_or(0)
    }

    // ---- clients ----

    /// The leader a client would find in a metadata response from some live node.
    fn find_leader(&mut self, p: usize) -> Option<i32> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        if up.is_empty() {
            return None;
        }
        let i = up[self.rng.gen_range(0..up.len())];
        let s = partition_state(self.nodes[i].controller.committed(), p)?;
        (s.leader != NO_LEADER).then_some(s.leader)
    }

    fn client_later(&mut self, c: usize, after: u64) {
        self.clients[c].timer += 1;
        let g = self.clients[c].timer;
        self.schedule(after, Event::Client(c, g));
    }

    fn client_act(&mut self, c: usize) {
        let p = self.clients[c].part;
        let Some(leader) = self.find_leader(p) else {
            return self.client_later(c, 100);
        };
        let cl = &mut self.clients[c];
        cl.req += 1;
        let req = cl.req;
        let from = cl.id;
        let msg = match cl.kind {
            ClientKind::Producer { acks_all } => {
                let inflight = cl.inflight.get_or_insert_with(|| {
                    cl.next_payload += 1;
                    Inflight {
                        req,
                        seq: cl.seq,
                        payload: ((from as u64) << 32) | cl.next_payload,
                    }
                });
                inflight.req = req;
                Msg::Produce {
                    req,
                    part: p,
                    acks_all,
                    pid: cl.pid,
                    seq: inflight.seq,
                    payload: inflight.payload,
                }
            }
            ClientKind::Consumer => Msg::Consume {
                req,
                part: p,
                offset: cl.position,
            },
        };
        self.send(from, leader, msg);
        self.client_later(c, CLIENT_TIMEOUT_MS);
    }

    fn client_message(&mut self, c: usize, msg: Msg) {
        if !self.clients_on {
            return;
        }
        let msg = match msg {
            Msg::OutOfOrder { req, leader_epoch } => {
                // A zombie (a leader of an older epoch that has not heard of its successor)
                // lacks what the new leader acknowledged and answers OUT_OF_ORDER, in Kafka
                // too; the producer retries. From the current leader it is a real gap.
                let p = self.clients[c].part;
                let newest = self.newest_leader_epoch(p);
                if leader_epoch < newest {
                    self.trace(format!(
                        "client {c}: OUT_OF_ORDER from a zombie leader of p{p} epoch {leader_epoch} (current {newest})"
                    ));
                    Msg::ProduceReply {
                        req,
                        result: Err(codes::NOT_LEADER_OR_FOLLOWER),
                    }
                } else {
                    Msg::ProduceReply {
                        req,
                        result: Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER),
                    }
                }
            }
            other => other,
        };
        match msg {
            Msg::ProduceReply { req, result } => {
                let cl = &self.clients[c];
                let ClientKind::Producer { acks_all } = cl.kind else {
                    return;
                };
                let Some(inf) = cl.inflight.clone().filter(|f| f.req == req) else {
                    return; // an answer to an older attempt
                };
                let (p, pid) = (cl.part, cl.pid);
                match result {
                    Ok(offset) => {
                        let ck = self.checker.observe_ack(
                            p,
                            offset,
                            inf.payload,
                            pid,
                            inf.seq,
                            acks_all,
                        );
                        self.check(ck);
                        if acks_all {
                            self.stats.acked_all += 1;
                        } else {
                            self.stats.acked_one += 1;
                        }
                        let cl = &mut self.clients[c];
                        cl.seq += 1;
                        cl.inflight = None;
                        let think = self.rng.gen_range(1..30);
                        self.client_later(c, think);
                    }
                    Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER) if acks_all => {
                        self.fail(format!(
                            "spurious OUT_OF_ORDER_SEQUENCE_NUMBER for acks=all producer {pid} sequence {}",
                            inf.seq
                        ));
                    }
                    Err(codes::OUT_OF_ORDER_SEQUENCE_NUMBER) => {
                        // acks=1 records can be lost on failover: a new producer id (Kafka's
                        // producer resets its sequence state).
                        self.next_pid += 1;
                        let cl = &mut self.clients[c];
                        cl.pid = self.next_pid;
                        cl.seq = 0;
                        cl.inflight = None;
                        self.client_later(c, 10);
                    }
                    Err(_) => {
                        let backoff = self.rng.gen_range(20..100);
                        self.client_later(c, backoff);
                    }
                }
            }
            Msg::ConsumeReply { req, result } => {
                if self.clients[c].req != req {
                    return;
                }
                self.clients[c].req += 1; // a duplicated answer is not read twice
                let p = self.clients[c].part;
                match result {
                    Ok(entries) => {
                        if let Some(first) = entries.first()
                            && first.offset != self.clients[c].position
                        {
                            return self.fail(format!(
                                "consumer of p{p} at {} got offset {}",
                                self.clients[c].position, first.offset
                            ));
                        }
                        let ck = self.checker.observe_consumed(p, &entries);
                        self.check(ck);
                        self.stats.consumed += entries.len() as u64;
                        self.clients[c].position += entries.len() as i64;
                        let wait = if entries.is_empty() { 30 } else { 1 };
                        self.client_later(c, wait);
                    }
                    Err(_) => self.client_later(c, 100),
                }
            }
            _ => {}
        }
    }

    // ---- faults ----

    fn inject_fault(&mut self) {
        let n = self.nodes.len();
        let down = self.nodes.iter().filter(|x| !x.up).count();
        let max_down = (n - 1) / 2;
        match self.rng.gen_range(0..100) {
            0..=34 if down < max_down => {
                // Crash: half the time the active controller (a controller failover).
                let up: Vec<usize> = (0..n).filter(|&i| self.nodes[i].up).collect();
                let active = up
                    .iter()
                    .copied()
                    .find(|&i| self.nodes[i].controller.is_active());
                let i = match active {
                    Some(a) if self.rng.gen_bool(0.5) => a,
                    _ => up[self.rng.gen_range(0..up.len())],
                };
                self.crash(i);
                let back = self.rng.gen_range(500..6_000);
                self.schedule(back, Event::Restart(i));
            }
            35..=54 => {
                self.next_partition += 1;
                let id = self.next_partition;
                let mut side: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.5)).collect();
                if side.iter().all(|&s| s) || side.iter().all(|&s| !s) {
                    let k = self.rng.gen_range(0..n);
                    side[k] = !side[k];
                }
                self.trace(format!("network partition {id}: {side:?}"));
                self.stats.partitions += 1;
                self.blocked.insert(id, side);
                let d = self.rng.gen_range(500..6_000);
                self.schedule(d, Event::Heal(id));
            }
            55..=69 => {
                // A leader move: a partition leader asks to be fenced (it comes back unfenced
                // at its next heartbeat).
                let p = self.rng.gen_range(0..self.cfg.partitions);
                if let Some(l) = self.find_leader(p)
                    && self.nodes[l as usize].up
                {
                    self.nodes[l as usize].want_fence = true;
                }
            }
            70..=79 => {
                let i = self.rng.gen_range(0..n);
                self.trace(format!("node {i}: disk full"));
                self.nodes[i].disk_full = true;
                let d = self.rng.gen_range(500..4_000);
                self.schedule(d, Event::DiskBack(i));
            }
            80..=89 => {
                let i = self.rng.gen_range(0..n);
                self.trace(format!("node {i}: slow disk"));
                self.nodes[i].slow_disk = true;
                let d = self.rng.gen_range(500..4_000);
                self.schedule(d, Event::DiskBack(i));
            }
            _ => self.reassign(),
        }
    }

    /// A reassignment workload step (KIP-455), asked of the active controller as a client's
    /// AlterPartitionReassignments would: add a replica, remove (or replace) the leader's
    /// replica, or cancel the move in progress.
    fn reassign(&mut self) {
        let n = self.nodes.len() as i32;
        let Some(a) = (0..self.nodes.len())
            .find(|&i| self.nodes[i].up && self.nodes[i].controller.is_active())
        else {
            return;
        };
        let p = self.rng.gen_range(0..self.cfg.partitions);
        let Some(part) = self.nodes[a]
            .controller
            .image()
            .topic_by_name(TOPIC)
            .and_then(|t| t.partitions.get(&(p as i32)))
            .cloned()
        else {
            return;
        };
        let target = part.target_replicas();
        let outside: Vec<i32> = (0..n).filter(|b| !target.contains(b)).collect();
        let kind = self.rng.gen_range(0..3);
        let replicas = match kind {
            0 if !outside.is_empty() => {
                let mut t = target.clone();
                t.push(outside[self.rng.gen_range(0..outside.len())]);
                Some(t)
            }
            1 if part.leader != NO_LEADER && target.contains(&part.leader) => {
                let mut t: Vec<i32> = target
                    .iter()
                    .copied()
                    .filter(|&b| b != part.leader)
                    .collect();
                if t.len() < MIN_ISR {
                    if outside.is_empty() {
                        return;
                    }
                    t.push(outside[self.rng.gen_range(0..outside.len())]);
                }
                Some(t)
            }
            2 if part.reassigning() => None,
            _ => return,
        };
        let change = ReassignmentChange {
            topic: TOPIC.into(),
            partition: p as i32,
            replicas: replicas.clone(),
        };
        let id = self.nodes[a].id;
        match self.nodes[a]
            .controller
            .alter_partition_reassignments(&[change], true)
        {
            Ok((results, records)) => {
                self.trace(format!(
                    "controller {id}: reassign p{p} from {:?} to {replicas:?}: {:?}",
                    part.replicas,
                    results[0].as_ref().map_err(|e| e.code)
                ));
                if results[0].is_ok() {
                    self.stats.reassignments += 1;
                }
                self.propose(a, records, None);
            }
            Err(e) => self.trace(format!("controller {id}: reassign refused: {}", e.code)),
        }
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let power_loss = self.cfg.durability == AckDurability::Synced;
        let mut kept = Vec::new();
        for p in 0..self.cfg.partitions {
            let unsynced = {
                let l = &self.nodes[i].replicas[p].log;
                (l.log_end_offset() - l.synced_end_offset()) as usize
            };
            let keep = if power_loss {
                self.rng.gen_range(0..=unsynced)
            } else {
                unsynced
            };
            kept.push((unsynced, keep));
        }
        let node = &mut self.nodes[i];
        node.up = false;
        node.raft_unsynced.clear();
        node.replies.clear();
        for (p, r) in node.replicas.iter_mut().enumerate() {
            if power_loss {
                r.log.crash(kept[p].1);
            }
            r.role = Role::None;
            r.hw = 0;
            r.sync_in_flight = false;
        }
        let id = node.id;
        let gone_inc = node.inc;
        self.trace(format!(
            "crash node {id} ({}; unsynced/kept per partition {kept:?})",
            if power_loss { "power loss" } else { "kill -9" }
        ));
        // Peers that reach it find its controller listener closed (as the broker's
        // transport sees a refused connection), most of them soon after the crash.
        for observer in 0..self.nodes.len() {
            if observer != i
                && self.nodes[observer].up
                && !self.is_blocked(self.nodes[observer].id, id)
                && self.rng.gen_bool(0.8)
            {
                let after = self.rng.gen_range(1..300);
                self.schedule(
                    after,
                    Event::ProcessGone {
                        observer,
                        gone: i,
                        gone_inc,
                    },
                );
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let seed = self.seed.wrapping_add(self.now);
        let n = self.cfg.nodes;
        let incarnation = Uuid::from_u128(self.rng.r#gen::<u128>());
        let node = &mut self.nodes[i];
        node.inc += 1;
        node.quorum =
            MetadataQuorum::restart(quorum_config(n, node.id, seed), node.raft_disk.clone())
                .expect("restart from the persisted state");
        node.controller = Controller::new(controller_config(), MetadataImage::default());
        node.incarnation = incarnation;
        node.broker_epoch = None;
        node.roles_at = (0, None);
        node.up = true;
        let id = node.id;
        self.trace(format!("restart node {id}"));
        self.after(i);
    }
}
