//! Command line: subcommands, the workload flags shared by `run` and `link`, and how a named
//! preset plus explicit flags resolve into one concrete [`Workload`].

use crate::presets;
use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "tern-bench",
    about = "Kafka-protocol benchmark (OpenMessaging-Benchmark style) for any Kafka-compatible broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Produce and consume against a broker, recording produce and end-to-end latency.
    Run(RunArgs),
    /// Measure the raw loopback TCP ceiling with the same frame sizes as the workload.
    Link(LinkArgs),
    /// Measure the storage ceiling: O_DIRECT appends of the workload's batch size, one file per
    /// partition, without and with fdatasync.
    Disk(DiskArgs),
    /// Replay from the beginning: fill a topic, measure the disk's read ceiling, then consume
    /// the whole backlog from the earliest offset (optionally beside a steady producer).
    Backlog(BacklogArgs),
    /// List the named workload presets.
    Presets,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Broker to bootstrap from (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Encode everything but never touch a socket: reports the bench's own per-record cost.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete the bench topics at the end.
    #[arg(long)]
    pub delete_topics: bool,
    /// Label stored in the JSON result (e.g. the broker's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Write the full result as JSON to this file.
    #[arg(long)]
    pub json: Option<String>,
    /// Mark the run "generator saturated" when the producers' own lateness p99 (fixed rate)
    /// exceeds this many milliseconds.
    #[arg(long, default_value_t = 1.0)]
    pub saturation_ms: f64,
    /// Pin the bench's threads to these CPUs (e.g. `1` or `0,2-3`); default: unpinned.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
}

/// CPUs by number, sorted, no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuList(pub Vec<usize>);

/// A CPU list as `taskset -c` takes it: `N`, `N-M`, comma-separated.
pub fn parse_cpus(s: &str) -> Result<CpuList> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
        if a > b || b >= 4096 {
            bail!("bad CPU range {part:?}");
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("empty CPU list {s:?}");
    }
    Ok(CpuList(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_taskset() {
        assert_eq!(parse_cpus("1").unwrap().0, vec![1]);
        assert_eq!(parse_cpus("0,2-4,3").unwrap().0, vec![0, 2, 3, 4]);
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }
}

#[derive(Args, Debug)]
pub struct LinkArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<String>,
}

#[derive(Args, Debug)]
pub struct DiskArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Directory to write in (on the broker's data-dir file system); created if missing.
    #[arg(long)]
    pub dir: String,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<String>,
}

#[derive(Args, Debug)]
pub struct BacklogArgs {
    /// Broker to bootstrap from (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Partitions, record size, producers (fill), consumers (replay), fetch max wait, ...
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Bytes of record values to fill the topic with before the replay.
    #[arg(long, default_value_t = 4_000_000_000)]
    pub fill_bytes: u64,
    /// Replay what the topic already holds (no fill).
    #[arg(long)]
    pub skip_fill: bool,
    /// partition_max_bytes of each Fetch (Kafka's max.partition.fetch.bytes default: 1 MiB).
    #[arg(long, default_value_t = 1 << 20)]
    pub fetch_partition_bytes: i32,
    /// Drop the page cache before the replay (root only), so that no broker replays from memory.
    #[arg(long)]
    pub drop_caches: bool,
    /// Replay a second time right after the first (page cache as the first pass left it).
    #[arg(long)]
    pub warm_pass: bool,
    /// Also run a producer at this fixed rate (records/s) on a separate topic and compare its
    /// produce latency alone and during the replay.
    #[arg(long)]
    pub steady_rate: Option<f64>,
    /// Seconds the steady producer is measured alone before the replay starts.
    #[arg(long, default_value_t = 10.0)]
    pub steady_baseline: f64,
    /// Directory for the read-ceiling files (on the broker's data-dir file system).
    #[arg(long, default_value = "/tmp/tern-bench-disk")]
    pub dir: String,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Label stored in the JSON result (e.g. the broker's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Write the full result as JSON to this file.
    #[arg(long)]
    pub json: Option<String>,
}

/// How the disk's sequential read ceiling is measured (`disk` and `backlog`).
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Bytes written once and read back (O_DIRECT, then buffered from a cold page cache).
    #[arg(long, default_value_t = 4 << 30)]
    pub read_bytes: u64,
    /// Bytes per read (a multiple of 4096).
    #[arg(long, default_value_t = 1 << 20)]
    pub read_chunk: usize,
    /// Reads in flight (one thread each, each reading its own files).
    #[arg(long, default_value_t = 4)]
    pub read_depth: usize,
}

impl ReadArgs {
    pub fn plan(&self) -> crate::disk_read::ReadPlan {
        crate::disk_read::ReadPlan {
            total_bytes: self.read_bytes,
            chunk_bytes: self.read_chunk,
            depth: self.read_depth,
        }
    }
}

