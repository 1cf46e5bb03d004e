//! `FollowerPartition`: a follower's replication rules for one partition under one leader
//! epoch (Kafka's replica fetcher for it): what to fetch next (fetch offset, last fetched
//! epoch, replicated offset), what to do with the leader's answer (append the leader's batches
//! as they are; on DivergingEpoch truncate its own log to where the largest common epoch ends,
//! never the leader's, KIP-279), and the high watermark learned from the leader, capped by its
//! own log end. A follower whose fetch offset is below the leader's log start (the leader
//! deleted records the follower never got: retention or DeleteRecords while it was away) is
//! answered OFFSET_OUT_OF_RANGE and restarts its log empty at the leader's log start (Kafka's
//! `truncateFullyAndStartAt`). One fetch is in flight at a time; an answer to an older fetch
//! is dropped.

use super::{AckDurability, FetchRequest, LogEntry, ReplicaLog, codes};

/// Records a follower fetched, as far as the rules need to know them: where they start.
/// The simulator's model entries, or the broker's record batches.
pub trait FetchedRecords {
    /// Offset of the first record (None: nothing fetched).
    fn first_offset(&self) -> Option<i64>;
    /// Last offset of the first batch (None: nothing fetched).
    fn first_batch_last_offset(&self) -> Option<i64>;
}

impl FetchedRecords for Vec<LogEntry> {
    fn first_offset(&self) -> Option<i64> {
        self.first().map(|e| e.offset)
    }

    fn first_batch_last_offset(&self) -> Option<i64> {
        self.first_offset() // one model entry is one single-offset batch
    }
}

/// The leader's answer to a follower fetch, as it travels back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchResponse<R = Vec<LogEntry>> {
    Records {
        entries: R,
        high_watermark: i64,
    },
    Diverging {
        epoch: i32,
        end_offset: i64,
        high_watermark: i64,
    },
    /// OFFSET_OUT_OF_RANGE, with the leader's log start offset (Fetch's LogStartOffset).
    OffsetOutOfRange {
        leader_log_start: i64,
        high_watermark: i64,
    },
    Error(i16),
}

/// What the follower asks the driver to do with an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowerAction<R = Vec<LogEntry>> {
    /// Append these (contiguous from the log end), then call `appended`.
    Append(R),
    /// Truncate the local log to this offset, then fetch again.
    Truncate(i64),
    /// Drop the whole local log and start it empty at this offset (the leader's log start,
    /// above our log end), then call `appended` and fetch from there.
    RestartAt(i64),
    /// The log was just restarted at the leader's log start, which lies inside the leader's
    /// first batch (DeleteRecords is not batch-aligned): restart it at that batch's base
    /// `at`, append the records, then call `appended` (Kafka's follower does the same on its
    /// UnexpectedAppendOffsetException; the log start then follows the leader's).
    RestartAndAppend { at: i64, records: R },
    /// The leader moved or does not know our epoch yet: refresh metadata, fetch later.
    Backoff(i16),
    /// Nothing new (or a stale answer): fetch again later.
    Idle,
}

pub struct FollowerPartition {
    me: i32,
    broker_epoch: i64,
    leader: i32,
    leader_epoch: i32,
    durability: AckDurability,
    high_watermark: i64,
    leader_high_watermark: i64,
    next_fetch_id: u64,
    in_flight: Option<(u64, i64)>,
}

impl FollowerPartition {
    pub fn new(
        me: i32,
        broker_epoch: i64,
        leader: i32,
        leader_epoch: i32,
        durability: AckDurability,
        high_watermark: i64,
    ) -> Self {
        Self {
            me,
            broker_epoch,
            leader,
            leader_epoch,
            durability,
            high_watermark,
            leader_high_watermark: high_watermark,
            next_fetch_id: 0,
            in_flight: None,
        }
    }

