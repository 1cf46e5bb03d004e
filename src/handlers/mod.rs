//! One handler file per Kafka API (as in Redpanda's `src/v/kafka/server/handlers`). Each file has
//! the request-level half (runs on the connection's shard: split by owning shard, reassemble in
//! request order) and, where partitions are involved, the shard-local half (runs on the owner).

pub mod api_versions;
pub mod authorized_ops;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
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
pub mod sync_group;
// operations
pub mod alter_configs;
pub mod delete_records;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;

use kafka_protocol::protocol::{Encodable, StrBytes};
use tern_net::{ParsedHeader, ResponseFrame};

/// Encodes a response body for the request `h`. An encoding failure is a bug in a handler: it
/// is logged and answered by closing the connection (an empty frame).
pub fn encode<T: Encodable>(h: &ParsedHeader, body: &T) -> ResponseFrame {
    match tern_net::encode_response(h.api_key, h.api_version, h.correlation_id, body) {
        Ok(frame) => frame,
        Err(e) => {
            log::error!(
                "encoding response to api {} v{} failed: {e}; closing connection",
                h.api_key,
                h.api_version
            );
            ResponseFrame { chunks: Vec::new() }
        }
    }
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
