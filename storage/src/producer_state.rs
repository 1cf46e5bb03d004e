//! Idempotent-producer state of one partition (Kafka rules): per producer id, its epoch and
//! the last [`MAX_BATCHES_PER_PRODUCER`] batches (first/last sequence, offsets), used to
//! detect duplicates (retries) and out-of-order sequences. Snapshotted to
//! `<20-digit offset>.snapshot` (JSON) at segment roll and clean close; rebuilt by replaying
//! batches after the newest snapshot otherwise.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// A snapshot file larger than this is refused (treated as missing).
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
}

/// Outcome of checking one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Write it (and record it if `track`).
    Accept { track: bool },
    /// Already in the log at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqError {
    OutOfOrder,
    InvalidEpoch,
}

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

/// The identity of one batch for sequence checks.
#[derive(Debug, Clone, Copy)]
pub struct BatchIdent {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerState {
    /// Checks a batch against the state, as overlaid by `staged` (entries already updated by
    /// earlier batches of the same request).
    pub fn check(
        &self,
        staged: &HashMap<i64, ProducerEntry>,
        b: &BatchIdent,
    ) -> Result<SeqCheck, SeqError> {
        if b.producer_id < 0 || b.first_seq < 0 {
            return Ok(SeqCheck::Accept { track: false });
        }
        let Some(entry) = staged
            .get(&b.producer_id)
            .or_else(|| self.producers.get(&b.producer_id))
        else {
            return Ok(SeqCheck::Accept { track: true });
        };
        if b.epoch < entry.epoch {
            return Err(SeqError::InvalidEpoch);
        }
        if b.epoch > entry.epoch || entry.batches.is_empty() {
            return Ok(SeqCheck::Accept { track: true });
        }
        if let Some(m) = entry
            .batches
            .iter()
            .find(|m| m.first_seq == b.first_seq && m.last_seq == b.last_seq)
        {
            return Ok(SeqCheck::Duplicate {
                base_offset: m.base_offset,
                last_offset: m.last_offset,
            });
        }
        let newest = entry.batches.back().expect("non-empty checked above");
        if newest.last_seq >= 0
            && b.first_seq == crate::batch::increment_sequence(newest.last_seq, 1)
        {
            Ok(SeqCheck::Accept { track: true })
        } else {
            Err(SeqError::OutOfOrder)
        }
    }

    /// Records an accepted batch into `map` (either the staged overlay or the state itself).
    pub fn apply_to(
        map: &mut HashMap<i64, ProducerEntry>,
        base: Option<&ProducerEntry>,
        b: &BatchIdent,
        base_offset: i64,
        last_offset: i64,
    ) {
        let entry = map
            .entry(b.producer_id)
            .or_insert_with(|| base.cloned().unwrap_or_default());
        if entry.epoch != b.epoch || entry.batches.is_empty() {
            entry.epoch = b.epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset,
            last_offset,
        });
        while entry.batches.len() > MAX_BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
    }

    pub fn get(&self, pid: i64) -> Option<&ProducerEntry> {
        self.producers.get(&pid)
    }

    /// Records a batch (append path after checks, or replay during recovery).
    pub fn update(&mut self, b: &BatchIdent, base_offset: i64, last_offset: i64) {
        if b.producer_id < 0 || b.first_seq < 0 {
            return;
        }
        if let Some(e) = self.producers.get(&b.producer_id)
            && b.epoch < e.epoch
        {
            return;
        }
        Self::apply_to(&mut self.producers, None, b, base_offset, last_offset);
    }

    /// Number of producers tracked.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    pub fn to_snapshot(&self, offset: i64) -> Vec<u8> {
        let snap = Snapshot {
            offset,
            state: self.clone(),
        };
        serde_json::to_vec(&snap).expect("serialising plain data cannot fail")
    }

    /// Parses a snapshot; None if malformed.
    pub fn from_snapshot(buf: &[u8]) -> Option<(i64, ProducerState)> {
        let snap: Snapshot = serde_json::from_slice(buf).ok()?;
        Some((snap.offset, snap.state))
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    state: ProducerState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(pid: i64, epoch: i16, first: i32, last: i32) -> BatchIdent {
        BatchIdent {
            producer_id: pid,
            epoch,
            first_seq: first,
            last_seq: last,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerState::default();
        let none = HashMap::new();
        assert_eq!(
            s.check(&none, &ident(-1, 0, 5, 9)),
            Ok(SeqCheck::Accept { track: false })
        );
        assert_eq!(
            s.check(&none, &ident(1, 0, 7, 9)),
            Ok(SeqCheck::Accept { track: true })
        );
        s.update(&ident(1, 0, 0, 4), 0, 4);
        s.update(&ident(1, 0, 5, 9), 5, 9);
        assert_eq!(
            s.check(&none, &ident(1, 0, 0, 4)),
            Ok(SeqCheck::Duplicate {
                base_offset: 0,
                last_offset: 4
            })
        );
        assert_eq!(
            s.check(&none, &ident(1, 0, 10, 12)),
            Ok(SeqCheck::Accept { track: true })
        );
        assert_eq!(
            s.check(&none, &ident(1, 0, 11, 12)),
            Err(SeqError::OutOfOrder)
        );
        assert_eq!(
            s.check(&none, &ident(1, 1, 0, 0)),
            Ok(SeqCheck::Accept { track: true })
        );
        s.update(&ident(1, 1, 0, 0), 10, 10);
        assert_eq!(
            s.check(&none, &ident(1, 0, 1, 1)),
            Err(SeqError::InvalidEpoch)
        );
        // wrap-around
        s.update(&ident(2, 0, i32::MAX - 1, i32::MAX), 11, 12);
        assert_eq!(
            s.check(&none, &ident(2, 0, 0, 3)),
            Ok(SeqCheck::Accept { track: true })
        );
        let (off, s2) = ProducerState::from_snapshot(&s.to_snapshot(13)).unwrap();
        assert_eq!(off, 13);
        assert_eq!(s2, s);
        assert!(ProducerState::from_snapshot(b"garbage").is_none());
    }
}
