//! Leader-epoch cache: epoch -> start offset (first offset written in that epoch), persisted
//! as `leader-epoch-checkpoint` in Kafka's text format: version line `0`, a count line, then
//! `epoch startOffset` lines.

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Refuse checkpoints larger than this.
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 20;

#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// Notes that a batch of `epoch` starts at `offset`; returns true if an entry was added.
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        match self.entries.last() {
            Some(&(e, o)) if epoch <= e || offset < o => false,
            _ => {
                self.entries.push((epoch, offset));
                true
            }
        }
    }

    /// Drops entries starting at or after `offset`; returns true if something changed.
    pub fn truncate_from(&mut self, offset: i64) -> bool {
        let n = self.entries.len();
        self.entries.retain(|&(_, o)| o < offset);
        n != self.entries.len()
    }

    pub fn entries(&self) -> Vec<(i32, i64)> {
        self.entries.clone()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        s.into_bytes()
    }

    /// Parses a checkpoint; None if malformed.
    pub fn decode(buf: &[u8]) -> Option<EpochCache> {
        let text = std::str::from_utf8(buf).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let n: usize = lines.next()?.trim().parse().ok()?;
        let mut c = EpochCache::default();
        for _ in 0..n {
            let mut parts = lines.next()?.split_whitespace();
            let e: i32 = parts.next()?.parse().ok()?;
            let o: i64 = parts.next()?.parse().ok()?;
            if !c.assign(e, o) {
                return None;
            }
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_roundtrip() {
        let mut c = EpochCache::default();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5));
        assert!(c.assign(3, 10));
        assert_eq!(EpochCache::decode(&c.encode()), Some(c.clone()));
        assert!(c.truncate_from(10));
        assert_eq!(c.entries(), vec![(0, 0)]);
        assert!(EpochCache::decode(b"0\n5\n1 2\n").is_none());
    }
}
