//! Metadata: the live brokers (this one on a standalone node), the controller as brokers report
//! it (`routing::reported_controller`), and topics with their partitions (leader or
//! LEADER_NOT_AVAILABLE, epoch, replicas, ISR, offline replicas); creates unknown topics on
//! request when `auto.create.topics.enable` is on.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, TopicName};
use tern_net::{ParsedHeader, ResponseFrame};

use super::acl_operation;
use crate::kafka::errors;
use crate::messages::{ControllerRequest, NewTopic, ShardMessage};
use crate::metadata::{ClusterMetadata, NO_LEADER, validate_topic_name};
use crate::routing;
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

/// Creates `names` with broker defaults (auto-creation). Errors are left for the caller to see
/// through the refreshed metadata.
pub async fn auto_create(state: &Rc<ShardState>, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let topics = names
        .into_iter()
        .map(|name| NewTopic {
            assignments: Vec::new(),
            name,
            partitions: -1,
            replication_factor: -1,
            configs: Vec::new(),
        })
        .collect();
    let res = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::CreateTopics {
                topics,
                validate_only: false,
                reply,
            })
        })
        .await;
    if let Some(results) = res {
        for r in results {
            if let Err((code, msg)) = r
                && code != errors::TOPIC_ALREADY_EXISTS
            {
                log::info!("auto-creating a topic failed: {msg}");
            }
        }
    }
}

pub async fn handle(state: Rc<ShardState>, h: ParsedHeader, req: MetadataRequest) -> ResponseFrame {
    let meta = state.metadata();
    let query = MetadataQuery {
        // Which topics: None = all (v1+: null), else by name (or by id, v12+).
        topics: req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
                .collect()
        }),
        include_topic_ops: req.include_topic_authorized_operations,
        include_cluster_ops: req.include_cluster_authorized_operations,
    };
    let allow_auto =
        state.config.auto_create_topics && (h.api_version < 4 || req.allow_auto_topic_creation);
    // Topics created by this request are reported as LEADER_NOT_AVAILABLE (as Kafka does): the
    // client retries its metadata request and then sees them.
    let mut just_created: Vec<String> = Vec::new();
    let meta = match &query.topics {
        Some(list) if allow_auto => {
            let missing: Vec<String> = list
                .iter()
                .filter_map(|(n, _)| n.clone())
                .filter(|n| meta.topic(n).is_none() && validate_topic_name(n).is_ok())
                .collect();
            if missing.is_empty() {
                meta
            } else {
                auto_create(&state, missing.clone()).await;
                just_created = missing;
                state.metadata()
            }
        }
        _ => meta,
    };
    let broker = super::LocalBroker::of(&state.config);
    let resp = build_response(h.api_version, &broker, &meta, &query, &just_created);
    super::encode(&h, &resp)
}

/// What a Metadata request asks for.
pub(crate) struct MetadataQuery {
    /// None = every topic; else (name, id) pairs, the name absent when asked by id (v12+).
    pub topics: Option<Vec<(Option<String>, uuid::Uuid)>>,
    pub include_topic_ops: bool,
    /// Only carried by v8-v10 (later versions ask DescribeCluster).
    pub include_cluster_ops: bool,
}

