//! FindCoordinator (v0–6, batched keys from v4): a single broker coordinates every group, so the
//! answer is always this broker; the shard that owns the group is an internal detail (requests
//! for a group are forwarded to it). Transaction coordinators are not implemented.

use std::rc::Rc;

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::groups::codes;
use crate::shard_state::ShardState;

const GROUP: i8 = 0;

/// Where coordinators are: this broker's (node id, host, port).
type Endpoint<'a> = (i32, &'a str, u16);

fn lookup(key: &str, key_type: i8) -> (i16, Option<String>) {
    match key_type {
        GROUP if key.is_empty() => (
            codes::INVALID_REQUEST,
            Some("The group id is empty.".into()),
        ),
        GROUP => (codes::NONE, None),
        1 => (
            codes::COORDINATOR_NOT_AVAILABLE,
            Some("Transactions are not supported by this broker.".into()),
        ),
        t => (
            codes::INVALID_REQUEST,
            Some(format!("Unsupported key type {t}.")),
        ),
    }
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: FindCoordinatorRequest,
) -> ResponseFrame {
    let cfg = &state.config;
    let at = (
        cfg.node_id,
        cfg.advertised_host.as_str(),
        cfg.advertised_port,
    );
    super::encode(&h, &response(h.api_version, at, &req))
}

fn response(version: i16, at: Endpoint, req: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    let (node_id, host, port) = at;
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in &req.coordinator_keys {
            let (code, msg) = lookup(key, req.key_type);
            let mut c = Coordinator::default();
            c.key = key.clone();
            c.error_code = code;
            c.error_message = msg.as_deref().map(str_bytes);
            if code == codes::NONE {
                c.node_id = node_id.into();
                c.host = str_bytes(host);
                c.port = i32::from(port);
            } else {
                c.node_id = (-1).into();
                c.port = -1;
            }
            resp.coordinators.push(c);
        }
    } else {
        let (code, msg) = lookup(&req.key, if version >= 1 { req.key_type } else { GROUP });
        resp.error_code = code;
        if version >= 1 {
            resp.error_message = msg.as_deref().map(str_bytes);
        }
        if code == codes::NONE {
            resp.node_id = node_id.into();
            resp.host = str_bytes(host);
            resp.port = i32::from(port);
        } else {
            resp.node_id = (-1).into();
            resp.port = -1;
        }
    }
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let at = (1, "broker.example", 9092);
    let mut out = Vec::new();
    for (key, key_type) in [("group", GROUP), ("", GROUP), ("txn", 1), ("x", 9)] {
        let mut req = FindCoordinatorRequest::default();
        req.key = str_bytes(key);
        req.key_type = key_type;
        req.coordinator_keys = vec![str_bytes(key), str_bytes("other")];
        out.push(kafka_protocol::messages::ResponseKind::FindCoordinator(
            response(version, at, &req),
        ));
    }
    out
}
