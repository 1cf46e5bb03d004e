//! Topic and broker configs as Kafka names and reports them: the known keys, their types,
//! defaults and validation; the effective value of each with its source (topic override, dynamic
//! broker config, static broker config, default) for DescribeConfigs; the application of
//! AlterConfigs / IncrementalAlterConfigs to the cluster metadata (run by the controller); and the
//! storage settings (`LogConfig`) and retention limits of a topic derived from all of that.

use std::collections::BTreeMap;

use tern_storage::LogConfig;

use crate::config::BrokerConfig;
use crate::kafka::errors;
use crate::metadata::{ClusterMetadata, TopicMeta};

/// Kafka's ConfigSource values (DescribeConfigs v1+).
#[allow(dead_code)] // the full table; DYNAMIC_DEFAULT_BROKER_CONFIG is not produced
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Bool,
    /// A string; when the slice is non-empty the value must be one of it.
    Str(&'static [&'static str]),
    /// A comma-separated list whose items must be in the slice.
    List(&'static [&'static str]),
    Int {
        min: i64,
    },
    Long {
        min: i64,
    },
    Double {
        min: f64,
        max: f64,
    },
}

impl Kind {
    /// DescribeConfigs v3+ config_type: BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7.
    pub fn type_code(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Str(_) => 2,
            Kind::Int { .. } => 3,
            Kind::Long { .. } => 5,
            Kind::Double { .. } => 6,
            Kind::List(_) => 7,
        }
    }
}

pub struct Def {
    pub name: &'static str,
    /// Topic configs: the broker config that gives the default. Broker configs: "".
    pub broker: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    /// Broker configs only: can be changed at run time (AlterConfigs on the broker).
    pub dynamic: bool,
    pub doc: &'static str,
}

const fn d(
    name: &'static str,
    broker: &'static str,
    kind: Kind,
    default: &'static str,
    dynamic: bool,
    doc: &'static str,
) -> Def {
    Def {
        name,
        broker,
        kind,
        default,
        dynamic,
        doc,
    }
}

const LONG0: Kind = Kind::Long { min: 0 };
const LONG_M1: Kind = Kind::Long { min: -1 };
const MAXLONG: &str = "9223372036854775807";

