//! AlterPartitionReassignments (API 45, v0-1) and ListPartitionReassignments (API 46, v0):
//! KIP-455 replica moves, decided by the cluster controller
//! (`cluster/controller/reassignment.rs`) and answered per partition with Kafka's codes
//! (UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT, INVALID_REPLICATION_FACTOR,
//! NO_REASSIGNMENT_IN_PROGRESS). A whole-request failure (NOT_CONTROLLER while the quorum has
//! no leader, a timeout) is the top-level error code; v1's `allow_replication_factor_change`
//! (v0: always allowed) is echoed in the response.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    ListPartitionReassignmentsResponse, OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{ControllerRequest, ReassignmentList, ShardMessage};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

type Change = (String, i32, Option<Vec<i32>>);
type AlterAnswer = crate::messages::ReassignmentResults;

pub async fn handle_alter(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: AlterPartitionReassignmentsRequest,
) -> ResponseFrame {
    let allow = h.api_version < 1 || req.allow_replication_factor_change;
    let changes: Vec<Change> = req
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions.iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                )
            })
        })
        .collect();
    let answer = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::AlterPartitionReassignments {
                changes: changes.clone(),
                allow_replication_factor_change: allow,
                reply,
            })
        })
        .await;
    super::encode(&h, &alter_response(&changes, answer.as_ref(), allow))
}

/// The response for `changes` given the controller's answer (None: no answer).
fn alter_response(
    changes: &[Change],
    answer: Option<&AlterAnswer>,
    allow: bool,
) -> AlterPartitionReassignmentsResponse {
    let whole = match answer {
        Some(Ok(r)) if r.len() == changes.len() => None,
        Some(Ok(r)) => Some((
            errors::UNKNOWN_SERVER_ERROR,
            format!("{} answers for {} partitions", r.len(), changes.len()),
        )),
        Some(Err(e)) => Some(e.clone()),
        None => Some((
            errors::REQUEST_TIMED_OUT,
            "the controller did not answer".to_string(),
        )),
    };
    let mut by_topic: BTreeMap<&str, Vec<ReassignablePartitionResponse>> = BTreeMap::new();
    for (i, (topic, partition, _)) in changes.iter().enumerate() {
        let (code, message) = match (&whole, answer) {
            (Some((c, m)), _) => (*c, Some(m.clone())),
            (None, Some(Ok(r))) => match &r[i] {
                Ok(()) => (0, None),
                Err((c, m)) => (*c, Some(m.clone())),
            },
            (None, _) => unreachable!("no whole error means an answer per change"),
        };
        let mut p = ReassignablePartitionResponse::default();
        p.partition_index = *partition;
        p.error_code = code;
        p.error_message = message.map(|m| super::str_bytes(&m));
        by_topic.entry(topic).or_default().push(p);
    }
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.allow_replication_factor_change = allow;
    if let Some((code, message)) = whole {
        resp.error_code = code;
        resp.error_message = Some(super::str_bytes(&message));
    }
    resp.responses = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = ReassignableTopicResponse::default();
            t.name = TopicName(super::str_bytes(topic));
            t.partitions = partitions;
            t
        })
        .collect();
    resp
}

pub async fn handle_list(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: ListPartitionReassignmentsRequest,
) -> ResponseFrame {
    let partitions: Option<Vec<(String, i32)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partition_indexes.iter().map(move |&p| (name.clone(), p))
            })
            .collect()
    });
    let answer = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::ListPartitionReassignments {
                partitions,
                reply,
            })
        })
        .await;
    super::encode(&h, &list_response(answer.as_ref()))
}

fn brokers(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&b| BrokerId(b)).collect()
}

