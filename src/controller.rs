//! The controller: runs on shard 0 only. It owns the authoritative cluster metadata, applies
//! topic changes (create/delete/add partitions), persists them, and then pushes the new snapshot
//! to every shard (`ShardMessage::ApplyMetadata`), replying to the client only after all shards
//! have applied it — so a created topic's partitions exist everywhere before CreateTopics returns.
//! It also hands out producer ids from a persisted block.
//!
//! In cluster mode (`front`) the same requests are validated here and become decisions of the
//! cluster controller through the driver (locally on the active controller, forwarded to it
//! otherwise); the answer waits until this node has published the committed change.

mod front;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::errors;
use crate::messages::{ControllerRequest, CreatedTopic, NewTopic, ShardMessage, TopicError};
use crate::metadata::{self, ClusterMetadata, TopicMeta, validate_topic_name};
use crate::shard_state::ShardState;

/// Producer ids are reserved (persisted) this many at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Upper bound on partitions per topic (an explicit limit, as Kafka's controller has).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// The brokers that can hold a replica now: the unfenced brokers of the metadata in cluster
/// mode, this one standalone.
pub fn live_brokers(config: &BrokerConfig, meta: &ClusterMetadata) -> Vec<i32> {
    if meta.is_cluster() {
        meta.live_brokers().map(|b| b.id).collect()
    } else {
        vec![config.node_id]
    }
}

pub struct Controller {
    config: Arc<BrokerConfig>,
    meta: RefCell<ClusterMetadata>,
    next_producer_id: RefCell<i64>,
    /// Serialises metadata changes (control plane only).
    lock: futures::lock::Mutex<()>,
    /// Cluster mode: the driver every request goes through (set once at start on shard 0).
    driver: RefCell<Option<Rc<crate::cluster::driver::Driver>>>,
    /// Cluster mode: the producer-id block this broker hands out from, [next, end).
    producer_ids: RefCell<(i64, i64)>,
}

impl Controller {
    pub fn new(config: Arc<BrokerConfig>, meta: ClusterMetadata) -> Self {
        let next = meta.producer_id_block_end;
        Self {
            config,
            meta: RefCell::new(meta),
            next_producer_id: RefCell::new(next),
            lock: futures::lock::Mutex::new(()),
            driver: RefCell::new(None),
            producer_ids: RefCell::new((0, 0)),
        }
    }

    /// Cluster mode: from now on requests go through `driver`.
    pub fn attach(&self, driver: Rc<crate::cluster::driver::Driver>) {
        *self.driver.borrow_mut() = Some(driver);
    }

