//! The group coordinator: classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup),
//! KIP-848 consumer groups (ConsumerGroupHeartbeat, broker-side `uniform`/`range` assignment),
//! and committed offsets.
//!
//! **Placement.** As in Kafka, group `g` belongs to partition
//! `p = (javaStringHash(g) & 0x7fffffff) % offsets.topic.num.partitions` of the internal
//! `__consumer_offsets` log, and its coordinator is the shard that owns that partition,
//! `partition_shard("__consumer_offsets", p, shards)` (see `shard/src/placement.rs`). The group's
//! state machine runs on that shard alone (plain `RefCell`s, no locks); a request for the group
//! arriving on any other shard is forwarded there as a `ShardMessage::Group`. Because the
//! partition count is fixed (not the shard count), changing `--shards` between restarts just moves
//! whole offsets partitions between shards; nothing needs migrating.
//!
//! **Persistence.** Each offsets partition is a `tern_storage::PartitionLog` at
//! `<log.dirs>/__tern_groups/__consumer_offsets-<p>/`, holding RecordBatch v2 records whose
//! key/value use Kafka's `__consumer_offsets` schemas (`records.rs`). A commit is answered after its
//! batch is fdatasynced (`Durability::Synced`). At start-up each shard opens its partitions and
//! replays them (last record per key wins, null value = tombstone) before it serves anything.
//! The partitions are compacted by the shard's log cleaner (`crate::ops::cleaner`, as a topic with
//! `cleanup.policy=compact`): superseded records go, tombstones after `delete.retention.ms`;
//! the replay reads the compacted log (offsets with gaps) the same way.
//! Offsets of groups without members expire after `offsets.retention.minutes` (tombstones).

pub mod assignor;
mod classic;
mod consumer;
pub mod leadership;
mod offsets;
pub mod protocol;
pub mod records;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::consumer_group_describe_response;
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::consumer_group_heartbeat_response::ConsumerGroupHeartbeatResponse;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::LeaveGroupResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::OffsetCommitResponse;
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::OffsetDeleteResponse;
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use tern_shard::{ShardId, partition_shard};
use tern_storage::{Durability, LogConfig, PartitionLog, ReadChunk, TailCache};

use crate::config::BrokerConfig;
use crate::messages::Reply;
use crate::shard_state::ShardState;

pub use offsets::{FetchGroup, FetchedGroup, FetchedPartition};
use records::LogRecord;

/// Error codes of the group APIs (Kafka protocol guide names).
pub mod codes {
    pub use crate::kafka::errors::*;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
}

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Directory (under `log.dirs`) of the offsets partitions; a name no topic directory can have.
pub const GROUPS_DIR: &str = "__tern_groups";
/// Largest `committed_metadata` accepted (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// How often a shard checks session/rebalance timers.
const TICK: Duration = Duration::from_millis(100);

/// Coordinator settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay_ms: u64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub consumer_heartbeat_interval_ms: i32,
    pub consumer_session_timeout_ms: i32,
    pub offsets_retention_ms: i64,
    pub retention_check_interval_ms: u64,
    pub offsets_partitions: i32,
    /// offsets.commit.timeout.ms: how long a coordinator write (offset commit, group metadata)
    /// waits for the offsets partition's ISR before it fails (Kafka's default 5000).
    pub offsets_commit_timeout_ms: u64,
    /// `offsets.topic.segment.bytes`: the offsets partitions roll a segment at this size (the
    /// cleaner only compacts rolled segments).
    pub offsets_segment_bytes: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45_000,
            offsets_retention_ms: 10080 * 60_000,
            retention_check_interval_ms: 600_000,
            offsets_partitions: 50,
            offsets_commit_timeout_ms: 5000,
            offsets_segment_bytes: 100 << 20,
        }
    }
}

impl GroupConfig {
    pub fn from_props<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self> {
        fn num<T: std::str::FromStr>(key: &str, v: Option<&str>, default: T) -> Result<T> {
            match v {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<T>()
                    .map_err(|_| anyhow!("invalid value for {key}: {v:?} is not a valid number")),
            }
        }
        let d = Self::default();
        let c = Self {
            initial_rebalance_delay_ms: num(
                "group.initial.rebalance.delay.ms",
                get("group.initial.rebalance.delay.ms"),
                d.initial_rebalance_delay_ms,
            )?,
            min_session_timeout_ms: num(
                "group.min.session.timeout.ms",
                get("group.min.session.timeout.ms"),
                d.min_session_timeout_ms,
            )?,
            max_session_timeout_ms: num(
                "group.max.session.timeout.ms",
                get("group.max.session.timeout.ms"),
                d.max_session_timeout_ms,
            )?,
            consumer_heartbeat_interval_ms: num(
                "group.consumer.heartbeat.interval.ms",
                get("group.consumer.heartbeat.interval.ms"),
                d.consumer_heartbeat_interval_ms,
            )?,
            consumer_session_timeout_ms: num(
                "group.consumer.session.timeout.ms",
                get("group.consumer.session.timeout.ms"),
                d.consumer_session_timeout_ms,
            )?,
            offsets_retention_ms: num::<i64>(
                "offsets.retention.minutes",
                get("offsets.retention.minutes"),
                10080,
            )?
            .saturating_mul(60_000),
            retention_check_interval_ms: num(
                "offsets.retention.check.interval.ms",
                get("offsets.retention.check.interval.ms"),
                d.retention_check_interval_ms,
            )?,
            offsets_partitions: num(
                "offsets.topic.num.partitions",
                get("offsets.topic.num.partitions"),
                d.offsets_partitions,
            )?,
            offsets_commit_timeout_ms: num(
                "offsets.commit.timeout.ms",
                get("offsets.commit.timeout.ms"),
                d.offsets_commit_timeout_ms,
            )?,
            offsets_segment_bytes: num(
                "offsets.topic.segment.bytes",
                get("offsets.topic.segment.bytes"),
                d.offsets_segment_bytes,
            )?,
        };
        if c.offsets_partitions < 1 || c.offsets_partitions > 1000 {
            bail!(
                "invalid value for offsets.topic.num.partitions: {} (1..=1000)",
                c.offsets_partitions
            );
        }
        if c.offsets_segment_bytes < 1 {
            bail!("invalid value for offsets.topic.segment.bytes: must be >= 1");
        }
        if c.min_session_timeout_ms < 1 || c.max_session_timeout_ms < c.min_session_timeout_ms {
            bail!("invalid value for group.min.session.timeout.ms / group.max.session.timeout.ms");
        }
        if c.consumer_heartbeat_interval_ms < 1
            || c.consumer_session_timeout_ms <= c.consumer_heartbeat_interval_ms
        {
            bail!(
                "invalid value for group.consumer.heartbeat.interval.ms (must be > 0 and < group.consumer.session.timeout.ms)"
            );
        }
        if c.offsets_retention_ms < 60_000 {
            bail!("invalid value for offsets.retention.minutes: must be >= 1");
        }
        if c.retention_check_interval_ms < 1 {
            bail!("invalid value for offsets.retention.check.interval.ms: must be >= 1");
        }
        if c.offsets_commit_timeout_ms < 1 {
            bail!("invalid value for offsets.commit.timeout.ms: must be >= 1");
        }
        Ok(c)
    }
}

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka uses for the offsets partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group (Kafka's formula).
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    (java_string_hash(group) & 0x7fff_ffff) % partitions
}

