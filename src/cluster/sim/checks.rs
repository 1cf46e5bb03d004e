//! The simulator's invariants, fed by the world as events happen:
//! - replicas agree below the high watermark: every offset any replica holds below its HW has
//!   the same record on every replica, ever (the first one seen becomes the committed record);
//! - the high watermark never moves back on a leader (per leadership: node, incarnation, epoch);
//! - no acknowledged acks=all record is lost or reordered: at the ack its offset is committed
//!   with its payload, a producer's acknowledged offsets grow with its sequence numbers, and at
//!   the end every replica holds every acknowledged record at its offset;
//! - consumers never see data above the HW: what they read is committed;
//! - at most one leader per partition per leader epoch accepts writes;
//! - idempotent producers get no duplicates: a (producer id, sequence) is committed at one
//!   offset only;
//! - the metadata log obeys Raft's log matching (one entry per index, whoever commits it) and
//!   there is one leader per term.

use std::collections::BTreeMap;

use crate::cluster::replication::{LogEntry, PartitionLogModel, ReplicaLog};

#[derive(Default)]
pub struct Checker {
    /// Per partition: offset -> the committed record.
    committed: Vec<BTreeMap<i64, LogEntry>>,
    /// Per partition: (producer id, sequence) -> committed offset.
    committed_ids: Vec<BTreeMap<(i64, i32), i64>>,
    /// (node, incarnation, partition) -> HW checked up to, and leader epoch when leading.
    checked: BTreeMap<(i32, u32, usize), (i64, Option<i32>)>,
    /// (partition, leader epoch) -> the node that accepted writes.
    writers: BTreeMap<(usize, i32), i32>,
    /// producer id -> (sequence, offset) of its last acknowledged record.
    last_ack: BTreeMap<i64, (i32, i64)>,
    /// (producer id, sequence, offset) of acks=1 writes a zombie leader acknowledged.
    zombie_acks: std::collections::BTreeSet<(i64, i32, i64)>,
    /// (partition, offset, payload) of every acks=all acknowledgement.
    pub acked_all: Vec<(usize, i64, u64)>,
    /// Raft: index -> (term, data digest); term -> leader.
    raft_entries: BTreeMap<u64, (u64, u64)>,
    raft_leaders: BTreeMap<u64, i32>,
}

pub type Check = Result<(), String>;

impl Checker {
    pub fn new(partitions: usize) -> Self {
        Self {
            committed: vec![BTreeMap::new(); partitions],
            committed_ids: vec![BTreeMap::new(); partitions],
            ..Default::default()
        }
    }

    pub fn committed_len(&self, partition: usize) -> usize {
        self.committed[partition].len()
    }

