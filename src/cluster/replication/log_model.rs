//! The log facts the replication rules read (`ReplicaLog`: log end, synced end, the leader-epoch
//! cache) and `PartitionLogModel`, an in-memory partition log for the simulator and the unit
//! tests: one model entry stands for one record batch (offset, leader epoch, idempotent
//! producer id and sequence, payload), with the epoch cache of `tern_storage::epoch`, producer
//! state rebuilt from the entries (as every replica rebuilds it from its log), an fdatasynced
//! prefix, truncation, and crashes that lose the unsynced tail or tear it.

use std::collections::BTreeMap;

use tern_storage::epoch::EpochCache;

/// One batch of the model log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogEntry {
    pub offset: i64,
    pub epoch: i32,
    /// Idempotent producer id (-1: none) and sequence.
    pub producer_id: i64,
    pub sequence: i32,
    /// What the record says (unique per produced record in the simulator).
    pub payload: u64,
}

/// What the leader and follower rules need to know about a replica's log.
pub trait ReplicaLog {
    fn log_end_offset(&self) -> i64;
    /// The first offset held (the model log always starts at 0).
    fn log_start_offset(&self) -> i64 {
        0
    }
    /// Offsets below this are written (their write completed; not necessarily synced). The
    /// model writes at append time.
    fn written_end_offset(&self) -> i64 {
        self.log_end_offset()
    }
    /// Offsets below this are fdatasynced.
    fn synced_end_offset(&self) -> i64;
    /// OffsetForLeaderEpoch: largest epoch <= `epoch` and where it ends; an epoch older than
    /// every known one ends at the first known epoch's start; (-1, -1) with no epoch at all.
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64);
    /// The latest epoch of the epoch cache (-1: none), as the storage log answers it: an
    /// epoch this replica led without writing counts (Kafka's `log.latestEpoch`).
    fn last_fetched_epoch(&self) -> i32;
}

/// Where an idempotent produce stands against the producer state of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next sequence: append it.
    Next,
    /// Already in the log at this offset (a retry): answer with it.
    Duplicate(i64),
    /// A gap (or a new producer not starting at 0): OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder,
}

#[derive(Clone, Debug, Default)]
pub struct PartitionLogModel {
    entries: Vec<LogEntry>,
    epochs: EpochCache,
    synced: i64,
    /// producer id -> (sequence -> offset) of its batches in this log.
    producers: BTreeMap<i64, BTreeMap<i32, i64>>,
    /// Bumped by every truncation, so a sync issued before it cannot mark later data synced.
    generation: u64,
}

impl ReplicaLog for PartitionLogModel {
    fn log_end_offset(&self) -> i64 {
        self.entries.len() as i64
    }

    fn synced_end_offset(&self) -> i64 {
        self.synced
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    fn last_fetched_epoch(&self) -> i32 {
        // The epoch cache, not the last entry: the storage log (`PartitionLog::last_epoch`)
        // counts an epoch noted by `start_epoch` with nothing written in it.
        self.epochs.latest().map_or(-1, |(e, _)| e)
    }
}

impl PartitionLogModel {
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    pub fn entry(&self, offset: i64) -> Option<&LogEntry> {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.entries.get(o))
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A new leader notes where its epoch starts (Kafka assigns it on election, before any
    /// record of the epoch is written).
    pub fn start_epoch(&mut self, epoch: i32) {
        let leo = self.log_end_offset();
        self.epochs.assign(epoch, leo);
    }

    pub fn check_sequence(&self, producer_id: i64, sequence: i32) -> SequenceCheck {
        let Some(seqs) = self.producers.get(&producer_id) else {
            return if sequence == 0 {
                SequenceCheck::Next
            } else {
                SequenceCheck::OutOfOrder
            };
        };
        let last = *seqs.keys().next_back().expect("no empty producer entries");
        if let Some(&offset) = seqs.get(&sequence) {
            SequenceCheck::Duplicate(offset)
        } else if sequence == last + 1 {
            SequenceCheck::Next
        } else {
            SequenceCheck::OutOfOrder
        }
    }

    /// The leader appends one batch in `epoch`; returns its offset.
    pub fn append_as_leader(
        &mut self,
        epoch: i32,
        producer_id: i64,
        sequence: i32,
        payload: u64,
    ) -> i64 {
        let offset = self.log_end_offset();
        self.push(LogEntry {
            offset,
            epoch,
            producer_id,
            sequence,
            payload,
        });
        offset
    }

    /// A follower appends the leader's batches, byte for byte (same offsets and epochs).
    pub fn append_as_follower(&mut self, entries: &[LogEntry]) {
        for e in entries {
            assert_eq!(
                e.offset,
                self.log_end_offset(),
                "replicated batches are contiguous"
            );
            self.push(*e);
        }
    }

    fn push(&mut self, e: LogEntry) {
        if self.epochs.latest().is_some_and(|(last, _)| last > e.epoch) {
            // Epochs this replica started as leader without writing a record (Kafka's
            // assign drops them too): nothing of theirs is in the log.
            self.epochs.truncate_from(e.offset);
            assert!(
                self.epochs.latest().is_none_or(|(last, _)| last <= e.epoch),
                "epochs never go back in a log"
            );
        }
        self.epochs.assign(e.epoch, e.offset);
        if e.producer_id >= 0 {
            self.producers
                .entry(e.producer_id)
                .or_default()
                .insert(e.sequence, e.offset);
        }
        self.entries.push(e);
    }

    /// Entries from `from` (at most `max`).
    pub fn read(&self, from: i64, max: usize) -> Vec<LogEntry> {
        let from = from.clamp(0, self.log_end_offset()) as usize;
        let to = (from + max).min(self.entries.len());
        self.entries[from..to].to_vec()
    }

    /// Drops every entry at or above `offset` (epochs and producer state follow).
    pub fn truncate_to(&mut self, offset: i64) {
        let offset = offset.max(0);
        if offset >= self.log_end_offset() {
            // No entry to cut, but epochs noted at the log end without an entry (a leadership
            // that wrote nothing) go, as in the storage log and Kafka's truncateFromEnd: else
            // the follower keeps sending that epoch as its last fetched one and diverges forever.
            self.epochs.truncate_from(self.log_end_offset());
            return;
        }
        self.entries.truncate(offset as usize);
        self.epochs.truncate_from(offset);
        self.synced = self.synced.min(offset);
        self.generation += 1;
        self.producers.clear();
        for e in &self.entries {
            if e.producer_id >= 0 {
                self.producers
                    .entry(e.producer_id)
                    .or_default()
                    .insert(e.sequence, e.offset);
            }
        }
    }

    /// An fdatasync issued at `generation` covering everything below `upto` completed.
    pub fn synced_to(&mut self, upto: i64, generation: u64) {
        if generation == self.generation {
            self.synced = self.synced.max(upto.min(self.log_end_offset()));
        }
    }

    /// Power loss: the synced prefix survives, plus the first `kept_unsynced` unsynced entries
    /// (what the page cache happened to write back); the next one is torn and recovery drops
    /// it with everything after.
    pub fn crash(&mut self, kept_unsynced: usize) {
        let keep = self.synced + kept_unsynced as i64;
        self.truncate_to(keep);
        self.synced = self.log_end_offset();
    }
}
