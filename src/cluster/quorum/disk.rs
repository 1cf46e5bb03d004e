//! `MetadataLogDisk`: the metadata log's files under `<log.dirs>/__cluster_metadata-0/`, what
//! the driver writes each `QuorumOutput::Persist` to and reads a `PersistedState` back from on
//! restart. Blocking std::fs code, called from the blocking pool one call at a time, in order.
//!
//! Layout (every integer big-endian):
//! - `<first index, 20 digits>.log`: segments of records `[len u32][crc32c u32][Entry protobuf]`
//!   (`len` = protobuf bytes, crc over them), indexes contiguous within and across segments; a
//!   new segment starts once the active one reaches `MetadataLogLimits::segment_bytes`.
//! - `quorum-state`: the raft `HardState` (protobuf, then its crc32c u32).
//! - `<index, 20 digits>-<term>.checkpoint`: a raft `Snapshot` (protobuf, then its crc32c u32).
//!
//! The hard state and snapshots are replaced atomically and durably (temp + fsync + rename +
//! directory fsync). On open: the newest snapshot whose crc and name agree with its contents
//! (a damaged one is logged and the previous one used), the entries after it, the tail from the
//! first torn or crc-bad record on dropped (logged: only unsynced writes can be torn), and a gap
//! between entries (or between the snapshot and the first entry after it) is an error.
//! Segments wholly below the oldest kept snapshot are deleted (with the default of two kept
//! snapshots, a damaged newest one can still be replaced by the previous one plus the log).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};

/// The file holding the raft hard state (term, vote, commit).
pub const HARD_STATE_FILE: &str = "quorum-state";
const SEGMENT_SUFFIX: &str = ".log";
const SNAPSHOT_SUFFIX: &str = ".checkpoint";
const RECORD_HEADER: usize = 8;

/// Bounds of the metadata log on disk.
#[derive(Clone, Debug)]
pub struct MetadataLogLimits {
    /// Largest encoded entry accepted by `write` (an entry is one batch of metadata records).
    pub max_entry_bytes: usize,
    /// Largest snapshot file read back on open.
    pub max_snapshot_bytes: u64,
    /// A new segment starts once the active one holds this many bytes.
    pub segment_bytes: u64,
    /// Snapshots kept on disk (>= 1); older ones and the segments below the oldest kept one are
    /// deleted.
    pub snapshots_kept: usize,
}

impl Default for MetadataLogLimits {
    fn default() -> Self {
        Self {
            max_entry_bytes: 8 << 20,
            max_snapshot_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            snapshots_kept: 2,
        }
    }
}

/// One segment file: its first index, and each record's (byte offset, term).
#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    len: u64,
    records: Vec<(u64, u64)>,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        (!self.records.is_empty()).then(|| self.first + self.records.len() as u64 - 1)
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        let i = index.checked_sub(self.first)? as usize;
        self.records.get(i).map(|r| r.1)
    }
}

pub struct MetadataLogDisk {
    dir: PathBuf,
    limits: MetadataLogLimits,
    /// In index order; the last one is the active segment (the only one appended to).
    segments: Vec<Segment>,
    /// Open handle on the active segment (None until the first append after open/roll).
    active: Option<File>,
    /// (index, term) of the snapshots on disk, oldest first.
    snapshots: Vec<(u64, u64)>,
    snapshot_bytes: u64,
    hard_state: HardState,
    hard_state_bytes: u64,
    /// A hard state not yet written (only its commit changed, in an unsynced write).
    pending_hard_state: Option<HardState>,
    /// Segments written or truncated since the last sync.
    unsynced: BTreeSet<PathBuf>,
    /// Files created or removed in `dir` since the last sync.
    dir_unsynced: bool,
}

impl MetadataLogDisk {
    /// Opens (creating) `dir` (= <log.dirs>/__cluster_metadata-0) and reads back what a restart needs:
    /// hard state, newest valid snapshot, entries after it; a torn/CRC-bad tail is dropped (logged).
    pub fn open(dir: &Path, limits: MetadataLogLimits) -> Result<(Self, super::PersistedState)> {
        ensure!(limits.snapshots_kept >= 1, "at least one snapshot is kept");
        ensure!(limits.max_entry_bytes > 0 && limits.max_entry_bytes <= u32::MAX as usize);
        tern_storage::create_dir_all_durable(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut seg_firsts = Vec::new();
        let mut snap_names = Vec::new();
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // An atomic replacement that never reached its rename.
                std::fs::remove_file(e.path())?;
            } else if let Some(first) = parse_segment_name(&name) {
                seg_firsts.push(first);
            } else if let Some(it) = parse_snapshot_name(&name) {
                snap_names.push(it);
            }
        }
        seg_firsts.sort_unstable();
        snap_names.sort_unstable();

