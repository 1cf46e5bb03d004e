//! The unit-level guard of the advertised versions: for every API in `api::SUPPORTED` and every
//! version in its advertised range, each response that handler's `guard_responses(version)`
//! builds (through the handler's own response-building code, with every optional part it can
//! fill: errors, messages, members, per-partition fields, tagged fields) must encode with
//! kafka-protocol. A field set that the version lacks fails here, not at a client. An advertised
//! API without an entry in `GUARDS` fails too. The integration-level twin is
//! tests/integration/test_10_version_matrix.py.

use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::kafka::api;
use crate::kafka::handlers;

type Guard = fn(i16) -> Vec<ResponseKind>;

/// One entry per advertised API.
const GUARDS: &[(ApiKey, Guard)] = &[
    (ApiKey::Produce, handlers::produce::guard_responses as Guard),
    (ApiKey::Fetch, handlers::fetch::guard_responses as Guard),
    (
        ApiKey::ListOffsets,
        handlers::list_offsets::guard_responses as Guard,
    ),
    (
        ApiKey::OffsetForLeaderEpoch,
        handlers::offset_for_leader_epoch::guard_responses as Guard,
    ),
    (
        ApiKey::Metadata,
        handlers::metadata::guard_responses as Guard,
    ),
    (
        ApiKey::DescribeConfigs,
        handlers::describe_configs::guard_responses as Guard,
    ),
    (
        ApiKey::DescribeTopicPartitions,
        handlers::describe_topic_partitions::guard_responses as Guard,
    ),
    (
        ApiKey::ApiVersions,
        handlers::api_versions::guard_responses as Guard,
    ),
    (
        ApiKey::CreateTopics,
        handlers::create_topics::guard_responses as Guard,
    ),
    (
        ApiKey::DeleteTopics,
        handlers::delete_topics::guard_responses as Guard,
    ),
    (
        ApiKey::InitProducerId,
        handlers::init_producer_id::guard_responses as Guard,
    ),
    (
        ApiKey::CreatePartitions,
        handlers::create_partitions::guard_responses as Guard,
    ),
    (
        ApiKey::FindCoordinator,
        handlers::find_coordinator::guard_responses as Guard,
    ),
    (
        ApiKey::JoinGroup,
        handlers::join_group::guard_responses as Guard,
    ),
    (
        ApiKey::SyncGroup,
        handlers::sync_group::guard_responses as Guard,
    ),
    (
        ApiKey::Heartbeat,
        handlers::heartbeat::guard_responses as Guard,
    ),
    (
        ApiKey::LeaveGroup,
        handlers::leave_group::guard_responses as Guard,
    ),
    (
        ApiKey::OffsetCommit,
        handlers::offset_commit::guard_responses as Guard,
    ),
    (
        ApiKey::OffsetFetch,
        handlers::offset_fetch::guard_responses as Guard,
    ),
    (
        ApiKey::ListGroups,
        handlers::list_groups::guard_responses as Guard,
    ),
    (
        ApiKey::DescribeGroups,
        handlers::describe_groups::guard_responses as Guard,
    ),
    (
        ApiKey::DeleteGroups,
        handlers::delete_groups::guard_responses as Guard,
    ),
    (
        ApiKey::OffsetDelete,
        handlers::offset_delete::guard_responses as Guard,
    ),
    (
        ApiKey::ConsumerGroupHeartbeat,
        handlers::consumer_group_heartbeat::guard_responses as Guard,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        handlers::consumer_group_describe::guard_responses as Guard,
    ),
    (
        ApiKey::AlterConfigs,
        handlers::alter_configs::guard_responses as Guard,
    ),
    (
        ApiKey::IncrementalAlterConfigs,
        handlers::alter_configs::guard_responses_incremental as Guard,
    ),
    (
        ApiKey::DescribeCluster,
        handlers::describe_cluster::guard_responses as Guard,
    ),
    (
        ApiKey::DescribeLogDirs,
        handlers::describe_log_dirs::guard_responses as Guard,
    ),
    (
        ApiKey::DeleteRecords,
        handlers::delete_records::guard_responses as Guard,
    ),
    (
        ApiKey::DescribeQuorum,
        handlers::describe_quorum::guard_responses as Guard,
    ),
    (
        ApiKey::ElectLeaders,
        handlers::elect_leaders::guard_responses as Guard,
    ),
    (
        ApiKey::AlterPartitionReassignments,
        handlers::partition_reassignments::guard_responses_alter as Guard,
    ),
    (
        ApiKey::ListPartitionReassignments,
        handlers::partition_reassignments::guard_responses_list as Guard,
    ),
];

/// The response's API, read off the variant name (`ResponseKind` has no accessor).
fn names_api(r: &ResponseKind, key: ApiKey) -> bool {
    format!("{r:?}").starts_with(&format!("{key:?}("))
}

#[test]
fn every_advertised_version_of_every_response_encodes() {
    let mut failures = Vec::new();
    let mut encoded = 0;
    for (key, lo, hi) in api::SUPPORTED {
        let Some((_, guard)) = GUARDS.iter().find(|(k, _)| k == key) else {
            failures.push(format!("{key:?}: advertised but has no guard entry"));
            continue;
        };
        for v in *lo..=*hi {
            let responses = guard(v);
            if responses.is_empty() {
                failures.push(format!("{key:?} v{v}: the guard built no response"));
            }
            for (i, r) in responses.iter().enumerate() {
                if !names_api(r, *key) {
                    failures.push(format!("{key:?} v{v} #{i}: a response of another API"));
                    continue;
                }
                let mut buf = bytes::BytesMut::new();
                match r.encode(&mut buf, v) {
                    Ok(()) => encoded += 1,
                    Err(e) => failures.push(format!("{key:?} v{v} response #{i}: {e:#}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(encoded > 0);
}

#[test]
fn guard_entries_are_advertised_and_unique() {
    for (i, (key, _)) in GUARDS.iter().enumerate() {
        assert!(
            api::supported_range(*key as i16).is_some(),
            "{key:?} has a guard entry but is not advertised"
        );
        assert!(
            !GUARDS[..i].iter().any(|(k, _)| k == key),
            "{key:?} has two guard entries"
        );
    }
}

#[test]
fn the_guard_catches_a_field_the_version_lacks() {
    // The bug class this guards against (ListOffsets v1-v3 before 00b7185): LeaderEpoch set on
    // a version without it, and a v6-only error message on DescribeGroups v5.
    use kafka_protocol::messages::{describe_groups_response, list_offsets_response};
    let mut p = list_offsets_response::ListOffsetsPartitionResponse::default();
    p.leader_epoch = 0;
    let mut t = list_offsets_response::ListOffsetsTopicResponse::default();
    t.partitions.push(p);
    let mut lo = list_offsets_response::ListOffsetsResponse::default();
    lo.topics.push(t);
    let lo = ResponseKind::ListOffsets(lo);
    let mut buf = bytes::BytesMut::new();
    assert!(lo.encode(&mut buf, 3).is_err());
    assert!(lo.encode(&mut buf, 4).is_ok());

    let mut g = describe_groups_response::DescribedGroup::default();
    g.error_message = Some(handlers::str_bytes("gone"));
    let mut dg = describe_groups_response::DescribeGroupsResponse::default();
    dg.groups.push(g);
    let dg = ResponseKind::DescribeGroups(dg);
    assert!(dg.encode(&mut buf, 5).is_err());
    assert!(dg.encode(&mut buf, 6).is_ok());
}
