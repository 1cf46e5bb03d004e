//! The quorum's status as DescribeQuorum (API 55) and `tern cluster info` report it: the
//! leader, its epoch (the raft term), the high watermark, and each voter's and observer's
//! progress. Filled by the driver on the active controller.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader_id: i32,
    /// The raft term.
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaStatus>,
    pub observers: Vec<ReplicaStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub replica_id: i32,
    pub log_end_offset: i64,
    /// -1 when unknown.
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
}
