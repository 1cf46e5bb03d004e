//! Keys and partitioning: Kafka's murmur2 partitioner for keyed records (key table and partitions
//! are computed once, up front), a sticky round-robin partitioner for unkeyed records, and a tiny
//! xorshift RNG for random choices in the hot loop.

use crate::cli::Keys;

pub use tern_net::partitioner::partition_for;

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
