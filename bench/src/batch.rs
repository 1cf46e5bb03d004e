//! RecordBatch v2 builder for one partition: records are appended straight into the batch buffer
//! (no per-record allocation); `seal` fills in the 61-byte header and CRC-32C, compressing the
//! record section first when asked to, and copies the batch out (the buffer is reused).

use crate::cli::Compression;
use anyhow::Result;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

pub const HEADER_LEN: usize = 61;

pub struct BatchBuilder {
    buf: Vec<u8>,
    count: i32,
    base_ts_ms: i64,
    max_ts_ms: i64,
    /// Intended send time (ns) of each record, for produce latency at the ack.
    pub times: Vec<u64>,
    cap: usize,
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn varint_len(v: i64) -> usize {
    let mut z = zigzag(v);
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

impl BatchBuilder {
    pub fn new(cap: usize) -> Self {
        let mut b = BatchBuilder {
            buf: Vec::new(),
            count: 0,
            base_ts_ms: 0,
            max_ts_ms: 0,
            times: Vec::new(),
            cap,
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.cap + 256);
        }
        self.buf.clear();
        self.buf.resize(HEADER_LEN, 0);
        self.count = 0;
        self.times.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn count(&self) -> i32 {
        self.count
    }

    /// Append one record whose value is `payload` with its first 8 bytes replaced by `t_ns`
    /// (little endian) when it is long enough; CreateTime is `t_ns` in milliseconds.
    #[inline]
    pub fn append(&mut self, t_ns: u64, key: Option<&[u8]>, payload: &[u8]) {
        let ts_ms = (t_ns / 1_000_000) as i64;
        if self.count == 0 {
            self.base_ts_ms = ts_ms;
            self.max_ts_ms = ts_ms;
        }
        self.max_ts_ms = self.max_ts_ms.max(ts_ms);
        let ts_delta = ts_ms - self.base_ts_ms;
        let off_delta = self.count as i64;
        let key_len = key.map_or(-1, |k| k.len() as i64);
        let val_len = payload.len() as i64;
        let body = 1
            + varint_len(ts_delta)
            + varint_len(off_delta)
            + varint_len(key_len)
            + key.map_or(0, |k| k.len())
            + varint_len(val_len)
            + payload.len()
            + 1;
        let b = &mut self.buf;
        put_varint(b, body as i64);
        b.push(0); // attributes
        put_varint(b, ts_delta);
        put_varint(b, off_delta);
        put_varint(b, key_len);
        if let Some(k) = key {
            b.extend_from_slice(k);
        }
        put_varint(b, val_len);
        if payload.len() >= 8 {
            b.extend_from_slice(&t_ns.to_le_bytes());
            b.extend_from_slice(&payload[8..]);
        } else {
            b.extend_from_slice(payload);
        }
        b.push(0); // no headers
        self.count += 1;
        self.times.push(t_ns);
    }

    /// Finish the batch: returns its bytes and appends the records' intended times to `times`;
    /// the builder is empty again.
    pub fn seal(&mut self, compression: Compression, times: &mut Vec<u64>) -> Result<Bytes> {
        let mut compressed;
        let mut buf = &mut self.buf;
        if compression != Compression::None {
            let mut out = BytesMut::with_capacity(buf.len());
            out.put_slice(&buf[..HEADER_LEN]);
            let recs = &buf[HEADER_LEN..];
            let f = |tmp: &mut BytesMut| -> Result<()> {
                tmp.put_slice(recs);
                Ok(())
            };
            match compression {
                Compression::Gzip => Gzip::compress(&mut out, f)?,
                Compression::Snappy => Snappy::compress(&mut out, f)?,
                Compression::Lz4 => Lz4::compress(&mut out, f)?,
                Compression::Zstd => Zstd::compress(&mut out, f)?,
                Compression::None => unreachable!(),
            }
            compressed = out.to_vec();
            buf = &mut compressed;
        }
        let batch_len = (buf.len() - 12) as i32;
        buf[0..8].copy_from_slice(&0i64.to_be_bytes());
        buf[8..12].copy_from_slice(&batch_len.to_be_bytes());
        buf[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        buf[16] = 2; // magic
        buf[21..23].copy_from_slice(&compression.codec().to_be_bytes());
        buf[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        buf[27..35].copy_from_slice(&self.base_ts_ms.to_be_bytes());
        buf[35..43].copy_from_slice(&self.max_ts_ms.to_be_bytes());
        buf[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producer id
        buf[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        buf[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // base sequence
        buf[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[21..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        let bytes = Bytes::copy_from_slice(buf);
        times.extend_from_slice(&self.times);
        self.reset();
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn decodes_with_kafka_protocol() {
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let mut b = BatchBuilder::new(4096);
            let payload = vec![7u8; 100];
            b.append(1_700_000_000_123_456_789, Some(b"k1"), &payload);
            b.append(1_700_000_000_125_000_000, None, &payload);
            let mut times = vec![];
            let bytes = b.seal(c, &mut times).unwrap();
            assert_eq!(times.len(), 2);
            let mut buf = bytes.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 2);
            let r = &set.records[1];
            assert_eq!(r.offset, 1);
            assert_eq!(r.timestamp, 1_700_000_000_125);
            let v = r.value.as_ref().unwrap();
            assert_eq!(&v[..8], &1_700_000_000_125_000_000u64.to_le_bytes());
            assert_eq!(set.records[0].key.as_deref(), Some(&b"k1"[..]));
        }
    }
}
