//! RecordBatch v2 (magic 2): header parsing, validation, in-place patching of the fields the
//! broker owns (baseOffset, partitionLeaderEpoch: both outside the CRC), and decoding of the
//! per-record (offset, timestamp) pairs (decompressing if needed) for timestamp lookups.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17 (CRC-32C over @21..end), attributes i16 @21,
//! lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43,
//! producerEpoch i16 @51, baseSequence i32 @53, record count i32 @57, records @61.

use bytes::Bytes;

/// baseOffset + batchLength: the bytes not counted by batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Smallest legal batchLength value (a header with no records).
pub const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;
/// Upper bound on decompressed record data we are willing to materialise for a timestamp
/// lookup (where the codec lets us know the size up front).
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

const OFF_LENGTH: usize = 8;
const OFF_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTR: usize = 21;
const OFF_LAST_DELTA: usize = 23;
const OFF_BASE_TS: usize = 27;
const OFF_MAX_TS: usize = 35;
const OFF_PID: usize = 43;
const OFF_PEPOCH: usize = 51;
const OFF_BASE_SEQ: usize = 53;
const OFF_COUNT: usize = 57;

/// The fixed header of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes, including [`LOG_OVERHEAD`].
    pub size: usize,
    pub leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Kafka's sequence increment: wraps from i32::MAX to 0.
pub fn increment_sequence(seq: i32, inc: i32) -> i32 {
    debug_assert!(seq >= 0 && inc >= 0);
    if seq > i32::MAX - inc {
        inc - (i32::MAX - seq) - 1
    } else {
        seq + inc
    }
}

impl BatchHeader {
    /// Parses the fixed header at the start of `buf` (which may hold more, or less than
    /// the whole batch). Checks only what the header alone can tell: length bounds, magic,
    /// non-negative lastOffsetDelta and record count.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, String> {
        if buf.len() < HEADER_LEN {
            return Err(format!("truncated batch header ({} bytes)", buf.len()));
        }
        let batch_length = be_i32(buf, OFF_LENGTH);
        if batch_length < MIN_BATCH_LENGTH as i32 {
            return Err(format!("invalid batchLength {batch_length}"));
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != 2 {
            return Err(format!("unsupported magic {magic}"));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            size: batch_length as usize + LOG_OVERHEAD,
            leader_epoch: be_i32(buf, OFF_EPOCH),
            crc: u32::from_be_bytes([
                buf[OFF_CRC],
                buf[OFF_CRC + 1],
                buf[OFF_CRC + 2],
                buf[OFF_CRC + 3],
            ]),
            attributes: be_i16(buf, OFF_ATTR),
            last_offset_delta: be_i32(buf, OFF_LAST_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TS),
            max_timestamp: be_i64(buf, OFF_MAX_TS),
            producer_id: be_i64(buf, OFF_PID),
            producer_epoch: be_i16(buf, OFF_PEPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQ),
            record_count: be_i32(buf, OFF_COUNT),
        };
        if h.last_offset_delta < 0 {
            return Err(format!("negative lastOffsetDelta {}", h.last_offset_delta));
        }
        // Zero is legal on disk: the cleaner keeps a producer's last batch as an empty one
        // (appends still need recordCount == lastOffsetDelta + 1, see `records`).
        if h.record_count < 0 {
            return Err(format!("invalid record count {}", h.record_count));
        }
        Ok(h)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & (1 << 3) != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }

    /// Last sequence number of the batch (wrapping like Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Validation of one complete batch as framed bytes (`buf` must be exactly the batch):
    /// length, CRC, codec. What recovery checks; appends check the records too
    /// (`records::validate_records`).
    pub fn validate(&self, buf: &[u8]) -> Result<(), String> {
        if buf.len() != self.size {
            return Err(format!(
                "batch length {} does not match buffer {}",
                self.size,
                buf.len()
            ));
        }
        let actual = crc32c::crc32c(&buf[OFF_ATTR..]);
        if actual != self.crc {
            return Err(format!(
                "CRC mismatch (stored {:#010x}, computed {actual:#010x})",
                self.crc
            ));
        }
        if self.compression() > 4 {
            return Err(format!("unknown compression codec {}", self.compression()));
        }
        Ok(())
    }
}

