//! Broker configuration: Kafka's `server.properties` names, an optional file, command-line flags
//! that override it, defaults that work out of the box (port 9092, data in `./data`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

/// Flags of `tern serve`; each overrides the same-named key of the config file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// A Kafka-style server.properties file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// listeners, e.g. PLAINTEXT://0.0.0.0:9092
    #[arg(long)]
    pub listeners: Option<String>,
    /// advertised.listeners, e.g. PLAINTEXT://broker1.example:9092
    #[arg(long)]
    pub advertised_listeners: Option<String>,
    /// log.dirs (one directory)
    #[arg(long)]
    pub log_dirs: Option<String>,
    /// Number of shards (one glommio executor per core); default: one per CPU.
    #[arg(long)]
    pub shards: Option<usize>,
    /// num.partitions for auto-created topics and CreateTopics with -1.
    #[arg(long)]
    pub num_partitions: Option<String>,
    /// auto.create.topics.enable
    #[arg(long)]
    pub auto_create_topics_enable: Option<String>,
    /// log.segment.bytes
    #[arg(long)]
    pub log_segment_bytes: Option<String>,
    /// log.roll.ms
    #[arg(long)]
    pub log_roll_ms: Option<String>,
    /// message.max.bytes
    #[arg(long)]
    pub message_max_bytes: Option<String>,
    /// socket.request.max.bytes
    #[arg(long)]
    pub socket_request_max_bytes: Option<String>,
    /// Per-shard memory budget (bytes) for the hot tail served to consumers without disk reads.
    #[arg(long)]
    pub tail_cache_bytes: Option<String>,
    /// tern.max.decompressed.batch.bytes: most bytes one compressed batch may decompress to.
    #[arg(long)]
    pub max_decompressed_batch_bytes: Option<String>,
    /// tern.fetch.readahead.bytes: cold fetches have the kernel read this far beyond them (0 = off).
    #[arg(long)]
    pub fetch_readahead_bytes: Option<String>,
    /// tern.fetch.readahead.inflight.bytes: per-shard bound on readahead bytes the disk has yet to read (0 = none).
    #[arg(long)]
    pub fetch_readahead_inflight_bytes: Option<String>,
    /// tern.fetch.cold.read.bytes.per.sec: per-shard bandwidth bound on fetches from segment files (0 = none).
    #[arg(long)]
    pub fetch_cold_read_bytes_per_sec: Option<String>,
    /// tern.fetch.cold.inflight.bytes: per-shard bound on the bytes of cold sends in flight (0 = none).
    #[arg(long)]
    pub fetch_cold_inflight_bytes: Option<String>,
    /// Spin this many microseconds before parking an idle shard (lower cross-core latency, more CPU).
    #[arg(long)]
    pub spin_before_park_us: Option<u64>,
    /// Run the shards (and the broker's other threads) on these CPUs only, e.g. `0` or `0-1`;
    /// shard i goes to the i-th CPU of the list (round robin). Default: shard i on CPU i.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// group.initial.rebalance.delay.ms: how long a new (empty) classic group waits for more members.
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<String>,
    /// offsets.retention.minutes: committed offsets of an empty group expire after this.
    #[arg(long)]
    pub offsets_retention_minutes: Option<String>,
    /// log.retention.ms: default time retention of topics (-1 = keep forever).
    #[arg(long)]
    pub log_retention_ms: Option<String>,
    /// log.retention.bytes: default size retention per partition (-1 = unlimited).
    #[arg(long)]
    pub log_retention_bytes: Option<String>,
    /// log.retention.check.interval.ms: how often each shard enforces retention.
    #[arg(long)]
    pub log_retention_check_interval_ms: Option<String>,
    /// tern.metrics.listener: host:port of the Prometheus endpoint (GET /metrics), or "none".
    #[arg(long)]
    pub metrics_listener: Option<String>,
    /// node.id (required in cluster mode; default 0 standalone).
    #[arg(long)]
    pub node_id: Option<String>,
    /// process.roles: broker, controller or broker,controller (sets cluster mode).
    #[arg(long)]
    pub process_roles: Option<String>,
    /// controller.quorum.voters, e.g. 1@host1:9093,2@host2:9093,3@host3:9093
    #[arg(long)]
    pub controller_quorum_voters: Option<String>,
    /// controller.listener.names, e.g. CONTROLLER
    #[arg(long)]
    pub controller_listener_names: Option<String>,
    /// inter.broker.listener.name (default PLAINTEXT)
    #[arg(long)]
    pub inter_broker_listener_name: Option<String>,
    /// listener.security.protocol.map, e.g. PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
    #[arg(long)]
    pub listener_security_protocol_map: Option<String>,
    /// broker.rack: this broker's rack (replicas of a partition go to different racks).
    #[arg(long)]
    pub broker_rack: Option<String>,
    /// default.replication.factor for CreateTopics with -1 and auto-created topics.
    #[arg(long)]
    pub default_replication_factor: Option<String>,
    /// offsets.topic.replication.factor (capped at the number of brokers).
    #[arg(long)]
    pub offsets_topic_replication_factor: Option<String>,
    /// broker.heartbeat.interval.ms
    #[arg(long)]
    pub broker_heartbeat_interval_ms: Option<String>,
    /// broker.session.timeout.ms: a broker silent this long is fenced.
    #[arg(long)]
    pub broker_session_timeout_ms: Option<String>,
    /// controller.quorum.election.timeout.ms
    #[arg(long)]
    pub controller_quorum_election_timeout_ms: Option<String>,
    /// controller.quorum.fetch.timeout.ms
    #[arg(long)]
    pub controller_quorum_fetch_timeout_ms: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
