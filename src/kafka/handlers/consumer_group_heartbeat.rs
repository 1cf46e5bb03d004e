//! ConsumerGroupHeartbeat (v0–1): the KIP-848 protocol (`group.protocol=consumer`); joining,
//! leaving, heartbeats and assignment all flow through it.

use std::rc::Rc;

use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::coordinators::groups::{GroupMessage, codes};
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    client_host: String,
    req: ConsumerGroupHeartbeatRequest,
) -> ResponseFrame {
    let group = req.group_id.0.to_string();
    let version = h.api_version;
    let client_id = h.client_id.clone().unwrap_or_default();
    let resp = crate::coordinators::groups::call_coordinator(&state, &group, |reply| {
        ShardMessage::group(GroupMessage::ConsumerHeartbeat {
            version,
            client_id,
            client_host,
            req,
            reply,
        })
    })
    .await
    .unwrap_or_else(not_coordinator);
    super::encode(&h, &resp)
}

/// The answer when the coordinator shard is gone (shutting down).
fn not_coordinator() -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = codes::NOT_COORDINATOR;
    r
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut out = crate::coordinators::groups::guard::heartbeat_responses(version);
    out.push(not_coordinator());
    out.into_iter()
        .map(kafka_protocol::messages::ResponseKind::ConsumerGroupHeartbeat)
        .collect()
}
