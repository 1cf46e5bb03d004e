//! Log compaction of one [`PartitionLog`] (Kafka's log cleaner, one pass at a time).
//!
//! The log splits into a *clean* head (below the persisted first dirty offset,
//! [`CLEANER_CHECKPOINT_FILE`]), the *dirty* part after it, and what is never cleaned: the
//! active segment, segments not yet finalised or above the high watermark, and segments whose
//! newest record is younger than `min.compaction.lag.ms` (the first uncleanable offset).
//!
//! One pass: (1) scan the dirty segments into the key -> latest offset map ([`OffsetMap`],
//! fixed budget) until the map is full or the dirty part ends: that offset is the map end;
//! (2) rewrite every cleanable segment below the map end, in groups of consecutive segments
//! whose sizes sum to at most `segment.bytes`, keeping a record when its offset is at or past
//! the map end, or it is the latest of its key, except tombstones whose timestamp is older than
//! `delete.retention.ms` and records without a key; a producer's last batch stays (empty if all
//! its records go) so idempotent producers keep their sequence; control batches stay;
//! (3) persist the map end as the new first dirty offset. A partition with more keys than the
//! map holds is cleaned by several passes.
//!
//! Each group is swapped in as Kafka does, each step durable before the next:
//! `<base>.log.cleaned` written and fdatasynced; renamed to `<base>.log.swap` (the commit
//! point) and the directory fsynced; the group's old files removed (directory fsynced); the
//! swap renamed to `<base>.log` (directory fsynced); then indexes written. Recovery at open
//! ([`recover_swaps`]): a `.cleaned` file is deleted (the clean did not happen); a `.swap` file
//! replaces the old segments inside its offset range and becomes `<base>.log`. Readers in flight
//! keep reading the old files through their own descriptors; the tail cache is released for
//! the swapped range.
//!
//! All I/O is asynchronous (DMA reads and writes through glommio, renames through io_uring);
//! the CPU work yields the cleaner's task queue every 500 us ([`CPU_SLICE`]), and reads and writes
//! can be throttled ([`IoThrottle`]).

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::compact_batch::{self, Records};
use crate::io::{self, ChunkReader};
use crate::offset_map::OffsetMap;
use crate::recovery;
use crate::segment::{MAX_SEGMENT_BYTES, Segment};
use crate::{PartitionLog, StorageError};

/// The first dirty offset of the partition (decimal text), written after each pass.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Read granularity of the cleaner.
const CLEAN_READ_CHUNK: usize = 1 << 20;
/// Bytes of cleaned output gathered before one DMA write.
const CLEAN_WRITE_CHUNK: usize = 1 << 20;
/// Longest stretch of CPU work between two yields of the cleaner's task queue. glommio's
/// `yield_if_needed` only yields at the end of the queue's time slice (or for latency-sensitive
/// queues), which lets one pass hold the shard for many milliseconds while produce requests
/// wait on the same core; the cleaner yields its queue explicitly instead.
const CPU_SLICE: Duration = Duration::from_micros(500);

/// How long the cleaner sleeps at the end of a slice. A queue yield is not enough: glommio
/// polls io_uring only when no task queue is runnable (or at its 100 ms preempt timer), so a
/// cleaner that yielded and was at once runnable again kept arrived requests and finished
/// writes unpolled for up to 100 ms (bench-compaction: broker-side Produce p99.9 <= 100 ms
/// while cleaning). Sleeping on a timer takes the cleaner off the run queue until the shard
/// has polled its I/O.
const SLICE_PAUSE: Duration = Duration::from_micros(50);

/// Pauses the cleaner every [`CPU_SLICE`] of work (see [`SLICE_PAUSE`]).
struct Slicer(Instant);

impl Slicer {
    async fn tick(&mut self) {
        if self.0.elapsed() >= CPU_SLICE {
            glommio::timer::sleep(SLICE_PAUSE).await;
            self.0 = Instant::now();
        }
    }
}

/// The compaction settings of a topic (Kafka topic configs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: tombstones older than this (by record timestamp) are removed.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty data older than this is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean when dirty / (clean + dirty) bytes reaches this.
    pub min_cleanable_ratio: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_ratio: 0.5,
        }
    }
}

