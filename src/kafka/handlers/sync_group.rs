//! SyncGroup (v0–5): the leader's assignment is persisted, then every member gets its share.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: SyncGroupRequest,
) -> ResponseFrame {
    let group = req.group_id.0.to_string();
    let version = h.api_version;
    let resp = crate::coordinators::groups::call_coordinator(&state, &group, |reply| {
        ShardMessage::group(GroupMessage::Sync {
            version,
            req,
            reply,
        })
    })
    .await
    .unwrap_or_else(not_coordinator);
    super::encode(&h, &resp)
}

/// The answer when the coordinator shard is gone (shutting down).
fn not_coordinator() -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = codes::NOT_COORDINATOR;
    r
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut out = crate::coordinators::groups::guard::sync_responses(version);
    out.push(not_coordinator());
    out.into_iter()
        .map(kafka_protocol::messages::ResponseKind::SyncGroup)
        .collect()
}
