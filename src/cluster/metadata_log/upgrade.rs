//! Upgrade in place of a standalone data directory: the records of the first metadata-log
//! entry of a node whose `<log.dirs>/__tern_meta/cluster.json` predates cluster mode, so that
//! the one-node cluster it becomes keeps its cluster id, topics (ids, partitions, leader
//! epochs), topic and broker configs and producer-id mark.
//!
//! Every partition gets the node as its only replica, with no leader and the node in its ELR
//! (KIP-966: a replica holding everything committed). That is the state of a one-replica
//! partition whose broker restarted: when the node registers (fenced, as every registration
//! is) and has caught up, its unfencing elects it leader again (the leader epoch moves on from
//! the kept one). An ISR naming a broker that is not registered yet would make that fenced
//! registration contradict the image, which refuses it.
//!
//! A `ProducerIds` record names a registered broker, so the producer-id mark comes with a
//! fenced placeholder registration of the node (epoch 1, no endpoints); the node's own
//! registration then replaces it as a restart's would. Without a mark there is no placeholder.

use uuid::Uuid;

use super::records::{
    ConfigResource, MetadataRecord, NO_LEADER, PartitionRecord, RegisterBrokerRecord,
};
use crate::metadata::ClusterMetadata;

/// Epoch of the placeholder registration that carries the producer-id mark.
pub const PLACEHOLDER_BROKER_EPOCH: i64 = 1;

