//! The shard-local partition manager: the `PartitionLog`s this shard owns, keyed by topic name
//! and partition. Only this shard's thread touches them. `reconcile` brings the set in line with
//! a metadata snapshot (opens new partitions, removes deleted topics' logs from disk).
//!
//! In cluster mode a broker hosts only the partitions with a replica on it (`hosted_here`). A
//! partition whose replica on this broker a reassignment removed (KIP-455) is deleted, as
//! Kafka's StopReplica with delete does: the committed metadata says the data lives elsewhere.
//! A directory of a partition this broker did not host when it started is never opened or
//! touched.

use std::cell::RefCell;
use std::collections::HashMap;

/// Looked up for every partition of every produce/fetch: ahash is fast, and its random
/// per-process seed keeps crafted topic names from forcing collisions.
type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;
use std::rc::Rc;

use anyhow::{Context, Result};
use futures::StreamExt;
use tern_shard::{ShardId, partition_shard};
use tern_storage::{LogConfig, PartitionLog, TailCache};

use crate::config::BrokerConfig;

/// New partitions opened at once by `reconcile`.
const OPEN_CONCURRENCY: usize = 64;
use crate::metadata::{ClusterMetadata, TopicMeta, partition_dir};

struct TopicPartitions {
    id: uuid::Uuid,
    logs: FastMap<i32, Rc<PartitionLog>>,
}

pub struct PartitionManager {
    shard: ShardId,
    shard_count: usize,
    topics: RefCell<FastMap<String, TopicPartitions>>,
    cache: Rc<TailCache>,
    /// Serialises reconcile runs (control plane only; never taken on the produce/fetch path).
    reconcile_lock: futures::lock::Mutex<()>,
}

impl PartitionManager {
    pub fn new(shard: ShardId, shard_count: usize, cache: Rc<TailCache>) -> Self {
        Self {
            shard,
            shard_count,
            topics: RefCell::new(FastMap::default()),
            cache,
            reconcile_lock: futures::lock::Mutex::new(()),
        }
    }