#[allow(dead_code)] // some values are validated here and read through `configs` (static_props)
pub struct BrokerConfig {
    pub node_id: i32,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub log_dir: PathBuf,
    pub shards: usize,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    pub segment_bytes: u64,
    pub roll_ms: u64,
    pub message_max_bytes: usize,
    pub socket_request_max_bytes: usize,
    pub tail_cache_bytes: usize,
    /// tern.max.decompressed.batch.bytes: the records of one compressed batch may decompress to
    /// at most this many bytes when they are validated (INVALID_RECORD beyond).
    pub max_decompressed_batch_bytes: usize,
    /// tern.fetch.readahead.bytes: bytes beyond a cold fetch's range the kernel is asked to read
    /// into the page cache ahead of the consumer (storage's `readahead.rs`); 0 = off.
    pub fetch_readahead_bytes: u64,
    /// tern.fetch.readahead.inflight.bytes: per-shard bound on readahead bytes asked of the
    /// disk and not yet read (storage's `readahead.rs`); keeps replays from filling the device
    /// queue ahead of producers' writes. 0 = unbounded.
    pub fetch_readahead_inflight_bytes: u64,
    /// tern.fetch.cold.read.bytes.per.sec: per-shard bound on the bytes/s fetches read from
    /// segment files (storage's `cold_budget.rs`); 0 = unbounded.
    pub fetch_cold_read_bytes_per_sec: u64,
    /// tern.fetch.cold.inflight.bytes: per-shard bound on the segment-file bytes of fetch
    /// responses being sent by `sendfile` on the blocking pool at once (a response over it
    /// takes the whole bound and goes alone); responses from memory never wait. 0 = unbounded.
    pub fetch_cold_inflight_bytes: u64,
    /// max.request.partition.size.limit: most partitions in one DescribeTopicPartitions
    /// response (Kafka's default 2000).
    pub max_request_partition_size_limit: i32,
    pub spin_before_park_us: Option<u64>,
    /// `--cpus`: CPUs the broker runs on (None: shard i on CPU i).
    pub cpus: Option<Vec<usize>>,
    /// Consumer-group coordinator settings (`group.*`, `offsets.*`).
    pub groups: crate::coordinators::groups::GroupConfig,
    /// log.retention.ms (from .ms, .minutes or .hours; -1 = forever).
    pub retention_ms: i64,
    /// log.retention.bytes (-1 = unlimited).
    pub retention_bytes: i64,
    pub retention_check_interval_ms: u64,
    /// Where the Prometheus endpoint listens (None = disabled).
    pub metrics_listener: Option<SocketAddr>,
    /// tern.metrics.request.queue.enable: measure `tern_request_queue_seconds` (one
    /// `recvmsg(MSG_PEEK)` per request; default true).
    pub request_queue_metric: bool,
    /// Disk full: the free-space floor of the log dir and how often each shard checks it
    /// (`tern.log.dir.*`, see `disk_space.rs`).
    pub disk_space: crate::ops::disk_space::FreeSpaceConfig,
    /// Every key set in the config file or by a flag (for DescribeConfigs' STATIC_BROKER_CONFIG).
    pub static_props: BTreeMap<String, String>,
    /// The KRaft settings (standalone when none is given).
    pub cluster: crate::cluster::config::ClusterConfig,
    // --- Replication durability (issue 11, docs/cluster.md "Durability settings") ---
    /// tern.replication.ack.durability: what a replica of a replicated partition has done with
    /// a record before it counts towards the high watermark (`synced`, the default, or
    /// `written`).
    pub replication_ack_durability: crate::cluster::replication::AckDurability,
    /// replica.high.watermark.checkpoint.interval.ms: how often each log dir's
    /// `replication-offset-checkpoint` is rewritten (Kafka's default 5000).
    pub hw_checkpoint_interval_ms: u64,
    /// replica.selector.class: KIP-392 follower fetching (none = consumers read from the
    /// leader; Kafka's `RackAwareReplicaSelector`).
    pub replica_selector: crate::cluster::replication::read_replica::ReplicaSelector,
    /// tern.controlled.shutdown.linger.ms: how long a broker keeps serving its clients after a
    /// controlled shutdown moved its leaderships away, so an active producer's next request is
    /// answered NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951) on a live connection
    /// (broker.rs, phase 0 of the shutdown).
    pub controlled_shutdown_linger_ms: u64,
}

