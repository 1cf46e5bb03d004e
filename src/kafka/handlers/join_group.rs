//! JoinGroup (v0–9): forwarded to the group's coordinator shard; the response arrives when the
//! rebalance completes (the connection pipeline keeps later responses in order meanwhile).

use std::rc::Rc;

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    client_host: String,
    req: JoinGroupRequest,
) -> ResponseFrame {
    let group = req.group_id.0.to_string();
    let version = h.api_version;
    let client_id = h.client_id.clone().unwrap_or_default();
    let member_id = req.member_id.clone();
    let resp = crate::coordinators::groups::call_coordinator(&state, &group, |reply| {
        ShardMessage::group(GroupMessage::Join {
            version,
            client_id,
            client_host,
            req,
            reply,
        })
    })
    .await
    .unwrap_or_else(|| not_coordinator(version, member_id));
    super::encode(&h, &resp)
}

/// The answer when the coordinator shard is gone (shutting down).
fn not_coordinator(version: i16, member_id: StrBytes) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = codes::NOT_COORDINATOR;
    r.generation_id = -1;
    r.member_id = member_id;
    if version < 7 {
        r.protocol_name = Some(super::str_bytes(""));
    }
    r
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut out = crate::coordinators::groups::guard::join_responses(version);
    out.push(not_coordinator(version, super::str_bytes("m")));
    out.into_iter()
        .map(kafka_protocol::messages::ResponseKind::JoinGroup)
        .collect()
}