/// Topic-level configs (each with its broker-level default).
pub const TOPIC_CONFIGS: &[Def] = &[
    d(
        "cleanup.policy",
        "log.cleanup.policy",
        Kind::List(&["delete", "compact"]),
        "delete",
        true,
        "delete: old segments are deleted by retention; compact: the cleaner keeps the latest record per key; both: compact,delete",
    ),
    d(
        "compression.type",
        "compression.type",
        Kind::Str(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "producer",
        true,
        "stored and reported; batches are kept as the producer compressed them",
    ),
    d(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        LONG0,
        "86400000",
        true,
        "compacted topics: tombstones older than this (record timestamp) are removed by the cleaner",
    ),
    d(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        LONG0,
        "60000",
        true,
        "stored and reported",
    ),
    d(
        "flush.messages",
        "log.flush.interval.messages",
        Kind::Long { min: 1 },
        MAXLONG,
        true,
        "stored and reported",
    ),
    d(
        "flush.ms",
        "log.flush.interval.ms",
        LONG0,
        MAXLONG,
        true,
        "stored and reported",
    ),
    d(
        "index.interval.bytes",
        "log.index.interval.bytes",
        Kind::Int { min: 1 },
        "4096",
        true,
        "bytes between two sparse offset-index entries",
    ),
    d(
        "max.message.bytes",
        "message.max.bytes",
        Kind::Int { min: 0 },
        "1048588",
        true,
        "largest record batch accepted",
    ),
    d(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        Kind::Long { min: 1 },
        MAXLONG,
        true,
        "compacted topics: dirty segments older than this are cleaned whatever the dirty ratio",
    ),
    d(
        "message.timestamp.type",
        "log.message.timestamp.type",
        Kind::Str(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
        true,
        "stored and reported",
    ),
    d(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        Kind::Double { min: 0.0, max: 1.0 },
        "0.5",
        true,
        "compacted topics: clean when dirty bytes / all cleanable bytes reaches this",
    ),
    d(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        LONG0,
        "0",
        true,
        "compacted topics: segments whose newest record is younger than this are not cleaned",
    ),
    d(
        "min.insync.replicas",
        "min.insync.replicas",
        Kind::Int { min: 1 },
        "1",
        true,
        "stored and reported",
    ),
    d(
        "preallocate",
        "log.preallocate",
        Kind::Bool,
        "false",
        true,
        "stored and reported",
    ),
    d(
        "retention.bytes",
        "log.retention.bytes",
        LONG_M1,
        "-1",
        true,
        "delete whole old segments while the partition is larger than this (-1: no limit)",
    ),
    d(
        "retention.ms",
        "log.retention.ms",
        LONG_M1,
        "604800000",
        true,
        "delete whole segments whose newest record is older than this (-1: keep forever)",
    ),
    d(
        "segment.bytes",
        "log.segment.bytes",
        Kind::Int { min: 14 },
        "1073741824",
        true,
        "roll a new segment at this size",
    ),
    d(
        "segment.ms",
        "log.roll.ms",
        Kind::Long { min: 1 },
        "604800000",
        true,
        "roll a new segment at this age",
    ),
    d(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        Kind::Bool,
        "false",
        true,
        "stored and reported",
    ),
];

/// Broker-level configs reported by DescribeConfigs (the topic defaults first; they are the
/// dynamic ones, as in Kafka's cluster-wide dynamic log configs).
pub const BROKER_CONFIGS: &[Def] = &[
    d(
        "log.cleanup.policy",
        "",
        Kind::List(&["delete", "compact"]),
        "delete",
        true,
        "",
    ),
    d(
        "compression.type",
        "",
        Kind::Str(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "producer",
        true,
        "",
    ),
    d(
        "log.cleaner.delete.retention.ms",
        "",
        LONG0,
        "86400000",
        true,
        "",
    ),
    d(
        "log.cleaner.min.compaction.lag.ms",
        "",
        LONG0,
        "0",
        true,
        "",
    ),
    d(
        "log.cleaner.max.compaction.lag.ms",
        "",
        Kind::Long { min: 1 },
        MAXLONG,
        true,
        "",
    ),
    d(
        "log.cleaner.min.cleanable.ratio",
        "",
        Kind::Double { min: 0.0, max: 1.0 },
        "0.5",
        true,
        "",
    ),
    d("log.segment.delete.delay.ms", "", LONG0, "60000", true, ""),
    d(
        "log.flush.interval.messages",
        "",
        Kind::Long { min: 1 },
        MAXLONG,
        true,
        "",
    ),
    d("log.flush.interval.ms", "", LONG0, MAXLONG, true, ""),
    d(
        "log.index.interval.bytes",
        "",
        Kind::Int { min: 1 },
        "4096",
        true,
        "",
    ),
    d(
        "message.max.bytes",
        "",
        Kind::Int { min: 0 },
        "1048588",
        true,
        "",
    ),
    d(
        "log.message.timestamp.type",
        "",
        Kind::Str(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
        true,
        "",
    ),
    d(
        "min.insync.replicas",
        "",
        Kind::Int { min: 1 },
        "1",
        true,
        "",
    ),
    d("log.preallocate", "", Kind::Bool, "false", true, ""),
    d("log.retention.bytes", "", LONG_M1, "-1", true, ""),
    d("log.retention.ms", "", LONG_M1, "604800000", true, ""),
    d(
        "log.segment.bytes",
        "",
        Kind::Int { min: 14 },
        "1073741824",
        true,
        "",
    ),
    d(
        "log.roll.ms",
        "",
        Kind::Long { min: 1 },
        "604800000",
        true,
        "",
    ),
    d(
        "unclean.leader.election.enable",
        "",
        Kind::Bool,
        "false",
        true,
        "",
    ),
    // Reassignment throttle (bytes/s, applied to replicas being added: cluster/replication/throttle.rs).
    d(
        "leader.replication.throttled.rate",
        "",
        LONG0,
        MAXLONG,
        true,
        "",
    ),
    d(
        "follower.replication.throttled.rate",
        "",
        LONG0,
        MAXLONG,
        true,
        "",
    ),
    // Static (read-only) ones.
    d("broker.id", "", Kind::Int { min: 0 }, "0", false, ""),
    d("node.id", "", Kind::Int { min: 0 }, "0", false, ""),
    d(
        "listeners",
        "",
        Kind::Str(&[]),
        "PLAINTEXT://0.0.0.0:9092",
        false,
        "",
    ),
    d("advertised.listeners", "", Kind::Str(&[]), "", false, ""),
    d("log.dirs", "", Kind::Str(&[]), "./data", false, ""),
    d("num.partitions", "", Kind::Int { min: 1 }, "1", false, ""),
    d(
        "default.replication.factor",
        "",
        Kind::Int { min: 1 },
        "1",
        false,
        "",
    ),
    d(
        "auto.create.topics.enable",
        "",
        Kind::Bool,
        "true",
        false,
        "",
    ),
    d(
        "log.retention.check.interval.ms",
        "",
        Kind::Long { min: 1 },
        "300000",
        false,
        "",
    ),
    d(
        "socket.request.max.bytes",
        "",
        Kind::Int { min: 1 },
        "104857600",
        false,
        "",
    ),
    d(
        "offsets.retention.minutes",
        "",
        Kind::Int { min: 1 },
        "10080",
        false,
        "",
    ),
    d(
        "offsets.topic.num.partitions",
        "",
        Kind::Int { min: 1 },
        "50",
        false,
        "",
    ),
    d(
        "offsets.commit.timeout.ms",
        "",
        Kind::Int { min: 1 },
        "5000",
        false,
        "",
    ),
    d(
        "offsets.topic.segment.bytes",
        "",
        Kind::Int { min: 1 },
        "104857600",
        false,
        "",
    ),
    d(
        "group.initial.rebalance.delay.ms",
        "",
        Kind::Int { min: 0 },
        "3000",
        false,
        "",
    ),
    d("tern.shards", "", Kind::Int { min: 1 }, "", false, ""),
    d("tern.tail.cache.bytes", "", LONG0, "134217728", false, ""),
    d(
        "tern.max.decompressed.batch.bytes",
        "",
        LONG0,
        "67108864",
        false,
        "",
    ),
    d(
        "max.request.partition.size.limit",
        "",
        Kind::Int { min: 1 },
        "2000",
        false,
        "",
    ),
    d(
        "tern.metrics.listener",
        "",
        Kind::Str(&[]),
        "0.0.0.0:9644",
        false,
        "",
    ),
    d(
        "tern.metrics.request.queue.enable",
        "",
        Kind::Bool,
        "true",
        false,
        "",
    ), // Disk full (see `disk_space.rs`).
    d(
        "tern.log.dir.min.free.bytes",
        "",
        LONG0,
        "1073741824",
        false,
        "",
    ),
    d(
        "tern.log.dir.min.free.percent",
        "",
        Kind::Double {
            min: 0.0,
            max: 100.0,
        },
        "0",
        false,
        "",
    ),
    d(
        "tern.log.dir.free.space.check.interval.ms",
        "",
        Kind::Long { min: 1 },
        "1000",
        false,
        "",
    ),
];

/// The cleaner's own broker settings (static: read at start-up).
pub const CLEANER_CONFIGS: &[Def] = &[
    d(
        "log.cleaner.enable",
        "",
        Kind::Bool,
        "true",
        false,
        "run the log cleaner on compacted topics",
    ),
    d(
        "log.cleaner.dedupe.buffer.size",
        "",
        Kind::Long { min: 1024 },
        "134217728",
        false,
        "memory of the key -> offset maps, split evenly between shards",
    ),
    d(
        "log.cleaner.io.max.bytes.per.second",
        "",
        Kind::Double {
            min: 1.0,
            max: f64::MAX,
        },
        "52428800",
        false,
        "cleaner reads and writes of one shard stay under this rate (Kafka's default: unlimited)",
    ),
    d(
        "log.cleaner.backoff.ms",
        "",
        Kind::Long { min: 1 },
        "15000",
        false,
        "how long a shard's cleaner sleeps when no partition needs cleaning",
    ),
];

/// A cleaner broker setting by name.
pub fn cleaner_def(name: &str) -> Option<&'static Def> {
    CLEANER_CONFIGS.iter().find(|d| d.name == name)
}

/// The effective value of a cleaner broker setting (static config, else its default).
pub fn cleaner_value(cfg: &BrokerConfig, name: &str) -> String {
    let def = cleaner_def(name).expect("known cleaner config");
    static_value(cfg, name).unwrap_or_else(|| def.default.to_string())
}

pub fn topic_def(name: &str) -> Option<&'static Def> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

pub fn broker_def(name: &str) -> Option<&'static Def> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks (and normalises) a value for `def`; the error is Kafka-style text.
pub fn validate(def: &Def, value: &str) -> Result<String, String> {
    let v = value.trim();
    let bad = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {}: {why}",
            def.name
        ))
    };
    match def.kind {
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(v.to_ascii_lowercase()),
            _ => bad("Expected value to be either true or false"),
        },
        Kind::Str(allowed) => {
            if allowed.is_empty() || allowed.contains(&v) {
                Ok(v.to_string())
            } else {
                bad(&format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        Kind::List(allowed) => {
            let items: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if items.is_empty() {
                return bad("Expected a non-empty list");
            }
            match items.iter().find(|i| !allowed.contains(i)) {
                Some(i) => bad(&format!("{i} is not one of: {}", allowed.join(", "))),
                None => Ok(items.join(",")),
            }
        }
        Kind::Int { min } => match v.parse::<i32>() {
            Ok(n) if (n as i64) >= min => Ok(n.to_string()),
            Ok(_) => bad(&format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type INT"),
        },
        Kind::Long { min } => match v.parse::<i64>() {
            Ok(n) if n >= min => Ok(n.to_string()),
            Ok(_) => bad(&format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type LONG"),
        },
        Kind::Double { min, max } => match v.parse::<f64>() {
            Ok(n) if n >= min && n <= max => Ok(v.to_string()),
            Ok(_) => bad(&format!("Value must be in [{min}, {max}]")),
            Err(_) => bad("Not a number of type DOUBLE"),
        },
    }
}

/// Validates a topic config given at creation or alteration.
pub fn validate_topic_config(name: &str, value: &str) -> Result<String, (i16, String)> {
    let def = topic_def(name).ok_or_else(|| {
        (
            errors::INVALID_CONFIG,
            format!("Unknown topic config name: {name}"),
        )
    })?;
    validate(def, value).map_err(|m| (errors::INVALID_CONFIG, m))
}

/// The static value (file or flag) of a broker config, if one was set.
fn static_value(cfg: &BrokerConfig, name: &str) -> Option<String> {
    let p = &cfg.static_props;
    match name {
        "log.retention.ms" if !p.contains_key(name) => {
            if p.contains_key("log.retention.minutes") || p.contains_key("log.retention.hours") {
                Some(cfg.retention_ms.to_string())
            } else {
                None
            }
        }
        "log.roll.ms" if !p.contains_key(name) => {
            p.get("log.roll.hours").map(|_| cfg.roll_ms.to_string())
        }
        "log.dirs" => p.get("log.dirs").or(p.get("log.dir")).cloned(),
        "node.id" | "broker.id" => p.get("node.id").or(p.get("broker.id")).cloned(),
        _ => p.get(name).cloned(),
    }
}

/// The value a broker config takes when nobody set it, where Tern derives it at start-up
/// rather than using a fixed default: Kafka reports those as DEFAULT_CONFIG too.
fn derived_default(cfg: &BrokerConfig, name: &str) -> Option<String> {
    match name {
        // From `listeners` (0.0.0.0 advertised as 127.0.0.1).
        "advertised.listeners" => Some(format!(
            "PLAINTEXT://{}:{}",
            cfg.advertised_host, cfg.advertised_port
        )),
        // One shard per CPU.
        "tern.shards" => Some(cfg.shards.to_string()),
        _ => None,
    }
}

/// The effective value of a broker config and its source, with the synonyms (most to least
/// specific) as DescribeConfigs reports them.
pub fn broker_value(
    cfg: &BrokerConfig,
    meta: &ClusterMetadata,
    def: &Def,
) -> (String, i8, Vec<(String, String, i8)>) {
    let mut syn = Vec::new();
    if let Some(v) = meta.broker_configs.get(def.name) {
        syn.push((
            def.name.to_string(),
            v.clone(),
            source::DYNAMIC_BROKER_CONFIG,
        ));
    }
    if let Some(v) = static_value(cfg, def.name) {
        syn.push((def.name.to_string(), v, source::STATIC_BROKER_CONFIG));
    }
    syn.push((
        def.name.to_string(),
        derived_default(cfg, def.name).unwrap_or_else(|| def.default.to_string()),
        source::DEFAULT_CONFIG,
    ));
    let (v, s) = (syn[0].1.clone(), syn[0].2);
    (v, s, syn)
}

/// The effective value of a topic config and its source (topic override, else the broker's).
pub fn topic_value(
    cfg: &BrokerConfig,
    meta: &ClusterMetadata,
    topic: &TopicMeta,
    def: &Def,
) -> (String, i8, Vec<(String, String, i8)>) {
    let mut syn = Vec::new();
    if let Some(v) = topic.configs.get(def.name) {
        syn.push((
            def.name.to_string(),
            v.clone(),
            source::DYNAMIC_TOPIC_CONFIG,
        ));
    }
    let bdef = broker_def(def.broker);
    match bdef {
        Some(b) => syn.extend(
            broker_value(cfg, meta, b)
                .2
                .into_iter()
                .map(|(_, v, s)| (def.broker.to_string(), v, s)),
        ),
        None => syn.push((
            def.name.to_string(),
            def.default.to_string(),
            source::DEFAULT_CONFIG,
        )),
    }
    let (v, s) = (syn[0].1.clone(), syn[0].2);
    (v, s, syn)
}

fn topic_num(cfg: &BrokerConfig, meta: &ClusterMetadata, topic: &TopicMeta, name: &str) -> i64 {
    let def = topic_def(name).expect("known topic config");
    topic_value(cfg, meta, topic, def)
        .0
        .parse()
        .unwrap_or_else(|_| def.default.parse().unwrap_or(-1))
}

/// min.insync.replicas of a topic (its override, else the broker's).
pub fn min_insync_replicas(cfg: &BrokerConfig, meta: &ClusterMetadata, topic: &TopicMeta) -> usize {
    topic_num(cfg, meta, topic, "min.insync.replicas").max(1) as usize
}

/// Storage settings of a topic's partitions.
pub fn log_config(cfg: &BrokerConfig, meta: &ClusterMetadata, topic: &TopicMeta) -> LogConfig {
    let n = |k| topic_num(cfg, meta, topic, k);
    LogConfig {
        segment_bytes: n("segment.bytes").max(1) as u64,
        segment_ms: n("segment.ms").max(1) as u64,
        index_interval_bytes: n("index.interval.bytes").clamp(1, u32::MAX as i64) as u32,
        max_batch_bytes: n("max.message.bytes").max(0) as usize,
        max_decompressed_batch_bytes: cfg.max_decompressed_batch_bytes,
        keys_required: cleanup_policy(cfg, meta, topic).compact,
        readahead_bytes: cfg.fetch_readahead_bytes,
        readahead_inflight_bytes: cfg.fetch_readahead_inflight_bytes,
        cold_read_bytes_per_sec: cfg.fetch_cold_read_bytes_per_sec,
    }
}

/// A topic's `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

pub fn cleanup_policy(
    cfg: &BrokerConfig,
    meta: &ClusterMetadata,
    topic: &TopicMeta,
) -> CleanupPolicy {
    let v = topic_value(
        cfg,
        meta,
        topic,
        topic_def("cleanup.policy").expect("known"),
    )
    .0;
    let has = |p: &str| v.split(',').any(|x| x.trim() == p);
    CleanupPolicy {
        delete: has("delete"),
        compact: has("compact"),
    }
}

/// The compaction settings of a topic.
pub fn compaction_config(
    cfg: &BrokerConfig,
    meta: &ClusterMetadata,
    topic: &TopicMeta,
) -> tern_storage::CompactionConfig {
    let ratio_def = topic_def("min.cleanable.dirty.ratio").expect("known");
    tern_storage::CompactionConfig {
        delete_retention_ms: topic_num(cfg, meta, topic, "delete.retention.ms"),
        min_compaction_lag_ms: topic_num(cfg, meta, topic, "min.compaction.lag.ms"),
        max_compaction_lag_ms: topic_num(cfg, meta, topic, "max.compaction.lag.ms"),
        min_cleanable_ratio: topic_value(cfg, meta, topic, ratio_def)
            .0
            .parse()
            .unwrap_or(0.5),
    }
}

/// `default.replication.factor`: what CreateTopics with replication factor -1 gets.
pub fn default_replication_factor(cfg: &BrokerConfig, meta: &ClusterMetadata) -> i16 {
    let def = broker_def("default.replication.factor").expect("known broker config");
    let (v, _, _) = broker_value(cfg, meta, def);
    v.parse()
        .unwrap_or_else(|_| def.default.parse().expect("a valid default"))
}

/// (retention.ms, retention.bytes) of a topic; (-1, -1) when its cleanup policy has no `delete`.
pub fn retention(cfg: &BrokerConfig, meta: &ClusterMetadata, topic: &TopicMeta) -> (i64, i64) {
    if !cleanup_policy(cfg, meta, topic).delete {
        return (-1, -1);
    }
    (
        topic_num(cfg, meta, topic, "retention.ms"),
        topic_num(cfg, meta, topic, "retention.bytes"),
    )
}

/// One config change of an (Incremental)AlterConfigs request.
#[derive(Clone, Debug)]
pub struct ConfigOp {
    pub name: String,
    /// 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT (AlterConfigs: always SET, or DELETE for null).
    pub op: i8,
    pub value: Option<String>,
}

/// The changes for one resource.
#[derive(Clone, Debug)]
pub struct Alteration {
    pub resource_type: i8,
    pub resource_name: String,
    pub ops: Vec<ConfigOp>,
    /// IncrementalAlterConfigs (ops apply to the current set) vs AlterConfigs (the given set
    /// replaces all overrides of the resource).
    pub incremental: bool,
}

/// Applies one resource's changes to `meta` (all or nothing for that resource).
pub fn apply(
    cfg: &BrokerConfig,
    meta: &mut ClusterMetadata,
    a: &Alteration,
) -> Result<(), (i16, String)> {
    let is_topic = match a.resource_type {
        RESOURCE_TOPIC => true,
        RESOURCE_BROKER => {
            if !a.resource_name.is_empty() && a.resource_name != cfg.node_id.to_string() {
                return Err((
                    errors::INVALID_REQUEST,
                    format!("Unknown broker id {}", a.resource_name),
                ));
            }
            false
        }
        t => {
            return Err((
                errors::INVALID_REQUEST,
                format!("Unsupported resource type {t}"),
            ));
        }
    };
    let current = if is_topic {
        match meta.topics.get(&a.resource_name) {
            Some(t) => t.configs.clone(),
            None => {
                return Err((
                    errors::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic {} does not exist", a.resource_name),
                ));
            }
        }
    } else {
        meta.broker_configs.clone()
    };
    let mut next = if a.incremental {
        current.clone()
    } else {
        BTreeMap::new()
    };
    let mut seen = std::collections::HashSet::new();
    for op in &a.ops {
        if !seen.insert(op.name.as_str()) {
            return Err((
                errors::INVALID_REQUEST,
                format!("Duplicate config {}", op.name),
            ));
        }
        let def = if is_topic {
            topic_def(&op.name)
        } else {
            broker_def(&op.name)
        };
        let Some(def) = def else {
            let what = if is_topic { "topic" } else { "broker" };
            return Err((
                errors::INVALID_CONFIG,
                format!("Unknown {what} config name: {}", op.name),
            ));
        };
        if !is_topic && !def.dynamic {
            // Kafka's ConfigAdminManager turns this ConfigException into InvalidRequestException
            // (KAFKA-13609 keeps it for compatibility), not INVALID_CONFIG.
            return Err((
                errors::INVALID_REQUEST,
                format!(
                    "Cannot update these configs dynamically: {} (set it in the config file and restart)",
                    op.name
                ),
            ));
        }
        let effective = |m: &BTreeMap<String, String>| -> String {
            if let Some(v) = m.get(def.name) {
                return v.clone();
            }
            if is_topic {
                let bdef = broker_def(def.broker);
                bdef.map(|b| broker_value(cfg, meta, b).0)
                    .unwrap_or_else(|| def.default.to_string())
            } else {
                static_value(cfg, def.name).unwrap_or_else(|| def.default.to_string())
            }
        };
        match op.op {
            0 => {
                let Some(v) = &op.value else {
                    return Err((
                        errors::INVALID_CONFIG,
                        format!("Null value for config {}", op.name),
                    ));
                };
                let v = validate(def, v).map_err(|m| (errors::INVALID_CONFIG, m))?;
                next.insert(op.name.clone(), v);
            }
            1 => {
                next.remove(&op.name);
            }
            2 | 3 => {
                if !matches!(def.kind, Kind::List(_)) {
                    return Err((
                        errors::INVALID_CONFIG,
                        format!(
                            "Config {} is not a list: APPEND/SUBTRACT are not allowed",
                            op.name
                        ),
                    ));
                }
                let mut items: Vec<String> = effective(&next)
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let given: Vec<String> = op
                    .value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if op.op == 2 {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                let v = validate(def, &items.join(",")).map_err(|m| (errors::INVALID_CONFIG, m))?;
                next.insert(op.name.clone(), v);
            }
            other => {
                return Err((
                    errors::INVALID_REQUEST,
                    format!("Unknown config operation {other}"),
                ));
            }
        }
    }
    if is_topic {
        meta.topics
            .get_mut(&a.resource_name)
            .expect("checked above")
            .configs = next;
    } else {
        meta.broker_configs = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BrokerConfig {
        BrokerConfig::load(&Default::default()).unwrap()
    }

    #[test]
    fn validation() {
        assert_eq!(
            validate_topic_config("retention.ms", " 1000 ").unwrap(),
            "1000"
        );
        assert_eq!(
            validate_topic_config("retention.ms", "abc").unwrap_err().0,
            errors::INVALID_CONFIG
        );
        assert_eq!(
            validate_topic_config("retention.ms", "-2").unwrap_err().0,
            errors::INVALID_CONFIG
        );
        assert_eq!(
            validate_topic_config("nope", "1").unwrap_err().0,
            errors::INVALID_CONFIG
        );
        assert_eq!(
            validate_topic_config("cleanup.policy", "compact, delete").unwrap(),
            "compact,delete"
        );
        assert!(validate_topic_config("cleanup.policy", "nah").is_err());
    }

    #[test]
    fn derived_defaults_are_default_config() {
        let meta = ClusterMetadata::default();
        let c = cfg();
        for name in ["advertised.listeners", "tern.shards"] {
            let (v, s, syn) = broker_value(&c, &meta, broker_def(name).unwrap());
            assert_eq!(s, source::DEFAULT_CONFIG, "{name}");
            assert!(!v.is_empty(), "{name}");
            assert_eq!(syn.len(), 1, "{name}");
        }
        let (v, _, _) = broker_value(&c, &meta, broker_def("advertised.listeners").unwrap());
        assert_eq!(v, "PLAINTEXT://127.0.0.1:9092");
        let mut c = cfg();
        c.static_props
            .insert("advertised.listeners".into(), "PLAINTEXT://h:1".into());
        let (v, s, syn) = broker_value(&c, &meta, broker_def("advertised.listeners").unwrap());
        assert_eq!(
            (v.as_str(), s),
            ("PLAINTEXT://h:1", source::STATIC_BROKER_CONFIG)
        );
        assert_eq!(syn.len(), 2);
        // Every other broker key without a file/flag/dynamic value is DEFAULT_CONFIG.
        let c = cfg();
        for def in BROKER_CONFIGS {
            let (_, s, _) = broker_value(&c, &meta, def);
            assert_eq!(s, source::DEFAULT_CONFIG, "{}", def.name);
        }
    }

    #[test]
    fn sources_and_alterations() {
        let c = cfg();
        let mut meta = ClusterMetadata::default();
        meta.topics.insert(
            "t".into(),
            TopicMeta::new(uuid::Uuid::new_v4(), 1, BTreeMap::new()),
        );
        let def = topic_def("retention.ms").unwrap();
        let (v, s, _) = topic_value(&c, &meta, &meta.topics["t"], def);
        assert_eq!((v.as_str(), s), ("604800000", source::DEFAULT_CONFIG));
        let set = |rt, name: &str, k: &str, v: Option<&str>, op| Alteration {
            resource_type: rt,
            resource_name: name.into(),
            ops: vec![ConfigOp {
                name: k.into(),
                op,
                value: v.map(String::from),
            }],
            incremental: true,
        };
        apply(
            &c,
            &mut meta,
            &set(RESOURCE_BROKER, "", "log.retention.ms", Some("5000"), 0),
        )
        .unwrap();
        let (v, s, syn) = topic_value(&c, &meta, &meta.topics["t"], def);
        assert_eq!((v.as_str(), s), ("5000", source::DYNAMIC_BROKER_CONFIG));
        assert_eq!(syn[0].0, "log.retention.ms");
        apply(
            &c,
            &mut meta,
            &set(RESOURCE_TOPIC, "t", "retention.ms", Some("100"), 0),
        )
        .unwrap();
        assert_eq!(retention(&c, &meta, &meta.topics["t"]), (100, -1));
        apply(
            &c,
            &mut meta,
            &set(RESOURCE_TOPIC, "t", "cleanup.policy", Some("compact"), 2),
        )
        .unwrap();
        assert_eq!(meta.topics["t"].configs["cleanup.policy"], "delete,compact");
        apply(
            &c,
            &mut meta,
            &set(RESOURCE_TOPIC, "t", "cleanup.policy", Some("delete"), 3),
        )
        .unwrap();
        assert_eq!(retention(&c, &meta, &meta.topics["t"]), (-1, -1));
        assert_eq!(
            apply(
                &c,
                &mut meta,
                &set(RESOURCE_BROKER, "", "num.partitions", Some("3"), 0)
            )
            .unwrap_err()
            .0,
            errors::INVALID_REQUEST
        );
        assert!(
            apply(
                &c,
                &mut meta,
                &set(RESOURCE_TOPIC, "x", "retention.ms", Some("3"), 0)
            )
            .is_err()
        );
        apply(
            &c,
            &mut meta,
            &set(RESOURCE_TOPIC, "t", "retention.ms", None, 1),
        )
        .unwrap();
        assert_eq!(topic_value(&c, &meta, &meta.topics["t"], def).0, "5000");
        assert_eq!(
            log_config(&c, &meta, &meta.topics["t"]).segment_bytes,
            1 << 30
        );
    }
}
