//! Keys and partitioning: Kafka's murmur2 partitioner for keyed records (key table and partitions
//! are computed once, up front), a sticky round-robin partitioner for unkeyed records, and a tiny
//! xorshift RNG for random choices in the hot loop.

use crate::cli::Keys;

/// Kafka's `Utils.murmur2` (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> i32 {
    let m: u32 = 0x5bd1_e995;
    let r = 24;
    let len = data.len() as u32;
    let mut h: u32 = 0x9747_b28c ^ len;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

/// Kafka's default partition for a key.
pub fn partition_for(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Chooses (key, partition) for each record.
pub struct Chooser {
    keys: Vec<(Vec<u8>, usize)>,
    mode: Keys,
    rr: usize,
    partitions: usize,
    sticky: usize,
    rng: Rng,
}

/// Distinct keys drawn from for `--keys random`.
const RANDOM_KEYS: usize = 10_000;

impl Chooser {
    pub fn new(mode: Keys, partitions: usize, seed: u64) -> Self {
        let n = match mode {
            Keys::None => 0,
            Keys::Random => RANDOM_KEYS,
            Keys::RoundRobin(n) => n.max(1),
        };
        let mut rng = Rng::new(seed);
        let keys = (0..n)
            .map(|i| {
                let k = match mode {
                    Keys::Random => format!("key-{:016x}", rng.next()).into_bytes(),
                    _ => format!("key-{i}").into_bytes(),
                };
                let p = partition_for(&k, partitions);
                (k, p)
            })
            .collect();
        Chooser {
            keys,
            mode,
            rr: 0,
            partitions,
            sticky: (seed as usize) % partitions,
            rng,
        }
    }

    /// The next record's key (if any) and partition.
    #[inline]
    pub fn pick(&mut self) -> (Option<&[u8]>, usize) {
        match self.mode {
            Keys::None => (None, self.sticky),
            Keys::Random => {
                let (k, p) = &self.keys[(self.rng.next() % self.keys.len() as u64) as usize];
                (Some(k), *p)
            }
            Keys::RoundRobin(_) => {
                let (k, p) = &self.keys[self.rr];
                self.rr = (self.rr + 1) % self.keys.len();
                (Some(k), *p)
            }
        }
    }

    /// Unkeyed records move on to the next partition (after the sticky one's batch was sent).
    pub fn next_sticky(&mut self) {
        self.sticky = (self.sticky + 1) % self.partitions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
