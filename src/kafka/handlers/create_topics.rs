//! CreateTopics: validated and applied by the controller; replies once every shard has opened
//! the new partitions. A manual replica assignment's shape is checked here and the assignment
//! goes to the controller, which checks its brokers; the response reports each topic's partitions and replication factor as created.

use std::rc::Rc;

use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::config::BrokerConfig;
use crate::kafka::errors;
use crate::messages::{ControllerRequest, CreatedTopic, NewTopic, ShardMessage, TopicError};
use crate::metadata::{ClusterMetadata, TopicMeta};
use crate::ops::configs::{self, TOPIC_CONFIGS};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

/// A manual replica assignment in partition order, checked for its shape here (as Kafka's
/// ReplicationControlManager does): numPartitions and replicationFactor must then be -1, and
/// the partition indexes 0..n without gaps or repeats. The replicas themselves (non-empty,
/// distinct, registered brokers, as many for every partition) are the controller's to check,
/// against the metadata it decides on.
fn from_assignments(t: &CreatableTopic) -> Result<Vec<Vec<i32>>, TopicError> {
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err((
            errors::INVALID_REQUEST,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both \
             cannot be used at the same time."
                .to_string(),
        ));
    }
    let mut by_partition = std::collections::BTreeMap::new();
    for a in &t.assignments {
        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if by_partition.insert(a.partition_index, ids).is_some() {
            return Err((
                errors::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "Found multiple manual partition assignments for partition {}",
                    a.partition_index
                ),
            ));
        }
    }
    if !by_partition
        .keys()
        .copied()
        .eq(0..by_partition.len() as i32)
    {
        return Err((
            errors::INVALID_REPLICA_ASSIGNMENT,
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(by_partition.into_values().collect())
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: CreateTopicsRequest,
) -> ResponseFrame {
    // Per topic: what goes to the controller, or the error found here.
    let requested: Vec<(String, Result<NewTopic, TopicError>)> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let assignments = if t.assignments.is_empty() {
                Ok(Vec::new())
            } else {
                from_assignments(t)
            };
            let new = assignments.map(|assignments| NewTopic {
                name: name.clone(),
                partitions: if assignments.is_empty() {
                    t.num_partitions
                } else {
                    assignments.len() as i32
                },
                replication_factor: match assignments.first() {
                    Some(first) => i16::try_from(first.len()).unwrap_or(i16::MAX),
                    None => t.replication_factor,
                },
                configs: t
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect(),
                assignments,
            });
            (name, new)
        })
        .collect();
    let topics: Vec<NewTopic> = requested
        .iter()
        .filter_map(|(_, t)| t.as_ref().ok().cloned())
        .collect();
    let validate_only = req.validate_only;
    let mut results = if topics.is_empty() {
        Some(Vec::new())
    } else {
        state
            .call(CONTROLLER_SHARD, |reply| {
                ShardMessage::Controller(ControllerRequest::CreateTopics {
                    topics: topics.clone(),
                    validate_only,
                    reply,
                })
            })
            .await
    }
    .map(Vec::into_iter);
    // The controller replies once every shard has the new metadata, this one included.
    let meta = state.metadata();
    let outcomes = requested
        .into_iter()
        .map(|(name, t)| {
            let (outcome, configs) = match t {
                Err(e) => (Some(Err(e)), Vec::new()),
                Ok(new) => (
                    results.as_mut().and_then(Iterator::next),
                    topic_configs(&state.config, &meta, &new),
                ),
            };
            (name, outcome, configs)
        })
        .collect();
    super::encode(&h, &response(outcomes))
}

/// (name, effective value, source) of one config of a new topic.
type TopicConfig = (String, String, i8);

/// One topic's outcome: what was created or the error (`None`: no answer in time), and the
/// topic's configs.
type TopicOutcome = (
    String,
    Option<Result<CreatedTopic, TopicError>>,
    Vec<TopicConfig>,
);

/// Every config of the new topic `t` with its effective value and source, as CreateTopics v5+
/// reports them (KIP-525): from the stored topic, or from the request for validate_only.
fn topic_configs(cfg: &BrokerConfig, meta: &ClusterMetadata, t: &NewTopic) -> Vec<TopicConfig> {
    let requested;
    let topic = match meta.topic(&t.name) {
        Some(stored) => stored,
        None => {
            requested = TopicMeta {
                id: uuid::Uuid::nil(),
                partitions: t.partitions,
                configs: t.configs.iter().cloned().collect(),
                leader_epochs: Vec::new(),
                placement: Vec::new(),
            };
            &requested
        }
    };
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source, _) = configs::topic_value(cfg, meta, topic, def);
            (def.name.to_string(), value, source)
        })
        .collect()
}

/// The response: per topic, what was created (with its configs) or the error.
fn response(outcomes: Vec<TopicOutcome>) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    resp.topics = outcomes
        .into_iter()
        .map(|(name, outcome, configs)| {
            let mut r = CreatableTopicResult::default();
            r.name = kafka_protocol::messages::TopicName(super::str_bytes(&name));
            match outcome {
                Some(Ok(created)) => {
                    r.topic_id = created.id;
                    r.num_partitions = created.partitions;
                    r.replication_factor = created.replication_factor;
                    r.error_message = None;
                    r.configs = Some(
                        configs
                            .iter()
                            .map(|(name, value, source)| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = super::str_bytes(name);
                                c.value = Some(super::str_bytes(value));
                                c.config_source = *source;
                                c
                            })
                            .collect(),
                    );
                }
                Some(Err((code, msg))) => {
                    r.error_code = code;
                    r.error_message = Some(super::str_bytes(&msg));
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
                None => {
                    r.error_code = errors::REQUEST_TIMED_OUT;
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
            }
            r
        })
        .collect();
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let created = CreatedTopic {
        id: uuid::Uuid::from_u128(7),
        partitions: 3,
        replication_factor: 1,
    };
    let new = NewTopic {
        name: "created".to_string(),
        partitions: 3,
        replication_factor: 1,
        configs: vec![("retention.ms".into(), "1000".into())],
        assignments: Vec::new(),
    };
    let cfg = BrokerConfig::load(&Default::default()).expect("default config");
    let configs = topic_configs(&cfg, &ClusterMetadata::default(), &new);
    assert!(
        configs
            .iter()
            .any(|(n, v, _)| n == "retention.ms" && v == "1000")
    );
    let outcomes = vec![
        ("created".to_string(), Some(Ok(created)), configs),
        (
            "failed".to_string(),
            Some(Err((errors::INVALID_PARTITIONS, "bad count".to_string()))),
            Vec::new(),
        ),
        ("timed-out".to_string(), None, Vec::new()),
    ];
    vec![kafka_protocol::messages::ResponseKind::CreateTopics(
        response(outcomes),
    )]
}
