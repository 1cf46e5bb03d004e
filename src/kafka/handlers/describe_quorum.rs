//! DescribeQuorum (API 55, v0–2): the metadata quorum. The request names the metadata log
//! partition (`__cluster_metadata-0`; anything else is UNKNOWN_TOPIC_OR_PARTITION, as Kafka
//! answers); the status comes from the controller side of this node
//! (`ControllerRequest::DescribeQuorum` on shard 0): the leader, its epoch, the high watermark
//! and each voter's and observer's log end offset (v1+: when it last fetched and was caught up).
//! v2 lists the voters' controller listeners (none on a standalone node, which has no controller
//! listener). A status without a known leader is NOT_LEADER_OR_FOLLOWER.

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{
    DescribeQuorumResponse, Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::cluster::config::Voter;
use crate::cluster::status::{QuorumStatus, ReplicaStatus};
use crate::kafka::errors;
use crate::messages::{ControllerRequest, ShardMessage};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

/// The metadata log's partition, as KRaft names it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeQuorumRequest,
) -> ResponseFrame {
    let v = h.api_version;
    if !names_metadata_partition(&req) {
        return super::encode(
            &h,
            &error_response(v, errors::UNKNOWN_TOPIC_OR_PARTITION, None),
        );
    }
    let status = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::DescribeQuorum { reply })
        })
        .await;
    let cluster = &state.config.cluster;
    let listener = cluster
        .controller_listener_names
        .first()
        .map_or("CONTROLLER", String::as_str);
    let resp = match status {
        Some(s) => response(v, &s, &cluster.voters, listener),
        None => error_response(
            v,
            errors::NOT_LEADER_OR_FOLLOWER,
            Some("the controller did not answer"),
        ),
    };
    super::encode(&h, &resp)
}

/// Kafka's check: exactly one topic, the metadata topic, with exactly partition 0.
fn names_metadata_partition(req: &DescribeQuorumRequest) -> bool {
    matches!(req.topics.as_slice(), [t] if t.topic_name.0.as_str() == METADATA_TOPIC
        && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0))
}

fn empty(version: i16) -> DescribeQuorumResponse {
    let mut resp = DescribeQuorumResponse::default();
    // v0-1 have no error messages (their "absent" value is the codec's default).
    if version >= 2 {
        resp.error_message = None;
    }
    resp
}

fn partition(version: i16, code: i16, message: Option<&str>) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = 0;
    p.error_code = code;
    if version >= 2 {
        p.error_message = message.map(str_bytes);
    }
    p
}

fn topic(p: PartitionData) -> TopicData {
    let mut t = TopicData::default();
    t.topic_name = TopicName(str_bytes(METADATA_TOPIC));
    t.partitions = vec![p];
    t
}

/// Kafka's singleton error answer: the metadata partition with `code`.
fn error_response(version: i16, code: i16, message: Option<&str>) -> DescribeQuorumResponse {
    let mut resp = empty(version);
    let mut p = partition(version, code, message);
    p.leader_id = BrokerId(-1);
    p.leader_epoch = -1;
    p.high_watermark = -1;
    resp.topics = vec![topic(p)];
    resp
}

fn replica(version: i16, r: &ReplicaStatus) -> ReplicaState {
    let mut s = ReplicaState::default();
    s.replica_id = BrokerId(r.replica_id);
    s.log_end_offset = r.log_end_offset;
    if version >= 1 {
        s.last_fetch_timestamp = r.last_fetch_ms;
        s.last_caught_up_timestamp = r.last_caught_up_ms;
    }
    s
}

/// The answer at `version` from the quorum status; v2 names the voters' `listener` endpoints.
fn response(
    version: i16,
    status: &QuorumStatus,
    voters: &[Voter],
    listener: &str,
) -> DescribeQuorumResponse {
    if status.leader_id < 0 {
        let mut resp = error_response(
            version,
            errors::NOT_LEADER_OR_FOLLOWER,
            Some("the quorum has no leader"),
        );
        resp.topics[0].partitions[0].leader_epoch = status.leader_epoch;
        return resp;
    }
    let mut resp = empty(version);
    let mut p = partition(version, errors::NONE, None);
    p.leader_id = BrokerId(status.leader_id);
    p.leader_epoch = status.leader_epoch;
    p.high_watermark = status.high_watermark;
    p.current_voters = status.voters.iter().map(|r| replica(version, r)).collect();
    p.observers = status
        .observers
        .iter()
        .map(|r| replica(version, r))
        .collect();
    resp.topics = vec![topic(p)];
    if version >= 2 {
        resp.nodes = voters
            .iter()
            .map(|v| {
                let mut l = Listener::default();
                l.name = str_bytes(listener);
                l.host = str_bytes(&v.host);
                l.port = v.port;
                let mut n = Node::default();
                n.node_id = BrokerId(v.id);
                n.listeners = vec![l];
                n
            })
            .collect();
    }
    resp
}

