//! What a request gets when its response cannot be encoded at the negotiated version (a handler
//! bug, e.g. a field set that the version lacks): an error response of the same API and version
//! wherever the API has a place for an error. It is built from the failed response's own
//! identities (topics, partitions, groups, resources, which mirror the request), with every
//! error code UNKNOWN_SERVER_ERROR and nothing else set. `None` means the API has no place for
//! an error at that version (or the response type is not known here): the connection is then
//! closed at once.
//!
//! Also owns the test-only hook `TERN_TEST_FAIL_ENCODE` (comma-separated API keys, read once at
//! start-up by [`init_test_hook`]): responses of those APIs are treated as unencodable, so the
//! integration tests can drive both paths through the real binary.

use std::any::Any;
use std::sync::OnceLock;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tern_net::{EncodeError, ParsedHeader, ResponseFrame};

use crate::kafka::errors;

const FAILED: i16 = errors::UNKNOWN_SERVER_ERROR;

/// The environment variable of the test-only encode-failure hook.
pub const TEST_HOOK_ENV: &str = "TERN_TEST_FAIL_ENCODE";

static FORCED_FAILURES: OnceLock<Vec<i16>> = OnceLock::new();

/// Reads `TERN_TEST_FAIL_ENCODE` (once; later calls keep the first value). Never set it outside
/// tests: every response of the listed APIs becomes an error answer or a closed connection.
pub fn init_test_hook() {
    let keys: Vec<i16> = std::env::var(TEST_HOOK_ENV)
        .ok()
        .map(|v| v.split(',').filter_map(|k| k.trim().parse().ok()).collect())
        .unwrap_or_default();
    if !keys.is_empty() {
        log::warn!(
            "{TEST_HOOK_ENV}: responses to api keys {keys:?} will fail to encode (test hook)"
        );
    }
    let _ = FORCED_FAILURES.set(keys);
}

/// True if the test hook makes responses of `api_key` fail to encode.
pub fn forced_failure(api_key: i16) -> bool {
    FORCED_FAILURES
        .get()
        .is_some_and(|keys| !keys.is_empty() && keys.contains(&api_key))
}

fn nullable_str(s: &str) -> Option<StrBytes> {
    Some(super::str_bytes(s))
}

/// Declares, per API, its response type and how an error answer is derived from a failed
/// response; generates the encoder-facing [`error_answer`] and the test-facing `error_body`.
macro_rules! error_answers {
    ($($key:ident: $ty:ty => $build:expr;)*) => {
        /// The encoded error answer to `h` derived from `failed` (the response that could not be
        /// encoded), or `None` when the API has no error at this version.
        pub fn error_answer(
            h: &ParsedHeader,
            failed: &dyn Any,
        ) -> Option<Result<ResponseFrame, EncodeError>> {
            let key = ApiKey::try_from(h.api_key).ok()?;
            match key {
                $(ApiKey::$key => {
                    let failed = failed.downcast_ref::<$ty>()?;
                    let build: fn(i16, &$ty) -> Option<$ty> = $build;
                    let answer = build(h.api_version, failed)?;
                    Some(tern_net::encode_response(
                        h.api_key,
                        h.api_version,
                        h.correlation_id,
                        &answer,
                    ))
                })*
                _ => None,
            }
        }

        /// The error answer as a message (unit tests).
        #[cfg(test)]
        pub fn error_body(api_key: ApiKey, version: i16, failed: &dyn Any) -> Option<ResponseKind> {
            match api_key {
                $(ApiKey::$key => {
                    let failed = failed.downcast_ref::<$ty>()?;
                    let build: fn(i16, &$ty) -> Option<$ty> = $build;
                    build(version, failed).map(ResponseKind::$key)
                })*
                _ => None,
            }
        }
    };
}