/// How much of a partition is dirty (metrics, and whether to clean it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cleanable {
    /// Bytes of cleanable segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of cleanable segments at or after it (the "cleanable bytes").
    pub dirty_bytes: u64,
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    /// Some dirty segment is older than `max.compaction.lag.ms`.
    pub overdue: bool,
}

impl Cleanable {
    /// dirty / (clean + dirty); 0 when nothing is cleanable.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Whether a pass is due under `cfg`.
    pub fn due(&self, cfg: &CompactionConfig) -> bool {
        self.dirty_bytes > 0 && (self.overdue || self.dirty_ratio() >= cfg.min_cleanable_ratio)
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanOutcome {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub records_removed: u64,
    /// The new first dirty offset.
    pub map_end: i64,
    /// The map covered the whole dirty part (no further pass needed for it).
    pub complete: bool,
    pub elapsed: Duration,
}

/// `log.cleaner.io.max.bytes.per.second`: the cleaner's reads and writes together stay under
/// this rate (sleeping on the shard's timer when ahead).
pub struct IoThrottle {
    bytes_per_sec: f64,
    since: Instant,
    bytes: u64,
}

impl IoThrottle {
    /// `bytes_per_sec` <= 0 or infinite disables throttling.
    pub fn new(bytes_per_sec: f64) -> IoThrottle {
        IoThrottle {
            bytes_per_sec,
            since: Instant::now(),
            bytes: 0,
        }
    }

    async fn charge(&mut self, n: u64) {
        let wait = self.account(n, self.since.elapsed());
        if !wait.is_zero() {
            glommio::timer::sleep(wait).await;
        }
    }

    /// Counts `n` more bytes, `elapsed` into the current window: how long to wait so that
    /// the window's bytes stay under the rate. A window longer than a second restarts, so
    /// an idle period does not buy a burst.
    fn account(&mut self, n: u64, elapsed: Duration) -> Duration {
        if !(self.bytes_per_sec > 0.0 && self.bytes_per_sec.is_finite()) {
            return Duration::ZERO;
        }
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec);
        let wait = due.saturating_sub(elapsed);
        if elapsed > Duration::from_secs(1) {
            self.since = Instant::now();
            self.bytes = 0;
        }
        wait
    }
}

#[cfg(test)]
fn crash_point(what: &str) -> Result<(), StorageError> {
    crate::fault::crash_point(what).map_err(StorageError::Io)
}
#[cfg(not(test))]
fn crash_point(_: &str) -> Result<(), StorageError> {
    Ok(())
}

/// Why a record goes: the inputs of the retention rule of one pass.
struct Rule<'a> {
    map: &'a OffsetMap,
    map_end: i64,
    tombstone_horizon: i64,
}

impl Rule<'_> {
    fn keep(&self, r: &compact_batch::RecordView<'_>) -> bool {
        if r.offset >= self.map_end {
            return true;
        }
        let Some(key) = r.key else {
            return false; // a compacted log has no use for records without a key
        };
        if self.map.get(key).is_some_and(|latest| latest > r.offset) {
            return false;
        }
        !(r.value.is_none() && r.timestamp < self.tombstone_horizon)
    }
}

/// Cleaned output being written to `<base>.log.cleaned`.
struct CleanedWriter {
    dma: glommio::io::DmaFile,
    seg: Segment,
    pending: Vec<u8>,
    written: u64,
    tail: Vec<u8>,
    interval: u32,
}

impl CleanedWriter {
    fn push(&mut self, h: &BatchHeader, data: &[u8]) {
        let pos = self.seg.size.get();
        self.seg.track_batch(h, self.interval);
        self.seg.note_written(h, pos);
        self.pending.extend_from_slice(data);
    }

    async fn flush(&mut self, throttle: &mut IoThrottle) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        throttle.charge(self.pending.len() as u64).await;
        let start = self.dma.align_down(self.written);
        let (tail, _) =
            io::append_aligned(&self.dma, start, &self.tail, &[&self.pending], 0).await?;
        self.tail = tail;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

impl PartitionLog {
    /// The first dirty offset persisted by the last pass (never below the log start).
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty.get().max(self.log_start_offset())
    }

