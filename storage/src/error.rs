//! Error types of the storage crate. Bad bytes (on disk or from the network) are errors,
//! never panics.

/// Errors of the storage layer itself (I/O, corruption, lifecycle).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    #[error("log is closed")]
    Closed,
    /// An earlier write or sync failed; the log refuses further work until reopened.
    #[error("log failed after an earlier I/O error: {0}")]
    Failed(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A truncation is in progress on this log.
    #[error("log is busy (truncation in progress)")]
    Busy,
    /// An offset outside the log (DeleteRecords above the high watermark).
    #[error("offset out of range: {0}")]
    OutOfRange(String),
    /// The disk is full (ENOSPC, EDQUOT or a short write). Retriable: nothing from the failed
    /// write on was acknowledged, and the log cuts itself back to what it had written and then
    /// accepts appends again (see `PartitionLog::rewind_unwritten`).
    #[error("no space left on the log device: {0}")]
    NoSpace(String),
}

impl From<glommio::GlommioError<()>> for StorageError {
    fn from(e: glommio::GlommioError<()>) -> Self {
        StorageError::Io(std::io::Error::from(e))
    }
}

impl StorageError {
    /// A cloneable description, used to fail many waiters with the same cause.
    pub(crate) fn to_failed(&self) -> StorageError {
        match self {
            StorageError::Failed(s) => StorageError::Failed(s.clone()),
            StorageError::Closed => StorageError::Closed,
            StorageError::NoSpace(s) => StorageError::NoSpace(s.clone()),
            other => StorageError::Failed(other.to_string()),
        }
    }

    /// Whether this error means the disk is full: ENOSPC or EDQUOT from the kernel, a short
    /// DMA write (what O_DIRECT returns when only part of a write found room), or
    /// [`StorageError::NoSpace`].
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::NoSpace(_) => true,
            StorageError::Io(e) => {
                matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                    || matches!(
                        e.kind(),
                        std::io::ErrorKind::StorageFull
                            | std::io::ErrorKind::QuotaExceeded
                            | std::io::ErrorKind::WriteZero
                    )
            }
            _ => false,
        }
    }
}

/// Why an append was rejected. On any of these nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Bytes that are not a valid batch: bad length, magic or CRC, undecodable compression.
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// A well-formed batch whose records contradict it (count, inner offsets, record lengths)
    /// or decompress beyond `LogConfig::max_decompressed_batch_bytes` (Kafka: INVALID_RECORD).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Records without a key appended to a compacted log: the batch-relative indexes of the
    /// first batch that has them (Kafka: INVALID_RECORD with KIP-467 record errors).
    #[error("{message}")]
    NullKeys {
        message: String,
        record_indexes: Vec<i32>,
    },
    #[error("batch larger than max_batch_bytes")]
    MessageTooLarge,
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    #[error("invalid (stale) producer epoch")]
    InvalidProducerEpoch,
    #[error("storage error: {0}")]
    Io(StorageError),
    #[error("log is closed")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset out of range (log start {log_start_offset}, high watermark {high_watermark})")]
    OffsetOutOfRange {
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error("storage error: {0}")]
    Io(StorageError),
}

impl From<StorageError> for ReadError {
    fn from(e: StorageError) -> Self {
        ReadError::Io(e)
    }
}
