//! Produce. The hot path: the record batches are never re-encoded or copied. The request frame
//! is decoded once (kafka-protocol slices the records out of the frame without copying); the
//! frame is then reclaimed as a mutable buffer and split into one disjoint `BytesMut` per
//! partition, which the owning shard validates, patches (base offset, leader epoch) in place and
//! appends. Replies come back once each batch is durable at the level `acks` asks for.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::channel::oneshot;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use tern_net::ParsedHeader;
use tern_storage::{AppendError, Durability};

use crate::dispatch::Dispatched;
use crate::errors;
use crate::messages::{ProduceItem, ProduceResult, Reply, ShardMessage};
use crate::shard_state::ShardState;

/// One partition entry of the request, in request order.
struct Slot {
    topic: Arc<str>,
    partition: i32,
    /// Where its records sit inside the request body (None: no records).
    range: Option<(usize, usize)>,
    /// Set when the request-level checks already decided the answer.
    early: Option<ProduceResult>,
    owner: usize,
}

fn error_result(code: i16, msg: Option<String>) -> ProduceResult {
    ProduceResult {
        error_code: code,
        error_message: msg,
        base_offset: -1,
        log_start_offset: -1,
    }
}

pub async fn dispatch(
    state: Rc<ShardState>,
    h: ParsedHeader,
    mut req: ProduceRequest,
    body: Option<Bytes>,
) -> Dispatched {
    let acks = req.acks;
    let transactional = req.transactional_id.is_some();
    let topic_data = std::mem::take(&mut req.topic_data);
    drop(req);
    let Some(body) = body else {
        log::error!("produce dispatched without its body");
        return Dispatched { response: None };
    };
    let base = body.as_ptr() as usize;
    let body_len = body.len();
    let mut slots: Vec<Slot> = Vec::new();
    let mut topic_names: Vec<(Arc<str>, usize)> = Vec::new();
    let request_error = if transactional {
        Some(errors::INVALID_REQUEST)
    } else if !matches!(acks, -1..=1) {
        Some(errors::INVALID_REQUIRED_ACKS)
    } else {
        None
    };
    for t in topic_data {
        let topic: Arc<str> = Arc::from(t.name.0.as_str());
        topic_names.push((topic.clone(), t.partition_data.len()));
        for p in t.partition_data {
            // Records are slices of the body (zero-copy decode); an empty one may be a static
            // empty slice instead, which is rejected below as "no records".
            let range = p.records.as_ref().map(|r| {
                let off = (r.as_ptr() as usize).wrapping_sub(base);
                if r.is_empty() || off.checked_add(r.len()).is_none_or(|end| end > body_len) {
                    (0, 0)
                } else {
                    (off, r.len())
                }
            });
            slots.push(Slot {
                topic: topic.clone(),
                partition: p.index,
                range,
                early: request_error.map(|c| error_result(c, None)),
                owner: state.owner(&topic, p.index),
            });
        }
    }
    // Every Bytes slice of the request is dropped now, so the body is uniquely owned again.

    // Auto-create unknown topics (when enabled), then check partitions exist.
    let mut meta = state.metadata();
    if state.config.auto_create_topics && request_error.is_none() {
        let mut missing: Vec<String> = topic_names
            .iter()
            .filter(|(n, _)| {
                meta.topic(n).is_none() && crate::metadata::validate_topic_name(n).is_ok()
            })
            .map(|(n, _)| n.to_string())
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            super::metadata::auto_create(&state, missing).await;
            meta = state.metadata();
        }
    }
    for s in slots.iter_mut().filter(|s| s.early.is_none()) {
        let exists = meta
            .topic(&s.topic)
            .is_some_and(|t| (0..t.partitions).contains(&s.partition));
        if !exists {
            s.early = Some(error_result(errors::UNKNOWN_TOPIC_OR_PARTITION, None));
        } else if s.range.is_none_or(|(_, len)| len == 0) {
            s.early = Some(error_result(
                errors::CORRUPT_MESSAGE,
                Some("no records".into()),
            ));
        }
    }

    // Reclaim the body as mutable memory and cut out each partition's records.
    let mut records: Vec<Option<BytesMut>> = split_records(body, &slots);

    // One message per owning shard, in slot order.
    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        if s.early.is_none() {
            by_shard.entry(s.owner).or_default().push(i);
        }
    }
    let mut waits: Vec<(Vec<usize>, oneshot::Receiver<Vec<ProduceResult>>)> = Vec::new();
    for (shard, idxs) in by_shard {
        let items: Vec<ProduceItem> = idxs
            .iter()
            .map(|i| ProduceItem {
                topic: slots[*i].topic.clone(),
                partition: slots[*i].partition,
                records: records[*i]
                    .take()
                    .expect("records cut for every dispatched slot"),
            })
            .collect();
        // acks=0 is fire-and-forget: no reply channel at all.
        let (reply, rx) = if acks == 0 {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        state
            .deliver(shard, ShardMessage::Produce { acks, items, reply })
            .await;
        if let Some(rx) = rx {
            waits.push((idxs, rx));
        }
    }
    if acks == 0 {
        return Dispatched { response: None };
    }
    Dispatched::respond(async move {
        let mut results: Vec<ProduceResult> = slots
            .iter_mut()
            .map(|s| {
                s.early
                    .take()
                    .unwrap_or_else(|| error_result(errors::REQUEST_TIMED_OUT, None))
            })
            .collect();
        for (idxs, rx) in waits {
            if let Ok(reply) = rx.await {
                for (i, r) in idxs.into_iter().zip(reply) {
                    results[i] = r;
                }
            }
        }
        let mut resp = ProduceResponse::default();
        // Results and slots are both in request order.
        let mut it = results.into_iter().zip(&slots);
        for (topic, n) in topic_names {
            let mut tr = TopicProduceResponse::default();
            tr.name = kafka_protocol::messages::TopicName(super::str_bytes(&topic));
            for (r, slot) in it.by_ref().take(n) {
                let mut pr = PartitionProduceResponse::default();
                pr.index = slot.partition;
                pr.error_code = r.error_code;
                pr.base_offset = r.base_offset;
                pr.log_append_time_ms = -1;
                pr.log_start_offset = r.log_start_offset;
                pr.error_message = r.error_message.as_deref().map(super::str_bytes);
                tr.partition_responses.push(pr);
            }
            resp.responses.push(tr);
        }
        super::encode(&h, &resp)
    })
}

