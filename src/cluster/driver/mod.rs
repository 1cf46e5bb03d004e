//! The glommio side of the cluster, on shard 0 of every node (docs/cluster.md): a voter hosts
//! the quorum and the controller (`node`), serves the controller listener and talks to its
//! peers (`transport`, `wire`); a broker registers and heartbeats (`lifecycle`); a broker that
//! is not a voter follows the metadata from the active controller (`follower`); every node
//! publishes the committed metadata to its shards (`publish`). The rest of the broker sees
//! only `Driver::call` (a controller RPC, answered locally on the active controller, forwarded
//! to it otherwise) and the published `ClusterMetadata`.

pub mod client;
pub mod follower;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod prepare;
pub mod publish;
pub mod rpc;
pub mod transport;
pub mod wire;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use rand::Rng;

use self::client::RpcClient;
use self::lifecycle::BrokerLifecycle;
use self::node::{ControllerNode, Fatal, NodeSetup};
use self::prepare::Prepared;
use self::publish::Publisher;
use self::wire::{Rpc, RpcReply};
use crate::cluster::controller::{Controller, ControllerConfig, codes};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::quorum::{MetadataQuorum, QuorumConfig};
use crate::shard_state::ShardState;

/// Quorum timer period (election timeout 1000 ms / 10).
pub const TICK_MS: u64 = 100;
/// The image is snapshotted (and the log compacted) every this many entries.
pub const SNAPSHOT_EVERY: u64 = 1000;
/// How long a forwarded controller request may take before REQUEST_TIMED_OUT.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM waits for this broker's leaderships to move away (Kafka bounds its
/// controlled shutdown too) before stopping anyway.
pub const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Fatal problems the process exits on; `config` ones exit with code 2 (docs/cluster.md).
pub struct FatalHooks {
    pub fatal: Fatal,
    pub config_error: Fatal,
}

pub struct Driver {
    pub node_id: i32,
    pub node: Option<Rc<ControllerNode>>,
    /// Forwarded client requests.
    pub client: RpcClient,
    /// Registration and heartbeats (not queued behind a slow forwarded request).
    pub lifecycle_client: RpcClient,
    /// The broker-only node's metadata long-poll.
    pub fetch_client: RpcClient,
    pub publisher: Rc<Publisher>,
    pub lifecycle: Option<Rc<BrokerLifecycle>>,
    /// A broker-only node's copy of the committed image and the controller that sent it.
    pub follower_image: RefCell<(MetadataImage, i32)>,
    /// controller.quorum.fetch.timeout.ms: a voter that heard from no majority for this long
    /// and knows no leader takes the quorum as gone (`quorum_out_of_reach`).
    quorum_silence_ms: i64,
}

