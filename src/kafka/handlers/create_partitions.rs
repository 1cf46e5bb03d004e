//! CreatePartitions: grows a topic's partition count (never shrinks it).

use std::rc::Rc;

use kafka_protocol::messages::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{ControllerRequest, ShardMessage};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: CreatePartitionsRequest,
) -> ResponseFrame {
    let topics: Vec<(String, i32)> = req
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.count))
        .collect();
    let validate_only = req.validate_only;
    let results = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::CreatePartitions {
                topics: topics.clone(),
                validate_only,
                reply,
            })
        })
        .await;
    super::encode(&h, &response(&topics, results.as_deref()))
}

/// The response to (topic, count) pairs given the controller's results (`None`: no answer).
fn response(
    topics: &[(String, i32)],
    results: Option<&[Result<(), (i16, String)>]>,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    resp.results = topics
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let mut r = CreatePartitionsTopicResult::default();
            r.name = kafka_protocol::messages::TopicName(super::str_bytes(name));
            match results.and_then(|v| v.get(i)) {
                Some(Ok(())) => {}
                Some(Err((code, msg))) => {
                    r.error_code = *code;
                    r.error_message = Some(super::str_bytes(msg));
                }
                None => r.error_code = errors::REQUEST_TIMED_OUT,
            }
            r
        })
        .collect();
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let topics = vec![("grown".to_string(), 4), ("refused".to_string(), 1)];
    let results = [
        Ok(()),
        Err((errors::INVALID_PARTITIONS, "cannot shrink".to_string())),
    ];
    [Some(&results[..]), None]
        .into_iter()
        .map(|r| kafka_protocol::messages::ResponseKind::CreatePartitions(response(&topics, r)))
        .collect()
}
