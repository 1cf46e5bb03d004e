//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first record whose
//! timestamp is >= the given one. Split by owning shard, reassembled in request order.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::errors;
use crate::messages::{ListOffsetsItem, ListOffsetsResult, ShardMessage};
use crate::shard_state::ShardState;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: ListOffsetsRequest,
) -> ResponseFrame {
    // Flatten in request order, remembering each item's owner.
    let mut items: Vec<(usize, ListOffsetsItem)> = Vec::new();
    for t in &req.topics {
        let topic: Arc<str> = Arc::from(t.name.0.as_str());
        for p in &t.partitions {
            let owner = state.owner(&topic, p.partition_index);
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
    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, (owner, _)) in items.iter().enumerate() {
        by_shard.entry(*owner).or_default().push(i);
    }
    let calls = by_shard.iter().map(|(shard, idxs)| {
        let batch: Vec<ListOffsetsItem> = idxs.iter().map(|i| items[*i].1.clone()).collect();
        let state = state.clone();
        async move {
            state
                .call(*shard, |reply| ShardMessage::ListOffsets {
                    items: batch,
                    reply,
                })
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    let mut results: Vec<ListOffsetsResult> = vec![
        ListOffsetsResult {
            error_code: errors::REQUEST_TIMED_OUT,
            timestamp: -1,
            offset: -1
        };
        items.len()
    ];
    for ((_, idxs), reply) in by_shard.iter().zip(replies) {
        if let Some(reply) = reply {
            for (i, r) in idxs.iter().zip(reply) {
                results[*i] = r;
            }
        }
    }
    let mut resp = ListOffsetsResponse::default();
    let mut k = 0;
    for t in &req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let r = &results[k];
            k += 1;
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.error_code = r.error_code;
            pr.timestamp = r.timestamp;
            pr.offset = r.offset;
            // LeaderEpoch exists from v4 on; an older version cannot carry it (the encoder
            // refuses any non-default value there).
            if h.api_version >= 4 && r.error_code == errors::NONE {
                pr.leader_epoch = 0;
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    super::encode(&h, &resp)
}

/// The owner shard's half.
pub async fn handle_local(
    state: &Rc<ShardState>,
    items: &[ListOffsetsItem],
) -> Vec<ListOffsetsResult> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let Some(log) = state.partitions.get(&it.topic, it.partition) else {
            out.push(ListOffsetsResult {
                error_code: errors::UNKNOWN_TOPIC_OR_PARTITION,
                timestamp: -1,
                offset: -1,
            });
            continue;
        };
        let r = match it.timestamp {
            EARLIEST => Ok(Some((log.log_start_offset(), -1))),
            LATEST => Ok(Some((log.high_watermark(), -1))),
            MAX_TIMESTAMP => log
                .max_timestamp()
                .await
                .map(|o| o.map(|(ts, off)| (off, ts))),
            ts if ts >= 0 => log.offset_for_timestamp(ts).await,
            _ => {
                out.push(ListOffsetsResult {
                    error_code: errors::INVALID_REQUEST,
                    timestamp: -1,
                    offset: -1,
                });
                continue;
            }
        };
        out.push(match r {
            Ok(Some((offset, timestamp))) => ListOffsetsResult {
                error_code: errors::NONE,
                timestamp,
                offset,
            },
            Ok(None) => ListOffsetsResult {
                error_code: errors::NONE,
                timestamp: -1,
                offset: -1,
            },
            Err(e) => {
                log::error!("ListOffsets {}-{}: {e}", it.topic, it.partition);
                ListOffsetsResult {
                    error_code: errors::KAFKA_STORAGE_ERROR,
                    timestamp: -1,
                    offset: -1,
                }
            }
        });
    }
    out
}
