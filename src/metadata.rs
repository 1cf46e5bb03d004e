//! The cluster metadata: topics (name, id, partition count, configs) and the producer-id block.
//! Its source of truth is the metadata log (`cluster::driver`); a `__tern_meta/cluster.json`
//! of a node from before the log is read once, to upgrade it in place. Every shard holds a read-only `Arc<ClusterMetadata>` snapshot, replaced by message passing: the controller
//! builds a new snapshot and sends it to each shard (`ShardMessage::ApplyMetadata`); nobody ever
//! mutates a shared snapshot, so no lock is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    /// Topic id (UUID, as Kafka 2.8+ reports it).
    pub id: uuid::Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Leader epoch of each partition (index = partition id), bumped on every leadership
    /// change. A partition without an entry (a cluster.json written before epochs were kept)
    /// is at epoch 0.
    #[serde(default)]
    pub leader_epochs: Vec<i32>,
    /// Where each partition lives (index = partition id), from the metadata log in cluster
    /// mode. Empty for a standalone node, which is the only replica and the leader of every
    /// partition (its epochs are `leader_epochs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<PartitionMeta>,
}

/// One partition's replicas as the controller decided them (KRaft's PartitionRecord).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Replica broker ids, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas (a subset of `replicas`, the leader among them).
    pub isr: Vec<i32>,
    /// The leader's broker id, or `NO_LEADER` (-1).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds (KIP-455): they catch up under the
    /// replication throttle (`*.replication.throttled.rate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
}

/// A partition without a leader (Kafka's -1).
pub const NO_LEADER: i32 = -1;

/// A registered broker as clients reach it (Metadata's brokers, KIP-951 NodeEndpoints).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrokerMeta {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not listed to clients.
    pub fenced: bool,
    /// The broker epoch of its current registration (KIP-903: ISR members are checked
    /// against it); 0 when unknown.
    #[serde(default)]
    pub epoch: i64,
}

impl TopicMeta {
    /// A new topic: every partition at leader epoch 0.
    pub fn new(id: uuid::Uuid, partitions: i32, configs: BTreeMap<String, String>) -> Self {
        assert!(partitions >= 0, "partition count {partitions} is negative");
        Self {
            id,
            partitions,
            configs,
            leader_epochs: vec![0; partitions as usize],
            placement: Vec::new(),
        }
    }

    /// The placement of `partition` in cluster mode (None on a standalone node, or when out of
    /// range).
    pub fn partition_meta(&self, partition: i32) -> Option<&PartitionMeta> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.placement.get(p))
    }

    /// The leader of `partition`: `standalone_node` when the topic has no placement (a
    /// standalone node leads everything), `NO_LEADER` when the partition has none.
    pub fn leader(&self, partition: i32, standalone_node: i32) -> i32 {
        match self.partition_meta(partition) {
            Some(p) => p.leader,
            None if self.placement.is_empty() => standalone_node,
            None => NO_LEADER,
        }
    }

    pub fn has_partition(&self, partition: i32) -> bool {
        (0..self.partitions).contains(&partition)
    }

    /// The leader epoch of `partition` (which must exist).
    pub fn leader_epoch(&self, partition: i32) -> i32 {
        debug_assert!(self.has_partition(partition), "partition {partition}");
        if let Some(p) = self.partition_meta(partition) {
            return p.leader_epoch;
        }
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.leader_epochs.get(p).copied())
            .unwrap_or(0)
    }

    /// Grows the topic to `partitions` partitions, the new ones at leader epoch 0.
    #[cfg(test)]
    pub fn grow(&mut self, partitions: i32) {
        assert!(partitions >= self.partitions, "partitions only grow");
        let mut epochs: Vec<i32> = (0..partitions)
            .map(|p| {
                if p < self.partitions {
                    self.leader_epoch(p)
                } else {
                    0
                }
            })
            .collect();
        std::mem::swap(&mut self.leader_epochs, &mut epochs);
        self.partitions = partitions;
    }
}

