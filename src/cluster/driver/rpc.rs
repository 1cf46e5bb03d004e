//! The controller node's answers to broker RPCs (`wire::Rpc`): each becomes a decision of the
//! `Controller` on its working image, the decision's batch is proposed before anything else
//! runs (proposals keep staging order), and the answer goes out once the batch has committed
//! and been published here, with the offset the caller must apply before relying on it.
//! Not the active controller: NOT_CONTROLLER with the leader this node knows.

use std::rc::Rc;
use std::time::Duration;

use super::node::ControllerNode;
use super::wire::{Rpc, RpcReply};
use crate::cluster::controller::leadership::ElectionType;
use crate::cluster::controller::reassignment::ReassignmentChange;
use crate::cluster::controller::{
    BrokerHeartbeat, BrokerRegistration, ControllerError, CreatePartitions, CreateTopic, Decision,
};
use crate::cluster::status::{QuorumStatus, ReplicaStatus};

fn item<T>(d: Decision<T>) -> Result<T, (i16, String)> {
    d.map_err(|e| (e.code, e.message))
}

impl ControllerNode {
    pub async fn handle_rpc(self: &Rc<Self>, rpc: Rpc) -> RpcReply {
        match self.answer(rpc).await {
            Ok(r) => r,
            Err(e) => RpcReply::error(e, self.leader()),
        }
    }

