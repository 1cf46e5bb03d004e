//! `LeaderPartition`: the leader's replication rules for one partition in one leader epoch
//! (Kafka's `Partition` on the leader). It tracks each follower's fetch position, replicated
//! offset and last caught-up time; computes the high watermark (min replicated offset over
//! the maximal ISR, advanced only while the committed ISR has at least min.insync.replicas
//! members, KIP-966, and never moved back); proposes ISR expansion (a follower caught up in
//! this epoch, unfenced, with a matching broker epoch) and shrinking (not caught up for
//! replica.lag.time.max.ms) as AlterPartition requests; completes acks=all waiters; and answers
//! follower fetches with records or DivergingEpoch (KIP-320/279). A new leader epoch is a new
//! `LeaderPartition`: the driver drops the old one (`resign`) on any leader change.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    AckDurability, AlterPartitionRequest, FetchAnswer, FetchRequest, Mutation, PartitionState,
    ReplicaLog, ReplicationConfig, codes,
};

/// The leader's view of one follower.
#[derive(Clone, Debug, Default)]
struct FollowerState {
    fetch_offset: i64,
    /// The follower's log start at its last fetch.
    log_start_offset: i64,
    replicated_offset: i64,
    broker_epoch: i64,
    /// Last time the follower was caught up (Kafka's lastCaughtUpTimeMs).
    last_caught_up_ms: u64,
    /// Leader log end and time at the follower's previous fetch.
    last_fetch_leader_leo: i64,
    last_fetch_ms: u64,
}

/// An acks=all produce waiting for the high watermark.
#[derive(Clone, Debug)]
struct Waiter {
    id: u64,
    last_offset: i64,
    deadline_ms: u64,
}

/// An AlterPartition in flight (Kafka's PendingExpandIsr / PendingShrinkIsr).
#[derive(Clone, Debug)]
struct PendingIsr {
    isr: Vec<i32>,
    sent_ms: u64,
}

/// What the leader asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderOutput {
    /// Send to the active controller.
    AlterPartition(AlterPartitionRequest),
    /// Answer produce `id`: the batch's offset, or a Kafka error code.
    ProduceDone { id: u64, result: Result<i64, i16> },
}

pub struct LeaderPartition {
    cfg: ReplicationConfig,
    me: i32,
    broker_epoch: i64,
    topic_id: Uuid,
    partition: i32,
    leader_epoch: i32,
    /// The log end when this epoch began (a follower must reach it to join the ISR).
    epoch_start_offset: i64,
    partition_epoch: i32,
    replicas: Vec<i32>,
    /// The committed ISR.
    isr: Vec<i32>,
    pending: Option<PendingIsr>,
    followers: BTreeMap<i32, FollowerState>,
    high_watermark: i64,
    log_end: i64,
    written_end: i64,
    synced_end: i64,
    waiters: Vec<Waiter>,
    outputs: Vec<LeaderOutput>,
}

