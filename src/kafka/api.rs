//! The Kafka APIs this broker implements and the versions it advertises in ApiVersions. Only
//! what is implemented is advertised; a request for any other API or version closes the
//! connection with a log line (as Kafka does), except ApiVersions, which is answered with
//! UNSUPPORTED_VERSION and this table.

use kafka_protocol::messages::ApiKey;

/// (api, min version, max version)
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 1, 13),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
];

pub fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k as i16 == api_key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

pub fn is_supported(api_key: i16, version: i16) -> bool {
    supported_range(api_key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
}

/// The table as (api_key, min, max) triples.
pub fn ranges() -> Vec<(i16, i16, i16)> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| (*k as i16, *lo, *hi))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_versions_are_known_to_the_codec() {
        for (k, lo, hi) in SUPPORTED {
            let v = k.valid_versions();
            assert!(
                v.min <= *lo && *hi <= v.max,
                "{k:?} {lo}..={hi} outside codec {v:?}"
            );
        }
    }
}