/// Default of `tern.fetch.cold.inflight.bytes` (per shard).
const DEFAULT_COLD_INFLIGHT_BYTES: &str = "4194304";

/// Keys this broker understands (everything else is warned about).
const KNOWN_KEYS: &[&str] = &[
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "auto.create.topics.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "message.max.bytes",
    "socket.request.max.bytes",
    "node.id",
    "broker.id",
    "tern.shards",
    "tern.tail.cache.bytes",
    "tern.max.decompressed.batch.bytes",
    "tern.fetch.readahead.bytes",
    "tern.fetch.readahead.inflight.bytes",
    "tern.fetch.cold.read.bytes.per.sec",
    "tern.fetch.cold.inflight.bytes",
    "max.request.partition.size.limit",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.session.timeout.ms",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offsets.topic.num.partitions",
    "offsets.commit.timeout.ms",
    "offsets.topic.segment.bytes",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "tern.metrics.listener",
    "tern.metrics.request.queue.enable",
    "log.cleanup.policy",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "compression.type",
    "log.index.interval.bytes",
    "log.message.timestamp.type",
    "min.insync.replicas",
    "default.replication.factor",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.cleaner.delete.retention.ms",
    "log.segment.delete.delay.ms",
    "log.preallocate",
    "unclean.leader.election.enable",
    "replica.lag.time.max.ms",
    // Disk full (see `disk_space.rs`).
    "tern.log.dir.min.free.bytes",
    "tern.log.dir.min.free.percent",
    "tern.log.dir.free.space.check.interval.ms",
    // Replication durability (issue 11)
    "tern.replication.ack.durability",
    "replica.high.watermark.checkpoint.interval.ms",
    "tern.controlled.shutdown.linger.ms",
    // Follower fetching (KIP-392, cluster/replication/read_replica.rs).
    "replica.selector.class",
    // Leadership (cluster/controller/leadership.rs).
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "leader.imbalance.per.broker.percentage",
];

