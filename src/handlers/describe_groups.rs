//! DescribeGroups (v0–6): state, protocol, members with their subscription metadata and
//! assignment. KIP-848 groups are described in the same (classic "consumer" protocol) format.

use std::rc::Rc;

use kafka_protocol::messages::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{DescribeGroupsResponse, DescribedGroup};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::groups::{GroupMessage, codes};
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
    let replies = crate::groups::per_owner(&state, &keys, |batch, reply| {
        ShardMessage::group(GroupMessage::Describe {
            version,
            groups: batch,
            reply,
        })
    })
    .await;
    let mut resp = DescribeGroupsResponse::default();
    for ((id, _), r) in keys.iter().zip(replies) {
        let mut d = r.unwrap_or_else(|| {
            let mut d = DescribedGroup::default();
            d.group_id = str_bytes(id).into();
            d.error_code = codes::NOT_COORDINATOR;
            d
        });
        // As Kafka: only groups described without an error carry the bitfield (v3+).
        d.authorized_operations = super::authorized_ops::field(
            req.include_authorized_operations && d.error_code == 0,
            super::authorized_ops::GROUP,
        );
        resp.groups.push(d);
    }
    super::encode(&h, &resp)
}
