//! One log segment: `<base>.log` plus its sparse indexes. Tracks the logical size (bytes
//! appended, including those still queued for writing), the written size (bytes whose DMA
//! write completed), the in-memory unaligned tail block that each write rewrites, and the
//! largest timestamp among written batches.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::io::DmaFile;

use crate::StorageError;
use crate::batch::BatchHeader;
use crate::index::{self, OffsetIndex, SegmentMeta, TimeIndex};
use crate::io;

/// Positions are stored as u32 in the offset index: a segment never exceeds this.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

pub struct Segment {
    pub base_offset: i64,
    pub dir: PathBuf,
    dma: RefCell<Option<Rc<DmaFile>>>,
    /// Plain buffered read-only fd for sendfile by the caller. Closed off the shard thread
    /// when the segment is dropped ([`crate::fd_closer`]).
    pub read_file: Arc<std::fs::File>,
    /// Logical size: bytes appended (including queued ones).
    pub size: Cell<u64>,
    /// Bytes whose write completed (<= size).
    pub written: Cell<u64>,
    /// Offset after the last appended record.
    pub next_offset: Cell<i64>,
    pub offset_index: RefCell<OffsetIndex>,
    pub time_index: RefCell<TimeIndex>,
    bytes_since_index: Cell<u64>,
    /// Max batch timestamp among appended batches (drives the time index).
    max_ts_appended: Cell<i64>,
    /// (max ts, batch base offset, batch position) among written batches; ts -1 = none.
    pub max_ts: Cell<(i64, i64, u64)>,
    pub created: Instant,
    /// No longer active and finalised (truncated, synced, indexes written): may be deleted.
    pub finalized: Cell<bool>,
    /// Bytes after the last alignment boundary of `written` (rewritten with each write).
    pub tail: RefCell<Vec<u8>>,
    /// How far this process has written the file, zero padding included. A DMA write that ends
    /// below it overwrites written blocks, which the kernel issues inline; one that extends the
    /// file is handed to an io_uring worker thread (see `ZERO_AHEAD_BYTES` in log.rs). A hint
    /// only: if it is wrong, writes are slower, never incorrect.
    pub zeroed: Cell<u64>,
    /// Whether the file's directory entry is known durable (an fsync of the directory followed
    /// its creation). A new segment's data is not durable before its entry is.
    pub entry_synced: Cell<bool>,
    /// How far cold reads of `read_file` were advised to the kernel (see `readahead.rs`).
    pub readahead: crate::readahead::Readahead,
}

/// Stands in for a dropped segment's `read_file` while the real one goes to the closer thread.
fn placeholder_file() -> Option<Arc<std::fs::File>> {
    static NULL: std::sync::OnceLock<Option<Arc<std::fs::File>>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok().map(Arc::new))
        .clone()
}

impl Drop for Segment {
    /// Hands the segment's descriptors to [`crate::fd_closer`], so that the close that frees an
    /// unlinked segment's blocks (milliseconds for a large file) never runs on the shard: the
    /// read fd when nothing else holds it (a cold send in flight keeps its own reference and
    /// drops it on the blocking pool), and a duplicate of the DMA fd, so that glommio's close of
    /// the DMA handle on the shard is never the file's last reference.
    fn drop(&mut self) {
        let mut fds: Vec<std::os::fd::OwnedFd> = Vec::with_capacity(2);
        if let Some(dma) = self.dma.get_mut().as_ref() {
            use std::os::fd::AsRawFd;
            // SAFETY: the DMA file is open for as long as `dma` lives (all of this call).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dma.as_raw_fd()) };
            if let Ok(dup) = fd.try_clone_to_owned() {
                fds.push(dup);
            }
        }
        if let Some(null) = placeholder_file() {
            let read = std::mem::replace(&mut self.read_file, null);
            if let Ok(file) = Arc::try_unwrap(read) {
                fds.push(file.into());
            }
        }
        crate::fd_closer::close_in_background(fds);
    }
}

