//! The metadata log's records, as in KRaft (`TopicRecord`, `PartitionRecord`,
//! `PartitionChangeRecord`, `RegisterBrokerRecord`, fence/unfence, `ConfigRecord`,
//! `ProducerIdsRecord`, ...), and their wire form: one log entry holds a batch of records that
//! commit atomically. An entry is `[format version: u8][serde_json array of records]`, so a
//! record can gain optional fields (serde defaults) without a new format version; a reader
//! refuses a format version it does not know instead of guessing.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The entry format this build writes.
pub const ENTRY_FORMAT_VERSION: u8 = 1;
/// No broker / no leader (Kafka's -1).
pub const NO_LEADER: i32 = -1;

/// Which kind of resource a `ConfigRecord` sets (Kafka's ConfigResource types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic,
    /// A broker's dynamic config; `resource_name` "" is the cluster-wide default.
    Broker,
}

/// An endpoint a registered broker listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

/// One record of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster id, agreed once through the quorum (the first record of a new cluster).
    ClusterId {
        cluster_id: String,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    Partition(PartitionRecord),
    PartitionChange(PartitionChangeRecord),
    RemoveTopic {
        topic_id: Uuid,
    },
    RegisterBroker(RegisterBrokerRecord),
    UnregisterBroker {
        broker_id: i32,
        broker_epoch: i64,
    },
    FenceBroker {
        broker_id: i32,
        broker_epoch: i64,
    },
    UnfenceBroker {
        broker_id: i32,
        broker_epoch: i64,
    },
    /// Sets (`Some`) or deletes (`None`) one config of a topic or broker.
    Config {
        resource: ConfigResource,
        resource_name: String,
        name: String,
        value: Option<String>,
    },
    /// Producer ids below `next_producer_id` are handed out (the block ends there).
    ProducerIds {
        broker_id: i32,
        broker_epoch: i64,
        next_producer_id: i64,
    },
}

/// A new partition with its full state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// KIP-966 eligible leader replicas: out of the ISR but holding everything committed.
    #[serde(default)]
    pub elr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// KIP-455: replicas a reassignment in progress adds (they are in `replicas` too).
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    /// KIP-455: replicas a reassignment in progress removes once it completes.
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
}

/// A change to an existing partition; `None` fields are unchanged. Applying it bumps the
/// partition epoch, and the leader epoch when the leader changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    #[serde(default)]
    pub isr: Option<Vec<i32>>,
    #[serde(default)]
    pub elr: Option<Vec<i32>>,
    #[serde(default)]
    pub leader: Option<i32>,
    #[serde(default)]
    pub replicas: Option<Vec<i32>>,
    /// A reassignment's adding replicas (`Some(vec![])` ends it).
    #[serde(default)]
    pub adding_replicas: Option<Vec<i32>>,
    /// A reassignment's removing replicas (`Some(vec![])` ends it).
    #[serde(default)]
    pub removing_replicas: Option<Vec<i32>>,
}

/// A broker (re-)registration: a new broker epoch; the broker starts fenced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: i32,
    /// Random per process start: tells a restart from a duplicate node.id.
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    #[serde(default)]
    pub rack: Option<String>,
    pub fenced: bool,
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty metadata log entry")]
    Empty,
    #[error(
        "metadata log entry format version {0} is newer than this build knows ({ENTRY_FORMAT_VERSION})"
    )]
    UnknownVersion(u8),
    #[error("malformed metadata log entry: {0}")]
    Malformed(String),
}

/// Encodes a batch of records as one log entry.
pub fn encode_entry(records: &[MetadataRecord]) -> Vec<u8> {
    let mut out = vec![ENTRY_FORMAT_VERSION];
    serde_json::to_writer(&mut out, records)
        .expect("records serialise (no maps with non-string keys)");
    out
}

/// Decodes a log entry written by `encode_entry`.
pub fn decode_entry(bytes: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != ENTRY_FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_records_round_trip_and_refuse_unknown_versions() {
        let id = Uuid::from_u128(7);
        let records = vec![
            MetadataRecord::ClusterId {
                cluster_id: "c".into(),
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                elr: vec![],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: vec![3],
                removing_replicas: vec![],
            }),
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: id,
                partition: 0,
                isr: Some(vec![2]),
                leader: Some(2),
                removing_replicas: Some(vec![1]),
                ..Default::default()
            }),
            MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: None,
            },
        ];
        let bytes = encode_entry(&records);
        assert_eq!(decode_entry(&bytes).unwrap(), records);
        let mut newer = bytes.clone();
        newer[0] = ENTRY_FORMAT_VERSION + 1;
        assert_eq!(
            decode_entry(&newer),
            Err(DecodeError::UnknownVersion(ENTRY_FORMAT_VERSION + 1))
        );
        assert_eq!(decode_entry(&[]), Err(DecodeError::Empty));
        assert!(matches!(
            decode_entry(&bytes[..bytes.len() - 3]),
            Err(DecodeError::Malformed(_))
        ));
        // A record written by a later build with an extra optional field still reads.
        let extra = br#"[{"type":"UnfenceBroker","broker_id":1,"broker_epoch":3,"future":true}]"#;
        let mut entry = vec![ENTRY_FORMAT_VERSION];
        entry.extend_from_slice(extra);
        assert_eq!(
            decode_entry(&entry).unwrap(),
            vec![MetadataRecord::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 3
            }]
        );
    }
}
