//! Cross-shard messages: plain values, each carrying its own reply channel. A request whose
//! partitions live on several shards is split into one message per owning shard; the connection's
//! shard reassembles the replies in request order.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures::channel::oneshot;
use tern_storage::ReadChunk;

use crate::metadata::ClusterMetadata;

pub type Reply<T> = oneshot::Sender<T>;

/// One partition's records of a Produce request.
pub struct ProduceItem {
    pub topic: Arc<str>,
    pub partition: i32,
    pub records: BytesMut,
}

#[derive(Clone, Debug, Default)]
pub struct ProduceResult {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// KIP-467 record errors: (batch index, message) of each refused record.
    pub record_errors: Vec<(i32, Option<String>)>,
}

/// One partition of a Fetch request.
#[derive(Clone, Debug)]
pub struct FetchItem {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    /// KIP-392 (consumer Fetch v11+ in cluster mode): an in-sync follower may serve it.
    pub follower_ok: bool,
    /// The consumer's rack (Fetch v11+ `rack_id`, librdkafka's `client.rack`), if any.
    pub client_rack: Option<Arc<str>>,
}

#[derive(Clone, Debug, Default)]
pub struct FetchResult {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub chunks: Vec<ReadChunk>,
    pub bytes: usize,
    /// KIP-392: the leader sends the consumer to this replica (no records with it).
    pub preferred_read_replica: Option<i32>,
}

/// One partition of an OffsetForLeaderEpoch request.
#[derive(Clone, Debug)]
pub struct EpochQuery {
    pub topic: Arc<str>,
    pub partition: i32,
    pub leader_epoch: i32,
}

/// One partition of a ListOffsets request.
#[derive(Clone, Debug)]
pub struct ListOffsetsItem {
    pub topic: Arc<str>,
    pub partition: i32,
    pub timestamp: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ListOffsetsResult {
    pub error_code: i16,
    pub timestamp: i64,
    pub offset: i64,
    /// Leader epoch of the answer (-1 when there is none).
    pub leader_epoch: i32,
}

/// A per-topic failure of a control-plane request: (Kafka error code, message).
pub type TopicError = (i16, String);

/// Control-plane requests, all handled by the controller (shard 0).
pub enum ControllerRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
        reply: Reply<Vec<Result<CreatedTopic, TopicError>>>,
    },
    DeleteTopics {
        names: Vec<String>,
        reply: Reply<Vec<Result<uuid::Uuid, (i16, String)>>>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
        reply: Reply<Vec<Result<(), (i16, String)>>>,
    },
    AllocateProducerId {
        reply: Reply<Result<i64, String>>,
    },
    /// AlterConfigs / IncrementalAlterConfigs: one result per resource, in order.
    AlterConfigs {
        resources: Vec<crate::ops::configs::Alteration>,
        validate_only: bool,
        reply: Reply<Vec<Result<(), (i16, String)>>>,
    },
    /// DescribeQuorum: the metadata quorum as this node's controller side knows it.
    DescribeQuorum {
        reply: Reply<crate::cluster::status::QuorumStatus>,
    },
    /// A partition leader's ISR change, sent to the active controller (answered after commit
    /// and after this node applied it; an error code otherwise).
    AlterPartition {
        req: crate::cluster::replication::AlterPartitionRequest,
        reply: Reply<Result<crate::cluster::replication::PartitionState, i16>>,
    },
    /// ElectLeaders: election type (0 preferred, 1 unclean) and the partitions (None = all).
    ElectLeaders {
        election_type: i8,
        partitions: Option<Vec<(String, i32)>>,
        reply: Reply<ElectionAnswer>,
    },
    /// AlterPartitionReassignments: (topic, partition, target replicas or None to cancel);
    /// one result per change, in order, or an error for the whole request.
    AlterPartitionReassignments {
        changes: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
        reply: Reply<ReassignmentResults>,
    },
    /// ListPartitionReassignments: partitions None = all.
    ListPartitionReassignments {
        partitions: Option<Vec<(String, i32)>>,
        reply: Reply<ReassignmentList>,
    },
}

