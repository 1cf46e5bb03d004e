//! Validation of the records inside a RecordBatch v2, as Kafka's LogValidator does on append:
//! the records (decompressed if needed) are walked one by one and must be exactly
//! `recordCount` records with offset deltas 0, 1, ..., n-1 (so that `lastOffsetDelta` is the
//! real last one), each of the length it declares, with nothing left after the last.
//!
//! Compressed data is decompressed as a stream and never materialised: memory stays at a small
//! buffer plus the codec's own state, and the decompressed bytes read are bounded by a limit
//! (`LogConfig::max_decompressed_batch_bytes`), so a zip bomb costs at most that much work.

use std::io::Read;

use crate::batch::{BatchHeader, HEADER_LEN};

/// Why a batch's records were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsError {
    /// The compressed data cannot be decoded (Kafka: CORRUPT_MESSAGE).
    Corrupt(String),
    /// The records contradict the batch header or their own lengths, or decompress to more
    /// than the limit (Kafka: INVALID_RECORD).
    Invalid(String),
    /// Records without a key (their indexes in the batch) where keys are required: a
    /// compacted topic (Kafka: INVALID_RECORD with per-record errors, KIP-467).
    NullKeys(Vec<i32>),
}

const STREAM_BUF: usize = 32 << 10;
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// A source of record bytes: the batch body itself, or a decompressing stream.
trait Source {
    /// The next byte, or None at the end of the data.
    fn byte(&mut self) -> Result<Option<u8>, RecordsError>;
    /// Skips `n` bytes; false if the data ends first.
    fn skip(&mut self, n: u64) -> Result<bool, RecordsError>;
}

struct Slice<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Source for Slice<'_> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        let b = self.data.get(self.pos).copied();
        self.pos += b.is_some() as usize;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<bool, RecordsError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Ok(false);
        }
        self.pos += n as usize;
        Ok(true)
    }
}

/// A decompressing reader, buffered, that refuses to produce more than `max` bytes.
struct Stream<R: Read> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    total: u64,
    max: u64,
}

impl<R: Read> Stream<R> {
    fn new(inner: R, max: usize) -> Self {
        Stream {
            inner,
            buf: vec![0u8; STREAM_BUF].into_boxed_slice(),
            pos: 0,
            len: 0,
            total: 0,
            max: max as u64,
        }
    }

    fn too_large(&self) -> RecordsError {
        RecordsError::Invalid(format!(
            "records decompress to more than the {} byte limit",
            self.max
        ))
    }

    /// Refills the buffer; false at the end of the data.
    fn fill(&mut self) -> Result<bool, RecordsError> {
        let n = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                    return Err(self.too_large());
                }
                Err(e) => return Err(RecordsError::Corrupt(format!("decompression failed: {e}"))),
            }
        };
        self.total += n as u64;
        if self.total > self.max {
            return Err(self.too_large());
        }
        self.pos = 0;
        self.len = n;
        Ok(n > 0)
    }
}

impl<R: Read> Source for Stream<R> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        if self.pos == self.len && !self.fill()? {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    fn skip(&mut self, mut n: u64) -> Result<bool, RecordsError> {
        loop {
            let here = ((self.len - self.pos) as u64).min(n);
            self.pos += here as usize;
            n -= here;
            if n == 0 {
                return Ok(true);
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
    }
}

/// Snappy as Kafka clients write it: xerial framing (magic header, then blocks of a 4-byte
/// big-endian length and one raw snappy block), or one raw snappy block. Each block is
/// decompressed whole, so its declared size is checked against what is left of the limit first.
struct SnappyReader<'a> {
    data: &'a [u8],
    framed: bool,
    out: Vec<u8>,
    out_pos: usize,
    budget: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8], budget: usize) -> Self {
        let framed = data.len() >= XERIAL_HEADER_LEN && &data[..8] == XERIAL_MAGIC;
        SnappyReader {
            data: if framed {
                &data[XERIAL_HEADER_LEN..]
            } else {
                data
            },
            framed,
            out: Vec::new(),
            out_pos: 0,
            budget,
            decoder: snap::raw::Decoder::new(),
        }
    }

    fn next_block(&mut self) -> std::io::Result<bool> {
        if self.data.is_empty() {
            return Ok(false);
        }
        let block = if self.framed {
            let Some(len) = self.data.get(..4) else {
                return Err(std::io::Error::other("truncated snappy block length"));
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let block = self
                .data
                .get(4..4usize.saturating_add(len))
                .ok_or_else(|| std::io::Error::other("truncated snappy block"))?;
            self.data = &self.data[4 + len..];
            block
        } else {
            std::mem::take(&mut self.data)
        };
        let n = snap::raw::decompress_len(block).map_err(std::io::Error::other)?;
        if n > self.budget {
            return Err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("a snappy block declares {n} bytes"),
            ));
        }
        self.budget -= n;
        self.out.clear();
        self.out.resize(n, 0);
        self.decoder
            .decompress(block, &mut self.out)
            .map_err(std::io::Error::other)?;
        self.out_pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out_pos == self.out.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

fn read_uvarint<S: Source>(s: &mut S) -> Result<Option<u64>, RecordsError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(b) = s.byte()? else {
            return Ok(None);
        };
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(RecordsError::Invalid("varint too long".into()))
}