    pub fn leader(&self) -> i32 {
        self.leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The next fetch to send (id, request); replaces any fetch in flight (its answer will be
    /// dropped), so the driver calls this when the previous one is answered or timed out.
    pub fn next_fetch(&mut self, log: &dyn ReplicaLog) -> (u64, FetchRequest) {
        self.next_fetch_id += 1;
        let fetch_offset = log.log_end_offset();
        self.in_flight = Some((self.next_fetch_id, fetch_offset));
        let replicated_offset = match self.durability {
            AckDurability::Written => fetch_offset,
            AckDurability::Synced => log.synced_end_offset(),
        };
        (
            self.next_fetch_id,
            FetchRequest {
                replica_id: self.me,
                broker_epoch: self.broker_epoch,
                leader_epoch: self.leader_epoch,
                fetch_offset,
                last_fetched_epoch: log.last_fetched_epoch(),
                replicated_offset,
                log_start_offset: log.log_start_offset(),
            },
        )
    }

    /// The leader's answer to fetch `id`.
    pub fn on_fetch_response<R: FetchedRecords>(
        &mut self,
        id: u64,
        resp: FetchResponse<R>,
        log: &dyn ReplicaLog,
    ) -> FollowerAction<R> {
        let Some((want, fetch_offset)) = self.in_flight else {
            return FollowerAction::Idle;
        };
        if want != id || fetch_offset != log.log_end_offset() {
            return FollowerAction::Idle; // an older fetch's answer, or the log moved since
        }
        self.in_flight = None;
        match resp {
            FetchResponse::Records {
                entries,
                high_watermark,
            } => {
                self.leader_high_watermark = self.leader_high_watermark.max(high_watermark);
                let Some(first) = entries.first_offset() else {
                    self.update_hw(log.log_end_offset());
                    return FollowerAction::Idle;
                };
                if first == fetch_offset {
                    return FollowerAction::Append(entries);
                }
                let covers = entries
                    .first_batch_last_offset()
                    .is_some_and(|last| last >= fetch_offset);
                // Only an empty log may take a batch from below its end: one restarted at
                // the leader's log start (RestartAt), whichever role restarted it; a role
                // rebuilt meanwhile (a new registration or leader epoch) has the same log.
                let empty = log.log_start_offset() == fetch_offset;
                if first < fetch_offset && covers && empty {
                    return FollowerAction::RestartAndAppend {
                        at: first,
                        records: entries,
                    };
                }
                // Not where we asked: a leader bug or bad input; never appended.
                FollowerAction::Backoff(codes::OFFSET_OUT_OF_RANGE)
            }
            FetchResponse::Diverging {
                epoch,
                end_offset,
                high_watermark,
            } => {
                self.leader_high_watermark = self.leader_high_watermark.max(high_watermark);
                FollowerAction::Truncate(truncation_offset(log, epoch, end_offset))
            }
            FetchResponse::OffsetOutOfRange {
                leader_log_start,
                high_watermark,
            } => {
                self.leader_high_watermark = self.leader_high_watermark.max(high_watermark);
                if fetch_offset < leader_log_start {
                    FollowerAction::RestartAt(leader_log_start)
                } else {
                    // Above the leader's log end: KIP-279's DivergingEpoch handles a longer
                    // log; this is a leader behind our metadata, so wait for it to move.
                    FollowerAction::Backoff(codes::OFFSET_OUT_OF_RANGE)
                }
            }
            FetchResponse::Error(code) => {
                debug_assert_ne!(code, codes::NONE);
                FollowerAction::Backoff(code)
            }
        }
    }

    /// The driver appended (or truncated): the high watermark follows the leader's, capped by
    /// the local log end.
    pub fn appended(&mut self, log: &dyn ReplicaLog) {
        self.update_hw(log.log_end_offset());
    }

    /// After the truncation a DivergingEpoch asked for: the high watermark only comes down
    /// to the new log end. It must not rise: the truncation may be an intermediate one (the
    /// follower lacked the leader's epoch) and the log below the new end is not yet known to
    /// match the leader's (simulator seed 1379: a follower raised its HW over a record of an
    /// older epoch that the next round would have cut).
    pub fn truncated(&mut self, log: &dyn ReplicaLog) {
        self.high_watermark = self.high_watermark.min(log.log_end_offset());
    }

    /// The fetch in flight is considered lost (timeout): the next one replaces it.
    pub fn fetch_timed_out(&mut self) {
        self.in_flight = None;
    }

    fn update_hw(&mut self, leo: i64) {
        // A follower's high watermark never passes its own log end; it may drop after a
        // truncation (the leader's one is what clients trust).
        self.high_watermark = self.leader_high_watermark.min(leo);
    }
}

/// Where a follower moves its log start after a fetch: up to the leader's log start (so
/// DeleteRecords and retention on the leader reach the replicas, as Kafka's follower does),
/// never past its own high watermark; None when it stays.
pub fn log_start_to_follow(
    leader_log_start: i64,
    local_start: i64,
    high_watermark: i64,
) -> Option<i64> {
    let to = leader_log_start.min(high_watermark);
    (to > local_start).then_some(to)
}

/// KIP-279: where a follower truncates when the leader says its log diverges at `epoch` ending
/// at `leader_end`. If the follower has that epoch, both logs agree up to the smaller end;
/// otherwise it cuts back to the end of its own largest epoch below, and the next fetch
/// (with that older last-fetched epoch) checks again.
pub fn truncation_offset(log: &dyn ReplicaLog, epoch: i32, leader_end: i64) -> i64 {
    let leo = log.log_end_offset();
    if epoch < 0 || leader_end < 0 {
        return 0; // the leader knows no epoch that old: nothing is known to agree
    }
    let (local_epoch, local_end) = log.end_offset_for_epoch(epoch);
    let to = if local_epoch < 0 {
        0
    } else if local_epoch == epoch {
        leader_end.min(local_end)
    } else {
        local_end.min(leader_end)
    };
    to.min(leo)
}
