//! FindCoordinator (v0–6, batched keys from v4). The coordinator of group `g` is the broker that
//! leads partition `groups::offsets_partition(g)` of `__consumer_offsets` (Kafka's rule; the
//! shard that owns the group inside that broker is an internal detail: requests for a group are
//! forwarded to it). A standalone node coordinates every group. In cluster mode the first
//! lookup creates `__consumer_offsets` through the controller (replication factor
//! `offsets.topic.replication.factor`, capped at the live brokers) and answers
//! COORDINATOR_NOT_AVAILABLE until the group's partition has a live leader, so clients retry.
//! Transaction coordinators are not implemented.

use std::cell::Cell;
use std::rc::Rc;

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use super::{LocalBroker, str_bytes};
use crate::coordinators::groups::{OFFSETS_TOPIC, codes, offsets_partition};
use crate::messages::{ControllerRequest, NewTopic, ShardMessage};
use crate::metadata::{ClusterMetadata, NO_LEADER};
use crate::routing::Endpoint;
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

const GROUP: i8 = 0;

/// Kafka's message for COORDINATOR_NOT_AVAILABLE.
const NOT_AVAILABLE: &str = "The coordinator is not available.";

/// Where the coordinator of `key` is, or why there is none.
fn lookup(
    meta: &ClusterMetadata,
    broker: &LocalBroker,
    offsets_partitions: i32,
    key: &str,
    key_type: i8,
) -> Result<Endpoint, (i16, String)> {
    match key_type {
        GROUP if key.is_empty() => Err((codes::INVALID_REQUEST, "The group id is empty.".into())),
        GROUP => group_coordinator(meta, broker, offsets_partitions, key)
            .ok_or_else(|| (codes::COORDINATOR_NOT_AVAILABLE, NOT_AVAILABLE.into())),
        1 => Err((
            codes::COORDINATOR_NOT_AVAILABLE,
            "Transactions are not supported by this broker.".into(),
        )),
        t => Err((codes::INVALID_REQUEST, format!("Unsupported key type {t}."))),
    }
}

/// The broker coordinating `group`: this one standalone; in cluster mode the live leader of the
/// group's `__consumer_offsets` partition (None while the topic or that leader is missing).
pub fn group_coordinator(
    meta: &ClusterMetadata,
    broker: &LocalBroker,
    offsets_partitions: i32,
    group: &str,
) -> Option<Endpoint> {
    if !meta.is_cluster() {
        return broker.endpoint(meta, broker.node_id);
    }
    let tm = meta.topic(OFFSETS_TOPIC)?;
    let p = offsets_partition(group, offsets_partitions);
    if !tm.has_partition(p) {
        return None;
    }
    match crate::routing::live_leader(meta, tm, p, broker.node_id) {
        NO_LEADER => None,
        leader => broker.endpoint(meta, leader),
    }
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: FindCoordinatorRequest,
) -> ResponseFrame {
    let meta = state.metadata();
    let broker = LocalBroker::of(&state.config);
    let partitions = state.config.groups.offsets_partitions;
    let resp = response(h.api_version, &meta, &broker, partitions, &req);
    let asks_group = if h.api_version >= 1 {
        req.key_type == GROUP
    } else {
        true
    };
    if meta.is_cluster() && asks_group && meta.topic(OFFSETS_TOPIC).is_none() {
        create_offsets_topic(&state, &meta);
    }
    super::encode(&h, &resp)
}

thread_local! {
    /// A creation of `__consumer_offsets` asked for by this shard is in flight.
    static CREATING: Cell<bool> = const { Cell::new(false) };
}

/// Asks the controller (in the background) to create `__consumer_offsets`, at most one request
/// in flight per shard; the lookup that triggered it has already answered
/// COORDINATOR_NOT_AVAILABLE.
fn create_offsets_topic(state: &Rc<ShardState>, meta: &ClusterMetadata) {
    if CREATING.with(|c| c.replace(true)) {
        return;
    }
    let live = meta.live_brokers().count().max(1);
    let wanted = state.config.cluster.offsets_topic_replication_factor;
    let replication_factor = wanted.min(i16::try_from(live).unwrap_or(i16::MAX)).max(1);
    let topic = NewTopic {
        assignments: Vec::new(),
        name: OFFSETS_TOPIC.to_string(),
        partitions: state.config.groups.offsets_partitions,
        replication_factor,
        // Kafka's offsets topic configs: compacted by the log cleaner, rolled at
        // `offsets.topic.segment.bytes` (only rolled segments are cleaned).
        configs: vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                state.config.groups.offsets_segment_bytes.to_string(),
            ),
        ],
    };
    log::info!(
        "creating {OFFSETS_TOPIC} ({} partitions, replication factor {replication_factor})",
        topic.partitions
    );
    let state = state.clone();
    tern_shard::task::spawn(async move {
        let res = state
            .call(CONTROLLER_SHARD, |reply| {
                ShardMessage::Controller(ControllerRequest::CreateTopics {
                    topics: vec![topic],
                    validate_only: false,
                    reply,
                })
            })
            .await;
        match res.as_deref() {
            Some([Err((code, msg))]) if *code != crate::kafka::errors::TOPIC_ALREADY_EXISTS => {
                log::warn!("creating {OFFSETS_TOPIC} failed ({code}): {msg}");
            }
            None => log::warn!("creating {OFFSETS_TOPIC}: the controller did not answer"),
            _ => {}
        }
        CREATING.with(|c| c.set(false));
    });
}

