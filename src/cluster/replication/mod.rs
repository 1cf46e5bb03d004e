//! Partition replication rules (Kafka's ISR model, issue 11) as sans-IO state machines: the
//! leader side (`leader::LeaderPartition`: follower positions, high watermark, ISR expand and
//! shrink proposals, acks=all waiters, answers to follower fetches including DivergingEpoch),
//! the follower side (`follower::FollowerPartition`: what to fetch next, truncation by leader
//! epoch, the high watermark learned from the leader) and the log facts both read
//! (`log_model::ReplicaLog`, with `PartitionLogModel` as the in-memory log the simulator and
//! the unit tests use). The controller side of AlterPartition lives with the other controller
//! decisions in `cluster/controller/alter_partition.rs`.
//!
//! Inputs are fetch requests and responses, produce decisions, log progress (written / synced
//! offsets), committed metadata and clock ticks; outputs are fetch answers, AlterPartition
//! proposals, produce completions and truncations for the driver to carry out: `driver` in the
//! broker (docs/cluster.md, "Replication pipeline"), `cluster/sim` in the simulator.

pub mod driver;
pub mod follower;
pub mod hw_checkpoint;
pub mod leader;
pub mod log_model;
pub mod read_replica;
#[cfg(test)]
mod tests;
pub mod throttle;

#[allow(unused_imports)] // the simulator's and the tests' log; the driver uses ReplicaLog
pub use log_model::{LogEntry, PartitionLogModel, ReplicaLog};

/// Kafka error codes the replication rules answer with.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const INVALID_UPDATE_VERSION: i16 = 82;
    pub const INELIGIBLE_REPLICA: i16 = 107;
}

/// What a replica must have done with a record before it counts towards the high watermark
/// (and so towards an acks=all answer). Broker setting: `tern.replication.ack.durability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckDurability {
    /// Written to the replica's log (page cache), as Kafka: acknowledged records survive any
    /// number of process crashes (kill -9) and the power loss of fewer than all ISR members at
    /// a time, but a simultaneous power loss of the whole ISR can lose them.
    Written,
    /// Written and fdatasynced on every ISR member (Redpanda's default, and what Tern's single
    /// node does for acks=all): acknowledged records survive any power loss as long as one ISR
    /// member's disk does. The default.
    Synced,
}

impl AckDurability {
    /// The setting's value (`synced` / `written`, case-insensitive).
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "synced" => Some(Self::Synced),
            "written" => Some(Self::Written),
            _ => None,
        }
    }

    /// The storage durability an append must reach before this replica counts it.
    pub fn storage(self) -> tern_storage::Durability {
        match self {
            Self::Written => tern_storage::Durability::Written,
            Self::Synced => tern_storage::Durability::Synced,
        }
    }
}

/// A deliberately wrong rule, switched on only by the simulator's mutation tests to show the
/// invariants catch it (issue 12). The switch (`ReplicationConfig::mutation`) exists in test
/// builds only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The leader advances the high watermark to its own log end, before the ISR has the data.
    HwBeforeIsr,
    /// On a divergence the leader truncates its own log to the follower's epoch end instead of
    /// telling the follower to truncate.
    TruncateLeader,
    /// ISR expansion skips the "fetched in the current epoch" check (LEO >= epoch start).
    ExpandWithoutEpochCheck,
}

/// Replication settings of one partition (broker defaults overridden by topic configs).
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// min.insync.replicas (effective value: min with the replica count).
    pub min_insync_replicas: usize,
    /// replica.lag.time.max.ms: an ISR follower not caught up for this long is removed.
    pub replica_lag_time_max_ms: u64,
    /// An AlterPartition without an answer for this long is dropped and may be sent again.
    pub alter_partition_retry_ms: u64,
    /// replica.fetch.max.bytes, counted in model entries by the simulator.
    pub max_fetch_entries: usize,
    pub ack_durability: AckDurability,
    #[cfg(test)]
    pub mutation: Option<Mutation>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            alter_partition_retry_ms: 5_000,
            max_fetch_entries: 1000,
            ack_durability: AckDurability::Synced,
            #[cfg(test)]
            mutation: None,
        }
    }
}

impl ReplicationConfig {
    #[cfg(test)]
    pub(crate) fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(crate) fn mutated(&self, _: Mutation) -> bool {
        false
    }
}

/// A follower's Fetch for one partition (Kafka Fetch v15+ with ReplicaState, v12+ fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica_id: i32,
    /// ReplicaEpoch: the follower's broker epoch (KIP-903).
    pub broker_epoch: i64,
    /// CurrentLeaderEpoch: the leader epoch the follower believes in.
    pub leader_epoch: i32,
    /// FetchOffset: the follower's log end offset.
    pub fetch_offset: i64,
    /// LastFetchedEpoch: epoch of the follower's last entry (-1: empty log).
    pub last_fetched_epoch: i32,
    /// What counts as replicated on the follower: its log end (Written) or synced end (Synced).
    pub replicated_offset: i64,
    /// LogStartOffset: the follower's log start (KIP-392: a consumer is sent only to a
    /// replica that holds its fetch offset).
    pub log_start_offset: i64,
}

/// The leader's decision on a follower fetch (the driver then reads the records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Records from `from` up to the log end (at most `max_entries`), with the high watermark.
    Read {
        from: i64,
        max_entries: usize,
        high_watermark: i64,
    },
    /// KIP-279: the follower's log diverges; it truncates to where `epoch` ends (at most
    /// `end_offset`) and fetches again.
    Diverging {
        epoch: i32,
        end_offset: i64,
        high_watermark: i64,
    },
    /// FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER.
    Error(i16),
    /// Only with `Mutation::TruncateLeader`: the leader cuts its own log (the injected bug).
    #[cfg(test)]
    TruncateLeader { to: i64 },
}

/// AlterPartition (Kafka API 56) for one partition, from its leader to the controller.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterPartitionRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    /// The partition epoch the leader's view is based on (the optimistic version).
    pub partition_epoch: i32,
    /// The proposed ISR with each member's broker epoch (KIP-903).
    pub new_isr: Vec<(i32, i64)>,
}

/// The partition state the controller committed (or the refusal).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
}
