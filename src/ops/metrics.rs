//! Metrics: per-shard counters in plain `Cell`s (each shard only touches its own; no atomics on
//! the hot path), gathered on demand by cross-shard message (`ShardMessage::CollectStats`) and
//! rendered in the Prometheus text format (0.0.4) by a tiny HTTP/1.1 endpoint.
//!
//! The endpoint's socket work runs on its own std thread (so a slow scraper never stalls a
//! shard); for each scrape it asks shard 0 over a channel, and shard 0 gathers every shard's
//! snapshot and renders the text.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use kafka_protocol::messages::ApiKey;
use tern_storage::stats::{LatencyStats, STORAGE_LATENCY_BUCKETS};

use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

/// Request latency buckets (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Produce batch size buckets (bytes).
pub const BATCH_BUCKETS: &[f64] = &[
    128.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

/// A fixed-bucket histogram: non-cumulative counts with an overflow bucket at the end.
#[derive(Clone, Debug, Default)]
pub struct Hist {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Hist {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.len() != bounds.len() + 1 {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Clone, Debug, Default)]
pub struct ApiStats {
    pub requests: u64,
    pub latency: Hist,
    /// Socket queueing before dispatch (see `connection.rs`).
    pub queue: Hist,
}

/// The live counters of one shard.
#[derive(Default)]
pub struct ShardMetrics {
    apis: RefCell<BTreeMap<i16, ApiStats>>,
    errors: RefCell<BTreeMap<(i16, i16), u64>>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    produce_batch: RefCell<Hist>,
    cross_sent: RefCell<Vec<u64>>,
    cross_received: Cell<u64>,
    connections_accepted: Cell<u64>,
    retention_segments: Cell<u64>,
    retention_bytes: Cell<u64>,
    cleaner: RefCell<CleanerStats>,
}

/// The log cleaner's counters of one shard.
#[derive(Clone, Debug, Default)]
pub struct CleanerStats {
    pub passes: u64,
    pub failures: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    /// Seconds per pass.
    pub pass_time: Hist,
    /// (topic, partition, dirty ratio, cleanable bytes) of each compacted partition, as last
    /// evaluated.
    pub dirtiness: Vec<(String, i32, f64, u64)>,
}

/// Upper bounds (seconds) of the cleaner pass-time histogram.
pub const CLEANER_PASS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0];

impl ShardMetrics {
    pub fn cleaner_pass(&self, out: &tern_storage::CleanOutcome) {
        let mut c = self.cleaner.borrow_mut();
        c.passes += 1;
        c.bytes_read += out.bytes_read;
        c.bytes_written += out.bytes_written;
        c.records_removed += out.records_removed;
        c.pass_time
            .observe(CLEANER_PASS_BUCKETS, out.elapsed.as_secs_f64());
    }

    pub fn cleaner_failure(&self) {
        self.cleaner.borrow_mut().failures += 1;
    }

    pub fn cleaner_dirtiness(&self, d: Vec<(String, i32, f64, u64)>) {
        self.cleaner.borrow_mut().dirtiness = d;
    }

    pub fn request_done(&self, api: i16, latency: Duration) {
        let mut apis = self.apis.borrow_mut();
        let s = apis.entry(api).or_default();
        s.requests += 1;
        s.latency.observe(LATENCY_BUCKETS, latency.as_secs_f64());
    }

    /// A request of `api` waited `queued` in its socket before dispatch.
    pub fn request_queued(&self, api: i16, queued: Duration) {
        let mut apis = self.apis.borrow_mut();
        apis.entry(api)
            .or_default()
            .queue
            .observe(LATENCY_BUCKETS, queued.as_secs_f64());
    }

    /// An error code returned by `api` (whole request or one partition), or -100 for a request
    /// that closed the connection.
    pub fn error(&self, api: i16, code: i16) {
        *self.errors.borrow_mut().entry((api, code)).or_default() += 1;
    }

    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.set(self.bytes_in.get() + n as u64);
    }

    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.set(self.bytes_out.get() + n as u64);
    }

    pub fn produce_batch(&self, bytes: usize) {
        self.produce_batch
            .borrow_mut()
            .observe(BATCH_BUCKETS, bytes as f64);
    }

    /// Counts a message sent to `target`; always true (so it can lead a condition).
    pub fn cross_sent(&self, target: usize) -> bool {
        let mut v = self.cross_sent.borrow_mut();
        if v.len() <= target {
            v.resize(target + 1, 0);
        }
        v[target] += 1;
        true
    }

    pub fn cross_received(&self) {
        self.cross_received.set(self.cross_received.get() + 1);
    }

    pub fn connection_accepted(&self) {
        self.connections_accepted
            .set(self.connections_accepted.get() + 1);
    }

    pub fn retention(&self, segments: usize, bytes: u64) {
        self.retention_segments
            .set(self.retention_segments.get() + segments as u64);
        self.retention_bytes.set(self.retention_bytes.get() + bytes);
    }
}

