//! Heartbeat (v0–4) of a classic group member.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: HeartbeatRequest,
) -> ResponseFrame {
    let group = req.group_id.0.to_string();
    let code = crate::coordinators::groups::call_coordinator(&state, &group, |reply| {
        ShardMessage::group(GroupMessage::Heartbeat { req, reply })
    })
    .await
    .unwrap_or(codes::NOT_COORDINATOR);
    super::encode(&h, &response(code))
}

fn response(code: i16) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    resp.error_code = code;
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    [
        codes::NONE,
        codes::REBALANCE_IN_PROGRESS,
        codes::NOT_COORDINATOR,
    ]
    .into_iter()
    .map(|c| kafka_protocol::messages::ResponseKind::Heartbeat(response(c)))
    .collect()
}
