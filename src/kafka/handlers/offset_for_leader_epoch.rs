//! OffsetForLeaderEpoch (API 23, v2–4): for each partition and leader epoch, the largest epoch
//! at or below it that this log has and the offset where that epoch ends (the next epoch's
//! start, or the log end for the latest). Clients use it to validate their position after a
//! leader change (KIP-320), followers to find where to truncate (KIP-279). A request naming a
//! current leader epoch is fenced against the partition's (FENCED_LEADER_EPOCH /
//! UNKNOWN_LEADER_EPOCH); a broker that does not lead the partition answers
//! NOT_LEADER_OR_FOLLOWER. Split by owning shard, reassembled in request order.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::errors;
use crate::messages::{EpochQuery, ShardMessage};
use crate::shard_state::ShardState;

/// (error code, leader epoch, end offset) of one partition.
pub type EpochAnswer = (i16, i32, i64);

fn failed(code: i16) -> EpochAnswer {
    (code, -1, -1)
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: OffsetForLeaderEpochRequest,
) -> ResponseFrame {
    let meta = state.metadata();
    let mut queries: Vec<(Option<usize>, EpochQuery)> = Vec::new();
    let mut answers: Vec<EpochAnswer> = Vec::new();
    for t in &req.topics {
        let topic: Arc<str> = Arc::from(t.topic.0.as_str());
        for p in &t.partitions {
            let early = crate::routing::leader_refusal(
                &meta,
                state.config.node_id,
                &topic,
                p.partition,
                p.current_leader_epoch,
            );
            let owner = (early == errors::NONE).then(|| state.owner(&topic, p.partition));
            answers.push(failed(if owner.is_some() {
                errors::REQUEST_TIMED_OUT
            } else {
                early
            }));
            queries.push((
                owner,
                EpochQuery {
                    topic: topic.clone(),
                    partition: p.partition,
                    leader_epoch: p.leader_epoch,
                },
            ));
        }
    }
    state
        .fan_out(queries, &mut answers, |items, reply| {
            ShardMessage::OffsetForLeaderEpoch { items, reply }
        })
        .await;
    let topics = super::answers_by_topic(
        &req.topics,
        |t| (&t.topic, &t.partitions[..]),
        |p| p.partition,
        answers,
    );
    super::encode(&h, &build_response(&topics))
}

/// The response for per-topic, per-partition answers, in request order.
fn build_response(topics: &[(TopicName, Vec<(i32, EpochAnswer)>)]) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for (name, parts) in topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = name.clone();
        for &(partition, (code, epoch, end)) in parts {
            let mut e = EpochEndOffset::default();
            e.partition = partition;
            e.error_code = code;
            e.leader_epoch = epoch;
            e.end_offset = end;
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Every response shape the handler builds: answers, fenced and unknown epochs, not-leader,
/// unknown partition (see `version_guard`).
#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let topics = vec![
        (
            TopicName(super::str_bytes("orders")),
            vec![
                (0, (errors::NONE, 3, 120)),
                (1, (errors::NONE, -1, -1)),
                (2, failed(errors::FENCED_LEADER_EPOCH)),
                (3, failed(errors::UNKNOWN_LEADER_EPOCH)),
                (4, failed(errors::NOT_LEADER_OR_FOLLOWER)),
            ],
        ),
        (
            TopicName(super::str_bytes("missing")),
            vec![(0, failed(errors::UNKNOWN_TOPIC_OR_PARTITION))],
        ),
    ];
    let mut throttled = build_response(&topics);
    throttled.throttle_time_ms = 10;
    vec![
        kafka_protocol::messages::ResponseKind::OffsetForLeaderEpoch(build_response(&topics)),
        kafka_protocol::messages::ResponseKind::OffsetForLeaderEpoch(throttled),
    ]
}

/// The owner shard's half.
pub fn handle_local(state: &Rc<ShardState>, items: &[EpochQuery]) -> Vec<EpochAnswer> {
    let meta = state.metadata();
    items
        .iter()
        .map(|q| {
            let log = state.partitions.get(&q.topic, q.partition);
            let refusal = crate::routing::owner_refusal(
                &meta,
                state.config.node_id,
                &q.topic,
                q.partition,
                log.is_some(),
            );
            let (None, Some(log)) = (refusal, log) else {
                return failed(refusal.unwrap_or(errors::UNKNOWN_TOPIC_OR_PARTITION));
            };
            let current = meta
                .topic(&q.topic)
                .map_or(-1, |t| t.leader_epoch(q.partition));
            answer(
                log.last_epoch(),
                current,
                q.leader_epoch,
                || log.end_offset_for_epoch(q.leader_epoch),
                log.log_end_offset(),
            )
        })
        .collect()
}

/// The answer for `requested` given the log's last batch epoch (`last`, -1 with none) and the
/// partition's current leader epoch: a log that has no epoch yet (nothing written in any
/// epoch) is all in the current one.
fn answer(
    last: i32,
    current: i32,
    requested: i32,
    lookup: impl FnOnce() -> (i32, i64),
    log_end: i64,
) -> EpochAnswer {
    if last < 0 {
        if requested >= current && current >= 0 {
            return (errors::NONE, current, log_end);
        }
        return (errors::NONE, -1, -1);
    }
    let (epoch, end) = lookup();
    (errors::NONE, epoch, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_log_is_all_in_the_current_epoch() {
        assert_eq!(answer(-1, 3, 3, || unreachable!(), 0), (0, 3, 0));
        assert_eq!(answer(-1, 3, 2, || unreachable!(), 0), (0, -1, -1));
        assert_eq!(answer(2, 3, 1, || (1, 40), 90), (0, 1, 40));
    }

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        crate::kafka::handlers::test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::OffsetForLeaderEpoch,
            guard_responses,
        );
    }
}