/// The response to `query` at `version` from the metadata snapshot `meta`; `just_created` are
/// topics this request auto-created (reported LEADER_NOT_AVAILABLE until the next request).
pub(crate) fn build_response(
    version: i16,
    broker: &super::LocalBroker,
    meta: &ClusterMetadata,
    query: &MetadataQuery,
    just_created: &[String],
) -> MetadataResponse {
    let node = broker.node_id;
    let mut resp = MetadataResponse::default();
    if meta.is_cluster() {
        // The live brokers only: a fenced one leads nothing and may be unreachable.
        resp.brokers = meta
            .live_brokers()
            .map(|lb| {
                let mut b = MetadataResponseBroker::default();
                b.node_id = BrokerId(lb.id);
                b.host = super::str_bytes(&lb.host);
                b.port = i32::from(lb.port);
                b.rack = lb.rack.as_deref().map(super::str_bytes);
                b
            })
            .collect();
    } else {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(node);
        b.host = super::str_bytes(&broker.host);
        b.port = broker.port;
        resp.brokers = vec![b];
    }
    resp.cluster_id = Some(super::str_bytes(&meta.cluster_id));
    resp.controller_id = BrokerId(routing::reported_controller(meta, node));
    // v13's top-level error code: nothing makes the whole request fail here.
    resp.error_code = errors::NONE;
    resp.cluster_authorized_operations = if query.include_cluster_ops && (8..=10).contains(&version)
    {
        acl_operation::CLUSTER_ALL
    } else {
        acl_operation::NOT_REQUESTED
    };
    let topic_ops = if query.include_topic_ops && version >= 8 {
        acl_operation::TOPIC_ALL
    } else {
        acl_operation::NOT_REQUESTED
    };

    let describe = |name: &str, id: uuid::Uuid| -> MetadataResponseTopic {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(super::str_bytes(name)));
        t.topic_authorized_operations = topic_ops;
        match meta.topic(name) {
            Some(tm) if just_created.iter().any(|n| n == name) => {
                t.topic_id = tm.id;
                t.error_code = errors::LEADER_NOT_AVAILABLE;
            }
            Some(tm) => {
                t.topic_id = tm.id;
                t.is_internal =
                    meta.is_cluster() && super::describe_topic_partitions::is_internal_topic(name);
                t.partitions = (0..tm.partitions)
                    .map(|p| {
                        let mut mp = MetadataResponsePartition::default();
                        mp.partition_index = p;
                        let leader = routing::live_leader(meta, tm, p, node);
                        if leader == NO_LEADER {
                            mp.error_code = errors::LEADER_NOT_AVAILABLE;
                        }
                        mp.leader_id = BrokerId(leader);
                        mp.leader_epoch = tm.leader_epoch(p);
                        let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect();
                        match tm.partition_meta(p) {
                            Some(pm) => {
                                mp.replica_nodes = ids(&pm.replicas);
                                mp.isr_nodes = ids(&pm.isr);
                                mp.offline_replicas = ids(&routing::offline_replicas(meta, tm, p));
                            }
                            None => {
                                mp.replica_nodes = vec![BrokerId(node)];
                                mp.isr_nodes = vec![BrokerId(node)];
                            }
                        }
                        mp
                    })
                    .collect();
            }
            None => {
                t.topic_id = id;
                t.error_code = if validate_topic_name(name).is_err() {
                    errors::INVALID_TOPIC_EXCEPTION
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                };
            }
        }
        t
    };

    resp.topics = match &query.topics {
        None => meta
            .topics
            .keys()
            .map(|n| describe(n, uuid::Uuid::nil()))
            .collect(),
        Some(list) => list
            .iter()
            .map(|(name, id)| match name {
                // Kafka: "Topic IDs are not supported in requests for version 10 and 11".
                Some(n) if !id.is_nil() && version < 12 => {
                    let mut t = describe(n, *id);
                    t.partitions.clear();
                    t.error_code = errors::INVALID_REQUEST;
                    t
                }
                Some(n) => describe(n, *id),
                None => match meta.topic_by_id(id) {
                    Some((n, _)) if version >= 12 => describe(n, *id),
                    _ => {
                        let mut t = MetadataResponseTopic::default();
                        // Kafka: no name for an id it does not know.
                        t.name = None;
                        t.topic_id = *id;
                        t.error_code = if version >= 12 {
                            errors::UNKNOWN_TOPIC_ID
                        } else {
                            errors::INVALID_REQUEST
                        };
                        t.topic_authorized_operations = topic_ops;
                        t
                    }
                },
            })
            .collect(),
    };
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use kafka_protocol::messages::ResponseKind;
    let meta = crate::kafka::handlers::test_fixtures::cluster();
    let broker = crate::kafka::handlers::test_fixtures::broker();
    let (known, id) = meta
        .topics
        .iter()
        .next()
        .map(|(n, t)| (n.clone(), t.id))
        .expect("fixture has a topic");
    let mut out = Vec::new();
    for ops in [false, true] {
        let all = MetadataQuery {
            topics: None,
            include_topic_ops: ops,
            include_cluster_ops: ops,
        };
        out.push(build_response(version, &broker, &meta, &all, &[]));
        // Names only before v10 (null names and ids are not on the wire there).
        let mut list = vec![
            (Some(known.clone()), uuid::Uuid::nil()),
            (Some("missing".to_string()), uuid::Uuid::nil()),
            (Some("bad/name".to_string()), uuid::Uuid::nil()),
        ];
        if version >= 10 {
            list.push((None, id));
            list.push((None, uuid::Uuid::new_v4()));
        }
        let some = MetadataQuery {
            topics: Some(list),
            include_topic_ops: ops,
            include_cluster_ops: ops,
        };
        out.push(build_response(
            version,
            &broker,
            &meta,
            &some,
            std::slice::from_ref(&known),
        ));
        out.push(build_response(version, &broker, &meta, &some, &[]));
        let multi = crate::kafka::handlers::test_fixtures::multi_broker();
        out.push(build_response(version, &broker, &multi, &all, &[]));
    }
    out.into_iter().map(ResponseKind::Metadata).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::Metadata,
            guard_responses,
        );
    }

    #[test]
    fn reports_leader_epochs_ids_and_operations() {
        let mut meta = test_fixtures::cluster();
        let (name, tm) = meta.topics.iter_mut().next().unwrap();
        let name = name.clone();
        tm.leader_epochs[1] = 5;
        let id = tm.id;
        let q = MetadataQuery {
            topics: Some(vec![(None, id), (None, uuid::Uuid::from_u128(9))]),
            include_topic_ops: true,
            include_cluster_ops: true,
        };
        let r = build_response(13, &test_fixtures::broker(), &meta, &q, &[]);
        assert_eq!(r.topics[0].name.as_ref().unwrap().0.as_str(), name);
        assert_eq!(r.topics[0].topic_id, id);
        assert_eq!(r.topics[0].partitions[1].leader_epoch, 5);
        assert_eq!(
            r.topics[0].topic_authorized_operations,
            acl_operation::TOPIC_ALL
        );
        assert_eq!(r.topics[1].error_code, errors::UNKNOWN_TOPIC_ID);
        // v11+ has no cluster operations in Metadata.
        assert_eq!(r.cluster_authorized_operations, i32::MIN);
        let r = build_response(10, &test_fixtures::broker(), &meta, &q, &[]);
        assert_eq!(r.cluster_authorized_operations, acl_operation::CLUSTER_ALL);
        let q = MetadataQuery {
            topics: None,
            include_topic_ops: false,
            include_cluster_ops: false,
        };
        let r = build_response(10, &test_fixtures::broker(), &meta, &q, &[]);
        assert_eq!(r.cluster_authorized_operations, i32::MIN);
        assert_eq!(r.topics[0].topic_authorized_operations, i32::MIN);
    }

    #[test]
    fn cluster_mode_lists_live_brokers_and_placement_at_every_version() {
        use kafka_protocol::messages::ResponseKind;
        let meta = test_fixtures::multi_broker();
        let q = MetadataQuery {
            topics: None,
            include_topic_ops: false,
            include_cluster_ops: false,
        };
        for version in 1..=13 {
            // Decode what goes on the wire, as a client reads it.
            let r = build_response(version, &test_fixtures::broker(), &meta, &q, &[]);
            let mut buf = bytes::BytesMut::new();
            ResponseKind::Metadata(r).encode(&mut buf, version).unwrap();
            let r = match ResponseKind::decode(
                kafka_protocol::messages::ApiKey::Metadata,
                &mut buf.freeze(),
                version,
            )
            .unwrap()
            {
                ResponseKind::Metadata(r) => r,
                _ => unreachable!(),
            };
            let brokers: Vec<_> = r
                .brokers
                .iter()
                .map(|b| {
                    (
                        b.node_id.0,
                        b.host.to_string(),
                        b.port,
                        b.rack.as_ref().map(|r| r.to_string()),
                    )
                })
                .collect();
            // Broker 3 is fenced: not listed.
            assert_eq!(
                brokers,
                vec![
                    (1, "broker1.example".into(), 9091, None),
                    (2, "broker2.example".into(), 9092, Some("az2".into())),
                ],
                "v{version}"
            );
            assert_eq!(r.controller_id.0, 2, "v{version}");
            let ps = &r.topics[0].partitions;
            let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
            assert_eq!((ps[0].leader_id.0, ps[0].error_code), (1, errors::NONE));
            assert_eq!(ids(&ps[0].replica_nodes), vec![1, 2, 3]);
            assert_eq!(ids(&ps[0].isr_nodes), vec![1, 2]);
            assert_eq!(ps[1].leader_id.0, 2);
            assert_eq!(
                (ps[2].leader_id.0, ps[2].error_code),
                (-1, errors::LEADER_NOT_AVAILABLE)
            );
            if version >= 5 {
                assert_eq!(ids(&ps[0].offline_replicas), vec![3]);
                assert_eq!(ids(&ps[2].offline_replicas), vec![3, 4]);
            }
            if version >= 7 {
                assert_eq!(
                    ps.iter().map(|p| p.leader_epoch).collect::<Vec<_>>(),
                    vec![4, 6, 7]
                );
            }
        }
    }

    #[test]
    fn standalone_answer_is_this_broker() {
        let meta = test_fixtures::cluster();
        let q = MetadataQuery {
            topics: None,
            include_topic_ops: false,
            include_cluster_ops: false,
        };
        let r = build_response(13, &test_fixtures::broker(), &meta, &q, &[]);
        assert_eq!(r.brokers.len(), 1);
        assert_eq!((r.brokers[0].node_id.0, r.controller_id.0), (1, 1));
        for p in &r.topics[0].partitions {
            assert_eq!(p.leader_id.0, 1);
            assert_eq!(p.replica_nodes, vec![BrokerId(1)]);
            assert!(p.offline_replicas.is_empty() && p.error_code == errors::NONE);
        }
    }
}