/// Kafka's leader-epoch fencing of a request that names the epoch it believes current
/// (`requested`, -1 = not given): older than the broker's is FENCED_LEADER_EPOCH, newer is
/// UNKNOWN_LEADER_EPOCH (the broker has not caught up yet).
pub fn check_leader_epoch(current: i32, requested: i32) -> i16 {
    use crate::kafka::errors;
    if requested < 0 {
        errors::NONE
    } else if requested < current {
        errors::FENCED_LEADER_EPOCH
    } else if requested > current {
        errors::UNKNOWN_LEADER_EPOCH
    } else {
        errors::NONE
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    /// Bumped by every change; shards apply snapshots in version order.
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this value may have been handed out already.
    #[serde(default)]
    pub producer_id_block_end: i64,
    /// Dynamic broker configs (AlterConfigs / IncrementalAlterConfigs on the BROKER resource),
    /// over the static ones of the config file and flags.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, String>,
    /// Registered brokers by id (cluster mode). Empty on a standalone node: it is the only
    /// broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<i32, BrokerMeta>,
    /// The active controller's node id, -1 when unknown (standalone: this node).
    #[serde(default = "no_controller")]
    pub controller_id: i32,
    /// Offset of the last metadata-log entry this snapshot includes (0 standalone).
    #[serde(default)]
    pub metadata_offset: u64,
}

fn no_controller() -> i32 {
    -1
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        Self {
            cluster_id: String::new(),
            version: 0,
            topics: BTreeMap::new(),
            producer_id_block_end: 0,
            broker_configs: BTreeMap::new(),
            brokers: BTreeMap::new(),
            controller_id: no_controller(),
            metadata_offset: 0,
        }
    }
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<(&String, &TopicMeta)> {
        self.topics.iter().find(|(_, t)| &t.id == id)
    }

    /// True in cluster mode (brokers come from the metadata log).
    #[allow(dead_code)] // cluster mode's handlers (issue 10) are next
    pub fn is_cluster(&self) -> bool {
        !self.brokers.is_empty()
    }

    /// The unfenced brokers, in id order (what Metadata lists).
    #[allow(dead_code)] // cluster mode's handlers (issue 10) are next
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerMeta> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

/// Where the metadata file lives.
pub fn metadata_path(log_dir: &Path) -> PathBuf {
    log_dir.join("__tern_meta").join("cluster.json")
}

/// Loads the metadata (a fresh cluster with a new cluster id if there is none).
pub fn load(log_dir: &Path) -> Result<ClusterMetadata> {
    let path = metadata_path(log_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing cluster metadata {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClusterMetadata {
            cluster_id: uuid::Uuid::new_v4().simple().to_string()[..22].to_string(),
            ..Default::default()
        }),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a `cluster.json` durably (temp + fsync + rename + fsync of the directory), as nodes
/// before the metadata log did (tests of the upgrade path write one).
#[cfg(test)]
pub fn store_blocking(log_dir: &Path, meta: &ClusterMetadata) -> Result<()> {
    let path = metadata_path(log_dir);
    let dir = path.parent().expect("metadata path has a parent");
    // A new `__tern_meta` entry is made durable in its parent before the file is relied on.
    tern_storage::create_dir_all_durable(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    tern_storage::write_file_atomic_blocking(dir, name, &serde_json::to_vec_pretty(meta)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Kafka's topic name rules: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err("topic name is longer than 249 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "topic name {name:?} is illegal: only ASCII alphanumerics, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Directory of one partition: Kafka's `<topic>-<partition>`.
pub fn partition_dir(log_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn store_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("tern-meta-{}", std::process::id()));
        let mut m = load(&dir).unwrap();
        assert!(!m.cluster_id.is_empty());
        m.topics.insert(
            "t".into(),
            TopicMeta::new(uuid::Uuid::new_v4(), 3, BTreeMap::new()),
        );
        m.topics.get_mut("t").unwrap().leader_epochs[1] = 7;
        store_blocking(&dir, &m).unwrap();
        assert_eq!(load(&dir).unwrap(), m);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cluster_json_without_leader_epochs_loads_at_epoch_zero() {
        let json = r#"{"cluster_id":"c","version":3,"topics":{"t":{
            "id":"6f1f9a43-3b3e-4c52-9a8e-1c2d3e4f5a6b","partitions":2,"configs":{}}}}"#;
        let m: ClusterMetadata = serde_json::from_str(json).unwrap();
        let t = m.topic("t").unwrap();
        assert!(t.leader_epochs.is_empty());
        assert_eq!((t.leader_epoch(0), t.leader_epoch(1)), (0, 0));
        let mut t = t.clone();
        t.leader_epochs = vec![4];
        t.grow(3);
        assert_eq!(t.leader_epochs, vec![4, 0, 0]);
    }

    #[test]
    fn leader_epoch_fencing() {
        assert_eq!(check_leader_epoch(3, -1), crate::kafka::errors::NONE);
        assert_eq!(check_leader_epoch(3, 3), crate::kafka::errors::NONE);
        assert_eq!(
            check_leader_epoch(3, 2),
            crate::kafka::errors::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            check_leader_epoch(3, 4),
            crate::kafka::errors::UNKNOWN_LEADER_EPOCH
        );
    }
}