/// Every knob is optional so that a preset supplies what the user did not.
#[derive(Args, Debug, Clone, Default)]
pub struct WorkloadArgs {
    /// Named preset (see `tern-bench presets`); explicit flags override it.
    #[arg(long)]
    pub preset: Option<String>,
    /// Number of topics.
    #[arg(long)]
    pub topics: Option<usize>,
    /// Partitions per topic.
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Record value size in bytes.
    #[arg(long)]
    pub record_size: Option<usize>,
    /// Keys: none | random | round-robin:N.
    #[arg(long)]
    pub keys: Option<String>,
    /// Producers per topic (one thread each).
    #[arg(long)]
    pub producers: Option<usize>,
    /// Consumers per topic (partitions split among them; 0 = produce only).
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Total target rate in records/s, or `max`.
    #[arg(long)]
    pub rate: Option<String>,
    /// acks: 0, 1 or all.
    #[arg(long)]
    pub acks: Option<String>,
    /// Producer linger in milliseconds (may be fractional).
    #[arg(long)]
    pub linger_ms: Option<f64>,
    /// Producer batch size in bytes per partition.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Largest produce request in bytes.
    #[arg(long)]
    pub max_request_size: Option<usize>,
    /// Compression: none | gzip | snappy | lz4 | zstd.
    #[arg(long)]
    pub compression: Option<String>,
    /// Measured duration in seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up in seconds before measuring.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Produce requests in flight per connection.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Topic name prefix (topics are PREFIX-0, PREFIX-1, ...; default tern-bench-<N>p).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Replication factor for created topics.
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Fetch max wait in milliseconds.
    #[arg(long)]
    pub fetch_max_wait_ms: Option<i32>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Keys {
    None,
    Random,
    RoundRobin(usize),
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec id in the RecordBatch attributes.
    pub fn codec(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// A fully resolved workload.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub preset: Option<String>,
    pub topics: usize,
    pub partitions: usize,
    pub record_size: usize,
    pub keys: Keys,
    pub producers: usize,
    pub consumers: usize,
    /// Records/s over all producers; `None` = max.
    pub rate: Option<f64>,
    pub acks: i16,
    pub linger_ms: f64,
    pub batch_size: usize,
    pub max_request_size: usize,
    pub compression: Compression,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub max_in_flight: usize,
    pub topic_prefix: String,
    pub replication_factor: i16,
    pub fetch_max_wait_ms: i32,
}

impl Workload {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_s)
    }
    pub fn topic_name(&self, i: usize) -> String {
        format!("{}-{}", self.topic_prefix, i)
    }
}

fn parse_keys(s: &str) -> Result<Keys> {
    Ok(match s {
        "none" => Keys::None,
        "random" => Keys::Random,
        _ => match s.strip_prefix("round-robin:") {
            Some(n) => Keys::RoundRobin(n.parse()?),
            None => bail!("--keys must be none, random or round-robin:N, not {s:?}"),
        },
    })
}

fn parse_acks(s: &str) -> Result<i16> {
    Ok(match s {
        "all" | "-1" => -1,
        "0" => 0,
        "1" => 1,
        _ => bail!("--acks must be 0, 1 or all, not {s:?}"),
    })
}

fn parse_compression(s: &str) -> Result<Compression> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => bail!("--compression must be none, gzip, snappy, lz4 or zstd, not {s:?}"),
    })
}

impl WorkloadArgs {
    /// Apply `self` on top of the preset (or defaults) and validate.
    pub fn resolve(&self) -> Result<Workload> {
        let base = match &self.preset {
            Some(name) => presets::get(name)?,
            None => WorkloadArgs::default(),
        };
        let pick = |a: &Option<String>, b: &Option<String>, d: &str| {
            a.clone()
                .or_else(|| b.clone())
                .unwrap_or_else(|| d.to_string())
        };
        let rate = pick(&self.rate, &base.rate, "max");
        let w = Workload {
            preset: self.preset.clone(),
            topics: self.topics.or(base.topics).unwrap_or(1),
            partitions: self.partitions.or(base.partitions).unwrap_or(16),
            record_size: self.record_size.or(base.record_size).unwrap_or(1024),
            keys: parse_keys(&pick(&self.keys, &base.keys, "none"))?,
            producers: self.producers.or(base.producers).unwrap_or(1),
            consumers: self.consumers.or(base.consumers).unwrap_or(1),
            rate: if rate == "max" {
                None
            } else {
                Some(rate.parse::<f64>()?)
            },
            acks: parse_acks(&pick(&self.acks, &base.acks, "1"))?,
            linger_ms: self.linger_ms.or(base.linger_ms).unwrap_or(1.0),
            batch_size: self.batch_size.or(base.batch_size).unwrap_or(131_072),
            max_request_size: self
                .max_request_size
                .or(base.max_request_size)
                .unwrap_or(1_048_576),
            compression: parse_compression(&pick(&self.compression, &base.compression, "none"))?,
            duration_s: self.duration.or(base.duration).unwrap_or(30.0),
            warmup_s: self.warmup.or(base.warmup).unwrap_or(5.0),
            max_in_flight: self.max_in_flight.or(base.max_in_flight).unwrap_or(5),
            topic_prefix: String::new(),
            replication_factor: self
                .replication_factor
                .or(base.replication_factor)
                .unwrap_or(1),
            fetch_max_wait_ms: self
                .fetch_max_wait_ms
                .or(base.fetch_max_wait_ms)
                .unwrap_or(100),
        };
        let mut w = w;
        w.topic_prefix = self
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("tern-bench-{}p", w.partitions));
        if w.topics == 0 || w.partitions == 0 || w.producers == 0 || w.max_in_flight == 0 {
            bail!("topics, partitions, producers and max-in-flight must be at least 1");
        }
        if w.consumers > w.partitions {
            bail!("more consumers per topic than partitions");
        }
        if w.rate.is_some_and(|r| r <= 0.0) {
            bail!("--rate must be positive or max");
        }
        Ok(w)
    }
}
