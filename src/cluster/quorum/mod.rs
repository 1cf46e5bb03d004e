//! `MetadataQuorum`: the metadata log's consensus, tikv's raft-rs (`RawNode`) wrapped as a
//! sans-IO state machine. Inputs: `tick` (the driver's timer), `step` (a peer's message),
//! `propose` (a batch from the active controller), `persisted` (the driver finished writing and
//! syncing a `Persist` output). Outputs (`take_outputs`), in the order they must be handled:
//! messages to send, writes to persist, committed entries to apply, leadership changes.
//!
//! Safety rules kept here: an entry or hard state counts only after the driver reports it
//! persisted (raft-rs' async ready: `advance_append_async` + `on_persist_ready`); messages that
//! raft-rs marks as needing persistence (votes, append acks) are held until then; the active
//! controller starts only once the entry raft-rs appends on election has committed, so it has
//! applied everything earlier terms committed.
//!
//! Node ids: raft-rs reserves 0, so the raft id of Kafka `node.id` n is n + 1.
//!
//! Determinism: raft-rs draws each term's election timeout from the thread RNG; this wrapper
//! overwrites it after every input from its own seeded RNG, so the same seed and inputs give the
//! same run (what the simulator needs); the driver seeds it randomly.

pub mod disk;
mod store;

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::prelude::{Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{Config, RawNode, StateRole};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use store::LogStore;

/// raft id of a Kafka node id.
pub fn raft_id(node_id: i32) -> u64 {
    assert!(node_id >= 0);
    node_id as u64 + 1
}

/// Kafka node id of a raft id.
pub fn node_id(raft_id: u64) -> i32 {
    assert!(raft_id >= 1);
    (raft_id - 1) as i32
}

/// Ticks between the elections the survivors of a leader whose process is gone call, in
/// order of node id (`MetadataQuorum::peer_process_gone`).
pub const ELECTION_STAGGER_TICKS: usize = 3;

/// Quorum timing, in ticks of the driver's timer.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node_id: i32,
    pub voters: Vec<i32>,
    /// Leader heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// A follower (or candidate) waits a random number of ticks in
    /// [election_ticks_min, election_ticks_max) without a leader before an election.
    pub election_ticks_min: usize,
    pub election_ticks_max: usize,
    /// Seed of the election-timeout RNG.
    pub seed: u64,
}

impl QuorumConfig {
    /// From Kafka's settings: ticks of `tick_ms`; the election window runs from
    /// `controller.quorum.election.timeout.ms` to `controller.quorum.fetch.timeout.ms` (a
    /// follower calls an election at the latest one fetch timeout after the leader went quiet).
    pub fn from_timeouts(
        node_id: i32,
        voters: Vec<i32>,
        tick_ms: u64,
        election_timeout_ms: u64,
        fetch_timeout_ms: u64,
        seed: u64,
    ) -> Self {
        assert!(tick_ms > 0);
        let min = (election_timeout_ms / tick_ms).max(2) as usize;
        let max = ((fetch_timeout_ms / tick_ms) as usize).max(min + 1);
        Self {
            node_id,
            voters,
            heartbeat_ticks: 1,
            election_ticks_min: min,
            election_ticks_max: max,
            seed,
        }
    }
}

impl QuorumConfig {
    /// From the cluster settings (this node must be a voter).
    pub fn from_cluster(
        cluster: &crate::cluster::config::ClusterConfig,
        tick_ms: u64,
        seed: u64,
    ) -> Self {
        Self::from_timeouts(
            cluster.node_id,
            cluster.voters.iter().map(|v| v.id).collect(),
            tick_ms,
            cluster.election_timeout_ms,
            cluster.fetch_timeout_ms,
            seed,
        )
    }
}

/// What persisted state a node restarts from (what the driver read back from disk).
#[derive(Clone, Debug, Default)]
pub struct PersistedState {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

/// Something the driver must do.
#[derive(Clone, Debug)]
pub enum QuorumOutput {
    /// Send to a peer (Kafka node id). Losing it is allowed; raft retries.
    Send { to: i32, message: Message },
    /// Write (in order, after every earlier Persist) and, if `must_sync`, fsync; then call
    /// `persisted(ready)`. A snapshot replaces the log up to its index.
    Persist {
        ready: u64,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        snapshot: Option<Snapshot>,
        must_sync: bool,
    },
    /// Apply to the metadata image (in index order). `data` is empty for raft's own entries.
    Committed {
        index: u64,
        term: u64,
        data: Vec<u8>,
    },
    /// The image must be replaced by this snapshot's (a leader sent it).
    InstallSnapshot {
        index: u64,
        term: u64,
        data: Vec<u8>,
    },
    /// This node leads `term` and has applied every entry committed before: the controller
    /// may become active.
    LeaderReady { term: u64 },
    /// Leadership changed: `leader` is the known leader (None during an election).
    LeaderChanged { term: u64, leader: Option<i32> },
}

/// Why a peer's message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Refused by the wrapper or raft-rs; harmless.
    #[error("{0}")]
    Refused(raft::Error),
    /// The message contradicts this node's log: the node must stop.
    #[error("{0}")]
    Diverged(String),
}

