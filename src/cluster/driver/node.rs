//! The controller node on shard 0 of every voter: hosts `MetadataQuorum` and `Controller` and
//! runs their I/O. A timer ticks the quorum every `tick_ms` and the controller's session clock;
//! `Persist` outputs go, in order and one at a time, to `MetadataLogDisk::write` on the blocking
//! pool, then `persisted(ready)`; `Send` goes to the peer connections; `Committed` entries are
//! applied to the controller's image and published to the shards; `LeaderReady` makes the
//! controller active (its first records are proposed); a proposal is answered once its
//! `(term, index)` commits with the same term (else NOT_CONTROLLER). Every `snapshot_every`
//! entries the image is snapshotted and the log compacted.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use raft::prelude::{Entry, HardState, Snapshot};

use super::publish::Publisher;
use super::transport::Peers;
use crate::cluster::controller::{Controller, ControllerError, codes};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{self, MetadataRecord};
use crate::cluster::quorum::disk::MetadataLogDisk;
use crate::cluster::quorum::{MetadataQuorum, ProposeError, QuorumOutput, StepError};

/// Why the node must stop the process (the metadata log cannot be trusted or written).
pub type Fatal = Rc<dyn Fn(String)>;

enum PersistJob {
    Ready {
        ready: u64,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        snapshot: Option<Snapshot>,
        must_sync: bool,
    },
    Snapshot {
        index: u64,
        data: Vec<u8>,
    },
}

pub struct NodeState {
    pub quorum: MetadataQuorum,
    pub controller: Controller,
    /// Proposals waiting to commit: index -> (term, answer with the index).
    waiters: BTreeMap<u64, (u64, oneshot::Sender<Result<u64, ControllerError>>)>,
    /// First records of an upgraded standalone data dir (proposed by the first leader).
    legacy: Option<Vec<MetadataRecord>>,
    new_cluster_id: String,
    last_snapshot: u64,
    snapshot_every: u64,
    /// The leader as this node knows it.
    pub leader: Option<i32>,
    /// Per broker, the metadata offset its last heartbeat to this node reported (the active
    /// controller's view; `tern_broker_metadata_lag`).
    pub broker_offsets: BTreeMap<i32, u64>,
    /// Per peer, the wall-clock time (Unix ms) its last raft message reached this node:
    /// DescribeQuorum's `last_fetch_timestamp` (on the leader, followers' appends answers).
    pub peer_last_heard_ms: BTreeMap<i32, i64>,
}

pub struct ControllerNode {
    pub node_id: i32,
    pub st: RefCell<NodeState>,
    peers: RefCell<Option<Peers>>,
    persist_tx: mpsc::UnboundedSender<PersistJob>,
    pub publisher: RefCell<Option<Rc<Publisher>>>,
    started: Instant,
    fatal: Fatal,
    log_dir: std::path::PathBuf,
    /// Exit code 2: this node's data directory does not belong to the quorum's cluster.
    config_error: Fatal,
    /// The cluster id before the committed image has one (meta.properties, or learned from
    /// the quorum leader's frames).
    known_cluster_id: RefCell<Option<String>>,
    /// Peers already logged as being of another cluster (one line per peer).
    foreign_peers: RefCell<std::collections::BTreeSet<i32>>,
    /// Set when this node refused itself (config error): the quorum takes no more input while
    /// the process stops.
    halted: std::cell::Cell<bool>,
}

/// A proposal in flight.
pub struct Pending(oneshot::Receiver<Result<u64, ControllerError>>);

pub struct NodeSetup {
    pub quorum: MetadataQuorum,
    pub controller: Controller,
    pub disk: MetadataLogDisk,
    pub legacy: Option<Vec<MetadataRecord>>,
    pub new_cluster_id: String,
    pub snapshot_every: u64,
    pub tick: Duration,
    /// A single voter campaigns at once instead of after an election timeout.
    pub single_voter: bool,
    /// The data directory's cluster id (meta.properties), if formatted.
    pub cluster_id: Option<String>,
    /// Where the data directory's name goes in a refusal.
    pub log_dir: std::path::PathBuf,
}