/// The shard that coordinates `group`.
pub fn coordinator_shard(group: &str, partitions: i32, shards: usize) -> ShardId {
    partition_shard(OFFSETS_TOPIC, offsets_partition(group, partitions), shards)
}

/// Requests forwarded to a group's coordinator shard (one `ShardMessage::Group`).
pub enum GroupMessage {
    Join {
        version: i16,
        client_id: String,
        /// The member's address as Kafka reports it ("/" + IP).
        client_host: String,
        req: JoinGroupRequest,
        reply: Reply<JoinGroupResponse>,
    },
    Sync {
        version: i16,
        req: SyncGroupRequest,
        reply: Reply<SyncGroupResponse>,
    },
    Heartbeat {
        req: HeartbeatRequest,
        reply: Reply<i16>,
    },
    Leave {
        version: i16,
        req: LeaveGroupRequest,
        reply: Reply<LeaveGroupResponse>,
    },
    Commit {
        version: i16,
        req: OffsetCommitRequest,
        reply: Reply<OffsetCommitResponse>,
    },
    Fetch {
        groups: Vec<FetchGroup>,
        reply: Reply<Vec<FetchedGroup>>,
    },
    List {
        states: Vec<String>,
        types: Vec<String>,
        reply: Reply<Vec<ListedGroup>>,
    },
    Describe {
        version: i16,
        groups: Vec<String>,
        reply: Reply<Vec<DescribedGroup>>,
    },
    Delete {
        groups: Vec<String>,
        reply: Reply<Vec<DeletableGroupResult>>,
    },
    OffsetDelete {
        req: OffsetDeleteRequest,
        reply: Reply<OffsetDeleteResponse>,
    },
    ConsumerHeartbeat {
        version: i16,
        client_id: String,
        /// The member's address as Kafka reports it ("/" + IP).
        client_host: String,
        req: ConsumerGroupHeartbeatRequest,
        reply: Reply<ConsumerGroupHeartbeatResponse>,
    },
    ConsumerDescribe {
        groups: Vec<String>,
        reply: Reply<Vec<consumer_group_describe_response::DescribedGroup>>,
    },
}

/// One committed offset.
#[derive(Clone, Debug)]
pub struct OffsetEntry {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ts: i64,
    /// Position of the record in the offsets log (a later record always wins).
    pub log_offset: i64,
}

pub enum Kind {
    Classic(classic::ClassicGroup),
    Consumer(consumer::ConsumerGroup),
}

pub struct Group {
    pub id: String,
    pub partition: i32,
    pub offsets: BTreeMap<(String, i32), OffsetEntry>,
    pub kind: Kind,
}

impl Group {
    fn new_classic(id: &str, partition: i32) -> Self {
        Self {
            id: id.to_string(),
            partition,
            offsets: BTreeMap::new(),
            kind: Kind::Classic(classic::ClassicGroup::new()),
        }
    }

    /// No members (and, for classic groups, no rebalance under way).
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.members.is_empty() && c.pending.is_empty(),
            Kind::Consumer(c) => c.members.is_empty(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Classic(_) => "classic",
            Kind::Consumer(_) => "consumer",
        }
    }

    pub fn state_name(&self) -> &'static str {
        match &self.kind {
            Kind::Classic(c) => c.state.name(),
            Kind::Consumer(c) => c.state_name(),
        }
    }

    pub fn protocol_type(&self) -> String {
        match &self.kind {
            Kind::Classic(c) => c.protocol_type.clone().unwrap_or_default(),
            Kind::Consumer(_) => "consumer".to_string(),
        }
    }
}

/// The shard-local coordinator: the groups whose offsets partitions this shard owns.
pub struct GroupCoordinator {
    shard: ShardId,
    shards: usize,
    pub config: Arc<BrokerConfig>,
    pub groups: RefCell<HashMap<String, Group>>,
    logs: RefCell<HashMap<i32, Rc<PartitionLog>>>,
    cache: Rc<TailCache>,
    closed: Cell<bool>,
    /// Shutdown has begun: new JoinGroups are answered NOT_COORDINATOR instead of parked.
    pub draining: Cell<bool>,
    last_retention_check: Cell<Option<Instant>>,
    /// Cluster mode: the offsets partitions are the replicated `__consumer_offsets` topic's logs
    /// (opened by the partition manager), served while this broker leads them (`leadership`).
    /// Standalone: this coordinator's own logs under `__tern_groups`, always served.
    replicated: Cell<bool>,
    pub leadership: RefCell<leadership::CoordinatorLeadership>,
    /// The shard this coordinator belongs to (set by `start`), for the acks=all wait of writes.
    shard_state: RefCell<Weak<ShardState>>,
}