/// The records of the first log entry for an existing single-node data dir (`cluster.json`).
pub fn legacy_records(meta: &ClusterMetadata, node_id: i32) -> Vec<MetadataRecord> {
    assert!(node_id >= 0, "node.id {node_id}");
    let mut out = Vec::new();
    if !meta.cluster_id.is_empty() {
        out.push(MetadataRecord::ClusterId {
            cluster_id: meta.cluster_id.clone(),
        });
    }
    if meta.producer_id_block_end > 0 {
        out.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: node_id,
            incarnation_id: Uuid::nil(),
            broker_epoch: PLACEHOLDER_BROKER_EPOCH,
            endpoints: Vec::new(),
            rack: None,
            fenced: true,
        }));
        out.push(MetadataRecord::ProducerIds {
            broker_id: node_id,
            broker_epoch: PLACEHOLDER_BROKER_EPOCH,
            next_producer_id: meta.producer_id_block_end,
        });
    }
    for (name, topic) in &meta.topics {
        out.push(MetadataRecord::Topic {
            name: name.clone(),
            topic_id: topic.id,
        });
        for partition in 0..topic.partitions {
            out.push(MetadataRecord::Partition(PartitionRecord {
                topic_id: topic.id,
                partition,
                replicas: vec![node_id],
                isr: Vec::new(),
                elr: vec![node_id],
                leader: NO_LEADER,
                leader_epoch: topic.leader_epoch(partition),
                partition_epoch: topic
                    .partition_meta(partition)
                    .map_or(0, |p| p.partition_epoch),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }));
        }
        for (key, value) in &topic.configs {
            out.push(MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: name.clone(),
                name: key.clone(),
                value: Some(value.clone()),
            });
        }
    }
    for (key, value) in &meta.broker_configs {
        out.push(MetadataRecord::Config {
            resource: ConfigResource::Broker,
            resource_name: String::new(),
            name: key.clone(),
            value: Some(value.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::controller::{
        BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig,
    };
    use crate::cluster::metadata_log::image::MetadataImage;
    use crate::cluster::metadata_log::records::{decode_entry, encode_entry};
    use crate::cluster::view::cluster_metadata;
    use crate::metadata::TopicMeta;

    /// A standalone node's metadata as cluster.json holds it.
    fn standalone() -> ClusterMetadata {
        let mut orders = TopicMeta::new(
            Uuid::from_u128(0xa),
            3,
            BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("retention.ms".to_string(), "60000".to_string()),
            ]),
        );
        orders.leader_epochs = vec![0, 4, 2];
        let mut clicks = TopicMeta::new(Uuid::from_u128(0xb), 1, BTreeMap::new());
        // A cluster.json written before epochs were kept: no entries, epoch 0.
        clicks.leader_epochs = Vec::new();
        ClusterMetadata {
            cluster_id: "Zm9vYmFyYmF6cXV4cXV1eA".into(),
            version: 17,
            topics: BTreeMap::from([
                ("orders".to_string(), orders),
                ("clicks".to_string(), clicks),
            ]),
            producer_id_block_end: 5000,
            broker_configs: BTreeMap::from([(
                "log.retention.ms".to_string(),
                "3600000".to_string(),
            )]),
            ..Default::default()
        }
    }

    #[test]
    fn the_image_of_the_legacy_records_is_the_standalone_metadata() {
        let meta = standalone();
        let records = legacy_records(&meta, 1);
        // They travel as one log entry.
        let records = decode_entry(&encode_entry(&records)).unwrap();
        let mut image = MetadataImage::default();
        image.apply_entry(1, &records).unwrap();
        let view = cluster_metadata(&image, "PLAINTEXT", 1, 1);
        assert_eq!(view.cluster_id, meta.cluster_id);
        assert_eq!(view.producer_id_block_end, 5000);
        assert_eq!(view.broker_configs, meta.broker_configs);
        assert_eq!(
            view.topics.keys().collect::<Vec<_>>(),
            meta.topics.keys().collect::<Vec<_>>()
        );
        for (name, t) in &meta.topics {
            let v = &view.topics[name];
            assert_eq!(v.id, t.id, "{name}");
            assert_eq!(v.partitions, t.partitions, "{name}");
            assert_eq!(v.configs, t.configs, "{name}");
            for p in 0..t.partitions {
                assert_eq!(v.leader_epoch(p), t.leader_epoch(p), "{name}-{p}");
                let pm = v.partition_meta(p).expect("placement");
                assert_eq!(pm.replicas, vec![1]);
            }
        }
        // The placeholder registration is fenced: Metadata lists no broker until the node
        // registers itself.
        assert!(view.live_brokers().next().is_none());
    }

    #[test]
    fn no_placeholder_without_a_producer_id_mark() {
        let meta = ClusterMetadata {
            producer_id_block_end: 0,
            ..standalone()
        };
        let records = legacy_records(&meta, 2);
        assert!(
            !records
                .iter()
                .any(|r| matches!(r, MetadataRecord::RegisterBroker(_)))
        );
        let mut image = MetadataImage::default();
        image.apply_entry(1, &records).unwrap();
        assert!(image.brokers.is_empty());
        let empty = legacy_records(&ClusterMetadata::default(), 2);
        assert!(
            empty.is_empty(),
            "an empty standalone dir has nothing to carry"
        );
    }

    #[test]
    fn the_node_registers_and_leads_its_partitions_again() {
        let meta = standalone();
        let mut c = Controller::new(ControllerConfig::default(), MetadataImage::default());
        c.apply_committed(1, &legacy_records(&meta, 1)).unwrap();
        assert!(
            c.become_active(0, "unused").is_empty(),
            "the cluster id is kept"
        );
        let req = BrokerRegistration {
            broker_id: 1,
            cluster_id: Some(meta.cluster_id.clone()),
            incarnation_id: Uuid::from_u128(77),
            endpoints: Vec::new(),
            rack: None,
        };
        let (epoch, records) = c.register_broker(&req, 0).unwrap();
        assert!(epoch > PLACEHOLDER_BROKER_EPOCH);
        c.apply_committed(2, &records).unwrap();
        let hb = BrokerHeartbeat {
            broker_id: 1,
            broker_epoch: epoch,
            current_metadata_offset: 2,
            want_fence: false,
            want_shutdown: false,
            log_dir_full: false,
        };
        let (reply, records) = c.heartbeat(&hb, 10).unwrap();
        assert!(!reply.is_fenced);
        c.apply_committed(3, &records).unwrap();
        let view = cluster_metadata(c.committed(), "PLAINTEXT", 1, 3);
        for (name, t) in &meta.topics {
            for p in 0..t.partitions {
                let pm = view.topics[name].partition_meta(p).unwrap();
                assert_eq!((pm.leader, pm.isr.clone()), (1, vec![1]), "{name}-{p}");
                assert!(pm.leader_epoch > t.leader_epoch(p), "the epoch moves on");
            }
        }
        // Producer ids handed out next start at the standalone node's mark.
        let ((start, _), _) = c.allocate_producer_ids(1, epoch).unwrap();
        assert_eq!(start, 5000);
    }
}
