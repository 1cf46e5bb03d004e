//! DescribeGroups (v0–6): state, protocol, members with their subscription metadata and
//! assignment. KIP-848 groups are described in the same (classic "consumer" protocol) format.

use std::rc::Rc;

use kafka_protocol::messages::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{DescribeGroupsResponse, DescribedGroup};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeGroupsRequest,
) -> ResponseFrame {
    let version = h.api_version;
    let keys: Vec<(String, String)> = req
        .groups
        .iter()
        .map(|g| (g.0.to_string(), g.0.to_string()))
        .collect();
    let replies = crate::coordinators::groups::per_owner(&state, &keys, |batch, reply| {
        ShardMessage::group(GroupMessage::Describe {
            version,
            groups: batch,
            reply,
        })
    })
    .await;
    let mut resp = DescribeGroupsResponse::default();
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
    let mut resp = DescribeGroupsResponse::default();
    resp.groups = crate::coordinators::groups::guard::described_groups(version);
    resp.groups.push(not_coordinator("elsewhere"));
    vec![kafka_protocol::messages::ResponseKind::DescribeGroups(resp)]
}