#[cfg(test)]
fn three_voters() -> (QuorumStatus, Vec<Voter>) {
    let r = |id, leo, t| ReplicaStatus {
        replica_id: id,
        log_end_offset: leo,
        last_fetch_ms: t,
        last_caught_up_ms: t,
    };
    let status = QuorumStatus {
        leader_id: 2,
        leader_epoch: 7,
        high_watermark: 95,
        voters: vec![r(1, 95, 1000), r(2, 100, 1001), r(3, 40, -1)],
        observers: vec![r(4, 90, 999)],
    };
    let voters = (1..=3)
        .map(|id| Voter {
            id,
            host: format!("c{id}.example"),
            port: 9093,
        })
        .collect();
    (status, voters)
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use kafka_protocol::messages::ResponseKind;
    let (status, voters) = three_voters();
    let mut leaderless = status.clone();
    leaderless.leader_id = -1;
    vec![
        response(version, &status, &voters, "CONTROLLER"),
        response(version, &QuorumStatus::single_voter(0, 0, 3, 5), &[], "C"),
        response(version, &leaderless, &voters, "CONTROLLER"),
        error_response(version, errors::UNKNOWN_TOPIC_OR_PARTITION, None),
        error_response(version, errors::NOT_LEADER_OR_FOLLOWER, Some("gone")),
    ]
    .into_iter()
    .map(ResponseKind::DescribeQuorum)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;
    use kafka_protocol::messages::describe_quorum_request;

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        let mut t = describe_quorum_request::TopicData::default();
        t.topic_name = TopicName(str_bytes(topic));
        t.partitions = partitions
            .iter()
            .map(|p| {
                let mut pd = describe_quorum_request::PartitionData::default();
                pd.partition_index = *p;
                pd
            })
            .collect();
        let mut r = DescribeQuorumRequest::default();
        r.topics = vec![t];
        r
    }

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::DescribeQuorum,
            guard_responses,
        );
    }

    #[test]
    fn only_the_metadata_partition() {
        assert!(names_metadata_partition(&request(METADATA_TOPIC, &[0])));
        assert!(!names_metadata_partition(&request(METADATA_TOPIC, &[1])));
        assert!(!names_metadata_partition(&request(METADATA_TOPIC, &[0, 0])));
        assert!(!names_metadata_partition(&request("orders", &[0])));
        assert!(!names_metadata_partition(&DescribeQuorumRequest::default()));
    }

    #[test]
    fn reports_the_status() {
        let (status, voters) = three_voters();
        let r = response(2, &status, &voters, "CONTROLLER");
        let p = &r.topics[0].partitions[0];
        assert_eq!(r.topics[0].topic_name.0.as_str(), METADATA_TOPIC);
        assert_eq!(
            (
                p.error_code,
                p.leader_id.0,
                p.leader_epoch,
                p.high_watermark
            ),
            (0, 2, 7, 95)
        );
        let leo: Vec<_> = p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset, v.last_fetch_timestamp))
            .collect();
        assert_eq!(leo, vec![(1, 95, 1000), (2, 100, 1001), (3, 40, -1)]);
        assert_eq!(p.observers[0].replica_id.0, 4);
        assert_eq!(r.nodes.len(), 3);
        assert_eq!(r.nodes[2].listeners[0].host.as_str(), "c3.example");
        // v0 carries no timestamps.
        let r = response(0, &status, &voters, "CONTROLLER");
        assert_eq!(
            r.topics[0].partitions[0].current_voters[0].last_fetch_timestamp,
            -1
        );
        assert!(r.nodes.is_empty());
    }
}