    fn commit(&mut self, partition: usize, e: &LogEntry, who: &str) -> Check {
        match self.committed[partition].get(&e.offset) {
            Some(c) if c != e => {
                return Err(format!(
                    "replicas disagree below the HW: p{partition} offset {} is {c:?} committed, {who} has {e:?}",
                    e.offset
                ));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        self.committed[partition].insert(e.offset, *e);
        if e.producer_id >= 0
            && let Some(other) =
                self.committed_ids[partition].insert((e.producer_id, e.sequence), e.offset)
            && other != e.offset
        {
            return Err(format!(
                "idempotent duplicate: producer {} sequence {} committed at p{partition} offsets {other} and {}",
                e.producer_id, e.sequence, e.offset
            ));
        }
        Ok(())
    }

    /// A replica's high watermark now (after any event on its node). Entries below it are
    /// committed; a leader's never moves back.
    pub fn observe_hw(
        &mut self,
        node: i32,
        incarnation: u32,
        partition: usize,
        leader_epoch: Option<i32>,
        hw: i64,
        log: &PartitionLogModel,
    ) -> Check {
        let key = (node, incarnation, partition);
        let (from, was_leading) = self.checked.get(&key).copied().unwrap_or((0, None));
        let same_leadership = leader_epoch.is_some() && was_leading == leader_epoch;
        if same_leadership && hw < from {
            return Err(format!(
                "HW moved back on leader {node} of p{partition} epoch {leader_epoch:?}: {from} -> {hw}"
            ));
        }
        // A follower's HW can drop (truncation): what is below it again is checked again.
        let start = if same_leadership { from } else { from.min(hw) };
        if hw > log.log_end_offset() && leader_epoch.is_some() {
            return Err(format!(
                "leader {node} of p{partition}: HW {hw} above its log end {}",
                log.log_end_offset()
            ));
        }
        let who = format!("node {node}");
        for o in start..hw.min(log.log_end_offset()) {
            let e = *log.entry(o).expect("below the log end");
            self.commit(partition, &e, &who)?;
        }
        self.checked.insert(key, (hw, leader_epoch));
        Ok(())
    }

    /// A leader accepted a write in `epoch`.
    pub fn observe_write(&mut self, partition: usize, epoch: i32, node: i32) -> Check {
        match self.writers.insert((partition, epoch), node) {
            Some(other) if other != node => Err(format!(
                "two leaders accepted writes for p{partition} in epoch {epoch}: {other} and {node}"
            )),
            _ => Ok(()),
        }
    }

    /// A zombie leader acknowledged an acks=1 write (`observe_ack` does not order it).
    pub fn observe_zombie_ack(&mut self, producer_id: i64, sequence: i32, offset: i64) {
        self.zombie_acks.insert((producer_id, sequence, offset));
    }

    /// A producer got an acknowledgement.
    pub fn observe_ack(
        &mut self,
        partition: usize,
        offset: i64,
        payload: u64,
        producer_id: i64,
        sequence: i32,
        acks_all: bool,
    ) -> Check {
        if !acks_all && self.zombie_acks.contains(&(producer_id, sequence, offset)) {
            return Ok(());
        }
        if let Some(&(seq, off)) = self.last_ack.get(&producer_id)
            && (sequence <= seq || offset <= off)
        {
            return Err(format!(
                "producer {producer_id}: ack of sequence {sequence} at offset {offset} after sequence {seq} at {off} (reordered or duplicated)"
            ));
        }
        self.last_ack.insert(producer_id, (sequence, offset));
        if !acks_all {
            return Ok(());
        }
        match self.committed[partition].get(&offset) {
            Some(e) if e.payload == payload => {
                self.acked_all.push((partition, offset, payload));
                Ok(())
            }
            Some(e) => Err(format!(
                "acks=all ack of {payload:#x} at p{partition} offset {offset}, but {:#x} is committed there",
                e.payload
            )),
            None => Err(format!(
                "acks=all ack of {payload:#x} at p{partition} offset {offset} before any HW covered it"
            )),
        }
    }

    /// A consumer read these records.
    pub fn observe_consumed(&mut self, partition: usize, entries: &[LogEntry]) -> Check {
        for e in entries {
            match self.committed[partition].get(&e.offset) {
                Some(c) if c == e => {}
                Some(c) => {
                    return Err(format!(
                        "consumer read {e:?} at p{partition}, committed is {c:?}"
                    ));
                }
                None => {
                    return Err(format!(
                        "consumer read p{partition} offset {} above every HW: {e:?}",
                        e.offset
                    ));
                }
            }
        }
        Ok(())
    }

    /// The end of a run: a replica's whole log against the acknowledged records.
    pub fn check_final_log(&self, node: i32, partition: usize, log: &PartitionLogModel) -> Check {
        for &(p, offset, payload) in &self.acked_all {
            if p != partition {
                continue;
            }
            match log.entry(offset) {
                Some(e) if e.payload == payload => {}
                other => {
                    return Err(format!(
                        "acknowledged acks=all record {payload:#x} at p{p} offset {offset} lost on node {node}: {other:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A node committed metadata entry `index` of `term`.
    pub fn observe_raft_commit(&mut self, node: i32, index: u64, term: u64, digest: u64) -> Check {
        match self.raft_entries.insert(index, (term, digest)) {
            Some(prev) if prev != (term, digest) => Err(format!(
                "metadata log matching: node {node} committed {index}@{term}, another node {index}@{}",
                prev.0
            )),
            _ => Ok(()),
        }
    }

    pub fn observe_raft_leader(&mut self, term: u64, node: i32) -> Check {
        match self.raft_leaders.insert(term, node) {
            Some(other) if other != node => Err(format!(
                "two metadata leaders in term {term}: {other} and {node}"
            )),
            _ => Ok(()),
        }
    }
}
