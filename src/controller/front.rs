//! The controller front in cluster mode: the broker's validation (topic names, partition
//! bounds, replication factor against the live brokers, topic and broker config values) runs
//! here on the node that received the request; what passes becomes a `wire::Rpc` to the
//! cluster controller through the driver. Producer ids come from a block this broker takes
//! from the controller (`ProducerIds` record) and hands out locally. Every answer waits until
//! this node has published the committed change to its shards, so a created topic exists here
//! before CreateTopics returns.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use super::Controller;
use crate::cluster::driver::Driver;
use crate::cluster::driver::wire::{ConfigChange, Rpc, RpcReply, WireNewTopic};
use crate::cluster::metadata_log::records::ConfigResource;
use crate::kafka::errors;
use crate::messages::{ControllerRequest, CreatedTopic, TopicError};
use crate::metadata::ClusterMetadata;
use crate::shard_state::ShardState;

/// How long an answer waits for this node to apply the committed change.
const APPLY_WAIT: Duration = Duration::from_secs(10);

fn whole_error(reply: RpcReply) -> TopicError {
    match reply {
        RpcReply::Error { code, message, .. } => (code, message),
        other => (
            errors::UNKNOWN_SERVER_ERROR,
            format!("unexpected controller answer {other:?}"),
        ),
    }
}

/// Fills the `None` slots of `results` (the requests sent) from the controller's answers.
fn merge<T>(
    results: &mut [Option<Result<T, TopicError>>],
    sent: &[usize],
    answers: Result<Vec<Result<T, TopicError>>, TopicError>,
) {
    match answers {
        Ok(answers) if answers.len() == sent.len() => {
            for (&i, a) in sent.iter().zip(answers) {
                results[i] = Some(a);
            }
        }
        Ok(answers) => {
            let e = (
                errors::UNKNOWN_SERVER_ERROR,
                format!("{} answers for {} requests", answers.len(), sent.len()),
            );
            for &i in sent {
                results[i] = Some(Err(e.clone()));
            }
        }
        Err(e) => {
            for &i in sent {
                results[i] = Some(Err(e.clone()));
            }
        }
    }
}

fn done<T>(results: Vec<Option<Result<T, TopicError>>>) -> Vec<Result<T, TopicError>> {
    results
        .into_iter()
        .map(|r| r.expect("every request has an answer"))
        .collect()
}

/// The config changes that turn `old` into `new` (one resource).
fn diff(
    resource: ConfigResource,
    name: &str,
    old: &std::collections::BTreeMap<String, String>,
    new: &std::collections::BTreeMap<String, String>,
) -> Vec<ConfigChange> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| ConfigChange {
            resource,
            resource_name: name.to_string(),
            name: k.clone(),
            value: new.get(k).cloned(),
        })
        .collect()
}