/// Why a proposal was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    #[error("not the quorum leader")]
    NotLeader,
    #[error("raft refused the proposal: {0}")]
    Refused(String),
}

pub struct MetadataQuorum {
    node: RawNode<LogStore>,
    node_id: i32,
    rng: ChaCha8Rng,
    cfg: QuorumConfig,
    /// The randomized election timeout this wrapper chose for the current (term, role).
    election_timeout: usize,
    last_term_role: (u64, StateRole),
    last_leader: u64,
    /// Index of the entry raft appended when this node became leader (ready once committed).
    leader_start_index: Option<u64>,
    leader_ready_sent: bool,
    /// Messages raft-rs wants sent only after the ready they belong to is persisted.
    held: VecDeque<(u64, Vec<Message>)>,
    outputs: Vec<QuorumOutput>,
}

fn logger() -> slog::Logger {
    use slog::Drain;
    slog::Logger::root(
        slog_stdlog::StdLog.fuse(),
        slog::o!("module" => "metadata-quorum"),
    )
}

impl MetadataQuorum {
    /// A node with an empty log (first start of a cluster).
    pub fn new(cfg: QuorumConfig) -> raft::Result<Self> {
        Self::restart(cfg, PersistedState::default())
    }

    /// A node resuming from what it had persisted.
    pub fn restart(cfg: QuorumConfig, state: PersistedState) -> raft::Result<Self> {
        assert!(
            cfg.voters.contains(&cfg.node_id),
            "a quorum member is a voter"
        );
        assert!(cfg.election_ticks_min > cfg.heartbeat_ticks);
        assert!(cfg.election_ticks_max > cfg.election_ticks_min);
        let voters: Vec<u64> = cfg.voters.iter().map(|&v| raft_id(v)).collect();
        let applied = state
            .snapshot
            .as_ref()
            .map_or(0, |s| s.get_metadata().index);
        let store = LogStore::restore(voters, state.snapshot, &state.entries, state.hard_state)?;
        let raft_cfg = Config {
            id: raft_id(cfg.node_id),
            election_tick: cfg.election_ticks_min,
            heartbeat_tick: cfg.heartbeat_ticks,
            min_election_tick: cfg.election_ticks_min,
            max_election_tick: cfg.election_ticks_max,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let node = RawNode::new(&raft_cfg, store, &logger())?;
        let rng = ChaCha8Rng::seed_from_u64(
            cfg.seed ^ raft_id(cfg.node_id).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut q = Self {
            last_term_role: (node.raft.term, node.raft.state),
            last_leader: node.raft.leader_id,
            node,
            node_id: cfg.node_id,
            rng,
            cfg,
            election_timeout: 0,
            leader_start_index: None,
            leader_ready_sent: false,
            held: VecDeque::new(),
            outputs: Vec::new(),
        };
        q.redraw_election_timeout();
        Ok(q)
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn leader(&self) -> Option<i32> {
        let l = self.node.raft.leader_id;
        (l != raft::INVALID_ID).then(|| node_id(l))
    }

    pub fn committed_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// Starts an election now instead of after an election timeout (a single voter at start).
    pub fn campaign(&mut self) {
        if let Err(e) = self.node.campaign() {
            log::warn!("metadata quorum: campaign refused: {e}");
        }
        self.after_input();
    }

    /// The last index of the log (persisted or not).
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// On the leader: each voter's highest index known to match the leader's log.
    pub fn voter_progress(&self) -> Vec<(i32, u64)> {
        let mut out: Vec<(i32, u64)> = self
            .node
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| (node_id(*id), pr.matched))
            .collect();
        out.sort();
        out
    }

    /// One tick of the driver's timer.
    pub fn tick(&mut self) {
        self.node.tick();
        self.after_input();
    }

    /// A message from a peer. Messages of another cluster member's stale incarnation are
    /// harmless (raft checks terms); one from a non-voter is refused. One that does not fit
    /// this node's log (a commit index past its end: the log was lost, or belongs to another
    /// cluster) is `StepError::Diverged`, never a panic: raft-rs asserts on such messages, so
    /// they are checked first, and any other assertion raft-rs makes is caught and reported the
    /// same way. After `Diverged` the quorum must not be used again (the driver exits).
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        if !self.cfg.voters.iter().any(|&v| raft_id(v) == message.from)
            || message.to != raft_id(self.node_id)
        {
            return Err(StepError::Refused(raft::Error::NotExists {
                id: message.from,
                set: "voters",
            }));
        }
        let from = node_id(message.from);
        let last_index = self.node.raft.raft_log.last_index();
        if message.get_msg_type() == MessageType::MsgHeartbeat
            && message.term >= self.node.raft.term
            && message.commit > last_index
        {
            return Err(StepError::Diverged(format!(
                "leader {from} (term {}) has index {} committed, but this node's metadata log ends at {last_index}",
                message.term, message.commit
            )));
        }
        let stepped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.node.step(message)));
        match stepped {
            Ok(res) => {
                self.after_input();
                res.map_err(StepError::Refused)
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("raft-rs assertion");
                Err(StepError::Diverged(format!(
                    "a message from node {from} does not fit this node's metadata log: {what}"
                )))
            }
        }
    }

    /// Proposes one log entry (a batch of metadata records). Returns (term, index): the entry is
    /// committed when a `Committed` output has this index and term; another term at this index
    /// means it was lost to a leader change.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(u64, u64), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader);
        }
        self.node
            .propose(Vec::new(), data)
            .map_err(|e| ProposeError::Refused(e.to_string()))?;
        let at = (self.node.raft.term, self.node.raft.raft_log.last_index());
        self.after_input();
        Ok(at)
    }

    /// The driver wrote (and synced) every `Persist` up to `ready`.
    pub fn persisted(&mut self, ready: u64) {
        self.node.on_persist_ready(ready);
        while self.held.front().is_some_and(|(n, _)| *n <= ready) {
            let (_, msgs) = self.held.pop_front().expect("checked");
            self.push_messages(msgs);
        }
        self.after_input();
    }

    /// A peer did not answer (the driver's connection failed): raft probes it again.
    pub fn unreachable(&mut self, peer: i32) {
        self.node.report_unreachable(raft_id(peer));
    }

    /// `peer`'s process is gone (its controller listener refused a connection: a kill -9 or
    /// crash closes it with the process). A follower of that leader stops trusting it (so it
    /// neither waits out an election timeout nor ignores other voters' votes under the
    /// leader's lease) and calls an election in 1 + `ELECTION_STAGGER_TICKS` x rank ticks,
    /// rank = how many surviving voters have a lower id (never later than its running
    /// election timeout): the first survivor's pre-vote and vote round trips (raft-rs sends a
    /// follower's or candidate's messages only after its ready is persisted) end before the
    /// next one campaigns, so they do not split the vote. Raft's safety does not depend on
    /// this: a live leader's next heartbeat restores it as before.
    pub fn peer_process_gone(&mut self, peer: i32) {
        let leader = raft_id(peer);
        let raft = &mut self.node.raft;
        if raft.state != StateRole::Follower || raft.leader_id != leader {
            return;
        }
        let term = raft.term;
        let elapsed = raft.election_elapsed;
        raft.become_follower(term, raft::INVALID_ID);
        self.after_input();
        let rank = self
            .cfg
            .voters
            .iter()
            .filter(|&&v| v != peer && v < self.node_id)
            .count();
        let ticks = 1 + ELECTION_STAGGER_TICKS * rank;
        let timeout = self.node.raft.randomized_election_timeout();
        // Never later than the election timeout already running since the leader was heard.
        self.node.raft.election_elapsed = timeout.saturating_sub(ticks).max(elapsed);
        log::info!(
            "metadata quorum: leader {peer}'s process is gone; node {} calls an election in \
             {ticks} tick(s)",
            self.node_id
        );
    }

    /// Takes a local snapshot of the image at `applied` (an index already applied) and drops the
    /// log before it from memory. The driver persists the snapshot, then may delete old segments.
    pub fn compact(&mut self, applied: u64, image: Vec<u8>) -> raft::Result<Snapshot> {
        assert!(
            applied <= self.node.raft.raft_log.applied,
            "snapshot of an unapplied index"
        );
        self.node.mut_store().compact(applied, image)
    }

    /// Everything the driver must do now, in order.
    pub fn take_outputs(&mut self) -> Vec<QuorumOutput> {
        std::mem::take(&mut self.outputs)
    }

    fn push_messages(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            self.outputs.push(QuorumOutput::Send {
                to: node_id(m.to),
                message: m,
            });
        }
    }

    /// Drains raft's ready states into outputs and keeps the election timeout ours.
    fn after_input(&mut self) {
        self.observe_role();
        while self.node.has_ready() {
            let mut rd = self.node.ready();
            let number = rd.number();
            self.push_messages(rd.take_messages());
            let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
            if let Some(s) = &snapshot {
                self.node
                    .mut_store()
                    .install(s.clone())
                    .expect("a leader's snapshot is newer than our log");
                let m = s.get_metadata();
                self.outputs.push(QuorumOutput::InstallSnapshot {
                    index: m.index,
                    term: m.term,
                    data: s.get_data().to_vec(),
                });
            }
            let applied = self.push_committed(rd.take_committed_entries());
            let entries = rd.take_entries();
            if !entries.is_empty() {
                self.node
                    .mut_store()
                    .append(&entries)
                    .expect("raft appends contiguously");
            }
            let hard_state = rd.hs().cloned();
            if let Some(hs) = &hard_state {
                self.node.mut_store().set_hard_state(hs.clone());
            }
            let must_sync = rd.must_sync();
            let persisted_msgs = rd.take_persisted_messages();
            // A Persist for every ready that writes or holds messages, even an empty one, so
            // that held messages always have a `persisted` call that releases them.
            if hard_state.is_some()
                || !entries.is_empty()
                || snapshot.is_some()
                || !persisted_msgs.is_empty()
            {
                self.outputs.push(QuorumOutput::Persist {
                    ready: number,
                    hard_state,
                    entries,
                    snapshot,
                    must_sync,
                });
            }
            if !persisted_msgs.is_empty() {
                self.held.push_back((number, persisted_msgs));
            }
            self.node.advance_append_async(rd);
            if let Some(last) = applied {
                self.node.advance_apply_to(last);
                self.maybe_leader_ready();
            }
            self.observe_role();
        }
        self.maybe_leader_ready();
        self.node
            .raft
            .set_randomized_election_timeout(self.election_timeout);
    }

    /// Outputs committed entries; returns the last index (to mark applied once advanced).
    fn push_committed(&mut self, entries: Vec<Entry>) -> Option<u64> {
        let last = entries.last().map(|e| e.index)?;
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal => self.outputs.push(QuorumOutput::Committed {
                    index: e.index,
                    term: e.term,
                    data: e.get_data().to_vec(),
                }),
                // Static voters: configuration changes are never proposed.
                other => panic!(
                    "unexpected {other:?} entry at {} in the metadata log",
                    e.index
                ),
            }
        }
        Some(last)
    }

    fn observe_role(&mut self) {
        let now = (self.node.raft.term, self.node.raft.state);
        if now != self.last_term_role {
            self.last_term_role = now;
            self.redraw_election_timeout();
            if now.1 == StateRole::Leader {
                self.leader_start_index = Some(self.node.raft.raft_log.last_index());
                self.leader_ready_sent = false;
            } else {
                self.leader_start_index = None;
            }
        }
        let leader = self.node.raft.leader_id;
        if leader != self.last_leader {
            self.last_leader = leader;
            self.outputs.push(QuorumOutput::LeaderChanged {
                term: self.node.raft.term,
                leader: (leader != raft::INVALID_ID).then(|| node_id(leader)),
            });
        }
    }

    fn maybe_leader_ready(&mut self) {
        if let Some(start) = self.leader_start_index
            && !self.leader_ready_sent
            && self.node.raft.state == StateRole::Leader
            && self.node.raft.raft_log.applied >= start
        {
            self.leader_ready_sent = true;
            self.outputs.push(QuorumOutput::LeaderReady {
                term: self.node.raft.term,
            });
        }
    }

    fn redraw_election_timeout(&mut self) {
        self.election_timeout = self
            .rng
            .gen_range(self.cfg.election_ticks_min..self.cfg.election_ticks_max);
        self.node
            .raft
            .set_randomized_election_timeout(self.election_timeout);
    }
}

/// Encodes a raft message for the controller listener.
pub fn encode_message(m: &Message) -> Vec<u8> {
    m.write_to_bytes().expect("a raft message encodes")
}

/// Decodes a peer's raft message; malformed bytes are an error, never a panic.
pub fn decode_message(bytes: &[u8]) -> Result<Message, protobuf::ProtobufError> {
    Message::parse_from_bytes(bytes)
}

#[cfg(test)]
mod sim_tests;