error_answers! {
    Produce: ProduceResponse => |_, f| {
        let mut r = ProduceResponse::default();
        for t in &f.responses {
            let mut tr = produce_response::TopicProduceResponse::default();
            tr.name = t.name.clone();
            for p in &t.partition_responses {
                let mut pr = produce_response::PartitionProduceResponse::default();
                pr.index = p.index;
                pr.error_code = FAILED;
                tr.partition_responses.push(pr);
            }
            r.responses.push(tr);
        }
        Some(r)
    };
    ListOffsets: ListOffsetsResponse => |_, f| {
        let mut r = ListOffsetsResponse::default();
        for t in &f.topics {
            let mut tr = list_offsets_response::ListOffsetsTopicResponse::default();
            tr.name = t.name.clone();
            for p in &t.partitions {
                let mut pr = list_offsets_response::ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.error_code = FAILED;
                tr.partitions.push(pr);
            }
            r.topics.push(tr);
        }
        Some(r)
    };
    Metadata: MetadataResponse => |v, f| {
        let mut r = MetadataResponse::default();
        for t in &f.topics {
            let mut tr = metadata_response::MetadataResponseTopic::default();
            tr.name = t.name.clone();
            if v >= 10 {
                tr.topic_id = t.topic_id;
            }
            tr.error_code = FAILED;
            r.topics.push(tr);
        }
        Some(r)
    };
    ApiVersions: ApiVersionsResponse => |_, _| {
        let mut r = ApiVersionsResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    CreateTopics: CreateTopicsResponse => |_, f| {
        let mut r = CreateTopicsResponse::default();
        for t in &f.topics {
            let mut tr = create_topics_response::CreatableTopicResult::default();
            tr.name = t.name.clone();
            tr.error_code = FAILED;
            tr.num_partitions = -1;
            tr.replication_factor = -1;
            r.topics.push(tr);
        }
        Some(r)
    };
    DeleteTopics: DeleteTopicsResponse => |v, f| {
        let mut r = DeleteTopicsResponse::default();
        for t in &f.responses {
            let mut tr = delete_topics_response::DeletableTopicResult::default();
            tr.name = t.name.clone();
            if v >= 6 {
                tr.topic_id = t.topic_id;
            }
            tr.error_code = FAILED;
            r.responses.push(tr);
        }
        Some(r)
    };
    DeleteRecords: DeleteRecordsResponse => |_, f| {
        let mut r = DeleteRecordsResponse::default();
        for t in &f.topics {
            let mut tr = delete_records_response::DeleteRecordsTopicResult::default();
            tr.name = t.name.clone();
            for p in &t.partitions {
                let mut pr = delete_records_response::DeleteRecordsPartitionResult::default();
                pr.partition_index = p.partition_index;
                pr.low_watermark = -1;
                pr.error_code = FAILED;
                tr.partitions.push(pr);
            }
            r.topics.push(tr);
        }
        Some(r)
    };
    InitProducerId: InitProducerIdResponse => |_, _| {
        let mut r = InitProducerIdResponse::default();
        r.error_code = FAILED;
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        Some(r)
    };
    CreatePartitions: CreatePartitionsResponse => |_, f| {
        let mut r = CreatePartitionsResponse::default();
        for t in &f.results {
            let mut tr = create_partitions_response::CreatePartitionsTopicResult::default();
            tr.name = t.name.clone();
            tr.error_code = FAILED;
            r.results.push(tr);
        }
        Some(r)
    };
    FindCoordinator: FindCoordinatorResponse => |v, f| {
        let mut r = FindCoordinatorResponse::default();
        if v >= 4 {
            for c in &f.coordinators {
                let mut cr = find_coordinator_response::Coordinator::default();
                cr.key = c.key.clone();
                cr.node_id = BrokerId(-1);
                cr.port = -1;
                cr.error_code = FAILED;
                r.coordinators.push(cr);
            }
        } else {
            r.error_code = FAILED;
            r.node_id = BrokerId(-1);
            r.port = -1;
        }
        Some(r)
    };
    JoinGroup: JoinGroupResponse => |v, f| {
        let mut r = JoinGroupResponse::default();
        r.error_code = FAILED;
        r.generation_id = -1;
        r.member_id = f.member_id.clone();
        if v < 7 {
            r.protocol_name = nullable_str("");
        }
        Some(r)
    };
    SyncGroup: SyncGroupResponse => |_, _| {
        let mut r = SyncGroupResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    Heartbeat: HeartbeatResponse => |_, _| {
        let mut r = HeartbeatResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    LeaveGroup: LeaveGroupResponse => |_, _| {
        let mut r = LeaveGroupResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    OffsetCommit: OffsetCommitResponse => |_, f| {
        let mut r = OffsetCommitResponse::default();
        for t in &f.topics {
            let mut tr = offset_commit_response::OffsetCommitResponseTopic::default();
            tr.name = t.name.clone();
            for p in &t.partitions {
                let mut pr = offset_commit_response::OffsetCommitResponsePartition::default();
                pr.partition_index = p.partition_index;
                pr.error_code = FAILED;
                tr.partitions.push(pr);
            }
            r.topics.push(tr);
        }
        Some(r)
    };
    OffsetFetch: OffsetFetchResponse => |v, f| {
        let mut r = OffsetFetchResponse::default();
        if v >= 8 {
            for g in &f.groups {
                let mut gr = offset_fetch_response::OffsetFetchResponseGroup::default();
                gr.group_id = g.group_id.clone();
                gr.error_code = FAILED;
                r.groups.push(gr);
            }
        } else if v >= 2 {
            r.error_code = FAILED;
        } else {
            // v1 has no group-level error: every partition carries it.
            for t in &f.topics {
                let mut tr = offset_fetch_response::OffsetFetchResponseTopic::default();
                tr.name = t.name.clone();
                for p in &t.partitions {
                    let mut pr = offset_fetch_response::OffsetFetchResponsePartition::default();
                    pr.partition_index = p.partition_index;
                    pr.committed_offset = -1;
                    pr.metadata = nullable_str("");
                    pr.error_code = FAILED;
                    tr.partitions.push(pr);
                }
                r.topics.push(tr);
            }
        }
        Some(r)
    };
    ListGroups: ListGroupsResponse => |_, _| {
        let mut r = ListGroupsResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    DescribeGroups: DescribeGroupsResponse => |_, f| {
        let mut r = DescribeGroupsResponse::default();
        for g in &f.groups {
            let mut gr = describe_groups_response::DescribedGroup::default();
            gr.group_id = g.group_id.clone();
            gr.error_code = FAILED;
            r.groups.push(gr);
        }
        Some(r)
    };
    DeleteGroups: DeleteGroupsResponse => |_, f| {
        let mut r = DeleteGroupsResponse::default();
        for g in &f.results {
            let mut gr = delete_groups_response::DeletableGroupResult::default();
            gr.group_id = g.group_id.clone();
            gr.error_code = FAILED;
            r.results.push(gr);
        }
        Some(r)
    };
    OffsetDelete: OffsetDeleteResponse => |_, _| {
        let mut r = OffsetDeleteResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatResponse => |_, _| {
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    ConsumerGroupDescribe: ConsumerGroupDescribeResponse => |_, f| {
        let mut r = ConsumerGroupDescribeResponse::default();
        for g in &f.groups {
            let mut gr = consumer_group_describe_response::DescribedGroup::default();
            gr.group_id = g.group_id.clone();
            gr.error_code = FAILED;
            r.groups.push(gr);
        }
        Some(r)
    };
    DescribeConfigs: DescribeConfigsResponse => |_, f| {
        let mut r = DescribeConfigsResponse::default();
        for c in &f.results {
            let mut cr = describe_configs_response::DescribeConfigsResult::default();
            cr.resource_type = c.resource_type;
            cr.resource_name = c.resource_name.clone();
            cr.error_code = FAILED;
            r.results.push(cr);
        }
        Some(r)
    };
    AlterConfigs: AlterConfigsResponse => |_, f| {
        let mut r = AlterConfigsResponse::default();
        for c in &f.responses {
            let mut cr = alter_configs_response::AlterConfigsResourceResponse::default();
            cr.resource_type = c.resource_type;
            cr.resource_name = c.resource_name.clone();
            cr.error_code = FAILED;
            r.responses.push(cr);
        }
        Some(r)
    };
    IncrementalAlterConfigs: IncrementalAlterConfigsResponse => |_, f| {
        let mut r = IncrementalAlterConfigsResponse::default();
        for c in &f.responses {
            let mut cr =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default();
            cr.resource_type = c.resource_type;
            cr.resource_name = c.resource_name.clone();
            cr.error_code = FAILED;
            r.responses.push(cr);
        }
        Some(r)
    };
    DescribeCluster: DescribeClusterResponse => |_, _| {
        let mut r = DescribeClusterResponse::default();
        r.error_code = FAILED;
        Some(r)
    };
    // v1-v2 have no request-level error (the per-directory code describes a log dir): close.
    DescribeLogDirs: DescribeLogDirsResponse => |v, _| {
        (v >= 3).then(|| {
            let mut r = DescribeLogDirsResponse::default();
            r.error_code = FAILED;
            r
        })
    };
    DescribeTopicPartitions: DescribeTopicPartitionsResponse => |_, f| {
        let mut r = DescribeTopicPartitionsResponse::default();
        for t in &f.topics {
            let mut tr =
                describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default();
            tr.name = t.name.clone();
            tr.topic_id = t.topic_id;
            tr.error_code = FAILED;
            r.topics.push(tr);
        }
        Some(r)
    };
    // The top-level error code (every version); the partition list stays empty.
    DescribeQuorum: DescribeQuorumResponse => |v, _| {
        let mut r = DescribeQuorumResponse::default();
        if v >= 2 {
            r.error_message = None;
        }
        r.error_code = FAILED;
        Some(r)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;

    fn header(key: ApiKey, version: i16) -> ParsedHeader {
        ParsedHeader {
            api_key: key as i16,
            api_version: version,
            correlation_id: 7,
            client_id: None,
            header_version: key.request_header_version(version),
        }
    }

    /// The body of an encoded frame (size, header) decoded as `T` at `version`.
    fn decode<T: Decodable>(key: ApiKey, version: i16, frame: ResponseFrame) -> T {
        let mut bytes = bytes::BytesMut::new();
        for c in frame.chunks {
            match c {
                tern_net::OutChunk::Bytes(b) => bytes.extend_from_slice(&b),
                tern_net::OutChunk::File { .. } => panic!("an error answer is all in memory"),
            }
        }
        let mut b = bytes.freeze();
        let size = i32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        assert_eq!(size, b.len() - 4);
        let hv = key.response_header_version(version);
        let _ = b.split_to(4 + 4 + if hv >= 1 { 1 } else { 0 });
        let t = T::decode(&mut b, version).expect("decodes");
        assert!(b.is_empty(), "trailing bytes");
        t
    }

    #[test]
    fn per_partition_errors_mirror_the_failed_response() {
        let mut failed = ListOffsetsResponse::default();
        let mut t = list_offsets_response::ListOffsetsTopicResponse::default();
        t.name = TopicName(super::super::str_bytes("t"));
        for p in [0, 2] {
            let mut pr = list_offsets_response::ListOffsetsPartitionResponse::default();
            pr.partition_index = p;
            pr.leader_epoch = 5; // the field v1 cannot carry
            t.partitions.push(pr);
        }
        failed.topics.push(t);
        let h = header(ApiKey::ListOffsets, 1);
        assert!(tern_net::encode_response(2, 1, 7, &failed).is_err());
        let frame = error_answer(&h, &failed)
            .expect("an answer")
            .expect("encodes");
        let r: ListOffsetsResponse = decode(ApiKey::ListOffsets, 1, frame);
        let parts: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.offset))
            .collect();
        assert_eq!(parts, vec![(0, FAILED, -1), (2, FAILED, -1)]);
        assert_eq!(r.topics[0].name.0.as_str(), "t");
    }

    #[test]
    fn top_level_error_answers_encode_at_every_advertised_version() {
        let cases: Vec<(ApiKey, Box<dyn Any>)> = vec![
            (ApiKey::Heartbeat, Box::new(HeartbeatResponse::default())),
            (ApiKey::JoinGroup, Box::new(JoinGroupResponse::default())),
            (ApiKey::SyncGroup, Box::new(SyncGroupResponse::default())),
            (
                ApiKey::ApiVersions,
                Box::new(ApiVersionsResponse::default()),
            ),
            (
                ApiKey::FindCoordinator,
                Box::new(FindCoordinatorResponse::default()),
            ),
            (
                ApiKey::OffsetFetch,
                Box::new(OffsetFetchResponse::default()),
            ),
            (
                ApiKey::DescribeQuorum,
                Box::new(DescribeQuorumResponse::default()),
            ),
        ];
        for (key, failed) in cases {
            let (lo, hi) = crate::kafka::api::supported_range(key as i16).expect("advertised");
            for v in lo..=hi {
                let body = error_body(key, v, failed.as_ref()).expect("an error answer");
                let mut buf = bytes::BytesMut::new();
                body.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                let frame = error_answer(&header(key, v), failed.as_ref())
                    .expect("an answer")
                    .expect("encodes");
                assert!(frame.len() > 8);
            }
        }
        let r: HeartbeatResponse = decode(
            ApiKey::Heartbeat,
            4,
            error_answer(&header(ApiKey::Heartbeat, 4), &HeartbeatResponse::default())
                .unwrap()
                .unwrap(),
        );
        assert_eq!(r.error_code, FAILED);
    }

    #[test]
    fn an_api_without_an_error_at_that_version_gets_no_answer() {
        let failed = DescribeLogDirsResponse::default();
        assert!(error_answer(&header(ApiKey::DescribeLogDirs, 1), &failed).is_none());
        assert!(error_answer(&header(ApiKey::DescribeLogDirs, 2), &failed).is_none());
        assert!(error_answer(&header(ApiKey::DescribeLogDirs, 3), &failed).is_some());
        // A body of another type than the API's response: no answer either.
        assert!(error_answer(&header(ApiKey::Heartbeat, 0), &failed).is_none());
    }
}
