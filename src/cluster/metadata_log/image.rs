//! The metadata image: the state that applying the metadata log in order builds (topics and
//! their partitions, broker registrations, configs, the producer-id high mark), and its
//! snapshot form, so that a restart or a lagging replica loads one image instead of replaying
//! the whole log. `apply` is deterministic and refuses a record that contradicts the image
//! (the controller never writes one; a refusal means a bug or a damaged log).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::{
    ConfigResource, MetadataRecord, NO_LEADER, PartitionChangeRecord, PartitionRecord,
    RegisterBrokerRecord,
};

/// Snapshot format this build writes.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    /// Partition index -> state; indexes are 0..n without gaps.
    pub partitions: BTreeMap<i32, PartitionImage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub elr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// KIP-455: a reassignment in progress adds these replicas (also in `replicas`)...
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    /// ... and removes these once every target replica is in the ISR.
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    /// Whether a reassignment is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment in progress moves to (the current ones otherwise).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.removing_replicas.contains(b))
            .collect()
    }

    /// The replicas before the reassignment in progress (the current ones otherwise).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.adding_replicas.contains(b))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub registration: RegisterBrokerRecord,
    pub fenced: bool,
}

/// The whole metadata state after applying the log up to `last_offset`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Log offset of the last applied entry (0 = nothing applied).
    pub last_offset: u64,
    pub cluster_id: Option<String>,
    pub topics: BTreeMap<Uuid, TopicImage>,
    pub topic_ids: BTreeMap<String, Uuid>,
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// The highest broker epoch handed out (epochs only grow, across all brokers).
    pub max_broker_epoch: i64,
    /// (resource, name) -> key -> value.
    pub configs: BTreeMap<(ConfigResource, String), BTreeMap<String, String>>,
    /// Producer ids below this are handed out.
    pub next_producer_id: i64,
}

/// Why a record does not apply to the image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("cluster id is already {0}")]
    ClusterIdSet(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("unknown topic id {0}")]
    UnknownTopic(Uuid),
    #[error("partition {1} of topic {0}: {2}")]
    BadPartition(Uuid, i32, String),
    #[error("broker {0}: {1}")]
    BadBroker(i32, String),
    #[error("producer id block going back from {0} to {1}")]
    ProducerIdsBack(i64, i64),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("empty snapshot")]
    Empty,
    #[error("snapshot format version {0} is newer than this build knows")]
    UnknownVersion(u8),
    #[error("malformed snapshot: {0}")]
    Malformed(String),
}

