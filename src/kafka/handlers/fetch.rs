//! Fetch with long polling. The connection's shard asks each owning shard for its partitions'
//! data (`read_local`); if there is less than `min_bytes`, it asks the owners to wait until one
//! of the partitions grows (`wait_local`, woken by the append itself through
//! `PartitionLog::watch`, never by polling) or `max_wait_ms` passes, then reads again. Record
//! bytes travel as the log's own buffers or file ranges; the response encoder never copies them.
//! In cluster mode, from v11 (KIP-392), an in-sync follower serves consumers up to the high
//! watermark it learnt from the leader, and the leader answers a consumer whose rack has an
//! in-sync replica (under `replica.selector.class`) with that `preferred_read_replica` and no
//! records (`cluster/replication/read_replica.rs`). ListOffsets and OffsetForLeaderEpoch stay
//! on the leader.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::FetchRequest;
use tern_net::{
    FetchNodeEndpoint, FetchPartitionOut, FetchTopicOut, OutChunk, ParsedHeader, ResponseFrame,
};
use tern_storage::{ReadChunk, ReadError};

use crate::kafka::errors;
use crate::messages::{FetchItem, FetchResult, Reply, ShardMessage};
use crate::metadata::ClusterMetadata;
use crate::shard_state::ShardState;

/// Upper bound on how long a fetch may wait, whatever the client asks (Kafka has no such cap,
/// but a client asking for hours would pin a connection).
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);

struct Slot {
    item: FetchItem,
    owner: usize,
    /// Known before asking any shard (unknown topic/partition).
    early_error: Option<i16>,
}

/// A topic of the request, in request order.
pub(crate) struct TopicLayout {
    /// Resolved name (empty for an unknown id).
    pub name: String,
    /// As requested (v13+) or from metadata.
    pub id: uuid::Uuid,
    pub partitions: usize,
}

/// Fetch sessions (KIP-227): Tern keeps none, so every full fetch is answered sessionless
/// (session id 0, which tells the client to keep sending full requests). An incremental fetch
/// (epoch other than 0 = initial or -1 = final) names a session this broker does not have.
fn session_error(session_epoch: i32) -> i16 {
    if session_epoch == 0 || session_epoch == -1 {
        errors::NONE
    } else {
        errors::FETCH_SESSION_ID_NOT_FOUND
    }
}