    /// The log of a partition owned by this shard, if it exists.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.topics
            .borrow()
            .get(topic)?
            .logs
            .get(&partition)
            .cloned()
    }

    /// Every partition log this shard owns.
    pub fn all(&self) -> Vec<(String, i32, Rc<PartitionLog>)> {
        let topics = self.topics.borrow();
        let mut out = Vec::new();
        for (name, t) in topics.iter() {
            for (p, log) in &t.logs {
                out.push((name.clone(), *p, log.clone()));
            }
        }
        out
    }

    pub fn log_config(
        config: &BrokerConfig,
        meta: &ClusterMetadata,
        topic: &TopicMeta,
    ) -> LogConfig {
        crate::ops::configs::log_config(config, meta, topic)
    }

    /// Opens the partitions of `meta` this shard owns and removes those of deleted topics.
    pub async fn reconcile(&self, config: &BrokerConfig, meta: &ClusterMetadata) -> Result<()> {
        let _guard = self.reconcile_lock.lock().await;
        // Remove topics that are gone (or were re-created under a new id).
        let stale: Vec<String> = self
            .topics
            .borrow()
            .iter()
            .filter(|(name, t)| meta.topic(name).is_none_or(|m| m.id != t.id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let removed = self.topics.borrow_mut().remove(&name);
            if let Some(t) = removed {
                for (p, log) in t.logs {
                    if let Err(e) = log.remove().await {
                        log::error!("removing {name}-{p}: {e}");
                    }
                }
            }
        }
        // Partitions a reassignment moved off this broker: their logs are deleted.
        let moved: Vec<(String, i32)> = self
            .all()
            .into_iter()
            .filter(|(name, p, _)| {
                meta.topic(name)
                    .is_some_and(|t| !hosted_here(meta, config.node_id, name, t, *p))
            })
            .map(|(name, p, _)| (name, p))
            .collect();
        for (name, p) in moved {
            let log = self
                .topics
                .borrow_mut()
                .get_mut(&name)
                .and_then(|t| t.logs.remove(&p));
            if let Some(log) = log {
                log::info!("{name}-{p}: no replica on this broker any more; deleting its log");
                if let Err(e) = log.remove().await {
                    log::error!("removing {name}-{p}: {e}");
                }
            }
        }
        // Dynamic topic configs: changed settings apply to the open logs at once.
        for (name, p, log) in self.all() {
            if let Some(topic) = meta.topic(&name) {
                let want = Self::log_config(config, meta, topic);
                if log.config() != want {
                    log::info!("{name}-{p}: applying {want:?}");
                    if let Err(e) = log.set_config(want) {
                        log::error!("{name}-{p}: {e}");
                    }
                }
            }
        }
        // New partitions: opened up to OPEN_CONCURRENCY at a time (each one's directory,
        // partition.metadata and first segment cost a few fsyncs on the blocking pool; one
        // after the other, a 1000-partition topic took seconds).
        let mut missing = Vec::new();
        for (name, topic) in &meta.topics {
            for p in 0..topic.partitions {
                if partition_shard(name, p, self.shard_count) != self.shard
                    || !hosted_here(meta, config.node_id, name, topic, p)
                    || self.get(name, p).is_some()
                {
                    continue;
                }
                missing.push((name, topic, p));
            }
        }
        let mut opening = futures::stream::iter(missing.into_iter().map(|(name, topic, p)| {
            let dir = partition_dir(&config.log_dir, name, p);
            let log_config = Self::log_config(config, meta, topic);
            let cache = self.cache.clone();
            async move {
                crate::partition_identity::ensure(&dir, topic.id, meta).await?;
                let log = PartitionLog::open(&dir, log_config, cache)
                    .await
                    .with_context(|| format!("opening partition {name}-{p}"))?;
                anyhow::Ok((name, topic, p, log))
            }
        }))
        .buffer_unordered(OPEN_CONCURRENCY);
        let mut first_error = None;
        while let Some(opened) = opening.next().await {
            match opened {
                Ok((name, topic, p, log)) => {
                    self.topics
                        .borrow_mut()
                        .entry(name.clone())
                        .or_insert_with(|| TopicPartitions {
                            id: topic.id,
                            logs: FastMap::default(),
                        })
                        .logs
                        .insert(p, log);
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(())
    }

    /// Cleanly closes every log (flush, indexes, clean-shutdown marker).
    pub async fn close_all(&self) {
        for (name, p, log) in self.all() {
            if let Err(e) = log.close().await {
                log::error!("closing {name}-{p}: {e}");
            }
        }
    }
}

/// True when broker `node` keeps the log of partition `p` of a topic (named `_name`): every partition on a
/// standalone node; in cluster mode those with a replica on `node` (`__consumer_offsets` too: it
/// is replicated like any topic, and the group coordinator loads from the leader's log).
pub fn hosted_here(
    meta: &ClusterMetadata,
    node: i32,
    _name: &str,
    topic: &TopicMeta,
    p: i32,
) -> bool {
    crate::routing::hosts_replica(meta, topic, p, node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;

    fn hosted(meta: &ClusterMetadata, node: i32) -> Vec<(String, i32)> {
        meta.topics
            .iter()
            .flat_map(|(n, t)| {
                (0..t.partitions)
                    .filter(move |p| hosted_here(meta, node, n, t, *p))
                    .map(move |p| (n.clone(), p))
            })
            .collect()
    }

    #[test]
    fn standalone_hosts_every_partition() {
        let meta = test_fixtures::cluster();
        assert_eq!(hosted(&meta, 1).len(), 3);
    }

    #[test]
    fn cluster_mode_hosts_local_replicas_only() {
        let mut meta = test_fixtures::multi_broker();
        let offsets = meta.topic("orders").unwrap().clone();
        meta.topics
            .insert(crate::coordinators::groups::OFFSETS_TOPIC.into(), offsets);
        let o = |p: i32| ("orders".to_string(), p);
        let c = |p: i32| (crate::coordinators::groups::OFFSETS_TOPIC.to_string(), p);
        // Replicas: p0 on 1,2,3; p1 on 2,1; p2 on 3,4 (__consumer_offsets is placed the same
        // way here and replicated like any topic).
        assert_eq!(hosted(&meta, 1), vec![c(0), c(1), o(0), o(1)]);
        assert_eq!(hosted(&meta, 2), vec![c(0), c(1), o(0), o(1)]);
        assert_eq!(hosted(&meta, 3), vec![c(0), c(2), o(0), o(2)]);
        assert_eq!(hosted(&meta, 5), vec![]);
        // A reassignment moves p1 off broker 1: it is no longer hosted there.
        meta.topics.get_mut("orders").unwrap().placement[1].replicas = vec![2, 3];
        assert_eq!(hosted(&meta, 1), vec![c(0), c(1), o(0)]);
    }
}
