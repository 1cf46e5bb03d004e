//! The controller's decisions, as a sans-IO state machine over the metadata image. The active
//! controller (the quorum leader) turns requests (broker registration and heartbeats,
//! CreateTopics, CreatePartitions, DeleteTopics, producer-id blocks) and clock ticks (session
//! expiry) into batches of metadata records; the driver proposes each batch to the quorum and
//! answers the request once the batch commits. As in KRaft, the active controller applies its own
//! batches to a working image at once (so that the next decision sees them) and falls back to the
//! committed image when it loses leadership. Every node applies committed entries with
//! `apply_committed`, whether it wrote them or not.

mod alter_partition;
mod brokers;
mod configs;
mod disk_full;
pub mod leadership;
pub mod placement;
pub mod reassignment;
#[cfg(test)]
mod tests;
mod topics;

use std::collections::{BTreeMap, VecDeque};

use super::metadata_log::image::MetadataImage;
use super::metadata_log::records::MetadataRecord;

#[allow(unused_imports)] // the driver's API, used by the tests until the driver hosts it
pub use brokers::{BrokerHeartbeat, BrokerRegistration, HeartbeatReply};
pub use configs::ConfigChange;
#[allow(unused_imports)]
pub use topics::{CreatePartitions, CreateTopic, CreatedTopic};

/// Kafka error codes the controller answers with.
pub mod codes {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
    // Leader elections (leadership.rs).
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    // Reassignments (reassignment.rs).
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
}

/// A refused request: a Kafka error code and a message for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerError {
    pub code: i16,
    pub message: String,
}

impl ControllerError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub type Decision<T> = Result<T, ControllerError>;

/// The controller's settings (from ClusterConfig and the broker defaults).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// broker.session.timeout.ms
    pub session_timeout_ms: u64,
    /// default.replication.factor (CreateTopics with -1).
    pub default_replication_factor: i16,
    /// num.partitions (CreateTopics with -1).
    pub default_partitions: i32,
    /// min.insync.replicas default (a topic config overrides it).
    pub min_insync_replicas: usize,
    /// Producer ids per AllocateProducerIds block (Kafka: 1000).
    pub producer_id_block_size: i64,
    /// Upper bound on partitions per topic.
    pub max_partitions_per_topic: i32,
    // Leadership (leadership.rs).
    /// unclean.leader.election.enable (static default; topic and dynamic configs override it).
    pub unclean_leader_election_enable: bool,
    /// auto.leader.rebalance.enable
    pub auto_leader_rebalance_enable: bool,
    /// leader.imbalance.check.interval.seconds, in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// leader.imbalance.per.broker.percentage
    pub leader_imbalance_per_broker_percentage: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 9000,
            default_replication_factor: 1,
            default_partitions: 1,
            min_insync_replicas: 1,
            producer_id_block_size: 1000,
            max_partitions_per_topic: 10_000,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

impl ControllerConfig {
    /// From the cluster settings and the broker defaults the controller applies.
    pub fn from_cluster(
        cluster: &crate::cluster::config::ClusterConfig,
        default_partitions: i32,
        min_insync_replicas: usize,
    ) -> Self {
        Self {
            session_timeout_ms: cluster.broker_session_timeout_ms,
            default_replication_factor: cluster.default_replication_factor,
            default_partitions,
            min_insync_replicas,
            ..Default::default()
        }
    }
}

