//! Metadata: brokers (just this one), the controller, and topics with their partitions; creates
//! unknown topics on request when `auto.create.topics.enable` is on.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::errors;
use crate::messages::{ControllerRequest, NewTopic, ShardMessage};
use crate::metadata::validate_topic_name;
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

/// Creates `names` with broker defaults (auto-creation). Errors are left for the caller to see
/// through the refreshed metadata.
pub async fn auto_create(state: &Rc<ShardState>, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let topics = names
        .into_iter()
        .map(|name| NewTopic {
            name,
            partitions: -1,
            replication_factor: -1,
            configs: Vec::new(),
        })
        .collect();
    let res = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::CreateTopics {
                topics,
                validate_only: false,
                reply,
            })
        })
        .await;
    if let Some(results) = res {
        for r in results {
            if let Err((code, msg)) = r
                && code != errors::TOPIC_ALREADY_EXISTS
            {
                log::info!("auto-creating a topic failed: {msg}");
            }
        }
    }
}

pub async fn handle(state: Rc<ShardState>, h: ParsedHeader, req: MetadataRequest) -> ResponseFrame {
    let meta = state.metadata();
    // Which topics: None = all (v1+: null), else by name (or by id, v10+).
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    });
    let allow_auto =
        state.config.auto_create_topics && (h.api_version < 4 || req.allow_auto_topic_creation);
    // Topics created by this request are reported as LEADER_NOT_AVAILABLE (as Kafka does): the
    // client retries its metadata request and then sees them.
    let mut just_created: Vec<String> = Vec::new();
    let meta = match &requested {
        Some(list) if allow_auto => {
            let missing: Vec<String> = list
                .iter()
                .filter_map(|(n, _)| n.clone())
                .filter(|n| meta.topic(n).is_none() && validate_topic_name(n).is_ok())
                .collect();
            if missing.is_empty() {
                meta
            } else {
                auto_create(&state, missing.clone()).await;
                just_created = missing;
                state.metadata()
            }
        }
        _ => meta,
    };

    let node = state.config.node_id;
    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(node);
    broker.host = super::str_bytes(&state.config.advertised_host);
    broker.port = i32::from(state.config.advertised_port);
    resp.brokers = vec![broker];
    resp.cluster_id = Some(super::str_bytes(&meta.cluster_id));
    resp.controller_id = BrokerId(node);
    resp.cluster_authorized_operations = i32::MIN;

    let describe = |name: &str, id: uuid::Uuid| -> MetadataResponseTopic {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(super::str_bytes(name)));
        t.topic_authorized_operations = i32::MIN;
        match meta.topic(name) {
            Some(tm) if just_created.iter().any(|n| n == name) => {
                t.topic_id = tm.id;
                t.error_code = errors::LEADER_NOT_AVAILABLE;
            }
            Some(tm) => {
                t.topic_id = tm.id;
                t.partitions = (0..tm.partitions)
                    .map(|p| {
                        let mut mp = MetadataResponsePartition::default();
                        mp.partition_index = p;
                        mp.leader_id = BrokerId(node);
                        mp.leader_epoch = 0;
                        mp.replica_nodes = vec![BrokerId(node)];
                        mp.isr_nodes = vec![BrokerId(node)];
                        mp
                    })
                    .collect();
            }
            None => {
                t.topic_id = id;
                t.error_code = if validate_topic_name(name).is_err() {
                    errors::INVALID_TOPIC_EXCEPTION
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                };
            }
        }
        t
    };

    resp.topics = match requested {
        None => meta
            .topics
            .keys()
            .map(|n| describe(n, uuid::Uuid::nil()))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|(name, id)| match name {
                Some(n) => describe(&n, id),
                None => match meta.topic_by_id(&id) {
                    Some((n, _)) => describe(n, id),
                    None => {
                        let mut t = MetadataResponseTopic::default();
                        t.topic_id = id;
                        t.error_code = errors::UNKNOWN_TOPIC_ID;
                        t
                    }
                },
            })
            .collect(),
    };
    super::encode(&h, &resp)
}