impl LeaderPartition {
    /// Becomes leader of `state` (whose leader is `me`) over a log that has already noted the
    /// start of this epoch. `high_watermark` is the one it had as a follower.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ReplicationConfig,
        me: i32,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        state: &PartitionState,
        log: &dyn ReplicaLog,
        high_watermark: i64,
        now_ms: u64,
    ) -> Self {
        assert_eq!(
            state.leader, me,
            "a leader partition is built by its leader"
        );
        assert!(state.isr.contains(&me), "the leader is in its ISR");
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                (
                    r,
                    FollowerState {
                        // ISR members count as caught up when the epoch starts (Kafka).
                        last_caught_up_ms: if state.isr.contains(&r) { now_ms } else { 0 },
                        last_fetch_ms: now_ms,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut l = Self {
            me,
            broker_epoch,
            topic_id,
            partition,
            leader_epoch: state.leader_epoch,
            epoch_start_offset: log.log_end_offset(),
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending: None,
            followers,
            high_watermark: high_watermark.min(log.log_end_offset()),
            log_end: log.log_end_offset(),
            written_end: log.written_end_offset(),
            synced_end: log.synced_end_offset(),
            waiters: Vec::new(),
            outputs: Vec::new(),
            cfg,
        };
        l.maybe_advance_hw();
        l
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// Each follower as KIP-392's read replica choice sees it: (broker, log start, log end
    /// as of its last fetch, in the committed ISR). A follower that has not fetched in this
    /// epoch has log end 0.
    pub fn follower_positions(&self) -> Vec<(i32, i64, i64, bool)> {
        self.followers
            .iter()
            .map(|(&b, f)| (b, f.log_start_offset, f.fetch_offset, self.isr.contains(&b)))
            .collect()
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn take_outputs(&mut self) -> Vec<LeaderOutput> {
        std::mem::take(&mut self.outputs)
    }

    fn effective_min_isr(&self) -> usize {
        self.cfg.min_insync_replicas.min(self.replicas.len()).max(1)
    }

    /// Before an acks=all append: NOT_ENOUGH_REPLICAS when the ISR is below min.insync.replicas.
    pub fn check_produce(&self, acks_all: bool) -> Result<(), i16> {
        if acks_all && self.isr.len() < self.effective_min_isr() {
            return Err(codes::NOT_ENOUGH_REPLICAS);
        }
        Ok(())
    }

    /// After an acks=all append (or a duplicate of one) ending at `last_offset`: answers once
    /// the high watermark passes it, or at `deadline_ms` with REQUEST_TIMED_OUT.
    pub fn await_replication(&mut self, id: u64, last_offset: i64, deadline_ms: u64) {
        self.waiters.push(Waiter {
            id,
            last_offset,
            deadline_ms,
        });
        self.complete_waiters();
    }

    /// The local log moved (an append, or an fdatasync completed).
    pub fn on_log_progress(&mut self, log: &dyn ReplicaLog) {
        assert!(
            log.log_end_offset() >= self.log_end || self.cfg.mutated(Mutation::TruncateLeader),
            "a leader's log never shrinks"
        );
        self.log_end = log.log_end_offset();
        self.written_end = log.written_end_offset();
        self.synced_end = log.synced_end_offset();
        self.maybe_advance_hw();
    }

    /// A consumer fetch reads below this (the high watermark).
    pub fn consumer_read_limit(&self) -> i64 {
        self.high_watermark
    }

    /// A follower's fetch. `eligible`: the follower's broker is unfenced in the metadata with
    /// the broker epoch the fetch carries (the driver checks its image).
    pub fn on_fetch(
        &mut self,
        req: &FetchRequest,
        log: &dyn ReplicaLog,
        eligible: bool,
        now_ms: u64,
    ) -> FetchAnswer {
        if !self.followers.contains_key(&req.replica_id) {
            return FetchAnswer::Error(codes::NOT_LEADER_OR_FOLLOWER);
        }
        if req.leader_epoch < self.leader_epoch {
            return FetchAnswer::Error(codes::FENCED_LEADER_EPOCH);
        }
        if req.leader_epoch > self.leader_epoch {
            return FetchAnswer::Error(codes::UNKNOWN_LEADER_EPOCH);
        }
        // KIP-279: does the follower's log agree with ours up to its fetch offset? Checked
        // when the follower names a last fetched epoch, as Kafka does: one without any epoch
        // (an empty log, or one restarted at our log start) has nothing to diverge on.
        if req.last_fetched_epoch >= 0 {
            let (epoch, end) = log.end_offset_for_epoch(req.last_fetched_epoch);
            if epoch < req.last_fetched_epoch || end < req.fetch_offset {
                #[cfg(test)]
                if self.cfg.mutated(Mutation::TruncateLeader) && epoch >= 0 {
                    return FetchAnswer::TruncateLeader { to: end.max(0) };
                }
                return FetchAnswer::Diverging {
                    epoch,
                    end_offset: end,
                    high_watermark: self.high_watermark,
                };
            }
        }
        let leo = log.log_end_offset();
        let f = self
            .followers
            .get_mut(&req.replica_id)
            .expect("checked above");
        f.fetch_offset = req.fetch_offset;
        f.log_start_offset = req.log_start_offset;
        f.replicated_offset = req.replicated_offset.min(req.fetch_offset);
        f.broker_epoch = req.broker_epoch;
        // Kafka's rule: caught up if it reached our log end now, or the log end we had at its
        // previous fetch (then it was caught up at that time).
        if req.fetch_offset >= leo {
            f.last_caught_up_ms = now_ms;
        } else if req.fetch_offset >= f.last_fetch_leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_leo = leo;
        f.last_fetch_ms = now_ms;
        self.maybe_expand(req.replica_id, eligible, now_ms);
        self.maybe_advance_hw();
        FetchAnswer::Read {
            from: req.fetch_offset,
            max_entries: self.cfg.max_fetch_entries,
            high_watermark: self.high_watermark,
        }
    }

    /// The offset that counts as replicated on the leader itself.
    fn own_replicated(&self) -> i64 {
        match self.cfg.ack_durability {
            AckDurability::Written => self.written_end,
            AckDurability::Synced => self.synced_end,
        }
    }

    /// The ISR the high watermark must wait for: the committed one plus a pending addition
    /// (Kafka's maximal ISR, KIP-497), so a joining member already holds what is committed.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut m = self.isr.clone();
        if let Some(p) = &self.pending {
            for b in &p.isr {
                if !m.contains(b) {
                    m.push(*b);
                }
            }
        }
        m
    }

    fn maybe_advance_hw(&mut self) {
        if self.isr.len() < self.effective_min_isr() {
            // KIP-966 strict: nothing new is committed while the ISR is too small.
            self.complete_waiters();
            return;
        }
        let new_hw = if self.cfg.mutated(Mutation::HwBeforeIsr) {
            self.own_replicated()
        } else {
            self.maximal_isr()
                .iter()
                .map(|&b| {
                    if b == self.me {
                        self.own_replicated()
                    } else {
                        self.followers.get(&b).map_or(0, |f| f.replicated_offset)
                    }
                })
                .min()
                .expect("the ISR holds the leader")
        };
        if new_hw > self.high_watermark {
            self.high_watermark = new_hw;
        }
        self.complete_waiters();
    }

    fn complete_waiters(&mut self) {
        let hw = self.high_watermark;
        let enough = self.isr.len() >= self.effective_min_isr();
        let mut done = Vec::new();
        self.waiters.retain(|w| {
            if hw > w.last_offset {
                done.push((
                    w.id,
                    if enough {
                        Ok(w.last_offset)
                    } else {
                        Err(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                    },
                ));
                false
            } else {
                true
            }
        });
        for (id, result) in done {
            self.outputs.push(LeaderOutput::ProduceDone { id, result });
        }
    }

    /// ISR expansion: a follower outside the (maximal) ISR that caught up in this epoch.
    fn maybe_expand(&mut self, follower: i32, eligible: bool, now_ms: u64) {
        if self.pending.is_some() || self.isr.contains(&follower) || !eligible {
            return;
        }
        let f = &self.followers[&follower];
        let in_epoch = f.fetch_offset >= self.epoch_start_offset
            || self.cfg.mutated(Mutation::ExpandWithoutEpochCheck);
        if f.replicated_offset >= self.high_watermark && in_epoch {
            let mut isr = self.isr.clone();
            isr.push(follower);
            self.propose(isr, now_ms);
        }
    }

    fn propose(&mut self, isr: Vec<i32>, now_ms: u64) {
        let new_isr = isr
            .iter()
            .map(|&b| {
                let epoch = if b == self.me {
                    self.broker_epoch
                } else {
                    self.followers[&b].broker_epoch
                };
                (b, epoch)
            })
            .collect();
        self.outputs
            .push(LeaderOutput::AlterPartition(AlterPartitionRequest {
                broker_id: self.me,
                broker_epoch: self.broker_epoch,
                topic_id: self.topic_id,
                partition: self.partition,
                leader_epoch: self.leader_epoch,
                partition_epoch: self.partition_epoch,
                new_isr,
            }));
        self.pending = Some(PendingIsr {
            isr,
            sent_ms: now_ms,
        });
        self.maybe_advance_hw();
    }

    /// Clock: acks=all timeouts, ISR shrink after replica.lag.time.max.ms, AlterPartition retry.
    pub fn tick(&mut self, now_ms: u64) {
        let mut timed_out = Vec::new();
        self.waiters.retain(|w| {
            if now_ms >= w.deadline_ms {
                timed_out.push(w.id);
                false
            } else {
                true
            }
        });
        for id in timed_out {
            self.outputs.push(LeaderOutput::ProduceDone {
                id,
                result: Err(codes::REQUEST_TIMED_OUT),
            });
        }
        if let Some(p) = &self.pending
            && now_ms >= p.sent_ms + self.cfg.alter_partition_retry_ms
        {
            self.pending = None;
        }
        if self.pending.is_some() {
            return;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&b| {
                b != self.me
                    && now_ms.saturating_sub(self.followers[&b].last_caught_up_ms)
                        > self.cfg.replica_lag_time_max_ms
            })
            .collect();
        if !lagging.is_empty() {
            let isr = self
                .isr
                .iter()
                .copied()
                .filter(|b| !lagging.contains(b))
                .collect();
            self.propose(isr, now_ms);
        }
    }

    /// The controller's answer to our AlterPartition: the committed state, or a refusal
    /// (INVALID_UPDATE_VERSION, FENCED_LEADER_EPOCH, INELIGIBLE_REPLICA, NOT_CONTROLLER ...).
    /// Either way the pending change is over; a refusal waits for fresher metadata.
    pub fn on_alter_partition_response(&mut self, result: Result<PartitionState, i16>) {
        self.pending = None;
        if let Ok(state) = result {
            // A change that completed a reassignment removing this leader elects another one:
            // this epoch is over, and the driver resigns it when the metadata arrives.
            if state.leader != self.me || state.leader_epoch != self.leader_epoch {
                return;
            }
            self.on_partition_state(&state);
        }
        self.maybe_advance_hw();
    }

    /// Committed metadata for this partition (same leader and epoch; the driver resigns this
    /// leader on any other change). A newer partition epoch replaces the ISR.
    pub fn on_partition_state(&mut self, state: &PartitionState) {
        debug_assert_eq!(state.leader, self.me);
        debug_assert_eq!(state.leader_epoch, self.leader_epoch);
        if state.partition_epoch <= self.partition_epoch {
            return;
        }
        self.partition_epoch = state.partition_epoch;
        self.isr = state.isr.clone();
        self.replicas = state.replicas.clone();
        for &r in &self.replicas {
            if r != self.me {
                self.followers.entry(r).or_default();
            }
        }
        // A reassignment removed these: their fetches are refused from now on.
        let replicas = &self.replicas;
        self.followers.retain(|r, _| replicas.contains(r));
        self.pending = None;
        self.maybe_advance_hw();
    }

    /// Leadership is over: every waiter gets REQUEST_TIMED_OUT. Its batch is appended here
    /// and may be on the new leader too, so the answer must say "possibly persisted": on
    /// NOT_LEADER_OR_FOLLOWER librdkafka takes the batch as not persisted and may rebuild it
    /// with more records from the same base sequence, which the new leader, holding the
    /// original batch, must refuse with OUT_OF_ORDER_SEQUENCE_NUMBER (fatal for the producer;
    /// seen in test_16 on a controlled shutdown). With REQUEST_TIMED_OUT it resends the same
    /// batch, which the new leader appends or deduplicates.
    pub fn resign(&mut self) -> Vec<LeaderOutput> {
        for w in std::mem::take(&mut self.waiters) {
            self.outputs.push(LeaderOutput::ProduceDone {
                id: w.id,
                result: Err(codes::REQUEST_TIMED_OUT),
            });
        }
        self.take_outputs()
    }
}