fn zigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Reads a varint inside a record, counting its bytes into `used`.
fn field<S: Source>(s: &mut S, used: &mut u64, what: &str) -> Result<i64, RecordsError> {
    let mut counting = Counting { inner: s, n: 0 };
    let v = read_uvarint(&mut counting)?
        .ok_or_else(|| RecordsError::Invalid(format!("record truncated in its {what}")))?;
    *used += counting.n;
    Ok(zigzag(v))
}

struct Counting<'a, S: Source> {
    inner: &'a mut S,
    n: u64,
}

impl<S: Source> Source for Counting<'_, S> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        let b = self.inner.byte()?;
        self.n += b.is_some() as u64;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<bool, RecordsError> {
        let ok = self.inner.skip(n)?;
        self.n += n;
        Ok(ok)
    }
}

/// Skips a length-prefixed field (key, value, header key or value); -1 = null. Returns
/// whether it was null.
fn bytes_field<S: Source>(
    s: &mut S,
    used: &mut u64,
    len_limit: u64,
    what: &str,
    nullable: bool,
) -> Result<bool, RecordsError> {
    let len = field(s, used, what)?;
    if len < 0 {
        if nullable && len == -1 {
            return Ok(true);
        }
        return Err(RecordsError::Invalid(format!(
            "invalid {what} length {len}"
        )));
    }
    let len = len as u64;
    if *used + len > len_limit || !s.skip(len)? {
        return Err(RecordsError::Invalid(format!(
            "{what} of {len} bytes runs past its record"
        )));
    }
    *used += len;
    Ok(false)
}

fn walk<S: Source>(s: &mut S, h: &BatchHeader, keys_required: bool) -> Result<(), RecordsError> {
    let mut null_keys = Vec::new();
    let invalid = |m: String| Err(RecordsError::Invalid(m));
    for i in 0..h.record_count as i64 {
        let Some(len) = read_uvarint(s)?.map(zigzag) else {
            return invalid(format!(
                "batch declares {} records but holds {i}",
                h.record_count
            ));
        };
        if len <= 0 {
            return invalid(format!("record {i}: invalid length {len}"));
        }
        let len = len as u64;
        // attributes (1 byte), timestampDelta, offsetDelta, key, value, headers
        let mut used = 1u64;
        if s.byte()?.is_none() {
            return invalid(format!("record {i} truncated"));
        }
        field(s, &mut used, "timestamp delta")?;
        let delta = field(s, &mut used, "offset delta")?;
        if delta != i {
            return invalid(format!(
                "record {i} has offset delta {delta}: inner offsets must be 0..{}",
                h.record_count
            ));
        }
        if bytes_field(s, &mut used, len, "key", true)? && keys_required {
            null_keys.push(i as i32);
        }
        bytes_field(s, &mut used, len, "value", true)?;
        let headers = field(s, &mut used, "header count")?;
        if headers < 0 {
            return invalid(format!("record {i}: invalid header count {headers}"));
        }
        for _ in 0..headers {
            if used >= len {
                return invalid(format!("record {i}: headers run past the record"));
            }
            bytes_field(s, &mut used, len, "header key", false)?;
            bytes_field(s, &mut used, len, "header value", true)?;
        }
        if used != len {
            return invalid(format!(
                "record {i}: declared {len} bytes, its fields take {used}"
            ));
        }
    }
    if s.byte()?.is_some() {
        return invalid(format!(
            "bytes left after the {} declared records",
            h.record_count
        ));
    }
    if !null_keys.is_empty() {
        return Err(RecordsError::NullKeys(null_keys));
    }
    Ok(())
}

/// Validates the records of one complete batch (`batch` is exactly the batch, header checked,
/// CRC verified), decompressing at most `max_decompressed` bytes. With `keys_required`
/// (compacted topics) records without a key are refused ([`RecordsError::NullKeys`]).
pub fn validate_records(
    batch: &[u8],
    h: &BatchHeader,
    max_decompressed: usize,
    keys_required: bool,
) -> Result<(), RecordsError> {
    if h.record_count as i64 != h.last_offset_delta as i64 + 1 {
        return Err(RecordsError::Invalid(format!(
            "record count {} does not match lastOffsetDelta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    let body = &batch[HEADER_LEN..];
    let corrupt = |e: std::io::Error| RecordsError::Corrupt(format!("decompression failed: {e}"));
    match h.compression() {
        0 => walk(&mut Slice { data: body, pos: 0 }, h, keys_required),
        1 => walk(
            &mut Stream::new(flate2::bufread::GzDecoder::new(body), max_decompressed),
            h,
            keys_required,
        ),
        2 => walk(
            &mut Stream::new(SnappyReader::new(body, max_decompressed), max_decompressed),
            h,
            keys_required,
        ),
        3 => walk(
            &mut Stream::new(lz4::Decoder::new(body).map_err(corrupt)?, max_decompressed),
            h,
            keys_required,
        ),
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            // zstd's default limit (128 MiB windows), explicit: the window is allocated, but
            // only the decompressed bytes (bounded above) are ever touched.
            d.window_log_max(27).map_err(corrupt)?;
            walk(&mut Stream::new(d, max_decompressed), h, keys_required)
        }
        c => Err(RecordsError::Corrupt(format!(
            "unknown compression codec {c}"
        ))),
    }
}