/// A failed write to an offsets partition: the Kafka error code the request gets.
#[derive(Debug, Clone)]
pub struct WriteError {
    pub code: i16,
    pub message: String,
}

impl WriteError {
    fn new(code: i16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (error {})", self.message, self.code)
    }
}

impl GroupCoordinator {
    pub fn new(shard: ShardId, shards: usize, config: Arc<BrokerConfig>) -> Self {
        let replicated = !config.cluster.standalone;
        Self {
            shard,
            shards,
            config,
            groups: RefCell::new(HashMap::new()),
            logs: RefCell::new(HashMap::new()),
            cache: TailCache::new(4 << 20),
            closed: Cell::new(false),
            draining: Cell::new(false),
            last_retention_check: Cell::new(None),
            replicated: Cell::new(replicated),
            leadership: RefCell::new(leadership::CoordinatorLeadership::default()),
            shard_state: RefCell::new(Weak::new()),
        }
    }

    pub fn gcfg(&self) -> &GroupConfig {
        &self.config.groups
    }

    pub fn partition_of(&self, group: &str) -> i32 {
        offsets_partition(group, self.gcfg().offsets_partitions)
    }

    fn owned_partitions(&self) -> Vec<i32> {
        (0..self.gcfg().offsets_partitions)
            .filter(|p| partition_shard(OFFSETS_TOPIC, *p, self.shards) == self.shard)
            .collect()
    }

    fn partition_dir(&self, p: i32) -> PathBuf {
        self.config
            .log_dir
            .join(GROUPS_DIR)
            .join(format!("{OFFSETS_TOPIC}-{p}"))
    }

    fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.gcfg().offsets_segment_bytes,
            segment_ms: u64::MAX,
            index_interval_bytes: 4096,
            max_batch_bytes: 64 << 20,
            max_decompressed_batch_bytes: tern_storage::DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
            keys_required: false,
            readahead_bytes: tern_storage::DEFAULT_READAHEAD_BYTES,
            readahead_inflight_bytes: tern_storage::DEFAULT_READAHEAD_INFLIGHT_BYTES,
            cold_read_bytes_per_sec: 0,
        }
    }

    /// Opens and replays every offsets partition this shard owns. Runs before the shard serves.
    pub async fn load(&self) -> Result<()> {
        if self.replicated.get() {
            // Cluster mode: partitions load when this broker becomes their leader.
            return Ok(());
        }
        let started = Instant::now();
        let mut records = 0usize;
        for p in self.owned_partitions() {
            let dir = self.partition_dir(p);
            finish_legacy_rewrite(&dir)?;
            let log = PartitionLog::open(&dir, self.log_config(), self.cache.clone())
                .await
                .map_err(|e| anyhow!("opening {}: {e}", dir.display()))?;
            let recs = read_log(&log)
                .await
                .map_err(|e| anyhow!("replaying {}: {e}", dir.display()))?;
            records += recs.len();
            for (off, rec) in recs {
                self.apply_record(p, off, rec);
            }
            self.logs.borrow_mut().insert(p, log);
        }
        let n = self.groups.borrow().len();
        if records > 0 || n > 0 {
            log::info!(
                "shard {}: group coordinator loaded {n} groups from {records} records in {:?}",
                self.shard,
                started.elapsed()
            );
        }
        Ok(())
    }

    /// Standalone: this shard's offsets partitions, for the log cleaner (in cluster mode they
    /// are the `__consumer_offsets` topic's logs, which the cleaner finds among the topics').
    pub fn cleanable_logs(&self) -> Vec<(i32, Rc<PartitionLog>)> {
        if self.replicated.get() || self.closed.get() {
            return Vec::new();
        }
        let mut out: Vec<(i32, Rc<PartitionLog>)> = self
            .logs
            .borrow()
            .iter()
            .map(|(p, l)| (*p, l.clone()))
            .collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// Applies one replayed (or freshly written) record to the in-memory state.
    pub fn apply_record(&self, p: i32, log_offset: i64, rec: LogRecord) {
        let mut groups = self.groups.borrow_mut();
        match rec {
            LogRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(v) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new_classic(&group, p));
                    let key = (topic, partition);
                    if g.offsets
                        .get(&key)
                        .is_none_or(|e| e.log_offset <= log_offset)
                    {
                        g.offsets.insert(
                            key,
                            OffsetEntry {
                                offset: v.offset,
                                leader_epoch: v.leader_epoch,
                                metadata: v.metadata,
                                commit_ts: v.commit_ts,
                                log_offset,
                            },
                        );
                    }
                }
                None => {
                    if let Some(g) = groups.get_mut(&group) {
                        let key = (topic, partition);
                        if g.offsets
                            .get(&key)
                            .is_some_and(|e| e.log_offset <= log_offset)
                        {
                            g.offsets.remove(&key);
                        }
                    }
                }
            },
            LogRecord::ClassicGroup { group, value } => match value {
                Some(v) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new_classic(&group, p));
                    g.kind = Kind::Classic(classic::ClassicGroup::from_value(v, Instant::now()));
                }
                None => {
                    if groups
                        .get(&group)
                        .is_some_and(|g| matches!(g.kind, Kind::Classic(_)))
                    {
                        groups.remove(&group);
                    }
                }
            },
            LogRecord::ConsumerGroup { group, epoch } => match epoch {
                Some(e) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new_classic(&group, p));
                    match &mut g.kind {
                        Kind::Consumer(c) => c.epoch = c.epoch.max(e),
                        kind => *kind = Kind::Consumer(consumer::ConsumerGroup::new(e)),
                    }
                }
                None => {
                    if groups
                        .get(&group)
                        .is_some_and(|g| matches!(g.kind, Kind::Consumer(_)))
                    {
                        groups.remove(&group);
                    }
                }
            },
        }
    }

    /// Appends `records` to offsets partition `p` now (so appends keep call order); the returned
    /// future resolves with the batch's base offset once it is fdatasynced and, in cluster mode,
    /// replicated to the partition's ISR (acks=all: the high watermark passed it).
    pub fn append(
        &self,
        p: i32,
        recs: &[LogRecord],
    ) -> LocalBoxFuture<'static, Result<i64, WriteError>> {
        use codes::{COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR};
        if self.closed.get() {
            return Box::pin(async {
                Err(WriteError::new(
                    NOT_COORDINATOR,
                    "coordinator is shutting down",
                ))
            });
        }
        let epoch = if self.replicated.get() {
            match self.leadership.borrow().loaded_epoch(p) {
                Some(e) => e,
                None => {
                    return Box::pin(async move {
                        Err(WriteError::new(
                            NOT_COORDINATOR,
                            format!("{OFFSETS_TOPIC}-{p} is not led here"),
                        ))
                    });
                }
            }
        } else {
            0
        };
        let Some(log) = self.logs.borrow().get(&p).cloned() else {
            return Box::pin(async move {
                Err(WriteError::new(
                    NOT_COORDINATOR,
                    format!("offsets partition {p} is not open here"),
                ))
            });
        };
        let state = self.shard_state.borrow().upgrade();
        if let Some(state) = &state
            && let Err(code) = state.replicas.check_produce(OFFSETS_TOPIC, p, -1)
        {
            // Kafka answers a coordinator write below min.insync.replicas this way.
            return Box::pin(async move {
                Err(WriteError::new(
                    COORDINATOR_NOT_AVAILABLE,
                    format!("{OFFSETS_TOPIC}-{p}: ISR too small ({code})"),
                ))
            });
        }
        // Only a partition with a leader role here waits for its ISR (as Produce decides): a
        // standalone or factor-1 offsets partition has no replication role, and waiting for
        // one would time out.
        let state = state.filter(|s| s.replicas.leads(OFFSETS_TOPIC, p));
        let timeout = Duration::from_millis(self.gcfg().offsets_commit_timeout_ms);
        match log.append(records::encode_batch(recs), epoch, Durability::Synced) {
            Ok(a) => {
                let base = a.base_offset;
                let last = a.last_offset;
                let done = a.done;
                Box::pin(async move {
                    done.await
                        .map_err(|e| WriteError::new(COORDINATOR_NOT_AVAILABLE, e.to_string()))?;
                    if let Some(state) = state {
                        crate::cluster::replication::driver::ShardReplicas::after_append(
                            &state,
                            OFFSETS_TOPIC,
                            p,
                            last,
                            -1,
                            timeout,
                        )
                        .await
                        .map_err(|code| {
                            // Kafka's mapping for coordinator writes.
                            let mapped = if code == crate::kafka::errors::NOT_LEADER_OR_FOLLOWER {
                                NOT_COORDINATOR
                            } else {
                                COORDINATOR_NOT_AVAILABLE
                            };
                            WriteError::new(
                                mapped,
                                format!("{OFFSETS_TOPIC}-{p}: replication failed with {code}"),
                            )
                        })?;
                    }
                    Ok(base)
                })
            }
            Err(e) => {
                Box::pin(
                    async move { Err(WriteError::new(COORDINATOR_NOT_AVAILABLE, e.to_string())) },
                )
            }
        }
    }

    /// `append` without waiting (state already applied in memory); failures are logged.
    pub fn append_detached(&self, p: i32, recs: Vec<LogRecord>) {
        if self.closed.get() || !self.logs.borrow().contains_key(&p) {
            log::warn!(
                "{OFFSETS_TOPIC}-{p} is not open: {} group records not written",
                recs.len()
            );
            return;
        }
        let fut = self.append(p, &recs);
        tern_shard::task::spawn(async move {
            if let Err(e) = fut.await {
                log::error!("writing group metadata to {OFFSETS_TOPIC}-{p}: {e}");
            }
        });
    }

    /// Leadership of offsets partition `p` moved away: its groups leave memory and their parked
    /// requests answer NOT_COORDINATOR (clients find the new coordinator and rejoin there).
    fn unload(&self, p: i32) {
        self.logs.borrow_mut().remove(&p);
        let mut groups = self.groups.borrow_mut();
        let mut n = 0usize;
        groups.retain(|_, g| {
            if g.partition != p {
                return true;
            }
            if let Kind::Classic(c) = &mut g.kind {
                c.fail_parked(codes::NOT_COORDINATOR);
            }
            n += 1;
            false
        });
        log::info!("{OFFSETS_TOPIC}-{p}: no longer coordinator, unloaded {n} groups");
    }

    /// The error code for a request to `group` on this shard: None when it is served here
    /// (always in standalone mode; in cluster mode once its partition is loaded).
    pub fn refusal(&self, group: &str) -> Option<i16> {
        if !self.replicated.get() {
            return None;
        }
        self.leadership.borrow().refusal(self.partition_of(group))
    }

    /// Answers every request parked in a group (JoinGroup/SyncGroup) with NOT_COORDINATOR, so
    /// shutdown does not wait for rebalances; clients retry against the restarted broker.
    pub fn shutdown(&self) {
        self.draining.set(true);
        for g in self.groups.borrow_mut().values_mut() {
            if let Kind::Classic(c) = &mut g.kind {
                c.fail_parked(codes::NOT_COORDINATOR);
            }
        }
    }

    pub async fn close(&self) {
        self.closed.set(true);
        let logs: Vec<(i32, Rc<PartitionLog>)> = self.logs.borrow_mut().drain().collect();
        if self.replicated.get() {
            return; // the partition manager's logs: it closes them
        }
        for (p, log) in logs {
            if let Err(e) = log.close().await {
                log::error!("closing {OFFSETS_TOPIC}-{p}: {e}");
            }
        }
    }

    /// Timers: session and rebalance timeouts, delayed joins, offset expiry.
    fn tick(&self, state: &Rc<ShardState>) {
        let now = Instant::now();
        let ids: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for id in &ids {
            classic::tick(self, id, now);
            consumer::tick(self, state, id, now);
        }
        let due = self.last_retention_check.get().is_none_or(|t| {
            now.duration_since(t) >= Duration::from_millis(self.gcfg().retention_check_interval_ms)
        });
        if due {
            self.last_retention_check.set(Some(now));
            offsets::expire(self, records::now_ms());
        }
    }
}

