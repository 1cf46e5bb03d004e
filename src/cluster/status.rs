//! The quorum's state as DescribeQuorum (API 55) reports it: the leader and its epoch (the raft
//! term), the high watermark, and per voter and observer how far its log reaches and when the
//! leader last heard from it. The driver fills it from the running quorum; a standalone node is
//! a single voter that leads (`QuorumStatus::single_voter`).

use serde::{Deserialize, Serialize};

/// One replica of the metadata log (Kafka's DescribeQuorum ReplicaState).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub replica_id: i32,
    /// The offset after its last entry (as the leader knows it).
    pub log_end_offset: i64,
    /// When the leader last received a fetch from it, ms since the epoch (-1 unknown).
    pub last_fetch_ms: i64,
    /// When it was last caught up to the leader's end, ms since the epoch (-1 unknown).
    pub last_caught_up_ms: i64,
}

/// The quorum as the node asked knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// The leader's node id (-1 while there is none).
    pub leader_id: i32,
    /// The raft term.
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaStatus>,
    pub observers: Vec<ReplicaStatus>,
}

impl QuorumStatus {
    /// A one-node quorum: `node` leads at `epoch`, its log ends at `log_end_offset`, and it is
    /// caught up with itself now (`now_ms`).
    pub fn single_voter(node: i32, epoch: i32, log_end_offset: i64, now_ms: i64) -> Self {
        Self {
            leader_id: node,
            leader_epoch: epoch,
            high_watermark: log_end_offset,
            voters: vec![ReplicaStatus {
                replica_id: node,
                log_end_offset,
                last_fetch_ms: now_ms,
                last_caught_up_ms: now_ms,
            }],
            observers: Vec::new(),
        }
    }

    /// Each voter's lag behind the leader: leader log end - voter log end (None for a voter
    /// whose end is unknown, or without a known leader).
    pub fn voter_lags(&self) -> Vec<(i32, Option<i64>)> {
        let leader_end = self
            .voters
            .iter()
            .find(|v| v.replica_id == self.leader_id)
            .map(|v| v.log_end_offset);
        self.voters
            .iter()
            .map(|v| {
                let lag = leader_end
                    .filter(|_| v.log_end_offset >= 0)
                    .map(|end| (end - v.log_end_offset).max(0));
                (v.replica_id, lag)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_are_relative_to_the_leader() {
        let r = |id, leo| ReplicaStatus {
            replica_id: id,
            log_end_offset: leo,
            last_fetch_ms: -1,
            last_caught_up_ms: -1,
        };
        let mut q = QuorumStatus {
            leader_id: 2,
            leader_epoch: 5,
            high_watermark: 90,
            voters: vec![r(1, 90), r(2, 100), r(3, -1)],
            observers: vec![],
        };
        assert_eq!(q.voter_lags(), vec![(1, Some(10)), (2, Some(0)), (3, None)]);
        q.leader_id = -1;
        assert!(q.voter_lags().iter().all(|(_, l)| l.is_none()));
        let s = QuorumStatus::single_voter(0, 1, 7, 1000);
        assert_eq!(s.voter_lags(), vec![(0, Some(0))]);
        assert_eq!((s.leader_id, s.high_watermark), (0, 7));
    }
}
