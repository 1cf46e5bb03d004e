//! [`PartitionLog`]: one partition's log on one shard.
//!
//! Append path: validate all batches, check idempotence, then synchronously assign offsets
//! (patching baseOffset / partitionLeaderEpoch in place), advance the log end offset and
//! queue the frozen `Bytes` for writing. A per-partition flusher task (spawned on demand)
//! drains the queue: everything queued for the same segment goes out in ONE aligned DMA
//! write (rewriting the unaligned tail block), then the high watermark advances, batches go
//! into the [`TailCache`], `Written` waiters and watchers fire; if any `Synced` waiter is
//! pending one fdatasync covers all of them (group commit). Rolls are queued too, so the old
//! segment is finalised (truncated to its logical size, synced, indexes + producer snapshot
//! written) in order.

mod cleaner;
mod replica;

pub use cleaner::{CLEANER_CHECKPOINT_FILE, CleanOutcome, Cleanable, CompactionConfig, IoThrottle};

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::channel::oneshot;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::epoch::{self, EpochCache};
use crate::io::{self, ChunkReader};
use crate::producer_state::{self, BatchIdent, ProducerState, SeqCheck, SeqError};
use crate::readahead;
use crate::records;
use crate::recovery;
use crate::segment::{MAX_SEGMENT_BYTES, Segment};
use crate::tail_cache::{Slot, TailCache};
use crate::{AppendError, Appended, Durability, LogConfig, ReadChunk, ReadError, StorageError};

/// The persisted log start offset (decimal text), written when retention or DeleteRecords
/// moves it.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// Marker written by a clean close.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";
/// Upper bound on the bytes of one coalesced write (at least one batch is always taken).
const MAX_WRITE_BYTES: usize = 8 << 20;
/// Small appends are padded with this many zero bytes past their end whenever they would extend
/// the file, so that the next ones overwrite already written blocks. On ext4 (measured on the
/// dev VM) an O_DIRECT write that extends the file cannot be issued without blocking, so
/// io_uring hands it to a worker thread: ~60 us of CPU per write, a third of it in the thread
/// hop; an overwrite of written blocks goes inline at ~35 us and a third less latency. The
/// padding is cut off when the segment rolls or closes and is read back as a torn tail (zero
/// batch length) by unclean recovery; it only ever lies past the log end.
const ZERO_AHEAD_BYTES: usize = 256 << 10;
/// Writes at least this large are not padded: they are bandwidth-bound, and zero-filling ahead
/// of them would halve the disk bandwidth left for data.
const ZERO_AHEAD_MAX_WRITE: usize = 64 << 10;
/// Bound on the padding held in DMA buffers of this shard's writes in flight, so that thousands
/// of partitions extending their files at once (their first writes) cannot take 256 KiB each:
/// past it, writes go out unpadded.
pub(crate) const ZERO_AHEAD_IN_FLIGHT_MAX: usize = 32 << 20;

thread_local! {
    /// Padding bytes in DMA buffers of writes in flight on this thread (shard).
    static PADDING_IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// A share of [`ZERO_AHEAD_IN_FLIGHT_MAX`], given back when dropped (the write is done).
pub(crate) struct PaddingBudget(usize);

impl PaddingBudget {
    pub(crate) fn take(bytes: usize) -> Option<PaddingBudget> {
        PADDING_IN_FLIGHT.with(|c| {
            let used = c.get();
            (used + bytes <= ZERO_AHEAD_IN_FLIGHT_MAX).then(|| {
                c.set(used + bytes);
                PaddingBudget(bytes)
            })
        })
    }

    #[cfg(test)]
    pub(crate) fn in_flight() -> usize {
        PADDING_IN_FLIGHT.with(|c| c.get())
    }
}

impl Drop for PaddingBudget {
    fn drop(&mut self) {
        PADDING_IN_FLIGHT.with(|c| {
            assert!(c.get() >= self.0, "padding budget underflow");
            c.set(c.get() - self.0);
        });
    }
}
/// Producer-state snapshots kept (newest first).
const SNAPSHOTS_KEPT: usize = 3;
/// DMA read granularity for fetch / timestamp lookups.
const READ_CHUNK: usize = 64 << 10;

type Waiter = oneshot::Sender<Result<(), StorageError>>;

struct PendingWrite {
    segment: Rc<Segment>,
    pos: u64,
    header: BatchHeader,
    data: Bytes,
    /// Set on the last batch of an append call.
    waiter: Option<(Durability, Waiter)>,
}

struct RollOp {
    old: Rc<Segment>,
    snapshot_offset: i64,
    snapshot: Vec<u8>,
}

/// The acknowledgement of an idempotent retry whose original (ending at `last`, in `segment`)
/// was not yet durable at the requested level when the retry arrived: queued behind the
/// original, so it resolves only once the original is written (and synced, for `Synced`).
struct AckOp {
    segment: Rc<Segment>,
    last: i64,
    durability: Durability,
    tx: Waiter,
}

enum Op {
    Write(PendingWrite),
    Roll(RollOp),
    Ack(AckOp),
}

enum Work {
    Writes(Vec<PendingWrite>),
    Roll(RollOp),
    Ack(AckOp),
}

struct CachedBatch {
    slot: Rc<Slot>,
    last_offset: i64,
}

enum Plan {
    Write {
        base: i64,
        last: i64,
        ident: BatchIdent,
        track: bool,
    },
    Duplicate {
        base: i64,
        last: i64,
    },
}

/// One partition's log. `!Send`: lives on one shard, used through `Rc`.
pub struct PartitionLog {
    dir: PathBuf,
    config: RefCell<LogConfig>,
    cache: Rc<TailCache>,
    /// Log start offset: at or above the first segment's base (DeleteRecords may move it
    /// inside a segment); persisted in [`LOG_START_OFFSET_FILE`].
    start: Cell<i64>,
    me: Weak<PartitionLog>,
    segments: RefCell<BTreeMap<i64, Rc<Segment>>>,
    active: RefCell<Rc<Segment>>,
    leo: Cell<i64>,
    hw: Cell<i64>,
    /// Offsets below this are fdatasynced (acks=all durable); <= `hw`.
    synced_end: Cell<i64>,
    producers: RefCell<ProducerState>,
    epochs: RefCell<EpochCache>,
    epochs_dirty: Cell<bool>,
    queue: RefCell<VecDeque<Op>>,
    flushing: Cell<bool>,
    idle_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// acks=all waiters, each with the end of its append: resolved once `synced_end` reaches
    /// it. Ordered by end.
    sync_waiters: RefCell<VecDeque<(i64, Waiter)>>,
    /// The newest written end a waiter needs synced, and its segment (every older segment is
    /// finalised, hence synced, when a target is set): what the syncer syncs next.
    sync_target: RefCell<Option<(Rc<Segment>, i64)>>,
    /// The syncer task runs (see [`PartitionLog::run_syncer`]).
    syncing: Cell<bool>,
    syncer_done: RefCell<Vec<oneshot::Sender<()>>>,
    watchers: RefCell<Vec<oneshot::Sender<()>>>,
    cached: RefCell<BTreeMap<i64, CachedBatch>>,
    closed: Cell<bool>,
    busy: Cell<bool>,
    failed: RefCell<Option<String>>,
    /// A write found the disk full: appends are refused (`StorageError::NoSpace`) until the
    /// log is cut back to its written end (see [`PartitionLog::rewind_unwritten`]).
    rewinding: Cell<bool>,
    sync_count: Cell<u64>,
    /// Data writes issued (one per coalesced group of queued batches).
    write_count: Cell<u64>,
    /// Serialises segment deletions and replacements (retention, DeleteRecords, the cleaner,
    /// truncation); never taken by append/read.
    delete_lock: futures::lock::Mutex<()>,
    /// Offsets below this have been through the cleaner (persisted in
    /// [`CLEANER_CHECKPOINT_FILE`]).
    first_dirty: Cell<i64>,
}

/// What [`PartitionLog::enforce_retention`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    /// The active segment was rolled because all of it is past `retention.ms`.
    pub rolled: bool,
}

/// The segment bases and producer-snapshot offsets in `dir`, ascending. Reads only: a live log
/// lists its directory while `write_file_atomic`s of the flusher and the cleaner have `.tmp`
/// files in flight (removing those here failed their renames with ENOENT).
fn list_dir(dir: &Path) -> Result<(Vec<i64>, Vec<i64>), StorageError> {
    let mut bases = Vec::new();
    let mut snapshots = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log") {
            if let (20, Ok(b)) = (stem.len(), stem.parse::<i64>()) {
                bases.push(b);
            }
        } else if let Some(stem) = name.strip_suffix(".snapshot")
            && let (20, Ok(b)) = (stem.len(), stem.parse::<i64>())
        {
            snapshots.push(b);
        }
    }
    bases.sort_unstable();
    snapshots.sort_unstable();
    Ok((bases, snapshots))
}

