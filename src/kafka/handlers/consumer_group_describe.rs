//! ConsumerGroupDescribe (v0–1): KIP-848 groups with epochs, members, current and target
//! assignments. Classic groups answer GROUP_ID_NOT_FOUND (clients fall back to DescribeGroups).

use std::rc::Rc;

use kafka_protocol::messages::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_describe_response::{
    ConsumerGroupDescribeResponse, DescribedGroup,
};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: ConsumerGroupDescribeRequest,
) -> ResponseFrame {
    let keys: Vec<(String, String)> = req
        .group_ids
        .iter()
        .map(|g| (g.0.to_string(), g.0.to_string()))
        .collect();
    let replies = crate::coordinators::groups::per_owner(&state, &keys, |batch, reply| {
        ShardMessage::group(GroupMessage::ConsumerDescribe {
            groups: batch,
            reply,
        })
    })
    .await;
    let mut resp = ConsumerGroupDescribeResponse::default();
    for ((id, _), r) in keys.iter().zip(replies) {
        let mut d = r.unwrap_or_else(|| not_coordinator(id));
        // As Kafka: only groups described without an error carry the bitfield.
        d.authorized_operations = if req.include_authorized_operations && d.error_code == 0 {
            super::acl_operation::GROUP_ALL
        } else {
            super::acl_operation::NOT_REQUESTED
        };
        resp.groups.push(d);
    }
    super::encode(&h, &resp)
}

/// The entry of a group whose coordinator shard is gone (shutting down).
fn not_coordinator(id: &str) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    d.group_id = str_bytes(id).into();
    d.error_code = codes::NOT_COORDINATOR;
    d
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut resp = ConsumerGroupDescribeResponse::default();
    resp.groups = crate::coordinators::groups::guard::consumer_describe(version);
    resp.groups.push(not_coordinator("elsewhere"));
    vec![kafka_protocol::messages::ResponseKind::ConsumerGroupDescribe(resp)]
}
