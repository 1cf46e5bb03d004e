//! The broker's view of the metadata image: turns the `MetadataImage` that the metadata log
//! builds into the `ClusterMetadata` snapshot every shard reads (topics with their placement,
//! registered brokers, configs, the producer-id mark). Shard 0 builds one after each committed
//! entry and pushes it to the shards (`ShardMessage::ApplyMetadata`).

use std::collections::BTreeMap;

use super::metadata_log::image::MetadataImage;
use super::metadata_log::records::ConfigResource;
use crate::metadata::{BrokerMeta, ClusterMetadata, PartitionMeta, TopicMeta};

/// The snapshot of `image` that shards apply. `listener` is the name of the broker listener
/// clients use (`inter.broker.listener.name` when clients and brokers share it); a broker
/// registered without it is reached on its first endpoint. `controller_id` is the active
/// controller as this node knows it (-1 unknown); `version` orders snapshots.
pub fn cluster_metadata(
    image: &MetadataImage,
    listener: &str,
    controller_id: i32,
    version: u64,
) -> ClusterMetadata {
    let topics = image
        .topics
        .values()
        .map(|t| {
            let placement: Vec<PartitionMeta> = t
                .partitions
                .values()
                .map(|p| PartitionMeta {
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    adding_replicas: p.adding_replicas.clone(),
                })
                .collect();
            debug_assert!(
                t.partitions.keys().copied().eq(0..placement.len() as i32),
                "partition indexes of {} have gaps",
                t.name
            );
            let configs = image
                .configs
                .get(&(ConfigResource::Topic, t.name.clone()))
                .cloned()
                .unwrap_or_default();
            let mut meta = TopicMeta::new(t.id, placement.len() as i32, configs);
            meta.leader_epochs = placement.iter().map(|p| p.leader_epoch).collect();
            meta.placement = placement;
            (t.name.clone(), meta)
        })
        .collect();
    let brokers = image
        .brokers
        .values()
        .map(|b| {
            let reg = &b.registration;
            let endpoint = reg
                .endpoints
                .iter()
                .find(|e| e.name == listener)
                .or_else(|| reg.endpoints.first());
            let (host, port) = endpoint.map_or((String::new(), 0), |e| (e.host.clone(), e.port));
            (
                reg.broker_id,
                BrokerMeta {
                    id: reg.broker_id,
                    host,
                    port,
                    rack: reg.rack.clone(),
                    fenced: b.fenced,
                    epoch: reg.broker_epoch,
                },
            )
        })
        .collect();
    let broker_configs: BTreeMap<String, String> = image
        .configs
        .get(&(ConfigResource::Broker, String::new()))
        .cloned()
        .unwrap_or_default();
    ClusterMetadata {
        cluster_id: image.cluster_id.clone().unwrap_or_default(),
        version,
        topics,
        producer_id_block_end: image.next_producer_id,
        broker_configs,
        brokers,
        controller_id,
        metadata_offset: image.last_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata_log::records::{
        BrokerEndpoint, MetadataRecord, PartitionRecord, RegisterBrokerRecord,
    };

    #[test]
    fn image_becomes_the_shards_snapshot() {
        let id = uuid::Uuid::from_u128(9);
        let mut image = MetadataImage::default();
        let mut records = vec![MetadataRecord::ClusterId {
            cluster_id: "c1".into(),
        }];
        for b in [1, 2] {
            records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: b,
                incarnation_id: uuid::Uuid::from_u128(b as u128),
                broker_epoch: b as i64,
                endpoints: vec![
                    BrokerEndpoint {
                        name: "CONTROLLER".into(),
                        host: "127.0.0.1".into(),
                        port: 9100 + b as u16,
                        security_protocol: "PLAINTEXT".into(),
                    },
                    BrokerEndpoint {
                        name: "PLAINTEXT".into(),
                        host: "127.0.0.1".into(),
                        port: 9000 + b as u16,
                        security_protocol: "PLAINTEXT".into(),
                    },
                ],
                rack: (b == 2).then(|| "az2".to_string()),
                fenced: false,
            }));
        }
        records.push(MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for p in 0..2 {
            records.push(MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: p,
                replicas: vec![1 + p, 2 - p],
                isr: vec![1 + p, 2 - p],
                elr: vec![],
                leader: 1 + p,
                leader_epoch: 3,
                partition_epoch: 4,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }));
        }
        records.push(MetadataRecord::Config {
            resource: ConfigResource::Topic,
            resource_name: "t".into(),
            name: "retention.ms".into(),
            value: Some("1000".into()),
        });
        image.apply_entry(1, &records).unwrap();
        let meta = cluster_metadata(&image, "PLAINTEXT", 1, 7);
        assert_eq!(
            (meta.cluster_id.as_str(), meta.version, meta.controller_id),
            ("c1", 7, 1)
        );
        assert_eq!(meta.metadata_offset, 1);
        let t = meta.topic("t").unwrap();
        assert_eq!((t.id, t.partitions), (id, 2));
        assert_eq!(t.leader(1, 0), 2);
        assert_eq!(t.leader_epoch(1), 3);
        assert_eq!(t.partition_meta(0).unwrap().replicas, vec![1, 2]);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(meta.brokers[&1].port, 9001);
        assert_eq!(meta.brokers[&2].rack.as_deref(), Some("az2"));
        assert_eq!(meta.live_brokers().count(), 2);
        assert!(meta.is_cluster());
    }
}
