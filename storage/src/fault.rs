//! Test-only fault injection and power-cut simulation for the I/O layer (`io.rs` calls these
//! hooks; they do nothing unless a test calls [`enable`] on its thread).
//!
//! - Gates hold every data write (`append_aligned`) or every fdatasync of this thread until
//!   released, so a test can act while an append is queued, being written or being synced.
//! - Armed failures make the next write or fdatasync return an I/O error; a disk-full failure
//!   makes the next segment (`.log`) write fail with ENOSPC, or tear it (its first half reaches
//!   the file, then the write reports a short count, as O_DIRECT does on a full disk).
//! - The power-cut model ([`power_cut`]) drops what POSIX does not promise to keep: bytes of a
//!   file written after its last fdatasync (the file is cut back to its synced length), and
//!   directory entries (files or directories created or renamed into place) not followed by an
//!   fsync of their parent directory (they are removed), and removals not followed by one (the
//!   file comes back as it was). It acts on the real files, so a test
//!   then reopens the log as after a reboot.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::Shared;

type Gate = Shared<oneshot::Receiver<()>>;

#[derive(Default)]
struct Sim {
    enabled: bool,
    /// Length of each written file that a power cut keeps (its size at its last fdatasync, or
    /// before its first write seen here).
    durable_len: HashMap<PathBuf, u64>,
    /// Entries created or renamed into place and not yet covered by an fsync of their parent.
    new_entries: Vec<PathBuf>,
    /// Files removed (with their content) and not yet covered by an fsync of their parent.
    removed: Vec<(PathBuf, Vec<u8>)>,
    write_gate: Option<Gate>,
    sync_gate: Option<Gate>,
    fail_write: bool,
    fail_sync: bool,
    /// The next segment write fails for lack of space (see [`NoSpaceFault`]).
    no_space: Option<NoSpaceFault>,
    /// Writes and syncs waiting at a gate now.
    held: usize,
    /// Crash points (steps of a multi-step operation such as a clean) passed so far.
    crash_points: usize,
    /// The crash point at which the operation stops with an error (a simulated kill).
    crash_at: Option<usize>,
}

thread_local! {
    static SIM: RefCell<Sim> = RefCell::new(Sim::default());
}

fn with<R>(f: impl FnOnce(&mut Sim) -> R) -> R {
    SIM.with(|s| f(&mut s.borrow_mut()))
}

/// The length of `path` now (0 when missing): also what an fdatasync asked for now covers.
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn injected(what: &str) -> std::io::Error {
    std::io::Error::other(format!("injected {what} failure"))
}

/// Turns the simulation on for this thread (each test runs its executor on its own thread).
pub fn enable() {
    with(|s| {
        *s = Sim {
            enabled: true,
            ..Sim::default()
        }
    });
}

/// Holds every data write from now on until the returned sender is dropped or used.
pub fn hold_writes() -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel();
    with(|s| s.write_gate = Some(rx.shared()));
    tx
}

/// Holds every fdatasync from now on until the returned sender is dropped or used.
pub fn hold_syncs() -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel();
    with(|s| s.sync_gate = Some(rx.shared()));
    tx
}

/// The next data write fails with an I/O error (after passing any gate).
pub fn fail_next_write() {
    with(|s| s.fail_write = true);
}

/// How an armed disk-full failure hits the next segment write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSpaceFault {
    /// Nothing is written; the write returns ENOSPC.
    Enospc,
    /// The first half of the write's bytes reach the file, then it reports a short write.
    Torn,
}

/// The next data write to a segment file (`*.log`) fails for lack of space (after passing
/// any gate); writes of other files (indexes, checkpoints) are not affected.
pub fn fail_next_segment_write_no_space(how: NoSpaceFault) {
    with(|s| s.no_space = Some(how));
}

/// The next fdatasync fails with an I/O error (after passing any gate).
pub fn fail_next_sync() {
    with(|s| s.fail_sync = true);
}

/// The `n`-th crash point from now on (1-based) fails: the operation stops there as if the
/// process had been killed (the test then abandons the log and reopens it).
pub fn crash_at(n: usize) {
    with(|s| {
        s.crash_points = 0;
        s.crash_at = Some(n);
    });
}

/// Crash points passed since the last [`crash_at`] (or [`enable`]).
pub fn crash_points_passed() -> usize {
    with(|s| s.crash_points)
}

/// A step boundary of a multi-step operation: fails if it is the armed one.
pub(crate) fn crash_point(what: &str) -> std::io::Result<()> {
    with(|s| {
        if !s.enabled {
            return Ok(());
        }
        s.crash_points += 1;
        if s.crash_at == Some(s.crash_points) {
            s.crash_at = None;
            return Err(std::io::Error::other(format!(
                "injected crash after: {what}"
            )));
        }
        Ok(())
    })
}

