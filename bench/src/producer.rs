//! One producer thread: paces records (fixed rate or max), partitions them, appends them to
//! per-partition batches and sends ready batches as Produce requests to each partition's leader.
//! Each leader connection has an ack-reader thread (see `acks.rs`); in-flight requests per
//! connection are bounded like librdkafka's `max.in.flight`.

use crate::acks::{self, InFlight, PartRange};
use crate::batch::BatchBuilder;
use crate::cli::{Keys, Workload};
use crate::clock::{Pacer, now_ns, sleep_until};
use crate::keys::{Chooser, Rng};
use crate::lag::LagSplit;
use crate::stats::{LagHists, Shared};
use crate::wire::{Conn, encode_frame};
use anyhow::Result;
use bytes::BytesMut;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

pub struct ProducerCfg {
    pub w: Workload,
    pub topic: String,
    /// Leader node of each partition.
    pub leaders: Vec<i32>,
    /// Leader node -> address ("dry-run" in dry-run mode).
    pub addr_of: std::collections::HashMap<i32, String>,
    pub seed: u64,
    pub dry_run: bool,
}

/// Where a leader connection's frames go.
enum Sink {
    Tcp {
        stream: TcpStream,
        tx: Option<SyncSender<InFlight>>,
        reader: Option<JoinHandle<()>>,
    },
    DryRun,
}

struct Link {
    sink: Sink,
    version: i16,
    parts: Vec<usize>,
    cursor: usize,
    deadline: Option<u64>,
    corr: i32,
    out: BytesMut,
}

/// Build a random payload of `size` bytes (random so compression is not flattered).
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..size).map(|_| rng.next() as u8).collect()
}

pub fn spawn(cfg: ProducerCfg, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("producer-{}", cfg.seed))
        .spawn(move || {
            if let Err(e) = run(&cfg, &shared) {
                shared.fail(format!("producer on {}: {e:#}", cfg.topic));
            }
        })
        .expect("spawn producer")
}

fn open_links(cfg: &ProducerCfg, shared: &Arc<Shared>) -> Result<(Vec<Link>, Vec<usize>)> {
    let mut nodes: Vec<i32> = cfg.leaders.clone();
    nodes.sort();
    nodes.dedup();
    let mut links = Vec::new();
    let mut part_link = vec![0; cfg.leaders.len()];
    for (li, node) in nodes.iter().enumerate() {
        let parts: Vec<usize> = (0..cfg.leaders.len())
            .filter(|p| cfg.leaders[*p] == *node)
            .collect();
        for p in &parts {
            part_link[*p] = li;
        }
        let (sink, version) = if cfg.dry_run {
            (Sink::DryRun, 9)
        } else {
            let conn = Conn::connect(&cfg.addr_of[node])?;
            let version = conn.versions.produce;
            let stream = conn.stream;
            let (tx, reader) = if cfg.w.acks == 0 {
                (None, None)
            } else {
                let (tx, rx) = sync_channel(cfg.w.max_in_flight - 1);
                let rs = stream.try_clone()?;
                let h = acks::spawn_reader(rs, rx, version, shared.clone());
                (Some(tx), Some(h))
            };
            (Sink::Tcp { stream, tx, reader }, version)
        };
        links.push(Link {
            sink,
            version,
            parts,
            cursor: 0,
            deadline: None,
            corr: 0,
            out: BytesMut::with_capacity(cfg.w.max_request_size + 4096),
        });
    }
    Ok((links, part_link))
}