#[derive(Clone, Debug, Default)]
pub struct PartitionStat {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: usize,
}

/// A snapshot of one shard (sent across shards: plain values only).
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    pub shard: usize,
    pub apis: BTreeMap<i16, ApiStats>,
    pub errors: BTreeMap<(i16, i16), u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub produce_batch: Hist,
    pub fsync: LatencyStats,
    pub write: LatencyStats,
    pub cross_sent: Vec<u64>,
    pub cross_received: u64,
    pub connections_open: usize,
    pub connections_accepted: u64,
    pub in_flight: usize,
    pub retention_segments: u64,
    pub retention_bytes: u64,
    pub cleaner: CleanerStats,
    pub partitions: Vec<PartitionStat>,
    /// (group, topic, partition, committed offset) of the groups this shard coordinates.
    pub group_offsets: Vec<(String, String, i32, i64)>,
    /// Disk full: this shard's last reading of the log dir (see `disk_space`).
    pub log_dir: LogDirSpace,
}

/// A shard's view of the log dir's free space.
#[derive(Clone, Debug, Default)]
pub struct LogDirSpace {
    /// Bytes free at the last check (None before the first).
    pub free_bytes: Option<u64>,
    /// The free-space floor below which Produce is refused.
    pub floor_bytes: u64,
    pub below_floor: bool,
}

