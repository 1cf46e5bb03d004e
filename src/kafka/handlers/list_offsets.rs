//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, KIP-405:
//! the log start offset, as all data is local), latest tiered (-5, KIP-1005: none without tiered
//! storage), or the first record whose timestamp is >= the given one. A request naming a
//! current leader epoch is fenced against the partition's. Split by owning shard, reassembled
//! in request order.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{ListOffsetsItem, ListOffsetsResult, ShardMessage};
use crate::shard_state::ShardState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405: the first offset still on local disk; without tiered storage, the log start offset.
const EARLIEST_LOCAL: i64 = -4;
/// KIP-1005: the highest offset copied to tiered storage; without it there is none (-1).
const LATEST_TIERED: i64 = -5;

fn failed(code: i16) -> ListOffsetsResult {
    ListOffsetsResult {
        error_code: code,
        timestamp: -1,
        offset: -1,
        leader_epoch: -1,
    }
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: ListOffsetsRequest,
) -> ResponseFrame {
    let meta = state.metadata();
    // Flatten in request order, remembering each item's owner; fenced requests (and unknown
    // partitions) are answered here.
    let mut items: Vec<(Option<usize>, ListOffsetsItem)> = Vec::new();
    let mut results: Vec<ListOffsetsResult> = Vec::new();
    for t in &req.topics {
        let topic: Arc<str> = Arc::from(t.name.0.as_str());
        for p in &t.partitions {
            let early = crate::routing::leader_refusal(
                &meta,
                state.config.node_id,
                &topic,
                p.partition_index,
                p.current_leader_epoch,
            );
            let owner = (early == errors::NONE).then(|| state.owner(&topic, p.partition_index));
            results.push(failed(if owner.is_some() {
                errors::REQUEST_TIMED_OUT
            } else {
                early
            }));
            items.push((
                owner,
                ListOffsetsItem {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    timestamp: p.timestamp,
                },
            ));
        }
    }
    state
        .fan_out(items, &mut results, |items, reply| {
            ShardMessage::ListOffsets { items, reply }
        })
        .await;
    let topics = super::answers_by_topic(
        &req.topics,
        |t| (&t.name, &t.partitions[..]),
        |p| p.partition_index,
        results,
    );
    super::encode(&h, &build_response(h.api_version, &topics))
}

/// The ListOffsets response at `version` for each topic's (partition, result) pairs.
pub(crate) fn build_response(
    version: i16,
    topics: &[(TopicName, Vec<(i32, ListOffsetsResult)>)],
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for (name, partitions) in topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = name.clone();
        for (partition, r) in partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = *partition;
            pr.error_code = r.error_code;
            pr.timestamp = r.timestamp;
            pr.offset = r.offset;
            // LeaderEpoch exists from v4 on; an older version cannot carry it (the encoder
            // refuses any non-default value there).
            if version >= 4 {
                pr.leader_epoch = r.leader_epoch;
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// The owner shard's half.
pub async fn handle_local(
    state: &Rc<ShardState>,
    items: &[ListOffsetsItem],
) -> Vec<ListOffsetsResult> {
    let meta = state.metadata();
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let log = state.partitions.get(&it.topic, it.partition);
        let refusal = crate::routing::owner_refusal(
            &meta,
            state.config.node_id,
            &it.topic,
            it.partition,
            log.is_some(),
        );
        let (None, Some(log), Some(tm)) = (
            refusal,
            log,
            meta.topic(&it.topic)
                .filter(|t| t.has_partition(it.partition)),
        ) else {
            out.push(failed(
                refusal.unwrap_or(errors::UNKNOWN_TOPIC_OR_PARTITION),
            ));
            continue;
        };
        // Every batch of a partition is written at its current epoch (leadership never moves
        // on a single broker), so that is the epoch of any offset found.
        let epoch = tm.leader_epoch(it.partition);
        let r = match it.timestamp {
            EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
            // A replicated partition's latest offset is its high watermark (KIP-966 / Kafka).
            LATEST => Ok(Some((
                state
                    .replicas
                    .read_limit(&it.topic, it.partition)
                    .map_or(log.high_watermark(), |l| l.min(log.high_watermark())),
                -1,
            ))),
            LATEST_TIERED => {
                // Kafka without remote storage: offset -1, leader epoch -1, no error.
                out.push(failed(errors::NONE));
                continue;
            }
            MAX_TIMESTAMP => log
                .max_timestamp()
                .await
                .map(|o| o.map(|(ts, off)| (off, ts))),
            ts if ts >= 0 => log.offset_for_timestamp(ts).await,
            _ => {
                out.push(failed(errors::INVALID_REQUEST));
                continue;
            }
        };
        out.push(match r {
            Ok(Some((offset, timestamp))) => ListOffsetsResult {
                error_code: errors::NONE,
                timestamp,
                offset,
                leader_epoch: epoch,
            },
            // No record at or after the timestamp: Kafka answers -1 / -1 without an epoch.
            Ok(None) => failed(errors::NONE),
            Err(e) => {
                log::error!("ListOffsets {}-{}: {e}", it.topic, it.partition);
                failed(errors::KAFKA_STORAGE_ERROR)
            }
        });
    }
    out
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let found = ListOffsetsResult {
        error_code: errors::NONE,
        timestamp: 1_700_000_000_000,
        offset: 12,
        leader_epoch: 3,
    };
    let topics = vec![
        (
            TopicName(super::str_bytes("orders")),
            vec![
                (0, found.clone()),
                (1, failed(errors::NONE)),
                (2, failed(errors::FENCED_LEADER_EPOCH)),
                (2, failed(errors::UNKNOWN_LEADER_EPOCH)),
                (
                    0,
                    ListOffsetsResult {
                        timestamp: -1,
                        ..found
                    },
                ),
            ],
        ),
        (
            TopicName(super::str_bytes("missing")),
            vec![(0, failed(errors::UNKNOWN_TOPIC_OR_PARTITION))],
        ),
    ];
    vec![kafka_protocol::messages::ResponseKind::ListOffsets(
        build_response(version, &topics),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        crate::kafka::handlers::test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::ListOffsets,
            guard_responses,
        );
    }
}
