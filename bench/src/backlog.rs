//! The `backlog` command: replay from the beginning. Fills a topic with `--fill-bytes` of record
//! values (the bench's own producers, max rate), measures the disk's read ceiling in the same run
//! (`disk_read.rs`), optionally drops the page cache, then consumes everything from the earliest
//! offset with K consumer threads (partitions split among them, no group) until each partition's
//! end offset, reporting records/s, MB/s and the share of the read ceiling.
//!
//! Isolation (`--steady-rate R`): a fixed-rate producer on a separate topic runs throughout, with
//! a consumer at that topic's tail (fairness: a tail consumer beside the cold reader); the
//! producer's produce latency and the tail consumer's end-to-end latency are recorded for
//! `--steady-baseline` seconds with no replay, then during the cold replay (and the warm one with
//! `--warm-pass`: the same replay with no disk reads, which tells CPU from disk contention), and
//! the p99 ratios (replay / alone) are reported.

use crate::admin::{self, Cluster, offsets_at, topic_name};
use crate::cli::{BacklogArgs, Workload};
use crate::consumer::{self, ConsumerCfg};
use crate::disk;
use crate::disk_read::{self, ReadCeiling};
use crate::parse;
use crate::producer::{self, ProducerCfg};
use crate::stats::{Percentiles, Shared, new_hist};
use crate::wire::Conn;
use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// ListOffsets timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

#[derive(Serialize)]
pub struct BacklogResult {
    pub label: String,
    pub bootstrap: String,
    pub workload: Workload,
    pub fill_bytes_target: u64,
    pub fill_secs: Option<f64>,
    /// Records and value bytes in the backlog (end - earliest offsets, over all partitions).
    pub backlog_records: u64,
    pub page_cache_dropped: bool,
    pub read_ceiling: ReadCeiling,
    /// The replay after the fill (and the page-cache drop when asked for).
    pub cold: Pass,
    /// A second replay right after (`--warm-pass`): whatever the first left in memory.
    pub warm: Option<Pass>,
    /// The cold pass's batch bytes/s over the O_DIRECT and over the best read ceiling.
    pub share_of_o_direct: f64,
    pub share_of_best_ceiling: f64,
    pub steady: Option<Steady>,
}

/// The steady producer's produce latency and its tail consumer's end-to-end latency, alone and
/// during the replay.
#[derive(Serialize)]
pub struct Steady {
    pub rate: f64,
    pub alone_ms: Percentiles,
    /// During the cold replay.
    pub during_replay_ms: Percentiles,
    pub p99_ratio: f64,
    pub tail_e2e_alone_ms: Percentiles,
    pub tail_e2e_during_replay_ms: Percentiles,
    pub tail_e2e_p99_ratio: f64,
    /// During the warm replay (`--warm-pass`).
    pub warm: Option<SteadyDuring>,
    pub errors: u64,
}

/// The steady producer's and tail consumer's latency during one replay pass.
#[derive(Serialize)]
pub struct SteadyDuring {
    pub produce_ms: Percentiles,
    pub p99_ratio: f64,
    pub tail_e2e_ms: Percentiles,
    pub tail_e2e_p99_ratio: f64,
}

/// Produce and tail end-to-end latency histograms.
struct Lat {
    produce: Histogram<u64>,
    e2e: Histogram<u64>,
}

impl Lat {
    fn new() -> Lat {
        Lat {
            produce: new_hist(),
            e2e: new_hist(),
        }
    }

    fn add(&mut self, (p, e): (Histogram<u64>, Histogram<u64>)) -> Result<()> {
        self.produce.add(&p)?;
        self.e2e.add(&e)?;
        Ok(())
    }

    /// Percentiles of this pass and p99 ratios against `alone`.
    fn during(&self, alone: &Lat) -> SteadyDuring {
        let (pa, pd) = (
            Percentiles::of(&alone.produce),
            Percentiles::of(&self.produce),
        );
        let (ea, ed) = (Percentiles::of(&alone.e2e), Percentiles::of(&self.e2e));
        SteadyDuring {
            p99_ratio: pd.p99 / pa.p99.max(1e-9),
            produce_ms: pd,
            tail_e2e_p99_ratio: ed.p99 / ea.p99.max(1e-9),
            tail_e2e_ms: ed,
        }
    }
}