    /// The cleanable segments (oldest first) and the first uncleanable offset.
    fn cleanable_segments(&self, cfg: &CompactionConfig, now_ms: i64) -> (Vec<Rc<Segment>>, i64) {
        let hw = self.hw.get();
        let active = self.active.borrow().clone();
        let lag_horizon = now_ms.saturating_sub(cfg.min_compaction_lag_ms.max(0));
        let mut out = Vec::new();
        for s in self.segments.borrow().values() {
            let young = cfg.min_compaction_lag_ms > 0 && s.max_ts.get().0 > lag_horizon;
            if Rc::ptr_eq(s, &active) || !s.finalized.get() || s.next_offset.get() > hw || young {
                return (out, s.base_offset);
            }
            out.push(s.clone());
        }
        (out, active.base_offset)
    }

    /// How dirty the log is now.
    pub fn cleanable(&self, cfg: &CompactionConfig, now_ms: i64) -> Cleanable {
        let (segs, first_uncleanable) = self.cleanable_segments(cfg, now_ms);
        let first_dirty = self.first_dirty_offset();
        let overdue_horizon = now_ms.saturating_sub(cfg.max_compaction_lag_ms.max(0));
        let mut c = Cleanable {
            first_dirty,
            first_uncleanable,
            ..Cleanable::default()
        };
        for s in &segs {
            if s.next_offset.get() <= first_dirty {
                c.clean_bytes += s.size.get();
            } else {
                c.dirty_bytes += s.size.get();
                let ts = s.max_ts.get().0;
                c.overdue |=
                    cfg.max_compaction_lag_ms != i64::MAX && ts >= 0 && ts < overdue_horizon;
            }
        }
        c
    }

    /// One cleaning pass (see the module docs). `None` when there is nothing dirty to clean or
    /// the log is closed, failed or busy. An error before a group's commit point leaves the log
    /// as it was; one after it fails the log (reopening it completes the swap).
    pub async fn clean(
        &self,
        map: &mut OffsetMap,
        cfg: &CompactionConfig,
        throttle: &mut IoThrottle,
        now_ms: i64,
    ) -> Result<Option<CleanOutcome>, StorageError> {
        let _guard = self.delete_lock.lock().await;
        if self.closed.get() || self.busy.get() || self.failed.borrow().is_some() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let (segs, first_uncleanable) = self.cleanable_segments(cfg, now_ms);
        let first_dirty = self.first_dirty_offset();
        if !segs
            .iter()
            .any(|s| s.next_offset.get() > first_dirty && s.size.get() > 0)
        {
            return Ok(None);
        }
        let mut out = CleanOutcome {
            segments_before: self.segments.borrow().len(),
            ..CleanOutcome::default()
        };

        let mut slicer = Slicer(Instant::now());
        // 1. The offset map over the dirty part.
        map.clear();
        let mut map_end = first_uncleanable;
        'build: for seg in segs.iter().filter(|s| s.next_offset.get() > first_dirty) {
            let mut reader =
                ChunkReader::new(seg.dma().await?, seg.written.get(), CLEAN_READ_CHUNK);
            let mut pos = 0u64;
            while let Some((h, whole)) = next_batch(&mut reader, seg, pos).await? {
                pos += h.size as u64;
                if h.last_offset() < first_dirty || h.is_control() {
                    continue;
                }
                throttle.charge(h.size as u64).await;
                out.bytes_read += h.size as u64;
                if map.would_overflow(h.record_count as usize) {
                    if map.is_empty() {
                        return Err(StorageError::InvalidArgument(format!(
                            "the cleaner's offset map ({} keys) cannot hold one batch of {} records: raise log.cleaner.dedupe.buffer.size",
                            map.max_entries(),
                            h.record_count
                        )));
                    }
                    map_end = h.base_offset;
                    break 'build;
                }
                let recs = Records::parse(&whole, &h).map_err(|e| corrupt(seg, pos, &e))?;
                for i in 0..recs.len() {
                    let r = recs.get(i, &h).map_err(|e| corrupt(seg, pos, &e))?;
                    if r.offset >= first_dirty
                        && let Some(k) = r.key
                    {
                        map.put(k, r.offset);
                    }
                }
                slicer.tick().await;
            }
        }
        out.complete = map_end == first_uncleanable;
        out.map_end = map_end;

