//! The cleaner's key -> latest offset map, in a fixed memory budget (Kafka's
//! `SkimpyOffsetMap`, sized by `log.cleaner.dedupe.buffer.size`): an open-addressing table
//! allocated once, each slot a 128-bit hash of the key (xxh3) and an offset. Keys themselves
//! are never stored, so memory is `slots * 24` bytes whatever the key sizes; two keys
//! colliding on 128 bits are treated as one (as Kafka does with MD5). The table is filled to
//! at most [`LOAD_FACTOR`] of its slots; [`OffsetMap::is_full`] tells the cleaner to stop
//! building and clean what it has (a partition with more keys is cleaned in several passes).

/// Bytes of one slot: hash (16) + offset (8).
pub const SLOT_BYTES: usize = 24;
/// Fraction of the slots the map fills before it reports full (Kafka's
/// `log.cleaner.io.buffer.load.factor` default).
pub const LOAD_FACTOR: f64 = 0.9;

const EMPTY: i64 = -1;

pub struct OffsetMap {
    hashes: Vec<[u64; 2]>,
    offsets: Vec<i64>,
    used: usize,
    max_entries: usize,
}

fn hash(key: &[u8]) -> [u64; 2] {
    let h = xxhash_rust::xxh3::xxh3_128(key);
    [h as u64, (h >> 64) as u64]
}

impl OffsetMap {
    /// A map using at most `budget_bytes` (at least 2 slots).
    pub fn with_budget(budget_bytes: usize) -> OffsetMap {
        let slots = (budget_bytes / SLOT_BYTES).max(2);
        OffsetMap {
            hashes: vec![[0; 2]; slots],
            offsets: vec![EMPTY; slots],
            used: 0,
            max_entries: ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1),
        }
    }

    /// Most distinct keys the map takes before it is full.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Whether `more` further distinct keys might not fit.
    pub fn would_overflow(&self, more: usize) -> bool {
        self.used.saturating_add(more) > self.max_entries
    }

    pub fn is_full(&self) -> bool {
        self.used >= self.max_entries
    }

    pub fn clear(&mut self) {
        self.offsets.fill(EMPTY);
        self.used = 0;
    }

    fn slot(&self, h: &[u64; 2]) -> usize {
        let n = self.hashes.len();
        let mut i = (h[0] as usize) % n;
        // Linear probing; the load factor keeps an empty slot in every probe sequence.
        while self.offsets[i] != EMPTY && self.hashes[i] != *h {
            i = (i + 1) % n;
        }
        i
    }

    /// Records `offset` as the latest for `key` (offsets are put in increasing order). A new
    /// key on a full map is a bug of the caller, which checks [`Self::would_overflow`] first.
    pub fn put(&mut self, key: &[u8], offset: i64) {
        assert!(offset >= 0, "negative offset {offset}");
        let h = hash(key);
        let i = self.slot(&h);
        if self.offsets[i] == EMPTY {
            assert!(self.used < self.max_entries, "offset map overfilled");
            self.used += 1;
            self.hashes[i] = h;
        }
        self.offsets[i] = offset;
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let h = hash(key);
        let i = self.slot(&h);
        (self.offsets[i] != EMPTY).then_some(self.offsets[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_wins_and_budget_bounds_entries() {
        let mut m = OffsetMap::with_budget(24 * 100);
        assert_eq!(m.max_entries(), 90);
        for i in 0..90i64 {
            m.put(format!("k{}", i % 45).as_bytes(), i);
        }
        assert_eq!(m.len(), 45);
        assert_eq!(m.get(b"k3"), Some(48));
        assert_eq!(m.get(b"nope"), None);
        for i in 45..90 {
            assert!(!m.is_full());
            m.put(format!("k{i}").as_bytes(), 100 + i);
        }
        assert!(m.is_full() && m.would_overflow(1));
        m.clear();
        assert!(m.is_empty() && m.get(b"k3").is_none());
    }
}
