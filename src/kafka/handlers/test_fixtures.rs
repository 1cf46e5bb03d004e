//! Test-only inputs shared by the handlers' response-builder tests: a small cluster, this
//! broker, and the check that every response a handler's `guard_responses` builds encodes (and
//! decodes back) at every version Tern advertises for the API.

use std::collections::BTreeMap;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};

use super::LocalBroker;
use crate::metadata::{BrokerMeta, ClusterMetadata, NO_LEADER, PartitionMeta, TopicMeta};

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

/// A cluster-mode snapshot as broker 1 sees it: brokers 1 and 2 live (2 in rack "az2"), broker 3
/// registered but fenced, broker 4 never registered; controller 2. Topic "orders" (the id of
/// `cluster()`'s) has p0 led by 1 (replicas 1,2,3, ISR 1,2, epoch 4), p1 led by 2 (replicas
/// 2,1, ISR 2,1, epoch 6) and p2 without a leader (replicas 3,4, ISR 3, epoch 7).
pub fn multi_broker() -> ClusterMetadata {
    let mut meta = cluster();
    meta.controller_id = 2;
    meta.metadata_offset = 42;
    for (id, rack, fenced) in [(1, None, false), (2, Some("az2"), false), (3, None, true)] {
        meta.brokers.insert(
            id,
            BrokerMeta {
                id,
                host: format!("broker{id}.example"),
                port: 9090 + id as u16,
                rack: rack.map(str::to_string),
                fenced,
                epoch: 10 + id as i64,
            },
        );
    }
    let part = |replicas: &[i32], isr: &[i32], leader: i32, epoch: i32| PartitionMeta {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: epoch,
        partition_epoch: epoch + 10,
        adding_replicas: Vec::new(),
    };
    let t = meta.topics.get_mut("orders").expect("fixture topic");
    t.placement = vec![
        part(&[1, 2, 3], &[1, 2], 1, 4),
        part(&[2, 1], &[2, 1], 2, 6),
        part(&[3, 4], &[3], NO_LEADER, 7),
    ];
    t.leader_epochs = t.placement.iter().map(|p| p.leader_epoch).collect();
    meta
}

/// Encodes each response `guard(version)` builds at every advertised version of `api`, and
/// decodes it back at that version.
pub fn assert_guard_encodes(api: ApiKey, guard: fn(i16) -> Vec<ResponseKind>) {
    let (lo, hi) = crate::kafka::api::supported_range(api as i16).expect("advertised api");
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
