//! Test-only inputs shared by the handlers' response-builder tests: a small cluster, this
//! broker, and the check that every response a handler's `guard_responses` builds encodes (and
//! decodes back) at every version Tern advertises for the API.

use std::collections::BTreeMap;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};

use super::LocalBroker;
use crate::metadata::{ClusterMetadata, TopicMeta};

pub fn broker() -> LocalBroker {
    LocalBroker {
        node_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
    }
}

/// One topic "orders" with three partitions (partition 2 at leader epoch 3).
pub fn cluster() -> ClusterMetadata {
    let mut meta = ClusterMetadata {
        cluster_id: "test-cluster".into(),
        version: 1,
        ..Default::default()
    };
    let mut t = TopicMeta::new(
        uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        3,
        BTreeMap::new(),
    );
    t.leader_epochs[2] = 3;
    meta.topics.insert("orders".into(), t);
    meta
}

/// Encodes each response `guard(version)` builds at every advertised version of `api`, and
/// decodes it back at that version.
pub fn assert_guard_encodes(api: ApiKey, guard: fn(i16) -> Vec<ResponseKind>) {
    let (lo, hi) = crate::api::supported_range(api as i16).expect("advertised api");
    for version in lo..=hi {
        let responses = guard(version);
        assert!(!responses.is_empty(), "{api:?} v{version}: no responses");
        for (i, r) in responses.iter().enumerate() {
            let mut buf = BytesMut::new();
            r.encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("{api:?} v{version} response #{i}: {e:#}"));
            let mut bytes = buf.freeze();
            let len = bytes.len();
            ResponseKind::decode(api, &mut bytes, version)
                .unwrap_or_else(|e| panic!("{api:?} v{version} response #{i} decode: {e:#}"));
            assert!(
                bytes.is_empty(),
                "{api:?} v{version} response #{i}: {} of {len} bytes left",
                bytes.len()
            );
        }
    }
}
