//! `tern-storage`: the partition log of Tern.
//!
//! One [`PartitionLog`] per partition, living on one shard (thread-per-core, glommio).
//! The on-disk layout follows Kafka: a directory of segments named by their 20-digit base
//! offset (`.log` + `.index` + `.timeindex`), producer-state snapshots (`.snapshot`) and a
//! `leader-epoch-checkpoint`.
//!
//! Module map:
//! - [`batch`]: RecordBatch v2 header parsing, validation and in-place patching.
//! - `index`: sparse offset index and time index (in memory + file format).
//! - `segment`: one segment (files, sizes, indexes, the in-memory unaligned tail block).
//! - `producer_state`: idempotent-producer sequence tracking.
//! - `tail_cache`: the per-shard memory budget for recently written batches.
//! - `records`: validation of the records inside a batch (streaming, bounded decompression).
//! - `recovery`: scanning and validating segment files.
//! - `io`: the only glommio-specific layer (DMA file open / read / atomic file writes).
//! - `log`: [`PartitionLog`] itself (append, flusher, read, truncate, close); `log::cleaner`:
//!   log compaction (one pass, the `.cleaned`/`.swap` swap and its recovery).
//! - `offset_map`: the cleaner's fixed-budget key -> offset map.
//! - `compact_batch`: record-level filtering and rebuilding of a batch for the cleaner.

pub mod batch;
mod cold_budget;
mod compact_batch;
#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod disk_full_tests;
pub mod epoch;
mod error;
#[cfg(test)]
mod fault;
#[cfg(test)]
mod fault_tests;
mod fd_closer;
mod index;
mod io;
mod log;
pub mod offset_map;
mod producer_state;
mod readahead;
mod records;
mod recovery;
#[cfg(test)]
mod replica_tests;
mod segment;
pub mod stats;
mod tail_cache;

#[cfg(test)]
mod tests;

pub use error::{AppendError, ReadError, StorageError};
pub use io::{
    create_dir_all_durable, prepare_data_dir, read_small_file, write_file_atomic,
    write_file_atomic_blocking,
};
pub use log::{
    CLEANER_CHECKPOINT_FILE, CleanOutcome, Cleanable, CompactionConfig, IoThrottle,
    LOG_START_OFFSET_FILE, PartitionLog, RetentionOutcome,
};
pub use offset_map::OffsetMap;
pub use tail_cache::TailCache;

use std::sync::Arc;

/// Default of [`LogConfig::max_decompressed_batch_bytes`]: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// Per-partition log settings (Kafka topic configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll when appending would make the active segment exceed this (a segment always
    /// takes at least one batch). Capped internally at `u32::MAX` (index positions are u32).
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (checked on append); `u64::MAX` = never.
    pub segment_ms: u64,
    /// One sparse offset-index entry per this many bytes.
    pub index_interval_bytes: u32,
    /// `message.max.bytes`: a batch larger than this -> [`AppendError::MessageTooLarge`].
    pub max_batch_bytes: usize,
    /// Bound on the decompressed size of one compressed batch's records, checked while
    /// validating it on append (decompression streams, nothing that size is allocated): a
    /// batch over it -> [`AppendError::InvalidRecord`].
    pub max_decompressed_batch_bytes: usize,
    /// `cleanup.policy` includes `compact`: every record needs a key (appends of records without
    /// one fail with [`AppendError::NullKeys`]).
    pub keys_required: bool,
    /// Cold reads (from segment files) ask the kernel to read this many bytes beyond the
    /// fetched range into the page cache ahead of the consumer (`readahead.rs`); 0 = off.
    pub readahead_bytes: u64,
    /// Bound per shard on readahead bytes the disk has been asked for and not read yet
    /// (`readahead.rs`); 0 = unbounded.
    pub readahead_inflight_bytes: u64,
    /// Bandwidth bound on cold reads per shard, bytes/s (`cold_budget.rs`); 0 = unbounded.
    pub cold_read_bytes_per_sec: u64,
}

/// Default of [`LogConfig::readahead_bytes`].
pub const DEFAULT_READAHEAD_BYTES: u64 = 8 << 20;

/// Default of [`LogConfig::readahead_inflight_bytes`].
pub const DEFAULT_READAHEAD_INFLIGHT_BYTES: u64 = 16 << 20;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_batch_bytes: 1_048_588,
            max_decompressed_batch_bytes: DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
            keys_required: false,
            readahead_bytes: DEFAULT_READAHEAD_BYTES,
            readahead_inflight_bytes: DEFAULT_READAHEAD_INFLIGHT_BYTES,
            cold_read_bytes_per_sec: 0,
        }
    }
}

/// When an append counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// acks=1: after the O_DIRECT write completed.
    Written,
    /// acks=all: after the fdatasync that follows the write.
    Synced,
}

/// Result of [`PartitionLog::append`].
pub struct Appended {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Idempotent retry of a batch already in the log: nothing written, offsets are the
    /// original ones.
    pub duplicate: bool,
    /// Resolves when durable at the requested level (immediately Ok for duplicates).
    pub done: futures::future::LocalBoxFuture<'static, Result<(), StorageError>>,
}

impl std::fmt::Debug for Appended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appended")
            .field("base_offset", &self.base_offset)
            .field("last_offset", &self.last_offset)
            .field("duplicate", &self.duplicate)
            .finish_non_exhaustive()
    }
}

/// A slice of the log for a fetch response.
///
/// `Memory` is the very refcounted buffer that was written (no copy). `File` is a byte range
/// of a segment, to be sent with sendfile by the caller from a plain buffered (non-O_DIRECT)
/// read-only fd; the `Arc` keeps the file open even if the segment is deleted meanwhile.
#[derive(Clone, Debug)]
pub enum ReadChunk {
    Memory(bytes::Bytes),
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
}

impl ReadChunk {
    /// Number of bytes in this chunk.
    pub fn len(&self) -> u64 {
        match self {
            ReadChunk::Memory(b) => b.len() as u64,
            ReadChunk::File { len, .. } => *len,
        }
    }

    /// True if the chunk holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
