//! RecordBatch v2 reader for consumers: walks the batches of a fetched `records` blob without
//! allocating (compressed batches are inflated first), calling back with each record's offset,
//! timestamp and value.

use anyhow::{Result, bail};
use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

/// What one pass over a `records` blob found.
#[derive(Default, Debug)]
pub struct Walk {
    /// The offset to fetch next (last complete batch's last offset + 1), if any batch was complete.
    pub next_offset: Option<i64>,
    /// Bytes of the complete batches walked (a truncated one at the end not included).
    pub batch_bytes: usize,
}

#[inline]
fn get_varint(b: &[u8], pos: &mut usize) -> Result<i64> {
    let mut v: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&byte) = b.get(*pos) else {
            bail!("truncated varint");
        };
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            bail!("varint too long");
        }
    }
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Walk the records of the uncompressed record section `recs` (count records).
fn walk_records<F: FnMut(i64, i64, &[u8])>(
    recs: &[u8],
    count: i32,
    base_offset: i64,
    base_ts: i64,
    f: &mut F,
) -> Result<()> {
    let mut pos = 0;
    for _ in 0..count {
        let len = get_varint(recs, &mut pos)? as usize;
        let end = pos + len;
        if end > recs.len() {
            bail!("record overruns its batch");
        }
        pos += 1; // attributes
        let ts_delta = get_varint(recs, &mut pos)?;
        let off_delta = get_varint(recs, &mut pos)?;
        let key_len = get_varint(recs, &mut pos)?;
        if key_len > 0 {
            pos += key_len as usize;
        }
        let val_len = get_varint(recs, &mut pos)?;
        let value = if val_len > 0 && pos + val_len as usize <= end {
            &recs[pos..pos + val_len as usize]
        } else {
            &[][..]
        };
        f(base_offset + off_delta, base_ts + ts_delta, value);
        pos = end;
    }
    Ok(())
}

fn inflate(codec: i16, data: Bytes) -> Result<Bytes> {
    let mut data = data;
    match codec {
        1 => Gzip::decompress(&mut data, |b| Ok(b.copy_to_bytes(b.remaining()))),
        2 => Snappy::decompress(&mut data, |b| Ok(b.copy_to_bytes(b.remaining()))),
        3 => Lz4::decompress(&mut data, |b| Ok(b.copy_to_bytes(b.remaining()))),
        4 => Zstd::decompress(&mut data, |b| Ok(b.copy_to_bytes(b.remaining()))),
        _ => bail!("unknown compression codec {codec}"),
    }
}

/// Call `f(offset, timestamp_ms, value)` for every record in `blob` at or after `from`.
/// A truncated batch at the end (partial fetch) is ignored; control batches are skipped.
pub fn walk<F: FnMut(i64, i64, &[u8])>(blob: &Bytes, from: i64, mut f: F) -> Result<Walk> {
    let mut out = Walk::default();
    let mut at = 0;
    while blob.len() - at >= 12 {
        let b = &blob[at..];
        let batch_len = be_i32(b, 8) as usize;
        let total = 12 + batch_len;
        if b.len() < total || total < crate::batch::HEADER_LEN {
            break;
        }
        let base_offset = be_i64(b, 0);
        if b[16] != 2 {
            bail!("record batch magic {} at offset {base_offset}", b[16]);
        }
        let attrs = i16::from_be_bytes([b[21], b[22]]);
        let last_delta = be_i32(b, 23);
        let base_ts = be_i64(b, 27);
        let count = be_i32(b, 57);
        let is_control = attrs & 0x20 != 0;
        if !is_control {
            let mut cb = |off: i64, ts: i64, v: &[u8]| {
                if off >= from {
                    f(off, ts, v)
                }
            };
            let codec = attrs & 0x7;
            if codec == 0 {
                walk_records(&b[61..total], count, base_offset, base_ts, &mut cb)?;
            } else {
                let raw = inflate(codec, blob.slice(at + 61..at + total))?;
                walk_records(&raw, count, base_offset, base_ts, &mut cb)?;
            }
        }
        out.next_offset = Some(base_offset + last_delta as i64 + 1);
        out.batch_bytes += total;
        at += total;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;
    use crate::cli::Compression;

    #[test]
    fn round_trip_and_partial_tail() {
        for c in [Compression::None, Compression::Snappy, Compression::Gzip] {
            let mut b = BatchBuilder::new(1024);
            for i in 0..3u64 {
                b.append(1_000_000_000 + i, None, &[1u8; 32]);
            }
            let one = b.seal(c, &mut vec![]).unwrap();
            let mut blob = one.to_vec();
            blob.extend_from_slice(&one[..20]); // truncated second batch
            let mut seen = vec![];
            let w = walk(&Bytes::from(blob), 1, |off, _, v| {
                seen.push((off, u64::from_le_bytes(v[..8].try_into().unwrap())))
            })
            .unwrap();
            assert_eq!(seen, vec![(1, 1_000_000_001), (2, 1_000_000_002)]);
            assert_eq!(w.next_offset, Some(3));
            assert_eq!(w.batch_bytes, one.len());
        }
    }
}
