//! DescribeCluster: the cluster id, the brokers and the controller. On a standalone node this
//! broker is all of them. In cluster mode the brokers endpoint type (1) lists the live brokers
//! (v2's `include_fenced_brokers` adds the fenced ones, flagged `is_fenced`) and names the
//! controller as brokers report it (`routing::reported_controller`: the active controller when
//! it is a live broker); the controllers endpoint type (2) lists the quorum's voters at their
//! controller listeners and names the active controller (-1 while unknown).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest};
use tern_net::{ParsedHeader, ResponseFrame};

use super::{LocalBroker, str_bytes};
use crate::cluster::config::Voter;
use crate::kafka::errors;
use crate::metadata::ClusterMetadata;
use crate::shard_state::ShardState;

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeClusterRequest,
) -> ResponseFrame {
    let meta = state.metadata();
    let broker = LocalBroker::of(&state.config);
    let voters = &state.config.cluster.voters;
    super::encode(&h, &response(&meta, &broker, voters, &req))
}

fn broker_entry(id: i32, host: &str, port: i32, rack: Option<&str>) -> DescribeClusterBroker {
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(id);
    b.host = str_bytes(host);
    b.port = port;
    b.rack = rack.map(str_bytes);
    b
}

/// The answer from the metadata snapshot, this broker and the configured voters.
fn response(
    meta: &ClusterMetadata,
    broker: &LocalBroker,
    voters: &[Voter],
    req: &DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    // endpoint_type 1 = brokers, 2 = controllers (v1+).
    if req.endpoint_type != 1 && req.endpoint_type != 2 {
        resp.error_code = errors::UNSUPPORTED_ENDPOINT_TYPE;
        resp.error_message = Some(str_bytes(&format!(
            "unsupported endpoint type {}",
            req.endpoint_type
        )));
        return resp;
    }
    resp.endpoint_type = req.endpoint_type;
    resp.cluster_id = str_bytes(&meta.cluster_id);
    if !meta.is_cluster() {
        // A standalone node is the only broker and the controller.
        resp.controller_id = BrokerId(broker.node_id);
        resp.brokers.push(broker_entry(
            broker.node_id,
            &broker.host,
            broker.port,
            None,
        ));
    } else if req.endpoint_type == 1 {
        resp.controller_id = BrokerId(crate::routing::reported_controller(meta, broker.node_id));
        for b in meta.brokers.values() {
            if b.fenced && !req.include_fenced_brokers {
                continue;
            }
            let mut e = broker_entry(b.id, &b.host, i32::from(b.port), b.rack.as_deref());
            e.is_fenced = b.fenced;
            resp.brokers.push(e);
        }
    } else {
        resp.controller_id = BrokerId(meta.controller_id);
        for v in voters {
            resp.brokers
                .push(broker_entry(v.id, &v.host, i32::from(v.port), None));
        }
    }
    resp.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        super::acl_operation::CLUSTER_ALL
    } else {
        super::acl_operation::NOT_REQUESTED
    };
    resp
}

#[cfg(test)]
fn voters() -> Vec<Voter> {
    (1..=3)
        .map(|id| Voter {
            id,
            host: format!("controller{id}.example"),
            port: 9093,
        })
        .collect()
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use crate::kafka::handlers::test_fixtures;
    let mut out = Vec::new();
    // endpoint_type exists from v1 on: v0 requests always mean brokers (1); fenced brokers
    // can be asked for from v2 on.
    let types: &[i8] = if version >= 1 { &[1, 2, 3] } else { &[1] };
    let fenced: &[bool] = if version >= 2 {
        &[false, true]
    } else {
        &[false]
    };
    for meta in [test_fixtures::cluster(), test_fixtures::multi_broker()] {
        for &endpoint_type in types {
            for include_ops in [false, true] {
                for &include_fenced in fenced {
                    let mut req = DescribeClusterRequest::default();
                    req.endpoint_type = endpoint_type;
                    req.include_cluster_authorized_operations = include_ops;
                    req.include_fenced_brokers = include_fenced;
                    let r = response(&meta, &test_fixtures::broker(), &voters(), &req);
                    out.push(kafka_protocol::messages::ResponseKind::DescribeCluster(r));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;

    fn req(endpoint_type: i8, include_fenced: bool) -> DescribeClusterRequest {
        let mut r = DescribeClusterRequest::default();
        r.endpoint_type = endpoint_type;
        r.include_fenced_brokers = include_fenced;
        r
    }

    fn brokers(r: &DescribeClusterResponse) -> Vec<(i32, String, i32, bool)> {
        r.brokers
            .iter()
            .map(|b| (b.broker_id.0, b.host.to_string(), b.port, b.is_fenced))
            .collect()
    }

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::DescribeCluster,
            guard_responses,
        );
    }

    #[test]
    fn standalone_is_this_broker() {
        let r = response(
            &test_fixtures::cluster(),
            &test_fixtures::broker(),
            &[],
            &req(1, true),
        );
        assert_eq!(r.controller_id.0, 1);
        assert_eq!(brokers(&r), vec![(1, "127.0.0.1".into(), 9092, false)]);
    }

    #[test]
    fn cluster_mode_brokers_and_controllers() {
        let meta = test_fixtures::multi_broker();
        let broker = test_fixtures::broker();
        let r = response(&meta, &broker, &voters(), &req(1, false));
        assert_eq!(r.controller_id.0, 2);
        assert_eq!(
            brokers(&r),
            vec![
                (1, "broker1.example".into(), 9091, false),
                (2, "broker2.example".into(), 9092, false),
            ]
        );
        assert_eq!(r.brokers[1].rack.as_deref(), Some("az2"));
        let r = response(&meta, &broker, &voters(), &req(1, true));
        assert_eq!(brokers(&r)[2], (3, "broker3.example".into(), 9093, true));
        // The controllers: the voters, and the active controller even when it is no broker.
        let mut meta = meta;
        meta.controller_id = 3;
        let r = response(&meta, &broker, &voters(), &req(2, false));
        assert_eq!(r.controller_id.0, 3);
        assert_eq!(
            brokers(&r).iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Brokers report a controller they can reach: broker 3 is fenced, so this broker.
        let r = response(&meta, &broker, &voters(), &req(1, false));
        assert_eq!(r.controller_id.0, 1);
    }
}