impl MetadataImage {
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(self.topic_ids.get(name)?)
    }

    pub fn is_unfenced(&self, broker: i32) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    /// How many partitions `broker` leads (controlled shutdown waits for none).
    pub fn leader_count(&self, broker: i32) -> usize {
        self.topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader == broker)
            .count()
    }

    /// Unfenced brokers in id order (the ones that may hold new replicas).
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Applies every record of one committed log entry at `offset`.
    pub fn apply_entry(
        &mut self,
        offset: u64,
        records: &[MetadataRecord],
    ) -> Result<(), ApplyError> {
        assert!(offset > self.last_offset, "entries apply in offset order");
        for r in records {
            self.apply(r)?;
        }
        self.last_offset = offset;
        Ok(())
    }

    /// Applies one record.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => match &self.cluster_id {
                Some(c) if c != cluster_id => return Err(ApplyError::ClusterIdSet(c.clone())),
                _ => self.cluster_id = Some(cluster_id.clone()),
            },
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(topic_id) {
                    return Err(ApplyError::TopicExists(name.clone()));
                }
                self.topic_ids.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition(p) => self.apply_partition(p)?,
            MetadataRecord::PartitionChange(c) => self.apply_partition_change(c)?,
            MetadataRecord::RemoveTopic { topic_id } => {
                let t = self
                    .topics
                    .remove(topic_id)
                    .ok_or(ApplyError::UnknownTopic(*topic_id))?;
                self.topic_ids.remove(&t.name);
                self.configs.remove(&(ConfigResource::Topic, t.name));
            }
            MetadataRecord::RegisterBroker(r) => {
                if r.broker_epoch <= self.max_broker_epoch {
                    return Err(ApplyError::BadBroker(
                        r.broker_id,
                        format!(
                            "epoch {} not above {}",
                            r.broker_epoch, self.max_broker_epoch
                        ),
                    ));
                }
                if r.fenced && self.in_any_isr(r.broker_id) {
                    return Err(ApplyError::BadBroker(
                        r.broker_id,
                        "registered fenced while in an ISR".into(),
                    ));
                }
                self.max_broker_epoch = r.broker_epoch;
                self.brokers.insert(
                    r.broker_id,
                    BrokerImage {
                        registration: r.clone(),
                        fenced: r.fenced,
                    },
                );
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                self.broker_with_epoch(*broker_id, *broker_epoch)?;
                self.brokers.remove(broker_id);
            }
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            } => {
                if self.in_any_isr(*broker_id) {
                    // Fencing comes after the ISR removals (they are earlier in the same entry).
                    return Err(ApplyError::BadBroker(
                        *broker_id,
                        "fenced while still in an ISR".into(),
                    ));
                }
                self.broker_with_epoch(*broker_id, *broker_epoch)?.fenced = true;
            }
            MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => {
                self.broker_with_epoch(*broker_id, *broker_epoch)?.fenced = false;
            }
            MetadataRecord::Config {
                resource,
                resource_name,
                name,
                value,
            } => {
                let key = (*resource, resource_name.clone());
                match value {
                    Some(v) => {
                        self.configs
                            .entry(key)
                            .or_default()
                            .insert(name.clone(), v.clone());
                    }
                    None => {
                        if let Some(m) = self.configs.get_mut(&key) {
                            m.remove(name);
                            if m.is_empty() {
                                self.configs.remove(&key);
                            }
                        }
                    }
                }
            }
            MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            } => {
                self.broker_with_epoch(*broker_id, *broker_epoch)?;
                if *next_producer_id <= self.next_producer_id {
                    return Err(ApplyError::ProducerIdsBack(
                        self.next_producer_id,
                        *next_producer_id,
                    ));
                }
                self.next_producer_id = *next_producer_id;
            }
        }
        Ok(())
    }

    fn in_any_isr(&self, broker: i32) -> bool {
        self.topics
            .values()
            .any(|t| t.partitions.values().any(|p| p.isr.contains(&broker)))
    }

    fn broker_with_epoch(&mut self, id: i32, epoch: i64) -> Result<&mut BrokerImage, ApplyError> {
        let b = self
            .brokers
            .get_mut(&id)
            .ok_or_else(|| ApplyError::BadBroker(id, "not registered".into()))?;
        if b.registration.broker_epoch != epoch {
            return Err(ApplyError::BadBroker(
                id,
                format!(
                    "stale epoch {epoch} (registered with {})",
                    b.registration.broker_epoch
                ),
            ));
        }
        Ok(b)
    }

    fn apply_partition(&mut self, p: &PartitionRecord) -> Result<(), ApplyError> {
        let bad = |why: &str| ApplyError::BadPartition(p.topic_id, p.partition, why.into());
        let t = self
            .topics
            .get_mut(&p.topic_id)
            .ok_or(ApplyError::UnknownTopic(p.topic_id))?;
        if p.partition != t.partitions.len() as i32 {
            return Err(bad("partitions are added in index order"));
        }
        check_partition(&p.replicas, &p.isr, &p.elr, p.leader).map_err(|e| bad(&e))?;
        check_reassignment(&p.replicas, &p.adding_replicas, &p.removing_replicas)
            .map_err(|e| bad(&e))?;
        t.partitions.insert(
            p.partition,
            PartitionImage {
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                elr: p.elr.clone(),
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                adding_replicas: p.adding_replicas.clone(),
                removing_replicas: p.removing_replicas.clone(),
            },
        );
        Ok(())
    }

    fn apply_partition_change(&mut self, c: &PartitionChangeRecord) -> Result<(), ApplyError> {
        let bad = |why: &str| ApplyError::BadPartition(c.topic_id, c.partition, why.into());
        let t = self
            .topics
            .get_mut(&c.topic_id)
            .ok_or(ApplyError::UnknownTopic(c.topic_id))?;
        let p = t
            .partitions
            .get_mut(&c.partition)
            .ok_or_else(|| bad("no such partition"))?;
        let replicas = c.replicas.as_ref().unwrap_or(&p.replicas);
        let isr = c.isr.as_ref().unwrap_or(&p.isr);
        let elr = c.elr.as_ref().unwrap_or(&p.elr);
        let leader = c.leader.unwrap_or(p.leader);
        let adding = c.adding_replicas.as_ref().unwrap_or(&p.adding_replicas);
        let removing = c.removing_replicas.as_ref().unwrap_or(&p.removing_replicas);
        check_partition(replicas, isr, elr, leader).map_err(|e| bad(&e))?;
        check_reassignment(replicas, adding, removing).map_err(|e| bad(&e))?;
        if leader != p.leader {
            p.leader_epoch += 1;
        }
        p.replicas = replicas.clone();
        p.isr = isr.clone();
        p.elr = elr.clone();
        p.leader = leader;
        p.adding_replicas = adding.clone();
        p.removing_replicas = removing.clone();
        p.partition_epoch += 1;
        Ok(())
    }

    /// The snapshot of this image: `[format version][serde_json image]`.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_FORMAT_VERSION];
        serde_json::to_writer(&mut out, &SnapshotBody::from(self)).expect("image serialises");
        out
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnknownVersion(version));
        }
        let body: SnapshotBody =
            serde_json::from_slice(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        Ok(body.into())
    }
}

