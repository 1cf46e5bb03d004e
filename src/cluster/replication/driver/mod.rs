//! The broker's replication driver, one `ShardReplicas` per shard (issue 11): it gives every
//! partition this shard owns in cluster mode, with more than one replica, its role from the
//! published metadata: a `LeaderPartition` when this broker leads it (one per leader epoch),
//! a `FollowerPartition` when another broker does, nothing otherwise (standalone and RF1
//! partitions keep today's single-node behaviour). It feeds the rules their inputs (follower
//! fetches, log progress, ticks, AlterPartition answers), carries out their outputs (produce
//! completions, AlterPartition requests to the active controller, truncations), wakes
//! consumer long polls when the high watermark moves, and runs one replica fetcher per
//! (shard, leader broker) (`fetcher.rs`). The leader's answers to follower fetches are in
//! `serve.rs`. The rules themselves stay sans-IO in `leader.rs` / `follower.rs`.

mod checkpoint;
mod fetcher;
pub mod serve;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use tern_storage::PartitionLog;

use super::follower::FollowerPartition;
use super::leader::{LeaderOutput, LeaderPartition};
use super::read_replica::{ReadCandidate, ReplicaSelector, preferred_read_replica};
use super::throttle::{FOLLOWER_RATE_KEY, LEADER_RATE_KEY, Throttle, configured_rate};
use super::{AckDurability, PartitionState, ReplicaLog, ReplicationConfig};
use crate::messages::{ControllerRequest, ShardMessage};
use crate::metadata::{ClusterMetadata, TopicMeta};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

/// Clock of the leaders' rules (acks=all timeouts, ISR shrink, AlterPartition retries).
const TICK: Duration = Duration::from_millis(100);

/// A `PartitionLog` as the replication rules see it.
pub struct StorageLog<'a>(pub &'a PartitionLog);

impl ReplicaLog for StorageLog<'_> {
    fn log_end_offset(&self) -> i64 {
        self.0.log_end_offset()
    }

    fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset()
    }

    fn written_end_offset(&self) -> i64 {
        // The storage log's own high watermark: offsets whose write completed.
        self.0.high_watermark()
    }

    fn synced_end_offset(&self) -> i64 {
        self.0.synced_end_offset()
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.0.end_offset_for_epoch(epoch)
    }

    fn last_fetched_epoch(&self) -> i32 {
        self.0.last_epoch()
    }
}

pub(crate) type Key = (String, i32);

pub(crate) struct Leading {
    pub rules: LeaderPartition,
    pub log: Rc<PartitionLog>,
}

pub(crate) struct Following {
    pub rules: FollowerPartition,
    pub log: Rc<PartitionLog>,
    pub topic_id: uuid::Uuid,
    /// The broker epoch the role was made for (a new registration restarts the role).
    pub broker_epoch: i64,
}

pub(crate) enum Role {
    Leader(Leading),
    Follower(Following),
}

#[derive(Default)]
pub struct ShardReplicas {
    roles: RefCell<HashMap<Key, Role>>,
    /// acks=all produces waiting for the high watermark, by waiter id.
    waiters: RefCell<HashMap<u64, oneshot::Sender<Result<i64, i16>>>>,
    next_waiter: Cell<u64>,
    /// Consumer long polls waiting for a partition's high watermark to move.
    hw_watchers: RefCell<HashMap<Key, Vec<oneshot::Sender<()>>>>,
    /// Leader brokers with a fetcher task running on this shard.
    fetchers: RefCell<HashSet<i32>>,
    /// Per leader broker, the wake of its fetcher's round in flight: a new follower role for
    /// that leader (or shutdown) must not wait out the round's long poll.
    fetcher_wakes: RefCell<HashMap<i32, oneshot::Sender<()>>>,
    /// Set at shutdown before the logs close: fetchers end and no new one starts, so nothing
    /// appends to a closed log.
    stopping: Cell<bool>,
    ticking: Cell<bool>,
    clock: Cell<Option<Instant>>,
    // --- Persisted high watermarks (`checkpoint.rs`) ---
    /// Loaded checkpoint files plus the high watermarks of ended roles (None: not loaded yet).
    checkpointed: RefCell<Option<super::hw_checkpoint::HighWatermarks>>,
    /// The content of this shard's file as last written.
    last_checkpoint: RefCell<Option<String>>,
    checkpointing: Cell<bool>,
    checkpoint_busy: Cell<bool>,
    // --- The reassignment throttle (`throttle.rs`), one bucket per side on this shard ---
    leader_throttle: RefCell<Option<Throttle>>,
    follower_throttle: RefCell<Option<Throttle>>,
}