impl ControllerConfig {
    /// The leadership settings from the broker's static config (Kafka's names; an
    /// unparsable value keeps the default, with a warning).
    pub fn with_leadership_settings(
        mut self,
        props: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        fn read<T: std::str::FromStr>(
            props: &std::collections::BTreeMap<String, String>,
            key: &str,
            into: &mut T,
        ) {
            if let Some(v) = props.get(key) {
                match v.trim().parse::<T>() {
                    Ok(x) => *into = x,
                    Err(_) => log::warn!("{key}={v} is not valid; keeping the default"),
                }
            }
        }
        read(
            props,
            leadership::UNCLEAN_KEY,
            &mut self.unclean_leader_election_enable,
        );
        read(
            props,
            "auto.leader.rebalance.enable",
            &mut self.auto_leader_rebalance_enable,
        );
        let mut secs = self.leader_imbalance_check_interval_ms / 1000;
        read(props, "leader.imbalance.check.interval.seconds", &mut secs);
        self.leader_imbalance_check_interval_ms = secs.max(1) * 1000;
        read(
            props,
            "leader.imbalance.per.broker.percentage",
            &mut self.leader_imbalance_per_broker_percentage,
        );
        self
    }
}

/// What the active controller knows about a broker's liveness (volatile: rebuilt on failover).
#[derive(Clone, Copy, Debug)]
struct Session {
    last_heartbeat_ms: u64,
    /// Another incarnation asked to register while this session was alive, and how many
    /// heartbeats this session has had since. A broker has one heartbeat in flight at a time,
    /// so the second one was sent after that registration: the session's process is alive,
    /// and the other incarnation is a duplicate node.id (not a restart whose old session has
    /// yet to expire).
    contested: Option<(uuid::Uuid, u32)>,
    /// When the connection the broker's heartbeats came on closed (or a connection to its
    /// controller listener failed) with no heartbeat since: the session then ends
    /// `CONNECTION_LOSS_GRACE_MS` later instead of at the session timeout.
    lost_ms: Option<u64>,
    /// Its controller listener refused a connection (nobody listens: the process is gone)
    /// with no heartbeat since: the session is over at the next tick.
    gone: bool,
    /// The broker's last heartbeat said its log dir is below the free-space floor.
    log_dir_full: bool,
}

/// How long a broker whose connection was lost may take to heartbeat again before it is
/// fenced (capped by broker.session.timeout.ms). A kill -9 closes every socket of the process
/// at once, so a crashed leader's partitions move in about this long instead of a whole
/// session timeout; a live broker reconnects and heartbeats within it, else it is fenced and
/// unfenced again at its next heartbeat (a leadership blip, no lost writes).
pub const CONNECTION_LOSS_GRACE_MS: u64 = 500;

/// Heartbeats after a contested registration that prove the registered process alive.
const HEARTBEATS_PROVING_ALIVE: u32 = 2;

impl Session {
    fn new(now_ms: u64) -> Self {
        Self {
            last_heartbeat_ms: now_ms,
            contested: None,
            lost_ms: None,
            gone: false,
            log_dir_full: false,
        }
    }
}

/// The controller state machine of one node.
pub struct Controller {
    cfg: ControllerConfig,
    /// Applied from committed log entries only.
    committed: MetadataImage,
    /// `committed` plus this node's uncommitted batches, in proposal order (active only).
    working: MetadataImage,
    pending: VecDeque<Vec<MetadataRecord>>,
    active: bool,
    sessions: BTreeMap<i32, Session>,
    /// Offset of the committed entry holding each broker's current registration: a broker is
    /// caught up (may be unfenced) once its metadata offset reaches it.
    registration_offsets: BTreeMap<i32, u64>,
    /// Unclean elections this controller decided (a metric).
    unclean_elections: u64,
    /// When the auto leader rebalance last looked (None: not since becoming active).
    last_imbalance_check_ms: Option<u64>,
}

