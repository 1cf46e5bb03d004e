//! The shard-local partition manager: the `PartitionLog`s this shard owns, keyed by topic name
//! and partition. Only this shard's thread touches them. `reconcile` brings the set in line with
//! a metadata snapshot (opens new partitions, removes deleted topics' logs from disk).

use std::cell::RefCell;
use std::collections::HashMap;

/// Looked up for every partition of every produce/fetch: ahash is fast, and its random
/// per-process seed keeps crafted topic names from forcing collisions.
type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result};
use tern_shard::{ShardId, partition_shard};
use tern_storage::{LogConfig, PartitionLog, TailCache};

use crate::config::BrokerConfig;
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

/// The file (as Kafka's `partition.metadata`) that ties a partition directory to a topic id, so a
/// re-created topic of the same name never sees the old topic's records.
const PARTITION_METADATA: &str = "partition.metadata";

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
        crate::configs::log_config(config, meta, topic)
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
        for (name, topic) in &meta.topics {
            for p in 0..topic.partitions {
                if partition_shard(name, p, self.shard_count) != self.shard
                    || self.get(name, p).is_some()
                {
                    continue;
                }
                let dir = partition_dir(&config.log_dir, name, p);
                ensure_partition_identity(&dir, &topic.id).await?;
                let log = PartitionLog::open(
                    &dir,
                    Self::log_config(config, meta, topic),
                    self.cache.clone(),
                )
                .await
                .with_context(|| format!("opening partition {name}-{p}"))?;
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

/// Makes sure `dir` belongs to topic `id`: a directory left by a deleted topic of the same name
/// is wiped first. Blocking file work runs on the blocking pool.
async fn ensure_partition_identity(dir: &Path, id: &uuid::Uuid) -> Result<()> {
    let dir = dir.to_path_buf();
    let id = *id;
    tern_shard::task::run_blocking(move || -> Result<()> {
        let file = dir.join(PARTITION_METADATA);
        let expected = format!("version: 0\ntopic_id: {id}\n");
        match std::fs::read_to_string(&file) {
            Ok(s) if s == expected => return Ok(()),
            Ok(_) => {
                log::warn!(
                    "{} belonged to an older topic of the same name: wiping it",
                    dir.display()
                );
                std::fs::remove_dir_all(&dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        tern_storage::create_dir_all_durable(&dir)?;
        std::fs::write(&file, expected)?;
        Ok(())
    })
    .await
    .with_context(|| "writing partition.metadata")
}
