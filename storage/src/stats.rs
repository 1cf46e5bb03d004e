//! Per-thread (so per-shard) storage counters for metrics: fdatasync latency. Plain `Cell`s in
//! a thread-local: each shard records and reads its own, no atomics on the write path.

use std::cell::RefCell;
use std::time::Duration;

/// Upper bounds (seconds) of the fsync latency histogram buckets (Prometheus `le`).
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A snapshot of this thread's fsync histogram: per-bucket (non-cumulative) counts with one
/// extra overflow bucket, the sum of seconds and the count.
#[derive(Clone, Debug, Default)]
pub struct FsyncStats {
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

thread_local! {
    static FSYNC: RefCell<FsyncStats> = RefCell::new(FsyncStats {
        buckets: vec![0; FSYNC_BUCKETS.len() + 1],
        ..Default::default()
    });
}

/// Records one fdatasync of a data segment.
pub fn record_fsync(d: Duration) {
    let secs = d.as_secs_f64();
    FSYNC.with(|f| {
        let mut f = f.borrow_mut();
        let i = FSYNC_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(FSYNC_BUCKETS.len());
        f.buckets[i] += 1;
        f.sum_seconds += secs;
        f.count += 1;
    });
}

/// This thread's fsync histogram so far.
pub fn fsync_stats() -> FsyncStats {
    FSYNC.with(|f| f.borrow().clone())
}