pub async fn handle(state: Rc<ShardState>, h: ParsedHeader, req: FetchRequest) -> ResponseFrame {
    let session_error = if h.api_version >= 7 {
        session_error(req.session_epoch)
    } else {
        errors::NONE
    };
    if session_error != errors::NONE {
        state.metrics.error(h.api_key, session_error);
        return encode(&h, session_error, &[], &[]);
    }
    let meta = state.metadata();
    // A follower's fetch (ReplicaId, or ReplicaState from v15) in cluster mode.
    let (replica, replica_epoch) = if h.api_version >= 15 {
        (
            req.replica_state.replica_id.0,
            req.replica_state.replica_epoch,
        )
    } else {
        (req.replica_id.0, -1)
    };
    if replica >= 0 && meta.is_cluster() {
        drop(meta);
        return crate::cluster::replication::driver::serve::handle(
            state,
            h,
            req,
            replica,
            replica_epoch,
        )
        .await;
    }
    // KIP-392: from v11 a consumer may read from an in-sync follower, and names its rack.
    let follower_ok = h.api_version >= 11 && meta.is_cluster();
    let client_rack: Option<Arc<str>> =
        (h.api_version >= 11 && !req.rack_id.is_empty()).then(|| Arc::from(req.rack_id.as_str()));
    let mut slots: Vec<Slot> = Vec::new();
    let mut layout: Vec<TopicLayout> = Vec::new();
    for t in &req.topics {
        // v13+ names topics by id.
        let (name, id, tm) = if h.api_version >= 13 {
            match meta.topic_by_id(&t.topic_id) {
                Some((n, tm)) => (n.clone(), t.topic_id, Some(tm)),
                None => (String::new(), t.topic_id, None),
            }
        } else {
            let name = t.topic.0.to_string();
            let tm = meta.topic(&name);
            let id = tm.map_or(uuid::Uuid::nil(), |tm| tm.id);
            (name, id, tm)
        };
        let topic: Arc<str> = Arc::from(name.as_str());
        for p in &t.partitions {
            let early_error = match tm.filter(|tm| tm.has_partition(p.partition)) {
                None if h.api_version >= 13 && tm.is_none() => Some(errors::UNKNOWN_TOPIC_ID),
                None => Some(errors::UNKNOWN_TOPIC_OR_PARTITION),
                Some(_) => {
                    let code = crate::routing::consumer_fetch_refusal(
                        &meta,
                        state.config.node_id,
                        &name,
                        p.partition,
                        p.current_leader_epoch,
                        follower_ok,
                    );
                    (code != errors::NONE).then_some(code)
                }
            };
            slots.push(Slot {
                item: FetchItem {
                    topic: topic.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    follower_ok,
                    client_rack: client_rack.clone(),
                },
                owner: state.owner(&topic, p.partition),
                early_error,
            });
        }
        layout.push(TopicLayout {
            name,
            id,
            partitions: t.partitions.len(),
        });
    }
    drop(meta);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;

    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in slots.iter().enumerate() {
        if s.early_error.is_none() {
            by_shard.entry(s.owner).or_default().push(i);
        }
    }

    let mut results = read_all(&state, &slots, &by_shard).await;
    loop {
        let total: usize = results.iter().map(|r| r.bytes).sum();
        // An error or a preferred read replica is answered at once.
        let any_error = results
            .iter()
            .any(|r| r.error_code != errors::NONE || r.preferred_read_replica.is_some());
        if total >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || by_shard.is_empty()
        {
            break;
        }
        // Ask every owner to wait for data beyond what we have; the first one that sees some
        // replies with fresh reads of its partitions.
        let waits: Vec<_> = by_shard
            .iter()
            .map(|(shard, idxs)| {
                let items: Vec<FetchItem> = idxs.iter().map(|i| slots[*i].item.clone()).collect();
                let wait_offsets: Vec<i64> = idxs
                    .iter()
                    .map(|i| {
                        if results[*i].bytes > 0 {
                            results[*i].high_watermark
                        } else {
                            slots[*i].item.offset
                        }
                    })
                    .collect();
                let state = state.clone();
                let shard = *shard;
                async move {
                    let fresh = state
                        .call(shard, |reply| ShardMessage::WaitForData {
                            items,
                            wait_offsets,
                            deadline,
                            reply,
                        })
                        .await
                        .flatten();
                    fresh.map(|f| (shard, f))
                }
                .boxed_local()
            })
            .collect();
        match first_some(waits).await {
            Some((shard, fresh)) => {
                for (i, r) in by_shard[&shard].iter().zip(fresh) {
                    results[*i] = r;
                }
            }
            None => break, // deadline: answer with what we have
        }
    }

    // Response-level max_bytes across partitions, in request order; the first partition with
    // data is always included whole so a consumer never gets stuck.
    let mut budget = max_bytes;
    let mut first = true;
    for r in results.iter_mut() {
        if r.bytes == 0 {
            continue;
        }
        if first || r.bytes <= budget {
            budget = budget.saturating_sub(r.bytes);
            first = false;
        } else {
            r.chunks.clear();
            r.bytes = 0;
        }
    }

    let read_committed = req.isolation_level == 1;
    let partitions: Vec<(i32, FetchResult)> = slots
        .iter()
        .zip(results)
        .map(|(s, r)| (s.item.partition, r))
        .collect();
    let broker = super::LocalBroker::of(&state.config);
    let (topics_out, endpoints) = build_topics(
        h.api_version,
        &broker,
        &state.metadata(),
        &layout,
        partitions,
        read_committed,
    );
    encode(&h, errors::NONE, &topics_out, &endpoints)
}

fn encode(
    h: &ParsedHeader,
    error_code: i16,
    topics: &[FetchTopicOut],
    endpoints: &[FetchNodeEndpoint],
) -> ResponseFrame {
    match tern_net::encode_fetch_response(
        h.api_version,
        h.correlation_id,
        0,
        error_code,
        0,
        topics,
        endpoints,
    ) {
        Ok(frame) => frame,
        Err(e) => {
            log::error!(
                "encoding fetch response v{}: {e}; closing connection",
                h.api_version
            );
            ResponseFrame { chunks: Vec::new() }
        }
    }
}

