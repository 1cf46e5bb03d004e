//! Request body decoding with kafka-protocol, hardened so that no input can panic or abort:
//! versions are checked against `valid_versions` first, and the body is first decoded through
//! [`GuardBuf`](crate::guard) so hostile array counts are rejected before kafka-protocol
//! pre-allocates for them.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::buf::ByteBuf;

use crate::guard::GuardBuf;
use crate::header::ParsedHeader;

/// Why a request body could not be decoded. The broker may answer `UnsupportedVersion` (Kafka
/// closes the connection for anything but ApiVersions); everything else means close.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("api key {api_key} version {version} is outside the decodable range {min}..={max}")]
    UnsupportedVersion {
        api_key: i16,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed request (api key {api_key} version {version}): {reason}")]
    Malformed {
        api_key: i16,
        version: i16,
        reason: String,
    },
}

/// Decodes the body (the frame after the header) for the header's api key and version.
///
/// Never panics and never attempts huge allocations on any input. Trailing bytes after the
/// body are ignored (as Kafka does).
pub fn decode_request(header: &ParsedHeader, body: Bytes) -> Result<RequestKind, DecodeError> {
    let api_key = header.api_key;
    let version = header.api_version;
    let key = ApiKey::try_from(api_key).map_err(|()| DecodeError::UnknownApiKey(api_key))?;
    let range = key.valid_versions();
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        reason,
    };
    let mut guard = GuardBuf::new(body.clone());
    let guarded = decode_generic(key, &mut guard, version);
    if let Some((value, remaining)) = guard.rejected {
        return Err(malformed(format!(
            "length or count {value} exceeds the {remaining} remaining bytes"
        )));
    }
    let request = guarded.map_err(malformed)?;
    if !guard.clamped {
        return Ok(request);
    }
    // Some Int32 values were clamped (they were plain values, or the decode would have failed):
    // the structure is known to be sound, decode again for the true values.
    let mut body = body;
    RequestKind::decode(key, &mut body, version).map_err(|e| malformed(format!("{e:#}")))
}

macro_rules! decode_kinds {
    ($key:expr, $buf:expr, $version:expr; $($name:ident),* $(,)?) => {
        match $key {
            $(ApiKey::$name => RequestKind::$name(
                Decodable::decode($buf, $version).map_err(|e| format!("{e:#}"))?,
            ),)*
        }
    };
}

/// Invokes `$m!(args; <every RequestKind variant>)`. The variant list is kafka-protocol 0.18's
/// (one per `ApiKey`); the exhaustive matches built from it fail to compile if it drifts.
macro_rules! all_kinds {
    ($m:ident!($($args:tt)*)) => {
        $m!($($args)*;
            Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator,
            JoinGroup, Heartbeat, LeaveGroup, SyncGroup, DescribeGroups, ListGroups, SaslHandshake,
            ApiVersions, CreateTopics, DeleteTopics, DeleteRecords, InitProducerId,
            OffsetForLeaderEpoch, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers,
            TxnOffsetCommit, DescribeAcls, CreateAcls, DeleteAcls, DescribeConfigs, AlterConfigs,
            AlterReplicaLogDirs, DescribeLogDirs, SaslAuthenticate, CreatePartitions,
            CreateDelegationToken, RenewDelegationToken, ExpireDelegationToken,
            DescribeDelegationToken, DeleteGroups, ElectLeaders, IncrementalAlterConfigs,
            AlterPartitionReassignments, ListPartitionReassignments, OffsetDelete,
            DescribeClientQuotas, AlterClientQuotas, DescribeUserScramCredentials,
            AlterUserScramCredentials, Vote, BeginQuorumEpoch, EndQuorumEpoch, DescribeQuorum,
            AlterPartition, UpdateFeatures, Envelope, FetchSnapshot, DescribeCluster,
            DescribeProducers, BrokerRegistration, BrokerHeartbeat, UnregisterBroker,
            DescribeTransactions, ListTransactions, AllocateProducerIds, ConsumerGroupHeartbeat,
            ConsumerGroupDescribe, ControllerRegistration, GetTelemetrySubscriptions,
            PushTelemetry, AssignReplicasToDirs, ListConfigResources, DescribeTopicPartitions,
            ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, ShareAcknowledge, AddRaftVoter,
            RemoveRaftVoter, UpdateRaftVoter, InitializeShareGroupState, ReadShareGroupState,
            WriteShareGroupState, DeleteShareGroupState, ReadShareGroupStateSummary,
            DescribeShareGroupOffsets, AlterShareGroupOffsets, DeleteShareGroupOffsets
        )
    };
}

/// Like `RequestKind::decode`, but over any `ByteBuf` (kafka-protocol only offers `Bytes`).
fn decode_generic<B: ByteBuf>(
    key: ApiKey,
    buf: &mut B,
    version: i16,
) -> Result<RequestKind, String> {
    Ok(all_kinds!(decode_kinds!(key, buf, version)))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
