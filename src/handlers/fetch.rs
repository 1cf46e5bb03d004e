//! Fetch with long polling. The connection's shard asks each owning shard for its partitions'
//! data (`read_local`); if there is less than `min_bytes`, it asks the owners to wait until one
//! of the partitions grows (`wait_local`, woken by the append itself through
//! `PartitionLog::watch`, never by polling) or `max_wait_ms` passes, then reads again. Record
//! bytes travel as the log's own buffers or file ranges; the response encoder never copies them.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::FetchRequest;
use tern_net::{FetchPartitionOut, FetchTopicOut, OutChunk, ParsedHeader, ResponseFrame};
use tern_storage::{ReadChunk, ReadError};

use crate::errors;
use crate::messages::{FetchItem, FetchResult, Reply, ShardMessage};
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

pub async fn handle(state: Rc<ShardState>, h: ParsedHeader, req: FetchRequest) -> ResponseFrame {
    let meta = state.metadata();
    let mut slots: Vec<Slot> = Vec::new();
    let mut layout: Vec<(String, usize)> = Vec::new();
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let topic: Arc<str> = Arc::from(name.as_str());
        let tm = meta.topic(&name);
        for p in &t.partitions {
            let exists = tm.is_some_and(|tm| (0..tm.partitions).contains(&p.partition));
            slots.push(Slot {
                item: FetchItem {
                    topic: topic.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                },
                owner: state.owner(&topic, p.partition),
                early_error: (!exists).then_some(errors::UNKNOWN_TOPIC_OR_PARTITION),
            });
        }
        layout.push((name, t.partitions.len()));
    }
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
        let any_error = results.iter().any(|r| r.error_code != errors::NONE);
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

    let mut topics_out = Vec::with_capacity(layout.len());
    let mut k = 0;
    for (name, n) in layout {
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let s = &slots[k];
            let r = std::mem::take(&mut results[k]);
            k += 1;
            partitions.push(FetchPartitionOut {
                partition_index: s.item.partition,
                error_code: r.error_code,
                high_watermark: r.high_watermark,
                last_stable_offset: r.high_watermark,
                log_start_offset: r.log_start_offset,
                records: r.chunks.into_iter().map(to_out_chunk).collect(),
            });
        }
        topics_out.push(FetchTopicOut { name, partitions });
    }
    match tern_net::encode_fetch_response(
        h.api_version,
        h.correlation_id,
        0,
        errors::NONE,
        0,
        &topics_out,
    ) {
        Ok(frame) => frame,
        Err(e) => {
            log::error!("encoding fetch response v{}: {e}", h.api_version);
            ResponseFrame { chunks: Vec::new() }
        }
    }
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
    for it in items {
        let Some(log) = state.partitions.get(&it.topic, it.partition) else {
            out.push(FetchResult {
                error_code: errors::UNKNOWN_TOPIC_OR_PARTITION,
                high_watermark: -1,
                log_start_offset: -1,
                ..Default::default()
            });
            continue;
        };
        let res = log.read(it.offset, it.max_bytes).await;
        let hw = log.high_watermark();
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
        match state.partitions.get(&it.topic, it.partition) {
            Some(log)
                if log.high_watermark() > *wait_from || it.offset < log.log_start_offset() =>
            {
                ready = true;
                break;
            }
            Some(log) => watches.push(log.watch()),
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
