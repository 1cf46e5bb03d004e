//! Record-level view and filtering of one RecordBatch v2 for the cleaner: walking its records
//! (offset, timestamp, key, whether the value is null), and rebuilding the batch with a subset
//! of them as Kafka's `MemoryRecords.filterTo` does for magic 2: same base offset,
//! lastOffsetDelta, timestamps, producer id/epoch/base sequence and attributes (so sequence
//! numbers stay meaningful and the codec is kept), fewer records (offset deltas keep their gaps),
//! a new length and CRC. An empty batch (no records, header only) keeps a producer's last
//! sequence in the log when all of its records are obsolete.

use bytes::BytesMut;
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::{self, BatchHeader, HEADER_LEN};

/// One record of a batch, as the cleaner needs it.
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// None: a tombstone.
    pub value: Option<&'a [u8]>,
}

fn varlong(buf: &[u8], pos: &mut usize) -> Result<i64, String> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    Err("varint too long".into())
}

fn bytes_at<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, String> {
    let len = varlong(buf, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|e| *e <= buf.len())
        .ok_or("field runs past its record")?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(Some(s))
}

/// The decompressed records of `batch` and the byte range of each record in it.
pub struct Records {
    data: bytes::Bytes,
    spans: Vec<(usize, usize)>,
}

impl Records {
    pub fn parse(whole: &[u8], h: &BatchHeader) -> Result<Records, String> {
        let data = batch::records_data(whole, h)?;
        let mut spans = Vec::with_capacity(h.record_count.max(0) as usize);
        let mut pos = 0usize;
        for _ in 0..h.record_count {
            let start = pos;
            let len = varlong(&data, &mut pos)?;
            if len <= 0 || len as u64 > (data.len() - pos) as u64 {
                return Err(format!("invalid record length {len}"));
            }
            pos += len as usize;
            spans.push((start, pos));
        }
        Ok(Records { data, spans })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Record `i` (decoded fields; header values are not looked at).
    pub fn get(&self, i: usize, h: &BatchHeader) -> Result<RecordView<'_>, String> {
        let (start, end) = self.spans[i];
        let rec = &self.data[start..end];
        let mut p = 0;
        varlong(rec, &mut p)?; // length
        p += 1; // attributes
        let ts_delta = varlong(rec, &mut p)?;
        let off_delta = varlong(rec, &mut p)?;
        let key = bytes_at(rec, &mut p)?;
        let value = bytes_at(rec, &mut p)?;
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        Ok(RecordView {
            offset: h.base_offset.wrapping_add(off_delta),
            timestamp,
            key,
            value,
        })
    }

    /// The batch rebuilt with only the records whose index is in `keep` (increasing).
    pub fn rebuild(
        &self,
        whole: &[u8],
        h: &BatchHeader,
        keep: &[usize],
    ) -> Result<Vec<u8>, String> {
        let mut raw = Vec::new();
        for &i in keep {
            let (s, e) = self.spans[i];
            raw.extend_from_slice(&self.data[s..e]);
        }
        let body = compress(h.compression(), raw)?;
        Ok(assemble(whole, keep.len() as i32, &body))
    }
}

fn compress(codec: u8, raw: Vec<u8>) -> Result<Vec<u8>, String> {
    if codec == 0 {
        return Ok(raw);
    }
    let mut out = BytesMut::new();
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(&raw);
        Ok(())
    };
    let r = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        c => return Err(format!("unknown compression codec {c}")),
    };
    r.map_err(|e| format!("compression failed: {e:#}"))?;
    Ok(out.to_vec())
}

/// Header of `whole` with a new record count and records body, new length and CRC.
fn assemble(whole: &[u8], count: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&whole[..HEADER_LEN]);
    out.extend_from_slice(body);
    let batch_length = (out.len() - batch::LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The batch with no records at all (header only, no codec, as Kafka writes it).
pub fn empty_batch(whole: &[u8]) -> Vec<u8> {
    let mut head = whole[..HEADER_LEN].to_vec();
    let attrs = i16::from_be_bytes([head[21], head[22]]) & !0x7;
    head[21..23].copy_from_slice(&attrs.to_be_bytes());
    assemble(&head, 0, &[])
}