    async fn answer(self: &Rc<Self>, rpc: Rpc) -> Result<RpcReply, ControllerError> {
        let now = self.now_ms();
        match rpc {
            Rpc::Register {
                broker_id,
                cluster_id,
                incarnation_id,
                endpoints,
                rack,
            } => {
                let req = BrokerRegistration {
                    broker_id,
                    cluster_id,
                    incarnation_id,
                    endpoints,
                    rack,
                };
                let decided = self.st.borrow_mut().controller.register_broker(&req, now);
                let (broker_epoch, records) = match decided {
                    Err(e)
                        if e.code
                            == crate::cluster::controller::codes::DUPLICATE_BROKER_REGISTRATION
                            && self
                                .st
                                .borrow()
                                .controller
                                .is_proven_duplicate(broker_id, incarnation_id) =>
                    {
                        return Ok(RpcReply::DuplicateBroker { message: e.message });
                    }
                    decided => decided?,
                };
                let offset = self.commit(records).await?;
                log::info!("controller: broker {broker_id} registered with epoch {broker_epoch}");
                Ok(RpcReply::Registered {
                    broker_epoch,
                    offset,
                })
            }
            Rpc::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
                want_shutdown,
                log_dir_full,
            } => {
                let req = BrokerHeartbeat {
                    broker_id,
                    broker_epoch,
                    current_metadata_offset: metadata_offset,
                    want_fence: false,
                    want_shutdown,
                    log_dir_full,
                };
                let (reply, records) = {
                    let mut st = self.st.borrow_mut();
                    let answer = st.controller.heartbeat(&req, now)?;
                    st.broker_offsets.insert(broker_id, metadata_offset);
                    answer
                };
                let offset = self.commit(records).await?;
                Ok(RpcReply::Heartbeat {
                    is_caught_up: reply.is_caught_up,
                    is_fenced: reply.is_fenced,
                    should_shut_down: reply.should_shut_down,
                    offset,
                })
            }
            Rpc::CreateTopics {
                topics,
                validate_only,
            } => {
                let reqs: Vec<CreateTopic> = topics
                    .into_iter()
                    .map(|t| {
                        let manual = !t.assignments.is_empty();
                        CreateTopic {
                            name: t.name,
                            topic_id: t.topic_id,
                            num_partitions: if manual { -1 } else { t.partitions },
                            replication_factor: if manual { -1 } else { t.replication_factor },
                            assignments: t.assignments,
                            configs: t.configs.into_iter().collect(),
                        }
                    })
                    .collect();
                let started = std::time::Instant::now();
                let (results, records) = self
                    .st
                    .borrow_mut()
                    .controller
                    .create_topics(&reqs, validate_only)?;
                let decided = started.elapsed();
                let pending = self.propose(&records)?;
                let offset = self.wait_committed(pending).await?;
                let committed = started.elapsed();
                self.wait_published(offset).await;
                if !records.is_empty() {
                    log::info!(
                        "controller: CreateTopics of {} topics ({} records) at offset {offset}: decided in {} ms, committed at {} ms, published on this node at {} ms",
                        reqs.len(),
                        records.len(),
                        decided.as_millis(),
                        committed.as_millis(),
                        started.elapsed().as_millis()
                    );
                }
                let results = results
                    .into_iter()
                    .map(|r| item(r.map(|c| (c.topic_id, c.num_partitions, c.replication_factor))))
                    .collect();
                Ok(RpcReply::CreatedTopics { results, offset })
            }
            Rpc::DeleteTopics { names } => {
                let mut staged = Vec::new();
                for n in &names {
                    let d = self.st.borrow_mut().controller.delete_topic(n);
                    staged.push(match d {
                        Ok((id, records)) => self.propose(&records).map(|p| (id, p)),
                        Err(e) => Err(e),
                    });
                }
                let mut results = Vec::new();
                let mut offset = 0;
                for s in staged {
                    results.push(match s {
                        Ok((id, p)) => match self.wait(p).await {
                            Ok(o) => {
                                offset = offset.max(o);
                                Ok(id)
                            }
                            Err(e) => Err((e.code, e.message)),
                        },
                        Err(e) => Err((e.code, e.message)),
                    });
                }
                Ok(RpcReply::DeletedTopics { results, offset })
            }
            Rpc::CreatePartitions {
                topics,
                validate_only,
            } => {
                let mut staged = Vec::new();
                for (name, count) in &topics {
                    let req = CreatePartitions {
                        name: name.clone(),
                        count: *count,
                        assignments: Vec::new(),
                    };
                    let d = self
                        .st
                        .borrow_mut()
                        .controller
                        .create_partitions(&req, validate_only);
                    staged.push(d.and_then(|records| self.propose(&records)));
                }
                let mut results = Vec::new();
                let mut offset = 0;
                for s in staged {
                    results.push(match s {
                        Ok(p) => match self.wait(p).await {
                            Ok(o) => {
                                offset = offset.max(o);
                                Ok(())
                            }
                            Err(e) => Err((e.code, e.message)),
                        },
                        Err(e) => Err((e.code, e.message)),
                    });
                }
                Ok(RpcReply::Results { results, offset })
            }
            Rpc::AlterConfigs { resources } => {
                let (results, records) =
                    self.st.borrow_mut().controller.alter_configs(&resources)?;
                let offset = self.commit(records).await?;
                Ok(RpcReply::Results {
                    results: results.into_iter().map(item).collect(),
                    offset,
                })
            }
            Rpc::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => {
                let ((start, len), records) = self
                    .st
                    .borrow_mut()
                    .controller
                    .allocate_producer_ids(broker_id, broker_epoch)?;
                let offset = self.commit(records).await?;
                Ok(RpcReply::ProducerIds { start, len, offset })
            }
            Rpc::DescribeQuorum => Ok(RpcReply::Quorum(self.quorum_status()?)),
            Rpc::AlterPartition { req } => {
                let decided = self.st.borrow_mut().controller.alter_partition(&req);
                match decided {
                    Ok((state, records)) => {
                        let offset = if records.is_empty() {
                            0
                        } else {
                            self.commit(records).await?
                        };
                        Ok(RpcReply::AlterPartition {
                            result: Ok(state),
                            offset,
                        })
                    }
                    // Not the active controller: the whole RPC is refused (the client retries
                    // elsewhere); any other refusal is the partition's answer.
                    Err(e) if e.code == crate::cluster::controller::codes::NOT_CONTROLLER => Err(e),
                    Err(e) => Ok(RpcReply::AlterPartition {
                        result: Err((e.code, e.message)),
                        offset: 0,
                    }),
                }
            }
            Rpc::ElectLeaders {
                election_type,
                partitions,
            } => {
                let kind = ElectionType::from_wire(election_type).ok_or_else(|| {
                    ControllerError::new(
                        crate::cluster::controller::codes::INVALID_REQUEST,
                        format!("unknown election type {election_type}"),
                    )
                })?;
                let (outcomes, records) = self
                    .st
                    .borrow_mut()
                    .controller
                    .elect_leaders(kind, partitions.as_deref())?;
                let moved = records.len();
                let offset = self.commit(records).await?;
                if moved > 0 {
                    log::info!(
                        "controller: ElectLeaders ({kind:?}) moved {moved} leaders at offset {offset}"
                    );
                }
                Ok(RpcReply::Elected {
                    results: outcomes
                        .into_iter()
                        .map(|o| (o.topic, o.partition, o.code, o.message))
                        .collect(),
                    offset,
                })
            }
            Rpc::AlterReassignments {
                changes,
                allow_replication_factor_change,
            } => {
                let changes: Vec<ReassignmentChange> = changes
                    .into_iter()
                    .map(|(topic, partition, replicas)| ReassignmentChange {
                        topic,
                        partition,
                        replicas,
                    })
                    .collect();
                let (results, records) = self
                    .st
                    .borrow_mut()
                    .controller
                    .alter_partition_reassignments(&changes, allow_replication_factor_change)?;
                let offset = self.commit(records).await?;
                Ok(RpcReply::Results {
                    results: results.into_iter().map(item).collect(),
                    offset,
                })
            }
            Rpc::ListReassignments { partitions } => Ok(RpcReply::Reassignments {
                ongoing: self
                    .st
                    .borrow()
                    .controller
                    .list_partition_reassignments(partitions.as_deref())?,
            }),
            Rpc::FetchMetadata {
                have_offset,
                wait_ms,
            } => {
                if !self.is_active() {
                    return Err(ControllerError::new(
                        crate::cluster::controller::codes::NOT_CONTROLLER,
                        "not the active controller",
                    ));
                }
                let current = self.st.borrow().controller.committed().last_offset;
                if current <= have_offset {
                    let publisher = self.publisher.borrow().clone();
                    if let Some(p) = publisher {
                        let wait = Duration::from_millis(wait_ms.min(5_000));
                        let _ = tern_shard::task::timeout(wait, p.wait_for(have_offset + 1)).await;
                    }
                }
                let st = self.st.borrow();
                let image = st.controller.committed();
                Ok(RpcReply::Metadata {
                    image: (image.last_offset > have_offset).then(|| image.to_snapshot()),
                    controller_id: self.node_id,
                })
            }
        }
    }

    /// DescribeQuorum as the active controller sees it (offsets are raft indexes).
    pub fn quorum_status(&self) -> Result<QuorumStatus, ControllerError> {
        let st = self.st.borrow();
        if !st.quorum.is_leader() {
            return Err(ControllerError::new(
                crate::cluster::controller::codes::NOT_CONTROLLER,
                "not the active controller",
            ));
        }
        let now = super::node::unix_now_ms();
        let committed = st.quorum.committed_index();
        let voters = st
            .quorum
            .voter_progress()
            .into_iter()
            .map(|(id, matched)| {
                let me = id == self.node_id;
                let heard = if me {
                    now
                } else {
                    st.peer_last_heard_ms.get(&id).copied().unwrap_or(-1)
                };
                ReplicaStatus {
                    replica_id: id,
                    log_end_offset: if me {
                        st.quorum.last_index() as i64
                    } else {
                        matched as i64
                    },
                    last_fetch_ms: heard,
                    // Caught up as of the last answer that showed it at the commit index (the
                    // leader's own match is its last index: always caught up, as of now).
                    last_caught_up_ms: if matched >= committed { heard } else { -1 },
                }
            })
            .collect();
        Ok(QuorumStatus {
            leader_id: self.node_id,
            leader_epoch: st.quorum.term() as i32,
            high_watermark: st.quorum.committed_index() as i64,
            voters,
            observers: Vec::new(),
        })
    }
}