/// The response topics for `layout` from each partition's (index, result), flattened in
/// request order. READ_COMMITTED answers carry an (empty: Tern has no transactions) aborted
/// transaction list; from v16 a partition refused with NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH carries the current leader (KIP-951), whose endpoint is returned too.
pub(crate) fn build_topics(
    version: i16,
    broker: &super::LocalBroker,
    meta: &ClusterMetadata,
    layout: &[TopicLayout],
    partitions: Vec<(i32, FetchResult)>,
    read_committed: bool,
) -> (Vec<FetchTopicOut>, Vec<FetchNodeEndpoint>) {
    assert_eq!(
        layout.iter().map(|t| t.partitions).sum::<usize>(),
        partitions.len(),
        "one result per partition entry"
    );
    let mut leaders = std::collections::BTreeSet::new();
    let mut topics_out = Vec::with_capacity(layout.len());
    let mut it = partitions.into_iter();
    for t in layout {
        let mut out = Vec::with_capacity(t.partitions);
        for (partition, r) in it.by_ref().take(t.partitions) {
            let current_leader = (version >= 16)
                .then(|| broker.leader_hint(meta, &t.name, partition, r.error_code))
                .flatten();
            if let Some((leader, _)) = current_leader {
                leaders.insert(leader);
            }
            out.push(FetchPartitionOut {
                partition_index: partition,
                error_code: r.error_code,
                high_watermark: r.high_watermark,
                last_stable_offset: r.high_watermark,
                log_start_offset: r.log_start_offset,
                aborted_transactions: read_committed.then(Vec::new),
                current_leader,
                diverging_epoch: None,
                preferred_read_replica: r.preferred_read_replica.unwrap_or(-1),
                records: r.chunks.into_iter().map(to_out_chunk).collect(),
            });
        }
        topics_out.push(FetchTopicOut {
            name: t.name.clone(),
            topic_id: t.id.as_u128(),
            partitions: out,
        });
    }
    let endpoints = broker
        .hinted_endpoints(meta, &leaders)
        .into_iter()
        .map(|e| FetchNodeEndpoint {
            node_id: e.id,
            host: e.host,
            port: e.port,
            rack: e.rack,
        })
        .collect();
    (topics_out, endpoints)
}

fn to_out_chunk(c: ReadChunk) -> OutChunk {
    match c {
        ReadChunk::Memory(b) => OutChunk::Bytes(b),
        ReadChunk::File { file, offset, len } => OutChunk::File { file, offset, len },
    }
}

/// The first `Some` any future yields; `None` once all yielded `None`.
async fn first_some<T>(
    mut futs: Vec<futures::future::LocalBoxFuture<'static, Option<T>>>,
) -> Option<T> {
    while !futs.is_empty() {
        let (v, _, rest) = futures::future::select_all(futs).await;
        if v.is_some() {
            return v;
        }
        futs = rest;
    }
    None
}

