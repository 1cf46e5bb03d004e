//! Disk full. `DiskSpaceTask`, a named periodic task per shard, reads the free space of the log
//! dir (statvfs, on the shard's blocking pool) every `tern.log.dir.free.space.check.interval.ms`,
//! and at once after a write found the disk full, into the shard's [`DiskSpace`]. While the free
//! space is below the floor (`tern.log.dir.min.free.bytes`, or `tern.log.dir.min.free.percent`
//! of the file system when that is larger) the shard refuses Produce with KAFKA_STORAGE_ERROR,
//! which clients retry; fetches, replication and group commits go on (they use the room the
//! floor keeps). Writes are accepted again at the first check that finds room. No request makes
//! a syscall for this: Produce reads a `Cell`.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::broker::Lifecycle;
use crate::shard_state::ShardState;

/// The free-space floor and how often it is checked (`tern.log.dir.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct FreeSpaceConfig {
    /// tern.log.dir.min.free.bytes (default 1 GiB).
    pub min_free_bytes: u64,
    /// tern.log.dir.min.free.percent of the file system's size (default 0: bytes only).
    pub min_free_percent: f64,
    /// tern.log.dir.free.space.check.interval.ms (default 1000).
    pub check_interval_ms: u64,
}

impl Default for FreeSpaceConfig {
    fn default() -> Self {
        Self {
            min_free_bytes: 1 << 30,
            min_free_percent: 0.0,
            check_interval_ms: 1000,
        }
    }
}

impl FreeSpaceConfig {
    /// The floor for a file system of `total` bytes: the larger of the two settings.
    pub fn floor(&self, total: u64) -> u64 {
        let pct = (total as f64 * self.min_free_percent / 100.0).ceil() as u64;
        self.min_free_bytes.max(pct)
    }

    /// Whether `free` of `total` bytes is below the floor.
    pub fn below_floor(&self, free: u64, total: u64) -> bool {
        free < self.floor(total)
    }
}

/// What a statvfs of the log dir said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes available to the broker (f_bavail: excludes the file system's root reserve).
    pub free: u64,
    pub total: u64,
}

/// statvfs of `dir`.
pub fn statvfs(dir: &Path) -> std::io::Result<FreeSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed out-parameter of the right type.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = st.f_frsize as u64;
    Ok(FreeSpace {
        free: st.f_bavail as u64 * f,
        total: st.f_blocks as u64 * f,
    })
}

/// One shard's view of the log dir's free space (read by Produce, written by the task).
#[derive(Default)]
pub struct DiskSpace {
    /// The last reading (None before the first).
    last: Cell<Option<FreeSpace>>,
    /// The floor at the last reading.
    floor: Cell<u64>,
    below_floor: Cell<bool>,
    /// A write found the disk full: check now.
    recheck: Cell<bool>,
}

impl DiskSpace {
    /// Whether Produce is refused.
    pub fn below_floor(&self) -> bool {
        self.below_floor.get()
    }

    pub fn last(&self) -> Option<FreeSpace> {
        self.last.get()
    }

    pub fn floor(&self) -> u64 {
        self.floor.get()
    }

    /// The error message of a refused Produce.
    pub fn refusal(&self) -> String {
        match self.last.get() {
            Some(s) => format!(
                "log dir below its free-space floor: {} bytes free, floor {} bytes",
                s.free,
                self.floor.get()
            ),
            None => "log dir full (a write found no space)".into(),
        }
    }

    /// A write failed with ENOSPC: refuse Produce until a check finds room, and check now.
    pub fn note_no_space(&self) {
        if !self.below_floor.replace(true) {
            log::warn!("log dir full (a write found no space): refusing produce");
        }
        self.recheck.set(true);
    }

    /// Records a reading; logs the transitions.
    pub fn update(&self, cfg: &FreeSpaceConfig, s: FreeSpace) {
        let floor = cfg.floor(s.total);
        let below = cfg.below_floor(s.free, s.total);
        self.last.set(Some(s));
        self.floor.set(floor);
        let was = self.below_floor.replace(below);
        if below && !was {
            log::warn!(
                "log dir below its free-space floor ({} bytes free, floor {floor}): refusing produce",
                s.free
            );
        } else if was && !below {
            log::info!(
                "log dir has room again ({} bytes free, floor {floor}): accepting produce",
                s.free
            );
        }
    }
}

/// The named periodic per-shard task that keeps [`DiskSpace`] current.
pub struct DiskSpaceTask {
    state: Rc<ShardState>,
    life: Arc<Lifecycle>,
    dir: PathBuf,
}

/// How often the task looks at the shutdown and recheck flags between checks.
const TICK: Duration = Duration::from_millis(100);

impl DiskSpaceTask {
    pub fn new(state: Rc<ShardState>, life: Arc<Lifecycle>) -> Self {
        let dir = state.config.log_dir.clone();
        Self { state, life, dir }
    }

    pub async fn run(self) {
        let cfg = self.state.config.disk_space.clone();
        let interval = Duration::from_millis(cfg.check_interval_ms);
        loop {
            self.check(&cfg).await;
            let next = Instant::now() + interval;
            while Instant::now() < next && !self.state.disk.recheck.get() {
                if self.life.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                tern_shard::task::sleep(TICK.min(next.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
    }

    async fn check(&self, cfg: &FreeSpaceConfig) {
        self.state.disk.recheck.set(false);
        let dir = self.dir.clone();
        match tern_shard::task::run_blocking(move || statvfs(&dir)).await {
            Ok(s) => self.state.disk.update(cfg, s),
            Err(e) => log::warn!("statvfs {}: {e}", self.dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(bytes: u64, pct: f64) -> FreeSpaceConfig {
        FreeSpaceConfig {
            min_free_bytes: bytes,
            min_free_percent: pct,
            check_interval_ms: 1000,
        }
    }

    #[test]
    fn the_floor_is_the_larger_of_bytes_and_percent() {
        assert_eq!(cfg(1 << 30, 0.0).floor(100 << 30), 1 << 30);
        assert_eq!(cfg(1 << 30, 5.0).floor(100 << 30), 5 << 30);
        assert_eq!(cfg(10 << 30, 5.0).floor(100 << 30), 10 << 30);
        assert_eq!(cfg(0, 0.0).floor(100 << 30), 0);
    }

    #[test]
    fn below_floor_refuses_until_a_reading_finds_room() {
        let c = cfg(1000, 0.0);
        let d = DiskSpace::default();
        assert!(!d.below_floor(), "no reading yet: accepted");
        d.update(
            &c,
            FreeSpace {
                free: 5000,
                total: 10_000,
            },
        );
        assert!(!d.below_floor());
        d.update(
            &c,
            FreeSpace {
                free: 999,
                total: 10_000,
            },
        );
        assert!(d.below_floor());
        assert!(d.refusal().contains("999 bytes free, floor 1000"));
        d.update(
            &c,
            FreeSpace {
                free: 1000,
                total: 10_000,
            },
        );
        assert!(!d.below_floor(), "at the floor is enough");
        // ENOSPC refuses at once and asks for a check; the check decides.
        d.note_no_space();
        assert!(d.below_floor() && d.recheck.get());
        d.update(
            &c,
            FreeSpace {
                free: 4000,
                total: 10_000,
            },
        );
        assert!(!d.below_floor());
    }

    #[test]
    fn statvfs_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let s = statvfs(dir.path()).unwrap();
        assert!(s.total > 0 && s.free <= s.total);
        assert!(statvfs(&dir.path().join("missing")).is_err());
    }
}
