//! The deterministic simulator of issue 12: 3 to 5 combined nodes, each running the real
//! `MetadataQuorum` (raft-rs), `Controller` and the replication state machines
//! (`LeaderPartition`, `FollowerPartition`) over an in-memory `PartitionLogModel`, driven in one
//! thread by a small event loop (`world`) in virtual time. A seeded PRNG decides everything:
//! message latency, loss, duplication and reordering, network partitions between node sets,
//! crashes (power loss in `Synced` mode: the unsynced tail is lost or torn; process crashes in
//! `Written` mode), restarts, slow and full disks (a full disk refuses produce and follower
//! appends, and the node's heartbeats report it, so the controller moves its leaderships to
//! in-sync replicas with room), leader moves, controller failovers and
//! partition reassignments (add a replica, remove or replace the leader's, cancel). Model
//! clients produce with acks=all and acks=1 (idempotent, retrying) and consume up to the high
//! watermark. `checks` holds the invariants, checked as the run goes. A failure reports the seed
//! and the last trace lines; the same seed replays the same run. Test-only (cfg(test)):
//! `scripts/simulate` runs it through `cargo test`.

mod checks;
#[cfg(test)]
mod tests;
mod world;

use std::fmt;

use crate::cluster::replication::{AckDurability, Mutation};

/// One simulated run's shape.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub partitions: usize,
    pub durability: AckDurability,
    /// Virtual time of the faulty phase (clients and faults), before the healing phase.
    pub fault_ms: u64,
    pub mutation: Option<Mutation>,
}

impl SimConfig {
    /// The default mix for a seed: 3 or 5 nodes, both durability settings.
    pub fn for_seed(seed: u64) -> Self {
        Self {
            nodes: if seed % 4 == 3 { 5 } else { 3 },
            partitions: 2,
            durability: if seed.is_multiple_of(2) {
                AckDurability::Synced
            } else {
                AckDurability::Written
            },
            fault_ms: 30_000,
            mutation: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub virtual_ms: u64,
    pub acked_all: u64,
    pub acked_one: u64,
    pub consumed: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub leader_changes: u64,
    pub truncations: u64,
    pub isr_changes: u64,
    /// Reassignments the controller accepted (starts, replacements and cancels).
    pub reassignments: u64,
    /// Leaderships the controller moved off a node whose disk was full (its heartbeat said so).
    pub full_disk_moves: u64,
    /// Notices that a crashed node's process is gone (a refused connection) delivered.
    pub process_gone: u64,
    /// A digest of the trace, for the same-seed-same-run check.
    pub digest: u64,
}

/// An invariant broke (or the code under test panicked).
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub config: String,
    pub message: String,
    pub virtual_ms: u64,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation seed {} failed at {} ms ({}): {}",
            self.seed, self.virtual_ms, self.config, self.message
        )?;
        writeln!(
            f,
            "replay: scripts/simulate --seed {}   last events:",
            self.seed
        )?;
        for t in &self.trace {
            writeln!(f, "  {t}")?;
        }
        Ok(())
    }
}

/// Runs one seed.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<Stats, Failure> {
    world::World::new(seed, cfg.clone()).run()
}