impl Segment {
    /// A segment with no data yet known (sizes and indexes filled by the caller).
    pub fn new(
        dir: &Path,
        base_offset: i64,
        dma: Option<Rc<DmaFile>>,
        read_file: std::fs::File,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            dma: RefCell::new(dma),
            read_file: Arc::new(read_file),
            size: Cell::new(0),
            written: Cell::new(0),
            next_offset: Cell::new(base_offset),
            offset_index: RefCell::new(OffsetIndex::default()),
            time_index: RefCell::new(TimeIndex::default()),
            bytes_since_index: Cell::new(0),
            max_ts_appended: Cell::new(-1),
            max_ts: Cell::new((-1, -1, 0)),
            created: Instant::now(),
            finalized: Cell::new(false),
            tail: RefCell::new(Vec::new()),
            zeroed: Cell::new(0),
            entry_synced: Cell::new(true),
            readahead: Default::default(),
        }
    }

    /// Creates a new empty segment file synchronously (std; used on roll). Its directory entry
    /// is not durable yet (`entry_synced` false).
    pub fn create_sync(dir: &Path, base_offset: i64) -> Result<Segment, StorageError> {
        let path = io::segment_file(dir, base_offset, "log");
        io::create_empty_file(&path)?;
        io::remove_if_exists(&io::segment_file(dir, base_offset, "index"))?;
        io::remove_if_exists(&io::segment_file(dir, base_offset, "timeindex"))?;
        let read_file = std::fs::File::open(&path)?;
        let seg = Segment::new(dir, base_offset, None, read_file);
        seg.entry_synced.set(false);
        Ok(seg)
    }

    pub fn log_path(&self) -> PathBuf {
        io::segment_file(&self.dir, self.base_offset, "log")
    }

    /// The DMA handle, opened on first use.
    pub async fn dma(&self) -> Result<Rc<DmaFile>, StorageError> {
        if let Some(f) = self.dma.borrow().as_ref() {
            return Ok(f.clone());
        }
        let f = Rc::new(io::open_dma(&self.log_path()).await?);
        let mut slot = self.dma.borrow_mut();
        Ok(slot.get_or_insert(f).clone())
    }

    /// Installs the DMA handle (a segment built by the cleaner, whose file was written through
    /// it).
    pub fn set_dma(&self, dma: Rc<DmaFile>) {
        *self.dma.borrow_mut() = Some(dma);
    }

    pub fn take_dma(&self) -> Option<Rc<DmaFile>> {
        self.dma.borrow_mut().take()
    }

    /// Relative offset of `offset` in this segment (caller guarantees the range).
    pub fn rel(&self, offset: i64) -> u32 {
        let r = offset - self.base_offset;
        assert!(
            (0..=u32::MAX as i64).contains(&r),
            "offset {offset} outside segment {}",
            self.base_offset
        );
        r as u32
    }

    /// Whether a batch of `len` bytes whose last offset is `last_offset` fits (a segment
    /// always takes at least one batch).
    pub fn fits(&self, len: u64, last_offset: i64, segment_bytes: u64) -> bool {
        if self.size.get() == 0 {
            return true;
        }
        let limit = segment_bytes.min(MAX_SEGMENT_BYTES);
        self.size.get() + len <= limit && last_offset - self.base_offset <= u32::MAX as i64
    }

    /// Accounts for a batch appended at the current end (position = size): maintains the
    /// indexes and sizes. Used by the append path and by index rebuilds. Offsets increase;
    /// a cleaned segment has gaps between batches (appends never do).
    pub fn track_batch(&self, h: &BatchHeader, interval: u32) {
        let pos = self.size.get();
        assert!(
            h.base_offset >= self.next_offset.get(),
            "batch at offset {} below the segment's next offset {}",
            h.base_offset,
            self.next_offset.get()
        );
        if pos > 0 && self.bytes_since_index.get() >= interval as u64 {
            let rel = self.rel(h.base_offset);
            self.offset_index.borrow_mut().push(rel, pos as u32);
            self.time_index
                .borrow_mut()
                .maybe_push(self.max_ts_appended.get(), rel);
            self.bytes_since_index.set(0);
        }
        self.bytes_since_index
            .set(self.bytes_since_index.get() + h.size as u64);
        self.max_ts_appended
            .set(self.max_ts_appended.get().max(h.max_timestamp));
        self.size.set(pos + h.size as u64);
        self.next_offset.set(h.last_offset() + 1);
    }

    /// Accounts for a written batch (its bytes are on disk now).
    pub fn note_written(&self, h: &BatchHeader, pos: u64) {
        if h.max_timestamp > self.max_ts.get().0 {
            self.max_ts.set((h.max_timestamp, h.base_offset, pos));
        }
    }

    pub fn meta(&self) -> SegmentMeta {
        let (max_ts, off, pos) = self.max_ts.get();
        SegmentMeta {
            covered_size: self.size.get(),
            next_offset: self.next_offset.get(),
            max_ts,
            max_ts_batch_offset: off,
            max_ts_batch_pos: pos,
        }
    }

    /// Installs indexes loaded from disk for a fully written segment of `meta.covered_size`.
    pub fn install(&self, meta: &SegmentMeta, oi: OffsetIndex, ti: TimeIndex) {
        let last_pos = oi.last().map(|(_, p)| p as u64).unwrap_or(0);
        *self.offset_index.borrow_mut() = oi;
        *self.time_index.borrow_mut() = ti;
        self.size.set(meta.covered_size);
        self.written.set(meta.covered_size);
        self.next_offset.set(meta.next_offset);
        self.bytes_since_index.set(meta.covered_size - last_pos);
        self.max_ts_appended.set(meta.max_ts);
        self.max_ts
            .set((meta.max_ts, meta.max_ts_batch_offset, meta.max_ts_batch_pos));
    }

    /// Loads `.index` + `.timeindex` if both are valid and cover exactly `size` bytes.
    pub fn load_indexes(
        &self,
        size: u64,
    ) -> Result<Option<(SegmentMeta, OffsetIndex, TimeIndex)>, StorageError> {
        let oi = io::read_small_file(
            &io::segment_file(&self.dir, self.base_offset, "index"),
            index::MAX_INDEX_FILE_BYTES,
        )?;
        let ti = io::read_small_file(
            &io::segment_file(&self.dir, self.base_offset, "timeindex"),
            index::MAX_INDEX_FILE_BYTES,
        )?;
        let (Some(oi), Some(ti)) = (oi, ti) else {
            return Ok(None);
        };
        let (Some((m1, oi)), Some((m2, ti))) = (
            index::decode_offset_index(&oi),
            index::decode_time_index(&ti),
        ) else {
            return Ok(None);
        };
        if m1 != m2 || m1.covered_size != size || m1.next_offset < self.base_offset {
            return Ok(None);
        }
        Ok(Some((m1, oi, ti)))
    }

    /// Persists both index files (atomically) describing the current state.
    pub async fn write_indexes(&self) -> Result<(), StorageError> {
        let meta = self.meta();
        let oi = index::encode_offset_index(&meta, &self.offset_index.borrow());
        let ti = index::encode_time_index(&meta, &self.time_index.borrow());
        io::write_file_atomic(&self.dir, &format!("{:020}.index", self.base_offset), &oi).await?;
        io::write_file_atomic(
            &self.dir,
            &format!("{:020}.timeindex", self.base_offset),
            &ti,
        )
        .await?;
        Ok(())
    }

    /// Resets all in-memory state to "empty" (before a rescan).
    pub fn reset(&self) {
        self.size.set(0);
        self.written.set(0);
        self.next_offset.set(self.base_offset);
        *self.offset_index.borrow_mut() = OffsetIndex::default();
        *self.time_index.borrow_mut() = TimeIndex::default();
        self.bytes_since_index.set(0);
        self.max_ts_appended.set(-1);
        self.max_ts.set((-1, -1, 0));
        self.tail.borrow_mut().clear();
    }

    /// Loads the unaligned tail block of `written` from disk (before appending to it).
    pub async fn load_tail(&self) -> Result<(), StorageError> {
        let written = self.written.get();
        let dma = self.dma().await?;
        let start = dma.align_down(written);
        let n = (written - start) as usize;
        let tail = if n == 0 {
            Vec::new()
        } else {
            let r = dma.read_at(start, n).await?;
            if r.len() != n {
                return Err(StorageError::Corrupt(format!(
                    "segment {} shorter than {written}",
                    self.base_offset
                )));
            }
            r.to_vec()
        };
        *self.tail.borrow_mut() = tail;
        Ok(())
    }

    /// Deletes this segment's files.
    pub fn delete_files(&self) -> Result<(), StorageError> {
        for ext in ["log", "index", "timeindex"] {
            io::remove_if_exists(&io::segment_file(&self.dir, self.base_offset, ext))?;
        }
        Ok(())
    }
}