/// Which rate of the reassignment throttle: the leader's reads for adding replicas, or the
/// follower's fetches as an adding replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThrottleSide {
    Leader,
    Follower,
}

/// Whether `replica` of `topic`-`partition` is one a reassignment is adding (throttled).
pub(crate) fn is_adding(meta: &ClusterMetadata, topic: &str, partition: i32, replica: i32) -> bool {
    meta.topic(topic)
        .and_then(|t| t.partition_meta(partition))
        .is_some_and(|p| p.adding_replicas.contains(&replica))
}

/// The replication settings of a partition of `topic`: min.insync.replicas from the topic,
/// else the dynamic broker config, else the static one.
fn replication_config(
    state: &ShardState,
    meta: &ClusterMetadata,
    topic: &TopicMeta,
) -> ReplicationConfig {
    let lag = state
        .config
        .static_props
        .get("replica.lag.time.max.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&v| v > 0)
        .unwrap_or(30_000);
    ReplicationConfig {
        min_insync_replicas: crate::ops::configs::min_insync_replicas(&state.config, meta, topic),
        replica_lag_time_max_ms: lag,
        ack_durability: state.config.replication_ack_durability,
        ..ReplicationConfig::default()
    }
}

impl ShardReplicas {
    fn now_ms(&self) -> u64 {
        let start = match self.clock.get() {
            Some(s) => s,
            None => {
                let s = Instant::now();
                self.clock.set(Some(s));
                s
            }
        };
        start.elapsed().as_millis() as u64
    }

    /// Consumers read below this (None: no replication role, the log's own end applies).
    pub fn read_limit(&self, topic: &str, partition: i32) -> Option<i64> {
        let roles = self.roles.borrow();
        if roles.is_empty() {
            return None; // standalone / RF1 only: no key built on the hot path
        }
        match roles.get(&(topic.to_string(), partition))? {
            Role::Leader(l) => Some(l.rules.high_watermark()),
            Role::Follower(f) => Some(f.rules.high_watermark()),
        }
    }

    /// True when this shard follows `topic`-`partition` (it has a follower role, so its
    /// consumers read below the high watermark learnt from the leader).
    pub fn follows(&self, topic: &str, partition: i32) -> bool {
        let roles = self.roles.borrow();
        !roles.is_empty()
            && matches!(
                roles.get(&(topic.to_string(), partition)),
                Some(Role::Follower(_))
            )
    }

    /// KIP-392: the replica a consumer in `client_rack` fetching `topic`-`partition` from
    /// `fetch_offset` should read from instead of this leader (None: read here).
    #[allow(clippy::too_many_arguments)]
    pub fn preferred_read_replica(
        &self,
        selector: ReplicaSelector,
        meta: &ClusterMetadata,
        node: i32,
        topic: &str,
        partition: i32,
        client_rack: &str,
        fetch_offset: i64,
    ) -> Option<i32> {
        if selector == ReplicaSelector::LeaderOnly {
            return None;
        }
        let roles = self.roles.borrow();
        let Some(Role::Leader(l)) = roles.get(&(topic.to_string(), partition)) else {
            return None;
        };
        let candidates: Vec<ReadCandidate> = l
            .rules
            .follower_positions()
            .into_iter()
            .map(|(broker, start, end, in_isr)| {
                let b = meta.brokers.get(&broker);
                ReadCandidate {
                    broker,
                    rack: b.and_then(|b| b.rack.clone()),
                    log_start_offset: start,
                    log_end_offset: end,
                    in_sync_and_live: in_isr && b.is_some_and(|b| !b.fenced),
                }
            })
            .collect();
        let leader_rack = meta.brokers.get(&node).and_then(|b| b.rack.as_deref());
        preferred_read_replica(
            selector,
            client_rack,
            leader_rack,
            fetch_offset,
            &candidates,
        )
    }

    /// Resolves when the partition's high watermark moves (None: no replication role).
    pub fn watch_hw(&self, topic: &str, partition: i32) -> Option<oneshot::Receiver<()>> {
        if self.roles.borrow().is_empty() {
            return None;
        }
        let key = (topic.to_string(), partition);
        if !self.roles.borrow().contains_key(&key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let mut w = self.hw_watchers.borrow_mut();
        let list = w.entry(key).or_default();
        if list.len() >= 64 {
            list.retain(|s| !s.is_canceled());
        }
        list.push(tx);
        Some(rx)
    }

    pub(crate) fn wake_hw(&self, key: &Key) {
        if let Some(list) = self.hw_watchers.borrow_mut().remove(key) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }

    /// Runs `f` on the leader rules of `key` (if this shard leads it), then carries out the
    /// outputs and wakes high-watermark watchers.
    pub(crate) fn with_leader<R>(
        &self,
        state: &Rc<ShardState>,
        key: &Key,
        f: impl FnOnce(&mut Leading, u64) -> R,
    ) -> Option<R> {
        let now = self.now_ms();
        let (r, outputs, moved) = {
            let mut roles = self.roles.borrow_mut();
            let Some(Role::Leader(l)) = roles.get_mut(key) else {
                return None;
            };
            let hw = l.rules.high_watermark();
            let r = f(l, now);
            (r, l.rules.take_outputs(), l.rules.high_watermark() != hw)
        };
        self.carry_out(state, key, outputs);
        if moved {
            self.wake_hw(key);
        }
        Some(r)
    }

    fn carry_out(&self, state: &Rc<ShardState>, key: &Key, outputs: Vec<LeaderOutput>) {
        for out in outputs {
            match out {
                LeaderOutput::ProduceDone { id, result } => {
                    if let Some(tx) = self.waiters.borrow_mut().remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                LeaderOutput::AlterPartition(req) => {
                    let state = state.clone();
                    let key = key.clone();
                    let epoch = req.leader_epoch;
                    log::info!(
                        "{}-{}: proposing ISR {:?} (leader epoch {epoch}, partition epoch {})",
                        key.0,
                        key.1,
                        req.new_isr,
                        req.partition_epoch
                    );
                    tern_shard::task::spawn(async move {
                        let answer = state
                            .call(CONTROLLER_SHARD, |reply| {
                                ShardMessage::Controller(ControllerRequest::AlterPartition {
                                    req,
                                    reply,
                                })
                            })
                            .await
                            .unwrap_or(Err(super::codes::REQUEST_TIMED_OUT));
                        if let Err(code) = &answer {
                            log::info!("{}-{}: AlterPartition refused: {code}", key.0, key.1);
                        }
                        state.replicas.with_leader(&state, &key, |l, _| {
                            if l.rules.leader_epoch() == epoch {
                                l.rules.on_alter_partition_response(answer);
                            }
                        });
                    });
                }
            }
        }
    }

    /// Before an append to a partition this shard leads: NOT_ENOUGH_REPLICAS for acks=all when
    /// the ISR is too small. Ok when there is no replication role.
    pub fn check_produce(&self, topic: &str, partition: i32, acks: i16) -> Result<(), i16> {
        let roles = self.roles.borrow();
        if roles.is_empty() {
            return Ok(());
        }
        match roles.get(&(topic.to_string(), partition)) {
            Some(Role::Leader(l)) => l.rules.check_produce(acks == -1),
            _ => Ok(()),
        }
    }

    /// True when `topic`-`partition` has a leader role here (its produces wait for the rules).
    pub fn leads(&self, topic: &str, partition: i32) -> bool {
        let roles = self.roles.borrow();
        !roles.is_empty()
            && matches!(
                roles.get(&(topic.to_string(), partition)),
                Some(Role::Leader(_))
            )
    }

    /// After an append ending at `last_offset` is written (acks=1) or durable at the broker's
    /// `tern.replication.ack.durability` (acks=all): the log progress goes to the rules;
    /// acks=all then waits up to `timeout` (the request's timeout_ms) for the high watermark
    /// to pass it (or an error code: NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT,
    /// NOT_LEADER_OR_FOLLOWER). Under `synced`, acks=1 appends are synced in the background so
    /// the high watermark (counting synced data) advances for them too; under `written` the
    /// written data counts at once.
    pub async fn after_append(
        state: &Rc<ShardState>,
        topic: &str,
        partition: i32,
        last_offset: i64,
        acks: i16,
        timeout: Duration,
    ) -> Result<(), i16> {
        let me = &state.replicas;
        let key = (topic.to_string(), partition);
        // The caller led the partition when it appended. No leader role now means the
        // leadership moved during the append: acks=1 is answered (the leader wrote it), but
        // acks=all must not be, since the new leader may lack the batch. REQUEST_TIMED_OUT says
        // "possibly persisted", so the producer resends the same batch (see `resign`).
        let log = match me.roles.borrow().get(&key) {
            Some(Role::Leader(l)) => l.log.clone(),
            _ if acks == -1 => return Err(super::codes::REQUEST_TIMED_OUT),
            _ => return Ok(()),
        };
        if acks != -1 && state.config.replication_ack_durability == AckDurability::Written {
            me.with_leader(state, &key, |l, _| {
                l.rules.on_log_progress(&StorageLog(&l.log))
            });
            return Ok(());
        }
        if acks != -1 {
            let state2 = state.clone();
            tern_shard::task::spawn(async move {
                if log
                    .durable_through(last_offset, tern_storage::Durability::Synced)
                    .await
                    .is_ok()
                {
                    state2.replicas.with_leader(&state2, &key, |l, _| {
                        l.rules.on_log_progress(&StorageLog(&l.log))
                    });
                }
            });
            return Ok(());
        }
        let id = me.next_waiter.get();
        me.next_waiter.set(id + 1);
        let (tx, rx) = oneshot::channel();
        me.waiters.borrow_mut().insert(id, tx);
        let deadline = me.now_ms() + timeout.as_millis() as u64;
        let registered = me.with_leader(state, &key, |l, _| {
            l.rules.on_log_progress(&StorageLog(&l.log));
            l.rules.await_replication(id, last_offset, deadline);
        });
        if registered.is_none() {
            me.waiters.borrow_mut().remove(&id);
            return Err(super::codes::REQUEST_TIMED_OUT);
        }
        match rx.await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(super::codes::REQUEST_TIMED_OUT),
        }
    }

    /// Brings the roles in line with `meta` (after the partition manager reconciled).
    pub fn reconcile(state: &Rc<ShardState>, meta: &ClusterMetadata) {
        let me = &state.replicas;
        let node = state.config.node_id;
        let mut wanted: HashSet<Key> = HashSet::new();
        let broker_epoch = meta.brokers.get(&node).map_or(0, |b| b.epoch);
        let now = me.now_ms();
        if meta.is_cluster() {
            for (name, p, log) in state.partitions.all() {
                let Some(tm) = meta.topic(&name) else {
                    continue;
                };
                let Some(pm) = tm.partition_meta(p) else {
                    continue;
                };
                if pm.replicas.len() <= 1 || !pm.replicas.contains(&node) || pm.leader < 0 {
                    continue;
                }
                let key = (name.clone(), p);
                let pstate = PartitionState {
                    leader: pm.leader,
                    leader_epoch: pm.leader_epoch,
                    partition_epoch: pm.partition_epoch,
                    isr: pm.isr.clone(),
                    replicas: pm.replicas.clone(),
                };
                let keep = match me.roles.borrow_mut().get_mut(&key) {
                    Some(Role::Leader(l))
                        if pm.leader == node && l.rules.leader_epoch() == pm.leader_epoch =>
                    {
                        l.rules.on_partition_state(&pstate);
                        true
                    }
                    Some(Role::Follower(f))
                        if pm.leader != node
                            && f.rules.leader() == pm.leader
                            && f.rules.leader_epoch() == pm.leader_epoch
                            && f.broker_epoch == broker_epoch =>
                    {
                        true
                    }
                    _ => false,
                };
                wanted.insert(key.clone());
                if keep {
                    // The ISR may have changed: the high watermark may move.
                    me.with_leader(state, &key, |_, _| ());
                    continue;
                }
                let hw = super::hw_checkpoint::starting_high_watermark(
                    me.drop_role(state, &key),
                    me.checkpointed_hw(state, &key),
                    log.log_end_offset(),
                );
                let role = if pm.leader == node {
                    if !pm.isr.contains(&node) {
                        log::warn!(
                            "{name}-{p}: led by this broker but not in its ISR {:?}",
                            pm.isr
                        );
                        continue;
                    }
                    log.note_epoch_start(pm.leader_epoch);
                    log::info!(
                        "{name}-{p}: leader at epoch {} (ISR {:?}, log end {})",
                        pm.leader_epoch,
                        pm.isr,
                        log.log_end_offset()
                    );
                    Role::Leader(Leading {
                        rules: LeaderPartition::new(
                            replication_config(state, meta, tm),
                            node,
                            broker_epoch,
                            tm.id,
                            p,
                            &pstate,
                            &StorageLog(&log),
                            hw,
                            now,
                        ),
                        log,
                    })
                } else {
                    log::info!(
                        "{name}-{p}: follower of {} at epoch {} (log end {})",
                        pm.leader,
                        pm.leader_epoch,
                        log.log_end_offset()
                    );
                    Role::Follower(Following {
                        rules: FollowerPartition::new(
                            node,
                            broker_epoch,
                            pm.leader,
                            pm.leader_epoch,
                            state.config.replication_ack_durability,
                            hw,
                        ),
                        log,
                        topic_id: tm.id,
                        broker_epoch,
                    })
                };
                let new_leader = match &role {
                    Role::Follower(f) => Some(f.rules.leader()),
                    Role::Leader(_) => None,
                };
                me.roles.borrow_mut().insert(key.clone(), role);
                if let Some(leader) = new_leader {
                    me.wake_fetcher(leader);
                }
                me.wake_hw(&key);
            }
        }
        let gone: Vec<Key> = me
            .roles
            .borrow()
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            me.drop_role(state, &key);
            me.wake_hw(&key);
        }
        // Fetchers for leaders we now follow; a fetcher ends once it has nothing to fetch.
        let leaders: HashSet<i32> = me
            .roles
            .borrow()
            .values()
            .filter_map(|r| match r {
                Role::Follower(f) => Some(f.rules.leader()),
                Role::Leader(_) => None,
            })
            .collect();
        for leader in leaders {
            if me.stopping.get() {
                break;
            }
            if me.fetchers.borrow_mut().insert(leader) {
                let state = state.clone();
                tern_shard::task::spawn(async move {
                    fetcher::run(state.clone(), leader).await;
                    state.replicas.fetchers.borrow_mut().remove(&leader);
                    // A role for this leader may have appeared while the task was ending.
                    let meta = state.metadata();
                    ShardReplicas::reconcile(&state, &meta);
                });
            }
        }
        let any_leader = me
            .roles
            .borrow()
            .values()
            .any(|r| matches!(r, Role::Leader(_)));
        if any_leader && !me.ticking.replace(true) {
            let state = state.clone();
            tern_shard::task::spawn(async move { ShardReplicas::run_ticks(state).await });
        }
        if !me.roles.borrow().is_empty() && !me.checkpointing.replace(true) {
            let state = state.clone();
            tern_shard::task::spawn(async move { ShardReplicas::run_checkpoints(state).await });
        }
    }

    /// Ends a role: a leader's waiters get NOT_LEADER_OR_FOLLOWER. Returns the high watermark
    /// the role knew (a new role starts from it; the checkpoint keeps it).
    fn drop_role(&self, state: &Rc<ShardState>, key: &Key) -> Option<i64> {
        let role = self.roles.borrow_mut().remove(key)?;
        let hw = match role {
            Role::Leader(mut l) => {
                let hw = l.rules.high_watermark();
                let outputs = l.rules.resign();
                self.carry_out(state, key, outputs);
                hw
            }
            Role::Follower(f) => f.rules.high_watermark(),
        };
        self.remember_hw(key, hw);
        Some(hw)
    }

    async fn run_ticks(state: Rc<ShardState>) {
        loop {
            tern_shard::task::sleep(TICK).await;
            let keys: Vec<Key> = state
                .replicas
                .roles
                .borrow()
                .iter()
                .filter(|(_, r)| matches!(r, Role::Leader(_)))
                .map(|(k, _)| k.clone())
                .collect();
            if keys.is_empty() {
                state.replicas.ticking.set(false);
                return;
            }
            for key in keys {
                state
                    .replicas
                    .with_leader(&state, &key, |l, now| l.rules.tick(now));
            }
        }
    }

    /// Shutdown, before the logs close: every replica fetcher of this shard ends after its
    /// round in flight (a fetch long-polls at most `replica.fetch.wait.max.ms`), so none
    /// appends to or truncates a closed log. Bounded by `limit`.
    pub async fn stop_fetchers(state: &Rc<ShardState>, limit: Duration) {
        let me = &state.replicas;
        me.stopping.set(true);
        for (_, wake) in me.fetcher_wakes.take() {
            let _ = wake.send(());
        }
        let started = Instant::now();
        while !me.fetchers.borrow().is_empty() {
            if started.elapsed() >= limit {
                log::warn!(
                    "shard {}: replica fetchers for leaders {:?} still running after {} ms",
                    state.id,
                    me.fetchers.borrow(),
                    limit.as_millis()
                );
                return;
            }
            tern_shard::task::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The wake for `leader`'s fetcher round about to go out (replacing the previous one).
    pub(crate) fn fetcher_wake(&self, leader: i32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.fetcher_wakes.borrow_mut().insert(leader, tx);
        rx
    }

    /// A follower role for `leader` appeared: its fetcher's round in flight (long-polling for
    /// the other partitions) is cut short, so the new partition is fetched at once and the
    /// new leader's high watermark does not wait up to `replica.fetch.wait.max.ms` for it.
    fn wake_fetcher(&self, leader: i32) {
        if let Some(wake) = self.fetcher_wakes.borrow_mut().remove(&leader) {
            let _ = wake.send(());
        }
    }

    /// Followed partitions of `leader` on this shard (for the fetcher; none once stopping).
    pub(crate) fn followed_from(&self, leader: i32) -> Vec<Key> {
        if self.stopping.get() {
            return Vec::new();
        }
        self.roles
            .borrow()
            .iter()
            .filter(|(_, r)| matches!(r, Role::Follower(f) if f.rules.leader() == leader))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether shutdown has stopped this shard's replica fetchers.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.get()
    }

    pub(crate) fn roles(&self) -> &RefCell<HashMap<Key, Role>> {
        &self.roles
    }

    pub(crate) fn clock_ms(&self) -> u64 {
        self.now_ms()
    }

    fn throttle_cell(&self, side: ThrottleSide) -> &RefCell<Option<Throttle>> {
        match side {
            ThrottleSide::Leader => &self.leader_throttle,
            ThrottleSide::Follower => &self.follower_throttle,
        }
    }

    /// Bytes the reassignment throttle lets this shard move now on `side` for adding
    /// replicas (None: no rate configured). The broker's rate is split evenly over its
    /// `shards`.
    pub(crate) fn throttle_allowance(
        &self,
        meta: &ClusterMetadata,
        shards: usize,
        side: ThrottleSide,
    ) -> Option<u64> {
        let key = match side {
            ThrottleSide::Leader => LEADER_RATE_KEY,
            ThrottleSide::Follower => FOLLOWER_RATE_KEY,
        };
        let cell = self.throttle_cell(side);
        let Some(rate) = configured_rate(&meta.broker_configs, key) else {
            *cell.borrow_mut() = None;
            return None;
        };
        let rate = rate / shards.max(1) as u64;
        let now = self.now_ms();
        let mut bucket = cell.borrow_mut();
        let t = bucket.get_or_insert_with(|| Throttle::new(rate, now));
        if t.rate() != rate {
            t.set_rate(rate, now);
        }
        Some(t.allowance(now))
    }

    /// `bytes` moved for adding replicas on `side` (counted against the throttle, if any).
    pub(crate) fn throttle_consume(&self, side: ThrottleSide, bytes: u64) {
        let now = self.now_ms();
        if let Some(t) = self.throttle_cell(side).borrow_mut().as_mut() {
            t.consume(bytes, now);
        }
    }
}
