//! CreateTopics: validated and applied by the controller; replies once every shard has opened
//! the new partitions. A manual replica assignment is checked here against the live brokers;
//! the response reports each topic's partitions and replication factor as created.

use std::rc::Rc;

use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::errors;
use crate::messages::{ControllerRequest, CreatedTopic, NewTopic, ShardMessage, TopicError};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

/// The (partitions, replication factor) a manual replica assignment asks for, checked as
/// Kafka's controller does (ReplicationControlManager): numPartitions and replicationFactor
/// must then be -1, partition indexes 0..n without gaps or repeats, and every partition's
/// replicas non-empty, distinct, on live brokers, and as many as the first partition's.
fn from_assignments(t: &CreatableTopic, live_brokers: &[i32]) -> Result<(i32, i16), TopicError> {
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err((
            errors::INVALID_REQUEST,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both \
             cannot be used at the same time."
                .to_string(),
        ));
    }
    let bad = |m: String| Err((errors::INVALID_REPLICA_ASSIGNMENT, m));
    let mut seen = std::collections::BTreeSet::new();
    let mut replicas = None;
    for a in &t.assignments {
        if !seen.insert(a.partition_index) {
            return bad(format!(
                "Found multiple manual partition assignments for partition {}",
                a.partition_index
            ));
        }
        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if ids.is_empty() {
            return bad("The manual partition assignment includes an empty replica list.".into());
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return bad(format!(
                    "The manual partition assignment includes the broker {id} more than once."
                ));
            }
            if !live_brokers.contains(id) {
                return bad(format!(
                    "The manual partition assignment includes broker {id}, but no such broker is \
                     registered."
                ));
            }
        }
        match replicas {
            None => replicas = Some(ids.len()),
            Some(n) if n != ids.len() => {
                return bad(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but \
                     this is not consistent with previous partitions, which have {n} replica(s).",
                    ids.len()
                ));
            }
            Some(_) => {}
        }
    }
    if !seen.iter().copied().eq(0..seen.len() as i32) {
        return bad("partitions should be a consecutive 0-based integer sequence".into());
    }
    let partitions = i32::try_from(seen.len()).unwrap_or(i32::MAX);
    let replicas = i16::try_from(replicas.unwrap_or(0)).unwrap_or(i16::MAX);
    Ok((partitions, replicas))
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: CreateTopicsRequest,
) -> ResponseFrame {
    let live = crate::controller::live_brokers(&state.config);
    // Per topic: what goes to the controller, or the error found here.
    let requested: Vec<(String, Result<NewTopic, TopicError>)> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let counts = if t.assignments.is_empty() {
                Ok((t.num_partitions, t.replication_factor))
            } else {
                from_assignments(t, &live)
            };
            let new = counts.map(|(partitions, replication_factor)| NewTopic {
                name: name.clone(),
                partitions,
                replication_factor,
                configs: t
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect(),
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
    let outcomes = requested
        .into_iter()
        .map(|(name, t)| {
            let outcome = match t {
                Err(e) => Some(Err(e)),
                Ok(_) => results.as_mut().and_then(Iterator::next),
            };
            (name, outcome)
        })
        .collect();
    super::encode(&h, &response(outcomes))
}

/// The response: per topic, what was created or the error (`None`: no answer in time).
fn response(
    outcomes: Vec<(String, Option<Result<CreatedTopic, TopicError>>)>,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    resp.topics = outcomes
        .into_iter()
        .map(|(name, outcome)| {
            let mut r = CreatableTopicResult::default();
            r.name = kafka_protocol::messages::TopicName(super::str_bytes(&name));
            match outcome {
                Some(Ok(created)) => {
                    r.topic_id = created.id;
                    r.num_partitions = created.partitions;
                    r.replication_factor = created.replication_factor;
                    r.configs = Some(Vec::new());
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
    let outcomes = vec![
        ("created".to_string(), Some(Ok(created))),
        (
            "failed".to_string(),
            Some(Err((errors::INVALID_PARTITIONS, "bad count".to_string()))),
        ),
        ("timed-out".to_string(), None),
    ];
    vec![kafka_protocol::messages::ResponseKind::CreateTopics(
        response(outcomes),
    )]
}