/// Removes the `.tmp` files of atomic writes a crash interrupted (at open, before anything
/// else touches the directory).
fn remove_tmp_files(dir: &Path) -> Result<(), StorageError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            io::remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

impl PartitionLog {
    /// Opens (creating if missing) the partition directory, recovering if the last shutdown
    /// was not clean. See the crate docs for the recovery rules.
    pub async fn open(
        dir: &Path,
        config: LogConfig,
        cache: Rc<TailCache>,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        if config.index_interval_bytes == 0 || config.segment_bytes == 0 {
            return Err(StorageError::InvalidArgument(
                "segment_bytes and index_interval_bytes must be > 0".into(),
            ));
        }
        io::create_dir_all(dir).await?;
        cleaner::recover_swaps(dir).await?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        remove_tmp_files(dir)?;
        let (mut bases, _) = list_dir(dir)?;
        if bases.is_empty() {
            drop(Segment::create_sync(dir, 0)?);
            bases.push(0);
        }
        let interval = config.index_interval_bytes;
        let mut segs: Vec<Rc<Segment>> = Vec::new();
        let mut scanned_epochs: Vec<(i32, i64)> = Vec::new();
        let mut n = bases.len();
        let mut i = 0;
        while i < n {
            let base = bases[i];
            let path = io::segment_file(dir, base, "log");
            let read_file = std::fs::File::open(&path)?;
            let file_len = read_file.metadata()?.len();
            let dma = Rc::new(io::open_dma(&path).await?);
            let seg = Rc::new(Segment::new(dir, base, Some(dma.clone()), read_file));
            // A segment may end before the next one starts (the cleaner leaves gaps).
            if let Some(prev) = segs.last()
                && prev.next_offset.get() > base
            {
                return Err(StorageError::Corrupt(format!(
                    "segment {base} overlaps segment {} (ends at offset {})",
                    prev.base_offset,
                    prev.next_offset.get()
                )));
            }
            let is_last = i + 1 == n;
            let mut loaded = false;
            if (clean || !is_last)
                && file_len <= MAX_SEGMENT_BYTES
                && let Some((meta, oi, ti)) = seg.load_indexes(file_len)?
            {
                seg.install(&meta, oi, ti);
                loaded = true;
            }
            if !loaded {
                if !is_last || clean {
                    log::info!("{}: rebuilding index of segment {base}", dir.display());
                } else if file_len > 0 {
                    log::info!(
                        "{}: unclean shutdown, recovering segment {base} by scanning it",
                        dir.display()
                    );
                }
                let limit = file_len.min(MAX_SEGMENT_BYTES);
                let end = recovery::scan_segment(dma.clone(), 0, limit, base, base, |h, pos| {
                    seg.track_batch(h, interval);
                    seg.note_written(h, pos);
                    scanned_epochs.push((h.leader_epoch, h.base_offset));
                })
                .await?;
                assert_eq!(
                    end.valid_end,
                    seg.size.get(),
                    "scan end and tracked size disagree"
                );
                seg.written.set(seg.size.get());
                if !clean && end.valid_end == file_len {
                    // Recovered data may have been written but never synced before the crash;
                    // it counts as synced from now on (retries of it are answered at once).
                    io::fdatasync(&dma).await?;
                }
                if end.valid_end < file_len {
                    let padding = io::is_zero_range(
                        &seg.read_file,
                        end.valid_end,
                        file_len,
                        (ZERO_AHEAD_BYTES + ZERO_AHEAD_MAX_WRITE) as u64,
                    )
                    .unwrap_or(false);
                    if padding {
                        log::info!(
                            "{}: dropping {} bytes of zero padding after the last batch of segment {base}",
                            dir.display(),
                            file_len - end.valid_end
                        );
                    } else {
                        log::warn!(
                            "{}: truncating segment {base} from {file_len} to {} bytes (invalid or torn data)",
                            dir.display(),
                            end.valid_end
                        );
                    }
                    dma.truncate(end.valid_end).await?;
                    io::fdatasync(&dma).await?;
                    if !is_last {
                        for &later in &bases[i + 1..] {
                            log::warn!(
                                "{}: deleting segment {later} after corruption",
                                dir.display()
                            );
                            for ext in ["log", "index", "timeindex"] {
                                io::remove_if_exists(&io::segment_file(dir, later, ext))?;
                            }
                        }
                        // Durable before anything is appended after the cut: else a power
                        // cut could bring back segments that no longer follow.
                        io::sync_dir(dir).await?;
                        n = i + 1;
                    }
                }
            }
            if !loaded && i + 1 < n {
                // A complete (non-active) segment whose index was missing or stale.
                seg.write_indexes().await?;
            }
            segs.push(seg);
            i += 1;
        }
        let active = segs.last().expect("at least one segment").clone();
        active.load_tail().await?;
        let leo = active.next_offset.get();
        for s in &segs[..segs.len() - 1] {
            s.finalized.set(true);
        }

        // Log start offset: the checkpoint (if any), never below the first segment nor above
        // the log end. Segments wholly below it (a deletion interrupted by a crash) go now.
        let ckpt_start = io::read_small_file(&dir.join(LOG_START_OFFSET_FILE), 64)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<i64>().ok());
        let mut start = segs[0]
            .base_offset
            .max(ckpt_start.unwrap_or(i64::MIN))
            .min(leo);
        while segs.len() > 1 && segs[1].base_offset <= start {
            let s = segs.remove(0);
            log::info!(
                "{}: deleting segment {} below the log start offset {start}",
                dir.display(),
                s.base_offset
            );
            s.delete_files()?;
        }
        start = start.max(segs[0].base_offset);

        // Leader epochs: checkpoint, cut at LEO, completed by what the scan saw.
        let ckpt = io::read_small_file(
            &dir.join(epoch::CHECKPOINT_FILE),
            epoch::MAX_CHECKPOINT_BYTES,
        )?;
        let mut epochs = ckpt
            .as_deref()
            .and_then(EpochCache::decode)
            .unwrap_or_default();
        let mut epochs_dirty = epochs.truncate_from(leo) || ckpt.is_none();
        for (e, o) in scanned_epochs {
            if o < leo {
                epochs_dirty |= epochs.assign(e, o);
            }
        }

