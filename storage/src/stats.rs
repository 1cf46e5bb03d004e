//! Per-thread (so per-shard) storage latency histograms for metrics: segment data writes and
//! fdatasyncs. Plain `RefCell`s in a thread-local: each shard records and reads its own, no
//! atomics on the write path.

use std::cell::RefCell;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets (Prometheus `le`).
pub const STORAGE_LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A snapshot of one of this thread's latency histograms: per-bucket (non-cumulative) counts
/// over [`STORAGE_LATENCY_BUCKETS`] with one extra overflow bucket, the sum of seconds and the count.
#[derive(Clone, Debug, Default)]
pub struct LatencyStats {
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyStats {
    fn empty() -> LatencyStats {
        LatencyStats {
            buckets: vec![0; STORAGE_LATENCY_BUCKETS.len() + 1],
            ..Default::default()
        }
    }

    fn record(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = STORAGE_LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(STORAGE_LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum_seconds += secs;
        self.count += 1;
    }
}

thread_local! {
    static FSYNC: RefCell<LatencyStats> = RefCell::new(LatencyStats::empty());
    static WRITE: RefCell<LatencyStats> = RefCell::new(LatencyStats::empty());
}

/// Records one fdatasync of a data segment.
pub fn record_fsync(d: Duration) {
    FSYNC.with(|f| f.borrow_mut().record(d));
}

/// Records one O_DIRECT data write of a segment (submission to completion).
pub fn record_write(d: Duration) {
    WRITE.with(|f| f.borrow_mut().record(d));
}

/// This thread's fsync histogram so far.
pub fn fsync_stats() -> LatencyStats {
    FSYNC.with(|f| f.borrow().clone())
}

/// This thread's data-write histogram so far.
pub fn write_stats() -> LatencyStats {
    WRITE.with(|f| f.borrow().clone())
}
