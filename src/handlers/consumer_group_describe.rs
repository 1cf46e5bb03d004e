//! ConsumerGroupDescribe (v0–1): KIP-848 groups with epochs, members, current and target
//! assignments. Classic groups answer GROUP_ID_NOT_FOUND (clients fall back to DescribeGroups).

use std::rc::Rc;

use kafka_protocol::messages::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_describe_response::{
    ConsumerGroupDescribeResponse, DescribedGroup,
};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::groups::{GroupMessage, codes};
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
    let replies = crate::groups::per_owner(&state, &keys, |batch, reply| {
        ShardMessage::group(GroupMessage::ConsumerDescribe {
            groups: batch,
            reply,
        })
    })
    .await;
    let mut resp = ConsumerGroupDescribeResponse::default();
    for ((id, _), r) in keys.iter().zip(replies) {
        let mut d = r.unwrap_or_else(|| {
            let mut d = DescribedGroup::default();
            d.group_id = str_bytes(id).into();
            d.error_code = codes::NOT_COORDINATOR;
            d
        });
        // As Kafka: only groups described without an error carry the bitfield.
        d.authorized_operations = super::authorized_ops::field(
            req.include_authorized_operations && d.error_code == 0,
            super::authorized_ops::GROUP,
        );
        resp.groups.push(d);
    }
    super::encode(&h, &resp)
}
