//! OffsetFetch (v1–9; several groups per request from v8, member id/epoch from v9). Groups are
//! sent to their coordinator shards, one message per shard, and reassembled in request order.

use std::rc::Rc;

use kafka_protocol::messages::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::coordinators::groups::{FetchGroup, FetchedGroup, GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: OffsetFetchRequest,
) -> ResponseFrame {
    let v = h.api_version;
    let groups: Vec<FetchGroup> = if v >= 8 {
        req.groups
            .iter()
            .map(|g| FetchGroup {
                group_id: g.group_id.0.to_string(),
                member_id: g
                    .member_id
                    .as_ref()
                    .map(|m| m.to_string())
                    .filter(|m| !m.is_empty()),
                member_epoch: g.member_epoch,
                topics: g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                }),
            })
            .collect()
    } else {
        vec![FetchGroup {
            group_id: req.group_id.0.to_string(),
            member_id: None,
            member_epoch: -1,
            topics: req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            }),
        }]
    };
    let keys: Vec<(String, FetchGroup)> = groups
        .iter()
        .map(|g| (g.group_id.clone(), g.clone()))
        .collect();
    let replies = crate::coordinators::groups::per_owner(&state, &keys, |batch, reply| {
        ShardMessage::group(GroupMessage::Fetch {
            groups: batch,
            reply,
        })
    })
    .await;
    let results: Vec<FetchedGroup> = replies
        .into_iter()
        .map(|r| {
            r.unwrap_or(FetchedGroup {
                error_code: codes::NOT_COORDINATOR,
                topics: Vec::new(),
            })
        })
        .collect();
    super::encode(&h, &response(v, &groups, results))
}

/// The response to the requested `groups` given what their coordinators returned, in order.
fn response(v: i16, groups: &[FetchGroup], results: Vec<FetchedGroup>) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if v >= 8 {
        for (g, r) in groups.iter().zip(results) {
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = str_bytes(&g.group_id).into();
            gr.error_code = r.error_code;
            for (t, parts) in r.topics {
                let mut tr = OffsetFetchResponseTopics::default();
                tr.name = str_bytes(&t).into();
                for p in parts {
                    let mut pr = OffsetFetchResponsePartitions::default();
                    pr.partition_index = p.partition;
                    pr.committed_offset = p.offset;
                    pr.committed_leader_epoch = p.leader_epoch;
                    pr.metadata = Some(str_bytes(&p.metadata));
                    pr.error_code = p.error_code;
                    tr.partitions.push(pr);
                }
                gr.topics.push(tr);
            }
            resp.groups.push(gr);
        }
    } else {
        let r = results.into_iter().next().unwrap_or_default();
        if v >= 2 {
            resp.error_code = r.error_code;
        }
        let topics = if r.error_code != codes::NONE && v < 2 {
            // v1 has no group-level error: report it on every requested partition.
            groups[0]
                .topics
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| crate::coordinators::groups::FetchedPartition {
                            partition: p,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                            error_code: r.error_code,
                        })
                        .collect();
                    (t, parts)
                })
                .collect()
        } else {
            r.topics
        };
        for (t, parts) in topics {
            let mut tr = OffsetFetchResponseTopic::default();
            tr.name = str_bytes(&t).into();
            for p in parts {
                let mut pr = OffsetFetchResponsePartition::default();
                pr.partition_index = p.partition;
                pr.committed_offset = p.offset;
                pr.committed_leader_epoch = p.leader_epoch;
                pr.metadata = Some(str_bytes(&p.metadata));
                pr.error_code = p.error_code;
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
    }
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use crate::coordinators::groups::FetchedPartition;
    let group = |id: &str| FetchGroup {
        group_id: id.to_string(),
        member_id: Some("m".to_string()),
        member_epoch: 3,
        topics: Some(vec![("t".to_string(), vec![0, 1])]),
    };
    let fetched = FetchedGroup {
        error_code: codes::NONE,
        topics: vec![(
            "t".to_string(),
            vec![
                FetchedPartition {
                    partition: 0,
                    offset: 42,
                    leader_epoch: 5,
                    metadata: "meta".to_string(),
                    error_code: codes::NONE,
                },
                FetchedPartition {
                    partition: 1,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error_code: crate::kafka::errors::UNKNOWN_TOPIC_OR_PARTITION,
                },
            ],
        )],
    };
    let failed = FetchedGroup {
        error_code: codes::NOT_COORDINATOR,
        topics: Vec::new(),
    };
    let mut out = vec![kafka_protocol::messages::ResponseKind::OffsetFetch(
        response(version, &[group("g")], vec![fetched.clone()]),
    )];
    out.push(kafka_protocol::messages::ResponseKind::OffsetFetch(
        response(version, &[group("g")], vec![failed.clone()]),
    ));
    if version >= 8 {
        let r = response(version, &[group("a"), group("b")], vec![fetched, failed]);
        out.push(kafka_protocol::messages::ResponseKind::OffsetFetch(r));
    }
    out
}
