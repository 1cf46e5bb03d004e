//! DeleteTopics: the controller removes the topics from metadata; every shard then closes and
//! deletes the partition directories it owns before the reply is sent.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{ControllerRequest, ShardMessage};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DeleteTopicsRequest,
) -> ResponseFrame {
    let meta = state.metadata();
    // (requested name, requested id, resolved name)
    let mut wanted: Vec<Wanted> = Vec::new();
    if h.api_version >= 6 {
        for t in &req.topics {
            match &t.name {
                Some(n) => wanted.push((Some(n.0.to_string()), t.topic_id, Some(n.0.to_string()))),
                None => {
                    let resolved = meta.topic_by_id(&t.topic_id).map(|(n, _)| n.clone());
                    wanted.push((None, t.topic_id, resolved));
                }
            }
        }
    } else {
        for n in &req.topic_names {
            wanted.push((
                Some(n.0.to_string()),
                uuid::Uuid::nil(),
                Some(n.0.to_string()),
            ));
        }
    }
    let names: Vec<String> = wanted.iter().filter_map(|(_, _, r)| r.clone()).collect();
    let results = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::DeleteTopics { names, reply })
        })
        .await;
    super::encode(&h, &response(wanted, results))
}

/// (requested name, requested id, resolved name)
type Wanted = (Option<String>, uuid::Uuid, Option<String>);

/// The response to the `wanted` topics given the controller's results for the resolved ones, in
/// order (`None`: no answer in time).
fn response(
    wanted: Vec<Wanted>,
    results: Option<Vec<Result<uuid::Uuid, (i16, String)>>>,
) -> DeleteTopicsResponse {
    let mut results = results.map(|v| v.into_iter());
    let mut resp = DeleteTopicsResponse::default();
    resp.responses = wanted
        .into_iter()
        .map(|(name, id, resolved)| {
            let mut r = DeletableTopicResult::default();
            r.name = name.map(|n| TopicName(super::str_bytes(&n)));
            r.topic_id = id;
            if resolved.is_none() {
                r.error_code = errors::UNKNOWN_TOPIC_ID;
                return r;
            }
            match results.as_mut().and_then(|it| it.next()) {
                Some(Ok(tid)) => r.topic_id = tid,
                Some(Err((code, msg))) => {
                    r.error_code = code;
                    r.error_message = Some(super::str_bytes(&msg));
                }
                None => r.error_code = errors::REQUEST_TIMED_OUT,
            }
            r
        })
        .collect();
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let id = uuid::Uuid::from_u128(9);
    let by_name = |n: &str| (Some(n.to_string()), uuid::Uuid::nil(), Some(n.to_string()));
    let mut wanted = vec![by_name("deleted"), by_name("failed")];
    if version >= 6 {
        wanted.push((None, id, Some("by-id".to_string())));
        wanted.push((None, uuid::Uuid::from_u128(10), None));
    }
    let results = vec![
        Ok(id),
        Err((
            errors::UNKNOWN_TOPIC_OR_PARTITION,
            "no such topic".to_string(),
        )),
        Ok(id),
    ];
    vec![
        kafka_protocol::messages::ResponseKind::DeleteTopics(response(
            wanted.clone(),
            Some(results),
        )),
        kafka_protocol::messages::ResponseKind::DeleteTopics(response(wanted, None)),
    ]
}
