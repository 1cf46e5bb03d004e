//! The follower's side of [`PartitionLog`]: appending record batches fetched from a partition
//! leader exactly as they are (offsets and leader epochs already assigned by the leader, the
//! bytes unchanged), and the facts the replication rules read (synced end, OffsetForLeaderEpoch
//! over the epoch cache, the last epoch) plus reads capped at a replication high watermark.

use bytes::BytesMut;
use futures::FutureExt;
use futures::channel::oneshot;

use std::rc::Rc;

use super::{Op, PartitionLog, PendingWrite, list_dir};
use crate::batch::{self, BatchHeader};
use crate::epoch::EpochCache;
use crate::io;
use crate::producer_state::{BatchIdent, ProducerState};
use crate::segment::Segment;
use crate::{AppendError, Appended, Durability, StorageError};

impl PartitionLog {
    /// Offsets below this are fdatasynced.
    pub fn synced_end_offset(&self) -> i64 {
        self.synced_end.get()
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` this log knows and where it ends
    /// (`(-1, -1)`: none).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.borrow().end_offset_for(epoch, self.leo.get())
    }

    /// The leader epoch of the last batch (-1: no epoch known).
    pub fn last_epoch(&self) -> i32 {
        self.epochs.borrow().latest().map_or(-1, |(e, _)| e)
    }

    /// Notes the start of leader epoch `epoch` at the log end (a new leader does this before
    /// its first append, so followers can be checked against it). Persisted with the next write.
    pub fn note_epoch_start(&self, epoch: i32) {
        if self.epochs.borrow_mut().assign(epoch, self.leo.get()) {
            self.epochs_dirty.set(true);
        }
    }

    /// Kafka's `truncateFullyAndStartAt`: a follower whose log end is below its leader's log
    /// start (the leader deleted, by retention or DeleteRecords, records the follower never
    /// got) drops its whole log and starts an empty one at `offset` (>= the log end): every
    /// segment, producer snapshot and leader epoch goes; log start, log end and both high
    /// watermarks become `offset`. Crash-safe in this order: the empty epoch checkpoint and
    /// the new log start are persisted, then the new segment is created and made durable, and
    /// only then are the old files removed (open deletes segments wholly below the persisted
    /// log start, so a crash in between leaves either the old log or the new one).
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let _guard = self.delete_lock.lock().await;
        if self.busy.replace(true) {
            return Err(StorageError::Busy);
        }
        let r = self.restart_at(offset).await;
        self.busy.set(false);
        r
    }

    async fn restart_at(&self, offset: i64) -> Result<(), StorageError> {
        self.wait_idle().await;
        if let Some(f) = self.failed.borrow().clone() {
            return Err(StorageError::Failed(f));
        }
        let leo = self.leo.get();
        if offset < 0 || (offset < leo && leo != self.start.get()) {
            return Err(StorageError::InvalidArgument(format!(
                "truncate_fully_and_start_at({offset}) below the log end {leo} of a log \
                 that is not empty"
            )));
        }
        *self.epochs.borrow_mut() = EpochCache::default();
        self.epochs_dirty.set(false);
        self.write_epochs().await?;
        self.start.set(offset);
        self.persist_start().await?;
        let active = self.active.borrow().clone();
        let seg = if active.base_offset == offset && active.size.get() == 0 {
            active
        } else {
            let seg = Rc::new(Segment::create_sync(&self.dir, offset)?);
            io::sync_dir(&self.dir).await?;
            seg
        };
        let old: Vec<Rc<Segment>> = {
            let mut segs = self.segments.borrow_mut();
            let old = std::mem::take(&mut *segs)
                .into_values()
                .filter(|s| !Rc::ptr_eq(s, &seg))
                .collect();
            segs.insert(offset, seg.clone());
            old
        };
        *self.active.borrow_mut() = seg;
        self.release_cache_from(i64::MIN);
        self.leo.set(offset);
        self.hw.set(offset);
        self.synced_end.set(offset);
        self.first_dirty.set(offset);
        *self.producers.borrow_mut() = ProducerState::default();
        log::info!(
            "{}: log restarted empty at offset {offset} (was {}..{leo}, {} segments removed)",
            self.dir.display(),
            old.first().map_or(leo, |s| s.base_offset),
            old.len()
        );
        for s in old {
            if let Some(f) = s.take_dma()
                && let Ok(f) = Rc::try_unwrap(f)
            {
                let _ = f.close().await;
            }
            s.delete_files()?;
        }
        let (_, snaps) = list_dir(&self.dir)?;
        for s in snaps {
            io::remove_if_exists(&io::segment_file(&self.dir, s, "snapshot"))?;
        }
        io::sync_dir(&self.dir).await
    }

    /// Resolves once every offset up to `last` is durable at `durability` (a sync of the
    /// written data is queued if needed).
    pub fn durable_through(
        &self,
        last: i64,
        durability: Durability,
    ) -> futures::future::LocalBoxFuture<'static, Result<(), StorageError>> {
        if last < 0 {
            return futures::future::ready(Ok(())).boxed_local();
        }
        self.ack_retry(last, durability)
    }

    /// Appends batches a leader sent, unchanged: they must start at the log end and follow each
    /// other (base offset = previous last offset + 1). Validates each header and CRC; updates
    /// producer state and the epoch cache from the batches. Nothing is written if any batch is
    /// refused.
    pub fn append_replicated(
        &self,
        mut records: BytesMut,
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
        let mut headers = Vec::new();
        let mut at = 0usize;
        let mut next = self.leo.get();
        while at < records.len() {
            let rest = &records[at..];
            if rest.len() < batch::HEADER_LEN {
                break; // a partial header at the end of a fetch
            }
            let h = BatchHeader::parse(rest).map_err(AppendError::CorruptMessage)?;
            if h.size > rest.len() {
                // A fetch may end with a partial batch (KIP-74 limits): dropped.
                break;
            }
            h.validate(&rest[..h.size])
                .map_err(AppendError::CorruptMessage)?;
            if h.base_offset != next || h.last_offset_delta < 0 {
                return Err(AppendError::CorruptMessage(format!(
                    "replicated batch at {} does not follow offset {}",
                    h.base_offset,
                    next - 1
                )));
            }
            next = h.last_offset() + 1;
            headers.push(h);
            at += h.size;
        }
        if headers.is_empty() {
            return Err(AppendError::CorruptMessage("no whole record batch".into()));
        }
        let base_offset = headers[0].base_offset;
        let last_offset = next - 1;
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let count = headers.len();
        for (i, h) in headers.into_iter().enumerate() {
            let part = records.split_to(h.size);
            let mut seg = self.active.borrow().clone();
            let (segment_ms, segment_bytes, interval) = {
                let c = self.config.borrow();
                (c.segment_ms, c.segment_bytes, c.index_interval_bytes)
            };
            let last = h.last_offset();
            let too_old = segment_ms != u64::MAX
                && seg.size.get() > 0
                && seg.created.elapsed().as_millis() >= segment_ms as u128;
            if too_old || !seg.fits(h.size as u64, last, segment_bytes) {
                if let Err(e) = self.roll(h.base_offset) {
                    return Err(self.roll_failed(e, i == 0));
                }
                seg = self.active.borrow().clone();
            }
            let pos = seg.size.get();
            seg.track_batch(&h, interval);
            self.leo.set(last + 1);
            let ident = BatchIdent {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
            };
            self.producers
                .borrow_mut()
                .update(&ident, h.base_offset, last);
            if h.leader_epoch >= 0
                && self
                    .epochs
                    .borrow_mut()
                    .assign(h.leader_epoch, h.base_offset)
            {
                self.epochs_dirty.set(true);
            }
            let waiter = if i + 1 == count {
                tx.take().map(|t| (durability, t))
            } else {
                None
            };
            debug_assert_eq!(part.len(), h.size);
            self.queue.borrow_mut().push_back(Op::Write(PendingWrite {
                segment: seg,
                pos,
                header: h,
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
}

impl PartitionLog {
    /// [`PartitionLog::read`], but only batches that start below `limit` (a replication high
    /// watermark at a batch boundary, or anything above the log end for no cap).
    pub async fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: i64,
    ) -> Result<Vec<crate::ReadChunk>, crate::ReadError> {
        let chunks = self.read(offset, max_bytes).await?;
        if limit >= self.hw.get() || chunks.is_empty() {
            return Ok(chunks);
        }
        if offset >= limit {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(chunks.len());
        for c in chunks {
            match c {
                crate::ReadChunk::Memory(b) => {
                    let Ok(h) = BatchHeader::parse(&b) else { break };
                    if h.base_offset >= limit {
                        break;
                    }
                    out.push(crate::ReadChunk::Memory(b));
                }
                crate::ReadChunk::File {
                    file,
                    offset: pos,
                    len,
                } => {
                    let Some(seg) = self.segment_for(limit) else {
                        out.push(crate::ReadChunk::File {
                            file,
                            offset: pos,
                            len,
                        });
                        break;
                    };
                    if !std::sync::Arc::ptr_eq(&seg.read_file, &file) {
                        // The limit lies in a later segment: this range is wholly below it.
                        out.push(crate::ReadChunk::File {
                            file,
                            offset: pos,
                            len,
                        });
                        break;
                    }
                    let ipos = seg.offset_index.borrow().lookup(seg.rel(limit)).1;
                    let dma = seg.dma().await?;
                    let mut reader =
                        crate::io::ChunkReader::new(dma, seg.written.get(), super::READ_CHUNK);
                    let cut =
                        match crate::recovery::find_batch(&mut reader, ipos as u64, limit).await? {
                            // The batch at (or holding) the limit and everything after it go.
                            Some((p, _)) => p,
                            None => pos + len,
                        };
                    if cut > pos {
                        out.push(crate::ReadChunk::File {
                            file,
                            offset: pos,
                            len: (cut - pos).min(len),
                        });
                    }
                    break;
                }
            }
        }
        Ok(out)
    }
}