impl ControllerNode {
    pub fn start(node_id: i32, setup: NodeSetup, fatal: Fatal, config_error: Fatal) -> Rc<Self> {
        let (persist_tx, persist_rx) = mpsc::unbounded();
        let last_snapshot = setup.disk.snapshot_index();
        let node = Rc::new(Self {
            node_id,
            st: RefCell::new(NodeState {
                quorum: setup.quorum,
                controller: setup.controller,
                waiters: BTreeMap::new(),
                legacy: setup.legacy,
                new_cluster_id: setup.new_cluster_id,
                last_snapshot,
                snapshot_every: setup.snapshot_every.max(1),
                leader: None,
                broker_offsets: BTreeMap::new(),
                peer_last_heard_ms: BTreeMap::new(),
            }),
            peers: RefCell::new(None),
            persist_tx,
            publisher: RefCell::new(None),
            started: Instant::now(),
            fatal,
            config_error,
            known_cluster_id: RefCell::new(setup.cluster_id),
            foreign_peers: RefCell::new(Default::default()),
            halted: std::cell::Cell::new(false),
            log_dir: setup.log_dir,
        });
        tern_shard::task::spawn(persist_worker(Rc::downgrade(&node), setup.disk, persist_rx));
        let weak = Rc::downgrade(&node);
        let tick = setup.tick;
        tern_shard::task::spawn(async move {
            loop {
                tern_shard::task::sleep(tick).await;
                let Some(node) = weak.upgrade() else { return };
                node.on_tick();
            }
        });
        if setup.single_voter {
            node.st.borrow_mut().quorum.campaign();
        }
        node.drain();
        node
    }

    pub fn set_peers(&self, peers: Peers) {
        *self.peers.borrow_mut() = Some(peers);
    }

    pub fn set_publisher(&self, p: Rc<Publisher>) {
        *self.publisher.borrow_mut() = Some(p);
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn is_active(&self) -> bool {
        self.st.borrow().controller.is_active()
    }

    pub fn leader(&self) -> Option<i32> {
        self.st.borrow().leader
    }

    fn mark_dirty(&self) {
        if let Some(p) = self.publisher.borrow().as_ref() {
            p.mark_dirty();
        }
    }

    /// Refuses this node (exit code 2); the quorum takes no more input.
    fn halt(&self, why: String) {
        if !self.halted.replace(true) {
            (self.config_error)(why);
        }
    }

    fn on_tick(self: &Rc<Self>) {
        if self.halted.get() {
            return;
        }
        let now = self.now_ms();
        {
            let mut st = self.st.borrow_mut();
            st.quorum.tick();
            let batches = st.controller.tick(now);
            for b in batches {
                propose_locked(&mut st, b);
            }
        }
        self.drain();
    }

    /// The cluster this node belongs to: the committed image's id, else what it knew at start
    /// (meta.properties) or learned from the leader; None on a node of a new cluster.
    pub fn cluster_id(&self) -> Option<String> {
        self.st
            .borrow()
            .controller
            .committed()
            .cluster_id
            .clone()
            .or_else(|| self.known_cluster_id.borrow().clone())
    }

    /// A peer's raft message with the sender's cluster id. A message of another cluster never
    /// reaches raft: from the quorum's leader (appends, heartbeats, snapshots) it means this
    /// node's data directory belongs to another cluster, so the process exits with code 2;
    /// anything else (a stray node's vote requests and answers) is refused with a log line.
    /// A node without a cluster id learns the leader's.
    pub fn step_from(self: &Rc<Self>, cluster_id: Option<String>, m: raft::prelude::Message) {
        use raft::prelude::MessageType;
        if self.halted.get() {
            return;
        }
        let from_leader = matches!(
            m.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        let from = m.from.saturating_sub(1) as i64;
        match (self.cluster_id(), cluster_id) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                if from_leader {
                    self.halt(format!(
                        "the data directory {} belongs to cluster {mine}, but the metadata quorum's leader (node {from}, term {}) is of cluster {theirs}: \
                         this node's data directory is another cluster's",
                        self.log_dir.display(),
                        m.term
                    ));
                } else if self.foreign_peers.borrow_mut().insert(from as i32) {
                    log::warn!(
                        "metadata quorum: node {from} is of cluster {theirs}, not {mine}: its raft messages are refused"
                    );
                }
                return;
            }
            (None, Some(theirs)) if from_leader => {
                log::info!("metadata quorum: learned cluster id {theirs} from leader {from}");
                *self.known_cluster_id.borrow_mut() = Some(theirs);
            }
            _ => {}
        }
        let res = {
            let mut st = self.st.borrow_mut();
            st.peer_last_heard_ms.insert(from as i32, unix_now_ms());
            st.quorum.step(m)
        };
        match res {
            Ok(()) => {}
            Err(StepError::Refused(e)) => log::debug!("metadata quorum: message refused: {e}"),
            Err(StepError::Diverged(why)) => {
                self.halt(format!(
                    "the metadata log in {} does not match the quorum's ({why}): the data directory was lost or belongs to another cluster",
                    self.log_dir.display()
                ));
                return;
            }
        }
        self.drain();
    }

