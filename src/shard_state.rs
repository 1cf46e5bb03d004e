//! Everything one shard owns: its identity and router, its metadata snapshot, its partitions,
//! (on shard 0) the controller, and its connections. One `Rc<ShardState>` per shard thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use futures::FutureExt;
use futures::channel::oneshot;
use tern_shard::{ShardId, ShardRouter, partition_shard};

use crate::config::BrokerConfig;
use crate::controller::Controller;
use crate::messages::{Reply, ShardMessage};
use crate::metadata::ClusterMetadata;
use crate::partition_manager::PartitionManager;

/// The shard that runs the controller (metadata owner, producer-id allocator).
pub const CONTROLLER_SHARD: ShardId = 0;

pub struct ShardState {
    pub id: ShardId,
    pub count: usize,
    pub router: Rc<ShardRouter<ShardMessage>>,
    pub config: Arc<BrokerConfig>,
    metadata: RefCell<Arc<ClusterMetadata>>,
    pub partitions: PartitionManager,
    pub controller: Option<Controller>,
    /// The consumer groups this shard coordinates (see `groups`).
    pub groups: crate::coordinators::groups::GroupCoordinator,
    /// Open client connections on this shard (id -> socket fd), so shutdown can stop their reads.
    pub connections: RefCell<HashMap<u64, RawFd>>,
    pub next_connection_id: Cell<u64>,
    /// Requests being handled on this shard's connections.
    pub in_flight: Cell<usize>,
    /// This shard's counters (see `metrics`).
    pub metrics: crate::ops::metrics::ShardMetrics,
    /// Replication roles of this shard's partitions (cluster mode; see
    /// `cluster::replication::driver`).
    pub replicas: crate::cluster::replication::driver::ShardReplicas,
    /// The log dir's free space as this shard last read it (see `disk_space`).
    pub disk: crate::ops::disk_space::DiskSpace,
    /// Bytes of cold sends (fetch responses with segment-file ranges, sent by `sendfile` on the
    /// blocking pool) in flight from this shard's connections: `tern.fetch.cold.inflight.bytes`.
    pub cold_sends: tern_shard::budget::InFlightBudget,
}

impl ShardState {
    pub fn new(
        router: Rc<ShardRouter<ShardMessage>>,
        config: Arc<BrokerConfig>,
        metadata: Arc<ClusterMetadata>,
        partitions: PartitionManager,
    ) -> Self {
        let id = router.id();
        let controller = (id == CONTROLLER_SHARD).then(|| Controller::new(config.clone()));
        let groups =
            crate::coordinators::groups::GroupCoordinator::new(id, router.count(), config.clone());
        Self {
            id,
            count: router.count(),
            router,
            metadata: RefCell::new(metadata),
            partitions,
            controller,
            groups,
            connections: RefCell::new(HashMap::new()),
            next_connection_id: Cell::new(0),
            in_flight: Cell::new(0),
            metrics: Default::default(),
            replicas: Default::default(),
            disk: Default::default(),
            cold_sends: tern_shard::budget::InFlightBudget::new(config.fetch_cold_inflight_bytes),
            config,
        }
    }

    /// The current metadata snapshot (cheap: an Arc clone).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// Installs a newer snapshot (older ones are ignored: snapshots may race on the mesh).
    pub fn set_metadata(&self, meta: Arc<ClusterMetadata>) -> bool {
        let mut cur = self.metadata.borrow_mut();
        if meta.version >= cur.version {
            *cur = meta;
            true
        } else {
            false
        }
    }

    pub fn owner(&self, topic: &str, partition: i32) -> ShardId {
        partition_shard(topic, partition, self.count)
    }

    /// Delivers a message to `shard` — run inline (first poll) when it is this shard, sent over
    /// the mesh otherwise. Either way the handler starts in delivery order.
    pub async fn deliver(self: &Rc<Self>, shard: ShardId, msg: ShardMessage) {
        if shard == self.id {
            let mut fut = Box::pin(crate::kafka::dispatch::handle_shard_message(
                self.clone(),
                msg,
            ));
            if fut.as_mut().now_or_never().is_none() {
                tern_shard::task::spawn(fut);
            }
        } else if self.metrics.cross_sent(shard) && self.router.invoke_on(shard, msg).await.is_err()
        {
            // The peer is shutting down; dropping the message drops its reply sender, which the
            // caller observes as a cancelled reply.
            log::debug!("shard {shard} is closed; message dropped");
        }
    }

    /// `deliver` + wait for the reply. `None` if the target dropped the reply (shutdown).
    pub async fn call<R>(
        self: &Rc<Self>,
        shard: ShardId,
        build: impl FnOnce(Reply<R>) -> ShardMessage,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.deliver(shard, build(tx)).await;
        rx.await.ok()
    }

    /// Sends every owner shard its items in one message (`build`), all shards at once, and
    /// writes each reply's answers back at its items' positions in `answers`. Items routed to
    /// `None` (answered by the caller) and the items of a shard that dropped its reply keep the
    /// answer already in `answers`. `answers` has one slot per item.
    pub async fn fan_out<I, R>(
        self: &Rc<Self>,
        items: Vec<(Option<ShardId>, I)>,
        answers: &mut [R],
        build: impl Fn(Vec<I>, Reply<Vec<R>>) -> ShardMessage,
    ) {
        assert_eq!(items.len(), answers.len(), "one answer slot per item");
        let groups = group_by_owner(items);
        let build = &build;
        let calls = groups
            .into_iter()
            .map(|(shard, (positions, batch))| async move {
                let reply = self.call(shard, |reply| build(batch, reply)).await;
                (positions, reply)
            });
        for (positions, reply) in futures::future::join_all(calls).await {
            let Some(reply) = reply else { continue };
            assert!(
                reply.len() <= positions.len(),
                "a shard answered items it was not sent"
            );
            for (i, r) in positions.into_iter().zip(reply) {
                answers[i] = r;
            }
        }
    }
}

/// `items` grouped by owner shard, each group keeping the items' request positions and order;
/// items owned by no shard (`None`) are left out.
pub fn group_by_owner<I>(
    items: Vec<(Option<ShardId>, I)>,
) -> std::collections::BTreeMap<ShardId, (Vec<usize>, Vec<I>)> {
    let mut groups: std::collections::BTreeMap<ShardId, (Vec<usize>, Vec<I>)> =
        std::collections::BTreeMap::new();
    for (i, (owner, item)) in items.into_iter().enumerate() {
        if let Some(shard) = owner {
            let group = groups.entry(shard).or_default();
            group.0.push(i);
            group.1.push(item);
        }
    }
    groups
}
