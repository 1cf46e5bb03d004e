//! The controller front, on shard 0: every control-plane request (CreateTopics, DeleteTopics,
//! CreatePartitions, AlterConfigs, producer ids) is validated here as Kafka's broker does
//! (topic names, partition bounds, replication factor against the live brokers, config values)
//! and then becomes a decision of the cluster controller through the driver
//! (`cluster::driver`): locally when this node is the active controller (always, standalone:
//! a single-voter quorum), forwarded to it otherwise. Answers wait until this node has
//! published the committed change to every shard, so a created topic's partitions exist
//! everywhere before CreateTopics returns. Producer ids come from a block the broker takes
//! from the controller and hands out locally.

mod front;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::kafka::errors;
use crate::messages::{ControllerRequest, NewTopic};
use crate::metadata::{ClusterMetadata, validate_topic_name};
use crate::shard_state::ShardState;

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
    /// Serialises control-plane requests.
    lock: futures::lock::Mutex<()>,
    /// The driver every request goes through (set once at start on shard 0).
    driver: RefCell<Option<Rc<crate::cluster::driver::Driver>>>,
    /// The producer-id block this broker hands out from, [next, end).
    producer_ids: RefCell<(i64, i64)>,
}

impl Controller {
    pub fn new(config: Arc<BrokerConfig>) -> Self {
        Self {
            config,
            lock: futures::lock::Mutex::new(()),
            driver: RefCell::new(None),
            producer_ids: RefCell::new((0, 0)),
        }
    }

    /// From now on requests go through `driver`.
    pub fn attach(&self, driver: Rc<crate::cluster::driver::Driver>) {
        *self.driver.borrow_mut() = Some(driver);
    }

    /// The driver, once started.
    pub fn driver(&self) -> Option<Rc<crate::cluster::driver::Driver>> {
        self.driver.borrow().clone()
    }

    pub async fn handle(&self, shard: &Rc<ShardState>, req: ControllerRequest) {
        let _guard = self.lock.lock().await;
        let driver = self.driver.borrow().clone();
        match driver {
            Some(driver) => self.handle_cluster(shard, &driver, req).await,
            // Before the driver is up (start-up failed): dropping the request's reply channel
            // answers it with an error.
            None => log::warn!("controller request before the metadata driver started"),
        }
    }

    /// (partitions, replication factor) of a valid new topic, -1s resolved to the defaults,
    /// with `live` brokers able to hold a replica.
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
            crate::ops::configs::default_replication_factor(&self.config, meta)
        } else {
            t.replication_factor
        };
        if t.assignments.is_empty() && replication_factor <= 0 {
            return Err((
                errors::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value."
                    .to_string(),
            ));
        }
        if t.assignments.is_empty() && replication_factor as usize > live {
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
            crate::ops::configs::validate_topic_config(k, v)?;
        }
        Ok((partitions, replication_factor))
    }
}