    pub fn unreachable(&self, peer: i32) {
        self.st.borrow_mut().quorum.unreachable(peer);
    }

    /// `peer`'s controller listener refused a connection: its process is gone. A follower of
    /// that leader calls an election at once (`MetadataQuorum::peer_process_gone`) and an
    /// active controller fences that broker at its next tick
    /// (`Controller::broker_process_gone`), instead of waiting out their timeouts.
    pub fn peer_process_gone(self: &Rc<Self>, peer: i32) {
        {
            let mut st = self.st.borrow_mut();
            st.quorum.peer_process_gone(peer);
            st.controller.broker_process_gone(peer);
        }
        self.drain();
    }

    /// Whether this voter can tell that the metadata quorum is gone: it knows no other leader
    /// (none, or itself: a leader keeps its role for an election timeout after losing its
    /// followers), and it and the voters it heard from within `window_ms` are no majority. A
    /// controlled shutdown then has nobody to commit its fencing. A follower that knows a
    /// leader trusts it (with five voters it hears from the leader only).
    pub fn quorum_out_of_reach(&self, window_ms: i64) -> bool {
        let st = self.st.borrow();
        if st.leader.is_some_and(|l| l != self.node_id) {
            return false;
        }
        let voters: Vec<i32> = st
            .quorum
            .voter_progress()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        !majority_heard(
            &voters,
            self.node_id,
            &st.peer_last_heard_ms,
            unix_now_ms(),
            window_ms,
        )
    }

    /// Evidence that broker `broker_id`'s process is gone (see
    /// `Controller::broker_connection_lost`); the next tick fences it after the grace.
    pub fn broker_connection_lost(&self, broker_id: i32, broker_epoch: Option<i64>) {
        let now = self.now_ms();
        self.st
            .borrow_mut()
            .controller
            .broker_connection_lost(broker_id, broker_epoch, now);
    }

    /// Proposes a batch the controller just staged (call it before any await, so proposals go
    /// out in staging order). `None` for an empty batch.
    pub fn propose(&self, records: &[MetadataRecord]) -> Result<Option<Pending>, ControllerError> {
        if records.is_empty() {
            return Ok(None);
        }
        let mut st = self.st.borrow_mut();
        match st.quorum.propose(records::encode_entry(records)) {
            Ok((term, index)) => {
                let (tx, rx) = oneshot::channel();
                st.waiters.insert(index, (term, tx));
                Ok(Some(Pending(rx)))
            }
            Err(e) => {
                // The staged batch will never commit: forget it.
                st.controller.resign();
                Err(not_controller(&e, st.leader))
            }
        }
    }

    /// Waits for a proposal to commit and be published on every shard; its offset (0 for none).
    pub async fn wait(self: &Rc<Self>, pending: Option<Pending>) -> Result<u64, ControllerError> {
        let offset = self.wait_committed(pending).await?;
        self.wait_published(offset).await;
        Ok(offset)
    }