/// AlterPartitionReassignments' answer: one result per change, or an error for the whole
/// request.
pub type ReassignmentResults = Result<Vec<Result<(), (i16, String)>>, (i16, String)>;

/// ListPartitionReassignments' answer: the reassignments in progress, or an error.
pub type ReassignmentList =
    Result<Vec<crate::cluster::controller::reassignment::OngoingReassignment>, (i16, String)>;

/// ElectLeaders' answer: (topic, partition, error code, message) per partition, or an error
/// for the whole request.
pub type ElectionAnswer = Result<Vec<(String, i32, i16, Option<String>)>, (i16, String)>;

/// A topic CreateTopics created (or, with validate_only, would create).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CreatedTopic {
    pub id: uuid::Uuid,
    pub partitions: i32,
    /// Replicas of each partition (the request's, or default.replication.factor for -1).
    pub replication_factor: i16,
}

#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
    /// A manual replica assignment: the replicas of partitions 0..n (empty: placed by the
    /// controller); the controller checks the brokers.
    pub assignments: Vec<Vec<i32>>,
}

pub enum ShardMessage {
    Produce {
        acks: i16,
        /// The request's timeout_ms: how long acks=all waits for the ISR (replicated
        /// partitions).
        timeout: std::time::Duration,
        items: Vec<ProduceItem>,
        reply: Option<Reply<Vec<ProduceResult>>>,
    },
    Fetch {
        items: Vec<FetchItem>,
        reply: Reply<Vec<FetchResult>>,
    },
    /// A follower's fetch for partitions this shard owns (cluster replication); with
    /// `wait_until`, the owner waits for data until then.
    ReplicaFetch {
        replica: i32,
        broker_epoch: i64,
        items: Vec<crate::cluster::replication::driver::serve::ReplicaItem>,
        wait_until: Option<Instant>,
        reply: Reply<Vec<crate::cluster::replication::driver::serve::ReplicaResult>>,
    },
    /// Long-poll half of Fetch: as soon as one partition's high watermark passes its entry in
    /// `wait_offsets`, the owner reads `items` again and replies with the fresh results (saving
    /// the fetcher a second round trip); `None` at the deadline. Dropping the reply receiver
    /// cancels the wait.
    WaitForData {
        items: Vec<FetchItem>,
        wait_offsets: Vec<i64>,
        deadline: Instant,
        reply: Reply<Option<Vec<FetchResult>>>,
    },
    ListOffsets {
        items: Vec<ListOffsetsItem>,
        reply: Reply<Vec<ListOffsetsResult>>,
    },
    OffsetForLeaderEpoch {
        items: Vec<EpochQuery>,
        reply: Reply<Vec<crate::kafka::handlers::offset_for_leader_epoch::EpochAnswer>>,
    },
    Controller(ControllerRequest),
    ApplyMetadata {
        meta: Arc<ClusterMetadata>,
        reply: Reply<()>,
    },
    /// A request for a consumer group, run by the group's coordinator shard.
    /// Boxed: group requests are large and rare; the data-path variants stay small.
    Group(Box<crate::coordinators::groups::GroupMessage>),
    /// DeleteRecords on the owner shard: (topic, partition, offset) -> (error, low watermark).
    DeleteRecords {
        items: Vec<(Arc<str>, i32, i64)>,
        reply: Reply<Vec<(i16, i64)>>,
    },
    /// Metrics and partition state of a shard (Prometheus endpoint, DescribeLogDirs).
    CollectStats {
        reply: Reply<crate::ops::metrics::ShardStats>,
    },
}

impl ShardMessage {
    /// Wraps a consumer-group request for its coordinator shard.
    pub fn group(m: crate::coordinators::groups::GroupMessage) -> Self {
        ShardMessage::Group(Box::new(m))
    }
}
