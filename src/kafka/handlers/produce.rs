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
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, TopicName};
use tern_net::ParsedHeader;
use tern_storage::{AppendError, Durability};

use crate::kafka::dispatch::Dispatched;
use crate::kafka::errors;
use crate::messages::{ProduceItem, ProduceResult, Reply, ShardMessage};
use crate::metadata::ClusterMetadata;
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
        record_errors: Vec::new(),
    }
}

pub async fn dispatch(
    state: Rc<ShardState>,
    h: ParsedHeader,
    mut req: ProduceRequest,
    body: Option<Bytes>,
) -> Dispatched {
    let acks = req.acks;
    // acks=all waits for the ISR up to the request's timeout_ms (Kafka's DelayedProduce);
    // a negative timeout is taken as 0.
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
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
    let mut topics: Vec<TopicRef> = Vec::new();
    let request_error = if transactional {
        Some(errors::INVALID_REQUEST)
    } else if !matches!(acks, -1..=1) {
        Some(errors::INVALID_REQUIRED_ACKS)
    } else {
        None
    };
    // v13+ names topics by id; an unknown id is UNKNOWN_TOPIC_ID for all its partitions.
    let meta_at_start = state.metadata();
    for t in topic_data {
        let (topic, unknown_id): (Arc<str>, bool) = if h.api_version >= 13 {
            match meta_at_start.topic_by_id(&t.topic_id) {
                Some((name, _)) => (Arc::from(name.as_str()), false),
                None => (Arc::from(""), true),
            }
        } else {
            (Arc::from(t.name.0.as_str()), false)
        };
        topics.push(TopicRef {
            name: topic.clone(),
            id: t.topic_id,
            by_id: h.api_version >= 13,
            partitions: t.partition_data.len(),
        });
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
            let early = match request_error {
                Some(c) => Some(error_result(c, None)),
                None if unknown_id => Some(error_result(errors::UNKNOWN_TOPIC_ID, None)),
                None => None,
            };
            slots.push(Slot {
                topic: topic.clone(),
                partition: p.index,
                range,
                early,
                owner: state.owner(&topic, p.index),
            });
        }
    }
    drop(meta_at_start);
    // Every Bytes slice of the request is dropped now, so the body is uniquely owned again.

    // Auto-create unknown topics (when enabled), then check partitions exist.
    let mut meta = state.metadata();
    if state.config.auto_create_topics && request_error.is_none() {
        let mut missing: Vec<String> = topics
            .iter()
            .filter(|t| {
                !t.by_id
                    && meta.topic(&t.name).is_none()
                    && crate::metadata::validate_topic_name(&t.name).is_ok()
            })
            .map(|t| t.name.to_string())
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
            .is_some_and(|t| t.has_partition(s.partition));
        let refusal = if exists {
            crate::routing::leader_refusal(&meta, state.config.node_id, &s.topic, s.partition, -1)
        } else {
            errors::UNKNOWN_TOPIC_OR_PARTITION
        };
        if refusal != errors::NONE {
            s.early = Some(error_result(refusal, None));
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
            .deliver(
                shard,
                ShardMessage::Produce {
                    acks,
                    timeout,
                    items,
                    reply,
                },
            )
            .await;
        if let Some(rx) = rx {
            waits.push((idxs, rx));
        }
    }
    if acks == 0 {
        return Dispatched { response: None };
    }
    Dispatched::respond(async move {
        let mut results: Vec<(i32, ProduceResult)> = slots
            .iter_mut()
            .map(|s| {
                let r = s
                    .early
                    .take()
                    .unwrap_or_else(|| error_result(errors::REQUEST_TIMED_OUT, None));
                (s.partition, r)
            })
            .collect();
        for (idxs, rx) in waits {
            if let Ok(reply) = rx.await {
                for (i, r) in idxs.into_iter().zip(reply) {
                    results[i].1 = r;
                }
            }
        }
        let broker = super::LocalBroker::of(&state.config);
        let resp = build_response(h.api_version, &broker, &state.metadata(), &topics, &results);
        super::encode(&h, &resp)
    })
}

/// A topic of the request, in request order, with how many partition entries it has.
pub(crate) struct TopicRef {
    /// The topic's name (empty for an unknown id).
    pub name: Arc<str>,
    pub id: uuid::Uuid,
    /// Named by id (v13+): the response names it by id too.
    pub by_id: bool,
    pub partitions: usize,
}

