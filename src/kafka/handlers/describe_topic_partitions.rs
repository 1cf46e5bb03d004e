//! DescribeTopicPartitions (API 75, KIP-966): topics and their partitions, paged. The response
//! holds at most `response_partition_limit` partitions (capped by the broker's
//! `max.request.partition.size.limit`, default 2000); when more remain, `next_cursor` names the
//! topic and partition to continue from, and the client sends the same request again with that
//! cursor. Topics are answered in name order from the cursor on; an empty topic list means every
//! topic (then unknown names cannot occur). As Kafka 3.8+ serves it.

use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use super::acl_operation;
use crate::kafka::errors;
use crate::metadata::{ClusterMetadata, validate_topic_name};
use crate::shard_state::ShardState;

/// Kafka's internal topics (`Topic.isInternal`).
pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeTopicPartitionsRequest,
) -> ResponseFrame {
    let broker = super::LocalBroker::of(&state.config);
    // The broker's cap (max.request.partition.size.limit); the request's limit applies below it.
    let cap = state.config.max_request_partition_size_limit;
    let resp = build_response(&broker, &state.metadata(), &req, cap);
    for t in &resp.topics {
        if t.error_code != errors::NONE {
            state.metrics.error(h.api_key, t.error_code);
        }
    }
    super::encode(&h, &resp)
}

/// The response to `req` from `meta`, at most `max_partitions` (>= 1) partitions per response.
pub(crate) fn build_response(
    broker: &super::LocalBroker,
    meta: &ClusterMetadata,
    req: &DescribeTopicPartitionsRequest,
    max_partitions: i32,
) -> DescribeTopicPartitionsResponse {
    assert!(max_partitions >= 1, "partition limit {max_partitions}");
    let mut resp = DescribeTopicPartitionsResponse::default();
    let all_topics = req.topics.is_empty();
    let cursor = req.cursor.as_ref();
    let cursor_topic = cursor.map_or("", |c| c.topic_name.0.as_str());
    let mut names: Vec<&str> = if all_topics {
        meta.topics.keys().map(String::as_str).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.as_str()).collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort_unstable();
    names.dedup();
    let bad_cursor = match cursor {
        Some(c) if !all_topics && !names.contains(&c.topic_name.0.as_str()) => Some(format!(
            "the topic list should contain the cursor topic {}",
            c.topic_name.0.as_str()
        )),
        Some(c) if c.partition_index < 0 => Some(format!(
            "the cursor partition must be valid: {}",
            c.partition_index
        )),
        _ => None,
    };
    if let Some(why) = bad_cursor {
        // Kafka fails the whole request (InvalidRequestException): every requested topic gets
        // INVALID_REQUEST.
        log::info!("DescribeTopicPartitions refused: {why}");
        for t in &req.topics {
            let mut out = DescribeTopicPartitionsResponseTopic::default();
            out.error_code = errors::INVALID_REQUEST;
            out.name = Some(t.name.clone());
            out.topic_authorized_operations = acl_operation::NOT_REQUESTED;
            resp.topics.push(out);
        }
        return resp;
    }
    let limit = req.response_partition_limit.clamp(1, max_partitions) as usize;
    let mut remaining = limit;
    for name in names {
        if remaining == 0 {
            // Everything before is complete; continue at the start of this topic.
            let mut next = Cursor::default();
            next.topic_name = TopicName(super::str_bytes(name));
            next.partition_index = 0;
            resp.next_cursor = Some(next);
            break;
        }
        let mut out = DescribeTopicPartitionsResponseTopic::default();
        out.name = Some(TopicName(super::str_bytes(name)));
        out.is_internal = is_internal_topic(name);
        out.topic_authorized_operations = acl_operation::TOPIC_ALL;
        let Some(tm) = meta.topic(name) else {
            // Only named topics can be unknown (never with the all-topics form).
            out.error_code = if validate_topic_name(name).is_err() {
                errors::INVALID_TOPIC_EXCEPTION
            } else {
                errors::UNKNOWN_TOPIC_OR_PARTITION
            };
            resp.topics.push(out);
            continue;
        };
        out.topic_id = tm.id;
        let start = match cursor {
            Some(c) if c.topic_name.0.as_str() == name => c.partition_index,
            _ => 0,
        };
        let upper = i64::from(tm.partitions).min(i64::from(start) + remaining as i64) as i32;
        for p in start..upper {
            let mut part = DescribeTopicPartitionsResponsePartition::default();
            part.partition_index = p;
            let leader = crate::routing::live_leader(meta, tm, p, broker.node_id);
            if leader == crate::metadata::NO_LEADER {
                part.error_code = errors::LEADER_NOT_AVAILABLE;
            }
            part.leader_id = BrokerId(leader);
            part.leader_epoch = tm.leader_epoch(p);
            let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect();
            match tm.partition_meta(p) {
                Some(pm) => {
                    part.replica_nodes = ids(&pm.replicas);
                    part.isr_nodes = ids(&pm.isr);
                    part.offline_replicas = ids(&crate::routing::offline_replicas(meta, tm, p));
                }
                None => {
                    part.replica_nodes = vec![BrokerId(broker.node_id)];
                    part.isr_nodes = vec![BrokerId(broker.node_id)];
                }
            }
            // No ELR (KIP-966) on a single broker: empty, not unknown.
            part.eligible_leader_replicas = Some(Vec::new());
            part.last_known_elr = Some(Vec::new());
            out.partitions.push(part);
        }
        remaining -= out.partitions.len();
        resp.topics.push(out);
        if upper < tm.partitions {
            let mut next = Cursor::default();
            next.topic_name = TopicName(super::str_bytes(name));
            next.partition_index = upper;
            resp.next_cursor = Some(next);
            break;
        }
    }
    resp
}

