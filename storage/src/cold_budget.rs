//! The per-shard bandwidth bound on cold reads (fetches served from segment files rather than
//! the tail cache): a token bucket of `rate` bytes/s per shard thread, refilled continuously,
//! holding at most 100 ms worth. A cold read is admitted when the bucket is not in debt, then
//! takes its bytes (possibly into debt); later cold reads wait (a glommio timer, never blocking
//! the shard) until the debt is repaid. So a replaying consumer cannot take all of the disk and
//! CPU from producers and tail consumers on the same shard. `rate` 0 = unbounded.

use std::cell::RefCell;
use std::time::{Duration, Instant};

struct Bucket {
    /// Bytes that may still be read now (negative: debt).
    tokens: f64,
    last: Instant,
}

thread_local! {
    /// One bucket per shard (each shard is one thread).
    static BUCKET: RefCell<Option<Bucket>> = const { RefCell::new(None) };
}

/// Burst the bucket may hold, in seconds of `rate`.
const BURST_SECS: f64 = 0.1;

/// How long a read of `bytes` must wait at `now` (None: admitted, its bytes taken).
fn try_take(b: &mut Bucket, now: Instant, bytes: u64, rate: u64) -> Option<Duration> {
    let rate = rate as f64;
    let dt = now.saturating_duration_since(b.last).as_secs_f64();
    b.last = now;
    b.tokens = (b.tokens + dt * rate).min(rate * BURST_SECS);
    if b.tokens < 0.0 {
        return Some(Duration::from_secs_f64(-b.tokens / rate).max(Duration::from_micros(100)));
    }
    b.tokens -= bytes as f64;
    None
}

/// Waits until a cold read of `bytes` fits this shard's budget of `rate` bytes/s.
pub async fn admit(bytes: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    loop {
        let wait = BUCKET.with(|cell| {
            let mut cell = cell.borrow_mut();
            let now = Instant::now();
            let b = cell.get_or_insert(Bucket {
                tokens: rate as f64 * BURST_SECS,
                last: now,
            });
            try_take(b, now, bytes, rate)
        });
        match wait {
            None => return,
            Some(d) => glommio::timer::sleep(d).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_repaid_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 0.0,
            last: t0,
        };
        // 1 MB/s: a 1 MB read is admitted at once (no debt), then the next waits ~1 s.
        assert_eq!(try_take(&mut b, t0, 1_000_000, 1_000_000), None);
        let w = try_take(&mut b, t0, 1_000_000, 1_000_000).expect("in debt");
        assert!((w.as_secs_f64() - 1.0).abs() < 1e-6, "{w:?}");
        // After the debt is repaid the next read goes through.
        assert_eq!(
            try_take(&mut b, t0 + Duration::from_secs(1), 1, 1_000_000),
            None
        );
        // Idle time refills at most BURST_SECS worth.
        let _ = try_take(&mut b, t0 + Duration::from_secs(100), 0, 1_000_000);
        assert!(b.tokens <= 1_000_000.0 * BURST_SECS);
    }
}
