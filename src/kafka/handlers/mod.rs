//! One handler file per Kafka API (as in Redpanda's `src/v/kafka/server/handlers`). Each file has
//! the request-level half (runs on the connection's shard: split by owning shard, reassemble in
//! request order) and, where partitions are involved, the shard-local half (runs on the owner).

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
// consumer groups
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod delete_groups;
pub mod describe_groups;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod partition_reassignments;
pub mod sync_group;
// operations
pub mod alter_configs;
pub mod delete_records;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod elect_leaders;
// encoding
pub mod encode_fallback;
#[cfg(test)]
pub(crate) mod test_fixtures;
#[cfg(test)]
mod version_guard;

use kafka_protocol::protocol::{Encodable, StrBytes};
use tern_net::{ParsedHeader, ResponseFrame};

/// Encodes a response body for the request `h`. An encoding failure is a bug in a handler: it
/// is logged and the request is answered with an error response of its API and version where
/// the API has one (see `encode_fallback`), else by closing the connection (an empty frame).
pub fn encode<T: Encodable + 'static>(h: &ParsedHeader, body: &T) -> ResponseFrame {
    let encoded = if encode_fallback::forced_failure(h.api_key) {
        Err(tern_net::EncodeError::Protocol(format!(
            "forced by {}",
            encode_fallback::TEST_HOOK_ENV
        )))
    } else {
        tern_net::encode_response(h.api_key, h.api_version, h.correlation_id, body)
    };
    match encoded {
        Ok(frame) => frame,
        Err(e) => encode_failed(h, body, e),
    }
}

/// The answer to `h` when its response `body` cannot be encoded (kept off the inlined path).
#[cold]
fn encode_failed(
    h: &ParsedHeader,
    body: &dyn std::any::Any,
    e: tern_net::EncodeError,
) -> ResponseFrame {
    let (api, v) = (h.api_key, h.api_version);
    match encode_fallback::error_answer(h, body) {
        Some(Ok(frame)) => {
            log::error!(
                "encoding response to api {api} v{v} failed: {e}; answered UNKNOWN_SERVER_ERROR"
            );
            frame
        }
        Some(Err(e2)) => {
            log::error!(
                "encoding response to api {api} v{v} failed: {e}; so did its error answer \
                 ({e2}); closing connection"
            );
            ResponseFrame { chunks: Vec::new() }
        }
        None => {
            log::error!(
                "encoding response to api {api} v{v} failed: {e}; no error answer at this \
                 version; closing connection"
            );
            ResponseFrame { chunks: Vec::new() }
        }
    }
}

