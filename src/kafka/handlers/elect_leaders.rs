//! ElectLeaders (API 43, v0-2): preferred-replica and unclean leader elections, decided by the
//! cluster controller (`cluster/controller/leadership.rs`) and answered per partition with
//! Kafka's codes (ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION). A null partition list elects
//! every partition that needs it. An election type other than 0/1 is INVALID_REQUEST.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::ElectLeadersRequest;
use kafka_protocol::messages::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{ControllerRequest, ElectionAnswer, ShardMessage};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: ElectLeadersRequest,
) -> ResponseFrame {
    // v0 has no election type: preferred.
    let election_type = if h.api_version >= 1 {
        req.election_type
    } else {
        0
    };
    let partitions: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.iter().map(move |&p| (name.clone(), p))
            })
            .collect()
    });
    if !(0..=1).contains(&election_type) {
        log::info!("ElectLeaders: unknown election type {election_type}");
        let refused = Err((
            errors::INVALID_REQUEST,
            format!("unknown election type {election_type}"),
        ));
        return super::encode(
            &h,
            &response(partitions.as_deref(), Some(&refused), h.api_version),
        );
    }
    let answer = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::ElectLeaders {
                election_type,
                partitions: partitions.clone(),
                reply,
            })
        })
        .await;
    super::encode(
        &h,
        &response(partitions.as_deref(), answer.as_ref(), h.api_version),
    )
}

/// The response given the request's partitions and the controller's answer (`None`: no
/// answer; a whole-request error applies to every partition asked for).
fn response(
    asked: Option<&[(String, i32)]>,
    answer: Option<&ElectionAnswer>,
    version: i16,
) -> ElectLeadersResponse {
    let rows: Vec<(String, i32, i16, Option<String>)> = match answer {
        Some(Ok(rows)) => rows.clone(),
        Some(Err((code, msg))) => asked
            .unwrap_or_default()
            .iter()
            .map(|(t, p)| (t.clone(), *p, *code, Some(msg.clone())))
            .collect(),
        None => asked
            .unwrap_or_default()
            .iter()
            .map(|(t, p)| (t.clone(), *p, errors::REQUEST_TIMED_OUT, None))
            .collect(),
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, partition, code, message) in rows {
        let mut r = PartitionResult::default();
        r.partition_id = partition;
        r.error_code = code;
        r.error_message = message.map(|m| super::str_bytes(&m));
        by_topic.entry(topic).or_default().push(r);
    }
    let mut resp = ElectLeadersResponse::default();
    if asked.is_none() && version >= 1 {
        // Every partition was asked for: a whole-request failure has no partitions to carry it
        // (v0 has no top-level error code: the answer is then just empty).
        resp.error_code = match answer {
            Some(Ok(_)) => 0,
            Some(Err((code, _))) => *code,
            None => errors::REQUEST_TIMED_OUT,
        };
    }
    resp.replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partition_result)| {
            let mut r = ReplicaElectionResult::default();
            r.topic = kafka_protocol::messages::TopicName(super::str_bytes(&topic));
            r.partition_result = partition_result;
            r
        })
        .collect();
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let asked = vec![("t".to_string(), 0), ("t".to_string(), 1)];
    let elected: ElectionAnswer = Ok(vec![
        ("t".to_string(), 0, 0, None),
        (
            "t".to_string(),
            1,
            84,
            Some("the preferred replica 1 already leads".to_string()),
        ),
    ]);
    let refused: ElectionAnswer = Err((errors::REQUEST_TIMED_OUT, "no controller".to_string()));
    [
        response(Some(&asked), Some(&elected), version),
        response(Some(&asked), None, version),
        response(None, Some(&refused), version),
    ]
    .into_iter()
    .map(kafka_protocol::messages::ResponseKind::ElectLeaders)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elect_leaders_response_groups_per_topic_and_spreads_a_whole_error() {
        let asked = vec![
            ("a".to_string(), 0),
            ("a".to_string(), 1),
            ("b".to_string(), 0),
        ];
        let refused: ElectionAnswer = Err((41, "not controller".to_string()));
        let r = response(Some(&asked), Some(&refused), 2);
        assert_eq!(r.replica_election_results.len(), 2);
        assert!(
            r.replica_election_results
                .iter()
                .flat_map(|t| &t.partition_result)
                .all(|p| p.error_code == 41)
        );
        let r = response(None, Some(&refused), 2);
        assert_eq!(r.error_code, 41);
        assert!(r.replica_election_results.is_empty());
    }
}