/// Progress of all backlog consumers.
#[derive(Default)]
struct Progress {
    records: AtomicU64,
    wire_bytes: AtomicU64,
    fetches: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
}

/// One consumer's share: partitions (with start and end offsets) grouped by leader.
struct Assignment {
    addr: String,
    topic: String,
    parts: Vec<i32>,
    from: Vec<i64>,
    end: Vec<i64>,
}

fn consume(
    a: &Assignment,
    partition_max_bytes: i32,
    max_wait_ms: i32,
    pr: &Progress,
) -> Result<()> {
    let mut conn = Conn::connect(&a.addr)?;
    let v = conn.versions.fetch;
    let name = topic_name(&a.topic);
    let mut at = a.from.clone();
    while !pr.stop.load(Relaxed) {
        let partitions: Vec<FetchPartition> = a
            .parts
            .iter()
            .zip(&at)
            .zip(&a.end)
            .filter(|((_, o), e)| o < e)
            .map(|((p, o), _)| {
                FetchPartition::default()
                    .with_partition(*p)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(*o)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        if partitions.is_empty() {
            return Ok(());
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name.clone())
                    .with_partitions(partitions),
            ]);
        let resp = conn.call(&req, v)?;
        pr.fetches.fetch_add(1, Relaxed);
        if resp.error_code != 0 {
            bail!("Fetch v{v}: top-level error {}", resp.error_code);
        }
        let (mut recs_n, mut bytes_n) = (0u64, 0u64);
        for t in &resp.responses {
            for pd in &t.partitions {
                let Some(i) = a.parts.iter().position(|p| *p == pd.partition_index) else {
                    bail!("Fetch v{v}: unrequested partition {}", pd.partition_index);
                };
                if pd.error_code != 0 {
                    bail!(
                        "Fetch v{v} {}/{} at offset {}: error {}",
                        a.topic,
                        pd.partition_index,
                        at[i],
                        pd.error_code
                    );
                }
                let Some(recs) = &pd.records else { continue };
                let end = a.end[i];
                let walked = parse::walk(recs, at[i], |off, _, _| {
                    if off < end {
                        recs_n += 1;
                    }
                })?;
                bytes_n += walked.batch_bytes as u64;
                if let Some(next) = walked.next_offset {
                    let was_done = at[i] >= end;
                    at[i] = at[i].max(next);
                    if !was_done && at[i] >= end {
                        pr.done.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        pr.records.fetch_add(recs_n, Relaxed);
        pr.wire_bytes.fetch_add(bytes_n, Relaxed);
    }
    Ok(())
}

/// Produce at max rate into `cluster`'s first topic until `bytes` of values are acknowledged.
fn fill(w: &Workload, cluster: &Cluster, bytes: u64) -> Result<f64> {
    let shared = Arc::new(Shared::new());
    let t = &cluster.topics[0];
    let mut fw = w.clone();
    fw.rate = None;
    let producers: Vec<_> = (0..w.producers)
        .map(|i| {
            let cfg = ProducerCfg {
                w: fw.clone(),
                topic: t.name.clone(),
                leaders: t.leaders.clone(),
                addr_of: cluster.brokers.clone(),
                seed: i as u64 + 1,
                dry_run: false,
            };
            producer::spawn(cfg, shared.clone())
        })
        .collect();
    let target = bytes.div_ceil(w.record_size as u64);
    let start = Instant::now();
    let mut last = 0;
    while shared.acked.load(Relaxed) < target && !shared.failed() {
        std::thread::sleep(Duration::from_secs(1));
        let n = shared.acked.load(Relaxed);
        println!(
            "[fill {:>4.0}s] {:>6.2} GB of {:.2} GB  {:>8.1} MB/s",
            start.elapsed().as_secs_f64(),
            n as f64 * w.record_size as f64 / 1e9,
            bytes as f64 / 1e9,
            (n - last) as f64 * w.record_size as f64 / 1e6
        );
        last = n;
    }
    shared.stop.store(true, Relaxed);
    for p in producers {
        let _ = p.join();
    }
    if let Some(e) = shared.fatal.lock().unwrap().clone() {
        bail!("fill failed: {e}");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Drops the whole page cache (root only): peers that write through the page cache would
/// otherwise replay from memory.
fn drop_page_cache() -> bool {
    // SAFETY: plain syscall with no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// A fixed-rate producer on its own topic whose produce latency is sampled by windows.
struct SteadyProducer {
    shared: Arc<Shared>,
    handle: std::thread::JoinHandle<()>,
    tail_consumer: std::thread::JoinHandle<()>,
    rate: f64,
}

impl SteadyProducer {
    fn start(w: &Workload, cluster: &Cluster, rate: f64) -> SteadyProducer {
        let shared = Arc::new(Shared::new());
        let t = &cluster.topics[1];
        let mut sw = w.clone();
        sw.rate = Some(rate);
        sw.producers = 1;
        sw.topics = 1;
        let cfg = ProducerCfg {
            w: sw,
            topic: t.name.clone(),
            leaders: t.leaders.clone(),
            addr_of: cluster.brokers.clone(),
            seed: 777,
            dry_run: false,
        };
        let handle = producer::spawn(cfg, shared.clone());
        // The tail consumer starts at the latest offsets: it reads what the producer writes.
        let ccfg = ConsumerCfg {
            topic: t.name.clone(),
            parts: (0..w.partitions as i32)
                .zip(t.leaders.iter().copied())
                .collect(),
            addr_of: cluster.brokers.clone(),
            max_wait_ms: w.fetch_max_wait_ms,
        };
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tail_consumer = consumer::spawn(ccfg, shared.clone(), ready);
        SteadyProducer {
            shared,
            handle,
            tail_consumer,
            rate,
        }
    }

    /// The produce and tail end-to-end latencies recorded since the last call.
    fn take(&self) -> (Histogram<u64>, Histogram<u64>) {
        self.shared.take_interval()
    }
}

/// What one replay pass reads.
struct Plan {
    topic: String,
    parts: Vec<i32>,
    from: Vec<i64>,
    end: Vec<i64>,
    consumers: usize,
    partition_max_bytes: i32,
    max_wait_ms: i32,
    backlog_records: u64,
    record_size: usize,
}

/// One replay pass's figures.
#[derive(Serialize, Clone)]
pub struct Pass {
    pub secs: f64,
    pub records_per_sec: f64,
    /// Value bytes per second (10^6), as `run` reports.
    pub mb_per_sec: f64,
    /// Bytes of complete record batches per second (what was read from disk and sent).
    pub wire_mb_per_sec: f64,
    pub fetches: u64,
}

/// Consumes the whole backlog once from the earliest offsets; the steady producer's and tail
/// consumer's latency meanwhile goes into `during` (what was recorded before is dropped).
fn replay(
    name: &str,
    plan: &Plan,
    cluster: &Cluster,
    steady: Option<&SteadyProducer>,
    during: &mut Lat,
) -> Result<Pass> {
    if let Some(s) = steady {
        s.take();
    }
    let (topic, parts, from, end) = (&plan.topic, &plan.parts, &plan.from, &plan.end);
    let (consumers, backlog_records) = (plan.consumers, plan.backlog_records);
    let leaders = &cluster.topics[0].leaders;
    let pr = Arc::new(Progress::default());
    let mut assignments: Vec<Vec<Assignment>> = (0..consumers).map(|_| Vec::new()).collect();
    for (i, p) in parts.iter().enumerate() {
        let mine = &mut assignments[i % consumers];
        let addr = cluster.brokers[&leaders[i]].clone();
        let a = match mine.iter_mut().find(|a| a.addr == addr) {
            Some(a) => a,
            None => {
                mine.push(Assignment {
                    addr,
                    topic: topic.clone(),
                    parts: vec![],
                    from: vec![],
                    end: vec![],
                });
                mine.last_mut().unwrap()
            }
        };
        a.parts.push(*p);
        a.from.push(from[i]);
        a.end.push(end[i]);
        if from[i] >= end[i] {
            pr.done.fetch_add(1, Relaxed);
        }
    }
    let (pmb, wait) = (plan.partition_max_bytes, plan.max_wait_ms);
    let start = Instant::now();
    let handles: Vec<_> = assignments
        .into_iter()
        .flatten()
        .map(|a| {
            let pr = pr.clone();
            std::thread::spawn(move || {
                if let Err(e) = consume(&a, pmb, wait, &pr) {
                    pr.fatal
                        .lock()
                        .unwrap()
                        .get_or_insert(format!("consumer of {}: {e:#}", a.topic));
                    pr.stop.store(true, Relaxed);
                }
            })
        })
        .collect();
    let mut last = (0u64, 0u64, Instant::now());
    while pr.done.load(Relaxed) < parts.len() as u64 && !pr.stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        if last.2.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let (r, b) = (pr.records.load(Relaxed), pr.wire_bytes.load(Relaxed));
        let dt = last.2.elapsed().as_secs_f64();
        let mut line = format!(
            "[{name} {:>4.0}s] {:>9.0} rec/s {:>8.1} MB/s  {:>5.1}% done",
            start.elapsed().as_secs_f64(),
            (r - last.0) as f64 / dt,
            (b - last.1) as f64 / dt / 1e6,
            r as f64 * 100.0 / backlog_records as f64
        );
        if let Some(s) = steady {
            let (p, e) = s.take();
            line += &format!(
                " | steady produce p99 {:.3} ms, tail e2e p99 {:.3} ms",
                Percentiles::of(&p).p99,
                Percentiles::of(&e).p99
            );
            during.add((p, e))?;
        }
        println!("{line}");
        last = (r, b, Instant::now());
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(s) = steady {
        during.add(s.take())?;
    }
    pr.stop.store(true, Relaxed);
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = pr.fatal.lock().unwrap().clone() {
        bail!("replay failed: {e}");
    }
    let records = pr.records.load(Relaxed);
    if records != backlog_records {
        bail!("replayed {records} records of {backlog_records}");
    }
    Ok(Pass {
        secs,
        records_per_sec: records as f64 / secs,
        mb_per_sec: records as f64 * plan.record_size as f64 / secs / 1e6,
        wire_mb_per_sec: pr.wire_bytes.load(Relaxed) as f64 / secs / 1e6,
        fetches: pr.fetches.load(Relaxed),
    })
}

pub fn run(args: BacklogArgs) -> Result<()> {
    let mut w = args.workload.resolve()?;
    if args.workload.topic_prefix.is_none() {
        w.topic_prefix = format!("tern-bench-backlog-{}p", w.partitions);
    }
    let consumers = w.consumers.max(1);
    let topic = w.topic_name(0);
    let steady_topic = format!("{}-steady", w.topic_prefix);
    let mut c = Conn::connect(&args.bootstrap)?;
    let names = vec![topic.clone(), steady_topic];
    let mut cluster = admin::ensure_topics(&mut c, &names, w.partitions, w.replication_factor)?;
    // topics[0] is the backlog, topics[1] the steady producer's.
    cluster
        .topics
        .sort_by_key(|t| names.iter().position(|n| *n == t.name));
    println!("workload: {}", serde_json::to_string(&w)?);
    let steady = args
        .steady_rate
        .map(|r| SteadyProducer::start(&w, &cluster, r));
    let fill_secs = if args.skip_fill {
        None
    } else {
        Some(fill(&w, &cluster, args.fill_bytes)?)
    };
    let leaders = &cluster.topics[0].leaders;
    let parts: Vec<i32> = (0..w.partitions as i32).collect();
    let mut from = Vec::new();
    let mut end = Vec::new();
    for (p, node) in parts.iter().zip(leaders) {
        let mut lc = Conn::connect(&cluster.brokers[node])?;
        from.push(offsets_at(&mut lc, &topic, &[*p], EARLIEST)?[0]);
        end.push(offsets_at(&mut lc, &topic, &[*p], LATEST)?[0]);
    }
    let backlog_records: u64 = from.iter().zip(&end).map(|(f, e)| (e - f) as u64).sum();
    if backlog_records == 0 {
        bail!("{topic} is empty: nothing to replay");
    }
    println!(
        "backlog: {backlog_records} records ({:.2} GB of values) in {} partitions",
        backlog_records as f64 * w.record_size as f64 / 1e9,
        w.partitions
    );
    let read_ceiling = disk_read::measure(std::path::Path::new(&args.dir), args.read.plan())?;
    disk::print_read(&read_ceiling);
    let page_cache_dropped = args.drop_caches && drop_page_cache();
    if args.drop_caches && !page_cache_dropped {
        println!("could not drop the page cache (needs root); peers may replay from memory");
    }
    let steady_alone = match &steady {
        Some(s) => {
            s.take();
            std::thread::sleep(Duration::from_secs_f64(args.steady_baseline));
            let mut alone = Lat::new();
            alone.add(s.take())?;
            Some(alone)
        }
        None => None,
    };

    let plan = Plan {
        topic: topic.clone(),
        parts: parts.clone(),
        from,
        end,
        consumers,
        partition_max_bytes: args.fetch_partition_bytes,
        max_wait_ms: w.fetch_max_wait_ms,
        backlog_records,
        record_size: w.record_size,
    };
    let mut during = Lat::new();
    let cold = replay("cold", &plan, &cluster, steady.as_ref(), &mut during)?;
    let mut during_warm = Lat::new();
    let warm = if args.warm_pass {
        Some(replay(
            "warm",
            &plan,
            &cluster,
            steady.as_ref(),
            &mut during_warm,
        )?)
    } else {
        None
    };
    let steady = match (steady, steady_alone) {
        (Some(s), Some(alone)) => {
            s.shared.stop.store(true, Relaxed);
            s.shared.stop_consumers.store(true, Relaxed);
            let _ = s.handle.join();
            let _ = s.tail_consumer.join();
            let d = during.during(&alone);
            Some(Steady {
                rate: s.rate,
                alone_ms: Percentiles::of(&alone.produce),
                during_replay_ms: d.produce_ms,
                p99_ratio: d.p99_ratio,
                tail_e2e_alone_ms: Percentiles::of(&alone.e2e),
                tail_e2e_during_replay_ms: d.tail_e2e_ms,
                tail_e2e_p99_ratio: d.tail_e2e_p99_ratio,
                warm: warm.is_some().then(|| during_warm.during(&alone)),
                errors: s.shared.errors.load(Relaxed),
            })
        }
        _ => None,
    };
    let res = BacklogResult {
        label: args.label.clone(),
        bootstrap: args.bootstrap.clone(),
        fill_bytes_target: args.fill_bytes,
        fill_secs,
        backlog_records,
        page_cache_dropped,
        share_of_o_direct: cold.wire_mb_per_sec / read_ceiling.o_direct_mb_per_sec,
        share_of_best_ceiling: cold.wire_mb_per_sec / read_ceiling.best_mb_per_sec(),
        cold,
        warm,
        read_ceiling,
        steady,
        workload: w,
    };
    println!("---- backlog summary ----");
    for (name, p) in [("cold", Some(&res.cold)), ("warm", res.warm.as_ref())] {
        let Some(p) = p else { continue };
        println!(
            "replay {name}: {:.0} rec/s  {:.1} MB/s values  {:.1} MB/s batches  ({backlog_records} records in {:.1} s, {} fetches)",
            p.records_per_sec, p.mb_per_sec, p.wire_mb_per_sec, p.secs, p.fetches
        );
    }
    println!(
        "cold replay = {:.0}% of the O_DIRECT read ceiling ({:.0} MB/s), {:.0}% of the best ({:.0} MB/s){}",
        res.share_of_o_direct * 100.0,
        res.read_ceiling.o_direct_mb_per_sec,
        res.share_of_best_ceiling * 100.0,
        res.read_ceiling.best_mb_per_sec(),
        if res.page_cache_dropped {
            "; page cache dropped first"
        } else {
            "; page cache NOT dropped"
        }
    );
    if let Some(s) = &res.steady {
        println!(
            "steady producer at {:.0} rec/s: p99 {:.3} ms alone, {:.3} ms during the replay (x{:.2}), {} errors",
            s.rate, s.alone_ms.p99, s.during_replay_ms.p99, s.p99_ratio, s.errors
        );
        println!("  alone  {}", s.alone_ms.line());
        println!("  replay {}", s.during_replay_ms.line());
        println!(
            "tail consumer e2e: p99 {:.3} ms alone, {:.3} ms during the replay (x{:.2})",
            s.tail_e2e_alone_ms.p99, s.tail_e2e_during_replay_ms.p99, s.tail_e2e_p99_ratio
        );
        println!("  alone  {}", s.tail_e2e_alone_ms.line());
        println!("  replay {}", s.tail_e2e_during_replay_ms.line());
        if let Some(w) = &s.warm {
            println!(
                "during the warm replay: produce p99 {:.3} ms (x{:.2}), tail e2e p99 {:.3} ms (x{:.2})",
                w.produce_ms.p99, w.p99_ratio, w.tail_e2e_ms.p99, w.tail_e2e_p99_ratio
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&res)?)?;
        println!("wrote {path}");
    }
    Ok(())
}