/// Overwrites baseOffset and partitionLeaderEpoch (both outside the CRC).
pub fn patch(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(buf.len() >= HEADER_LEN, "patching a short batch");
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[OFF_EPOCH..OFF_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

fn read_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, String> {
    let u = read_uvarint(buf, pos)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// Checks the declared uncompressed size of snappy data (xerial framing or raw) before
/// decompressing it, so that a hostile batch cannot make us allocate gigabytes.
fn check_snappy_size(data: &[u8]) -> Result<(), String> {
    const XERIAL: &[u8; 8] = b"\x82SNAPPY\x00";
    let mut total: u64 = 0;
    if data.len() >= 16 && &data[..8] == XERIAL {
        let mut pos = 16;
        while pos < data.len() {
            let Some(len_bytes) = data.get(pos..pos + 4) else {
                return Err("truncated snappy block length".into());
            };
            let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                as usize;
            pos += 4;
            let block = data
                .get(pos..pos.saturating_add(len))
                .ok_or("truncated snappy block")?;
            let mut p = 0;
            total = total.saturating_add(read_uvarint(block, &mut p)?);
            pos += len;
        }
    } else {
        let mut p = 0;
        total = read_uvarint(data, &mut p)?;
    }
    if total > MAX_DECOMPRESSED_BYTES as u64 {
        return Err(format!("snappy data would decompress to {total} bytes"));
    }
    Ok(())
}

/// The record data of a batch (after the header), decompressed.
pub(crate) fn records_data(batch: &[u8], h: &BatchHeader) -> Result<Bytes, String> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let body = batch
        .get(HEADER_LEN..h.size)
        .ok_or("batch shorter than its header says")?;
    let mut src = Bytes::copy_from_slice(body);
    let out = match h.compression() {
        0 => return Ok(src),
        1 => Gzip::decompress(&mut src, |b: &mut Bytes| Ok(std::mem::take(b))),
        2 => {
            check_snappy_size(body)?;
            Snappy::decompress(&mut src, |b: &mut Bytes| Ok(std::mem::take(b)))
        }
        3 => Lz4::decompress(&mut src, |b: &mut Bytes| Ok(std::mem::take(b))),
        4 => Zstd::decompress(&mut src, |b: &mut Bytes| Ok(std::mem::take(b))),
        c => return Err(format!("unknown compression codec {c}")),
    };
    out.map_err(|e| format!("decompression failed: {e:#}"))
}

/// Returns the first record (offset, timestamp) of `batch` for which `pred(offset,
/// timestamp)` holds. With LogAppendTime every record's timestamp is the batch maxTimestamp.
/// `batch` must be one complete batch.
pub fn find_record(
    batch: &[u8],
    h: &BatchHeader,
    mut pred: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, String> {
    if h.is_log_append_time() {
        let first = (h.base_offset, h.max_timestamp);
        return Ok(pred(first.0, first.1).then_some(first));
    }
    let data = records_data(batch, h)?;
    let mut pos = 0usize;
    // Do not trust record_count for allocation; walk the bytes.
    for _ in 0..h.record_count {
        if pos >= data.len() {
            break;
        }
        let len = read_varlong(&data, &mut pos)?;
        if len < 0 || len as u64 > (data.len() - pos) as u64 {
            return Err(format!("invalid record length {len}"));
        }
        let end = pos + len as usize;
        let rec = &data[..end];
        let mut p = pos + 1; // attributes
        let ts_delta = read_varlong(rec, &mut p)?;
        let off_delta = read_varlong(rec, &mut p)?;
        let offset = h.base_offset.wrapping_add(off_delta);
        let ts = h.base_timestamp.wrapping_add(ts_delta);
        if pred(offset, ts) {
            return Ok(Some((offset, ts)));
        }
        pos = end;
    }
    Ok(None)
}