/// Cluster mode, after the replication roles followed new metadata: the offsets partitions this
/// shard owns and this broker leads (with a leader role when replicated, so writes wait for
/// the ISR) are loaded from their logs, the others unloaded (`leadership`).
pub fn on_metadata(state: &Rc<ShardState>, meta: &crate::metadata::ClusterMetadata) {
    let co = &state.groups;
    if !co.replicated.get() || co.closed.get() {
        return;
    }
    let node = state.config.node_id;
    let mut led = Vec::new();
    if let Some(tm) = meta.topic(OFFSETS_TOPIC) {
        for p in co.owned_partitions() {
            let Some(pm) = tm.partition_meta(p) else {
                continue;
            };
            let replicated_ok = pm.replicas.len() <= 1 || state.replicas.leads(OFFSETS_TOPIC, p);
            if pm.leader == node
                && replicated_ok
                && state.partitions.get(OFFSETS_TOPIC, p).is_some()
            {
                led.push((p, pm.leader_epoch));
            }
        }
    }
    let actions = co.leadership.borrow_mut().on_metadata(&led);
    for action in actions {
        match action {
            leadership::LeadershipAction::Unload { partition } => co.unload(partition),
            leadership::LeadershipAction::Load { partition, epoch } => {
                let state = state.clone();
                tern_shard::task::spawn(async move {
                    load_partition(&state, partition, epoch).await;
                });
            }
        }
    }
}

/// Rebuilds the groups of offsets partition `p` from its log (a new leadership at `epoch`).
async fn load_partition(state: &Rc<ShardState>, p: i32, epoch: i32) {
    let co = &state.groups;
    let started = Instant::now();
    let Some(log) = state.partitions.get(OFFSETS_TOPIC, p) else {
        co.leadership.borrow_mut().on_load_failed(p, epoch);
        return;
    };
    match read_log(&log).await {
        Ok(recs) => {
            // No await from here on: the check and the apply see the same leadership.
            if !co.leadership.borrow_mut().on_loaded(p, epoch) {
                log::info!(
                    "{OFFSETS_TOPIC}-{p}: load at epoch {epoch} discarded (leadership moved)"
                );
                return;
            }
            co.groups.borrow_mut().retain(|_, g| g.partition != p);
            let n = recs.len();
            for (off, rec) in recs {
                co.apply_record(p, off, rec);
            }
            co.logs.borrow_mut().insert(p, log);
            let groups = co
                .groups
                .borrow()
                .values()
                .filter(|g| g.partition == p)
                .count();
            log::info!(
                "{OFFSETS_TOPIC}-{p}: coordinator at leader epoch {epoch}: loaded {groups} groups from {n} records in {:?}",
                started.elapsed()
            );
        }
        Err(e) => {
            co.leadership.borrow_mut().on_load_failed(p, epoch);
            log::error!("{OFFSETS_TOPIC}-{p}: loading groups failed: {e}");
        }
    }
}

/// Start-up: replay the offsets partitions, then run the timer task.
pub async fn start(state: &Rc<ShardState>) -> Result<()> {
    *state.groups.shard_state.borrow_mut() = Rc::downgrade(state);
    state.groups.load().await?;
    // The first retention check runs one interval after start-up.
    state.groups.last_retention_check.set(Some(Instant::now()));
    let st = state.clone();
    tern_shard::task::spawn(async move {
        loop {
            tern_shard::task::sleep(TICK).await;
            if st.groups.closed.get() {
                break;
            }
            st.groups.tick(&st);
        }
    });
    Ok(())
}

/// Completes or rolls back a start-up rewrite of an offsets partition interrupted by a crash
/// under an earlier Tern version (which rewrote a grown partition into `<dir>.compacting`, then
/// renamed the old directory to `<dir>.deleting`; the log cleaner does this job now): a
/// `.compacting` directory next to a `.deleting` one replaces it; otherwise the old log is kept.
fn finish_legacy_rewrite(dir: &std::path::Path) -> Result<()> {
    let tmp = dir.with_extension("compacting");
    let trash = dir.with_extension("deleting");
    if !dir.exists() && trash.exists() {
        if tmp.exists() {
            std::fs::rename(&tmp, dir)?;
        } else {
            std::fs::rename(&trash, dir)?;
        }
    }
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&trash);
    }
    Ok(())
}