#[cfg(test)]
fn request(
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsRequest {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let mut req = DescribeTopicPartitionsRequest::default();
    req.topics = topics
        .iter()
        .map(|n| {
            let mut t = TopicRequest::default();
            t.name = TopicName(super::str_bytes(n));
            t
        })
        .collect();
    req.response_partition_limit = limit;
    req.cursor = cursor.map(|(n, p)| {
        let mut c = Cursor::default();
        c.topic_name = TopicName(super::str_bytes(n));
        c.partition_index = p;
        c
    });
    req
}

#[cfg(test)]
fn cluster() -> ClusterMetadata {
    let mut meta = crate::kafka::handlers::test_fixtures::cluster(); // "orders": 3 partitions
    meta.topics.insert(
        "alpha".into(),
        crate::metadata::TopicMeta::new(uuid::Uuid::from_u128(5), 2, Default::default()),
    );
    meta
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let meta = cluster();
    let broker = crate::kafka::handlers::test_fixtures::broker();
    [
        request(&[], 2000, None),
        request(&["orders", "missing", "bad/name"], 2000, None),
        request(&["orders", "alpha"], 1, Some(("alpha", 1))),
        request(&["orders"], 10, Some(("zzz", 0))),
    ]
    .iter()
    .flat_map(|r| {
        [
            &meta,
            &crate::kafka::handlers::test_fixtures::multi_broker(),
        ]
        .map(|m| {
            kafka_protocol::messages::ResponseKind::DescribeTopicPartitions(build_response(
                &broker, m, r, 2000,
            ))
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(topics: &[&str], limit: i32, max: i32) -> Vec<Vec<(String, Vec<i32>)>> {
        let meta = cluster();
        let broker = crate::kafka::handlers::test_fixtures::broker();
        let mut cursor: Option<(String, i32)> = None;
        let mut out = Vec::new();
        loop {
            let req = request(
                topics,
                limit,
                cursor.as_ref().map(|(n, p)| (n.as_str(), *p)),
            );
            let r = build_response(&broker, &meta, &req, max);
            out.push(
                r.topics
                    .iter()
                    .map(|t| {
                        (
                            t.name.as_ref().unwrap().0.to_string(),
                            t.partitions.iter().map(|p| p.partition_index).collect(),
                        )
                    })
                    .collect(),
            );
            match r.next_cursor {
                Some(c) => cursor = Some((c.topic_name.0.to_string(), c.partition_index)),
                None => return out,
            }
            assert!(out.len() < 20, "cursor does not advance");
        }
    }

    fn owned(v: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
        v.iter().map(|(n, p)| (n.to_string(), p.to_vec())).collect()
    }

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        crate::kafka::handlers::test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::DescribeTopicPartitions,
            guard_responses,
        );
    }

    #[test]
    fn all_topics_in_one_page() {
        assert_eq!(
            pages(&[], 2000, 2000),
            vec![owned(&[("alpha", &[0, 1]), ("orders", &[0, 1, 2])])]
        );
    }

    #[test]
    fn cursor_pages_through_partitions_and_topics() {
        assert_eq!(
            pages(&[], 2, 2000),
            vec![
                owned(&[("alpha", &[0, 1])]),
                owned(&[("orders", &[0, 1])]),
                owned(&[("orders", &[2])]),
            ]
        );
        // The broker's cap applies below the request's limit.
        assert_eq!(pages(&["orders"], 100, 1).len(), 3);
        // A limit of 0 or less still makes progress (at least one partition per page).
        assert_eq!(pages(&["alpha"], 0, 2000).len(), 2);
    }

    #[test]
    fn named_topics_sorted_with_errors_and_epochs() {
        let meta = cluster();
        let broker = crate::kafka::handlers::test_fixtures::broker();
        let r = build_response(
            &broker,
            &meta,
            &request(&["orders", "missing", "alpha"], 2000, None),
            2000,
        );
        let names: Vec<&str> = r
            .topics
            .iter()
            .map(|t| t.name.as_ref().unwrap().0.as_str())
            .collect();
        assert_eq!(names, ["alpha", "missing", "orders"]);
        assert_eq!(r.topics[1].error_code, errors::UNKNOWN_TOPIC_OR_PARTITION);
        assert_eq!(r.topics[2].partitions[2].leader_epoch, 3);
        assert_eq!(r.topics[2].topic_id, meta.topics["orders"].id);
        assert_eq!(
            r.topics[2].topic_authorized_operations,
            acl_operation::TOPIC_ALL
        );
        assert!(r.next_cursor.is_none());
    }

    #[test]
    fn cursor_outside_the_topic_list_is_invalid() {
        let meta = cluster();
        let broker = crate::kafka::handlers::test_fixtures::broker();
        let r = build_response(
            &broker,
            &meta,
            &request(&["orders"], 10, Some(("alpha", 0))),
            2000,
        );
        assert_eq!(r.topics.len(), 1);
        assert_eq!(r.topics[0].error_code, errors::INVALID_REQUEST);
        let r = build_response(
            &broker,
            &meta,
            &request(&["orders"], 10, Some(("orders", -1))),
            2000,
        );
        assert_eq!(r.topics[0].error_code, errors::INVALID_REQUEST);
    }

    #[test]
    fn cluster_mode_partitions_from_the_placement() {
        let meta = crate::kafka::handlers::test_fixtures::multi_broker();
        let broker = crate::kafka::handlers::test_fixtures::broker();
        let r = build_response(&broker, &meta, &request(&["orders"], 2000, None), 2000);
        let got: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
                (
                    p.error_code,
                    p.leader_id.0,
                    p.leader_epoch,
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                    ids(&p.offline_replicas),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1, 4, vec![1, 2, 3], vec![1, 2], vec![3]),
                (0, 2, 6, vec![2, 1], vec![2, 1], vec![]),
                (
                    errors::LEADER_NOT_AVAILABLE,
                    -1,
                    7,
                    vec![3, 4],
                    vec![3],
                    vec![3, 4]
                ),
            ]
        );
    }
}