impl Controller {
    pub(super) async fn handle_cluster(
        &self,
        shard: &Rc<ShardState>,
        driver: &Rc<Driver>,
        req: ControllerRequest,
    ) {
        let timeout = crate::cluster::driver::REQUEST_TIMEOUT;
        match req {
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
                reply,
            } => {
                let meta = shard.metadata();
                let live = super::live_brokers(&self.config, &meta).len();
                let mut results: Vec<Option<Result<CreatedTopic, TopicError>>> = Vec::new();
                let mut sent = Vec::new();
                let mut wire_topics = Vec::new();
                for (i, t) in topics.iter().enumerate() {
                    match self.validate_new_topic_with(&meta, t, live) {
                        Ok((partitions, replication_factor)) => {
                            let configs = t
                                .configs
                                .iter()
                                .map(|(k, v)| {
                                    let v = crate::ops::configs::validate_topic_config(k, v)
                                        .unwrap_or(v.clone());
                                    (k.clone(), v)
                                })
                                .collect();
                            wire_topics.push(WireNewTopic {
                                name: t.name.clone(),
                                topic_id: uuid::Uuid::new_v4(),
                                partitions,
                                replication_factor,
                                configs,
                                assignments: t.assignments.clone(),
                            });
                            sent.push(i);
                            results.push(None);
                        }
                        Err(e) => results.push(Some(Err(e))),
                    }
                }
                if !sent.is_empty() {
                    let answer = match driver
                        .call(
                            Rpc::CreateTopics {
                                topics: wire_topics,
                                validate_only,
                            },
                            timeout,
                        )
                        .await
                    {
                        RpcReply::CreatedTopics { results, offset } => {
                            driver.wait_applied(offset, APPLY_WAIT).await;
                            Ok(results
                                .into_iter()
                                .map(|r| {
                                    r.map(|(id, partitions, replication_factor)| CreatedTopic {
                                        id,
                                        partitions,
                                        replication_factor,
                                    })
                                })
                                .collect())
                        }
                        other => Err(whole_error(other)),
                    };
                    merge(&mut results, &sent, answer);
                }
                let _ = reply.send(done(results));
            }
            ControllerRequest::DeleteTopics { names, reply } => {
                let answer = match driver
                    .call(
                        Rpc::DeleteTopics {
                            names: names.clone(),
                        },
                        timeout,
                    )
                    .await
                {
                    RpcReply::DeletedTopics { results, offset } => {
                        driver.wait_applied(offset, APPLY_WAIT).await;
                        Ok(results)
                    }
                    other => Err(whole_error(other)),
                };
                let mut results = vec![None; names.len()];
                merge(&mut results, &(0..names.len()).collect::<Vec<_>>(), answer);
                let _ = reply.send(done(results));
            }
            ControllerRequest::CreatePartitions {
                topics,
                validate_only,
                reply,
            } => {
                let n = topics.len();
                let answer = match driver
                    .call(
                        Rpc::CreatePartitions {
                            topics,
                            validate_only,
                        },
                        timeout,
                    )
                    .await
                {
                    RpcReply::Results { results, offset } => {
                        driver.wait_applied(offset, APPLY_WAIT).await;
                        Ok(results)
                    }
                    other => Err(whole_error(other)),
                };
                let mut results = vec![None; n];
                merge(&mut results, &(0..n).collect::<Vec<_>>(), answer);
                let _ = reply.send(done(results));
            }
            ControllerRequest::ElectLeaders {
                election_type,
                partitions,
                reply,
            } => {
                let answer = match driver
                    .call(
                        Rpc::ElectLeaders {
                            election_type,
                            partitions,
                        },
                        timeout,
                    )
                    .await
                {
                    RpcReply::Elected { results, offset } => {
                        driver.wait_applied(offset, APPLY_WAIT).await;
                        Ok(results)
                    }
                    other => Err(whole_error(other)),
                };
                let _ = reply.send(answer);
            }
            ControllerRequest::AlterPartitionReassignments {
                changes,
                allow_replication_factor_change,
                reply,
            } => {
                let n = changes.len();
                let answer = match driver
                    .call(
                        Rpc::AlterReassignments {
                            changes,
                            allow_replication_factor_change,
                        },
                        timeout,
                    )
                    .await
                {
                    RpcReply::Results { results, offset } if results.len() == n => {
                        driver.wait_applied(offset, APPLY_WAIT).await;
                        Ok(results)
                    }
                    other => Err(whole_error(other)),
                };
                let _ = reply.send(answer);
            }
            ControllerRequest::ListPartitionReassignments { partitions, reply } => {
                let answer = match driver
                    .call(Rpc::ListReassignments { partitions }, timeout)
                    .await
                {
                    RpcReply::Reassignments { ongoing } => Ok(ongoing),
                    other => Err(whole_error(other)),
                };
                let _ = reply.send(answer);
            }
            ControllerRequest::AllocateProducerId { reply } => {
                let _ = reply.send(self.next_producer_id_cluster(driver).await);
            }
            ControllerRequest::AlterPartition { req, reply } => {
                let answer = match driver.call(Rpc::AlterPartition { req }, timeout).await {
                    RpcReply::AlterPartition { result, offset } => {
                        driver.wait_applied(offset, timeout).await;
                        result.map_err(|(code, _)| code)
                    }
                    RpcReply::Error { code, .. } => Err(code),
                    other => {
                        log::warn!("AlterPartition: unexpected answer {other:?}");
                        Err(errors::UNKNOWN_SERVER_ERROR)
                    }
                };
                let _ = reply.send(answer);
            }
            ControllerRequest::DescribeQuorum { reply } => {
                // Answered by the active controller (offsets are raft indexes); any other
                // answer drops `reply`, which the handler reports as NOT_LEADER_OR_FOLLOWER.
                match driver.call(Rpc::DescribeQuorum, timeout).await {
                    RpcReply::Quorum(q) => {
                        let _ = reply.send(q);
                    }
                    other => log::debug!("DescribeQuorum: no quorum status: {other:?}"),
                }
            }
            ControllerRequest::AlterConfigs {
                resources,
                validate_only,
                reply,
            } => {
                let meta = shard.metadata();
                let mut results: Vec<Option<Result<(), TopicError>>> = Vec::new();
                let mut sent = Vec::new();
                let mut groups = Vec::new();
                for (i, a) in resources.iter().enumerate() {
                    let mut next: ClusterMetadata = (*meta).clone();
                    match crate::ops::configs::apply(&self.config, &mut next, a) {
                        Ok(()) if validate_only => results.push(Some(Ok(()))),
                        Ok(()) => {
                            let changes = if a.resource_type == crate::ops::configs::RESOURCE_TOPIC
                            {
                                let old = &meta.topics[&a.resource_name].configs;
                                let new = &next.topics[&a.resource_name].configs;
                                diff(ConfigResource::Topic, &a.resource_name, old, new)
                            } else {
                                diff(
                                    ConfigResource::Broker,
                                    "",
                                    &meta.broker_configs,
                                    &next.broker_configs,
                                )
                            };
                            groups.push(changes);
                            sent.push(i);
                            results.push(None);
                        }
                        Err(e) => results.push(Some(Err(e))),
                    }
                }
                if !sent.is_empty() {
                    let answer = match driver
                        .call(Rpc::AlterConfigs { resources: groups }, timeout)
                        .await
                    {
                        RpcReply::Results { results, offset } => {
                            driver.wait_applied(offset, APPLY_WAIT).await;
                            Ok(results)
                        }
                        other => Err(whole_error(other)),
                    };
                    merge(&mut results, &sent, answer);
                }
                let _ = reply.send(done(results));
            }
        }
    }

    /// The next producer id of this broker's block; a new block from the controller when it is
    /// used up.
    async fn next_producer_id_cluster(&self, driver: &Rc<Driver>) -> Result<i64, String> {
        let (next, end) = *self.producer_ids.borrow();
        if next >= end {
            let Some(l) = &driver.lifecycle else {
                return Err("this node is not a broker".into());
            };
            let rpc = Rpc::AllocateProducerIds {
                broker_id: l.broker_id,
                broker_epoch: l.epoch.get(),
            };
            match driver
                .call(rpc, crate::cluster::driver::REQUEST_TIMEOUT)
                .await
            {
                RpcReply::ProducerIds { start, len, .. } if len > 0 => {
                    *self.producer_ids.borrow_mut() = (start, start + len);
                }
                other => return Err(format!("allocating producer ids: {:?}", whole_error(other))),
            }
        }
        let mut b = self.producer_ids.borrow_mut();
        let id = b.0;
        b.0 += 1;
        Ok(id)
    }
}