/// Reads every record of an offsets partition: at start-up, and in cluster mode when this
/// broker becomes the partition's leader while the shard serves. Ranges of segment files are
/// read on the shard's blocking pool (a `pread` may wait for the disk), and the task yields
/// between chunks, so a large log never stalls the shard.
async fn read_log(log: &PartitionLog) -> Result<Vec<(i64, LogRecord)>, String> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let hw = log.high_watermark();
    while offset < hw {
        let chunks = log.read(offset, 4 << 20).await.map_err(|e| e.to_string())?;
        if chunks.is_empty() {
            break;
        }
        let mut buf = bytes::BytesMut::new();
        for c in chunks {
            match c {
                ReadChunk::Memory(b) => buf.extend_from_slice(&b),
                ReadChunk::File {
                    file,
                    offset: pos,
                    len,
                } => {
                    let read = tern_shard::task::run_blocking(move || {
                        let mut part = vec![0u8; len as usize];
                        file.read_exact_at(&mut part, pos).map(|()| part)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    buf.extend_from_slice(&read);
                }
            }
        }
        // The next read starts after the last batch read, whatever its records: a cleaned log
        // has gaps, and a batch may hold no record this replay decodes.
        let next = batches_end(&buf).max(offset);
        let recs = records::decode_batches(buf.freeze())?;
        for (off, rec) in recs {
            if off >= offset {
                out.push((off, rec));
            }
        }
        if next == offset {
            break; // no complete batch: nothing further to read
        }
        offset = next;
        tern_shard::task::yield_if_needed().await;
    }
    Ok(out)
}

/// The offset after the last complete RecordBatch in `buf` (0 when there is none).
fn batches_end(buf: &[u8]) -> i64 {
    let mut pos = 0usize;
    let mut end = 0i64;
    while let Ok(h) = tern_storage::batch::BatchHeader::parse(&buf[pos..]) {
        if buf.len() - pos < h.size {
            break;
        }
        end = end.max(h.last_offset().saturating_add(1));
        pos += h.size;
    }
    end
}

/// Runs a forwarded group request on this (the owning) shard.
pub async fn handle_message(state: Rc<ShardState>, msg: GroupMessage) {
    let Some(msg) = refuse_unserved(&state.groups, msg) else {
        return;
    };
    let co = &state.groups;
    match msg {
        GroupMessage::Join {
            version,
            client_id,
            client_host,
            req,
            reply,
        } => classic::join(&state.groups, version, client_id, client_host, req, reply),
        GroupMessage::Sync {
            version,
            req,
            reply,
        } => classic::sync(&state.groups, version, req, reply).await,
        GroupMessage::Heartbeat { req, reply } => {
            let _ = reply.send(classic::heartbeat(&state.groups, req));
        }
        GroupMessage::Leave {
            version,
            req,
            reply,
        } => {
            let _ = reply.send(classic::leave(&state.groups, version, req));
        }
        GroupMessage::Commit {
            version,
            req,
            reply,
        } => {
            let resp = offsets::commit(&state, version, req).await;
            let _ = reply.send(resp);
        }
        GroupMessage::Fetch { groups, reply } => {
            let out = groups
                .into_iter()
                .map(|g| match co.refusal(&g.group_id) {
                    Some(code) => FetchedGroup {
                        error_code: code,
                        topics: Vec::new(),
                    },
                    None => offsets::fetch(co, g),
                })
                .collect();
            let _ = reply.send(out);
        }
        GroupMessage::List {
            states,
            types,
            reply,
        } => {
            let _ = reply.send(list(&state.groups, &states, &types));
        }
        GroupMessage::Describe {
            version,
            groups,
            reply,
        } => {
            let out = groups
                .iter()
                .map(|g| {
                    let mut d = describe(&state, version, g);
                    if let Some(code) = co.refusal(g) {
                        d.error_code = code;
                    }
                    d
                })
                .collect();
            let _ = reply.send(out);
        }
        GroupMessage::Delete { groups, reply } => {
            let (refused, served): (Vec<String>, Vec<String>) =
                groups.into_iter().partition(|g| co.refusal(g).is_some());
            let mut out = offsets::delete_groups(co, served).await;
            for g in refused {
                let mut r = DeletableGroupResult::default();
                r.error_code = co.refusal(&g).unwrap_or(codes::NOT_COORDINATOR);
                r.group_id = crate::kafka::handlers::str_bytes(&g).into();
                out.push(r);
            }
            let _ = reply.send(out);
        }
        GroupMessage::OffsetDelete { req, reply } => {
            let resp = offsets::offset_delete(&state.groups, req).await;
            let _ = reply.send(resp);
        }
        GroupMessage::ConsumerHeartbeat {
            version,
            client_id,
            client_host,
            req,
            reply,
        } => {
            let resp = consumer::heartbeat(&state, version, client_id, client_host, req);
            let _ = reply.send(resp);
        }
        GroupMessage::ConsumerDescribe { groups, reply } => {
            let out = groups
                .iter()
                .map(|g| {
                    let mut d = consumer::describe(&state, g);
                    if let Some(code) = co.refusal(g) {
                        d.error_code = code;
                    }
                    d
                })
                .collect();
            let _ = reply.send(out);
        }
    }
}

/// Cluster mode: a single-group request for a group whose offsets partition is not served on
/// this shard (loading: COORDINATOR_LOAD_IN_PROGRESS; not led: NOT_COORDINATOR) is answered
/// with that code here, before it can touch any state. Everything else is returned to run.
fn refuse_unserved(co: &GroupCoordinator, msg: GroupMessage) -> Option<GroupMessage> {
    let group = match &msg {
        GroupMessage::Join { req, .. } => req.group_id.0.to_string(),
        GroupMessage::Sync { req, .. } => req.group_id.0.to_string(),
        GroupMessage::Heartbeat { req, .. } => req.group_id.0.to_string(),
        GroupMessage::Leave { req, .. } => req.group_id.0.to_string(),
        GroupMessage::Commit { req, .. } => req.group_id.0.to_string(),
        GroupMessage::OffsetDelete { req, .. } => req.group_id.0.to_string(),
        GroupMessage::ConsumerHeartbeat { req, .. } => req.group_id.0.to_string(),
        // Multi-group requests patch the refused groups' entries (ListGroups lists only
        // loaded groups: the others are not in memory).
        GroupMessage::Fetch { .. }
        | GroupMessage::List { .. }
        | GroupMessage::Describe { .. }
        | GroupMessage::Delete { .. }
        | GroupMessage::ConsumerDescribe { .. } => return Some(msg),
    };
    let Some(code) = co.refusal(&group) else {
        return Some(msg);
    };
    match msg {
        GroupMessage::Join {
            version,
            req,
            reply,
            ..
        } => {
            let _ = reply.send(classic::join_error(version, req.member_id.as_str(), code));
        }
        GroupMessage::Sync { version, reply, .. } => {
            let _ = reply.send(classic::sync_response(
                version,
                code,
                None,
                bytes::Bytes::new(),
            ));
        }
        GroupMessage::Heartbeat { reply, .. } => {
            let _ = reply.send(code);
        }
        GroupMessage::Leave { reply, .. } => {
            let mut r = LeaveGroupResponse::default();
            r.error_code = code;
            let _ = reply.send(r);
        }
        GroupMessage::Commit { req, reply, .. } => {
            let rows = req
                .topics
                .iter()
                .map(|t| vec![code; t.partitions.len()])
                .collect();
            let _ = reply.send(offsets::commit_response(&req.topics, rows));
        }
        GroupMessage::OffsetDelete { reply, .. } => {
            let mut r = OffsetDeleteResponse::default();
            r.error_code = code;
            let _ = reply.send(r);
        }
        GroupMessage::ConsumerHeartbeat { reply, .. } => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.error_code = code;
            let _ = reply.send(r);
        }
        _ => {}
    }
    None
}