fn run(cfg: &ProducerCfg, shared: &Arc<Shared>) -> Result<()> {
    let w = &cfg.w;
    let (mut links, part_link) = open_links(cfg, shared)?;
    let cap = w.batch_size.min(16 << 10);
    let mut batches: Vec<BatchBuilder> = (0..cfg.leaders.len())
        .map(|_| BatchBuilder::new(cap))
        .collect();
    let mut chooser = Chooser::new(w.keys, cfg.leaders.len(), cfg.seed);
    let payload = payload(w.record_size, cfg.seed);
    let linger_ns = (w.linger_ms * 1e6) as u64;
    let per_producer = w.rate.map(|r| r / (w.producers * w.topics) as f64);
    let mut pacer = Pacer::new(per_producer, now_ns());
    let mut split = LagSplit::default();
    let mut lag = LagHists::new();
    let mut last_publish = now_ns();
    while !shared.stop.load(Relaxed) {
        let mut now = now_ns();
        if now.saturating_sub(last_publish) >= 50_000_000 {
            shared.record_lag(&mut lag);
            last_publish = now;
        }
        // Linger expiry on any connection.
        for l in links.iter_mut() {
            if l.deadline.is_some_and(|d| d <= now) {
                flush(cfg, l, &mut batches, shared, &mut split)?;
                chooser.next_sticky();
            }
        }
        let due = pacer.peek(now);
        if due > now {
            let wake = links
                .iter()
                .filter_map(|l| l.deadline)
                .fold(due, u64::min)
                .min(now + 5_000_000);
            sleep_until(wake);
            continue;
        }
        // Generate everything that is due (one record at max rate), at most 1024 at once.
        for _ in 0..1024 {
            let t = pacer.next(now);
            lag.record(split.split(t, now));
            let (key, p) = chooser.pick();
            let b = &mut batches[p];
            b.append(t, key, &payload);
            let l = &mut links[part_link[p]];
            if l.deadline.is_none() {
                l.deadline = Some(now + linger_ns);
            }
            if b.len() >= w.batch_size {
                if w.keys == Keys::None {
                    chooser.next_sticky();
                }
                flush(cfg, l, &mut batches, shared, &mut split)?;
                // A flush may have blocked: later records' lag is measured from now.
                now = now_ns();
            }
            if pacer.peek(now) > now {
                break;
            }
        }
    }
    shared.record_lag(&mut lag);
    // Let the ack readers drain what is in flight.
    for l in links {
        if let Sink::Tcp { tx, reader, .. } = l.sink {
            drop(tx);
            if let Some(h) = reader {
                let _ = h.join();
            }
        }
    }
    Ok(())
}

/// Seal the non-empty batches of `l`'s partitions (up to the request size limit) into one
/// Produce request and send it.
fn flush(
    cfg: &ProducerCfg,
    l: &mut Link,
    batches: &mut [BatchBuilder],
    shared: &Shared,
    split: &mut LagSplit,
) -> Result<()> {
    let w = &cfg.w;
    let mut data = Vec::new();
    let mut times = Vec::new();
    let mut ranges = Vec::new();
    let mut size = 0;
    let n = l.parts.len();
    let mut left_over = false;
    for i in 0..n {
        let p = l.parts[(l.cursor + i) % n];
        let b = &mut batches[p];
        if b.is_empty() {
            continue;
        }
        if size > 0 && size + b.len() > w.max_request_size {
            left_over = true;
            l.cursor = (l.cursor + i) % n;
            break;
        }
        let start = times.len();
        let bytes = b.seal(w.compression, &mut times)?;
        size += bytes.len();
        ranges.push(PartRange {
            partition: p as i32,
            start,
            end: times.len(),
        });
        data.push(
            PartitionProduceData::default()
                .with_index(p as i32)
                .with_records(Some(bytes)),
        );
    }
    l.deadline = if left_over { Some(0) } else { None };
    if data.is_empty() {
        return Ok(());
    }
    shared.sent.fetch_add(times.len() as u64, Relaxed);
    let req = ProduceRequest::default()
        .with_acks(w.acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(crate::admin::topic_name(&cfg.topic))
                .with_partition_data(data),
        ]);
    l.corr = l.corr.wrapping_add(1);
    l.out.clear();
    encode_frame(&mut l.out, l.corr, &req, l.version)?;
    match &mut l.sink {
        Sink::DryRun => acks::dry_run_ack(&req, &times, shared),
        Sink::Tcp { stream, tx, .. } => {
            if let Some(tx) = tx {
                let inflight = InFlight {
                    corr: l.corr,
                    ranges,
                    times,
                    bytes: l.out.len(),
                };
                // A full channel means max-in-flight requests are unacknowledged: the wait
                // for a slot is backpressure from the broker.
                match tx.try_send(inflight) {
                    Ok(()) => {}
                    Err(TrySendError::Full(inflight)) => {
                        let t0 = now_ns();
                        if tx.send(inflight).is_err() {
                            anyhow::bail!("ack reader stopped");
                        }
                        split.blocked(t0, now_ns());
                    }
                    Err(TrySendError::Disconnected(_)) => anyhow::bail!("ack reader stopped"),
                }
            }
            // The write (blocking when the socket is full) is time spent on the broker's side.
            let t0 = now_ns();
            stream.write_all(&l.out).map_err(|e| {
                anyhow::anyhow!("writing Produce v{} corr {}: {e}", l.version, l.corr)
            })?;
            split.blocked(t0, now_ns());
        }
    }
    Ok(())
}
