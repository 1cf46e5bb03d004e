//! The cleaner's key -> latest offset map, in a fixed memory budget (Kafka's
//! `SkimpyOffsetMap`, sized by `log.cleaner.dedupe.buffer.size`): an open-addressing table
//! allocated once, each slot a 128-bit hash of the key (xxh3) and an offset side by side. Keys
//! themselves are never stored, so memory is `slots * 24` bytes whatever the key sizes; two
//! keys colliding on 128 bits are treated as one (as Kafka does with MD5). The table is filled
//! to at most [`LOAD_FACTOR`] of its slots; [`OffsetMap::is_full`] tells the cleaner to stop
//! building and clean what it has (a partition with more keys is cleaned in several passes).

/// Bytes of one slot: hash (16) + offset (8).
pub const SLOT_BYTES: usize = 24;
/// Fraction of the slots the map fills before it reports full (Kafka's
/// `log.cleaner.io.buffer.load.factor` default).
pub const LOAD_FACTOR: f64 = 0.9;

/// One slot: the key's 128-bit hash (words 0 and 1) and `offset + 1` (word 2; 0: empty), side
/// by side so a probe mostly touches one cache line, not one per array. Zero is empty, so the
/// table is allocated zeroed (the kernel hands out zero pages lazily: no fill pass).
type Slot = [u64; 3];

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

pub struct OffsetMap {
    slots: Vec<Slot>,
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
            slots: vec![[0; 3]; slots],
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
        self.slots.fill([0; 3]);
        self.used = 0;
    }

    /// Where the probe for `h` starts: the hash's high bits scaled to [0, n) (a multiply,
    /// not a division).
    fn home(&self, h: &[u64; 2]) -> usize {
        ((u128::from(h[0]) * self.slots.len() as u128) >> 64) as usize
    }

    fn slot(&self, h: &[u64; 2]) -> usize {
        let n = self.slots.len();
        let mut i = self.home(h);
        // Linear probing; the load factor keeps an empty slot in every probe sequence.
        loop {
            let s = &self.slots[i];
            if s[2] == 0 || (s[0], s[1]) == (h[0], h[1]) {
                return i;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Records `offset` as the latest for `key` (offsets are put in increasing order). A new
    /// key on a full map is a bug of the caller, which checks [`Self::would_overflow`] first.
    pub fn put(&mut self, key: &[u8], offset: i64) {
        assert!(offset >= 0, "negative offset {offset}");
        let h = hash(key);
        let i = self.slot(&h);
        let s = &mut self.slots[i];
        if s[2] == 0 {
            assert!(self.used < self.max_entries, "offset map overfilled");
            self.used += 1;
            (s[0], s[1]) = (h[0], h[1]);
        }
        s[2] = offset as u64 + 1;
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let h = hash(key);
        let s = &self.slots[self.slot(&h)];
        (s[2] != 0).then(|| (s[2] - 1) as i64)
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

    #[test]
    fn offset_zero_is_a_value_and_probes_wrap_around_the_table() {
        // 10 slots, 9 keys: some probe sequences run off the end and wrap to slot 0.
        let mut m = OffsetMap::with_budget(SLOT_BYTES * 10);
        assert_eq!(m.get(b"a"), None);
        m.put(b"a", 0);
        assert_eq!(m.get(b"a"), Some(0), "offset 0 is not an empty slot");
        for i in 1..9i64 {
            m.put(format!("key-{i}").as_bytes(), i * 1000);
        }
        assert!(m.is_full());
        let wrapped = std::iter::once("a".to_string())
            .chain((1..9).map(|i| format!("key-{i}")))
            .any(|k| {
                let h = hash(k.as_bytes());
                m.slot(&h) < m.home(&h)
            });
        assert!(
            wrapped,
            "no probe wrapped: the test keys do not cover the wrap-around"
        );
        assert_eq!(m.get(b"a"), Some(0));
        for i in 1..9i64 {
            assert_eq!(m.get(format!("key-{i}").as_bytes()), Some(i * 1000));
        }
        m.put(b"key-3", 77_777);
        assert_eq!((m.get(b"key-3"), m.len()), (Some(77_777), 9));
        assert_eq!(m.get(b"absent"), None);
    }
}
