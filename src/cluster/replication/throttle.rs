//! The replication throttle of a reassignment (KIP-73's `leader.replication.throttled.rate` /
//! `follower.replication.throttled.rate`, bytes per second, broker dynamic configs, per shard:
//! each shard's fetcher and leader side get the whole rate divided by the shard count): a token
//! bucket, sans-IO (the caller passes the clock). Kafka applies the rates to the replicas
//! listed in `*.replication.throttled.replicas`; Tern applies them to the replicas a
//! reassignment is adding (`adding_replicas`), the ones catching up, so a move cannot starve
//! clients or the in-sync followers. The follower's fetcher asks for at most the bucket's
//! allowance for those partitions and leaves them out of a round while the bucket is empty;
//! the leader caps what it reads for them the same way.

/// Config keys (broker dynamic configs: per broker id, or cluster-wide with the "" name).
pub const LEADER_RATE_KEY: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE_KEY: &str = "follower.replication.throttled.rate";

/// A token bucket of `rate` bytes per second holding at most one second's worth.
#[derive(Clone, Debug)]
pub struct Throttle {
    rate: u64,
    /// Bytes that may go now; negative after a read larger than the allowance (debt).
    available: i64,
    last_ms: u64,
}

impl Throttle {
    /// A bucket that starts full.
    pub fn new(rate: u64, now_ms: u64) -> Self {
        Self {
            rate,
            available: rate as i64,
            last_ms: now_ms,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// A new rate (a dynamic config change); the bucket keeps what it holds, capped.
    pub fn set_rate(&mut self, rate: u64, now_ms: u64) {
        self.refill(now_ms);
        self.rate = rate;
        self.available = self.available.min(rate as i64);
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let gained = (self.rate as u128 * elapsed as u128 / 1000).min(i64::MAX as u128) as i64;
        self.available = self.available.saturating_add(gained).min(self.rate as i64);
    }

    /// How many bytes may be fetched now (0: wait `wait_ms`).
    pub fn allowance(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        self.available.max(0) as u64
    }

    /// `bytes` were transferred.
    pub fn consume(&mut self, bytes: u64, now_ms: u64) {
        self.refill(now_ms);
        self.available = self
            .available
            .saturating_sub(bytes.min(i64::MAX as u64) as i64);
    }

    /// Milliseconds until the bucket holds a byte again (0: it does now).
    pub fn wait_ms(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        if self.available > 0 || self.rate == 0 {
            return 0;
        }
        let missing = (1 - self.available) as u128;
        (missing * 1000)
            .div_ceil(self.rate as u128)
            .min(u64::MAX as u128) as u64
    }
}

/// The configured rate from the broker dynamic configs (set for one broker or cluster-wide,
/// Tern keeps one set). None (unthrottled) when unset, unparsable, or Kafka's default
/// Long.MAX_VALUE; 0 stops the catch-up entirely.
pub fn configured_rate(
    broker_configs: &std::collections::BTreeMap<String, String>,
    key: &str,
) -> Option<u64> {
    broker_configs
        .get(key)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|&v| (0..i64::MAX).contains(&v))
        .map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_rate_per_second_and_waits_out_a_debt() {
        let mut t = Throttle::new(1000, 0);
        assert_eq!(t.allowance(0), 1000, "starts full");
        t.consume(1500, 0);
        assert_eq!(t.allowance(0), 0);
        assert_eq!(t.wait_ms(0), 501, "500 bytes of debt, then one byte");
        assert_eq!(t.allowance(500), 0);
        assert_eq!(t.allowance(600), 100);
        assert_eq!(
            t.allowance(10_000),
            1000,
            "never more than a second's worth"
        );
        // Over ten seconds of steady consumption, no more than rate * time + one burst.
        let mut t = Throttle::new(1000, 0);
        let mut sent = 0;
        for ms in (0..10_000).step_by(10) {
            let a = t.allowance(ms).min(300);
            t.consume(a, ms);
            sent += a;
        }
        assert!(sent <= 1000 * 10 + 1000, "{sent}");
        assert!(sent >= 1000 * 9, "{sent}");
        t.set_rate(10, 10_000);
        assert!(t.allowance(10_000) <= 10);
    }

    #[test]
    fn the_rate_comes_from_the_broker_dynamic_configs() {
        let mut configs = std::collections::BTreeMap::new();
        assert_eq!(configured_rate(&configs, FOLLOWER_RATE_KEY), None);
        configs.insert(FOLLOWER_RATE_KEY.to_string(), "5000".to_string());
        assert_eq!(configured_rate(&configs, FOLLOWER_RATE_KEY), Some(5000));
        assert_eq!(configured_rate(&configs, LEADER_RATE_KEY), None);
        configs.insert(LEADER_RATE_KEY.to_string(), i64::MAX.to_string());
        assert_eq!(
            configured_rate(&configs, LEADER_RATE_KEY),
            None,
            "Kafka's default"
        );
        configs.insert(LEADER_RATE_KEY.to_string(), "x".to_string());
        assert_eq!(configured_rate(&configs, LEADER_RATE_KEY), None);
    }
}