/// The image in serialisable form (JSON maps need string keys: configs become a list).
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_offset: u64,
    cluster_id: Option<String>,
    topics: Vec<TopicImage>,
    brokers: Vec<BrokerImage>,
    max_broker_epoch: i64,
    configs: Vec<(ConfigResource, String, BTreeMap<String, String>)>,
    next_producer_id: i64,
}

impl From<&MetadataImage> for SnapshotBody {
    fn from(i: &MetadataImage) -> Self {
        Self {
            last_offset: i.last_offset,
            cluster_id: i.cluster_id.clone(),
            topics: i.topics.values().cloned().collect(),
            brokers: i.brokers.values().cloned().collect(),
            max_broker_epoch: i.max_broker_epoch,
            configs: i
                .configs
                .iter()
                .map(|((r, n), m)| (*r, n.clone(), m.clone()))
                .collect(),
            next_producer_id: i.next_producer_id,
        }
    }
}

impl From<SnapshotBody> for MetadataImage {
    fn from(b: SnapshotBody) -> Self {
        Self {
            last_offset: b.last_offset,
            cluster_id: b.cluster_id,
            topic_ids: b.topics.iter().map(|t| (t.name.clone(), t.id)).collect(),
            topics: b.topics.into_iter().map(|t| (t.id, t)).collect(),
            brokers: b
                .brokers
                .into_iter()
                .map(|x| (x.registration.broker_id, x))
                .collect(),
            max_broker_epoch: b.max_broker_epoch,
            configs: b.configs.into_iter().map(|(r, n, m)| ((r, n), m)).collect(),
            next_producer_id: b.next_producer_id,
        }
    }
}

/// A reassignment's invariants: adding and removing replicas are disjoint subsets of the
/// replicas, and the target (replicas without the removing ones) is not empty.
fn check_reassignment(replicas: &[i32], adding: &[i32], removing: &[i32]) -> Result<(), String> {
    if let Some(x) = adding
        .iter()
        .chain(removing)
        .find(|b| !replicas.contains(b))
    {
        return Err(format!("adding/removing replica {x} is not a replica"));
    }
    if let Some(x) = adding.iter().find(|b| removing.contains(b)) {
        return Err(format!("{x} is both added and removed"));
    }
    if replicas.iter().all(|b| removing.contains(b)) {
        return Err("a reassignment removes every replica".into());
    }
    Ok(())
}

/// The partition invariants every record must keep: distinct replicas, ISR and ELR disjoint
/// subsets of the replicas, a leader (if any) in the ISR.
fn check_partition(replicas: &[i32], isr: &[i32], elr: &[i32], leader: i32) -> Result<(), String> {
    if replicas.is_empty() {
        return Err("no replicas".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    if !replicas.iter().all(|r| seen.insert(*r)) {
        return Err(format!("duplicate replica in {replicas:?}"));
    }
    if let Some(x) = isr.iter().chain(elr).find(|b| !replicas.contains(b)) {
        return Err(format!("ISR/ELR member {x} is not a replica"));
    }
    if let Some(x) = isr.iter().find(|b| elr.contains(b)) {
        return Err(format!("{x} is in both ISR and ELR"));
    }
    if leader != NO_LEADER && !isr.contains(&leader) {
        return Err(format!("leader {leader} is not in the ISR {isr:?}"));
    }
    Ok(())
}