        let first_dirty = cleaner::read_checkpoint(dir)?
            .unwrap_or(start)
            .clamp(start, leo);
        let log = Rc::new_cyclic(|me| PartitionLog {
            dir: dir.to_path_buf(),
            config: RefCell::new(config),
            cache,
            start: Cell::new(start),
            me: me.clone(),
            segments: RefCell::new(segs.iter().map(|s| (s.base_offset, s.clone())).collect()),
            active: RefCell::new(active),
            leo: Cell::new(leo),
            hw: Cell::new(leo),
            synced_end: Cell::new(leo),
            producers: RefCell::new(ProducerState::default()),
            epochs: RefCell::new(epochs),
            epochs_dirty: Cell::new(false),
            queue: RefCell::new(VecDeque::new()),
            flushing: Cell::new(false),
            idle_waiters: RefCell::new(Vec::new()),
            sync_waiters: RefCell::new(VecDeque::new()),
            sync_target: RefCell::new(None),
            syncing: Cell::new(false),
            syncer_done: RefCell::new(Vec::new()),
            watchers: RefCell::new(Vec::new()),
            cached: RefCell::new(BTreeMap::new()),
            closed: Cell::new(false),
            busy: Cell::new(false),
            failed: RefCell::new(None),
            rewinding: Cell::new(false),
            sync_count: Cell::new(0),
            write_count: Cell::new(0),
            delete_lock: futures::lock::Mutex::new(()),
            first_dirty: Cell::new(first_dirty),
        });
        log.rebuild_producers(leo).await?;
        if epochs_dirty {
            log.write_epochs().await?;
        }
        if clean {
            io::remove_if_exists(&marker)?;
        }
        // Makes every entry of the directory durable: a segment created above, deletions of
        // the recovery, and after an unclean shutdown segments created before it (whose
        // entries may never have been synced).
        io::sync_dir(dir).await?;
        Ok(log)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.start.get()
    }

    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.leo.get()
    }

    /// Offsets below this are visible to readers (advances when writes complete).
    pub fn high_watermark(&self) -> i64 {
        self.hw.get()
    }

    /// Bytes in all segments (logical sizes, including queued appends).
    pub fn size_bytes(&self) -> u64 {
        self.segments.borrow().values().map(|s| s.size.get()).sum()
    }

    /// Number of data fdatasyncs issued so far (group-commit observability and tests).
    pub fn sync_count(&self) -> u64 {
        self.sync_count.get()
    }

    /// Number of data writes issued so far: batches queued while a write is in flight share the
    /// next one (coalescing observability and tests).
    pub fn write_count(&self) -> u64 {
        self.write_count.get()
    }

    /// Leader-epoch cache entries (epoch, start offset), oldest first.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.epochs.borrow().entries()
    }

    /// Producers tracked for idempotence.
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().producer_count()
    }

    /// Index entries (offset index, time index) over all segments (observability, tests).
    pub fn index_entries(&self) -> (usize, usize) {
        let segs = self.segments.borrow();
        (
            segs.values()
                .map(|s| s.offset_index.borrow().entry_count())
                .sum(),
            segs.values()
                .map(|s| s.time_index.borrow().entry_count())
                .sum(),
        )
    }

    /// Number of segments.
    /// Whether the log is cutting back writes that found the disk full (appends are refused
    /// with [`StorageError::NoSpace`] meanwhile; reads go on).
    pub fn rewinding(&self) -> bool {
        self.rewinding.get()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends the records field of one partition of a Produce request (one or more
    /// RecordBatch v2). All validation happens before anything is written; offsets are
    /// assigned synchronously; writes happen in call order.
    pub fn append(
        &self,
        mut records: BytesMut,
        leader_epoch: i32,
        durability: Durability,
    ) -> Result<Appended, AppendError> {
        if self.closed.get() {
            return Err(AppendError::Closed);
        }
        self.refuse_while_rewinding()?;
        if self.busy.get() {
            return Err(AppendError::Io(StorageError::Busy));
        }
        if let Some(f) = self.failed.borrow().as_ref() {
            return Err(AppendError::Io(StorageError::Failed(f.clone())));
        }
        // 1. Validate every batch.
        let mut headers = Vec::new();
        let mut at = 0usize;
        while at < records.len() {
            let rest = &records[at..];
            let h = BatchHeader::parse(rest).map_err(AppendError::CorruptMessage)?;
            if h.size > rest.len() {
                return Err(AppendError::CorruptMessage(format!(
                    "batchLength {} exceeds the {} bytes left",
                    h.size - batch::LOG_OVERHEAD,
                    rest.len() - batch::LOG_OVERHEAD
                )));
            }
            if h.size > self.config.borrow().max_batch_bytes {
                return Err(AppendError::MessageTooLarge);
            }
            h.validate(&rest[..h.size])
                .map_err(AppendError::CorruptMessage)?;
            let (max_decompressed, keys_required) = {
                let c = self.config.borrow();
                (c.max_decompressed_batch_bytes, c.keys_required)
            };
            records::validate_records(&rest[..h.size], &h, max_decompressed, keys_required)
                .map_err(|e| match e {
                    records::RecordsError::Corrupt(m) => AppendError::CorruptMessage(m),
                    records::RecordsError::Invalid(m) => AppendError::InvalidRecord(m),
                    records::RecordsError::NullKeys(record_indexes) => AppendError::NullKeys {
                        message: format!(
                            "Compacted topic cannot accept message without key in topic partition {}.",
                            self.dir
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        ),
                        record_indexes,
                    },
                })?;
            headers.push(h);
            at += h.size;
        }
        if headers.is_empty() {
            return Err(AppendError::CorruptMessage("no record batch".into()));
        }
        // 2. Idempotence, against a staged overlay so a failure leaves no trace.
        let mut plans = Vec::with_capacity(headers.len());
        {
            let producers = self.producers.borrow();
            let mut staged = HashMap::new();
            let mut next = self.leo.get();
            for h in &headers {
                let ident = BatchIdent {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    first_seq: h.base_sequence,
                    last_seq: h.last_sequence(),
                };
                match producers.check(&staged, &ident) {
                    Ok(SeqCheck::Accept { track }) => {
                        let (base, last) = (next, next + h.last_offset_delta as i64);
                        next = last + 1;
                        if track {
                            let existing = producers.get(ident.producer_id);
                            ProducerState::apply_to(&mut staged, existing, &ident, base, last);
                        }
                        plans.push(Plan::Write {
                            base,
                            last,
                            ident,
                            track,
                        });
                    }
                    Ok(SeqCheck::Duplicate {
                        base_offset,
                        last_offset,
                    }) => plans.push(Plan::Duplicate {
                        base: base_offset,
                        last: last_offset,
                    }),
                    Err(SeqError::OutOfOrder) => return Err(AppendError::OutOfOrderSequence),
                    Err(SeqError::InvalidEpoch) => return Err(AppendError::InvalidProducerEpoch),
                }
            }
        }
        let span = |p: &Plan| match *p {
            Plan::Write { base, last, .. } | Plan::Duplicate { base, last } => (base, last),
        };
        let base_offset = plans.iter().map(|p| span(p).0).min().expect("non-empty");
        let last_offset = plans.iter().map(|p| span(p).1).max().expect("non-empty");
        let Some(last_write) = plans.iter().rposition(|p| matches!(p, Plan::Write { .. })) else {
            // Only retries: answered once their originals are durable at the requested level
            // (a request with a new batch too is answered after it, hence after them).
            return Ok(Appended {
                base_offset,
                last_offset,
                duplicate: true,
                done: self.ack_retry(last_offset, durability),
            });
        };
        // 3. Apply synchronously.
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        for (i, (h, plan)) in headers.into_iter().zip(plans).enumerate() {
            let mut part = records.split_to(h.size);
            let Plan::Write {
                base,
                last,
                ident,
                track,
            } = plan
            else {
                continue;
            };
            batch::patch(&mut part, base, leader_epoch);
            let header = BatchHeader {
                base_offset: base,
                leader_epoch,
                ..h
            };
            let mut seg = self.active.borrow().clone();
            let (segment_ms, segment_bytes, interval) = {
                let c = self.config.borrow();
                (c.segment_ms, c.segment_bytes, c.index_interval_bytes)
            };
            let too_old = segment_ms != u64::MAX
                && seg.size.get() > 0
                && seg.created.elapsed().as_millis() >= segment_ms as u128;
            if too_old || !seg.fits(h.size as u64, last, segment_bytes) {
                if let Err(e) = self.roll(base) {
                    return Err(self.roll_failed(e, i == 0));
                }
                seg = self.active.borrow().clone();
            }
            let pos = seg.size.get();
            seg.track_batch(&header, interval);
            self.leo.set(last + 1);
            if track {
                self.producers.borrow_mut().update(&ident, base, last);
            }
            if self.epochs.borrow_mut().assign(leader_epoch, base) {
                self.epochs_dirty.set(true);
            }
            let waiter = if i == last_write {
                tx.take().map(|t| (durability, t))
            } else {
                None
            };
            self.queue.borrow_mut().push_back(Op::Write(PendingWrite {
                segment: seg,
                pos,
                header,
                data: part.freeze(),
                waiter,
            }));
        }
        self.kick_flusher();
        Ok(Appended {
            base_offset,
            last_offset,
            duplicate: false,
            done: rx
                .map(|r| r.unwrap_or(Err(StorageError::Closed)))
                .boxed_local(),
        })
    }

    /// Refuses an append while the log is being cut back after a full disk.
    pub(crate) fn refuse_while_rewinding(&self) -> Result<(), AppendError> {
        if self.rewinding.get() {
            return Err(AppendError::Io(StorageError::NoSpace(
                "the log is cutting back writes that found the disk full".into(),
            )));
        }
        Ok(())
    }

    /// A roll could not create the new segment. Out of space at the first batch of an append
    /// call, nothing was applied yet: the append is refused and the log stays as it was. Any
    /// other case fails the log (batches of this call are applied already).
    pub(crate) fn roll_failed(&self, e: StorageError, first_batch: bool) -> AppendError {
        if first_batch && e.is_no_space() {
            log::warn!("{}: cannot roll a segment: {e}", self.dir.display());
            return AppendError::Io(StorageError::NoSpace(e.to_string()));
        }
        let err = e.to_failed();
        self.fail(&e);
        AppendError::Io(err)
    }

    /// The acknowledgement of retries whose originals end at `last`: at once if they are
    /// durable at `durability` already, else queued behind them (see [`AckOp`]).
    fn ack_retry(
        &self,
        last: i64,
        durability: Durability,
    ) -> futures::future::LocalBoxFuture<'static, Result<(), StorageError>> {
        let durable = match durability {
            Durability::Written => self.hw.get(),
            Durability::Synced => self.synced_end.get(),
        };
        if last < durable {
            return futures::future::ready(Ok(())).boxed_local();
        }
        assert!(last < self.leo.get(), "a retry's original is in the log");
        let segment = self
            .segment_for(last)
            .expect("an offset below the log end has a segment");
        let (tx, rx) = oneshot::channel();
        self.queue.borrow_mut().push_back(Op::Ack(AckOp {
            segment,
            last,
            durability,
            tx,
        }));
        self.kick_flusher();
        rx.map(|r| r.unwrap_or(Err(StorageError::Closed)))
            .boxed_local()
    }

    /// Resolves a queued retry acknowledgement: everything queued before it is done, so its
    /// original is written (or the log failed); for `Synced` it may still need a sync.
    fn resolve_ack(&self, op: AckOp) {
        if let Some(f) = self.failed.borrow().clone() {
            let _ = op.tx.send(Err(StorageError::Failed(f)));
            return;
        }
        if op.last >= self.hw.get() {
            let _ = op.tx.send(Err(StorageError::Failed(format!(
                "offset {} is no longer in the log",
                op.last
            ))));
            return;
        }
        if op.durability == Durability::Written || op.last < self.synced_end.get() {
            let _ = op.tx.send(Ok(()));
            return;
        }
        // Not synced yet: its segment is the active one or one whose roll (and sync) is still
        // queued behind this (every older segment is finalised: the flusher waited for it);
        // the syncer syncs it (it is fully written up to the high watermark).
        self.push_sync_waiter(op.last + 1, op.tx);
        let end = self.hw.get().min(op.segment.next_offset.get());
        self.want_sync(op.segment, end);
    }

    /// fdatasync of a segment's data, preceded (once per new segment) by an fsync of the
    /// directory so that the segment's entry is durable too.
    async fn sync_segment(
        &self,
        seg: &Segment,
        dma: &glommio::io::DmaFile,
    ) -> Result<(), StorageError> {
        if !seg.entry_synced.get() {
            io::sync_dir(&self.dir).await?;
            seg.entry_synced.set(true);
        }
        io::fdatasync(dma).await
    }

    /// Offsets below `end` are synced (everything before them was synced first: segments are
    /// finalised in order).
    fn note_synced(&self, end: i64) {
        assert!(end <= self.hw.get(), "synced beyond the high watermark");
        if end > self.synced_end.get() {
            self.synced_end.set(end);
        }
    }

    /// Starts a new active segment at `base` (synchronously creating its file) and queues the
    /// finalisation of the old one.
    fn roll(&self, base: i64) -> Result<(), StorageError> {
        let seg = Rc::new(Segment::create_sync(&self.dir, base)?);
        let old = self.active.replace(seg.clone());
        assert!(base > old.base_offset, "roll must move forward");
        self.segments.borrow_mut().insert(base, seg);
        let snapshot = self.producers.borrow().to_snapshot(base);
        self.queue.borrow_mut().push_back(Op::Roll(RollOp {
            old,
            snapshot_offset: base,
            snapshot,
        }));
        Ok(())
    }

    fn kick_flusher(&self) {
        if self.flushing.get() || self.queue.borrow().is_empty() {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        self.flushing.set(true);
        glommio::spawn_local(async move { me.run_flusher().await }).detach();
    }

    /// Drains the queue. A rolled segment is finalised (truncate, sync, indexes, snapshot: several
    /// syncs) in a task of its own while writes to the new active segment go on, so acks=1
    /// producers do not wait for it; anything that syncs (an acks=all write, a queued ack) or
    /// the next roll first waits for it, so segments are still synced in order and
    /// `synced_end` never passes an unsynced segment. The flusher is idle only once it is done.
    /// An acks=all write does not wait for its fdatasync here: it hands the written end to the
    /// syncer ([`PartitionLog::want_sync`]) and the next writes go on meanwhile.
    async fn run_flusher(self: Rc<Self>) {
        let mut finishing: Option<glommio::Task<()>> = None;
        loop {
            while let Some(work) = self.next_work() {
                match work {
                    Work::Roll(r) => {
                        if let Some(prev) = finishing.take() {
                            prev.await;
                        }
                        let me = self.clone();
                        finishing = Some(glommio::spawn_local(async move {
                            if let Err(e) = me.finish_segment(r).await {
                                me.fail(&e);
                            }
                        }));
                    }
                    Work::Writes(ws) => {
                        let syncs = ws
                            .iter()
                            .any(|w| matches!(w.waiter, Some((Durability::Synced, _))));
                        if syncs && let Some(prev) = finishing.take() {
                            prev.await;
                        }
                        self.write_batches(ws).await
                    }
                    Work::Ack(a) => {
                        if let Some(prev) = finishing.take() {
                            prev.await;
                        }
                        self.resolve_ack(a)
                    }
                }
            }
            match finishing.take() {
                Some(prev) => prev.await,
                None => break,
            }
        }
        self.flushing.set(false);
        for tx in self.idle_waiters.take() {
            let _ = tx.send(());
        }
    }

    fn next_work(&self) -> Option<Work> {
        let mut q = self.queue.borrow_mut();
        match q.front() {
            Some(Op::Roll(_)) => {
                let Some(Op::Roll(r)) = q.pop_front() else {
                    unreachable!()
                };
                return Some(Work::Roll(r));
            }
            Some(Op::Ack(_)) => {
                let Some(Op::Ack(a)) = q.pop_front() else {
                    unreachable!()
                };
                return Some(Work::Ack(a));
            }
            _ => {}
        }
        let mut ws: Vec<PendingWrite> = Vec::new();
        let mut bytes = 0usize;
        while let Some(Op::Write(w)) = q.front() {
            if let Some(first) = ws.first()
                && (!Rc::ptr_eq(&first.segment, &w.segment)
                    || bytes + w.data.len() > MAX_WRITE_BYTES)
            {
                break;
            }
            bytes += w.data.len();
            let Some(Op::Write(w)) = q.pop_front() else {
                unreachable!()
            };
            ws.push(w);
        }
        (!ws.is_empty()).then_some(Work::Writes(ws))
    }

    async fn write_batches(&self, ws: Vec<PendingWrite>) {
        if let Some(f) = self.failed.borrow().clone() {
            for w in ws {
                if let Some((_, tx)) = w.waiter {
                    let _ = tx.send(Err(StorageError::Failed(f.clone())));
                }
            }
            return;
        }
        let seg = ws[0].segment.clone();
        let written = seg.written.get();
        assert_eq!(ws[0].pos, written, "writes must be contiguous");
        let res: Result<Vec<u8>, StorageError> = async {
            let dma = seg.dma().await?;
            let start = dma.align_down(written);
            let tail = seg.tail.borrow().clone();
            let slices: Vec<&[u8]> = ws.iter().map(|w| &w.data[..]).collect();
            let data_len: usize = slices.iter().map(|s| s.len()).sum();
            let end = written + data_len as u64;
            let padding = (data_len < ZERO_AHEAD_MAX_WRITE && end > seg.zeroed.get())
                .then(|| PaddingBudget::take(ZERO_AHEAD_BYTES))
                .flatten();
            let min_len = match padding {
                Some(_) => (end - start) as usize + ZERO_AHEAD_BYTES,
                None => 0,
            };
            self.write_count.set(self.write_count.get() + 1);
            let t = std::time::Instant::now();
            let (new_tail, len) = io::append_aligned(&dma, start, &tail, &slices, min_len).await?;
            crate::stats::record_write(t.elapsed());
            drop(padding);
            seg.zeroed.set(seg.zeroed.get().max(start + len as u64));
            Ok(new_tail)
        }
        .await;
        let new_tail = match res {
            Ok(x) => x,
            Err(e) if e.is_no_space() => {
                self.rewind_unwritten(&e, ws);
                return;
            }
            Err(e) => {
                for w in ws {
                    if let Some((_, tx)) = w.waiter {
                        let _ = tx.send(Err(e.to_failed()));
                    }
                }
                self.fail(&e);
                return;
            }
        };
        *seg.tail.borrow_mut() = new_tail;
        let mut hw = self.hw.get();
        for w in ws {
            assert_eq!(w.pos, seg.written.get());
            seg.written.set(w.pos + w.data.len() as u64);
            seg.note_written(&w.header, w.pos);
            hw = w.header.last_offset() + 1;
            self.cache_insert(&w.header, w.data);
            match w.waiter {
                Some((Durability::Written, tx)) => {
                    let _ = tx.send(Ok(()));
                }
                Some((Durability::Synced, tx)) => {
                    self.push_sync_waiter(w.header.last_offset() + 1, tx)
                }
                None => {}
            }
        }
        self.advance_hw(hw);
        if self.epochs_dirty.replace(false)
            && let Err(e) = self.write_epochs().await
        {
            log::warn!(
                "{}: writing leader-epoch-checkpoint failed: {e}",
                self.dir.display()
            );
            self.epochs_dirty.set(true);
        }
        if self
            .sync_waiters
            .borrow()
            .back()
            .is_some_and(|&(end, _)| end > self.synced_end.get())
        {
            self.want_sync(seg, hw);
        }
    }

    fn push_sync_waiter(&self, end: i64, tx: Waiter) {
        let mut w = self.sync_waiters.borrow_mut();
        let at = w.partition_point(|&(e, _)| e <= end);
        w.insert(at, (end, tx));
    }

    /// Asks for offsets below `end` (written, in `seg`) to be synced: the syncer task syncs
    /// the newest such target while the flusher goes on writing (group commit: one fdatasync
    /// covers every write completed before it starts, and counts for the end noted then).
    fn want_sync(&self, seg: Rc<Segment>, end: i64) {
        {
            let mut t = self.sync_target.borrow_mut();
            if t.as_ref().is_none_or(|(_, e)| end > *e) {
                *t = Some((seg, end));
            }
        }
        if self.syncing.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            self.syncing.set(false);
            return;
        };
        glommio::spawn_local(async move { me.run_syncer().await }).detach();
    }

    /// Syncs targets until none is left. A target is valid on its own: it was set after every
    /// older segment's finalisation (which syncs it) completed, so `synced_end` never passes
    /// an unsynced segment.
    async fn run_syncer(self: Rc<Self>) {
        loop {
            let Some((seg, end)) = self.sync_target.borrow_mut().take() else {
                break;
            };
            // A failed log answers its waiters with the failure; a covered target needs no sync.
            if self.failed.borrow().is_some() || end <= self.synced_end.get() {
                self.resolve_syncs(Ok(()));
                continue;
            }
            let t = std::time::Instant::now();
            let r = async {
                let dma = seg.dma().await?;
                self.sync_segment(&seg, &dma).await
            }
            .await;
            crate::stats::record_fsync(t.elapsed());
            self.sync_count.set(self.sync_count.get() + 1);
            if r.is_ok() && end <= self.hw.get() {
                self.note_synced(end);
            }
            self.resolve_syncs(r);
        }
        self.syncing.set(false);
        for tx in self.syncer_done.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until the syncer has nothing left to sync.
    async fn wait_syncer(&self) {
        if !self.syncing.get() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.syncer_done.borrow_mut().push(tx);
        let _ = rx.await;
    }

    /// A data write found the disk full. Nothing from this write on was acknowledged (writes
    /// complete, and are acknowledged, in offset order), so its waiters and everything queued
    /// behind it fail with [`StorageError::NoSpace`] and appends are refused while a task cuts
    /// the log back to its written end (`hw`): the in-memory state (log end, segments,
    /// indexes, producer state, leader epochs) forgets the unwritten batches and the file is
    /// truncated to the written size, which removes whatever part of a torn write reached it.
    /// Then the log accepts appends again. Only a failure of that cut fails the log.
    fn rewind_unwritten(&self, e: &StorageError, ws: Vec<PendingWrite>) {
        let msg = e.to_string();
        log::warn!(
            "{}: disk full at offset {}: {msg}; cutting the log back to its written end",
            self.dir.display(),
            self.hw.get()
        );
        self.rewinding.set(true);
        let offset = ws[0].header.base_offset;
        let pos = ws[0].pos;
        let no_space = || StorageError::NoSpace(msg.clone());
        for w in ws {
            if let Some((_, tx)) = w.waiter {
                let _ = tx.send(Err(no_space()));
            }
        }
        let queued: Vec<Op> = self.queue.borrow_mut().drain(..).collect();
        for op in queued {
            match op {
                Op::Write(PendingWrite { waiter, .. }) => {
                    if let Some((_, tx)) = waiter {
                        let _ = tx.send(Err(no_space()));
                    }
                }
                Op::Ack(AckOp { tx, .. }) => {
                    let _ = tx.send(Err(no_space()));
                }
                // Rolls queued behind an unwritten batch: their old segment is not fully
                // written, so the cut makes the segment holding `offset` active again.
                Op::Roll(_) => {}
            }
        }
        debug_assert_eq!(offset, self.hw.get(), "writes complete in offset order");
        let Some(me) = self.me.upgrade() else { return };
        glommio::spawn_local(async move {
            let r = me.cut_unwritten(offset, pos).await;
            me.rewinding.set(false);
            match r {
                Ok(()) => log::info!(
                    "{}: cut back to offset {offset} after a full disk; accepting appends",
                    me.dir.display()
                ),
                Err(e) => me.fail(&e),
            }
        })
        .detach();
    }

    /// The cut of [`PartitionLog::rewind_unwritten`]: the log end goes back to `offset`, the
    /// written end of its segment, whose file position is `pos`.
    async fn cut_unwritten(&self, offset: i64, pos: u64) -> Result<(), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let _guard = self.delete_lock.lock().await;
        if self.busy.replace(true) {
            return Err(StorageError::Busy);
        }
        self.wait_idle().await;
        // A truncation that ran first may have cut below `offset` already.
        let r = if self.leo.get() > offset && self.hw.get() == offset {
            self.truncate_inner(offset, Some(pos)).await
        } else {
            Ok(())
        };
        self.busy.set(false);
        r
    }

    /// After a sync: on success the waiters `synced_end` covers are answered (a failed log
    /// answers the rest with its failure); a failed fdatasync fails the log and every waiter.
    fn resolve_syncs(&self, r: Result<(), StorageError>) {
        match r {
            Ok(()) => {
                let synced = self.synced_end.get();
                let failed = self.failed.borrow().clone();
                let mut w = self.sync_waiters.borrow_mut();
                while let Some(&(end, _)) = w.front() {
                    if end > synced && failed.is_none() {
                        break;
                    }
                    let (_, tx) = w.pop_front().expect("front exists");
                    let _ = tx.send(match &failed {
                        Some(f) if end > synced => Err(StorageError::Failed(f.clone())),
                        _ => Ok(()),
                    });
                }
            }
            Err(e) => {
                for (_, tx) in self.sync_waiters.take() {
                    let _ = tx.send(Err(e.to_failed()));
                }
                self.fail(&e);
            }
        }
    }

    fn advance_hw(&self, hw: i64) {
        assert!(hw <= self.leo.get(), "high watermark beyond log end");
        if hw > self.hw.get() {
            self.hw.set(hw);
            for tx in self.watchers.take() {
                let _ = tx.send(());
            }
        }
    }

    /// Finalises a segment that is no longer active: truncate to its logical size, sync,
    /// write its indexes and the producer-state snapshot taken at the roll.
    async fn finish_segment(&self, r: RollOp) -> Result<(), StorageError> {
        if let Some(f) = self.failed.borrow().clone() {
            return Err(StorageError::Failed(f));
        }
        let old = r.old;
        assert_eq!(
            old.written.get(),
            old.size.get(),
            "rolled segment not fully written"
        );
        let dma = old.dma().await?;
        dma.truncate(old.size.get()).await?;
        let t = std::time::Instant::now();
        let synced = self.sync_segment(&old, &dma).await;
        crate::stats::record_fsync(t.elapsed());
        self.sync_count.set(self.sync_count.get() + 1);
        let failed = synced.is_err();
        if !failed {
            self.note_synced(old.next_offset.get());
        }
        self.resolve_syncs(synced);
        if failed {
            return Err(StorageError::Failed(
                "fdatasync failed at segment roll".into(),
            ));
        }
        old.tail.borrow_mut().clear();
        // Indexes and snapshots are rebuilt at open when missing, so a full disk here costs a
        // rebuild after a restart, not the log.
        let r = match old.write_indexes().await {
            Ok(()) => self.write_snapshot(r.snapshot_offset, &r.snapshot).await,
            Err(e) => Err(e),
        };
        old.finalized.set(true);
        match r {
            Err(e) if e.is_no_space() => {
                log::warn!(
                    "{}: segment {} finalised without its indexes or snapshot: {e}",
                    self.dir.display(),
                    old.base_offset
                );
                Ok(())
            }
            r => r,
        }
    }

    async fn write_snapshot(&self, offset: i64, data: &[u8]) -> Result<(), StorageError> {
        io::write_file_atomic(&self.dir, &format!("{offset:020}.snapshot"), data).await?;
        let (_, snaps) = list_dir(&self.dir)?;
        if snaps.len() > SNAPSHOTS_KEPT {
            for &s in &snaps[..snaps.len() - SNAPSHOTS_KEPT] {
                io::remove_if_exists(&io::segment_file(&self.dir, s, "snapshot"))?;
            }
        }
        Ok(())
    }

    async fn write_epochs(&self) -> Result<(), StorageError> {
        let data = self.epochs.borrow().encode();
        io::write_file_atomic(&self.dir, epoch::CHECKPOINT_FILE, &data).await
    }

    /// Puts the log in the failed state and fails everything queued.
    fn fail(&self, e: &StorageError) {
        let msg = match e {
            StorageError::Failed(s) => s.clone(),
            other => other.to_string(),
        };
        log::error!("{}: log failed: {msg}", self.dir.display());
        self.failed.borrow_mut().get_or_insert(msg.clone());
        let queued: Vec<Op> = self.queue.borrow_mut().drain(..).collect();
        for op in queued {
            let tx = match op {
                Op::Write(PendingWrite {
                    waiter: Some((_, tx)),
                    ..
                }) => tx,
                Op::Ack(AckOp { tx, .. }) => tx,
                _ => continue,
            };
            let _ = tx.send(Err(StorageError::Failed(msg.clone())));
        }
        for (_, tx) in self.sync_waiters.take() {
            let _ = tx.send(Err(StorageError::Failed(msg.clone())));
        }
    }

    fn cache_insert(&self, h: &BatchHeader, data: Bytes) {
        let slot = self.cache.insert(data);
        let mut cached = self.cached.borrow_mut();
        while let Some(e) = cached.first_entry() {
            if e.get().slot.get().is_some() {
                break;
            }
            e.remove();
        }
        cached.insert(
            h.base_offset,
            CachedBatch {
                slot,
                last_offset: h.last_offset(),
            },
        );
    }

    fn release_cache_from(&self, offset: i64) {
        let mut cached = self.cached.borrow_mut();
        let dropped = cached.split_off(&offset);
        for e in dropped.values() {
            self.cache.release(&e.slot);
        }
    }

    /// Resolves (`Ok(())`) at the next high-watermark advance; `Err(Canceled)` when the log is
    /// closed, removed or dropped. Register before checking for data (no await in between)
    /// to not miss an advance.
    pub fn watch(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.closed.get() {
            return rx; // tx dropped: resolves Canceled at once
        }
        let mut w = self.watchers.borrow_mut();
        if w.len() >= 64 {
            w.retain(|s| !s.is_canceled());
        }
        w.push(tx);
        rx
    }

    fn segment_for(&self, offset: i64) -> Option<Rc<Segment>> {
        self.segments
            .borrow()
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s.clone())
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (the first batch is
    /// always whole, KIP-74). Only offsets below the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<ReadChunk>, ReadError> {
        let hw = self.hw.get();
        let start = self.log_start_offset();
        if offset < start || offset > hw {
            return Err(ReadError::OffsetOutOfRange {
                log_start_offset: start,
                high_watermark: hw,
            });
        }
        if offset == hw {
            return Ok(Vec::new());
        }
        if let Some(chunks) = self.read_cached(offset, max_bytes, hw) {
            return Ok(chunks);
        }
        let mut seg = self
            .segment_for(offset)
            .expect("offset >= log start has a segment");
        // Fast path: the batch headers are in the page cache (the readahead of the previous
        // cold fetch brought them in): no disk read before the sendfile.
        if offset >= seg.base_offset {
            let limit = seg.written.get();
            let ipos = seg.offset_index.borrow().lookup(seg.rel(offset)).1 as u64;
            if let Some((pos, h)) =
                readahead::find_batch_cached(&seg.read_file, ipos, offset, limit)
            {
                return Ok(self
                    .admit(self.file_range(&seg, pos, &h, limit, max_bytes))
                    .await);
            }
        }
        // A cleaned segment may end (or be empty) before the next begins: the first batch at
        // or after `offset` may be in a later segment.
        let (seg, reader, pos, h) = loop {
            let limit = seg.written.get();
            let ipos = if offset >= seg.base_offset {
                seg.offset_index.borrow().lookup(seg.rel(offset)).1
            } else {
                0
            };
            let dma = seg.dma().await?;
            let mut reader = ChunkReader::new(dma, limit, READ_CHUNK);
            if let Some((pos, h)) = recovery::find_batch(&mut reader, ipos as u64, offset).await? {
                break (seg, reader, pos, h);
            }
            let next = self
                .segments
                .borrow()
                .range(seg.base_offset + 1..)
                .next()
                .map(|(_, s)| s.clone());
            match next {
                Some(n) if n.base_offset < hw => seg = n,
                _ => return Ok(Vec::new()),
            }
        };
        Ok(self
            .admit(self.file_range(&seg, pos, &h, reader.limit(), max_bytes))
            .await)
    }

    /// Waits until the cold read `chunks` fits the shard's cold-read bandwidth bound.
    async fn admit(&self, chunks: Vec<ReadChunk>) -> Vec<ReadChunk> {
        let rate = self.config.borrow().cold_read_bytes_per_sec;
        let bytes = chunks.iter().map(ReadChunk::len).sum();
        crate::cold_budget::admit(bytes, rate).await;
        chunks
    }

    /// The file range of a cold read from the batch at `pos` (header `h`) of `seg`, below
    /// `limit`: the first batch whole (KIP-74), then up to `max_bytes`. Starts the readahead
    /// beyond it.
    fn file_range(
        &self,
        seg: &Segment,
        pos: u64,
        h: &BatchHeader,
        limit: u64,
        max_bytes: usize,
    ) -> Vec<ReadChunk> {
        let avail = limit - pos;
        let len = (h.size as u64)
            .max((max_bytes as u64).min(avail))
            .min(avail);
        let (ahead, cap) = {
            let c = self.config.borrow();
            (c.readahead_bytes, c.readahead_inflight_bytes)
        };
        if let Some((start, n)) = seg.readahead.next_range(pos, len, ahead, limit) {
            let advised = readahead::advise_willneed(seg.read_file.clone(), start, n, cap);
            seg.readahead.retract_to(start + advised);
        }
        vec![ReadChunk::File {
            file: seg.read_file.clone(),
            offset: pos,
            len,
        }]
    }

    fn read_cached(&self, offset: i64, max_bytes: usize, hw: i64) -> Option<Vec<ReadChunk>> {
        let cached = self.cached.borrow();
        let (&first_base, first) = cached.range(..=offset).next_back()?;
        if first.last_offset < offset {
            return None;
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut expect = first_base;
        for (&base, e) in cached.range(first_base..) {
            if base >= hw || base != expect {
                break;
            }
            let Some(b) = e.slot.get() else { break };
            if !out.is_empty() && total + b.len() > max_bytes {
                break;
            }
            total += b.len();
            expect = e.last_offset + 1;
            out.push(ReadChunk::Memory(b));
        }
        (!out.is_empty()).then_some(out)
    }

    /// Reads the complete batch at `pos` of `seg` (below `limit`).
    async fn read_batch_at(
        seg: &Segment,
        pos: u64,
        limit: u64,
    ) -> Result<(BatchHeader, Vec<u8>), StorageError> {
        let dma = seg.dma().await?;
        let mut reader = ChunkReader::new(dma, limit, READ_CHUNK);
        let corrupt = |what: &str| {
            StorageError::Corrupt(format!(
                "segment {} position {pos}: {what}",
                seg.base_offset
            ))
        };
        let head = reader
            .get(pos, HEADER_LEN)
            .await?
            .ok_or_else(|| corrupt("short header"))?;
        let h = BatchHeader::parse(head).map_err(|e| corrupt(&e))?;
        let whole = reader
            .get(pos, h.size)
            .await?
            .ok_or_else(|| corrupt("short batch"))?;
        Ok((h, whole.to_vec()))
    }

    /// (offset, timestamp) of the first record whose timestamp >= `ts`, below the high
    /// watermark; None if none.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let segs: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        for seg in segs {
            if seg.max_ts.get().0 < ts {
                continue;
            }
            let limit = seg.written.get();
            let rel = seg.time_index.borrow().lookup(ts);
            let start_off = seg.base_offset + rel as i64;
            let (_, ipos) = seg.offset_index.borrow().lookup(rel);
            let dma = seg.dma().await?;
            let mut reader = ChunkReader::new(dma, limit, READ_CHUNK);
            let mut pos = ipos as u64;
            while pos < limit {
                let corrupt = |e: String| {
                    StorageError::Corrupt(format!(
                        "segment {} position {pos}: {e}",
                        seg.base_offset
                    ))
                };
                let Some(head) = reader.get(pos, HEADER_LEN).await? else {
                    break;
                };
                let h = BatchHeader::parse(head).map_err(corrupt)?;
                if h.last_offset() >= start_off && h.max_timestamp >= ts {
                    let Some(whole) = reader.get(pos, h.size).await? else {
                        break;
                    };
                    let found = batch::find_record(whole, &h, |o, t| o >= start_off && t >= ts)
                        .map_err(corrupt)?;
                    if let Some((o, t)) = found {
                        return Ok(Some((o.max(self.log_start_offset()), t)));
                    }
                }
                pos += h.size as u64;
            }
        }
        Ok(None)
    }

    /// (timestamp, offset) of the first record having the largest timestamp; None if empty.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let mut best: Option<(i64, Rc<Segment>, u64)> = None;
        for seg in self.segments.borrow().values() {
            let (ts, off, pos) = seg.max_ts.get();
            if off >= 0 && best.as_ref().is_none_or(|b| ts > b.0) {
                best = Some((ts, seg.clone(), pos));
            }
        }
        let Some((ts, seg, pos)) = best else {
            return Ok(None);
        };
        let (h, data) = Self::read_batch_at(&seg, pos, seg.written.get()).await?;
        let found = batch::find_record(&data, &h, |_, t| t >= ts).map_err(StorageError::Corrupt)?;
        Ok(Some((ts, found.map(|(o, _)| o).unwrap_or(h.last_offset()))))
    }

    /// The current settings.
    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Applies new settings (dynamic topic configs): the next append uses them.
    pub fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        if config.index_interval_bytes == 0 || config.segment_bytes == 0 {
            return Err(StorageError::InvalidArgument(
                "segment_bytes and index_interval_bytes must be > 0".into(),
            ));
        }
        *self.config.borrow_mut() = config;
        Ok(())
    }

    /// (base offset, next offset, bytes, max timestamp) of each segment, oldest first.
    pub fn segment_infos(&self) -> Vec<(i64, i64, u64, i64)> {
        self.segments
            .borrow()
            .values()
            .map(|s| {
                (
                    s.base_offset,
                    s.next_offset.get(),
                    s.size.get(),
                    s.max_ts.get().0,
                )
            })
            .collect()
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1 = the high watermark),
    /// persists it, and deletes the segments wholly below it. Returns the new log start offset
    /// (the low watermark). An offset above the high watermark is
    /// [`StorageError::OutOfRange`]; one at or below the current start changes nothing.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, StorageError> {
        let _guard = self.delete_lock.lock().await;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        if let Some(f) = self.failed.borrow().clone() {
            return Err(StorageError::Failed(f));
        }
        let hw = self.hw.get();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(StorageError::OutOfRange(format!(
                "offset {offset} is outside [{}, {hw}]",
                self.log_start_offset()
            )));
        }
        if target > self.start.get() {
            self.start.set(target);
            self.persist_start().await?;
            let victims: Vec<Rc<Segment>> = {
                let active = self.active.borrow().clone();
                self.segments
                    .borrow()
                    .values()
                    .take_while(|s| {
                        !Rc::ptr_eq(s, &active)
                            && s.finalized.get()
                            && s.next_offset.get() <= target
                    })
                    .cloned()
                    .collect()
            };
            self.delete_segments(victims).await?;
        }
        Ok(self.start.get())
    }

    /// Retention: deletes whole non-active segments, oldest first, while the oldest is older
    /// than `retention_ms` (its largest timestamp is before `now_ms - retention_ms`) or the
    /// log without it is still at least `retention_bytes` (-1 disables either rule). Only
    /// segments below the high watermark whose roll has completed are deleted, so no record
    /// above the new log start offset is ever lost. An active segment wholly past
    /// `retention_ms` is rolled so that the next pass can delete it. Never blocks appends or
    /// reads: file removal runs on the blocking pool.
    pub async fn enforce_retention(
        &self,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> Result<RetentionOutcome, StorageError> {
        let _guard = self.delete_lock.lock().await;
        let mut out = RetentionOutcome::default();
        if self.closed.get() || self.busy.get() || self.failed.borrow().is_some() {
            return Ok(out);
        }
        let hw = self.hw.get();
        let active = self.active.borrow().clone();
        let segs: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        let total: u64 = segs.iter().map(|s| s.size.get()).sum();
        let mut excess = if retention_bytes >= 0 {
            total as i64 - retention_bytes
        } else {
            0
        };
        let expired = |s: &Segment| {
            let ts = s.max_ts.get().0;
            retention_ms >= 0 && ts >= 0 && ts < now_ms.saturating_sub(retention_ms)
        };
        let mut victims = Vec::new();
        let mut reached_active = true;
        for s in &segs {
            if Rc::ptr_eq(s, &active) {
                break;
            }
            let size = s.size.get() as i64;
            let below_start = s.next_offset.get() <= self.start.get();
            let by_size = retention_bytes >= 0 && excess - size >= 0;
            if !s.finalized.get()
                || s.next_offset.get() > hw
                || !(below_start || by_size || expired(s))
            {
                reached_active = false;
                break;
            }
            excess -= size;
            victims.push(s.clone());
        }
        if reached_active
            && expired(&active)
            && active.size.get() > 0
            && active.written.get() == active.size.get()
            && hw == self.leo.get()
            && self.queue.borrow().is_empty()
        {
            self.roll(self.leo.get())?;
            self.kick_flusher();
            out.rolled = true;
        }
        out.segments_deleted = victims.len();
        out.bytes_deleted = victims.iter().map(|s| s.size.get()).sum();
        if let Some(last) = victims.last() {
            let new_start = last.next_offset.get();
            if new_start > self.start.get() {
                self.start.set(new_start);
                self.persist_start().await?;
            }
            self.delete_segments(victims).await?;
        }
        Ok(out)
    }

    async fn persist_start(&self) -> Result<(), StorageError> {
        let text = format!("{}\n", self.start.get());
        io::write_file_atomic(&self.dir, LOG_START_OFFSET_FILE, text.as_bytes()).await
    }

    /// Unlinks whole segments (already below the persisted log start offset): out of the map
    /// first (new reads no longer see them; reads in flight keep their own fds), then the
    /// files are closed and removed on the blocking pool.
    async fn delete_segments(&self, victims: Vec<Rc<Segment>>) -> Result<(), StorageError> {
        if victims.is_empty() {
            return Ok(());
        }
        let start = self.start.get();
        {
            let mut segs = self.segments.borrow_mut();
            for v in &victims {
                segs.remove(&v.base_offset);
            }
        }
        self.release_cache_below(start);
        let mut paths = Vec::new();
        for v in victims {
            log::info!(
                "{}: deleting segment {} (offsets {}..{}, {} bytes); log start offset now {start}",
                self.dir.display(),
                v.base_offset,
                v.base_offset,
                v.next_offset.get(),
                v.size.get()
            );
            if let Some(f) = v.take_dma()
                && let Ok(f) = Rc::try_unwrap(f)
            {
                let _ = f.close().await;
            }
            for ext in ["log", "index", "timeindex"] {
                paths.push(io::segment_file(&self.dir, v.base_offset, ext));
            }
        }
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || -> std::io::Result<()> {
                for p in paths {
                    match std::fs::remove_file(&p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                std::fs::File::open(&dir)?.sync_all()
            })
            .await?;
        #[cfg(test)]
        crate::fault::dir_synced(&self.dir);
        Ok(())
    }

    /// Drops cached batches whose base offset is in `[from, to)` (replaced by the cleaner).
    fn release_cache_range(&self, from: i64, to: i64) {
        let mut cached = self.cached.borrow_mut();
        let mut mid = cached.split_off(&from);
        let mut rest = mid.split_off(&to);
        for e in mid.values() {
            self.cache.release(&e.slot);
        }
        cached.append(&mut rest);
    }

    fn release_cache_below(&self, offset: i64) {
        let mut cached = self.cached.borrow_mut();
        let keep = cached.split_off(&offset);
        let below = std::mem::replace(&mut *cached, keep);
        for (base, e) in below {
            if e.last_offset >= offset {
                cached.insert(base, e);
            } else {
                self.cache.release(&e.slot);
            }
        }
    }

    /// Waits until the flusher and the syncer are idle: everything appended so far is written
    /// (and synced where asked), queued rolls are finalised, queued retry acknowledgements
    /// resolved.
    pub async fn wait_idle(&self) {
        loop {
            if self.flushing.get() {
                let (tx, rx) = oneshot::channel();
                self.idle_waiters.borrow_mut().push(tx);
                let _ = rx.await;
            } else if self.syncing.get() {
                self.wait_syncer().await;
            } else {
                return;
            }
        }
    }

    /// Truncates the log so that LEO == `offset` (a batch boundary).
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let _guard = self.delete_lock.lock().await;
        if self.busy.replace(true) {
            return Err(StorageError::Busy);
        }
        let r = self.truncate_inner(offset, None).await;
        self.busy.set(false);
        r
    }

    /// `known_pos`: the file position of `offset` in its segment when the caller knows it
    /// (the written end, after a full disk); else it is looked up in the index and the file.
    async fn truncate_inner(
        &self,
        offset: i64,
        known_pos: Option<u64>,
    ) -> Result<(), StorageError> {
        self.wait_idle().await;
        if let Some(f) = self.failed.borrow().clone() {
            return Err(StorageError::Failed(f));
        }
        let leo = self.leo.get();
        if offset < self.log_start_offset() || offset > leo {
            return Err(StorageError::InvalidArgument(format!(
                "truncate_to({offset}) outside [{}, {leo}]",
                self.log_start_offset()
            )));
        }
        if offset == leo {
            // Nothing to cut from the data, but epochs noted at the log end without records
            // (a leadership that wrote nothing) go, as Kafka's truncateFromEnd does: else a
            // follower keeps sending that epoch as LastFetchedEpoch and diverges forever.
            if self.epochs.borrow_mut().truncate_from(offset) {
                self.write_epochs().await?;
            }
            return Ok(());
        }
        let seg = self
            .segment_for(offset)
            .expect("offset >= log start has a segment");
        let pos = if offset == seg.base_offset {
            0
        } else if let Some(pos) = known_pos {
            pos
        } else {
            let (_, ipos) = seg.offset_index.borrow().lookup(seg.rel(offset));
            let mut reader = ChunkReader::new(seg.dma().await?, seg.written.get(), READ_CHUNK);
            match recovery::find_batch(&mut reader, ipos as u64, offset).await? {
                Some((pos, h)) if h.base_offset == offset => pos,
                _ => {
                    return Err(StorageError::InvalidArgument(format!(
                        "offset {offset} is not a batch boundary"
                    )));
                }
            }
        };
        // From here on, readers must not look past `offset`.
        self.first_dirty.set(self.first_dirty.get().min(offset));
        self.hw.set(self.hw.get().min(offset));
        self.synced_end.set(self.synced_end.get().min(offset));
        self.leo.set(offset);
        self.release_cache_from(offset);
        let later: Vec<Rc<Segment>> = self
            .segments
            .borrow_mut()
            .split_off(&(seg.base_offset + 1))
            .into_values()
            .collect();
        let deleted = !later.is_empty();
        for s in later {
            s.delete_files()?;
        }
        if deleted {
            // Durable before the cut below: else a power cut could bring back segments that
            // no longer follow the truncated one.
            io::sync_dir(&self.dir).await?;
        }
        let dma = seg.dma().await?;
        dma.truncate(pos).await?;
        seg.zeroed.set(pos);
        io::fdatasync(&dma).await?;
        self.sync_count.set(self.sync_count.get() + 1);
        io::remove_if_exists(&io::segment_file(&self.dir, seg.base_offset, "index"))?;
        io::remove_if_exists(&io::segment_file(&self.dir, seg.base_offset, "timeindex"))?;
        seg.reset();
        let interval = self.config.borrow().index_interval_bytes;
        let end = recovery::scan_segment(dma, 0, pos, seg.base_offset, seg.base_offset, |h, p| {
            seg.track_batch(h, interval);
            seg.note_written(h, p);
        })
        .await?;
        if end.valid_end != pos || end.next_offset != offset {
            let e = StorageError::Corrupt(format!(
                "rescan after truncation ended at {} / offset {}",
                end.valid_end, end.next_offset
            ));
            self.fail(&e);
            return Err(e);
        }
        seg.written.set(pos);
        seg.load_tail().await?;
        *self.active.borrow_mut() = seg;
        if self.epochs.borrow_mut().truncate_from(offset) {
            match self.write_epochs().await {
                // Rewritten with the next write; open cuts a stale checkpoint at the log end.
                Err(e) if e.is_no_space() => {
                    log::warn!(
                        "{}: leader-epoch-checkpoint not rewritten: {e}",
                        self.dir.display()
                    );
                    self.epochs_dirty.set(true);
                }
                r => r?,
            }
        }
        let (_, snaps) = list_dir(&self.dir)?;
        for s in snaps.into_iter().filter(|&s| s > offset) {
            io::remove_if_exists(&io::segment_file(&self.dir, s, "snapshot"))?;
        }
        self.rebuild_producers(offset).await
    }

    /// Rebuilds producer state for a log ending at `upto`: newest valid snapshot at or below
    /// it, then replay of the batches after the snapshot.
    async fn rebuild_producers(&self, upto: i64) -> Result<(), StorageError> {
        let (_, snaps) = list_dir(&self.dir)?;
        let mut state = ProducerState::default();
        let mut from = self.log_start_offset();
        for &s in snaps.iter().rev().filter(|&&s| s <= upto && s >= from) {
            let path = io::segment_file(&self.dir, s, "snapshot");
            if let Some(buf) = io::read_small_file(&path, producer_state::MAX_SNAPSHOT_BYTES)?
                && let Some((off, st)) = ProducerState::from_snapshot(&buf)
                && off == s
            {
                state = st;
                from = s;
                break;
            }
            log::warn!(
                "{}: ignoring unreadable snapshot {}",
                self.dir.display(),
                path.display()
            );
        }
        let segs: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        for seg in segs {
            if seg.next_offset.get() <= from || seg.base_offset >= upto {
                continue;
            }
            let limit = seg.written.get();
            recovery::scan_segment(
                seg.dma().await?,
                0,
                limit,
                seg.base_offset,
                seg.base_offset,
                |h, _| {
                    if h.base_offset >= from && h.last_offset() < upto {
                        let ident = BatchIdent {
                            producer_id: h.producer_id,
                            epoch: h.producer_epoch,
                            first_seq: h.base_sequence,
                            last_seq: h.last_sequence(),
                        };
                        state.update(&ident, h.base_offset, h.last_offset());
                    }
                },
            )
            .await?;
        }
        *self.producers.borrow_mut() = state;
        Ok(())
    }

    /// Clean close: wait for queued writes, persist indexes, producer snapshot and epochs,
    /// truncate the active segment to its logical size, sync, write `.clean_shutdown`.
    /// Further appends fail with [`AppendError::Closed`].
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.replace(true) {
            return Ok(());
        }
        self.wait_idle().await;
        let r = self.persist_clean().await;
        self.shutdown_memory();
        self.close_files().await;
        r
    }

    async fn persist_clean(&self) -> Result<(), StorageError> {
        if let Some(f) = self.failed.borrow().clone() {
            return Err(StorageError::Failed(f));
        }
        let active = self.active.borrow().clone();
        assert_eq!(
            active.written.get(),
            active.size.get(),
            "close with unwritten data"
        );
        let dma = active.dma().await?;
        dma.truncate(active.size.get()).await?;
        io::fdatasync(&dma).await?;
        self.sync_count.set(self.sync_count.get() + 1);
        active.write_indexes().await?;
        let leo = self.leo.get();
        let snap = self.producers.borrow().to_snapshot(leo);
        self.write_snapshot(leo, &snap).await?;
        self.write_epochs().await?;
        io::write_file_atomic(&self.dir, CLEAN_SHUTDOWN_FILE, b"").await
    }

    fn shutdown_memory(&self) {
        self.release_cache_from(i64::MIN);
        self.watchers.borrow_mut().clear();
    }

    async fn close_files(&self) {
        let segs: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        for s in segs {
            if let Some(f) = s.take_dma()
                && let Ok(f) = Rc::try_unwrap(f)
            {
                let _ = f.close().await;
            }
        }
    }

    /// Closes the log (without persisting) and deletes the partition directory.
    pub async fn remove(&self) -> Result<(), StorageError> {
        self.closed.set(true);
        self.wait_idle().await;
        self.shutdown_memory();
        self.close_files().await;
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await?;
        // The removal is durable once the parent directory is synced.
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            io::sync_dir(parent).await?;
        }
        Ok(())
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        for e in self.cached.get_mut().values() {
            self.cache.release(&e.slot);
        }
    }
}
