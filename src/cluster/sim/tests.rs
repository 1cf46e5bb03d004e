//! The simulator's test budget (README's test command), the same-seed replay check, the
//! mutation tests (each injected protocol bug must be caught within the budget) and the
//! regression seeds. `scripts/simulate` runs `cluster_sim_seeds` with SIM_SEEDS / SIM_SEED /
//! SIM_FAULT_MS set.

use std::time::Instant;

use super::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds that once failed (bugs found by the simulator in the real code): replayed first.
/// 13: AlterPartition kept the ELR after the ISR grew back to min.insync.replicas, so a replica
/// that missed later commits stayed electable and a divergent record became committed.
/// 493: a duplicated registration gave a broker a new epoch while its follower kept the old
/// one, so the leader never found it eligible for the ISR (a simulator driver bug: roles now
/// restart on a new broker epoch).
/// 1348, 1379, 1704 (with the reassignment workload): a fetch answer for an earlier follower
/// role of the partition reached the new role, which reuses fetch ids, and put the old leader's
/// records below its HW (the simulator now tags fetches with the role; the broker's fetcher
/// drops answers for another leader epoch).
/// 10064: the end-of-run check read the replica sets from node 0's metadata image, which had
/// not yet applied the step that completed a reassignment; the removed replica (whose log was
/// rightly deleted) was then checked for the acknowledged records (a simulator check bug: the
/// final check now uses the active controller's image, as `converged` does).
const REGRESSION_SEEDS: &[u64] = &[13, 493, 1348, 1379, 1704, 10064];

#[test]
fn cluster_sim_seeds() {
    let (first, count) = match env_u64("SIM_SEED") {
        Some(s) => (s, 1),
        None => (
            env_u64("SIM_FIRST_SEED").unwrap_or(0),
            env_u64("SIM_SEEDS").unwrap_or(300),
        ),
    };
    let fault_ms = env_u64("SIM_FAULT_MS");
    let started = Instant::now();
    let mut total = Stats::default();
    let seeds = REGRESSION_SEEDS.iter().copied().chain(first..first + count);
    let mut runs = 0u64;
    let mut failures = Vec::new();
    for seed in seeds {
        let mut cfg = SimConfig::for_seed(seed);
        if let Some(ms) = fault_ms {
            cfg.fault_ms = ms;
        }
        match run(seed, &cfg) {
            Ok(s) => {
                runs += 1;
                total.events += s.events;
                total.virtual_ms += s.virtual_ms;
                total.acked_all += s.acked_all;
                total.acked_one += s.acked_one;
                total.consumed += s.consumed;
                total.crashes += s.crashes;
                total.partitions += s.partitions;
                total.truncations += s.truncations;
                total.isr_changes += s.isr_changes;
                total.leader_changes += s.leader_changes;
                total.reassignments += s.reassignments;
                total.full_disk_moves += s.full_disk_moves;
                total.process_gone += s.process_gone;
                if std::env::var("SIM_VERBOSE").is_ok() {
                    eprintln!("seed {seed}: {s:?}");
                }
                assert!(s.acked_all > 0, "seed {seed}: nothing acknowledged: {s:?}");
            }
            Err(f) => {
                eprintln!("{f}");
                failures.push((seed, f.message));
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "simulated {runs} seeds in {wall:.1} s: {:.0} seeds/min, {} events ({:.0} events/s), \
         {:.2} simulated hours ({:.2} simulated hours per wall-clock minute); \
         acks=all {} acks=1 {} consumed {} crashes {} network partitions {} truncations {} \
         ISR changes {} metadata leader changes {} reassignments {} leaderships moved off full disks {} \
         dead-process notices {}",
        runs as f64 / wall * 60.0,
        total.events,
        total.events as f64 / wall,
        total.virtual_ms as f64 / 3.6e6,
        total.virtual_ms as f64 / 3.6e6 / wall * 60.0,
        total.acked_all,
        total.acked_one,
        total.consumed,
        total.crashes,
        total.partitions,
        total.truncations,
        total.isr_changes,
        total.leader_changes,
        total.reassignments,
        total.full_disk_moves,
        total.process_gone,
    );
    assert!(failures.is_empty(), "failing seeds: {failures:#?}");
}

#[test]
fn cluster_sim_same_seed_same_run() {
    for seed in [3, 4] {
        let cfg = SimConfig {
            fault_ms: 10_000,
            ..SimConfig::for_seed(seed)
        };
        let a = run(seed, &cfg).unwrap_or_else(|f| panic!("{f}"));
        let b = run(seed, &cfg).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(a, b, "seed {seed} did not replay");
        let c = run(seed + 100, &cfg).unwrap_or_else(|f| panic!("{f}"));
        assert_ne!(a.digest, c.digest, "different seeds, different runs");
    }
}

/// Runs seeds until the mutation is caught; returns (seed, wall seconds, message).
fn catch(m: Mutation, budget: u64) -> (u64, f64, String) {
    let started = Instant::now();
    for seed in 0..budget {
        let cfg = SimConfig {
            mutation: Some(m),
            ..SimConfig::for_seed(seed)
        };
        if let Err(f) = run(seed, &cfg) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "mutation {m:?} caught by seed {seed} after {secs:.2} s: {}",
                f.message
            );
            return (seed, secs, f.message);
        }
    }
    panic!("mutation {m:?} survived {budget} seeds");
}

#[test]
fn cluster_sim_catches_hw_advanced_before_the_isr_has_the_data() {
    catch(Mutation::HwBeforeIsr, 50);
}

#[test]
fn cluster_sim_catches_truncating_the_leader_instead_of_the_follower() {
    catch(Mutation::TruncateLeader, 50);
}

/// Not caught: in this model the KIP-279 check on every fetch already guarantees that a follower
/// at or above the HW holds the leader's prefix, so dropping the epoch-start condition breaks no
/// invariant (it was "caught" only through a since-fixed liveness bug). Kept to run by hand.
#[test]
#[ignore = "the mutation is masked by the divergence check; see the comment"]
fn cluster_sim_catches_isr_expand_without_the_epoch_check() {
    catch(Mutation::ExpandWithoutEpochCheck, 50);
}
