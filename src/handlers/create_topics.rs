//! CreateTopics: validated and applied by the controller; replies once every shard has opened
//! the new partitions.

use std::rc::Rc;

use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::errors;
use crate::messages::{ControllerRequest, NewTopic, ShardMessage};
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
    super::encode(&h, &response(&topics, results.as_deref()))
}

/// The response to `topics`, given the controller's results (`None`: no answer in time).
fn response(
    topics: &[NewTopic],
    results: Option<&[Result<(uuid::Uuid, i32), crate::messages::TopicError>]>,
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
                    r.configs = Some(Vec::new());
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
    [Some(&results[..]), None]
        .into_iter()
        .map(|r| kafka_protocol::messages::ResponseKind::CreateTopics(response(&topics, r)))
        .collect()
}
