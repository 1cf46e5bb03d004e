//! Send lag split by cause. A fixed-rate producer generates each record at or after its intended
//! time `t`; the lag `now - t` has two causes, kept apart here:
//!
//! - **waiting on the broker**: the producer thread was blocked in a send — waiting for a free
//!   in-flight slot (all `max-in-flight` requests unacknowledged) or writing to a full socket.
//!   That is real backpressure: it stays in the latency figures, which are measured from `t`.
//! - **own lateness**: the rest — the thread woke late from its pacing sleep, was preempted, or
//!   was busy encoding. That is a measurement fault (the generator could not keep its schedule),
//!   so a run whose own-lateness p99 exceeds a threshold is marked "generator saturated".
//!
//! [`LagSplit`] remembers the recent intervals the thread spent blocked on the broker and charges
//! each record's lag to them by overlap. Pure bookkeeping on nanosecond timestamps (no clock
//! reads), so it is unit-tested with synthetic times.

use std::collections::VecDeque;

/// Recent blocked intervals of one producer thread (`[start, end)`, ns, in time order).
#[derive(Default)]
pub struct LagSplit {
    blocked: VecDeque<(u64, u64)>,
}

/// One record's lag, split (ns). `broker + own` is the whole lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub broker: u64,
    pub own: u64,
}

impl LagSplit {
    /// The thread was blocked on the broker from `start` to `end`. One thread records them, so
    /// they come in order; a wall-clock step backwards is clamped so they never overlap.
    pub fn blocked(&mut self, start: u64, end: u64) {
        let start = self.blocked.back().map_or(start, |last| start.max(last.1));
        if end > start {
            self.blocked.push_back((start, end));
        }
    }

    /// Splits the lag of a record intended at `t` and generated at `now`. Intended times only
    /// grow, so intervals that ended before `t` are dropped.
    pub fn split(&mut self, t: u64, now: u64) -> Lag {
        let total = now.saturating_sub(t);
        while self.blocked.front().is_some_and(|(_, end)| *end <= t) {
            self.blocked.pop_front();
        }
        let broker: u64 = self
            .blocked
            .iter()
            .take_while(|(start, _)| *start < now)
            .map(|(start, end)| end.min(&now).saturating_sub(*start.max(&t)))
            .sum();
        let broker = broker.min(total);
        Lag {
            broker,
            own: total - broker,
        }
    }
}

/// Whether a run's generator kept its schedule: own-lateness p99 against the threshold. Only a
/// fixed-rate run has a schedule; max rate is never "saturated" by this measure.
pub fn saturated(fixed_rate: bool, own_p99_ms: f64, threshold_ms: f64) -> bool {
    fixed_rate && own_p99_ms > threshold_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_without_blocking_is_all_own() {
        let mut s = LagSplit::default();
        assert_eq!(s.split(100, 100), Lag { broker: 0, own: 0 });
        assert_eq!(
            s.split(100, 350),
            Lag {
                broker: 0,
                own: 250
            }
        );
    }

    #[test]
    fn blocking_inside_the_lag_is_charged_to_the_broker() {
        let mut s = LagSplit::default();
        s.blocked(200, 700);
        // Intended at 100, generated at 1000: 500 of the 900 were spent blocked.
        assert_eq!(
            s.split(100, 1000),
            Lag {
                broker: 500,
                own: 400
            }
        );
    }

    #[test]
    fn only_the_overlap_with_the_lag_counts() {
        let mut s = LagSplit::default();
        s.blocked(0, 300);
        s.blocked(400, 600);
        s.blocked(900, 2000);
        // Lag window [250, 1000): 50 + 200 + 100 blocked.
        assert_eq!(
            s.split(250, 1000),
            Lag {
                broker: 350,
                own: 400
            }
        );
        // The first interval ended before the next record's intended time: dropped.
        assert_eq!(
            s.split(350, 1000),
            Lag {
                broker: 300,
                own: 350
            }
        );
        assert_eq!(s.blocked.len(), 2);
    }

    #[test]
    fn a_record_due_after_the_blocking_is_not_charged() {
        let mut s = LagSplit::default();
        s.blocked(100, 200);
        assert_eq!(
            s.split(500, 800),
            Lag {
                broker: 0,
                own: 300
            }
        );
        assert!(s.blocked.is_empty());
    }

    #[test]
    fn broker_share_never_exceeds_the_lag() {
        let mut s = LagSplit::default();
        s.blocked(0, 10_000);
        assert_eq!(
            s.split(5_000, 6_000),
            Lag {
                broker: 1_000,
                own: 0
            }
        );
        // Generated before its intended time (max rate passes now as t): no lag at all.
        assert_eq!(s.split(7_000, 7_000), Lag { broker: 0, own: 0 });
    }

    #[test]
    fn intervals_stay_ordered_when_the_clock_steps_back() {
        let mut s = LagSplit::default();
        s.blocked(100, 300);
        s.blocked(250, 400); // clamped to [300, 400)
        s.blocked(350, 380); // entirely inside the last one: dropped
        assert_eq!(
            s.split(0, 500),
            Lag {
                broker: 300,
                own: 200
            }
        );
    }

    #[test]
    fn saturation_needs_a_schedule_and_a_late_p99() {
        assert!(saturated(true, 1.5, 1.0));
        assert!(!saturated(true, 1.0, 1.0));
        assert!(!saturated(true, 0.2, 1.0));
        assert!(!saturated(false, 50.0, 1.0));
    }
}
