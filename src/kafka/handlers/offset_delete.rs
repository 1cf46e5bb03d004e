//! OffsetDelete (v0): removes committed offsets of topics the group is not subscribed to.

use std::rc::Rc;

use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: OffsetDeleteRequest,
) -> ResponseFrame {
    let group = req.group_id.0.to_string();
    let resp = crate::coordinators::groups::call_coordinator(&state, &group, |reply| {
        ShardMessage::group(GroupMessage::OffsetDelete { req, reply })
    })
    .await
    .unwrap_or_else(not_coordinator);
    super::encode(&h, &resp)
}

/// The answer when the coordinator shard is gone (shutting down).
fn not_coordinator() -> OffsetDeleteResponse {
    let mut r = OffsetDeleteResponse::default();
    r.error_code = codes::NOT_COORDINATOR;
    r
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut out = crate::coordinators::groups::guard::offset_delete_responses(version);
    out.push(not_coordinator());
    out.into_iter()
        .map(kafka_protocol::messages::ResponseKind::OffsetDelete)
        .collect()
}