    /// Waits for a proposal to commit (applied to the controller's image, not yet published).
    pub async fn wait_committed(
        self: &Rc<Self>,
        pending: Option<Pending>,
    ) -> Result<u64, ControllerError> {
        let Some(Pending(rx)) = pending else {
            return Ok(0);
        };
        self.drain();
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(ControllerError::new(
                codes::NOT_CONTROLLER,
                "proposal dropped",
            )),
        }
    }

    /// Waits until `offset` is published on every shard of this node.
    pub async fn wait_published(&self, offset: u64) {
        let publisher = self.publisher.borrow().clone();
        if let Some(p) = publisher {
            p.wait_for(offset).await;
        }
    }

    /// `propose` then `wait`.
    pub async fn commit(
        self: &Rc<Self>,
        records: Vec<MetadataRecord>,
    ) -> Result<u64, ControllerError> {
        let pending = self.propose(&records)?;
        self.wait(pending).await
    }

    /// Handles every output of the quorum until there are none.
    pub fn drain(self: &Rc<Self>) {
        loop {
            let outputs = self.st.borrow_mut().quorum.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for o in outputs {
                self.handle(o);
            }
        }
    }

    fn handle(self: &Rc<Self>, o: QuorumOutput) {
        match o {
            QuorumOutput::Send { to, message } => {
                let cluster_id = self.cluster_id();
                if let Some(p) = self.peers.borrow_mut().as_mut() {
                    p.send(to, &message, cluster_id.as_deref());
                }
            }
            QuorumOutput::Persist {
                ready,
                hard_state,
                entries,
                snapshot,
                must_sync,
            } => {
                let _ = self.persist_tx.unbounded_send(PersistJob::Ready {
                    ready,
                    hard_state,
                    entries,
                    snapshot,
                    must_sync,
                });
            }
            QuorumOutput::Committed { index, term, data } => self.on_committed(index, term, &data),
            QuorumOutput::InstallSnapshot { index, data, .. } => {
                match MetadataImage::from_snapshot(&data) {
                    Ok(image) => {
                        let mut st = self.st.borrow_mut();
                        st.controller.install_snapshot(image);
                        let stale: Vec<u64> = st.waiters.range(..=index).map(|(i, _)| *i).collect();
                        for i in stale {
                            if let Some((_, tx)) = st.waiters.remove(&i) {
                                let _ = tx.send(Err(ControllerError::new(
                                    codes::NOT_CONTROLLER,
                                    "leadership changed",
                                )));
                            }
                        }
                        st.last_snapshot = index;
                    }
                    Err(e) => (self.fatal)(format!("metadata snapshot at {index} unreadable: {e}")),
                }
                self.mark_dirty();
            }
            QuorumOutput::LeaderReady { term } => {
                let now = self.now_ms();
                let mut st = self.st.borrow_mut();
                let legacy = st.legacy.take();
                let id = st.new_cluster_id.clone();
                let records = st.controller.become_active_with(now, &id, legacy);
                log::info!(
                    "node {}: active controller for term {term}{}",
                    self.node_id,
                    if records.is_empty() {
                        String::new()
                    } else {
                        format!(" (first entry: {} records)", records.len())
                    }
                );
                propose_locked(&mut st, records);
                drop(st);
                // Peers backing off learn now whether their processes are gone (a refusal
                // fences that broker at the next tick).
                if let Some(p) = self.peers.borrow_mut().as_mut() {
                    p.retry_now();
                }
            }
            QuorumOutput::LeaderChanged { term, leader } => {
                log::info!(
                    "node {}: metadata quorum term {term}: leader {leader:?}",
                    self.node_id
                );
                let mut st = self.st.borrow_mut();
                st.leader = leader;
                if leader != Some(self.node_id) && st.controller.is_active() {
                    st.controller.resign();
                }
                drop(st);
                self.mark_dirty();
            }
        }
    }

    fn on_committed(self: &Rc<Self>, index: u64, term: u64, data: &[u8]) {
        let mut st = self.st.borrow_mut();
        if !data.is_empty() {
            let applied = records::decode_entry(data)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    st.controller
                        .apply_committed(index, &r)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = applied {
                drop(st);
                (self.fatal)(format!("metadata log entry {index} does not apply: {e}"));
                return;
            }
        }
        if let Some((want, tx)) = st.waiters.remove(&index) {
            let _ = tx.send(if want == term {
                Ok(index)
            } else {
                Err(ControllerError::new(
                    codes::NOT_CONTROLLER,
                    "the proposal was lost to a leader change",
                ))
            });
        }
        if !data.is_empty() && index >= st.last_snapshot + st.snapshot_every {
            st.last_snapshot = index;
            let data = st.controller.committed().to_snapshot();
            let _ = self
                .persist_tx
                .unbounded_send(PersistJob::Snapshot { index, data });
        }
        drop(st);
        self.mark_dirty();
    }
}

fn not_controller(e: &ProposeError, leader: Option<i32>) -> ControllerError {
    ControllerError::new(
        codes::NOT_CONTROLLER,
        format!(
            "{e} (leader: {})",
            leader.map_or("unknown".to_string(), |l| l.to_string())
        ),
    )
}