        // 2. Rewrite the segments below the map end, in groups.
        let rule = Rule {
            map,
            map_end,
            tombstone_horizon: now_ms.saturating_sub(cfg.delete_retention_ms.max(0)),
        };
        let limit = self.config.borrow().segment_bytes.min(MAX_SEGMENT_BYTES);
        let to_clean: Vec<Rc<Segment>> = segs
            .into_iter()
            .filter(|s| s.base_offset < map_end)
            .collect();
        let mut groups: Vec<Vec<Rc<Segment>>> = Vec::new();
        for s in to_clean {
            let fits = groups.last().is_some_and(|g| {
                let size: u64 = g.iter().map(|x| x.size.get()).sum();
                size + s.size.get() <= limit
                    && s.next_offset.get() - g[0].base_offset <= u32::MAX as i64
            });
            if fits {
                groups.last_mut().expect("checked").push(s);
            } else {
                groups.push(vec![s]);
            }
        }
        for group in groups {
            self.clean_group(&group, &rule, throttle, &mut out).await?;
        }

        // 3. The new first dirty offset.
        self.first_dirty.set(map_end);
        io::write_file_atomic(
            &self.dir,
            CLEANER_CHECKPOINT_FILE,
            format!("{map_end}\n").as_bytes(),
        )
        .await?;
        out.segments_after = self.segments.borrow().len();
        out.elapsed = t0.elapsed();
        Ok(Some(out))
    }

    /// Rewrites one group of consecutive segments into one and swaps it in.
    async fn clean_group(
        &self,
        group: &[Rc<Segment>],
        rule: &Rule<'_>,
        throttle: &mut IoThrottle,
        out: &mut CleanOutcome,
    ) -> Result<(), StorageError> {
        let base = group[0].base_offset;
        let cleaned = self.dir.join(format!("{base:020}.log.cleaned"));
        io::remove_if_exists(&cleaned)?;
        let dma = io::open_dma(&cleaned).await?;
        #[cfg(test)]
        crate::fault::created(&cleaned);
        let read_file = std::fs::File::open(&cleaned)?;
        let mut w = CleanedWriter {
            dma,
            seg: Segment::new(&self.dir, base, None, read_file),
            pending: Vec::new(),
            written: 0,
            tail: Vec::new(),
            interval: self.config.borrow().index_interval_bytes,
        };
        let mut removed = 0u64;
        let r = self
            .filter_group(group, rule, throttle, &mut w, &mut removed, out)
            .await;
        let r = match r {
            Ok(()) => {
                async {
                    w.flush(throttle).await?;
                    w.dma.truncate(w.written).await?;
                    io::fdatasync(&w.dma).await
                }
                .await
            }
            Err(e) => Err(e),
        };
        if r.is_err() || (removed == 0 && group.len() == 1) {
            // Nothing to gain (or failed before the commit point): the old segment stays.
            let _ = w.dma.close().await;
            io::remove_if_exists(&cleaned)?;
            return r;
        }
        out.records_removed += removed;
        out.bytes_written += w.written;
        let CleanedWriter { dma, seg, .. } = w;
        seg.written.set(seg.size.get());
        seg.finalized.set(true);
        seg.set_dma(Rc::new(dma));
        let seg = Rc::new(seg);
        crash_point("cleaned segment written")?;
        if let Err(e) = self.swap_in(group, &cleaned, &seg).await {
            self.fail(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Reads the group's batches and pushes what the rule keeps into `w`.
    async fn filter_group(
        &self,
        group: &[Rc<Segment>],
        rule: &Rule<'_>,
        throttle: &mut IoThrottle,
        w: &mut CleanedWriter,
        removed: &mut u64,
        out: &mut CleanOutcome,
    ) -> Result<(), StorageError> {
        let mut keep = Vec::new();
        let mut slicer = Slicer(Instant::now());
        for seg in group {
            let mut reader =
                ChunkReader::new(seg.dma().await?, seg.written.get(), CLEAN_READ_CHUNK);
            let mut pos = 0u64;
            while let Some((h, whole)) = next_batch(&mut reader, seg, pos).await? {
                let at = pos;
                pos += h.size as u64;
                throttle.charge(h.size as u64).await;
                out.bytes_read += h.size as u64;
                if h.is_control() || h.base_offset >= rule.map_end {
                    w.push(&h, &whole);
                    continue;
                }
                let recs = Records::parse(&whole, &h).map_err(|e| corrupt(seg, at, &e))?;
                keep.clear();
                for i in 0..recs.len() {
                    let r = recs.get(i, &h).map_err(|e| corrupt(seg, at, &e))?;
                    if rule.keep(&r) {
                        keep.push(i);
                    }
                }
                *removed += (recs.len() - keep.len()) as u64;
                let data = if keep.len() == recs.len() {
                    Some(whole)
                } else if keep.is_empty() {
                    self.is_producers_last_batch(&h)
                        .then(|| compact_batch::empty_batch(&whole))
                } else {
                    Some(
                        recs.rebuild(&whole, &h, &keep)
                            .map_err(|e| corrupt(seg, at, &e))?,
                    )
                };
                if let Some(d) = data {
                    let nh = BatchHeader::parse(&d).map_err(|e| corrupt(seg, at, &e))?;
                    w.push(&nh, &d);
                    if w.pending.len() >= CLEAN_WRITE_CHUNK {
                        w.flush(throttle).await?;
                    }
                }
                slicer.tick().await;
            }
        }
        Ok(())
    }

    /// Whether `h` is the newest batch of an idempotent producer (kept, even empty, so the
    /// producer's sequence survives a restart).
    fn is_producers_last_batch(&self, h: &BatchHeader) -> bool {
        h.producer_id >= 0
            && self
                .producers
                .borrow()
                .get(h.producer_id)
                .and_then(|e| e.batches.back())
                .is_some_and(|m| m.last_offset == h.last_offset())
    }

    /// The durable swap of a cleaned segment for `group` (module docs), then the in-memory one.
    async fn swap_in(
        &self,
        group: &[Rc<Segment>],
        cleaned: &Path,
        seg: &Rc<Segment>,
    ) -> Result<(), StorageError> {
        let base = seg.base_offset;
        let swap = self.dir.join(format!("{base:020}.log.swap"));
        glommio::io::rename(cleaned, &swap)
            .await
            .map_err(|e| step(format!("rename {} -> .swap", cleaned.display()), e.into()))?;
        #[cfg(test)]
        crate::fault::renamed(cleaned, &swap);
        io::sync_dir(&self.dir).await?;
        crash_point("renamed to .swap")?;
        for old in group {
            if old.base_offset != base {
                io::remove_if_exists_off_shard(io::segment_file(&self.dir, old.base_offset, "log"))
                    .await?;
            }
            for ext in ["index", "timeindex"] {
                io::remove_if_exists_off_shard(io::segment_file(&self.dir, old.base_offset, ext))
                    .await?;
            }
        }
        io::sync_dir(&self.dir).await?;
        crash_point("old segments removed")?;
        let log_path = io::segment_file(&self.dir, base, "log");
        glommio::io::rename(&swap, &log_path)
            .await
            .map_err(|e| step(format!("rename {} -> .log", swap.display()), e.into()))?;
        #[cfg(test)]
        crate::fault::renamed(&swap, &log_path);
        io::sync_dir(&self.dir).await?;
        crash_point("swap renamed to .log")?;
        let group_end = group.last().expect("non-empty group").next_offset.get();
        {
            let mut segs = self.segments.borrow_mut();
            for old in group {
                segs.remove(&old.base_offset);
            }
            segs.insert(base, seg.clone());
        }
        self.release_cache_range(base, group_end);
        for old in group {
            if let Some(f) = old.take_dma()
                && let Ok(f) = Rc::try_unwrap(f)
            {
                let _ = f.close().await;
            }
        }
        seg.write_indexes()
            .await
            .map_err(|e| step(format!("indexes of {base}"), e))?;
        crash_point("indexes written")?;
        Ok(())
    }
}

fn corrupt(seg: &Segment, pos: u64, e: &str) -> StorageError {
    StorageError::Corrupt(format!("segment {} position {pos}: {e}", seg.base_offset))
}

/// The complete batch at `pos` (validated: CRC), or None at the segment's end.
async fn next_batch(
    reader: &mut ChunkReader,
    seg: &Segment,
    pos: u64,
) -> Result<Option<(BatchHeader, Vec<u8>)>, StorageError> {
    if pos >= reader.limit() {
        return Ok(None);
    }
    let head = reader
        .get(pos, HEADER_LEN)
        .await?
        .ok_or_else(|| corrupt(seg, pos, "short batch header"))?;
    let h = BatchHeader::parse(head).map_err(|e| corrupt(seg, pos, &e))?;
    let whole = reader
        .get(pos, h.size)
        .await?
        .ok_or_else(|| corrupt(seg, pos, "short batch"))?;
    h.validate(whole).map_err(|e| corrupt(seg, pos, &e))?;
    Ok(Some((h, whole.to_vec())))
}

/// Open-time recovery of interrupted cleans (module docs): `.cleaned` files are deleted, each
/// `.swap` file replaces the old segments inside its offset range and becomes `<base>.log`.
pub(crate) async fn recover_swaps(dir: &Path) -> Result<(), StorageError> {
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    let mut touched = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".cleaned") {
            log::info!(
                "{}: removing interrupted clean output {name}",
                dir.display()
            );
            io::remove_if_exists(&entry.path())?;
            touched = true;
        } else if let Some(stem) = name.strip_suffix(".log.swap")
            && let (20, Ok(b)) = (stem.len(), stem.parse::<i64>())
        {
            swaps.push(b);
        } else if let Some(stem) = name.strip_suffix(".log")
            && let (20, Ok(b)) = (stem.len(), stem.parse::<i64>())
        {
            logs.push(b);
        }
    }
    if touched {
        io::sync_dir(dir).await?;
    }
    swaps.sort_unstable();
    for base in swaps {
        let swap = dir.join(format!("{base:020}.log.swap"));
        let len = std::fs::metadata(&swap)?.len();
        let dma = Rc::new(io::open_dma(&swap).await?);
        let end = recovery::scan_segment(
            dma.clone(),
            0,
            len.min(MAX_SEGMENT_BYTES),
            base,
            base,
            |_, _| {},
        )
        .await;
        if let Ok(f) = Rc::try_unwrap(dma) {
            let _ = f.close().await;
        }
        let end = end?.next_offset.max(base + 1);
        log::info!(
            "{}: completing the swap of cleaned segment {base} (offsets {base}..{end})",
            dir.display()
        );
        for &old in logs.iter().filter(|&&b| b > base && b < end) {
            io::remove_if_exists(&io::segment_file(dir, old, "log"))?;
            io::remove_if_exists(&io::segment_file(dir, old, "index"))?;
            io::remove_if_exists(&io::segment_file(dir, old, "timeindex"))?;
        }
        io::remove_if_exists(&io::segment_file(dir, base, "index"))?;
        io::remove_if_exists(&io::segment_file(dir, base, "timeindex"))?;
        io::sync_dir(dir).await?;
        let log_path = io::segment_file(dir, base, "log");
        glommio::io::rename(&swap, &log_path).await?;
        #[cfg(test)]
        crate::fault::renamed(&swap, &log_path);
        io::sync_dir(dir).await?;
    }
    Ok(())
}