        let mut disk = Self {
            dir: dir.to_path_buf(),
            limits,
            segments: Vec::new(),
            active: None,
            snapshots: Vec::new(),
            snapshot_bytes: 0,
            hard_state: HardState::default(),
            hard_state_bytes: 0,
            pending_hard_state: None,
            unsynced: BTreeSet::new(),
            dir_unsynced: false,
        };

        // Newest valid snapshot. A damaged one is logged and renamed `<name>.damaged` (kept
        // for inspection, ignored from then on); older ones than the one used are only listed.
        let mut snapshot: Option<Snapshot> = None;
        let mut valid_snaps = Vec::new();
        for &(index, term) in snap_names.iter().rev() {
            let path = dir.join(snapshot_name(index, term));
            if snapshot.is_some() {
                valid_snaps.push((index, term));
                disk.snapshot_bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
                continue;
            }
            match disk.read_snapshot(&path, index, term)? {
                Ok(s) => {
                    valid_snaps.push((index, term));
                    snapshot = Some(s);
                }
                Err(why) => {
                    log::error!(
                        "metadata log: ignoring damaged snapshot {}: {why}",
                        path.display()
                    );
                    let mut aside = path.clone().into_os_string();
                    aside.push(".damaged");
                    std::fs::rename(&path, &aside)
                        .with_context(|| format!("renaming {}", path.display()))?;
                    disk.dir_unsynced = true;
                }
            }
        }
        valid_snaps.reverse();
        disk.snapshots = valid_snaps;
        let (snap_index, snap_term) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.get_metadata().index, s.get_metadata().term));

        // Segments: scanned in order; the first bad record ends the log.
        let mut entries: Vec<Entry> = Vec::new();
        let mut ended = false;
        for first in seg_firsts {
            let path = dir.join(segment_name(first));
            if ended {
                log::warn!(
                    "metadata log: removing {} (after a torn record)",
                    path.display()
                );
                std::fs::remove_file(&path)?;
                disk.dir_unsynced = true;
                continue;
            }
            let expected = entries.last().map(|e| e.index + 1);
            if let Some(next) = expected {
                ensure!(
                    first == next,
                    "metadata log {}: gap, segment {} starts at {first} but the log before it ends at {}",
                    dir.display(),
                    path.display(),
                    next - 1
                );
            }
            let (seg, seg_entries, torn) = scan_segment(&path, first)?;
            if torn {
                ended = true;
            }
            if seg.records.is_empty() {
                std::fs::remove_file(&path)?;
                disk.dir_unsynced = true;
                continue;
            }
            entries.extend(seg_entries);
            disk.segments.push(seg);
        }

        // The entries a restart needs: those after the snapshot, if they continue its history.
        if snap_index > 0 {
            let first = disk.segments.first().map(|s| s.first);
            match disk.term_of(snap_index) {
                Some(t) if t != snap_term => {
                    // A leader's snapshot replaced a diverging log; the deletion did not finish.
                    log::warn!(
                        "metadata log {}: removing a log that diverges from the snapshot at {snap_index}",
                        dir.display()
                    );
                    disk.remove_segments_from(0)?;
                    entries.clear();
                }
                Some(_) => {}
                None if disk.last_index_in_segments() <= snap_index => {
                    // Everything stored is covered by the snapshot.
                    disk.remove_segments_from(0)?;
                    entries.clear();
                }
                None => {
                    let f = first.expect("segments hold entries");
                    ensure!(
                        f == snap_index + 1,
                        "metadata log {}: gap, the snapshot ends at {snap_index} but the log starts at {f}",
                        dir.display()
                    );
                }
            }
            entries.retain(|e| e.index > snap_index);
        } else if let Some(f) = disk.segments.first().map(|s| s.first) {
            ensure!(
                f == 1,
                "metadata log {}: gap, no snapshot but the log starts at index {f}",
                dir.display()
            );
        }

        // Hard state.
        let hs_path = dir.join(HARD_STATE_FILE);
        let mut hard_state = match std::fs::read(&hs_path) {
            Ok(bytes) => {
                disk.hard_state_bytes = bytes.len() as u64;
                let body = check_crc(&bytes)
                    .with_context(|| format!("metadata log {}", hs_path.display()))?;
                HardState::parse_from_bytes(body)
                    .with_context(|| format!("decoding {}", hs_path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HardState::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", hs_path.display())),
        };
        disk.hard_state = hard_state.clone();
        let last = entries.last().map_or(snap_index, |e| e.index);
        if hard_state.commit < snap_index {
            hard_state.commit = snap_index;
        }
        if hard_state.commit > last {
            log::warn!(
                "metadata log {}: hard state commit {} beyond the last entry {last}; using {last}",
                dir.display(),
                hard_state.commit
            );
            hard_state.commit = last;
        }
        if hard_state.term < snap_term {
            hard_state.term = snap_term;
        }

        disk.enforce_retention()?;
        disk.sync_all()?;
        Ok((
            disk,
            super::PersistedState {
                hard_state,
                snapshot,
                entries,
            },
        ))
    }

    /// One `QuorumOutput::Persist`: a snapshot replaces the log up to its index; entries whose index is
    /// <= the last stored index truncate the conflicting suffix first; then the hard state. If `sync`,
    /// everything is fdatasync'ed (files and, for new files/renames, the directory) before returning.
    pub fn write(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
        sync: bool,
    ) -> Result<()> {
        for pair in entries.windows(2) {
            ensure!(
                pair[1].index == pair[0].index + 1,
                "metadata log: entries to write are not contiguous ({} then {})",
                pair[0].index,
                pair[1].index
            );
        }
        let encoded = entries
            .iter()
            .map(|e| {
                let bytes = e.write_to_bytes().context("encoding a raft entry")?;
                ensure!(
                    bytes.len() <= self.limits.max_entry_bytes,
                    "metadata log: entry {} is {} bytes, above the limit of {}",
                    e.index,
                    bytes.len(),
                    self.limits.max_entry_bytes
                );
                Ok(bytes)
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(s) = snapshot {
            self.write_snapshot(s)?;
        }
        if let Some(first) = entries.first() {
            let snap = self.snapshot_index();
            ensure!(
                first.index > snap,
                "metadata log: entry {} is at or below the snapshot {snap}",
                first.index
            );
            let last = self.last_index();
            ensure!(
                first.index <= last + 1,
                "metadata log: gap, entry {} after last index {last}",
                first.index
            );
            if first.index <= last {
                self.truncate_from(first.index)?;
            }
            self.append(entries, &encoded)?;
        }
        if let Some(hs) = hard_state {
            let only_commit = hs.term == self.hard_state.term && hs.vote == self.hard_state.vote;
            if sync || !only_commit {
                self.write_hard_state(hs)?;
            } else {
                // The commit index is recoverable from the leader: write it with the next sync.
                self.pending_hard_state = Some(hs.clone());
            }
        }
        if sync {
            if let Some(hs) = self.pending_hard_state.take() {
                self.write_hard_state(&hs)?;
            }
            self.sync_all()?;
        }
        Ok(())
    }

    /// Bytes on disk (metrics / compaction trigger).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum::<u64>()
            + self.snapshot_bytes
            + self.hard_state_bytes
    }

    /// Bytes in the log segments (what a snapshot would let go).
    pub fn log_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Index of the newest snapshot on disk (0 = none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshots.last().map_or(0, |s| s.0)
    }

    /// The last stored index (the snapshot's when no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.last_index_in_segments().max(self.snapshot_index())
    }

    fn last_index_in_segments(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .find_map(Segment::last)
            .unwrap_or(0)
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        self.segments.iter().find_map(|s| s.term_of(index))
    }

    /// Reads a snapshot file: `Err` on an I/O error, `Ok(Err(why))` if it is damaged.
    fn read_snapshot(
        &mut self,
        path: &Path,
        index: u64,
        term: u64,
    ) -> Result<std::result::Result<Snapshot, String>> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if len > self.limits.max_snapshot_bytes {
            return Ok(Err(format!(
                "{len} bytes, above the limit of {}",
                self.limits.max_snapshot_bytes
            )));
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let body = match check_crc(&bytes) {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        let s = match Snapshot::parse_from_bytes(body) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("undecodable: {e}"))),
        };
        let m = s.get_metadata();
        if m.index != index || m.term != term {
            return Ok(Err(format!(
                "holds index {} term {}, not what its name says",
                m.index, m.term
            )));
        }
        self.snapshot_bytes += len;
        Ok(Ok(s))
    }

    fn write_snapshot(&mut self, s: &Snapshot) -> Result<()> {
        let (index, term) = (s.get_metadata().index, s.get_metadata().term);
        ensure!(index > 0, "metadata log: a snapshot at index 0");
        if index <= self.snapshot_index() {
            // Already covered (a retry, or an older leader snapshot raft-rs would not restore).
            return Ok(());
        }
        let mut bytes = s.write_to_bytes().context("encoding a raft snapshot")?;
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        tern_storage::write_file_atomic_blocking(&self.dir, &snapshot_name(index, term), &bytes)
            .with_context(|| {
                format!("writing the snapshot at {index} in {}", self.dir.display())
            })?;
        self.snapshot_bytes += bytes.len() as u64;
        self.snapshots.push((index, term));
        // The log continues the snapshot's history only if it holds the snapshot's own entry.
        if self.term_of(index) != Some(term) {
            self.remove_segments_from(0)?;
        }
        self.enforce_retention()
    }

    fn write_hard_state(&mut self, hs: &HardState) -> Result<()> {
        let mut bytes = hs
            .write_to_bytes()
            .context("encoding the raft hard state")?;
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        tern_storage::write_file_atomic_blocking(&self.dir, HARD_STATE_FILE, &bytes)
            .with_context(|| format!("writing {}", self.dir.join(HARD_STATE_FILE).display()))?;
        self.hard_state_bytes = bytes.len() as u64;
        self.hard_state = hs.clone();
        self.pending_hard_state = None;
        Ok(())
    }

    /// Older snapshots beyond `snapshots_kept`, and segments wholly below the oldest kept one.
    fn enforce_retention(&mut self) -> Result<()> {
        while self.snapshots.len() > self.limits.snapshots_kept {
            let (index, term) = self.snapshots.remove(0);
            let path = self.dir.join(snapshot_name(index, term));
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            self.snapshot_bytes = self.snapshot_bytes.saturating_sub(len);
            self.dir_unsynced = true;
        }
        let Some(&(floor, _)) = self.snapshots.first() else {
            return Ok(());
        };
        // A segment is wholly below `floor` when the next one starts at or below floor + 1.
        while self.segments.len() >= 2 && self.segments[1].first <= floor + 1 {
            let seg = self.segments.remove(0);
            std::fs::remove_file(&seg.path)
                .with_context(|| format!("removing {}", seg.path.display()))?;
            self.unsynced.remove(&seg.path);
            self.dir_unsynced = true;
        }
        if self.segments.len() == 1 && self.segments[0].last().is_some_and(|l| l <= floor) {
            // Every stored entry is below the snapshot: the next append starts a fresh segment.
            self.remove_segments_from(0)?;
        }
        Ok(())
    }

    /// Drops every entry from `index` on (the conflicting suffix).
    fn truncate_from(&mut self, index: u64) -> Result<()> {
        let Some(pos) = self
            .segments
            .iter()
            .position(|s| s.last().is_some_and(|l| l >= index))
        else {
            return Ok(());
        };
        let seg = &mut self.segments[pos];
        if index <= seg.first {
            return self.remove_segments_from(pos);
        }
        let keep = (index - seg.first) as usize;
        let offset = seg.records[keep].0;
        seg.records.truncate(keep);
        seg.len = offset;
        let path = seg.path.clone();
        self.remove_segments_from(pos + 1)?;
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.set_len(offset)
            .with_context(|| format!("truncating {}", path.display()))?;
        self.unsynced.insert(path);
        Ok(())
    }

    /// Deletes the segments at `pos` and after.
    fn remove_segments_from(&mut self, pos: usize) -> Result<()> {
        if pos >= self.segments.len() {
            return Ok(());
        }
        for seg in self.segments.drain(pos..) {
            std::fs::remove_file(&seg.path)
                .with_context(|| format!("removing {}", seg.path.display()))?;
            self.unsynced.remove(&seg.path);
            self.dir_unsynced = true;
        }
        // The active handle may belong to a removed segment.
        self.active = None;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry], encoded: &[Vec<u8>]) -> Result<()> {
        debug_assert_eq!(entries.len(), encoded.len());
        let needs_new = self
            .segments
            .last()
            .is_none_or(|s| s.len >= self.limits.segment_bytes);
        if needs_new {
            let first = entries[0].index;
            let path = self.dir.join(segment_name(first));
            let f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            self.segments.push(Segment {
                first,
                path,
                len: 0,
                records: Vec::new(),
            });
            self.active = Some(f);
            self.dir_unsynced = true;
        }
        let seg = self.segments.last_mut().expect("an active segment");
        assert_eq!(
            seg.last().map_or(seg.first, |l| l + 1),
            entries[0].index,
            "appends continue the active segment"
        );
        if self.active.is_none() {
            let f = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .with_context(|| format!("opening {}", seg.path.display()))?;
            self.active = Some(f);
        }
        let mut buf = Vec::with_capacity(encoded.iter().map(|b| b.len() + RECORD_HEADER).sum());
        let mut at = seg.len;
        for (e, bytes) in entries.iter().zip(encoded) {
            seg.records.push((at, e.term));
            buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32c::crc32c(bytes).to_be_bytes());
            buf.extend_from_slice(bytes);
            at += (bytes.len() + RECORD_HEADER) as u64;
        }
        let f = self.active.as_mut().expect("opened above");
        write_at(f, seg.len, &buf).with_context(|| format!("writing {}", seg.path.display()))?;
        seg.len = at;
        self.unsynced.insert(seg.path.clone());
        Ok(())
    }

    fn sync_all(&mut self) -> Result<()> {
        for path in std::mem::take(&mut self.unsynced) {
            let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            f.sync_data()
                .with_context(|| format!("syncing {}", path.display()))?;
        }
        if std::mem::take(&mut self.dir_unsynced) {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", self.dir.display()))?;
        }
        Ok(())
    }
}

