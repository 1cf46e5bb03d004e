//! `CleanerTask`: the log cleaner of one shard (Kafka's `LogCleaner`, one per shard instead of
//! a thread pool). It runs in its own glommio task queue (`log-cleaner`, a small CPU share), so
//! the serving tasks preempt it; each pass picks this shard's dirtiest compacted partition
//! (`cleanup.policy` with `compact`) whose dirty ratio reaches `min.cleanable.dirty.ratio` or
//! whose dirty data is older than `max.compaction.lag.ms`, and runs one
//! `PartitionLog::clean` on it: async DMA I/O, yields between batches, reads and writes under
//! `log.cleaner.io.max.bytes.per.second`. The key -> offset map takes this shard's share of
//! `log.cleaner.dedupe.buffer.size`, allocated on the first clean. When nothing is due it
//! sleeps `log.cleaner.backoff.ms`. A standalone node's offsets partitions (the group
//! coordinator's own logs, not topics) are cleaned the same way, as a `cleanup.policy=compact`
//! topic with the broker's compaction defaults; in a cluster they are the `__consumer_offsets`
//! topic's logs, created compacted, and each replica cleans its own copy as in Kafka.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tern_storage::{IoThrottle, OffsetMap};

use crate::broker::Lifecycle;
use crate::shard_state::ShardState;

/// How often the task looks at the shutdown flag while waiting.
const TICK: Duration = Duration::from_millis(100);

pub struct CleanerTask {
    state: Rc<ShardState>,
    life: Arc<Lifecycle>,
    map: Option<OffsetMap>,
    map_budget: usize,
    throttle: IoThrottle,
    backoff: Duration,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl CleanerTask {
    /// None when `log.cleaner.enable` is false.
    pub fn new(state: Rc<ShardState>, life: Arc<Lifecycle>) -> Option<Self> {
        let cfg = &state.config;
        let v = |k| crate::ops::configs::cleaner_value(cfg, k);
        if v("log.cleaner.enable") != "true" {
            return None;
        }
        let total: usize = v("log.cleaner.dedupe.buffer.size")
            .parse()
            .unwrap_or(128 << 20);
        let rate: f64 = v("log.cleaner.io.max.bytes.per.second")
            .parse()
            .unwrap_or(f64::MAX);
        let backoff: u64 = v("log.cleaner.backoff.ms").parse().unwrap_or(15_000);
        Some(CleanerTask {
            map_budget: (total / state.count.max(1)).max(1024),
            throttle: IoThrottle::new(rate),
            backoff: Duration::from_millis(backoff.max(1)),
            map: None,
            state,
            life,
        })
    }

    pub async fn run(mut self) {
        loop {
            if self.life.shutdown.load(Ordering::SeqCst) {
                return;
            }
            if self.pass().await {
                continue;
            }
            let until = Instant::now() + self.backoff;
            while Instant::now() < until {
                if self.life.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                tern_shard::task::sleep(TICK.min(until.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
    }

    /// Cleans the dirtiest due partition once; false if none was due (or the clean failed).
    pub async fn pass(&mut self) -> bool {
        let meta = self.state.metadata();
        let now = now_ms();
        let mut best: Option<(
            f64,
            String,
            i32,
            Rc<tern_storage::PartitionLog>,
            tern_storage::CompactionConfig,
        )> = None;
        let mut seen = Vec::new();
        let mut candidates = Vec::new();
        for (topic, p, log) in self.state.partitions.all() {
            let Some(tm) = meta.topic(&topic) else {
                continue;
            };
            if !crate::ops::configs::cleanup_policy(&self.state.config, &meta, tm).compact {
                continue;
            }
            let cfg = crate::ops::configs::compaction_config(&self.state.config, &meta, tm);
            candidates.push((topic, p, log, cfg));
        }
        let group_logs = self.state.groups.cleanable_logs();
        if !group_logs.is_empty() {
            let offsets_topic = crate::metadata::TopicMeta::new(
                uuid::Uuid::nil(),
                self.state.groups.gcfg().offsets_partitions,
                [("cleanup.policy".to_string(), "compact".to_string())].into(),
            );
            let cfg =
                crate::ops::configs::compaction_config(&self.state.config, &meta, &offsets_topic);
            for (p, log) in group_logs {
                candidates.push((
                    crate::coordinators::groups::OFFSETS_TOPIC.to_string(),
                    p,
                    log,
                    cfg,
                ));
            }
        }
        for (topic, p, log, cfg) in candidates {
            let c = log.cleanable(&cfg, now);
            seen.push((topic.clone(), p, c.dirty_ratio(), c.dirty_bytes));
            if c.due(&cfg) && best.as_ref().is_none_or(|(r, ..)| c.dirty_ratio() > *r) {
                best = Some((c.dirty_ratio(), topic, p, log, cfg));
            }
        }
        self.state.metrics.cleaner_dirtiness(seen);
        let Some((_, topic, p, log, cfg)) = best else {
            return false;
        };
        let map = self
            .map
            .get_or_insert_with(|| OffsetMap::with_budget(self.map_budget));
        match log.clean(map, &cfg, &mut self.throttle, now).await {
            Ok(Some(out)) => {
                log::info!(
                    "cleaner {topic}-{p}: {} records removed, {} -> {} segments, read {} bytes, wrote {} bytes in {:?}{}",
                    out.records_removed,
                    out.segments_before,
                    out.segments_after,
                    out.bytes_read,
                    out.bytes_written,
                    out.elapsed,
                    if out.complete {
                        String::new()
                    } else {
                        format!(" (map full: next pass from offset {})", out.map_end)
                    }
                );
                self.state.metrics.cleaner_pass(&out);
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::warn!("cleaner {topic}-{p}: {e}");
                self.state.metrics.cleaner_failure();
                false
            }
        }
    }
}
