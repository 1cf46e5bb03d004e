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

    /// OffsetForLeaderEpoch (KIP-101/279): the largest epoch <= `epoch` this log knows and the
    /// offset where it ends (the start of the next epoch, or `log_end` for the latest one).
    /// An epoch older than every known one ends where the first known epoch starts, as in
    /// Kafka's `LeaderEpochFileCache.endOffsetFor` (`(epoch, first start)`). `(-1, -1)`
    /// (Kafka's UNDEFINED) only for an undefined `epoch` or a cache with no epoch at all.
    ///
    /// The older-epoch rule matters for an empty partition: a replica that led epoch 0 without
    /// writing (its cache: `0 -> 0`) follows a leader of epoch 1 whose cache is only `1 -> 0`.
    /// With `(-1, -1)` the leader answered every fetch with a DivergingEpoch of (-1, -1), which
    /// on the wire means "no divergence": the follower never truncated, the leader never
    /// counted its fetches, and it never rejoined the ISR.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        if epoch < 0 {
            return (-1, -1);
        }
        let Some(i) = self.entries.iter().rposition(|&(e, _)| e <= epoch) else {
            return self.entries.first().map_or((-1, -1), |&(_, o)| (epoch, o));
        };
        let end = self.entries.get(i + 1).map_or(log_end, |&(_, o)| o);
        (self.entries[i].0, end)
    }

    /// The latest epoch and its start offset.
    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
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

    #[test]
    fn epoch_end_offset_is_the_next_epochs_start_or_the_log_end() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(3, 0), (-1, -1));
        c.assign(1, 0);
        c.assign(3, 10);
        c.assign(4, 15);
        assert_eq!(
            c.end_offset_for(0, 20),
            (0, 0),
            "older than all: the first start"
        );
        assert_eq!(c.end_offset_for(-1, 20), (-1, -1), "an undefined epoch");
        assert_eq!(c.end_offset_for(1, 20), (1, 10));
        assert_eq!(c.end_offset_for(2, 20), (1, 10));
        assert_eq!(c.end_offset_for(3, 20), (3, 15));
        assert_eq!(c.end_offset_for(9, 20), (4, 20));
        assert_eq!(c.latest(), Some((4, 15)));
    }
}