/// Answers computed in request order (one per partition, flattened over the request's topics),
/// regrouped as each topic's (partition, answer) pairs for a response builder.
pub(crate) fn answers_by_topic<T, P, A>(
    topics: &[T],
    parts: impl Fn(&T) -> (&kafka_protocol::messages::TopicName, &[P]),
    partition: impl Fn(&P) -> i32,
    answers: Vec<A>,
) -> Vec<(kafka_protocol::messages::TopicName, Vec<(i32, A)>)> {
    let mut flat = answers.into_iter();
    let grouped = topics
        .iter()
        .map(|t| {
            let (name, ps) = parts(t);
            let pairs = ps
                .iter()
                .map(|p| (partition(p), flat.next().expect("one answer per partition")))
                .collect();
            (name.clone(), pairs)
        })
        .collect();
    assert!(flat.next().is_none(), "more answers than partitions");
    grouped
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// This broker as clients reach it (the only broker, and the leader of every partition, on a
/// standalone node), and the way to any other broker's endpoint in cluster mode (Metadata
/// brokers, KIP-951 `NodeEndpoints` in Produce and Fetch).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl LocalBroker {
    pub fn of(config: &crate::config::BrokerConfig) -> Self {
        Self {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised_port),
        }
    }

    /// KIP-951's leader hint for a partition answered with `error_code`: NOT_LEADER_OR_FOLLOWER
    /// and FENCED_LEADER_EPOCH carry the current leader (-1 when it has none) and its epoch, when
    /// the partition exists. REQUEST_TIMED_OUT carries it when leadership moved to another live
    /// broker: an acks=all append this broker made as leader is answered so when it resigns
    /// ("possibly persisted", see `cluster::replication::leader::resign`), and without the hint
    /// librdkafka, which applies a CurrentLeader whatever the error, would retry towards the old
    /// leader until its next metadata refresh (up to its 1 s topic scan once that broker's
    /// connection closes). One rule for Produce (v10+) and Fetch (v16+).
    pub fn leader_hint(
        &self,
        meta: &crate::metadata::ClusterMetadata,
        topic: &str,
        partition: i32,
        error_code: i16,
    ) -> Option<(i32, i32)> {
        use crate::kafka::errors;
        let moved_only = match error_code {
            errors::NOT_LEADER_OR_FOLLOWER | errors::FENCED_LEADER_EPOCH => false,
            errors::REQUEST_TIMED_OUT => true,
            _ => return None,
        };
        let t = meta.topic(topic).filter(|t| t.has_partition(partition))?;
        let leader = crate::routing::live_leader(meta, t, partition, self.node_id);
        if moved_only && (leader < 0 || leader == self.node_id) {
            return None;
        }
        Some((leader, t.leader_epoch(partition)))
    }

    /// How clients reach broker `id`: its registration in cluster mode (the listener clients
    /// use), this broker on a standalone node; None for an unknown broker or -1.
    pub fn endpoint(
        &self,
        meta: &crate::metadata::ClusterMetadata,
        id: i32,
    ) -> Option<crate::routing::Endpoint> {
        if meta.is_cluster() {
            meta.brokers.get(&id).map(|b| crate::routing::Endpoint {
                id,
                host: b.host.clone(),
                port: i32::from(b.port),
                rack: b.rack.clone(),
            })
        } else {
            (id == self.node_id).then(|| crate::routing::Endpoint {
                id,
                host: self.host.clone(),
                port: self.port,
                rack: None,
            })
        }
    }

    /// The endpoints of the leaders named in hints (KIP-951 `NodeEndpoints`), in id order.
    pub fn hinted_endpoints(
        &self,
        meta: &crate::metadata::ClusterMetadata,
        leaders: &std::collections::BTreeSet<i32>,
    ) -> Vec<crate::routing::Endpoint> {
        leaders
            .iter()
            .filter_map(|id| self.endpoint(meta, *id))
            .collect()
    }
}

/// Kafka's AclOperation codes, as bits of an "authorized operations" bitfield.
pub mod acl_operation {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;

    /// What Kafka answers when the request did not ask for authorized operations.
    pub const NOT_REQUESTED: i32 = i32::MIN;

    const fn bits(ops: &[u8]) -> i32 {
        let mut field = 0i32;
        let mut i = 0;
        while i < ops.len() {
            field |= 1 << ops[i];
            i += 1;
        }
        field
    }

    /// Every operation Kafka defines on a topic (AclEntry.supportedOperations(TOPIC)); with no
    /// ACLs every one is allowed.
    pub const TOPIC_ALL: i32 = bits(&[
        READ,
        WRITE,
        CREATE,
        DESCRIBE,
        DELETE,
        ALTER,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
    ]);
    /// Every operation Kafka defines on the cluster (AclEntry.supportedOperations(CLUSTER)).
    pub const CLUSTER_ALL: i32 = bits(&[
        CREATE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
        ALTER,
        DESCRIBE,
    ]);

    /// Every operation Kafka defines on a group (AclEntry.supportedOperations(GROUP); Kafka 4's
    /// group configs added DESCRIBE_CONFIGS and ALTER_CONFIGS).
    pub const GROUP_ALL: i32 = bits(&[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

    #[cfg(test)]
    #[test]
    fn bitfields_match_kafka() {
        // Values a Kafka 4 broker without an authorizer reports.
        assert_eq!(TOPIC_ALL, 3576);
        assert_eq!(CLUSTER_ALL, 8096);
        assert_eq!(GROUP_ALL, 3400);
    }
}