/// The Produce response at `version` for `topics` with their partitions' `results` (flattened,
/// in request order, each paired with its partition index). From v10 a partition refused with
/// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH carries the current leader as `meta` knows it
/// (KIP-951), and the response lists that leader's endpoint.
pub(crate) fn build_response(
    version: i16,
    broker: &super::LocalBroker,
    meta: &ClusterMetadata,
    topics: &[TopicRef],
    results: &[(i32, ProduceResult)],
) -> ProduceResponse {
    assert_eq!(
        topics.iter().map(|t| t.partitions).sum::<usize>(),
        results.len(),
        "one result per partition entry"
    );
    let mut resp = ProduceResponse::default();
    let mut leaders = std::collections::BTreeSet::new();
    let mut it = results.iter();
    for topic in topics {
        let mut tr = TopicProduceResponse::default();
        if topic.by_id {
            tr.topic_id = topic.id;
        } else {
            tr.name = TopicName(super::str_bytes(&topic.name));
        }
        for (partition, r) in it.by_ref().take(topic.partitions) {
            let mut pr = PartitionProduceResponse::default();
            pr.index = *partition;
            pr.error_code = r.error_code;
            pr.base_offset = r.base_offset;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = r.log_start_offset;
            pr.error_message = r.error_message.as_deref().map(super::str_bytes);
            for (index, message) in &r.record_errors {
                let mut e =
                    kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default(
                    );
                e.batch_index = *index;
                e.batch_index_error_message = message.as_deref().map(super::str_bytes);
                pr.record_errors.push(e);
            }
            if version >= 10
                && let Some((leader, epoch)) =
                    broker.leader_hint(meta, &topic.name, *partition, r.error_code)
            {
                pr.current_leader.leader_id = BrokerId(leader);
                pr.current_leader.leader_epoch = epoch;
                leaders.insert(leader);
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    for e in broker.hinted_endpoints(meta, &leaders) {
        let mut ep = NodeEndpoint::default();
        ep.node_id = BrokerId(e.id);
        ep.host = super::str_bytes(&e.host);
        ep.port = e.port;
        ep.rack = e.rack.as_deref().map(super::str_bytes);
        resp.node_endpoints.push(ep);
    }
    resp
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
        AppendError::NullKeys { message, .. } => (errors::INVALID_RECORD, Some(message.clone())),
        AppendError::MessageTooLarge => (errors::MESSAGE_TOO_LARGE, None),
        AppendError::OutOfOrderSequence => (errors::OUT_OF_ORDER_SEQUENCE_NUMBER, None),
        AppendError::InvalidProducerEpoch => (errors::INVALID_PRODUCER_EPOCH, None),
        AppendError::Closed => (errors::NOT_LEADER_OR_FOLLOWER, None),
        AppendError::Io(e) => (errors::KAFKA_STORAGE_ERROR, Some(e.to_string())),
    }
}

/// The owner shard's half: appends synchronously (in arrival order), then waits for durability.
/// acks=all on a replicated partition waits for the high watermark up to `timeout` (the
/// request's timeout_ms), then answers REQUEST_TIMED_OUT for that partition.
pub async fn handle_local(
    state: Rc<ShardState>,
    acks: i16,
    timeout: std::time::Duration,
    items: Vec<ProduceItem>,
    reply: Option<Reply<Vec<ProduceResult>>>,
) {
    let durability = if acks == -1 {
        Durability::Synced
    } else {
        Durability::Written
    };
    let meta = state.metadata();
    let mut results = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let log = state.partitions.get(&item.topic, item.partition);
        let refusal = crate::routing::owner_refusal(
            &meta,
            state.config.node_id,
            &item.topic,
            item.partition,
            log.is_some(),
        );
        let (None, Some(log)) = (refusal, log) else {
            let code = refusal.unwrap_or(errors::UNKNOWN_TOPIC_OR_PARTITION);
            results.push(error_result(code, None));
            continue;
        };
        // Batches carry the leader epoch they were written in (partitionLeaderEpoch).
        let leader_epoch = meta
            .topic(&item.topic)
            .filter(|t| t.has_partition(item.partition))
            .map_or(0, |t| t.leader_epoch(item.partition));
        // Disk full: below the free-space floor Produce is refused (retriable), reads go on.
        if state.disk.below_floor() {
            state.metrics.error(0, errors::KAFKA_STORAGE_ERROR);
            results.push(error_result(
                errors::KAFKA_STORAGE_ERROR,
                Some(state.disk.refusal()),
            ));
            continue;
        }
        // Replicated partitions (cluster mode): acks=all needs enough in-sync replicas.
        if let Err(code) = state
            .replicas
            .check_produce(&item.topic, item.partition, acks)
        {
            state.metrics.error(0, code);
            results.push(error_result(code, None));
            continue;
        }
        let replicated = state.replicas.leads(&item.topic, item.partition);
        // A replicated acks=all append waits for the leader's own part at the broker's
        // tern.replication.ack.durability (`written`: no fdatasync on this path).
        let durability = if replicated && acks == -1 {
            state.config.replication_ack_durability.storage()
        } else {
            durability
        };
        state.metrics.produce_batch(item.records.len());
        match log.append(item.records, leader_epoch, durability) {
            Ok(appended) => {
                results.push(ProduceResult {
                    error_code: errors::NONE,
                    error_message: None,
                    base_offset: appended.base_offset,
                    log_start_offset: log.log_start_offset(),
                    record_errors: Vec::new(),
                });
                let replicated =
                    replicated.then(|| (item.topic.clone(), item.partition, appended.last_offset));
                pending.push((i, appended.done, replicated));
            }
            Err(e) => {
                if let AppendError::Io(se) = &e
                    && se.is_no_space()
                {
                    state.disk.note_no_space();
                }
                let (code, msg) = append_error_code(&e);
                state.metrics.error(0, code);
                if code == errors::KAFKA_STORAGE_ERROR || code == errors::CORRUPT_MESSAGE {
                    log::warn!("produce to {}-{} rejected: {e}", item.topic, item.partition);
                }
                let mut r = error_result(code, msg);
                if let AppendError::NullKeys {
                    message,
                    record_indexes,
                } = &e
                {
                    r.record_errors = record_indexes
                        .iter()
                        .map(|&i| (i, Some(message.clone())))
                        .collect();
                }
                results.push(r);
            }
        }
    }
    // Everything above ran synchronously; from here on order no longer matters.
    for (i, done, replicated) in pending {
        if let Err(e) = done.await {
            if e.is_no_space() {
                state.disk.note_no_space();
                log::warn!("write refused, retriable: {e}");
            } else {
                log::error!("write failed: {e}");
            }
            results[i] = error_result(errors::KAFKA_STORAGE_ERROR, Some(e.to_string()));
            continue;
        }
        // A replicated partition: the rules learn of the append; acks=all waits for the HW.
        if let Some((topic, partition, last)) = replicated
            && let Err(code) = crate::cluster::replication::driver::ShardReplicas::after_append(
                &state, &topic, partition, last, acks, timeout,
            )
            .await
        {
            state.metrics.error(0, code);
            results[i] = error_result(code, None);
        }
    }
    if let Some(reply) = reply {
        let _ = reply.send(results);
    }
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use crate::kafka::handlers::test_fixtures;
    let meta = test_fixtures::cluster();
    let (name, tm) = meta.topics.iter().next().expect("fixture has a topic");
    let ok = ProduceResult {
        record_errors: Vec::new(),
        error_code: errors::NONE,
        error_message: None,
        base_offset: 42,
        log_start_offset: 7,
    };
    let topics = vec![
        TopicRef {
            name: Arc::from(name.as_str()),
            id: tm.id,
            by_id: version >= 13,
            partitions: 4,
        },
        TopicRef {
            name: Arc::from(if version >= 13 { "" } else { "missing" }),
            id: uuid::Uuid::from_u128(77),
            by_id: version >= 13,
            partitions: 1,
        },
    ];
    let results = [
        (0, ok.clone()),
        (1, error_result(errors::NOT_LEADER_OR_FOLLOWER, None)),
        (2, error_result(errors::FENCED_LEADER_EPOCH, None)),
        (
            2,
            error_result(errors::CORRUPT_MESSAGE, Some("no records".into())),
        ),
        (
            0,
            error_result(
                if version >= 13 {
                    errors::UNKNOWN_TOPIC_ID
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                },
                None,
            ),
        ),
    ];
    let broker = test_fixtures::broker();
    let multi = test_fixtures::multi_broker();
    vec![
        build_response(version, &broker, &meta, &topics, &results),
        build_response(version, &broker, &multi, &topics, &results),
        // All appended: no leader hints, no endpoints.
        build_response(
            version,
            &broker,
            &meta,
            &topics[..1],
            &[(0, ok.clone()), (1, ok.clone()), (2, ok.clone()), (0, ok)],
        ),
    ]
    .into_iter()
    .map(kafka_protocol::messages::ResponseKind::Produce)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::Produce,
            guard_responses,
        );
    }

    #[test]
    fn cluster_mode_hints_name_the_real_leader() {
        use kafka_protocol::messages::{ApiKey, ResponseKind};
        for version in 10..=13 {
            let r = guard_responses(version).remove(1);
            let mut buf = bytes::BytesMut::new();
            r.encode(&mut buf, version).unwrap();
            let ResponseKind::Produce(r) =
                ResponseKind::decode(ApiKey::Produce, &mut buf.freeze(), version).unwrap()
            else {
                unreachable!()
            };
            let p = &r.responses[0].partition_responses;
            let hint = |i: usize| {
                (
                    p[i].current_leader.leader_id.0,
                    p[i].current_leader.leader_epoch,
                )
            };
            // p1 is led by broker 2 at epoch 6; p2 has no leader (epoch 7).
            assert_eq!(
                (hint(0), hint(1), hint(2)),
                ((-1, -1), (2, 6), (-1, 7)),
                "v{version}"
            );
            let eps: Vec<_> = r
                .node_endpoints
                .iter()
                .map(|e| {
                    (
                        e.node_id.0,
                        e.host.to_string(),
                        e.port,
                        e.rack.as_ref().map(|r| r.to_string()),
                    )
                })
                .collect();
            assert_eq!(
                eps,
                vec![(2, "broker2.example".into(), 9092, Some("az2".into()))],
                "v{version}"
            );
        }
    }

    #[test]
    fn a_timed_out_append_names_the_leader_it_moved_to() {
        // Broker 1's view: p0 is still led by broker 1 (a plain timeout: no hint), p1 moved to
        // broker 2 (the resign answer: hint + endpoint), p2 has no live leader (no hint).
        let meta = test_fixtures::multi_broker();
        let (name, tm) = meta.topics.iter().next().expect("fixture has a topic");
        let topics = [TopicRef {
            name: Arc::from(name.as_str()),
            id: tm.id,
            by_id: false,
            partitions: 3,
        }];
        let timed_out = error_result(errors::REQUEST_TIMED_OUT, None);
        let results = [
            (0, timed_out.clone()),
            (1, timed_out.clone()),
            (2, timed_out),
        ];
        let r = build_response(10, &test_fixtures::broker(), &meta, &topics, &results);
        let p = &r.responses[0].partition_responses;
        let hints: Vec<_> = p
            .iter()
            .map(|p| (p.current_leader.leader_id.0, p.current_leader.leader_epoch))
            .collect();
        assert_eq!(hints, vec![(-1, -1), (2, 6), (-1, -1)]);
        assert_eq!(
            r.node_endpoints
                .iter()
                .map(|e| e.node_id.0)
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert!(p.iter().all(|p| p.error_code == errors::REQUEST_TIMED_OUT));
    }

    #[test]
    fn leader_hints_from_v10() {
        let kafka_protocol::messages::ResponseKind::Produce(r) = guard_responses(10).remove(0)
        else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses;
        assert_eq!(p[0].current_leader.leader_id.0, -1, "no hint on success");
        assert_eq!(
            (
                p[1].current_leader.leader_id.0,
                p[1].current_leader.leader_epoch
            ),
            (1, 0)
        );
        assert_eq!(
            (
                p[2].current_leader.leader_id.0,
                p[2].current_leader.leader_epoch
            ),
            (1, 3)
        );
        assert_eq!(r.node_endpoints.len(), 1);
        assert_eq!(r.node_endpoints[0].port, 9092);
        let kafka_protocol::messages::ResponseKind::Produce(r) = guard_responses(13).remove(0)
        else {
            unreachable!()
        };
        assert!(r.responses[0].name.0.is_empty());
        assert_eq!(r.responses[1].topic_id, uuid::Uuid::from_u128(77));
        assert_eq!(
            r.responses[1].partition_responses[0].error_code,
            errors::UNKNOWN_TOPIC_ID
        );
    }
}
