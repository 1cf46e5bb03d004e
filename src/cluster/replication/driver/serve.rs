//! The leader's side of replica fetches: a Kafka Fetch whose ReplicaId / ReplicaState names a
//! broker (cluster mode). The connection's shard splits it by owner shard; each owner runs
//! `LeaderPartition::on_fetch` for its partitions (follower position, ISR expansion, high
//! watermark) and reads from the fetch offset up to the log end (followers are not capped by
//! the high watermark), or answers DivergingEpoch / an error code. With nothing to send, the
//! owners wait until one of the logs grows or `max_wait_ms` passes (woken by the append
//! itself, as consumer long polls are), so a follower never waits out a poll interval for
//! data the leader has. A replica a reassignment is adding reads under
//! `leader.replication.throttled.rate` (`throttle.rs`): at most the bucket's allowance per
//! answer, an empty answer while the bucket is empty.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::FetchRequest;
use tern_net::{FetchPartitionOut, FetchTopicOut, OutChunk, ParsedHeader, ResponseFrame};
use tern_storage::{ReadChunk, ReadError};

use super::{Key, StorageLog, ThrottleSide, is_adding};
use crate::cluster::replication::{FetchAnswer, FetchRequest as RulesFetch};
use crate::kafka::errors;
use crate::shard_state::ShardState;

/// A cap on how long a replica fetch may wait (the follower asks for 500 ms).
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// One partition of a replica fetch, as the owner shard gets it.
#[derive(Clone, Debug)]
pub struct ReplicaItem {
    pub topic: Arc<str>,
    pub partition: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
    pub max_bytes: usize,
}

/// The owner shard's answer for one partition.
#[derive(Debug, Default)]
pub struct ReplicaResult {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub diverging: Option<(i32, i64)>,
    pub chunks: Vec<ReadChunk>,
    pub bytes: usize,
}

impl ReplicaResult {
    fn error(code: i16) -> Self {
        Self {
            error_code: code,
            high_watermark: -1,
            log_start_offset: -1,
            ..Default::default()
        }
    }

    /// Worth answering at once: data, a divergence or an error.
    fn eventful(&self) -> bool {
        self.bytes > 0 || self.diverging.is_some() || self.error_code != errors::NONE
    }
}

