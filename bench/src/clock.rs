//! Time: the wall clock in nanoseconds (shared by producer and consumer, also across processes on
//! one host), the fixed-rate pacer, and the process's CPU time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
#[inline]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sleep until the wall clock reaches `t_ns` (returns at once if it already has).
pub fn sleep_until(t_ns: u64) {
    let now = now_ns();
    if t_ns > now {
        std::thread::sleep(Duration::from_nanos(t_ns - now));
    }
}

/// Fixed-rate schedule: the k-th record is *intended* to be sent at `start + k / rate`. Latency is
/// measured from this intended time, so a stalled broker is charged for the records that should
/// have been sent meanwhile (no coordinated omission). `None` rate means "as fast as possible".
pub struct Pacer {
    start_ns: u64,
    interval_ns: f64,
    k: u64,
}

impl Pacer {
    pub fn new(rate: Option<f64>, start_ns: u64) -> Self {
        Pacer {
            start_ns,
            interval_ns: rate.map_or(0.0, |r| 1e9 / r),
            k: 0,
        }
    }

    /// The intended send time of the next record; for max rate, `now`.
    #[inline]
    pub fn next(&mut self, now: u64) -> u64 {
        if self.interval_ns == 0.0 {
            return now;
        }
        let t = self.start_ns + (self.k as f64 * self.interval_ns) as u64;
        self.k += 1;
        t
    }

    /// Peek at the next intended time without consuming it.
    #[inline]
    pub fn peek(&self, now: u64) -> u64 {
        if self.interval_ns == 0.0 {
            return now;
        }
        self.start_ns + (self.k as f64 * self.interval_ns) as u64
    }
}

/// User + system CPU time consumed by this process so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Restricts the calling thread — and every thread it spawns afterwards — to `cpus`.
pub fn pin_to(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET only writes inside it (indices are
    // bounded by CPU_SETSIZE, checked here), and sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::other(format!("CPU {c} out of range")));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
