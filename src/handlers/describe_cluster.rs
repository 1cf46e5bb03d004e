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
    let mut resp = DescribeClusterResponse::default();
    // endpoint_type 1 = brokers, 2 = controllers (v1+); we are both.
    if req.endpoint_type != 1 && req.endpoint_type != 2 {
        resp.error_code = errors::UNSUPPORTED_ENDPOINT_TYPE;
        resp.error_message = Some(str_bytes(&format!(
            "unsupported endpoint type {}",
            req.endpoint_type
        )));
        return super::encode(&h, &resp);
    }
    resp.endpoint_type = req.endpoint_type;
    resp.cluster_id = str_bytes(&meta.cluster_id);
    resp.controller_id = BrokerId(cfg.node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(cfg.node_id);
    b.host = str_bytes(&cfg.advertised_host);
    b.port = cfg.advertised_port as i32;
    b.rack = None;
    resp.brokers.push(b);
    resp.cluster_authorized_operations = super::authorized_ops::field(
        req.include_cluster_authorized_operations,
        super::authorized_ops::CLUSTER,
    );
    super::encode(&h, &resp)
}