fn list(co: &GroupCoordinator, states: &[String], types: &[String]) -> Vec<ListedGroup> {
    let groups = co.groups.borrow();
    let mut out: Vec<ListedGroup> = groups
        .values()
        .filter(|g| {
            states.is_empty()
                || states
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(g.state_name()))
        })
        .filter(|g| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(g.type_name())))
        .map(|g| {
            let mut l = ListedGroup::default();
            l.group_id = crate::kafka::handlers::str_bytes(&g.id).into();
            l.protocol_type = crate::kafka::handlers::str_bytes(&g.protocol_type());
            l.group_state = crate::kafka::handlers::str_bytes(g.state_name());
            l.group_type = crate::kafka::handlers::str_bytes(g.type_name());
            l
        })
        .collect();
    out.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    out
}

fn describe(state: &Rc<ShardState>, version: i16, id: &str) -> DescribedGroup {
    let groups = state.groups.groups.borrow();
    describe_group(&state.metadata(), version, id, groups.get(id))
}

/// The DescribeGroups entry of group `id` (`None`: no such group).
fn describe_group(
    meta: &crate::metadata::ClusterMetadata,
    version: i16,
    id: &str,
    group: Option<&Group>,
) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    d.group_id = crate::kafka::handlers::str_bytes(id).into();
    match group {
        None => {
            d.group_state = crate::kafka::handlers::str_bytes("Dead");
            if version >= 6 {
                d.error_code = codes::GROUP_ID_NOT_FOUND;
                d.error_message = Some(crate::kafka::handlers::str_bytes(&format!(
                    "Group {id} not found."
                )));
            }
        }
        Some(g) => {
            d.group_state = crate::kafka::handlers::str_bytes(g.state_name());
            d.protocol_type = crate::kafka::handlers::str_bytes(&g.protocol_type());
            match &g.kind {
                Kind::Classic(c) => c.describe_into(version, &mut d),
                Kind::Consumer(c) => c.describe_classic_into(meta, version, &mut d),
            }
        }
    }
    d
}

/// Responses made by the coordinator's builders, for the handlers' version guards
/// (`crate::kafka::handlers::version_guard`).
#[cfg(test)]
pub(crate) mod guard {
    use super::*;
    pub(crate) use classic::guard::{join_responses, leave_responses, sync_responses};
    pub(crate) use consumer::guard::{consumer_describe, heartbeat_responses};
    pub(crate) use offsets::guard::{
        commit_responses, delete_groups_results, offset_delete_responses,
    };

    /// DescribeGroups entries: a stable classic group, a KIP-848 group, a missing one.
    pub(crate) fn described_groups(version: i16) -> Vec<DescribedGroup> {
        let meta = consumer::guard::metadata();
        let classic = Group {
            id: "classic".to_string(),
            partition: 0,
            offsets: BTreeMap::new(),
            kind: Kind::Classic(classic::guard::group()),
        };
        let consumer = Group {
            id: "consumer".to_string(),
            partition: 0,
            offsets: BTreeMap::new(),
            kind: Kind::Consumer(consumer::guard::group()),
        };
        vec![
            describe_group(&meta, version, "classic", Some(&classic)),
            describe_group(&meta, version, "consumer", Some(&consumer)),
            describe_group(&meta, version, "missing", None),
        ]
    }
}

/// The coordinator shard of a group, as seen from any shard.
pub fn owner_shard(state: &ShardState, group: &str) -> ShardId {
    coordinator_shard(group, state.config.groups.offsets_partitions, state.count)
}

/// True when broker `node` coordinates `group` per `meta`: always on a standalone node; in
/// cluster mode when it leads the group's `__consumer_offsets` partition (Kafka's rule: other
/// brokers answer NOT_COORDINATOR, and FindCoordinator names the leader).
pub fn coordinated_by(
    meta: &crate::metadata::ClusterMetadata,
    node: i32,
    group: &str,
    offsets_partitions: i32,
) -> bool {
    if !meta.is_cluster() {
        return true;
    }
    let p = offsets_partition(group, offsets_partitions);
    meta.topic(OFFSETS_TOPIC)
        .is_some_and(|t| t.has_partition(p) && t.leader(p, crate::metadata::NO_LEADER) == node)
}

/// True when this broker coordinates `group` (see `coordinated_by`).
pub fn coordinates(state: &ShardState, group: &str) -> bool {
    coordinated_by(
        &state.metadata(),
        state.config.node_id,
        group,
        state.config.groups.offsets_partitions,
    )
}

/// `state.call` to the coordinator shard of `group`; None (the handlers answer
/// NOT_COORDINATOR) when this broker does not coordinate the group or the shard is gone.
pub async fn call_coordinator<R>(
    state: &Rc<ShardState>,
    group: &str,
    build: impl FnOnce(Reply<R>) -> crate::messages::ShardMessage,
) -> Option<R> {
    if !coordinates(state, group) {
        return None;
    }
    state.call(owner_shard(state, group), build).await
}