/// This shard's snapshot (runs on the shard).
pub fn collect_local(state: &ShardState) -> ShardStats {
    let m = &state.metrics;
    let mut partitions: Vec<PartitionStat> = state
        .partitions
        .all()
        .into_iter()
        .map(|(topic, partition, log)| PartitionStat {
            topic,
            partition,
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark: log.high_watermark(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
        })
        .collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut group_offsets = Vec::new();
    for (gid, g) in state.groups.groups.borrow().iter() {
        for ((t, p), e) in &g.offsets {
            group_offsets.push((gid.clone(), t.clone(), *p, e.offset));
        }
    }
    group_offsets.sort();
    ShardStats {
        shard: state.id,
        apis: m.apis.borrow().clone(),
        errors: m.errors.borrow().clone(),
        bytes_in: m.bytes_in.get(),
        bytes_out: m.bytes_out.get(),
        produce_batch: m.produce_batch.borrow().clone(),
        fsync: tern_storage::stats::fsync_stats(),
        write: tern_storage::stats::write_stats(),
        cross_sent: m.cross_sent.borrow().clone(),
        cross_received: m.cross_received.get(),
        connections_open: state.connections.borrow().len(),
        connections_accepted: m.connections_accepted.get(),
        in_flight: state.in_flight.get(),
        retention_segments: m.retention_segments.get(),
        retention_bytes: m.retention_bytes.get(),
        cleaner: m.cleaner.borrow().clone(),
        partitions,
        group_offsets,
        log_dir: LogDirSpace {
            free_bytes: state.disk.last().map(|s| s.free),
            floor_bytes: state.disk.floor(),
            below_floor: state.disk.below_floor(),
        },
    }
}

/// Every shard's snapshot, in shard order (a shard that is shutting down is left out).
pub async fn collect_all(state: &Rc<ShardState>) -> Vec<ShardStats> {
    let calls = (0..state.count).map(|s| {
        let state = state.clone();
        async move {
            state
                .call(s, |reply| ShardMessage::CollectStats { reply })
                .await
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub fn api_name(api: i16) -> String {
    match ApiKey::try_from(api) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("api_{api}"),
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", fmt_f64(value));
    }

    fn hist(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], h: &Hist) {
        let mut cum = 0u64;
        for (i, b) in bounds.iter().enumerate() {
            cum += h.buckets.get(i).copied().unwrap_or(0);
            let le = fmt_f64(*b);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &l, cum as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Disk full: each shard's last reading of the log dir's free space, its floor, and whether it
/// refuses Produce (1) for being below it.
fn render_log_dir(o: &mut Out, stats: &[ShardStats]) {
    o.family(
        "tern_log_dir_free_bytes",
        "gauge",
        "Bytes free in the log dir's file system at the shard's last check.",
    );
    for s in stats {
        if let Some(free) = s.log_dir.free_bytes {
            o.sample(
                "tern_log_dir_free_bytes",
                &[("shard", &s.shard.to_string())],
                free as f64,
            );
        }
    }
    o.family(
        "tern_log_dir_min_free_bytes",
        "gauge",
        "Free-space floor of the log dir (tern.log.dir.min.free.bytes / .percent).",
    );
    for s in stats {
        o.sample(
            "tern_log_dir_min_free_bytes",
            &[("shard", &s.shard.to_string())],
            s.log_dir.floor_bytes as f64,
        );
    }
    o.family(
        "tern_log_dir_below_min_free",
        "gauge",
        "1 while the shard refuses Produce because the log dir is below its free-space floor.",
    );
    for s in stats {
        o.sample(
            "tern_log_dir_below_min_free",
            &[("shard", &s.shard.to_string())],
            if s.log_dir.below_floor { 1.0 } else { 0.0 },
        );
    }
}

fn render_cleaner(o: &mut Out, stats: &[ShardStats]) {
    type Counter = fn(&CleanerStats) -> u64;
    let counters: [(&str, &str, Counter); 5] = [
        ("tern_cleaner_passes_total", "Log cleaner passes.", |c| {
            c.passes
        }),
        (
            "tern_cleaner_failures_total",
            "Log cleaner passes that failed.",
            |c| c.failures,
        ),
        (
            "tern_cleaner_read_bytes_total",
            "Bytes the log cleaner read.",
            |c| c.bytes_read,
        ),
        (
            "tern_cleaner_written_bytes_total",
            "Bytes the log cleaner wrote (cleaned segments).",
            |c| c.bytes_written,
        ),
        (
            "tern_cleaner_removed_records_total",
            "Records removed by the log cleaner.",
            |c| c.records_removed,
        ),
    ];
    for (name, help, pick) in counters {
        o.family(name, "counter", help);
        for s in stats {
            o.sample(
                name,
                &[("shard", &s.shard.to_string())],
                pick(&s.cleaner) as f64,
            );
        }
    }
    o.family(
        "tern_cleaner_pass_seconds",
        "histogram",
        "Duration of one log cleaner pass.",
    );
    for s in stats {
        o.hist(
            "tern_cleaner_pass_seconds",
            &[("shard", &s.shard.to_string())],
            CLEANER_PASS_BUCKETS,
            &s.cleaner.pass_time,
        );
    }
    for (name, help, bytes) in [
        (
            "tern_partition_dirty_ratio",
            "Compacted partitions: dirty bytes / cleanable bytes.",
            false,
        ),
        (
            "tern_partition_cleanable_bytes",
            "Compacted partitions: bytes not yet cleaned that the cleaner may clean.",
            true,
        ),
    ] {
        o.family(name, "gauge", help);
        for s in stats {
            for (t, p, ratio, b) in &s.cleaner.dirtiness {
                let v = if bytes { *b as f64 } else { *ratio };
                o.sample(name, &[("topic", t), ("partition", &p.to_string())], v);
            }
        }
    }
}

/// Renders all shards' snapshots as Prometheus text.
pub fn render(stats: &[ShardStats]) -> String {
    let mut o = Out(String::new());
    o.family("tern_build_info", "gauge", "Version of the running broker.");
    o.sample(
        "tern_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    o.family(
        "tern_shards",
        "gauge",
        "Shards (executors, one per core) answering this scrape.",
    );
    o.sample("tern_shards", &[], stats.len() as f64);

    o.family(
        "tern_requests_total",
        "counter",
        "Kafka requests completed, per shard and API.",
    );
    for s in stats {
        let shard = s.shard.to_string();
        for (api, a) in &s.apis {
            o.sample(
                "tern_requests_total",
                &[("shard", &shard), ("api", &api_name(*api))],
                a.requests as f64,
            );
        }
    }
    o.family(
        "tern_request_errors_total",
        "counter",
        "Error codes returned per shard and API (whole requests and partitions; -100 = connection closed).",
    );
    for s in stats {
        let shard = s.shard.to_string();
        for ((api, code), n) in &s.errors {
            let code = code.to_string();
            o.sample(
                "tern_request_errors_total",
                &[
                    ("shard", &shard),
                    ("api", &api_name(*api)),
                    ("error_code", &code),
                ],
                *n as f64,
            );
        }
    }
    o.family(
        "tern_request_latency_seconds",
        "histogram",
        "Time from a request being read to its response being written.",
    );
    for s in stats {
        let shard = s.shard.to_string();
        for (api, a) in &s.apis {
            let name = api_name(*api);
            o.hist(
                "tern_request_latency_seconds",
                &[("shard", &shard), ("api", &name)],
                LATENCY_BUCKETS,
                &a.latency,
            );
        }
    }
    o.family(
        "tern_request_queue_seconds",
        "histogram",
        "Time a request waited in its socket before the broker began handling it: from the kernel's receive timestamp of the data holding its first byte (SO_TIMESTAMPNS; a lower bound when TCP merged later segments into it) to dispatch.",
    );
    for s in stats {
        let shard = s.shard.to_string();
        for (api, a) in &s.apis {
            if a.queue.count == 0 {
                continue;
            }
            o.hist(
                "tern_request_queue_seconds",
                &[("shard", &shard), ("api", &api_name(*api))],
                LATENCY_BUCKETS,
                &a.queue,
            );
        }
    }
    let per_shard =
        |o: &mut Out, name: &str, kind: &str, help: &str, f: &dyn Fn(&ShardStats) -> f64| {
            o.family(name, kind, help);
            for s in stats {
                o.sample(name, &[("shard", &s.shard.to_string())], f(s));
            }
        };
    per_shard(
        &mut o,
        "tern_received_bytes_total",
        "counter",
        "Request bytes read from clients.",
        &|s| s.bytes_in as f64,
    );
    per_shard(
        &mut o,
        "tern_sent_bytes_total",
        "counter",
        "Response bytes written to clients.",
        &|s| s.bytes_out as f64,
    );
    per_shard(
        &mut o,
        "tern_connections",
        "gauge",
        "Open client connections.",
        &|s| s.connections_open as f64,
    );
    per_shard(
        &mut o,
        "tern_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        &|s| s.connections_accepted as f64,
    );
    per_shard(
        &mut o,
        "tern_requests_in_flight",
        "gauge",
        "Requests being handled.",
        &|s| s.in_flight as f64,
    );
    o.family(
        "tern_produce_batch_size_bytes",
        "histogram",
        "Size of the records of one partition in a Produce request.",
    );
    for s in stats {
        o.hist(
            "tern_produce_batch_size_bytes",
            &[("shard", &s.shard.to_string())],
            BATCH_BUCKETS,
            &s.produce_batch,
        );
    }
    for (name, help, pick) in [
        (
            "tern_fsync_latency_seconds",
            "fdatasync latency of partition segments.",
            (|s: &ShardStats| &s.fsync) as fn(&ShardStats) -> &LatencyStats,
        ),
        (
            "tern_log_write_latency_seconds",
            "Latency of one O_DIRECT data write of a partition segment (aligned, coalesced).",
            |s: &ShardStats| &s.write,
        ),
    ] {
        o.family(name, "histogram", help);
        for s in stats {
            let f = pick(s);
            let h = Hist {
                buckets: f.buckets.clone(),
                sum: f.sum_seconds,
                count: f.count,
            };
            o.hist(
                name,
                &[("shard", &s.shard.to_string())],
                STORAGE_LATENCY_BUCKETS,
                &h,
            );
        }
    }
    o.family(
        "tern_cross_shard_messages_sent_total",
        "counter",
        "Messages sent to another shard.",
    );
    for s in stats {
        for (t, n) in s.cross_sent.iter().enumerate() {
            if t != s.shard {
                o.sample(
                    "tern_cross_shard_messages_sent_total",
                    &[("shard", &s.shard.to_string()), ("target", &t.to_string())],
                    *n as f64,
                );
            }
        }
    }
    per_shard(
        &mut o,
        "tern_cross_shard_messages_received_total",
        "counter",
        "Messages taken from other shards.",
        &|s| s.cross_received as f64,
    );
    o.family(
        "tern_cross_shard_queue_depth",
        "gauge",
        "Messages sent to a shard and not yet taken by it.",
    );
    for s in stats {
        let sent: u64 = stats
            .iter()
            .map(|x| x.cross_sent.get(s.shard).copied().unwrap_or(0))
            .sum();
        o.sample(
            "tern_cross_shard_queue_depth",
            &[("shard", &s.shard.to_string())],
            sent.saturating_sub(s.cross_received) as f64,
        );
    }
    per_shard(
        &mut o,
        "tern_retention_deleted_segments_total",
        "counter",
        "Segments deleted by retention.",
        &|s| s.retention_segments as f64,
    );
    per_shard(
        &mut o,
        "tern_retention_deleted_bytes_total",
        "counter",
        "Bytes deleted by retention.",
        &|s| s.retention_bytes as f64,
    );

    render_cleaner(&mut o, stats);

    let mut hw: BTreeMap<(String, i32), i64> = BTreeMap::new();
    type Field = fn(&PartitionStat) -> f64;
    let fams: [(&str, &str, Field); 5] = [
        (
            "tern_partition_log_start_offset",
            "First offset kept (log start offset).",
            |p| p.log_start_offset as f64,
        ),
        (
            "tern_partition_log_end_offset",
            "Next offset to be assigned.",
            |p| p.log_end_offset as f64,
        ),
        (
            "tern_partition_high_watermark",
            "Offsets below this are visible to consumers.",
            |p| p.high_watermark as f64,
        ),
        (
            "tern_partition_size_bytes",
            "Bytes in the partition's segments.",
            |p| p.size_bytes as f64,
        ),
        (
            "tern_partition_segments",
            "Segments of the partition.",
            |p| p.segments as f64,
        ),
    ];
    for (name, help, f) in fams {
        o.family(name, "gauge", help);
        for s in stats {
            for p in &s.partitions {
                let part = p.partition.to_string();
                o.sample(
                    name,
                    &[
                        ("topic", &p.topic),
                        ("partition", &part),
                        ("shard", &s.shard.to_string()),
                    ],
                    f(p),
                );
            }
        }
    }
    for s in stats {
        for p in &s.partitions {
            hw.insert((p.topic.clone(), p.partition), p.high_watermark);
        }
    }
    render_log_dir(&mut o, stats);
    o.family(
        "tern_group_committed_offset",
        "gauge",
        "Committed offset of a consumer group.",
    );
    for s in stats {
        for (g, t, p, off) in &s.group_offsets {
            o.sample(
                "tern_group_committed_offset",
                &[("group", g), ("topic", t), ("partition", &p.to_string())],
                *off as f64,
            );
        }
    }
    o.family(
        "tern_group_lag",
        "gauge",
        "High watermark minus committed offset (messages).",
    );
    for s in stats {
        for (g, t, p, off) in &s.group_offsets {
            if let Some(h) = hw.get(&(t.clone(), *p)) {
                o.sample(
                    "tern_group_lag",
                    &[("group", g), ("topic", t), ("partition", &p.to_string())],
                    (h - off).max(0) as f64,
                );
            }
        }
    }
    o.0
}

/// A scrape: the HTTP thread sends a reply channel; shard 0 answers with the rendered text.
pub type ScrapeRequest = oneshot::Sender<String>;

/// Binds the endpoint and serves it from a std thread; scrapes are forwarded to `tx`.
pub fn start_http(
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<ScrapeRequest>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("tern-metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 2048];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let line = String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string();
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body) = if method != "GET" && method != "HEAD" {
                ("405 Method Not Allowed", "only GET\n".to_string())
            } else if path == "/metrics" || path.starts_with("/metrics?") {
                let (rtx, rrx) = oneshot::channel();
                if tx.unbounded_send(rtx).is_err() {
                    ("503 Service Unavailable", "broker is stopping\n".to_string())
                } else {
                    match futures::executor::block_on(rrx) {
                        Ok(text) => ("200 OK", text),
                        Err(_) => ("503 Service Unavailable", "broker is stopping\n".to_string()),
                    }
                }
            } else if path == "/" {
                ("200 OK", "tern: metrics at /metrics\n".to_string())
            } else {
                ("404 Not Found", "not found; try /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = conn.write_all(body.as_bytes());
            }
        }
    })?;
    Ok(local)
}

/// Shard 0's half: answers scrapes until the channel closes.
pub async fn serve_scrapes(state: Rc<ShardState>, mut rx: mpsc::UnboundedReceiver<ScrapeRequest>) {
    while let Some(reply) = rx.next().await {
        let stats = collect_all(&state).await;
        let mut text = render(&stats);
        if let Some(driver) = state.controller.as_ref().and_then(|c| c.driver()) {
            text.push_str(&crate::cluster::driver::metrics::render(&driver));
        }
        let _ = reply.send(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_cumulatively() {
        let m = ShardMetrics::default();
        m.request_done(0, Duration::from_micros(50));
        m.request_done(0, Duration::from_millis(30));
        m.error(0, 3);
        let mut s = ShardStats {
            shard: 0,
            apis: m.apis.borrow().clone(),
            errors: m.errors.borrow().clone(),
            ..Default::default()
        };
        s.partitions.push(PartitionStat {
            topic: "t\"x".into(),
            partition: 1,
            ..Default::default()
        });
        let text = render(&[s]);
        assert!(
            text.contains("tern_requests_total{shard=\"0\",api=\"Produce\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "tern_request_latency_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"0.0001\"} 1"
        ));
        assert!(text.contains(
            "tern_request_latency_seconds_bucket{shard=\"0\",api=\"Produce\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("topic=\"t\\\"x\""));
        assert!(
            text.contains(
                "tern_request_errors_total{shard=\"0\",api=\"Produce\",error_code=\"3\"} 1"
            )
        );
    }
}