/// Parses `key=value` lines (`#`/`!` comments, blank lines, `key: value` also accepted).
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let idx = line
            .find(['=', ':'])
            .ok_or_else(|| anyhow!("line {}: expected key=value, got {:?}", n + 1, line))?;
        let key = line[..idx].trim().to_string();
        let value = line[idx + 1..].trim().to_string();
        if key.is_empty() {
            bail!("line {}: empty key", n + 1);
        }
        out.insert(key, value);
    }
    Ok(out)
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.trim()
        .parse::<T>()
        .map_err(|_| anyhow!("invalid value for {key}: {v:?} is not a valid number"))
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("invalid value for {key}: {v:?} (expected true or false)"),
    }
}

/// Parses the first listener of a Kafka listener list, e.g. `PLAINTEXT://0.0.0.0:9092`.
pub fn parse_listener(key: &str, v: &str) -> Result<(String, u16)> {
    let first = v.split(',').next().unwrap_or("").trim();
    let rest = match first.split_once("://") {
        Some((proto, rest)) => {
            if !proto.eq_ignore_ascii_case("PLAINTEXT") {
                bail!(
                    "invalid value for {key}: only PLAINTEXT listeners are supported, got {proto}"
                );
            }
            rest
        }
        None => first,
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
        anyhow!("invalid value for {key}: {v:?} (expected PLAINTEXT://host:port)")
    })?;
    let port: u16 = parse_num(key, port)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, port))
}

impl BrokerConfig {
    /// Resolves file + flags into a configuration; every invalid value is an error naming its key.
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let mut props = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                parse_properties(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => BTreeMap::new(),
        };
        for (key, value) in &props {
            if !KNOWN_KEYS.contains(&key.as_str())
                && !crate::cluster::config::CLUSTER_KEYS.contains(&key.as_str())
                && crate::ops::configs::cleaner_def(key).is_none()
            {
                log::warn!("config: unknown key {key:?} is ignored");
            }
            if let Some(def) = crate::ops::configs::cleaner_def(key) {
                crate::ops::configs::validate(def, value).map_err(|m| anyhow!("{m}"))?;
            }
        }
        let flags: [(&str, &Option<String>); 21] = [
            ("log.retention.ms", &args.log_retention_ms),
            ("log.retention.bytes", &args.log_retention_bytes),
            (
                "log.retention.check.interval.ms",
                &args.log_retention_check_interval_ms,
            ),
            ("tern.metrics.listener", &args.metrics_listener),
            ("listeners", &args.listeners),
            ("advertised.listeners", &args.advertised_listeners),
            ("log.dirs", &args.log_dirs),
            ("num.partitions", &args.num_partitions),
            ("auto.create.topics.enable", &args.auto_create_topics_enable),
            ("log.segment.bytes", &args.log_segment_bytes),
            ("log.roll.ms", &args.log_roll_ms),
            ("message.max.bytes", &args.message_max_bytes),
            ("socket.request.max.bytes", &args.socket_request_max_bytes),
            ("tern.tail.cache.bytes", &args.tail_cache_bytes),
            (
                "tern.max.decompressed.batch.bytes",
                &args.max_decompressed_batch_bytes,
            ),
            ("tern.fetch.readahead.bytes", &args.fetch_readahead_bytes),
            (
                "tern.fetch.readahead.inflight.bytes",
                &args.fetch_readahead_inflight_bytes,
            ),
            (
                "tern.fetch.cold.read.bytes.per.sec",
                &args.fetch_cold_read_bytes_per_sec,
            ),
            (
                "tern.fetch.cold.inflight.bytes",
                &args.fetch_cold_inflight_bytes,
            ),
            (
                "group.initial.rebalance.delay.ms",
                &args.group_initial_rebalance_delay_ms,
            ),
            ("offsets.retention.minutes", &args.offsets_retention_minutes),
        ];
        let cluster_flags: [(&str, &Option<String>); 13] = [
            ("node.id", &args.node_id),
            ("process.roles", &args.process_roles),
            ("controller.quorum.voters", &args.controller_quorum_voters),
            ("controller.listener.names", &args.controller_listener_names),
            (
                "inter.broker.listener.name",
                &args.inter_broker_listener_name,
            ),
            (
                "listener.security.protocol.map",
                &args.listener_security_protocol_map,
            ),
            ("broker.rack", &args.broker_rack),
            (
                "default.replication.factor",
                &args.default_replication_factor,
            ),
            (
                "offsets.topic.replication.factor",
                &args.offsets_topic_replication_factor,
            ),
            (
                "broker.heartbeat.interval.ms",
                &args.broker_heartbeat_interval_ms,
            ),
            ("broker.session.timeout.ms", &args.broker_session_timeout_ms),
            (
                "controller.quorum.election.timeout.ms",
                &args.controller_quorum_election_timeout_ms,
            ),
            (
                "controller.quorum.fetch.timeout.ms",
                &args.controller_quorum_fetch_timeout_ms,
            ),
        ];
        for (k, v) in flags.into_iter().chain(cluster_flags) {
            if let Some(v) = v {
                props.insert(k.to_string(), v.clone());
            }
        }
        let get = |k: &str| props.get(k).map(String::as_str);