/// Proposes a batch nobody waits for (first records, fencing on session expiry).
fn propose_locked(st: &mut NodeState, records: Vec<MetadataRecord>) {
    if records.is_empty() {
        return;
    }
    if let Err(e) = st.quorum.propose(records::encode_entry(&records)) {
        log::warn!("metadata quorum: proposal refused: {e}");
        st.controller.resign();
    }
}

/// Writes `Persist` outputs in order, one at a time, on the blocking pool.
async fn persist_worker(
    weak: std::rc::Weak<ControllerNode>,
    disk: MetadataLogDisk,
    mut rx: mpsc::UnboundedReceiver<PersistJob>,
) {
    let mut disk = Some(disk);
    while let Some(job) = rx.next().await {
        match job {
            PersistJob::Ready {
                ready,
                hard_state,
                entries,
                snapshot,
                must_sync,
            } => {
                let d = disk.take().expect("disk is back");
                let (d, res) = tern_shard::task::run_blocking(move || {
                    let mut d = d;
                    let r = d.write(hard_state.as_ref(), &entries, snapshot.as_ref(), must_sync);
                    (d, r)
                })
                .await;
                disk = Some(d);
                let Some(node) = weak.upgrade() else { return };
                if let Err(e) = res {
                    (node.fatal)(format!("writing the metadata log: {e:#}"));
                    return;
                }
                node.st.borrow_mut().quorum.persisted(ready);
                node.drain();
            }
            PersistJob::Snapshot { index, data } => {
                let Some(node) = weak.upgrade() else { return };
                let d = disk.take().expect("disk is back");
                if d.last_index() < index {
                    disk = Some(d);
                    continue;
                }
                let snap = node.st.borrow_mut().quorum.compact(index, data);
                let snap = match snap {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("metadata log: snapshot at {index} skipped: {e}");
                        disk = Some(d);
                        continue;
                    }
                };
                drop(node);
                let (d, res) = tern_shard::task::run_blocking(move || {
                    let mut d = d;
                    let r = d.write(None, &[], Some(&snap), true);
                    (d, r)
                })
                .await;
                disk = Some(d);
                if let Err(e) = res {
                    if let Some(node) = weak.upgrade() {
                        (node.fatal)(format!("writing the metadata snapshot at {index}: {e:#}"));
                    }
                    return;
                }
                log::info!("metadata log: snapshot at {index}");
            }
        }
    }
}

/// Whether `me` and the voters heard from within `window_ms` before `now_ms` (their last raft
/// message, Unix ms) are a majority of `voters` (true for an unknown voter set: no evidence).
pub fn majority_heard(
    voters: &[i32],
    me: i32,
    last_heard_ms: &BTreeMap<i32, i64>,
    now_ms: i64,
    window_ms: i64,
) -> bool {
    if voters.is_empty() {
        return true;
    }
    let heard = voters
        .iter()
        .filter(|&&v| {
            v == me
                || last_heard_ms
                    .get(&v)
                    .is_some_and(|&t| now_ms - t <= window_ms)
        })
        .count();
    heard * 2 > voters.len()
}

/// Wall-clock now in Unix milliseconds (DescribeQuorum's timestamps).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voter_alone_with_silent_peers_has_no_majority() {
        let voters = [1, 2, 3];
        let mut heard = BTreeMap::new();
        // Nothing heard from the others (they never ran, or stopped long ago).
        assert!(!majority_heard(&voters, 3, &heard, 10_000, 2_000));
        heard.insert(1, 1_000);
        heard.insert(2, 7_000);
        assert!(!majority_heard(&voters, 3, &heard, 10_000, 2_000));
        // One peer heard within the window: with this voter, a majority of three.
        heard.insert(2, 8_500);
        assert!(majority_heard(&voters, 3, &heard, 10_000, 2_000));
        // Five voters need two peers.
        let five = [1, 2, 3, 4, 5];
        assert!(!majority_heard(&five, 3, &heard, 10_000, 2_000));
        heard.insert(4, 9_900);
        assert!(majority_heard(&five, 3, &heard, 10_000, 2_000));
        // A single voter is its own majority; an unknown voter set proves nothing.
        assert!(majority_heard(&[3], 3, &BTreeMap::new(), 10_000, 2_000));
        assert!(majority_heard(&[], 3, &BTreeMap::new(), 10_000, 2_000));
    }
}