/// Entries created and not yet covered by a directory fsync.
pub fn unsynced_entries() -> Vec<PathBuf> {
    with(|s| s.new_entries.clone())
}

async fn wait(gate: Option<Gate>) {
    if let Some(g) = gate {
        with(|s| s.held += 1);
        let _ = g.await;
        with(|s| s.held -= 1);
    }
}

/// Waits (letting the other tasks and the I/O reactor run) until `n` writes or syncs wait at a
/// gate; panics after ten seconds.
pub async fn until_held(n: usize) {
    for _ in 0..10_000 {
        if with(|s| s.held) >= n {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("no I/O reached the gate");
}

/// Called before each data write; `Ok(Some(Torn))` asks the caller to tear this write.
pub(crate) async fn before_write(path: &Path) -> std::io::Result<Option<NoSpaceFault>> {
    let gate = with(|s| {
        if !s.enabled {
            return None;
        }
        s.durable_len
            .entry(path.to_path_buf())
            .or_insert_with(|| file_len(path));
        Some(s.write_gate.clone())
    });
    let Some(gate) = gate else { return Ok(None) };
    wait(gate).await;
    with(|s| {
        if std::mem::take(&mut s.fail_write) {
            return Err(injected("write"));
        }
        if path.extension().is_some_and(|e| e == "log") {
            match s.no_space.take() {
                Some(NoSpaceFault::Enospc) => {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
                }
                Some(NoSpaceFault::Torn) => return Ok(Some(NoSpaceFault::Torn)),
                None => {}
            }
        }
        Ok(None)
    })
}

pub(crate) async fn before_sync() -> std::io::Result<()> {
    let Some(gate) = with(|s| s.enabled.then(|| s.sync_gate.clone())) else {
        return Ok(());
    };
    wait(gate).await;
    with(|s| {
        if std::mem::take(&mut s.fail_sync) {
            Err(injected("fdatasync"))
        } else {
            Ok(())
        }
    })
}

/// A completed fdatasync of `path` that covers its first `len` bytes (its length when the sync
/// was asked for): they survive a power cut.
pub(crate) fn synced(path: &Path, len: u64) {
    with(|s| {
        if s.enabled {
            // A sync that completes after a later one keeps less: conservative.
            s.durable_len.insert(path.to_path_buf(), len);
        }
    });
}

/// A new directory entry (file or directory) at `path`.
pub(crate) fn created(path: &Path) {
    with(|s| {
        if s.enabled {
            s.new_entries.push(path.to_path_buf());
        }
    });
}

/// `from` renamed to `to`: `to` is a new entry; what was synced of `from` is now `to`'s.
pub(crate) fn renamed(from: &Path, to: &Path) {
    with(|s| {
        if s.enabled {
            if let Some(len) = s.durable_len.remove(from) {
                s.durable_len.insert(to.to_path_buf(), len);
            }
            s.new_entries.retain(|p| p != from);
            s.new_entries.push(to.to_path_buf());
        }
    });
}

/// File `path` is about to be removed: a power cut before its directory is synced brings it
/// back.
pub(crate) fn removing(path: &Path) {
    with(|s| {
        if s.enabled
            && let Ok(data) = std::fs::read(path)
        {
            s.new_entries.retain(|p| p != path);
            s.removed.push((path.to_path_buf(), data));
        }
    });
}

/// A completed fsync of directory `dir`: the entries directly in it are durable.
pub(crate) fn dir_synced(dir: &Path) {
    with(|s| {
        if s.enabled {
            s.new_entries.retain(|p| p.parent() != Some(dir));
            s.removed.retain(|(p, _)| p.parent() != Some(dir));
        }
    });
}

/// Simulates a process crash: held I/O never resumes (the test forgets its gates), armed
/// failures are dropped; what was written stays (it is in the kernel or on the disk).
pub fn process_crash() {
    with(|s| {
        s.write_gate = None;
        s.sync_gate = None;
        s.fail_write = false;
        s.fail_sync = false;
        s.no_space = None;
        s.held = 0;
    });
}

/// Simulates a power cut: removes entries not covered by a directory fsync and cuts written
/// files back to their synced length. The simulation then starts afresh (as after a reboot).
pub fn power_cut() {
    let (entries, lens, removed) = with(|s| {
        (
            std::mem::take(&mut s.new_entries),
            std::mem::take(&mut s.durable_len),
            std::mem::take(&mut s.removed),
        )
    });
    for (p, data) in removed {
        std::fs::write(p, data).unwrap();
    }
    for p in entries.iter().rev() {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
            Ok(_) => std::fs::remove_file(p).unwrap(),
            Err(_) => {}
        }
    }
    for (p, len) in lens {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p)
            && f.metadata().unwrap().len() > len
        {
            f.set_len(len).unwrap();
        }
    }
    enable();
}