/// Cuts each slot's records out of `body` as disjoint mutable buffers (no copy when the body is
/// uniquely owned, which it is once the decoded request is dropped; copies otherwise).
fn split_records(body: Bytes, slots: &[Slot]) -> Vec<Option<BytesMut>> {
    let mut out: Vec<Option<BytesMut>> = (0..slots.len()).map(|_| None).collect();
    let mut wanted: Vec<(usize, usize, usize)> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.early.is_none())
        .filter_map(|(i, s)| s.range.map(|(off, len)| (off, len, i)))
        .collect();
    wanted.sort_unstable();
    let overlapping = wanted.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0);
    debug_assert!(
        wanted.iter().all(|(off, len, _)| off + len <= body.len()),
        "records slices lie inside the request body (checked when the slots were built)"
    );
    match body.try_into_mut() {
        Ok(mut rest) if !overlapping => {
            let mut cursor = 0;
            for (off, len, i) in wanted {
                rest.advance(off - cursor);
                out[i] = Some(rest.split_to(len));
                cursor = off + len;
            }
        }
        Ok(m) => {
            let body = m.freeze();
            for (off, len, i) in wanted {
                out[i] = Some(BytesMut::from(&body[off..off + len]));
            }
        }
        Err(body) => {
            log::debug!("produce body shared; copying records");
            for (off, len, i) in wanted {
                out[i] = Some(BytesMut::from(&body[off..off + len]));
            }
        }
    }
    out
}

fn append_error_code(e: &AppendError) -> (i16, Option<String>) {
    match e {
        AppendError::CorruptMessage(m) => (errors::CORRUPT_MESSAGE, Some(m.clone())),
        AppendError::InvalidRecord(m) => (errors::INVALID_RECORD, Some(m.clone())),
        AppendError::MessageTooLarge => (errors::MESSAGE_TOO_LARGE, None),
        AppendError::OutOfOrderSequence => (errors::OUT_OF_ORDER_SEQUENCE_NUMBER, None),
        AppendError::InvalidProducerEpoch => (errors::INVALID_PRODUCER_EPOCH, None),
        AppendError::Closed => (errors::NOT_LEADER_OR_FOLLOWER, None),
        AppendError::Io(e) => (errors::KAFKA_STORAGE_ERROR, Some(e.to_string())),
    }
}

/// The owner shard's half: appends synchronously (in arrival order), then waits for durability.
pub async fn handle_local(
    state: Rc<ShardState>,
    acks: i16,
    items: Vec<ProduceItem>,
    reply: Option<Reply<Vec<ProduceResult>>>,
) {
    let durability = if acks == -1 {
        Durability::Synced
    } else {
        Durability::Written
    };
    let mut results = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Some(log) = state.partitions.get(&item.topic, item.partition) else {
            results.push(error_result(errors::UNKNOWN_TOPIC_OR_PARTITION, None));
            continue;
        };
        state.metrics.produce_batch(item.records.len());
        match log.append(item.records, 0, durability) {
            Ok(appended) => {
                results.push(ProduceResult {
                    error_code: errors::NONE,
                    error_message: None,
                    base_offset: appended.base_offset,
                    log_start_offset: log.log_start_offset(),
                });
                pending.push((i, appended.done));
            }
            Err(e) => {
                let (code, msg) = append_error_code(&e);
                state.metrics.error(0, code);
                if code == errors::KAFKA_STORAGE_ERROR || code == errors::CORRUPT_MESSAGE {
                    log::warn!("produce to {}-{} rejected: {e}", item.topic, item.partition);
                }
                results.push(error_result(code, msg));
            }
        }
    }
    // Everything above ran synchronously; from here on order no longer matters.
    for (i, done) in pending {
        if let Err(e) = done.await {
            log::error!("write failed: {e}");
            results[i] = error_result(errors::KAFKA_STORAGE_ERROR, Some(e.to_string()));
        }
    }
    if let Some(reply) = reply {
        let _ = reply.send(results);
    }
}