fn response(
    version: i16,
    meta: &ClusterMetadata,
    broker: &LocalBroker,
    offsets_partitions: i32,
    req: &FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in &req.coordinator_keys {
            let mut c = Coordinator::default();
            c.key = key.clone();
            match lookup(meta, broker, offsets_partitions, key, req.key_type) {
                Ok(e) => {
                    c.error_code = codes::NONE;
                    c.node_id = e.id.into();
                    c.host = str_bytes(&e.host);
                    c.port = e.port;
                }
                Err((code, msg)) => {
                    c.error_code = code;
                    c.error_message = Some(str_bytes(&msg));
                    c.node_id = (-1).into();
                    c.port = -1;
                }
            }
            resp.coordinators.push(c);
        }
    } else {
        let key_type = if version >= 1 { req.key_type } else { GROUP };
        match lookup(meta, broker, offsets_partitions, &req.key, key_type) {
            Ok(e) => {
                resp.error_code = codes::NONE;
                resp.node_id = e.id.into();
                resp.host = str_bytes(&e.host);
                resp.port = e.port;
            }
            Err((code, msg)) => {
                resp.error_code = code;
                if version >= 1 {
                    resp.error_message = Some(str_bytes(&msg));
                }
                resp.node_id = (-1).into();
                resp.port = -1;
            }
        }
    }
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use crate::kafka::handlers::test_fixtures;
    let mut out = Vec::new();
    for meta in [test_fixtures::cluster(), tests::with_offsets_topic()] {
        for (key, key_type) in [("group", GROUP), ("", GROUP), ("txn", 1), ("x", 9)] {
            let mut req = FindCoordinatorRequest::default();
            req.key = str_bytes(key);
            req.key_type = key_type;
            req.coordinator_keys = vec![str_bytes(key), str_bytes("other")];
            out.push(kafka_protocol::messages::ResponseKind::FindCoordinator(
                response(version, &meta, &test_fixtures::broker(), 3, &req),
            ));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;
    use crate::metadata::TopicMeta;

    /// `multi_broker()` plus a 3-partition `__consumer_offsets` placed like "orders" (p0 led by
    /// 1, p1 by 2, p2 leaderless).
    pub fn with_offsets_topic() -> ClusterMetadata {
        let mut meta = test_fixtures::multi_broker();
        let mut t: TopicMeta = meta.topic("orders").unwrap().clone();
        t.id = uuid::Uuid::from_u128(77);
        meta.topics.insert(OFFSETS_TOPIC.into(), t);
        meta
    }

    /// A group id whose offsets partition (of 3) is `p`.
    fn group_on(p: i32) -> String {
        (0..)
            .map(|i| format!("g{i}"))
            .find(|g| offsets_partition(g, 3) == p)
            .unwrap()
    }

    fn decode(version: i16, r: FindCoordinatorResponse) -> FindCoordinatorResponse {
        use kafka_protocol::messages::{ApiKey, ResponseKind};
        let mut buf = bytes::BytesMut::new();
        ResponseKind::FindCoordinator(r)
            .encode(&mut buf, version)
            .unwrap();
        match ResponseKind::decode(ApiKey::FindCoordinator, &mut buf.freeze(), version).unwrap() {
            ResponseKind::FindCoordinator(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::FindCoordinator,
            guard_responses,
        );
    }

    #[test]
    fn standalone_coordinates_every_group() {
        let meta = test_fixtures::cluster();
        let mut req = FindCoordinatorRequest::default();
        req.key = str_bytes("any");
        let r = decode(3, response(3, &meta, &test_fixtures::broker(), 50, &req));
        assert_eq!((r.error_code, r.node_id.0, r.port), (0, 1, 9092));
    }

    #[test]
    fn cluster_mode_names_the_leader_of_the_offsets_partition() {
        let broker = test_fixtures::broker();
        let (g0, g1, g2) = (group_on(0), group_on(1), group_on(2));
        // No __consumer_offsets yet: not available (the handler asks the controller for it).
        let meta = test_fixtures::multi_broker();
        let mut req = FindCoordinatorRequest::default();
        req.key = str_bytes(&g1);
        let r = decode(3, response(3, &meta, &broker, 3, &req));
        assert_eq!(
            (r.error_code, r.node_id.0),
            (codes::COORDINATOR_NOT_AVAILABLE, -1)
        );
        let meta = with_offsets_topic();
        for version in 0..=3 {
            let r = decode(version, response(version, &meta, &broker, 3, &req));
            assert_eq!(
                (r.error_code, r.node_id.0, r.host.as_str(), r.port),
                (0, 2, "broker2.example", 9092),
                "v{version}"
            );
        }
        req.coordinator_keys = [&g0, &g1, &g2].map(|g| str_bytes(g)).to_vec();
        for version in 4..=6 {
            let r = decode(version, response(version, &meta, &broker, 3, &req));
            let got: Vec<_> = r
                .coordinators
                .iter()
                .map(|c| (c.error_code, c.node_id.0, c.host.to_string(), c.port))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, 1, "broker1.example".into(), 9091),
                    (0, 2, "broker2.example".into(), 9092),
                    // Partition 2 has no leader.
                    (codes::COORDINATOR_NOT_AVAILABLE, -1, String::new(), -1),
                ],
                "v{version}"
            );
        }
    }
}
