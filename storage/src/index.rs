//! Per-segment sparse indexes, kept in memory and persisted next to the segment:
//! - offset index (`.index`): relative offset u32 -> file position u32 of the batch starting
//!   there, one entry per `index_interval_bytes` appended;
//! - time index (`.timeindex`): entry (T, rel) means every record with offset < base + rel
//!   has timestamp <= T; T strictly increases.
//!
//! File format (big-endian): magic (4) | version u32 | [`SegmentMeta`] (40) | entry count u32 |
//! entries | CRC-32C u32 of everything before. The meta records the segment size the index
//! covers, so a stale index (segment grew/shrank after it was written) is detected.

/// What an index file knows about its segment (both files carry it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Segment (logical) size in bytes covered by this index.
    pub covered_size: u64,
    /// Offset after the last record of the segment.
    pub next_offset: i64,
    /// Largest batch maxTimestamp in the segment (-1 if none).
    pub max_ts: i64,
    /// Base offset and position of the first batch having `max_ts`.
    pub max_ts_batch_offset: i64,
    pub max_ts_batch_pos: u64,
}

const META_LEN: usize = 40;
const VERSION: u32 = 1;
const OFFSET_MAGIC: &[u8; 4] = b"TNOX";
const TIME_MAGIC: &[u8; 4] = b"TNTX";
/// Refuse index files above this size (a 4 GiB segment at 1 entry per 64 bytes).
pub const MAX_INDEX_FILE_BYTES: u64 = 1 << 30;

#[derive(Default, Debug, Clone)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, rel: u32, pos: u32) {
        if let Some(&(r, p)) = self.entries.last() {
            assert!(
                rel > r && pos > p,
                "offset index must grow: ({r},{p}) then ({rel},{pos})"
            );
        }
        self.entries.push((rel, pos));
    }

    /// Entry with the largest relative offset <= `rel`, or (0, 0).
    pub fn lookup(&self, rel: u32) -> (u32, u32) {
        let i = self.entries.partition_point(|&(r, _)| r <= rel);
        if i == 0 { (0, 0) } else { self.entries[i - 1] }
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Default, Debug, Clone)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds (ts, rel) if `ts` is larger than the last entry's timestamp.
    pub fn maybe_push(&mut self, ts: i64, rel: u32) {
        match self.entries.last() {
            Some(&(t, r)) if ts <= t || rel <= r => {}
            _ => self.entries.push((ts, rel)),
        }
    }

    /// Relative offset from which to scan for the first record with timestamp >= ts.
    pub fn lookup(&self, ts: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < ts);
        if i == 0 { 0 } else { self.entries[i - 1].1 }
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

fn encode(
    magic: &[u8; 4],
    meta: &SegmentMeta,
    n: usize,
    entry_len: usize,
    put: impl Fn(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + META_LEN + n * entry_len + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&meta.covered_size.to_be_bytes());
    out.extend_from_slice(&meta.next_offset.to_be_bytes());
    out.extend_from_slice(&meta.max_ts.to_be_bytes());
    out.extend_from_slice(&meta.max_ts_batch_offset.to_be_bytes());
    out.extend_from_slice(&meta.max_ts_batch_pos.to_be_bytes());
    out.extend_from_slice(&(n as u32).to_be_bytes());
    put(&mut out);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Validates framing and CRC; returns the meta and the entry bytes.
fn decode<'a>(magic: &[u8; 4], buf: &'a [u8], entry_len: usize) -> Option<(SegmentMeta, &'a [u8])> {
    let fixed = 8 + META_LEN + 4;
    if buf.len() < fixed + 4 || &buf[..4] != magic || u32_at(buf, 4) != VERSION {
        return None;
    }
    let body_end = buf.len() - 4;
    if crc32c::crc32c(&buf[..body_end]) != u32_at(buf, body_end) {
        return None;
    }
    let meta = SegmentMeta {
        covered_size: u64_at(buf, 8),
        next_offset: u64_at(buf, 16) as i64,
        max_ts: u64_at(buf, 24) as i64,
        max_ts_batch_offset: u64_at(buf, 32) as i64,
        max_ts_batch_pos: u64_at(buf, 40),
    };
    let n = u32_at(buf, 48) as usize;
    let entries = &buf[fixed..body_end];
    if entries.len() != n.checked_mul(entry_len)? {
        return None;
    }
    Some((meta, entries))
}

pub fn encode_offset_index(meta: &SegmentMeta, idx: &OffsetIndex) -> Vec<u8> {
    encode(OFFSET_MAGIC, meta, idx.entries.len(), 8, |out| {
        for &(r, p) in &idx.entries {
            out.extend_from_slice(&r.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
    })
}

pub fn decode_offset_index(buf: &[u8]) -> Option<(SegmentMeta, OffsetIndex)> {
    let (meta, raw) = decode(OFFSET_MAGIC, buf, 8)?;
    let mut idx = OffsetIndex::default();
    for e in raw.chunks_exact(8) {
        let (r, p) = (u32_at(e, 0), u32_at(e, 4));
        if let Some((lr, lp)) = idx.last()
            && (r <= lr || p <= lp)
        {
            return None;
        }
        if p as u64 >= meta.covered_size {
            return None;
        }
        idx.entries.push((r, p));
    }
    Some((meta, idx))
}

pub fn encode_time_index(meta: &SegmentMeta, idx: &TimeIndex) -> Vec<u8> {
    encode(TIME_MAGIC, meta, idx.entries.len(), 12, |out| {
        for &(t, r) in &idx.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&r.to_be_bytes());
        }
    })
}

pub fn decode_time_index(buf: &[u8]) -> Option<(SegmentMeta, TimeIndex)> {
    let (meta, raw) = decode(TIME_MAGIC, buf, 12)?;
    let mut idx = TimeIndex::default();
    for e in raw.chunks_exact(12) {
        let (t, r) = (u64_at(e, 0) as i64, u32_at(e, 8));
        if let Some(&(lt, lr)) = idx.entries.last()
            && (t <= lt || r <= lr)
        {
            return None;
        }
        idx.entries.push((t, r));
    }
    Some((meta, idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_lookup() {
        let meta = SegmentMeta {
            covered_size: 10_000,
            next_offset: 42,
            max_ts: 7,
            max_ts_batch_offset: 3,
            max_ts_batch_pos: 100,
        };
        let mut oi = OffsetIndex::default();
        oi.push(5, 4096);
        oi.push(9, 8200);
        let (m, oi2) = decode_offset_index(&encode_offset_index(&meta, &oi)).unwrap();
        assert_eq!(m, meta);
        assert_eq!(oi2.lookup(4), (0, 0));
        assert_eq!(oi2.lookup(5), (5, 4096));
        assert_eq!(oi2.lookup(100), (9, 8200));
        let mut ti = TimeIndex::default();
        ti.maybe_push(100, 5);
        ti.maybe_push(90, 6);
        ti.maybe_push(200, 9);
        let (_, ti2) = decode_time_index(&encode_time_index(&meta, &ti)).unwrap();
        assert_eq!(ti2.entry_count(), 2);
        assert_eq!(ti2.lookup(100), 0);
        assert_eq!(ti2.lookup(101), 5);
        assert_eq!(ti2.lookup(1000), 9);
        let mut bad = encode_offset_index(&meta, &oi);
        bad[20] ^= 1;
        assert!(decode_offset_index(&bad).is_none());
        assert!(decode_offset_index(&[1, 2, 3]).is_none());
    }
}
