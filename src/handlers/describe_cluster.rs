//! DescribeCluster: the cluster id, this broker (the only one) and the controller (itself).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::errors;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeClusterRequest,
) -> ResponseFrame {
    let meta = state.metadata();
    let cfg = &state.config;
    let at = (
        cfg.node_id,
        cfg.advertised_host.as_str(),
        cfg.advertised_port,
    );
    super::encode(&h, &response(&meta.cluster_id, at, &req))
}

/// The answer from the cluster id and this broker's (node id, host, port).
fn response(
    cluster_id: &str,
    (node_id, host, port): (i32, &str, u16),
    req: &DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    // endpoint_type 1 = brokers, 2 = controllers (v1+); we are both.
    if req.endpoint_type != 1 && req.endpoint_type != 2 {
        resp.error_code = errors::UNSUPPORTED_ENDPOINT_TYPE;
        resp.error_message = Some(str_bytes(&format!(
            "unsupported endpoint type {}",
            req.endpoint_type
        )));
        return resp;
    }
    resp.endpoint_type = req.endpoint_type;
    resp.cluster_id = str_bytes(cluster_id);
    resp.controller_id = BrokerId(node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(node_id);
    b.host = str_bytes(host);
    b.port = i32::from(port);
    b.rack = None;
    resp.brokers.push(b);
    resp.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        super::acl_operation::CLUSTER_ALL
    } else {
        super::acl_operation::NOT_REQUESTED
    };
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut out = Vec::new();
    // endpoint_type exists from v1 on: v0 requests always mean brokers (1).
    let types: &[i8] = if version >= 1 { &[1, 2, 3] } else { &[1] };
    for &endpoint_type in types {
        for include_ops in [false, true] {
            let mut req = DescribeClusterRequest::default();
            req.endpoint_type = endpoint_type;
            req.include_cluster_authorized_operations = include_ops;
            let r = response("cluster-id", (1, "broker.example", 9092), &req);
            out.push(kafka_protocol::messages::ResponseKind::DescribeCluster(r));
        }
    }
    out
}