/// The persisted first dirty offset of the partition in `dir`, if any.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<Option<i64>, StorageError> {
    Ok(io::read_small_file(&dir.join(CLEANER_CHECKPOINT_FILE), 64)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok()))
}

/// Names the step of a swap that failed (the log then fails, and its message says where).
fn step(what: String, e: StorageError) -> StorageError {
    match e {
        StorageError::Io(io) => {
            StorageError::Io(std::io::Error::new(io.kind(), format!("{what}: {io}")))
        }
        e => e,
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn io_throttle_waits_for_what_is_over_the_rate() {
        let mut t = IoThrottle::new(1_000_000.0);
        // 500 KB at once at 1 MB/s: half a second of budget, none of it elapsed yet.
        assert_eq!(
            t.account(500_000, Duration::ZERO),
            Duration::from_millis(500)
        );
        // 0.8 s into the window, 1 MB in total is due at 1 s: 0.2 s more.
        assert_eq!(
            t.account(500_000, Duration::from_millis(800)),
            Duration::from_millis(200)
        );
        // On time: no wait.
        assert_eq!(t.account(0, Duration::from_millis(1000)), Duration::ZERO);
        // A window past a second restarts the count (idle time buys no burst).
        assert_eq!(t.account(0, Duration::from_millis(1500)), Duration::ZERO);
        assert_eq!(t.bytes, 0);
        assert_eq!(
            t.account(250_000, Duration::ZERO),
            Duration::from_millis(250)
        );
        // Unlimited (0, negative or infinite): never waits.
        for rate in [0.0, -1.0, f64::INFINITY] {
            let mut t = IoThrottle::new(rate);
            assert_eq!(t.account(u64::MAX / 2, Duration::ZERO), Duration::ZERO);
        }
    }
}
