//! Routing: a decoded client request goes to its API handler; a cross-shard message goes to the
//! shard-local half of the handler that sent it.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use kafka_protocol::messages::RequestKind;
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::handlers;
use crate::messages::ShardMessage;
use crate::shard_state::ShardState;

/// A request that has been dispatched (its order-sensitive part is done) and whose response, if
/// any, will be ready when `response` resolves.
pub struct Dispatched {
    pub response: Option<LocalBoxFuture<'static, ResponseFrame>>,
}

impl Dispatched {
    pub fn respond(fut: impl Future<Output = ResponseFrame> + 'static) -> Self {
        Self {
            response: Some(Box::pin(fut)),
        }
    }
}

/// Handles one decoded request. Awaiting this returns once the request has been handed to the
/// shards that own its partitions (so later requests on the connection are ordered after it).
pub async fn dispatch_request(
    state: Rc<ShardState>,
    header: ParsedHeader,
    client_host: &str,
    request: RequestKind,
    body_for_produce: Option<bytes::Bytes>,
) -> Dispatched {
    match request {
        RequestKind::Produce(req) => {
            handlers::produce::dispatch(state, header, req, body_for_produce).await
        }
        RequestKind::Fetch(req) => Dispatched::respond(handlers::fetch::handle(state, header, req)),
        RequestKind::ListOffsets(req) => {
            Dispatched::respond(handlers::list_offsets::handle(state, header, req))
        }
        RequestKind::OffsetForLeaderEpoch(req) => Dispatched::respond(
            handlers::offset_for_leader_epoch::handle(state, header, req),
        ),
        RequestKind::Metadata(req) => {
            Dispatched::respond(handlers::metadata::handle(state, header, req))
        }
        RequestKind::ApiVersions(req) => {
            Dispatched::respond(async move { handlers::api_versions::handle(&header, req) })
        }
        RequestKind::CreateTopics(req) => {
            Dispatched::respond(handlers::create_topics::handle(state, header, req))
        }
        RequestKind::DeleteTopics(req) => {
            Dispatched::respond(handlers::delete_topics::handle(state, header, req))
        }
        RequestKind::DescribeTopicPartitions(req) => Dispatched::respond(
            handlers::describe_topic_partitions::handle(state, header, req),
        ),
        RequestKind::CreatePartitions(req) => {
            Dispatched::respond(handlers::create_partitions::handle(state, header, req))
        }
        RequestKind::InitProducerId(req) => {
            Dispatched::respond(handlers::init_producer_id::handle(state, header, req))
        }
        // consumer groups
        RequestKind::FindCoordinator(req) => {
            Dispatched::respond(handlers::find_coordinator::handle(state, header, req))
        }
        RequestKind::JoinGroup(req) => Dispatched::respond(handlers::join_group::handle(
            state,
            header,
            client_host.to_string(),
            req,
        )),
        RequestKind::SyncGroup(req) => {
            Dispatched::respond(handlers::sync_group::handle(state, header, req))
        }
        RequestKind::Heartbeat(req) => {
            Dispatched::respond(handlers::heartbeat::handle(state, header, req))
        }
        RequestKind::LeaveGroup(req) => {
            Dispatched::respond(handlers::leave_group::handle(state, header, req))
        }
        RequestKind::OffsetCommit(req) => {
            Dispatched::respond(handlers::offset_commit::handle(state, header, req))
        }
        RequestKind::OffsetFetch(req) => {
            Dispatched::respond(handlers::offset_fetch::handle(state, header, req))
        }
        RequestKind::ListGroups(req) => {
            Dispatched::respond(handlers::list_groups::handle(state, header, req))
        }
        RequestKind::DescribeGroups(req) => {
            Dispatched::respond(handlers::describe_groups::handle(state, header, req))
        }
        RequestKind::DeleteGroups(req) => {
            Dispatched::respond(handlers::delete_groups::handle(state, header, req))
        }
        RequestKind::OffsetDelete(req) => {
            Dispatched::respond(handlers::offset_delete::handle(state, header, req))
        }
        RequestKind::ConsumerGroupHeartbeat(req) => Dispatched::respond(
            handlers::consumer_group_heartbeat::handle(state, header, client_host.to_string(), req),
        ),
        RequestKind::ConsumerGroupDescribe(req) => Dispatched::respond(
            handlers::consumer_group_describe::handle(state, header, req),
        ),
        // operations
        RequestKind::DescribeConfigs(req) => {
            Dispatched::respond(handlers::describe_configs::handle(state, header, req))
        }
        RequestKind::AlterConfigs(req) => {
            Dispatched::respond(handlers::alter_configs::handle(state, header, req))
        }
        RequestKind::IncrementalAlterConfigs(req) => Dispatched::respond(
            handlers::alter_configs::handle_incremental(state, header, req),
        ),
        RequestKind::DescribeCluster(req) => {
            Dispatched::respond(handlers::describe_cluster::handle(state, header, req))
        }
        RequestKind::DescribeLogDirs(req) => {
            Dispatched::respond(handlers::describe_log_dirs::handle(state, header, req))
        }
        RequestKind::DeleteRecords(req) => {
            Dispatched::respond(handlers::delete_records::handle(state, header, req))
        }
        RequestKind::DescribeQuorum(req) => {
            Dispatched::respond(handlers::describe_quorum::handle(state, header, req))
        }
        RequestKind::ElectLeaders(req) => {
            Dispatched::respond(handlers::elect_leaders::handle(state, header, req))
        }
        RequestKind::AlterPartitionReassignments(req) => Dispatched::respond(
            handlers::partition_reassignments::handle_alter(state, header, req),
        ),
        RequestKind::ListPartitionReassignments(req) => Dispatched::respond(
            handlers::partition_reassignments::handle_list(state, header, req),
        ),
        other => {
            // Unreachable in practice: the connection checks `api::is_supported` first.
            log::warn!(
                "request {:?} has no handler",
                std::mem::discriminant(&other)
            );
            Dispatched { response: None }
        }
    }
}