    pub async fn handle(&self, shard: &Rc<ShardState>, req: ControllerRequest) {
        let _guard = self.lock.lock().await;
        let driver = self.driver.borrow().clone();
        if let Some(driver) = driver {
            return self.handle_cluster(shard, &driver, req).await;
        }
        match req {
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
                reply,
            } => {
                let res = self.create_topics(shard, topics, validate_only).await;
                let _ = reply.send(res);
            }
            ControllerRequest::DeleteTopics { names, reply } => {
                let res = self.delete_topics(shard, names).await;
                let _ = reply.send(res);
            }
            ControllerRequest::CreatePartitions {
                topics,
                validate_only,
                reply,
            } => {
                let res = self.create_partitions(shard, topics, validate_only).await;
                let _ = reply.send(res);
            }
            ControllerRequest::AllocateProducerId { reply } => {
                let res = self.allocate_producer_id(shard).await;
                let _ = reply.send(res);
            }
            ControllerRequest::AlterConfigs {
                resources,
                validate_only,
                reply,
            } => {
                let res = self.alter_configs(shard, resources, validate_only).await;
                let _ = reply.send(res);
            }
        }
    }

    async fn alter_configs(
        &self,
        shard: &Rc<ShardState>,
        resources: Vec<crate::configs::Alteration>,
        validate_only: bool,
    ) -> Vec<Result<(), (i16, String)>> {
        let mut next = self.meta.borrow().clone();
        let results: Vec<_> = resources
            .iter()
            .map(|a| crate::configs::apply(&self.config, &mut next, a))
            .collect();
        let changed = !validate_only && next != *self.meta.borrow();
        if changed {
            for (a, r) in resources.iter().zip(&results) {
                if r.is_ok() {
                    log::info!(
                        "configs of {} {:?} altered: {:?}",
                        if a.resource_type == crate::configs::RESOURCE_TOPIC {
                            "topic"
                        } else {
                            "broker"
                        },
                        a.resource_name,
                        a.ops
                            .iter()
                            .map(|o| (&o.name, o.op, &o.value))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        self.commit_results(shard, next, changed, results).await
    }

    /// (partitions, replication factor) of a valid new topic, -1s resolved to the defaults.
    fn validate_new_topic(
        &self,
        meta: &ClusterMetadata,
        t: &NewTopic,
    ) -> Result<(i32, i16), (i16, String)> {
        self.validate_new_topic_with(meta, t, live_brokers(&self.config, meta).len())
    }

    /// As `validate_new_topic`, with `live` brokers able to hold a replica.
    fn validate_new_topic_with(
        &self,
        meta: &ClusterMetadata,
        t: &NewTopic,
        live: usize,
    ) -> Result<(i32, i16), (i16, String)> {
        validate_topic_name(&t.name).map_err(|m| (errors::INVALID_TOPIC_EXCEPTION, m))?;
        if meta.topics.contains_key(&t.name) {
            return Err((
                errors::TOPIC_ALREADY_EXISTS,
                format!("Topic '{}' already exists.", t.name),
            ));
        }
        let partitions = if t.partitions == -1 {
            self.config.num_partitions
        } else {
            t.partitions
        };
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err((
                errors::INVALID_PARTITIONS,
                format!("Number of partitions must be in 1..={MAX_PARTITIONS_PER_TOPIC}"),
            ));
        }
        let replication_factor = if t.replication_factor == -1 {
            crate::configs::default_replication_factor(&self.config, meta)
        } else {
            t.replication_factor
        };
        if replication_factor <= 0 {
            return Err((
                errors::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value."
                    .to_string(),
            ));
        }
        if replication_factor as usize > live {
            return Err((
                errors::INVALID_REPLICATION_FACTOR,
                format!(
                    "Unable to replicate the partition {replication_factor} time(s): The target \
                     replication factor of {replication_factor} cannot be reached because only \
                     {live} broker(s) are registered."
                ),
            ));
        }
        for (k, v) in &t.configs {
            crate::configs::validate_topic_config(k, v)?;
        }
        Ok((partitions, replication_factor))
    }

    async fn create_topics(
        &self,
        shard: &Rc<ShardState>,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<CreatedTopic, (i16, String)>> {
        let mut next = self.meta.borrow().clone();
        let mut results = Vec::with_capacity(topics.len());
        for t in &topics {
            match self.validate_new_topic(&next, t) {
                Ok((partitions, replication_factor)) => {
                    let id = uuid::Uuid::new_v4();
                    if !validate_only {
                        next.topics.insert(
                            t.name.clone(),
                            TopicMeta::new(
                                id,
                                partitions,
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        let v = crate::configs::validate_topic_config(k, v)
                                            .unwrap_or(v.clone());
                                        (k.clone(), v)
                                    })
                                    .collect(),
                            ),
                        );
                    }
                    results.push(Ok(CreatedTopic {
                        id,
                        partitions,
                        replication_factor,
                    }));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.commit_results(shard, next, !validate_only, results)
            .await
    }

    async fn delete_topics(
        &self,
        shard: &Rc<ShardState>,
        names: Vec<String>,
    ) -> Vec<Result<uuid::Uuid, (i16, String)>> {
        let mut next = self.meta.borrow().clone();
        let results: Vec<_> = names
            .iter()
            .map(|n| match next.topics.remove(n) {
                Some(t) => Ok(t.id),
                None => Err((
                    errors::UNKNOWN_TOPIC_OR_PARTITION,
                    "This server does not host this topic-partition.".to_string(),
                )),
            })
            .collect();
        self.commit_results(shard, next, true, results).await
    }

    async fn create_partitions(
        &self,
        shard: &Rc<ShardState>,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), (i16, String)>> {
        let mut next = self.meta.borrow().clone();
        let mut results = Vec::new();
        for (name, count) in &topics {
            let res = match next.topics.get_mut(name) {
                None => Err((
                    errors::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("The topic '{name}' does not exist."),
                )),
                Some(t) if *count <= t.partitions => Err((
                    errors::INVALID_PARTITIONS,
                    format!(
                        "Topic currently has {} partitions, which is higher than or equal to the requested {count}.",
                        t.partitions
                    ),
                )),
                Some(_) if *count > MAX_PARTITIONS_PER_TOPIC => Err((
                    errors::INVALID_PARTITIONS,
                    format!("Number of partitions must be at most {MAX_PARTITIONS_PER_TOPIC}"),
                )),
                Some(t) => {
                    if !validate_only {
                        t.grow(*count);
                    }
                    Ok(())
                }
            };
            results.push(res);
        }
        self.commit_results(shard, next, !validate_only, results)
            .await
    }

    async fn allocate_producer_id(&self, shard: &Rc<ShardState>) -> Result<i64, String> {
        let id = *self.next_producer_id.borrow();
        if id >= self.meta.borrow().producer_id_block_end {
            let mut next = self.meta.borrow().clone();
            next.producer_id_block_end = id + PRODUCER_ID_BLOCK;
            self.commit(shard, next).await?;
        }
        *self.next_producer_id.borrow_mut() = id + 1;
        Ok(id)
    }

    /// Commits `next` if `wanted` and any item succeeded; if persisting fails, every item that
    /// had succeeded reports UNKNOWN_SERVER_ERROR instead.
    async fn commit_results<T>(
        &self,
        shard: &Rc<ShardState>,
        next: ClusterMetadata,
        wanted: bool,
        results: Vec<Result<T, TopicError>>,
    ) -> Vec<Result<T, TopicError>> {
        if wanted
            && results.iter().any(Result::is_ok)
            && let Err(e) = self.commit(shard, next).await
        {
            return results
                .into_iter()
                .map(|r| r.and(Err((errors::UNKNOWN_SERVER_ERROR, e.clone()))))
                .collect();
        }
        results
    }

    /// Persists `next` and applies it on every shard; returns once all shards have it.
    async fn commit(
        &self,
        shard: &Rc<ShardState>,
        mut next: ClusterMetadata,
    ) -> Result<(), String> {
        next.version = self.meta.borrow().version + 1;
        let dir = self.config.log_dir.clone();
        let to_store = next.clone();
        tern_shard::task::run_blocking(move || metadata::store_blocking(&dir, &to_store))
            .await
            .map_err(|e| format!("persisting metadata: {e:#}"))?;
        *self.meta.borrow_mut() = next.clone();
        let snapshot = Arc::new(next);
        let waits = (0..shard.count).map(|s| {
            let snapshot = snapshot.clone();
            async move {
                shard
                    .call(s, |reply| ShardMessage::ApplyMetadata {
                        meta: snapshot,
                        reply,
                    })
                    .await
            }
        });
        futures::future::join_all(waits).await;
        Ok(())
    }
}
