//! OffsetCommit (v2–9): validated against the group generation (classic) or member epoch
//! (KIP-848), written to the group's `__consumer_offsets` partition and answered once that
//! write is fdatasynced.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: OffsetCommitRequest,
) -> ResponseFrame {
    let group = req.group_id.0.to_string();
    let version = h.api_version;
    let topics: Vec<(TopicName, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let resp = crate::coordinators::groups::call_coordinator(&state, &group, |reply| {
        ShardMessage::group(GroupMessage::Commit {
            version,
            req,
            reply,
        })
    })
    .await
    .unwrap_or_else(|| not_coordinator(topics));
    super::encode(&h, &resp)
}

/// The answer when the coordinator shard is gone: NOT_COORDINATOR on every partition.
fn not_coordinator(topics: Vec<(TopicName, Vec<i32>)>) -> OffsetCommitResponse {
    let mut r = OffsetCommitResponse::default();
    for (name, parts) in topics {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = name;
        for p in parts {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p;
            pr.error_code = codes::NOT_COORDINATOR;
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut out = crate::coordinators::groups::guard::commit_responses(version);
    out.push(not_coordinator(vec![(
        super::str_bytes("t").into(),
        vec![0, 1],
    )]));
    out.into_iter()
        .map(kafka_protocol::messages::ResponseKind::OffsetCommit)
        .collect()
}