/// Handles a message from another shard (or from this one, delivered inline).
pub async fn handle_shard_message(state: Rc<ShardState>, msg: ShardMessage) {
    match msg {
        ShardMessage::Produce {
            acks,
            timeout,
            items,
            reply,
        } => handlers::produce::handle_local(state, acks, timeout, items, reply).await,
        ShardMessage::Fetch { items, reply } => {
            let res = handlers::fetch::read_local(&state, &items).await;
            let _ = reply.send(res);
        }
        ShardMessage::WaitForData {
            items,
            wait_offsets,
            deadline,
            reply,
        } => handlers::fetch::wait_local(&state, items, wait_offsets, deadline, reply).await,
        ShardMessage::ReplicaFetch {
            replica,
            broker_epoch,
            items,
            wait_until,
            reply,
        } => {
            let res = crate::cluster::replication::driver::serve::serve_local(
                &state,
                replica,
                broker_epoch,
                &items,
                wait_until,
            )
            .await;
            let _ = reply.send(res);
        }
        ShardMessage::ListOffsets { items, reply } => {
            let res = handlers::list_offsets::handle_local(&state, &items).await;
            let _ = reply.send(res);
        }
        ShardMessage::OffsetForLeaderEpoch { items, reply } => {
            let _ = reply.send(handlers::offset_for_leader_epoch::handle_local(
                &state, &items,
            ));
        }
        ShardMessage::Controller(req) => match &state.controller {
            Some(c) => c.handle(&state, req).await,
            None => log::error!("controller request sent to shard {}", state.id),
        },
        ShardMessage::Group(msg) => crate::coordinators::groups::handle_message(state, *msg).await,
        ShardMessage::DeleteRecords { items, reply } => {
            let res = handlers::delete_records::handle_local(&state, items).await;
            let _ = reply.send(res);
        }
        ShardMessage::CollectStats { reply } => {
            let _ = reply.send(crate::ops::metrics::collect_local(&state));
        }
        ShardMessage::ApplyMetadata { meta, reply } => {
            if state.set_metadata(meta.clone()) {
                if let Err(e) = state.partitions.reconcile(&state.config, &meta).await {
                    log::error!(
                        "shard {}: applying metadata v{}: {e:#}",
                        state.id,
                        meta.version
                    );
                }
                // Replication roles follow the newest snapshot (reconcile may have awaited).
                crate::cluster::replication::driver::ShardReplicas::reconcile(
                    &state,
                    &state.metadata(),
                );
                // Group coordinators follow the leadership of their offsets partitions.
                crate::coordinators::groups::on_metadata(&state, &state.metadata());
            }
            let _ = reply.send(());
        }
    }
}
