//! DeleteGroups (v0–2): deletes empty groups and their committed offsets (tombstones).

use std::rc::Rc;

use kafka_protocol::messages::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DeleteGroupsRequest,
) -> ResponseFrame {
    let keys: Vec<(String, String)> = req
        .groups_names
        .iter()
        .map(|g| (g.0.to_string(), g.0.to_string()))
        .collect();
    let replies = crate::coordinators::groups::per_owner(&state, &keys, |batch, reply| {
        ShardMessage::group(GroupMessage::Delete {
            groups: batch,
            reply,
        })
    })
    .await;
    let mut resp = DeleteGroupsResponse::default();
    for ((id, _), r) in keys.iter().zip(replies) {
        resp.results.push(r.unwrap_or_else(|| not_coordinator(id)));
    }
    super::encode(&h, &resp)
}

/// The entry of a group whose coordinator shard is gone (shutting down).
fn not_coordinator(id: &str) -> DeletableGroupResult {
    let mut d = DeletableGroupResult::default();
    d.group_id = str_bytes(id).into();
    d.error_code = codes::NOT_COORDINATOR;
    d
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut resp = DeleteGroupsResponse::default();
    resp.results = crate::coordinators::groups::guard::delete_groups_results(version);
    resp.results.push(not_coordinator("elsewhere"));
    vec![kafka_protocol::messages::ResponseKind::DeleteGroups(resp)]
}