async fn read_all(
    state: &Rc<ShardState>,
    slots: &[Slot],
    by_shard: &BTreeMap<usize, Vec<usize>>,
) -> Vec<FetchResult> {
    let mut results: Vec<FetchResult> = slots
        .iter()
        .map(|s| FetchResult {
            error_code: s.early_error.unwrap_or(errors::REQUEST_TIMED_OUT),
            high_watermark: -1,
            log_start_offset: -1,
            ..Default::default()
        })
        .collect();
    let calls = by_shard.iter().map(|(shard, idxs)| {
        let items: Vec<FetchItem> = idxs.iter().map(|i| slots[*i].item.clone()).collect();
        let state = state.clone();
        let shard = *shard;
        async move {
            state
                .call(shard, |reply| ShardMessage::Fetch { items, reply })
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    for ((_, idxs), reply) in by_shard.iter().zip(replies) {
        if let Some(reply) = reply {
            for (i, r) in idxs.iter().zip(reply) {
                results[*i] = r;
            }
        }
    }
    results
}

/// The owner shard's half of a read.
pub async fn read_local(state: &Rc<ShardState>, items: &[FetchItem]) -> Vec<FetchResult> {
    let mut out = Vec::with_capacity(items.len());
    let meta = state.metadata();
    for it in items {
        let log = state.partitions.get(&it.topic, it.partition);
        let node = state.config.node_id;
        let as_follower = it.follower_ok
            && crate::routing::serves_as_follower(&meta, &it.topic, it.partition, node)
            && state.replicas.follows(&it.topic, it.partition);
        let refusal = if as_follower {
            (log.is_none()).then_some(errors::NOT_LEADER_OR_FOLLOWER)
        } else {
            crate::routing::owner_refusal(&meta, node, &it.topic, it.partition, log.is_some())
        };
        let (None, Some(log)) = (refusal, log) else {
            out.push(FetchResult {
                error_code: refusal.unwrap_or(errors::UNKNOWN_TOPIC_OR_PARTITION),
                high_watermark: -1,
                log_start_offset: -1,
                ..Default::default()
            });
            continue;
        };
        // A replicated partition's consumers read below its high watermark (a follower's:
        // the one it learnt from the leader).
        let limit = state.replicas.read_limit(&it.topic, it.partition);
        if as_follower {
            state.metrics.follower_fetch();
        } else if let Some(rack) = &it.client_rack
            && let Some(replica) = state.replicas.preferred_read_replica(
                state.config.replica_selector,
                &meta,
                node,
                &it.topic,
                it.partition,
                rack,
                it.offset,
            )
        {
            // KIP-392: no records, the replica to read from instead.
            state.metrics.preferred_replica_redirect();
            out.push(FetchResult {
                error_code: errors::NONE,
                high_watermark: limit.map_or(log.high_watermark(), |l| l.min(log.high_watermark())),
                log_start_offset: log.log_start_offset(),
                preferred_read_replica: Some(replica),
                ..Default::default()
            });
            continue;
        }
        let res = match limit {
            Some(limit) => log.read_below(it.offset, it.max_bytes, limit).await,
            None => log.read(it.offset, it.max_bytes).await,
        };
        let hw = limit.map_or(log.high_watermark(), |l| l.min(log.high_watermark()));
        let lso = log.log_start_offset();
        out.push(match res {
            Ok(chunks) => {
                let bytes = chunks.iter().map(|c| c.len() as usize).sum();
                FetchResult {
                    error_code: errors::NONE,
                    high_watermark: hw,
                    log_start_offset: lso,
                    chunks,
                    bytes,
                    preferred_read_replica: None,
                }
            }
            Err(ReadError::OffsetOutOfRange { .. }) => {
                state.metrics.error(1, errors::OFFSET_OUT_OF_RANGE);
                FetchResult {
                    error_code: errors::OFFSET_OUT_OF_RANGE,
                    high_watermark: hw,
                    log_start_offset: lso,
                    ..Default::default()
                }
            }
            Err(e) => {
                log::error!("fetch {}-{} at {}: {e}", it.topic, it.partition, it.offset);
                FetchResult {
                    error_code: errors::KAFKA_STORAGE_ERROR,
                    high_watermark: hw,
                    log_start_offset: lso,
                    ..Default::default()
                }
            }
        });
    }
    out
}

/// The owner shard's half of a long poll: as soon as any partition's high watermark moves past
/// its wait offset, reads all `items` again and replies with the results; `None` at the
/// deadline; stops early if the fetcher went away (reply receiver dropped).
pub async fn wait_local(
    state: &Rc<ShardState>,
    items: Vec<FetchItem>,
    wait_offsets: Vec<i64>,
    deadline: Instant,
    mut reply: Reply<Option<Vec<FetchResult>>>,
) {
    let mut watches = Vec::new();
    let mut ready = false;
    for (it, wait_from) in items.iter().zip(&wait_offsets) {
        let limit = state.replicas.read_limit(&it.topic, it.partition);
        match state.partitions.get(&it.topic, it.partition) {
            Some(log)
                if limit.unwrap_or(log.high_watermark()) > *wait_from
                    || it.offset < log.log_start_offset() =>
            {
                ready = true;
                break;
            }
            Some(log) => watches.push(match state.replicas.watch_hw(&it.topic, it.partition) {
                Some(w) => w,
                None => log.watch(),
            }),
            None => {
                ready = true;
                break;
            }
        }
    }
    if !ready {
        let now = Instant::now();
        if now >= deadline || watches.is_empty() {
            let _ = reply.send(None);
            return;
        }
        let timer = tern_shard::task::sleep(deadline - now).boxed_local();
        let any_watch = futures::future::select_all(watches).boxed_local();
        let cancelled = reply.cancellation().boxed_local();
        let woke = futures::select_biased! {
            _ = cancelled.fuse() => return,
            _ = any_watch.fuse() => true,
            _ = timer.fuse() => false,
        };
        if !woke {
            let _ = reply.send(None);
            return;
        }
    }
    let fresh = read_local(state, &items).await;
    let _ = reply.send(Some(fresh));
}

/// Fetch responses go through the hand-written encoder; the guard encodes them with it, then
/// decodes them with kafka-protocol at the same version (a second codec), and hands the decoded
/// response to the shared encode check.
#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;
    let meta = crate::kafka::handlers::test_fixtures::cluster();
    let broker = crate::kafka::handlers::test_fixtures::broker();
    let (name, tm) = meta.topics.iter().next().expect("fixture has a topic");
    let layout = vec![
        TopicLayout {
            name: name.clone(),
            id: tm.id,
            partitions: 4,
        },
        TopicLayout {
            name: if version >= 13 {
                String::new()
            } else {
                "missing".into()
            },
            id: uuid::Uuid::from_u128(99),
            partitions: 1,
        },
    ];
    let data = |hw: i64| FetchResult {
        error_code: errors::NONE,
        high_watermark: hw,
        log_start_offset: 3,
        chunks: vec![ReadChunk::Memory(bytes::Bytes::from_static(&[7u8; 70]))],
        bytes: 70,
        preferred_read_replica: None,
    };
    let failed = |code: i16| FetchResult {
        error_code: code,
        high_watermark: -1,
        log_start_offset: -1,
        ..Default::default()
    };
    let mut out = Vec::new();
    let multi = crate::kafka::handlers::test_fixtures::multi_broker();
    for (meta, read_committed) in [(&meta, false), (&meta, true), (&multi, false)] {
        let partitions = vec![
            (0, data(10)),
            (1, failed(errors::NOT_LEADER_OR_FOLLOWER)),
            (2, failed(errors::FENCED_LEADER_EPOCH)),
            (2, failed(errors::OFFSET_OUT_OF_RANGE)),
            (
                0,
                failed(if version >= 13 {
                    errors::UNKNOWN_TOPIC_ID
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                }),
            ),
        ];
        let (topics, endpoints) =
            build_topics(version, &broker, meta, &layout, partitions, read_committed);
        for (error, session_id) in [(errors::NONE, 0), (errors::FETCH_SESSION_ID_NOT_FOUND, 0)] {
            let frame = tern_net::encode_fetch_response(
                version, 1, 5, error, session_id, &topics, &endpoints,
            )
            .unwrap_or_else(|e| panic!("fetch v{version}: {e}"));
            let mut b = frame.to_contiguous().expect("in-memory records only");
            let size = b.get_i32() as usize;
            assert_eq!(size, b.len());
            let header_version =
                kafka_protocol::messages::ApiKey::Fetch.response_header_version(version);
            kafka_protocol::messages::ResponseHeader::decode(&mut b, header_version)
                .expect("response header");
            let resp = kafka_protocol::messages::FetchResponse::decode(&mut b, version)
                .unwrap_or_else(|e| panic!("fetch v{version} decode: {e:#}"));
            assert!(b.is_empty(), "fetch v{version}: trailing bytes");
            out.push(kafka_protocol::messages::ResponseKind::Fetch(resp));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ResponseKind;

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        crate::kafka::handlers::test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::Fetch,
            guard_responses,
        );
    }

    #[test]
    fn cluster_mode_hints_name_the_real_leader() {
        // Decoded from the wire (guard_responses decodes what it encodes); broker 1 answers.
        let ResponseKind::Fetch(r) = guard_responses(16).remove(4) else {
            unreachable!()
        };
        let p = &r.responses[0].partitions;
        let hint = |i: usize| {
            (
                p[i].current_leader.leader_id.0,
                p[i].current_leader.leader_epoch,
            )
        };
        // p1 is led by broker 2 at epoch 6; p2 has no leader (epoch 7).
        assert_eq!((hint(0), hint(1), hint(2)), ((-1, -1), (2, 6), (-1, 7)));
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
            vec![(2, "broker2.example".into(), 9092, Some("az2".into()))]
        );
    }

    #[test]
    fn topic_ids_leader_hints_and_endpoints() {
        let ResponseKind::Fetch(r) = guard_responses(16).remove(0) else {
            unreachable!()
        };
        let meta = crate::kafka::handlers::test_fixtures::cluster();
        let id = meta.topics.values().next().unwrap().id;
        assert_eq!(r.responses[0].topic_id, id);
        assert_eq!(r.responses[1].topic_id, uuid::Uuid::from_u128(99));
        let p = &r.responses[0].partitions;
        assert_eq!(p[0].records.as_ref().map(|b| b.len()), Some(70));
        assert_eq!(p[0].current_leader.leader_id.0, -1);
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
        assert_eq!(r.node_endpoints[0].host.as_str(), "127.0.0.1");
        assert_eq!(
            r.responses[1].partitions[0].error_code,
            errors::UNKNOWN_TOPIC_ID
        );
        // No hints before v16 (Kafka fills them for KIP-951 clients only).
        let ResponseKind::Fetch(r) = guard_responses(15).remove(0) else {
            unreachable!()
        };
        assert_eq!(r.responses[0].partitions[1].current_leader.leader_id.0, -1);
        assert!(r.node_endpoints.is_empty());
        // READ_COMMITTED: an empty aborted-transaction list instead of null.
        let ResponseKind::Fetch(r) = guard_responses(12).remove(2) else {
            unreachable!()
        };
        assert_eq!(
            r.responses[0].partitions[0].aborted_transactions,
            Some(vec![])
        );
    }

    #[test]
    fn sessions() {
        assert_eq!(session_error(0), errors::NONE);
        assert_eq!(session_error(-1), errors::NONE);
        assert_eq!(session_error(1), errors::FETCH_SESSION_ID_NOT_FOUND);
    }
}
