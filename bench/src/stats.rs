//! Shared counters and latency histograms: worker threads record into per-interval HDR
//! histograms; the main thread folds them into totals once a second (printing a live line), and
//! turns the totals into the final summary.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Latencies are recorded in microseconds, up to one hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

#[derive(Default)]
pub struct Shared {
    /// Producers stop generating when set.
    pub stop: AtomicBool,
    /// Consumers stop when set.
    pub stop_consumers: AtomicBool,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub consumed: AtomicU64,
    pub error_codes: Mutex<BTreeMap<i16, u64>>,
    pub fatal: Mutex<Option<String>>,
    produce: Mutex<Option<Histogram<u64>>>,
    e2e: Mutex<Option<Histogram<u64>>>,
    /// Send lag of the current interval, split by cause (see `lag.rs`).
    lag: Mutex<Option<LagHists>>,
}

/// Send lag histograms (µs): the whole lag, the part spent blocked on the broker
/// (backpressure), and the generator's own lateness (a measurement fault).
pub struct LagHists {
    pub total: Histogram<u64>,
    pub broker: Histogram<u64>,
    pub own: Histogram<u64>,
}

impl LagHists {
    pub fn new() -> Self {
        LagHists {
            total: new_hist(),
            broker: new_hist(),
            own: new_hist(),
        }
    }

    /// One record's lag.
    #[inline]
    pub fn record(&mut self, lag: crate::lag::Lag) {
        let us = |ns: u64| (ns / 1000).max(1);
        self.total.saturating_record(us(lag.broker + lag.own));
        self.broker.saturating_record(us(lag.broker));
        self.own.saturating_record(us(lag.own));
    }

    pub fn add(&mut self, o: &LagHists) {
        let _ = self.total.add(&o.total);
        let _ = self.broker.add(&o.broker);
        let _ = self.own.add(&o.own);
    }

    pub fn reset(&mut self) {
        self.total.reset();
        self.broker.reset();
        self.own.reset();
    }
}

impl Default for LagHists {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn us(now: u64, t: u64) -> u64 {
    (now.saturating_sub(t) / 1000).max(1)
}

impl Shared {
    pub fn new() -> Self {
        let s = Shared::default();
        *s.produce.lock().unwrap() = Some(new_hist());
        *s.e2e.lock().unwrap() = Some(new_hist());
        *s.lag.lock().unwrap() = Some(LagHists::new());
        s
    }

    /// Records acknowledged at `now` whose intended send times are `times`.
    pub fn record_acks(&self, now: u64, times: &[u64]) {
        self.acked.fetch_add(times.len() as u64, Relaxed);
        let mut h = self.produce.lock().unwrap();
        let h = h.as_mut().unwrap();
        for t in times {
            h.saturating_record(us(now, *t));
        }
    }

    /// Records consumed at `now` whose send times are `times`.
    pub fn record_consumed(&self, now: u64, times: &[u64]) {
        self.consumed.fetch_add(times.len() as u64, Relaxed);
        let mut h = self.e2e.lock().unwrap();
        let h = h.as_mut().unwrap();
        for t in times {
            h.saturating_record(us(now, *t));
        }
    }

    /// Moves a producer's local lag histograms into the current interval (and empties them).
    pub fn record_lag(&self, h: &mut LagHists) {
        self.lag.lock().unwrap().as_mut().unwrap().add(h);
        h.reset();
    }

    /// Take the interval's send lag, leaving empty histograms.
    pub fn take_lag(&self) -> LagHists {
        self.lag.lock().unwrap().replace(LagHists::new()).unwrap()
    }

    pub fn record_error(&self, code: i16, records: u64) {
        self.errors.fetch_add(records, Relaxed);
        *self.error_codes.lock().unwrap().entry(code).or_default() += records;
    }

    pub fn fail(&self, msg: String) {
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
            eprintln!("error: {msg}");
            *f = Some(msg);
        }
        self.stop.store(true, Relaxed);
        self.stop_consumers.store(true, Relaxed);
    }

    pub fn failed(&self) -> bool {
        self.fatal.lock().unwrap().is_some()
    }

    /// Take the interval histograms (produce, e2e), leaving empty ones.
    pub fn take_interval(&self) -> (Histogram<u64>, Histogram<u64>) {
        let p = self.produce.lock().unwrap().replace(new_hist()).unwrap();
        let e = self.e2e.lock().unwrap().replace(new_hist()).unwrap();
        (p, e)
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |v: u64| v as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            p9999: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3} ms  (n={})",
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max, self.count
        )
    }
}

/// Throughput over the measured window.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Rate {
    pub records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Rate {
    pub fn new(records: u64, secs: f64, record_size: usize) -> Rate {
        let rps = records as f64 / secs.max(1e-9);
        Rate {
            records,
            records_per_sec: rps,
            mb_per_sec: rps * record_size as f64 / 1e6,
        }
    }
}