impl Driver {
    /// Starts everything on shard 0. `shard` None on a controller-only node's publisher.
    pub fn start(
        shard: Rc<ShardState>,
        prepared: Prepared,
        hooks: FatalHooks,
    ) -> anyhow::Result<Rc<Self>> {
        let config = shard.config.clone();
        let cluster = config.cluster.clone();
        let node_id = cluster.node_id;
        let max_frame = wire::DEFAULT_MAX_FRAME;
        let client = RpcClient::new(prepared.voters.clone(), max_frame);
        let lifecycle_client = RpcClient::new(prepared.voters.clone(), max_frame);
        let fetch_client = RpcClient::new(prepared.voters.clone(), max_frame);
        let mut node = None;
        if let Some(log) = prepared.voter_log {
            let seed: u64 = rand::thread_rng().r#gen();
            let mut qcfg = QuorumConfig::from_cluster(&cluster, TICK_MS, seed);
            if cluster.standalone {
                // Standalone is a single-voter quorum of this node.
                qcfg.voters = vec![node_id];
            }
            let single_voter = qcfg.voters.len() == 1;
            let quorum = MetadataQuorum::restart(qcfg, log.state)
                .map_err(|e| anyhow::anyhow!("starting the metadata quorum: {e}"))?;
            let mut controller = Controller::new(
                ControllerConfig::from_cluster(&cluster, config.num_partitions, 1)
                    .with_leadership_settings(&config.static_props),
                MetadataImage::default(),
            );
            controller.install_snapshot(log.snapshot_image);
            let setup = NodeSetup {
                quorum,
                controller,
                disk: log.disk,
                legacy: prepared.legacy,
                new_cluster_id: uuid::Uuid::new_v4().simple().to_string()[..22].to_string(),
                snapshot_every: SNAPSHOT_EVERY,
                tick: Duration::from_millis(TICK_MS),
                single_voter,
                cluster_id: prepared
                    .meta_properties
                    .as_ref()
                    .map(|p| p.cluster_id.clone()),
                log_dir: config.log_dir.clone(),
            };
            node = Some(ControllerNode::start(
                node_id,
                setup,
                hooks.fatal.clone(),
                hooks.config_error.clone(),
            ));
        }
        let driver = Rc::new_cyclic(|weak: &std::rc::Weak<Driver>| {
            let weak = weak.clone();
            let listener = cluster.inter_broker_listener_name.clone();
            let standalone = cluster.standalone;
            let source: publish::Source = Box::new(move |version| {
                let d = weak.upgrade()?;
                let (image, controller) = match &d.node {
                    Some(n) => {
                        let st = n.st.borrow();
                        (st.controller.committed().clone(), st.leader.unwrap_or(-1))
                    }
                    None => d.follower_image.borrow().clone(),
                };
                if image.last_offset == 0 {
                    return None;
                }
                Some(publish::shard_view(
                    &image, &listener, controller, version, standalone,
                ))
            });
            let hosts = cluster.roles.is_broker().then(|| shard.clone());
            let publisher = Publisher::start(hosts, prepared.initial.version.max(1), source);
            let lifecycle = cluster.roles.is_broker().then(|| {
                Rc::new(BrokerLifecycle::new(
                    &config,
                    prepared
                        .meta_properties
                        .as_ref()
                        .map(|p| p.cluster_id.clone()),
                    {
                        let shard = shard.clone();
                        Box::new(move || shard.disk.below_floor())
                    },
                ))
            });
            Driver {
                node_id,
                node,
                client,
                lifecycle_client,
                fetch_client,
                publisher,
                lifecycle,
                follower_image: RefCell::new((MetadataImage::default(), -1)),
                quorum_silence_ms: cluster.fetch_timeout_ms as i64,
            }
        });
        if let Some(n) = &driver.node {
            n.set_publisher(driver.publisher.clone());
            let inbound: Rc<dyn transport::Inbound> = Rc::new(NodeInbound(n.clone()));
            if let Some(l) = cluster.controller_listener() {
                let addr: std::net::SocketAddr = format!("{}:{}", l.host, l.port)
                    .parse()
                    .or_else(|_| {
                        use std::net::ToSocketAddrs;
                        (l.host.as_str(), l.port)
                            .to_socket_addrs()
                            .map_err(|e| e.to_string())
                            .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
                    })
                    .map_err(|e| {
                        anyhow::anyhow!("controller listener {}:{}: {e}", l.host, l.port)
                    })?;
                transport::listen(addr, max_frame, inbound.clone())
                    .map_err(|e| anyhow::anyhow!("binding the controller listener {addr}: {e}"))?;
            }
            let peers: BTreeMap<i32, std::net::SocketAddr> = prepared
                .voters
                .iter()
                .filter(|(id, _)| *id != node_id)
                .copied()
                .collect();
            n.set_peers(transport::Peers::start(peers, inbound));
            n.drain();
            // What was committed before the restart is applied again: publish it.
            driver.publisher.mark_dirty();
        } else {
            tern_shard::task::spawn(follower::follow(driver.clone(), hooks.fatal.clone()));
        }
        tern_shard::task::spawn(lifecycle::guard_cluster_id(
            driver.clone(),
            config.log_dir.clone(),
            prepared.meta_properties,
            hooks.config_error.clone(),
        ));
        if let Some(l) = &driver.lifecycle {
            tern_shard::task::spawn(lifecycle::run(
                driver.clone(),
                l.clone(),
                hooks.config_error,
            ));
        }
        Ok(driver)
    }