        let cluster =
            crate::cluster::config::ClusterConfig::from_props(get, "PLAINTEXT://0.0.0.0:9092")?;
        // Standalone keeps the historical single-listener parsing; in cluster mode the listener
        // is the broker listener (or, on a controller-only node, the controller listener).
        let (listen_host, listen_port) = match cluster
            .broker_listener()
            .or_else(|| cluster.controller_listener())
        {
            Some(l) if !cluster.standalone => (l.host.clone(), l.port),
            _ => parse_listener(
                "listeners",
                get("listeners").unwrap_or("PLAINTEXT://0.0.0.0:9092"),
            )?,
        };
        let listen_ip: std::net::IpAddr = if listen_host.is_empty() {
            "0.0.0.0".parse().expect("literal")
        } else {
            match listen_host.parse() {
                Ok(ip) => ip,
                Err(_) if listen_host == "localhost" => "127.0.0.1".parse().expect("literal"),
                Err(_) => {
                    bail!("invalid value for listeners: host {listen_host:?} must be an IP address")
                }
            }
        };
        let listen = SocketAddr::new(listen_ip, listen_port);
        let default_advertised = if listen_ip.is_unspecified() {
            ("127.0.0.1".to_string(), listen_port)
        } else {
            (listen_ip.to_string(), listen_port)
        };
        let (advertised_host, advertised_port) = match get("advertised.listeners") {
            // In cluster mode advertised.listeners may list several names: take the broker's.
            Some(v) if !cluster.standalone => {
                let broker = cluster.broker_listener().map(|l| l.name.clone());
                crate::cluster::config::parse_listeners("advertised.listeners", v)?
                    .into_iter()
                    .find(|l| Some(&l.name) == broker.as_ref())
                    .map(|l| (l.host, l.port))
                    .unwrap_or(default_advertised)
            }
            Some(v) => parse_listener("advertised.listeners", v)?,
            None => default_advertised,
        };
        let log_dir = PathBuf::from(get("log.dirs").or(get("log.dir")).unwrap_or("./data"));
        if log_dir.as_os_str().is_empty() || get("log.dirs").is_some_and(|v| v.contains(',')) {
            bail!("invalid value for log.dirs: exactly one directory is supported");
        }
        // Absolute, so that every later open (glommio's Directory::open included) and the
        // start-up line see the same path whatever the working directory.
        let log_dir = std::path::absolute(&log_dir).unwrap_or(log_dir);
        let shards = match (args.shards, get("tern.shards")) {
            (Some(n), _) => n,
            (None, Some(v)) => parse_num("tern.shards", v)?,
            (None, None) => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        if shards == 0 || shards > 256 {
            bail!("invalid value for shards: {shards} (1..=256)");
        }
        let num_partitions: i32 =
            parse_num("num.partitions", get("num.partitions").unwrap_or("1"))?;
        if num_partitions < 1 {
            bail!("invalid value for num.partitions: {num_partitions} (must be >= 1)");
        }
        let auto_create_topics = parse_bool(
            "auto.create.topics.enable",
            get("auto.create.topics.enable").unwrap_or("true"),
        )?;
        let segment_bytes: u64 = parse_num(
            "log.segment.bytes",
            get("log.segment.bytes").unwrap_or("1073741824"),
        )?;
        if segment_bytes < 1024 || segment_bytes > u32::MAX as u64 {
            bail!("invalid value for log.segment.bytes: {segment_bytes} (1024..=4294967295)");
        }
        let roll_ms: u64 = match (get("log.roll.ms"), get("log.roll.hours")) {
            (Some(v), _) => parse_num("log.roll.ms", v)?,
            (None, Some(h)) => parse_num::<u64>("log.roll.hours", h)?.saturating_mul(3_600_000),
            (None, None) => 7 * 24 * 3_600_000,
        };
        if roll_ms == 0 {
            bail!("invalid value for log.roll.ms: must be > 0");
        }
        let message_max_bytes: usize = parse_num(
            "message.max.bytes",
            get("message.max.bytes").unwrap_or("1048588"),
        )?;
        if message_max_bytes < 64 {
            bail!("invalid value for message.max.bytes: {message_max_bytes} (must be >= 64)");
        }
        let socket_request_max_bytes: usize = parse_num(
            "socket.request.max.bytes",
            get("socket.request.max.bytes").unwrap_or("104857600"),
        )?;
        if socket_request_max_bytes < 1024 || socket_request_max_bytes > i32::MAX as usize {
            bail!("invalid value for socket.request.max.bytes: {socket_request_max_bytes}");
        }
        let tail_cache_bytes: usize = parse_num(
            "tern.tail.cache.bytes",
            get("tern.tail.cache.bytes").unwrap_or("134217728"),
        )?;
        let max_decompressed_batch_bytes: usize = match get("tern.max.decompressed.batch.bytes") {
            Some(v) => parse_num("tern.max.decompressed.batch.bytes", v)?,
            None => tern_storage::DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
        };
        if max_decompressed_batch_bytes < 1024 {
            bail!(
                "invalid value for tern.max.decompressed.batch.bytes: \
                 {max_decompressed_batch_bytes} (must be >= 1024)"
            );
        }
        let fetch_readahead_bytes: u64 = match get("tern.fetch.readahead.bytes") {
            Some(v) => parse_num("tern.fetch.readahead.bytes", v)?,
            None => tern_storage::DEFAULT_READAHEAD_BYTES,
        };
        if fetch_readahead_bytes > 1 << 30 {
            bail!(
                "invalid value for tern.fetch.readahead.bytes: {fetch_readahead_bytes} \
                 (at most 1073741824)"
            );
        }
        let fetch_readahead_inflight_bytes: u64 = match get("tern.fetch.readahead.inflight.bytes") {
            Some(v) => parse_num("tern.fetch.readahead.inflight.bytes", v)?,
            None => tern_storage::DEFAULT_READAHEAD_INFLIGHT_BYTES,
        };
        let fetch_cold_read_bytes_per_sec: u64 = parse_num(
            "tern.fetch.cold.read.bytes.per.sec",
            get("tern.fetch.cold.read.bytes.per.sec").unwrap_or("0"),
        )?;
        let fetch_cold_inflight_bytes: u64 = parse_num(
            "tern.fetch.cold.inflight.bytes",
            get("tern.fetch.cold.inflight.bytes").unwrap_or(DEFAULT_COLD_INFLIGHT_BYTES),
        )?;
        let max_request_partition_size_limit: i32 = parse_num(
            "max.request.partition.size.limit",
            get("max.request.partition.size.limit").unwrap_or("2000"),
        )?;
        if max_request_partition_size_limit < 1 {
            bail!(
                "invalid value for max.request.partition.size.limit: \
                 {max_request_partition_size_limit} (must be >= 1)"
            );
        }
        let node_id = cluster.node_id;
        let groups = crate::coordinators::groups::GroupConfig::from_props(|k| get(k))?;
        let retention_ms: i64 = match (
            get("log.retention.ms"),
            get("log.retention.minutes"),
            get("log.retention.hours"),
        ) {
            (Some(v), _, _) => parse_num("log.retention.ms", v)?,
            (None, Some(m), _) => {
                parse_num::<i64>("log.retention.minutes", m)?.saturating_mul(60_000)
            }
            (None, None, Some(h)) => {
                parse_num::<i64>("log.retention.hours", h)?.saturating_mul(3_600_000)
            }
            (None, None, None) => 168 * 3_600_000,
        };
        if retention_ms < -1 {
            bail!("invalid value for log.retention.ms: {retention_ms} (-1 or >= 0)");
        }
        let retention_bytes: i64 = parse_num(
            "log.retention.bytes",
            get("log.retention.bytes").unwrap_or("-1"),
        )?;
        if retention_bytes < -1 {
            bail!("invalid value for log.retention.bytes: {retention_bytes} (-1 or >= 0)");
        }
        let retention_check_interval_ms: u64 = parse_num(
            "log.retention.check.interval.ms",
            get("log.retention.check.interval.ms").unwrap_or("300000"),
        )?;
        if retention_check_interval_ms == 0 {
            bail!("invalid value for log.retention.check.interval.ms: must be >= 1");
        }
        let disk_space = crate::ops::disk_space::FreeSpaceConfig {
            min_free_bytes: parse_num(
                "tern.log.dir.min.free.bytes",
                get("tern.log.dir.min.free.bytes").unwrap_or("1073741824"),
            )?,
            min_free_percent: parse_num(
                "tern.log.dir.min.free.percent",
                get("tern.log.dir.min.free.percent").unwrap_or("0"),
            )?,
            check_interval_ms: parse_num(
                "tern.log.dir.free.space.check.interval.ms",
                get("tern.log.dir.free.space.check.interval.ms").unwrap_or("1000"),
            )?,
        };
        if !(0.0..=100.0).contains(&disk_space.min_free_percent) {
            bail!(
                "invalid value for tern.log.dir.min.free.percent: {} (0 to 100)",
                disk_space.min_free_percent
            );
        }
        if disk_space.check_interval_ms == 0 {
            bail!("invalid value for tern.log.dir.free.space.check.interval.ms: must be >= 1");
        }
        let metrics_listener = match get("tern.metrics.listener")
            .unwrap_or("0.0.0.0:9644")
            .trim()
        {
            "" | "none" | "off" => None,
            v => {
                let v = v.strip_prefix("http://").unwrap_or(v);
                Some(v.parse::<SocketAddr>().map_err(|_| {
                    anyhow!(
                        "invalid value for tern.metrics.listener: {v:?} (expected ip:port or none)"
                    )
                })?)
            }
        };
        let request_queue_metric = parse_bool(
            "tern.metrics.request.queue.enable",
            get("tern.metrics.request.queue.enable").unwrap_or("true"),
        )?;
        // Replication durability (issue 11).
        let replication_ack_durability = crate::cluster::replication::AckDurability::parse(
            get("tern.replication.ack.durability").unwrap_or("synced"),
        )
        .ok_or_else(|| {
            anyhow!(
                "invalid value for tern.replication.ack.durability: {:?} (expected synced or written)",
                get("tern.replication.ack.durability").unwrap_or_default()
            )
        })?;
        let hw_checkpoint_interval_ms: u64 = parse_num(
            "replica.high.watermark.checkpoint.interval.ms",
            get("replica.high.watermark.checkpoint.interval.ms").unwrap_or("5000"),
        )?;
        if hw_checkpoint_interval_ms == 0 {
            bail!("invalid value for replica.high.watermark.checkpoint.interval.ms: must be >= 1");
        }
        let replica_selector = crate::cluster::replication::read_replica::ReplicaSelector::parse(
            get("replica.selector.class").unwrap_or(""),
        )
        .ok_or_else(|| {
            anyhow!(
                "invalid value for replica.selector.class: {:?} (expected none or {})",
                get("replica.selector.class").unwrap_or_default(),
                crate::cluster::replication::read_replica::RACK_AWARE_SELECTOR
            )
        })?;
        let controlled_shutdown_linger_ms: u64 = parse_num(
            "tern.controlled.shutdown.linger.ms",
            get("tern.controlled.shutdown.linger.ms").unwrap_or("100"),
        )?;
        if controlled_shutdown_linger_ms > 10_000 {
            bail!("invalid value for tern.controlled.shutdown.linger.ms: at most 10000");
        }
        let mut static_props = props.clone();
        if let Some(n) = args.shards {
            static_props.insert("tern.shards".into(), n.to_string());
        }
        Ok(Self {
            node_id,
            listen,
            advertised_host,
            advertised_port,
            log_dir,
            shards,
            num_partitions,
            auto_create_topics,
            segment_bytes,
            roll_ms,
            message_max_bytes,
            socket_request_max_bytes,
            tail_cache_bytes,
            max_decompressed_batch_bytes,
            fetch_readahead_bytes,
            fetch_readahead_inflight_bytes,
            fetch_cold_read_bytes_per_sec,
            fetch_cold_inflight_bytes,
            max_request_partition_size_limit,
            spin_before_park_us: args.spin_before_park_us,
            cpus: args.cpus.as_ref().map(|c| c.0.clone()),
            groups,
            retention_ms,
            retention_bytes,
            retention_check_interval_ms,
            metrics_listener,
            request_queue_metric,
            disk_space,
            static_props,
            cluster,
            replication_ack_durability,
            hw_checkpoint_interval_ms,
            replica_selector,
            controlled_shutdown_linger_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_and_flags_override() {
        let dir = std::env::temp_dir().join(format!("tern-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.properties");
        std::fs::write(
            &file,
            "# c\nnum.partitions=3\nlisteners=PLAINTEXT://127.0.0.1:19092\nfoo.bar=1\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            num_partitions: Some("5".into()),
            ..Default::default()
        };
        let c = BrokerConfig::load(&args).unwrap();
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.advertised_host, "127.0.0.1");

        std::fs::write(&file, "num.partitions=abc\n").unwrap();
        let err = BrokerConfig::load(&ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("num.partitions"), "{err}");
    }

    #[test]
    fn decompression_limit_is_a_setting_that_reaches_the_log_config() {
        let c = BrokerConfig::load(&ServeArgs::default()).unwrap();
        assert_eq!(
            c.max_decompressed_batch_bytes,
            tern_storage::DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES
        );
        let args = ServeArgs {
            max_decompressed_batch_bytes: Some("1048576".into()),
            ..Default::default()
        };
        let c = BrokerConfig::load(&args).unwrap();
        assert_eq!(c.max_decompressed_batch_bytes, 1 << 20);
        let meta = crate::metadata::ClusterMetadata::default();
        let topic = crate::metadata::TopicMeta::new(uuid::Uuid::nil(), 1, Default::default());
        let log = crate::ops::configs::log_config(&c, &meta, &topic);
        assert_eq!(log.max_decompressed_batch_bytes, 1 << 20);
        let too_small = ServeArgs {
            max_decompressed_batch_bytes: Some("10".into()),
            ..Default::default()
        };
        let err = BrokerConfig::load(&too_small).unwrap_err().to_string();
        assert!(err.contains("tern.max.decompressed.batch.bytes"), "{err}");
    }

    #[test]
    fn listener_forms() {
        assert_eq!(
            parse_listener("l", "PLAINTEXT://0.0.0.0:9092").unwrap(),
            ("0.0.0.0".into(), 9092)
        );
        assert_eq!(
            parse_listener("l", "localhost:1").unwrap(),
            ("localhost".into(), 1)
        );
        assert!(parse_listener("l", "SSL://x:1").is_err());
        assert!(parse_listener("l", "PLAINTEXT://x").is_err());
    }
}

/// `--cpus` as parsed (a newtype so clap takes the whole list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(s: &str) -> std::result::Result<CpuList, String> {
    tern_shard::executor::parse_cpu_list(s).map(CpuList)
}