fn write_at(f: &mut File, offset: u64, buf: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(buf, offset)?;
    f.flush()
}

/// Reads a segment: its records up to the first torn or crc-bad one (the file is truncated
/// there, logged). Returns (segment, entries, whether it was torn).
fn scan_segment(path: &Path, first: u64) -> Result<(Segment, Vec<Entry>, bool)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    let mut entries = Vec::new();
    let mut at = 0usize;
    let mut bad: Option<String> = None;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER {
            bad = Some(format!("{} bytes of a record header", rest.len()));
            break;
        }
        let len = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
        if rest.len() - RECORD_HEADER < len {
            bad = Some(format!(
                "a record of {len} bytes with {} left",
                rest.len() - RECORD_HEADER
            ));
            break;
        }
        let body = &rest[RECORD_HEADER..RECORD_HEADER + len];
        if crc32c::crc32c(body) != crc {
            bad = Some("a crc mismatch".to_string());
            break;
        }
        let e = match Entry::parse_from_bytes(body) {
            Ok(e) => e,
            Err(err) => {
                bad = Some(format!("an undecodable entry ({err})"));
                break;
            }
        };
        let expected = first + records.len() as u64;
        if e.index != expected {
            bail!(
                "metadata log {}: record {} holds index {}, expected {expected}",
                path.display(),
                records.len(),
                e.index
            );
        }
        records.push((at as u64, e.term));
        entries.push(e);
        at += RECORD_HEADER + len;
    }
    let torn = bad.is_some();
    if let Some(why) = bad {
        log::warn!(
            "metadata log {}: dropping the tail from byte {at} ({why}); {} entries kept",
            path.display(),
            records.len()
        );
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(at as u64)?;
        f.sync_data()?;
    }
    Ok((
        Segment {
            first,
            path: path.to_path_buf(),
            len: at as u64,
            records,
        },
        entries,
        torn,
    ))
}

/// The body of `[body][crc32c u32]`, if the crc matches.
fn check_crc(bytes: &[u8]) -> Result<&[u8]> {
    ensure!(bytes.len() >= 4, "{} bytes, too short", bytes.len());
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    ensure!(crc32c::crc32c(body) == crc, "crc mismatch");
    Ok(body)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

fn snapshot_name(index: u64, term: u64) -> String {
    format!("{index:020}-{term}{SNAPSHOT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

fn parse_snapshot_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 20 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if term.is_empty() || !term.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

#[cfg(test)]
mod tests;
