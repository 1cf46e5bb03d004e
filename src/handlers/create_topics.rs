//! CreateTopics: validated and applied by the controller; replies once every shard has opened
//! the new partitions.

use std::rc::Rc;

use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::config::BrokerConfig;
use crate::configs::{self, TOPIC_CONFIGS};
use crate::errors;
use crate::messages::{ControllerRequest, NewTopic, ShardMessage};
use crate::metadata::{ClusterMetadata, TopicMeta};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: CreateTopicsRequest,
) -> ResponseFrame {
    let topics: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            partitions: if t.assignments.is_empty() {
                t.num_partitions
            } else {
                t.assignments.len() as i32
            },
            replication_factor: if t.assignments.is_empty() {
                t.replication_factor
            } else {
                t.assignments
                    .first()
                    .map_or(1, |a| a.broker_ids.len() as i16)
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
        })
        .collect();
    let validate_only = req.validate_only;
    let results = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::CreateTopics {
                topics: topics.clone(),
                validate_only,
                reply,
            })
        })
        .await;
    // The controller replies once every shard has the new metadata, this one included.
    let meta = state.metadata();
    let configs: Vec<Vec<TopicConfig>> = topics
        .iter()
        .map(|t| topic_configs(&state.config, &meta, t))
        .collect();
    super::encode(&h, &response(&topics, results.as_deref(), &configs))
}

/// (name, effective value, source) of one config of a new topic.
type TopicConfig = (String, String, i8);

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

/// The response to `topics`, given the controller's results (`None`: no answer in time) and
/// each topic's configs.
fn response(
    topics: &[NewTopic],
    results: Option<&[Result<(uuid::Uuid, i32), crate::messages::TopicError>]>,
    configs: &[Vec<TopicConfig>],
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    resp.topics = topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = CreatableTopicResult::default();
            r.name = kafka_protocol::messages::TopicName(super::str_bytes(&t.name));
            match results.and_then(|v| v.get(i)) {
                Some(Ok((id, partitions))) => {
                    r.topic_id = *id;
                    r.num_partitions = *partitions;
                    r.replication_factor = 1;
                    r.error_message = None;
                    let rows = configs.get(i).map(Vec::as_slice).unwrap_or_default();
                    r.configs = Some(
                        rows.iter()
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
                    r.error_code = *code;
                    r.error_message = Some(super::str_bytes(msg));
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
    let topics: Vec<NewTopic> = ["created", "failed"]
        .iter()
        .map(|n| NewTopic {
            name: n.to_string(),
            partitions: 3,
            replication_factor: 1,
            configs: vec![("retention.ms".into(), "1000".into())],
        })
        .collect();
    let results = [
        Ok((uuid::Uuid::from_u128(7), 3)),
        Err((errors::INVALID_PARTITIONS, "bad count".to_string())),
    ];
    let cfg = BrokerConfig::load(&Default::default()).expect("default config");
    let meta = ClusterMetadata::default();
    let configs: Vec<_> = topics
        .iter()
        .map(|t| topic_configs(&cfg, &meta, t))
        .collect();
    assert!(
        configs[0]
            .iter()
            .any(|(n, v, _)| n == "retention.ms" && v == "1000")
    );
    [Some(&results[..]), None]
        .into_iter()
        .map(|r| {
            let resp = response(&topics, r, &configs);
            kafka_protocol::messages::ResponseKind::CreateTopics(resp)
        })
        .collect()
}
