//! Scanning segment files: walks batches from a position, validating each one (length
//! bounds, magic 2, CRC-32C, contiguous offsets) and stops at the first invalid, torn or
//! zero (padding) batch. Used for unclean-shutdown recovery of the active segment, index
//! rebuilds, producer-state replay and truncation.

use std::rc::Rc;

use glommio::io::DmaFile;

use crate::StorageError;
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::io::ChunkReader;

/// Read granularity of recovery scans.
pub const SCAN_CHUNK: usize = 1 << 20;

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// End position of the last valid batch.
    pub valid_end: u64,
    /// Offset after the last valid batch.
    pub next_offset: i64,
    /// Why it stopped before `limit`, if it did.
    pub stopped_early: bool,
}

/// Scans `[start, limit)` of `file` (a segment with base offset `segment_base`), whose first
/// batch must have base offset at least `expected_offset` (offsets increase, with gaps after a clean), calling `on_batch(header, position)` for each valid batch.
pub async fn scan_segment(
    file: Rc<DmaFile>,
    start: u64,
    limit: u64,
    segment_base: i64,
    expected_offset: i64,
    mut on_batch: impl FnMut(&BatchHeader, u64),
) -> Result<ScanEnd, StorageError> {
    let mut reader = ChunkReader::new(file, limit, SCAN_CHUNK);
    let mut pos = start;
    let mut next = expected_offset;
    let mut stopped_early = false;
    while pos < limit {
        let Some(head) = reader.get(pos, HEADER_LEN).await? else {
            stopped_early = true;
            break;
        };
        let h = match BatchHeader::parse(head) {
            Ok(h) => h,
            Err(e) => {
                log_stop(pos, head, &e);
                stopped_early = true;
                break;
            }
        };
        // Offsets increase; gaps are left by the cleaner.
        if h.base_offset < next {
            log::warn!(
                "batch at position {pos}: base offset {} where at least {next} was expected",
                h.base_offset
            );
            stopped_early = true;
            break;
        }
        if h.last_offset() - segment_base > u32::MAX as i64 {
            log::warn!(
                "batch at position {pos}: offset {} too far from segment base",
                h.last_offset()
            );
            stopped_early = true;
            break;
        }
        let Some(whole) = reader.get(pos, h.size).await? else {
            log::warn!(
                "torn batch at position {pos} ({} bytes past the end)",
                h.size
            );
            stopped_early = true;
            break;
        };
        if let Err(e) = h.validate(whole) {
            log::warn!("invalid batch at position {pos}: {e}");
            stopped_early = true;
            break;
        }
        on_batch(&h, pos);
        pos += h.size as u64;
        next = h.last_offset() + 1;
    }
    Ok(ScanEnd {
        valid_end: pos,
        next_offset: next,
        stopped_early,
    })
}

fn log_stop(pos: u64, head: &[u8], e: &str) {
    if head.iter().all(|&b| b == 0) {
        log::debug!("zero padding at position {pos}: end of log");
    } else {
        log::warn!("invalid batch header at position {pos}: {e}");
    }
}

/// Finds the batch containing `offset`, scanning headers from `start` (a batch boundary whose
/// base offset is <= offset) up to `limit`. Returns (position, header).
pub async fn find_batch(
    reader: &mut ChunkReader,
    start: u64,
    offset: i64,
) -> Result<Option<(u64, BatchHeader)>, StorageError> {
    let mut pos = start;
    while pos < reader.limit() {
        let Some(head) = reader.get(pos, HEADER_LEN).await? else {
            return Ok(None);
        };
        let h = BatchHeader::parse(head)
            .map_err(|e| StorageError::Corrupt(format!("batch header at {pos}: {e}")))?;
        if h.last_offset() >= offset {
            return Ok(Some((pos, h)));
        }
        pos += h.size as u64;
    }
    Ok(None)
}