impl Controller {
    pub fn new(cfg: ControllerConfig, committed: MetadataImage) -> Self {
        Self {
            cfg,
            working: committed.clone(),
            committed,
            pending: VecDeque::new(),
            active: false,
            sessions: BTreeMap::new(),
            registration_offsets: BTreeMap::new(),
            unclean_elections: 0,
            last_imbalance_check_ms: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn committed(&self) -> &MetadataImage {
        &self.committed
    }

    /// The image decisions are made on (committed + own pending batches).
    pub fn image(&self) -> &MetadataImage {
        &self.working
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// This node became quorum leader and has applied everything committed before its term.
    /// Every registered broker gets a full session from now (as Kafka's new active controller).
    /// Returns the records to propose first: the cluster id when the log has none yet.
    pub fn become_active(&mut self, now_ms: u64, new_cluster_id: &str) -> Vec<MetadataRecord> {
        self.active = true;
        self.last_imbalance_check_ms = None;
        self.working = self.committed.clone();
        self.pending.clear();
        self.sessions = self
            .committed
            .brokers
            .keys()
            .map(|&id| (id, Session::new(now_ms)))
            .collect();
        if self.committed.cluster_id.is_some() {
            return Vec::new();
        }
        let records = vec![MetadataRecord::ClusterId {
            cluster_id: new_cluster_id.to_string(),
        }];
        self.stage(records.clone())
            .expect("a cluster id applies to an image without one");
        records
    }

    /// The broker's session is known to be over (its process is gone): a registration with a
    /// new incarnation is not a duplicate.
    pub fn forget_session(&mut self, broker_id: i32) {
        self.sessions.remove(&broker_id);
    }

    /// Leadership lost: uncommitted decisions are forgotten (the new leader decides again).
    pub fn resign(&mut self) {
        self.active = false;
        self.pending.clear();
        self.sessions.clear();
        self.working = self.committed.clone();
    }

    /// Applies one committed entry (offset = its log index). A damaged entry is an error for
    /// the driver to stop on: the log is the source of truth and cannot be skipped.
    pub fn apply_committed(
        &mut self,
        offset: u64,
        records: &[MetadataRecord],
    ) -> Result<(), super::metadata_log::image::ApplyError> {
        self.committed.apply_entry(offset, records)?;
        for r in records {
            if let MetadataRecord::RegisterBroker(reg) = r {
                self.registration_offsets.insert(reg.broker_id, offset);
            }
            if let MetadataRecord::UnregisterBroker { broker_id, .. } = r {
                self.registration_offsets.remove(broker_id);
            }
        }
        if !self.active {
            self.working = self.committed.clone();
            return Ok(());
        }
        if self
            .pending
            .front()
            .is_some_and(|p| p.as_slice() == records)
        {
            self.pending.pop_front();
            self.working.last_offset = self.working.last_offset.max(offset);
            if self.pending.is_empty() {
                debug_assert_eq!(self.working, self.committed, "working image diverged");
            }
        } else {
            // Not ours while we think we lead: our view is stale. Resign; the quorum decides.
            log::warn!("controller: committed entry {offset} is not our pending batch; resigning");
            self.resign();
        }
        Ok(())
    }

    /// Replaces everything with a snapshot's image (installed from the leader or at start).
    pub fn install_snapshot(&mut self, image: MetadataImage) {
        self.registration_offsets = image
            .brokers
            .keys()
            .map(|&b| (b, image.last_offset))
            .collect();
        self.committed = image;
        self.resign();
    }

    /// Applies a batch to the working image and queues it as pending (active only).
    fn stage(&mut self, records: Vec<MetadataRecord>) -> Decision<Vec<MetadataRecord>> {
        if !self.active {
            return Err(ControllerError::new(
                codes::NOT_CONTROLLER,
                "this node is not the active controller",
            ));
        }
        if records.is_empty() {
            return Ok(records);
        }
        for r in &records {
            // Decisions are computed on `working`, so a refusal here is a controller bug.
            if let Err(e) = self.working.apply(r) {
                panic!("controller produced a record that does not apply: {e}: {r:?}");
            }
        }
        self.pending.push_back(records.clone());
        Ok(records)
    }

    fn require_active(&self) -> Decision<()> {
        if self.active {
            Ok(())
        } else {
            Err(ControllerError::new(
                codes::NOT_CONTROLLER,
                "this node is not the active controller",
            ))
        }
    }
}