fn list_response(answer: Option<&ReassignmentList>) -> ListPartitionReassignmentsResponse {
    let mut resp = ListPartitionReassignmentsResponse::default();
    let ongoing = match answer {
        Some(Ok(list)) => list,
        Some(Err((code, message))) => {
            resp.error_code = *code;
            resp.error_message = Some(super::str_bytes(message));
            return resp;
        }
        None => {
            resp.error_code = errors::REQUEST_TIMED_OUT;
            resp.error_message = Some(super::str_bytes("the controller did not answer"));
            return resp;
        }
    };
    let mut by_topic: BTreeMap<&str, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for r in ongoing {
        let mut p = OngoingPartitionReassignment::default();
        p.partition_index = r.partition;
        p.replicas = brokers(&r.replicas);
        p.adding_replicas = brokers(&r.adding_replicas);
        p.removing_replicas = brokers(&r.removing_replicas);
        by_topic.entry(&r.topic).or_default().push(p);
    }
    resp.topics = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OngoingTopicReassignment::default();
            t.name = TopicName(super::str_bytes(topic));
            t.partitions = partitions;
            t
        })
        .collect();
    resp
}

#[cfg(test)]
fn sample_changes() -> Vec<Change> {
    vec![
        ("t".to_string(), 0, Some(vec![1, 2, 3])),
        ("t".to_string(), 1, None),
        ("u".to_string(), 0, Some(vec![])),
    ]
}

#[cfg(test)]
pub(crate) fn guard_responses_alter(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let changes = sample_changes();
    let answered: AlterAnswer = Ok(vec![
        Ok(()),
        Err((85, "no reassignment of t-1 is in progress".to_string())),
        Err((39, "empty replica list".to_string())),
    ]);
    let refused: AlterAnswer = Err((41, "no controller".to_string()));
    [
        alter_response(&changes, Some(&answered), true),
        alter_response(&changes, Some(&refused), false),
        alter_response(&changes, None, true),
    ]
    .into_iter()
    .map(kafka_protocol::messages::ResponseKind::AlterPartitionReassignments)
    .collect()
}

#[cfg(test)]
pub(crate) fn guard_responses_list(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use crate::cluster::controller::reassignment::OngoingReassignment;
    let ongoing: ReassignmentList = Ok(vec![OngoingReassignment {
        topic: "t".into(),
        partition: 0,
        replicas: vec![3, 1],
        adding_replicas: vec![3],
        removing_replicas: vec![1],
    }]);
    [
        list_response(Some(&ongoing)),
        list_response(Some(&Err((41, "not controller".to_string())))),
        list_response(None),
    ]
    .into_iter()
    .map(kafka_protocol::messages::ResponseKind::ListPartitionReassignments)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_response_groups_per_topic_and_spreads_a_whole_error() {
        let changes = sample_changes();
        let answered: AlterAnswer = Ok(vec![Ok(()), Err((85, "none".into())), Ok(())]);
        let r = alter_response(&changes, Some(&answered), true);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.responses.len(), 2);
        let codes: Vec<i16> = r
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        assert_eq!(codes, vec![0, 85, 0]);
        let r = alter_response(&changes, None, false);
        assert_eq!(r.error_code, errors::REQUEST_TIMED_OUT);
        assert!(!r.allow_replication_factor_change);
        assert!(
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .all(|p| p.error_code == errors::REQUEST_TIMED_OUT)
        );
    }

    #[test]
    fn list_response_reports_adding_and_removing_replicas() {
        let r = guard_responses_list(0);
        let kafka_protocol::messages::ResponseKind::ListPartitionReassignments(l) = &r[0] else {
            panic!("a list response");
        };
        let p = &l.topics[0].partitions[0];
        assert_eq!(p.adding_replicas, vec![BrokerId(3)]);
        assert_eq!(p.removing_replicas, vec![BrokerId(1)]);
        let kafka_protocol::messages::ResponseKind::ListPartitionReassignments(e) = &r[1] else {
            panic!("a list response");
        };
        assert_eq!(e.error_code, 41);
        assert!(e.topics.is_empty());
    }
}