/// Sends `keys` (group ids) to their coordinator shards in one message per shard
/// (`build(keys_of_that_shard, reply)`) and returns the per-key replies in request order
/// (`None` where a shard did not answer, e.g. during shutdown, or where this broker does not
/// coordinate the group).
pub async fn per_owner<K: Clone, R: Send + 'static>(
    state: &Rc<ShardState>,
    keys: &[(String, K)],
    build: impl Fn(Vec<K>, Reply<Vec<R>>) -> crate::messages::ShardMessage,
) -> Vec<Option<R>> {
    let mut by_shard: BTreeMap<ShardId, Vec<usize>> = BTreeMap::new();
    for (i, (g, _)) in keys.iter().enumerate() {
        // A group another broker coordinates stays None (NOT_COORDINATOR).
        if coordinates(state, g) {
            by_shard.entry(owner_shard(state, g)).or_default().push(i);
        }
    }
    let calls = by_shard.iter().map(|(shard, idxs)| {
        let batch: Vec<K> = idxs.iter().map(|i| keys[*i].1.clone()).collect();
        let (tx, rx) = futures::channel::oneshot::channel();
        let msg = build(batch, tx);
        let state = state.clone();
        let shard = *shard;
        async move {
            state.deliver(shard, msg).await;
            rx.await.ok()
        }
    });
    let replies = futures::future::join_all(calls).await;
    let mut out: Vec<Option<R>> = (0..keys.len()).map(|_| None).collect();
    for ((_, idxs), reply) in by_shard.iter().zip(replies) {
        if let Some(reply) = reply {
            for (i, r) in idxs.iter().zip(reply) {
                out[*i] = Some(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_legacy_rewrite_is_completed_or_rolled_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("__consumer_offsets-0");
        let put = |d: &std::path::Path, what: &str| {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("00000000000000000000.log"), what).unwrap();
        };
        let read = || std::fs::read_to_string(dir.join("00000000000000000000.log")).unwrap();
        // Crashed after the old directory was renamed away: the rewrite is complete.
        put(&dir.with_extension("compacting"), "rewritten");
        put(&dir.with_extension("deleting"), "old");
        finish_legacy_rewrite(&dir).unwrap();
        assert_eq!(read(), "rewritten");
        assert!(!dir.with_extension("compacting").exists());
        assert!(!dir.with_extension("deleting").exists());
        // Crashed between the two renames without the rewritten copy: the old log comes back.
        std::fs::rename(&dir, dir.with_extension("deleting")).unwrap();
        finish_legacy_rewrite(&dir).unwrap();
        assert_eq!(read(), "rewritten");
        // Crashed while writing the rewritten copy: it is dropped, the log stays.
        put(&dir.with_extension("compacting"), "partial");
        finish_legacy_rewrite(&dir).unwrap();
        assert_eq!(read(), "rewritten");
        assert!(!dir.with_extension("compacting").exists());
    }

    #[test]
    fn batches_end_is_past_the_last_complete_batch() {
        let mut buf = records::encode_batch(&[LogRecord::ConsumerGroup {
            group: "g".into(),
            epoch: Some(1),
        }])
        .to_vec();
        // A batch at offset 12 after the one at 0 (a cleaned log's gap).
        let mut second = records::encode_batch(&[LogRecord::ConsumerGroup {
            group: "a".into(),
            epoch: Some(1),
        }])
        .to_vec();
        second[..8].copy_from_slice(&12i64.to_be_bytes());
        assert_eq!(batches_end(&buf), 1);
        buf.extend_from_slice(&second);
        assert_eq!(
            batches_end(&buf),
            13,
            "a gap between the batches is stepped over"
        );
        assert_eq!(
            batches_end(&buf[..buf.len() - 1]),
            1,
            "a partial batch is not counted"
        );
        assert_eq!(batches_end(&[]), 0);
    }

    fn coordinator(retention_minutes: &str) -> GroupCoordinator {
        let args = crate::config::ServeArgs {
            offsets_retention_minutes: Some(retention_minutes.into()),
            ..Default::default()
        };
        let config = Arc::new(BrokerConfig::load(&args).expect("config"));
        GroupCoordinator::new(0, 1, config)
    }

    #[test]
    fn coordinator_is_the_offsets_partition_leader() {
        let mut meta = crate::kafka::handlers::test_fixtures::multi_broker();
        let group = |p: i32| {
            (0..)
                .map(|i| format!("g{i}"))
                .find(|g| offsets_partition(g, 3) == p)
                .unwrap()
        };
        // Standalone coordinates everything.
        assert!(coordinated_by(
            &crate::kafka::handlers::test_fixtures::cluster(),
            1,
            "g",
            3
        ));
        // Cluster mode without __consumer_offsets: nobody yet.
        assert!(!coordinated_by(&meta, 1, &group(0), 3));
        let t = meta.topic("orders").unwrap().clone();
        meta.topics.insert(OFFSETS_TOPIC.into(), t);
        assert!(coordinated_by(&meta, 1, &group(0), 3));
        assert!(!coordinated_by(&meta, 1, &group(1), 3));
        assert!(coordinated_by(&meta, 2, &group(1), 3));
        assert!(!coordinated_by(&meta, 1, &group(2), 3));
        assert!(!coordinated_by(&meta, 3, &group(2), 3));
    }

    #[test]
    fn kafka_offsets_partition_formula() {
        // Java: "my-group".hashCode() == -1906497762, so partition 36 of 50.
        assert_eq!(java_string_hash("my-group"), -1906497762);
        assert_eq!(offsets_partition("my-group", 50), 36);
        assert_eq!(java_string_hash(""), 0);
    }

    #[test]
    fn replay_keeps_the_last_record_and_tombstones_delete() {
        let co = coordinator("10080");
        let off = |o: i64| {
            Some(records::OffsetValue {
                offset: o,
                leader_epoch: -1,
                metadata: String::new(),
                commit_ts: 1,
            })
        };
        let rec = |p: i32, v| LogRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: p,
            value: v,
        };
        co.apply_record(3, 0, rec(0, off(5)));
        co.apply_record(3, 1, rec(1, off(6)));
        co.apply_record(3, 2, rec(0, off(9)));
        co.apply_record(3, 3, rec(1, None));
        let groups = co.groups.borrow();
        let g = &groups["g"];
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 9);
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_the_retention() {
        let co = coordinator("1");
        let now = records::now_ms();
        let value = |ts| {
            Some(records::OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_ts: ts,
            })
        };
        co.apply_record(
            0,
            0,
            LogRecord::Offset {
                group: "old".into(),
                topic: "t".into(),
                partition: 0,
                value: value(now - 120_000),
            },
        );
        co.apply_record(
            0,
            1,
            LogRecord::Offset {
                group: "new".into(),
                topic: "t".into(),
                partition: 0,
                value: value(now),
            },
        );
        offsets::expire(&co, now);
        let groups = co.groups.borrow();
        assert!(
            !groups.contains_key("old"),
            "expired offsets remove an empty group"
        );
        assert_eq!(groups["new"].offsets.len(), 1);
    }
}