/// Fetch from broker `replica` (broker epoch `broker_epoch`, -1 when not sent).
pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: FetchRequest,
    replica: i32,
    broker_epoch: i64,
) -> ResponseFrame {
    let meta = state.metadata();
    // Request order: (topic name, id, [(slot index)]) and the items by owner shard.
    let mut layout: Vec<(String, uuid::Uuid, Vec<usize>)> = Vec::new();
    let mut results: Vec<(i32, ReplicaResult)> = Vec::new();
    let mut by_shard: BTreeMap<usize, Vec<(usize, ReplicaItem)>> = BTreeMap::new();
    for t in &req.topics {
        let (name, id) = if h.api_version >= 13 {
            match meta.topic_by_id(&t.topic_id) {
                Some((n, _)) => (n.clone(), t.topic_id),
                None => (String::new(), t.topic_id),
            }
        } else {
            let name = t.topic.0.to_string();
            let id = meta.topic(&name).map_or(uuid::Uuid::nil(), |tm| tm.id);
            (name, id)
        };
        let topic: Arc<str> = Arc::from(name.as_str());
        let mut slots = Vec::new();
        for p in &t.partitions {
            let i = results.len();
            slots.push(i);
            let known = meta
                .topic(&name)
                .is_some_and(|tm| tm.has_partition(p.partition));
            if !known {
                let code = if h.api_version >= 13 {
                    errors::UNKNOWN_TOPIC_ID
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                };
                results.push((p.partition, ReplicaResult::error(code)));
                continue;
            }
            results.push((p.partition, ReplicaResult::error(errors::REQUEST_TIMED_OUT)));
            by_shard
                .entry(state.owner(&name, p.partition))
                .or_default()
                .push((
                    i,
                    ReplicaItem {
                        topic: topic.clone(),
                        partition: p.partition,
                        leader_epoch: p.current_leader_epoch,
                        fetch_offset: p.fetch_offset,
                        last_fetched_epoch: p.last_fetched_epoch,
                        log_start_offset: p.log_start_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                    },
                ));
        }
        layout.push((name, id, slots));
    }
    drop(meta);
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    // Round 1 reads at once; if nothing is worth sending, round 2 waits on every owner and
    // takes the first that has something.
    for round in 0..2 {
        let wait_until = (round == 1).then_some(deadline);
        let calls: Vec<_> = by_shard
            .iter()
            .map(|(shard, items)| {
                let state = state.clone();
                let shard = *shard;
                let (idx, items): (Vec<usize>, Vec<ReplicaItem>) = items.iter().cloned().unzip();
                async move {
                    let r = state
                        .call(shard, |reply| crate::messages::ShardMessage::ReplicaFetch {
                            replica,
                            broker_epoch,
                            items,
                            wait_until,
                            reply,
                        })
                        .await;
                    (idx, r)
                }
                .boxed_local()
            })
            .collect();
        if calls.is_empty() {
            break;
        }
        let answered: Vec<(Vec<usize>, Option<Vec<ReplicaResult>>)> = if round == 0 {
            futures::future::join_all(calls).await
        } else {
            let (first, _, _) = futures::future::select_all(calls).await;
            vec![first]
        };
        for (idx, r) in answered {
            if let Some(r) = r {
                for (i, res) in idx.into_iter().zip(r) {
                    results[i].1 = res;
                }
            }
        }
        if results.iter().any(|(_, r)| r.eventful()) || wait.is_zero() {
            break;
        }
    }
    let mut results: Vec<Option<(i32, ReplicaResult)>> = results.into_iter().map(Some).collect();
    let topics: Vec<FetchTopicOut> = layout
        .into_iter()
        .map(|(name, id, slots)| FetchTopicOut {
            name,
            topic_id: id.as_u128(),
            partitions: slots
                .into_iter()
                .map(|i| {
                    let (partition, r) = results[i].take().expect("each slot once");
                    FetchPartitionOut {
                        partition_index: partition,
                        error_code: r.error_code,
                        high_watermark: r.high_watermark,
                        last_stable_offset: r.high_watermark,
                        log_start_offset: r.log_start_offset,
                        aborted_transactions: None,
                        current_leader: None,
                        diverging_epoch: r.diverging,
                        preferred_read_replica: -1,
                        records: r
                            .chunks
                            .into_iter()
                            .map(|c| match c {
                                ReadChunk::Memory(b) => OutChunk::Bytes(b),
                                ReadChunk::File { file, offset, len } => {
                                    OutChunk::File { file, offset, len }
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    match tern_net::encode_fetch_response(h.api_version, h.correlation_id, 0, 0, 0, &topics, &[]) {
        Ok(frame) => frame,
        Err(e) => {
            log::error!("encoding a replica fetch response: {e}; closing the connection");
            ResponseFrame { chunks: Vec::new() }
        }
    }
}

/// The owner shard's half: answers every item; with `wait_until`, waits (until then) for one
/// of the logs to grow when nothing is worth answering yet.
pub async fn serve_local(
    state: &Rc<ShardState>,
    replica: i32,
    broker_epoch: i64,
    items: &[ReplicaItem],
    wait_until: Option<Instant>,
) -> Vec<ReplicaResult> {
    loop {
        // Register the watches before reading (no await in between): no append is missed.
        let watches: Vec<_> = items
            .iter()
            .filter_map(|it| state.partitions.get(&it.topic, it.partition))
            .map(|log| log.watch())
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            out.push(answer(state, replica, broker_epoch, it).await);
        }
        let now = Instant::now();
        let Some(deadline) = wait_until else {
            return out;
        };
        if out.iter().any(ReplicaResult::eventful) || now >= deadline || watches.is_empty() {
            return out;
        }
        let timer = tern_shard::task::sleep(deadline - now).boxed_local();
        let any = futures::future::select_all(watches).boxed_local();
        futures::select_biased! {
            _ = any.fuse() => {}
            _ = timer.fuse() => {}
        }
        // One more answer after waking (or at the deadline, with the positions updated).
        if Instant::now() >= deadline {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(answer(state, replica, broker_epoch, it).await);
            }
            return out;
        }
    }
}

async fn answer(
    state: &Rc<ShardState>,
    replica: i32,
    broker_epoch: i64,
    it: &ReplicaItem,
) -> ReplicaResult {
    let meta = state.metadata();
    let eligible = meta
        .brokers
        .get(&replica)
        .is_some_and(|b| !b.fenced && b.epoch == broker_epoch);
    let key: Key = (it.topic.to_string(), it.partition);
    let req = RulesFetch {
        replica_id: replica,
        broker_epoch,
        leader_epoch: it.leader_epoch,
        fetch_offset: it.fetch_offset,
        last_fetched_epoch: it.last_fetched_epoch,
        // Followers fetch only once their appends are done at their own
        // tern.replication.ack.durability (written, or written and synced): the fetch
        // offset is what counts for them.
        replicated_offset: it.fetch_offset,
        log_start_offset: it.log_start_offset,
    };
    let decided = state.replicas.with_leader(state, &key, |l, now| {
        let log = l.log.clone();
        (
            l.rules.on_fetch(&req, &StorageLog(&log), eligible, now),
            log,
        )
    });
    let Some((decision, log)) = decided else {
        return ReplicaResult::error(errors::NOT_LEADER_OR_FOLLOWER);
    };
    let lso = log.log_start_offset();
    match decision {
        FetchAnswer::Error(code) => ReplicaResult::error(code),
        FetchAnswer::Diverging {
            epoch,
            end_offset,
            high_watermark,
        } => ReplicaResult {
            error_code: errors::NONE,
            high_watermark,
            log_start_offset: lso,
            diverging: Some((epoch, end_offset)),
            ..Default::default()
        },
        FetchAnswer::Read {
            from,
            high_watermark,
            ..
        } => {
            // A replica a reassignment is adding reads under leader.replication.throttled.rate.
            let throttled = is_adding(&meta, &it.topic, it.partition, replica);
            let mut max_bytes = it.max_bytes;
            if throttled
                && let Some(allowed) =
                    state
                        .replicas
                        .throttle_allowance(&meta, state.count, ThrottleSide::Leader)
            {
                if allowed == 0 {
                    // Nothing this round: an empty answer (the long poll waits it out).
                    return ReplicaResult {
                        error_code: errors::NONE,
                        high_watermark,
                        log_start_offset: lso,
                        ..Default::default()
                    };
                }
                max_bytes = max_bytes.min(allowed as usize);
            }
            read_answer(
                state,
                it,
                &log,
                from,
                max_bytes,
                high_watermark,
                lso,
                throttled,
            )
            .await
        }
        #[cfg(test)]
        FetchAnswer::TruncateLeader { .. } => ReplicaResult::error(errors::UNKNOWN_SERVER_ERROR),
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_answer(
    state: &Rc<ShardState>,
    it: &ReplicaItem,
    log: &tern_storage::PartitionLog,
    from: i64,
    max_bytes: usize,
    high_watermark: i64,
    lso: i64,
    throttled: bool,
) -> ReplicaResult {
    match log.read(from, max_bytes).await {
        Ok(chunks) => {
            let bytes: usize = chunks.iter().map(|c| c.len() as usize).sum();
            if throttled {
                state
                    .replicas
                    .throttle_consume(ThrottleSide::Leader, bytes as u64);
            }
            ReplicaResult {
                error_code: errors::NONE,
                high_watermark,
                log_start_offset: lso,
                bytes,
                chunks,
                diverging: None,
            }
        }
        Err(ReadError::OffsetOutOfRange { .. }) => ReplicaResult {
            error_code: errors::OFFSET_OUT_OF_RANGE,
            high_watermark,
            log_start_offset: lso,
            ..Default::default()
        },
        Err(e) => {
            log::error!("replica fetch {}-{} at {from}: {e}", it.topic, it.partition);
            ReplicaResult::error(errors::KAFKA_STORAGE_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_divergence_or_errors_end_a_long_poll_early() {
        let empty = ReplicaResult {
            high_watermark: 5,
            log_start_offset: 0,
            ..Default::default()
        };
        assert!(!empty.eventful());
        assert!(ReplicaResult::error(errors::NOT_LEADER_OR_FOLLOWER).eventful());
        let diverging = ReplicaResult {
            diverging: Some((1, 4)),
            ..Default::default()
        };
        assert!(diverging.eventful());
        let data = ReplicaResult {
            bytes: 61,
            ..Default::default()
        };
        assert!(data.eventful());
    }
}