    /// A controller RPC: answered locally when this node is the active controller, forwarded to
    /// the active controller otherwise (bounded by `timeout`).
    pub async fn call(&self, rpc: Rpc, timeout: Duration) -> RpcReply {
        let deadline = Instant::now() + timeout;
        let client = match &rpc {
            Rpc::Register { .. } | Rpc::Heartbeat { .. } => &self.lifecycle_client,
            Rpc::FetchMetadata { .. } => &self.fetch_client,
            _ => &self.client,
        };
        loop {
            if let Some(n) = &self.node {
                if n.is_active() {
                    if let Rpc::Register { broker_id, .. } = &rpc
                        && *broker_id == self.node_id
                    {
                        // This process's own broker: an earlier incarnation with this node.id
                        // was this node's previous process, which is gone.
                        n.st.borrow_mut().controller.forget_session(*broker_id);
                    }
                    return n.handle_rpc(rpc).await;
                }
                client.set_hint(n.leader());
                if n.leader() == Some(self.node_id) {
                    // Elected, not ready yet (applying the earlier terms' entries).
                    if Instant::now() >= deadline {
                        return not_controller();
                    }
                    tern_shard::task::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let per_call = match &rpc {
                Rpc::FetchMetadata { wait_ms, .. } => {
                    Duration::from_millis(*wait_ms) + Duration::from_secs(2)
                }
                _ => left.max(Duration::from_millis(100)),
            };
            let reply = client.call(&rpc, left, per_call).await;
            match &reply {
                RpcReply::Error { code, .. }
                    if *code == codes::NOT_CONTROLLER && Instant::now() < deadline =>
                {
                    tern_shard::task::sleep(Duration::from_millis(50)).await;
                }
                _ => return reply,
            }
        }
    }

    /// Controlled shutdown of this broker: returns once it leads nothing (bounded by
    /// `CONTROLLED_SHUTDOWN_TIMEOUT`).
    pub async fn shut_down(&self) {
        if let Some(l) = &self.lifecycle {
            lifecycle::shut_down(self, l, CONTROLLED_SHUTDOWN_TIMEOUT).await;
        }
    }

    /// On a controller node: whether the metadata quorum is known to be gone (no leader, no
    /// majority heard from within controller.quorum.fetch.timeout.ms). A broker-only node
    /// cannot tell (false).
    pub fn quorum_out_of_reach(&self) -> bool {
        self.node
            .as_ref()
            .is_some_and(|n| n.quorum_out_of_reach(self.quorum_silence_ms))
    }

    /// Partitions this node leads in its committed metadata image.
    pub fn leader_count(&self) -> usize {
        match &self.node {
            Some(n) => {
                n.st.borrow()
                    .controller
                    .committed()
                    .leader_count(self.node_id)
            }
            None => self.follower_image.borrow().0.leader_count(self.node_id),
        }
    }

    /// The metadata offset this node has published to its shards.
    pub fn applied_offset(&self) -> u64 {
        self.publisher.published()
    }

    /// Waits (bounded) until this node has published `offset` to its shards.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        offset == 0
            || tern_shard::task::timeout(timeout, self.publisher.wait_for(offset))
                .await
                .unwrap_or(false)
    }

    /// Resolves once this broker is registered and unfenced (at once for a controller-only node).
    pub fn ready(&self) -> LocalBoxFuture<'static, ()> {
        match &self.lifecycle {
            Some(l) => l.ready(),
            None => Box::pin(async {}),
        }
    }
}

fn not_controller() -> RpcReply {
    RpcReply::Error {
        code: codes::NOT_CONTROLLER,
        message: "the controller is not ready".into(),
        leader: None,
    }
}

/// The listener's view of the local controller node.
struct NodeInbound(Rc<ControllerNode>);

impl transport::Inbound for NodeInbound {
    fn raft(&self, cluster_id: Option<String>, message: raft::prelude::Message) {
        self.0.step_from(cluster_id, message);
    }
    fn rpc(&self, rpc: Rpc) -> LocalBoxFuture<'static, RpcReply> {
        let node = self.0.clone();
        Box::pin(async move { node.handle_rpc(rpc).await })
    }
    fn unreachable(&self, peer: i32) {
        self.0.unreachable(peer);
        self.0.broker_connection_lost(peer, None);
    }
    fn peer_process_gone(&self, peer: i32) {
        self.0.peer_process_gone(peer);
    }
    fn heartbeats_connection_closed(&self, broker_id: i32, broker_epoch: i64) {
        self.0.broker_connection_lost(broker_id, Some(broker_epoch));
    }
}
