//! `RetentionTask`: one per shard, every `log.retention.check.interval.ms` it walks the
//! partitions this shard owns and enforces `retention.ms` / `retention.bytes` (topic config over
//! the broker's, dynamic over static) by deleting whole old segments
//! (`PartitionLog::enforce_retention`). It runs as an ordinary task on the shard: deletions are
//! awaited one partition at a time and file removal happens on the blocking pool, so the produce
//! and fetch paths never wait for it.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::broker::Lifecycle;
use crate::shard_state::ShardState;

pub struct RetentionTask {
    state: Rc<ShardState>,
    life: Arc<Lifecycle>,
}

/// How often the task looks at the shutdown flag while waiting for its next pass.
const TICK: Duration = Duration::from_millis(100);

impl RetentionTask {
    pub fn new(state: Rc<ShardState>, life: Arc<Lifecycle>) -> Self {
        Self { state, life }
    }

    pub async fn run(self) {
        let interval = Duration::from_millis(self.state.config.retention_check_interval_ms);
        let mut next = Instant::now() + interval;
        loop {
            while Instant::now() < next {
                if self.life.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                tern_shard::task::sleep(TICK.min(next.saturating_duration_since(Instant::now())))
                    .await;
            }
            self.pass().await;
            next = Instant::now() + interval;
        }
    }

    /// One pass over this shard's partitions.
    pub async fn pass(&self) {
        let meta = self.state.metadata();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for (topic, p, log) in self.state.partitions.all() {
            if self.life.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let Some(tm) = meta.topic(&topic) else {
                continue;
            };
            let (ms, bytes) = crate::ops::configs::retention(&self.state.config, &meta, tm);
            if ms < 0 && bytes < 0 {
                continue;
            }
            match log.enforce_retention(ms, bytes, now_ms).await {
                Ok(out) => {
                    if out.segments_deleted > 0 {
                        log::info!(
                            "retention {topic}-{p}: deleted {} segments ({} bytes), log start offset now {}",
                            out.segments_deleted,
                            out.bytes_deleted,
                            log.log_start_offset()
                        );
                        self.state
                            .metrics
                            .retention(out.segments_deleted, out.bytes_deleted);
                    }
                }
                Err(e) => log::warn!("retention {topic}-{p}: {e}"),
            }
            tern_shard::task::yield_if_needed().await;
        }
    }
}
