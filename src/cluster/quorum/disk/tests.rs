//! Tests of `MetadataLogDisk`: what a write leaves on disk is what open reads back, across
//! torn tails, conflicting suffixes, snapshots and damage; and a `MetadataQuorum` restarted
//! from it keeps its committed entries.

use super::*;
use crate::cluster::quorum::{MetadataQuorum, PersistedState, QuorumConfig, QuorumOutput};

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to)
        .map(|i| entry(i, term, format!("entry {i} term {term}").as_bytes()))
        .collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(data.to_vec().into());
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = vec![1];
    s
}

fn small_segments() -> MetadataLogLimits {
    MetadataLogLimits {
        segment_bytes: 100,
        ..Default::default()
    }
}

fn open(dir: &Path, limits: MetadataLogLimits) -> (MetadataLogDisk, PersistedState) {
    MetadataLogDisk::open(dir, limits).expect("open")
}

fn names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn indexes(es: &[Entry]) -> Vec<(u64, u64)> {
    es.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn round_trip_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("__cluster_metadata-0");
    {
        let (mut disk, state) = open(&dir, MetadataLogLimits::default());
        assert!(state.entries.is_empty() && state.snapshot.is_none());
        assert_eq!(state.hard_state, HardState::default());
        disk.write(Some(&hard_state(1, 2, 0)), &entries(1, 3, 1), None, true)
            .unwrap();
        disk.write(Some(&hard_state(1, 2, 3)), &entries(4, 6, 1), None, true)
            .unwrap();
        assert!(disk.size_bytes() > 0);
    }
    let (disk, state) = open(&dir, MetadataLogLimits::default());
    assert_eq!(state.hard_state, hard_state(1, 2, 3));
    assert_eq!(state.entries, entries(1, 6, 1));
    assert!(state.snapshot.is_none());
    assert_eq!(disk.last_index(), 6);
    assert_eq!(names(&dir, ".log"), vec![format!("{:020}.log", 1)]);
}

#[test]
fn round_trip_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, small_segments());
        for i in 1..=20 {
            disk.write(None, &entries(i, i, 1), None, i % 3 == 0)
                .unwrap();
        }
        disk.write(Some(&hard_state(1, 0, 20)), &[], None, true)
            .unwrap();
    }
    assert!(names(dir, ".log").len() > 3, "small segments roll");
    let (_, state) = open(dir, small_segments());
    assert_eq!(state.entries, entries(1, 20, 1));
    assert_eq!(state.hard_state.commit, 20);
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let seg = dir.join(format!("{:020}.log", 1));
    let (before_last, full) = {
        let (mut disk, _) = open(&dir, MetadataLogLimits::default());
        disk.write(Some(&hard_state(1, 1, 0)), &entries(1, 2, 1), None, true)
            .unwrap();
        let before_last = std::fs::metadata(&seg).unwrap().len();
        disk.write(None, &entries(3, 3, 1), None, true).unwrap();
        (before_last, std::fs::metadata(&seg).unwrap().len())
    };
    let original = std::fs::read(&seg).unwrap();
    // Every cut inside the last record, and every single-byte flip of it.
    for cut in before_last..full {
        std::fs::write(&seg, &original[..cut as usize]).unwrap();
        let (mut disk, state) = open(&dir, MetadataLogLimits::default());
        assert_eq!(state.entries, entries(1, 2, 1), "cut at {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), before_last);
        // The log continues where the torn record was.
        disk.write(None, &entries(3, 3, 2), None, true).unwrap();
        drop(disk);
        let (_, state) = open(&dir, MetadataLogLimits::default());
        let mut want = entries(1, 2, 1);
        want.extend(entries(3, 3, 2));
        assert_eq!(state.entries, want, "rewritten after a cut at {cut}");
    }
    for at in before_last..full {
        let mut damaged = original.clone();
        damaged[at as usize] ^= 0x5a;
        std::fs::write(&seg, &damaged).unwrap();
        let (_, state) = open(&dir, MetadataLogLimits::default());
        assert_eq!(state.entries, entries(1, 2, 1), "flip at {at}");
    }
}

#[test]
fn a_torn_segment_drops_the_segments_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, small_segments());
        for i in 1..=12 {
            disk.write(None, &entries(i, i, 1), None, true).unwrap();
        }
    }
    let segs = names(dir, ".log");
    assert!(segs.len() >= 3);
    // Damage the second segment's first record: only the first segment survives.
    let second = dir.join(&segs[1]);
    let mut bytes = std::fs::read(&second).unwrap();
    bytes[RECORD_HEADER] ^= 0xff;
    std::fs::write(&second, &bytes).unwrap();
    let first_last = segs[1][..20].parse::<u64>().unwrap() - 1;
    let (_, state) = open(dir, small_segments());
    assert_eq!(state.entries, entries(1, first_last, 1));
    assert_eq!(names(dir, ".log"), vec![segs[0].clone()]);
}

#[test]
fn a_gap_between_segments_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, small_segments());
        for i in 1..=12 {
            disk.write(None, &entries(i, i, 1), None, true).unwrap();
        }
    }
    let segs = names(dir, ".log");
    assert!(segs.len() >= 3);
    std::fs::remove_file(dir.join(&segs[1])).unwrap();
    let err = MetadataLogDisk::open(dir, small_segments())
        .err()
        .expect("a gap");
    assert!(format!("{err:#}").contains("gap"), "{err:#}");
}

#[test]
fn conflicting_suffix_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, small_segments());
        disk.write(Some(&hard_state(1, 1, 2)), &entries(1, 8, 1), None, true)
            .unwrap();
        // A new leader's entries replace 4.. (in the middle of a segment or at its start).
        disk.write(Some(&hard_state(2, 2, 2)), &entries(4, 5, 2), None, true)
            .unwrap();
        assert_eq!(disk.last_index(), 5);
        disk.write(None, &entries(6, 6, 2), None, true).unwrap();
    }
    let (mut disk, state) = open(dir, small_segments());
    let mut want = entries(1, 3, 1);
    want.extend(entries(4, 6, 2));
    assert_eq!(state.entries, want);
    assert_eq!(state.hard_state, hard_state(2, 2, 2));
    // Truncating everything from the first index.
    disk.write(None, &entries(1, 2, 3), None, true).unwrap();
    drop(disk);
    let (_, state) = open(dir, small_segments());
    assert_eq!(state.entries, entries(1, 2, 3));
    assert_eq!(names(dir, ".log"), vec![format!("{:020}.log", 1)]);
}

#[test]
fn a_gap_in_a_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut disk, _) = open(tmp.path(), MetadataLogLimits::default());
    disk.write(None, &entries(1, 2, 1), None, true).unwrap();
    assert!(disk.write(None, &entries(4, 4, 1), None, true).is_err());
    let mut not_contiguous = entries(3, 3, 1);
    not_contiguous.extend(entries(5, 5, 1));
    assert!(disk.write(None, &not_contiguous, None, true).is_err());
    assert_eq!(disk.last_index(), 2);
}

#[test]
fn snapshot_reopen_and_deletion_of_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let limits = MetadataLogLimits {
        snapshots_kept: 1,
        ..small_segments()
    };
    let log_before;
    {
        let (mut disk, _) = open(dir, limits.clone());
        for i in 1..=20 {
            disk.write(Some(&hard_state(1, 1, i)), &entries(i, i, 1), None, true)
                .unwrap();
        }
        log_before = disk.log_bytes();
        let segs_before = names(dir, ".log");
        disk.write(None, &[], Some(&snapshot(12, 1, b"image at 12")), true)
            .unwrap();
        assert!(disk.log_bytes() < log_before);
        let segs_after = names(dir, ".log");
        assert!(segs_after.len() < segs_before.len());
        // What is left starts at or below 13 (the segment holding 13 stays whole).
        let first: u64 = segs_after[0][..20].parse().unwrap();
        assert!(first <= 13);
        let second: u64 = segs_after
            .get(1)
            .map_or(u64::MAX, |s| s[..20].parse().unwrap());
        assert!(
            second > 13,
            "only segments wholly below the snapshot are deleted"
        );
    }
    let (mut disk, state) = open(dir, limits.clone());
    let s = state.snapshot.expect("the snapshot");
    assert_eq!((s.get_metadata().index, s.get_metadata().term), (12, 1));
    assert_eq!(s.get_data(), b"image at 12");
    assert_eq!(state.entries, entries(13, 20, 1));
    assert_eq!(state.hard_state.commit, 20);
    // A newer snapshot replaces the older one (one kept).
    disk.write(None, &[], Some(&snapshot(20, 1, b"image at 20")), true)
        .unwrap();
    assert_eq!(
        names(dir, ".checkpoint"),
        vec![format!("{:020}-1.checkpoint", 20)]
    );
    assert!(
        names(dir, ".log").is_empty(),
        "every entry is in the snapshot"
    );
    disk.write(None, &entries(21, 22, 1), None, true).unwrap();
    drop(disk);
    let (_, state) = open(dir, limits);
    assert_eq!(state.snapshot.unwrap().get_metadata().index, 20);
    assert_eq!(state.entries, entries(21, 22, 1));
}

#[test]
fn a_leader_snapshot_replaces_a_diverging_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, MetadataLogLimits::default());
        disk.write(Some(&hard_state(1, 1, 2)), &entries(1, 5, 1), None, true)
            .unwrap();
        // The leader's snapshot at 4 is of term 2: our 1..5 of term 1 is not its history.
        disk.write(
            Some(&hard_state(2, 0, 4)),
            &[],
            Some(&snapshot(4, 2, b"leader image")),
            true,
        )
        .unwrap();
        assert_eq!(disk.last_index(), 4);
        disk.write(None, &entries(5, 5, 2), None, true).unwrap();
    }
    let (_, state) = open(dir, MetadataLogLimits::default());
    assert_eq!(state.snapshot.unwrap().get_metadata().index, 4);
    assert_eq!(state.entries, entries(5, 5, 2));
    assert_eq!(state.hard_state.term, 2);
}

#[test]
fn hard_state_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, MetadataLogLimits::default());
        disk.write(Some(&hard_state(3, 2, 0)), &[], None, true)
            .unwrap();
        disk.write(Some(&hard_state(4, 0, 0)), &[], None, true)
            .unwrap();
    }
    let (_, state) = open(dir, MetadataLogLimits::default());
    assert_eq!(state.hard_state, hard_state(4, 0, 0));
    assert!(state.entries.is_empty() && state.snapshot.is_none());
    assert!(names(dir, ".log").is_empty());
}

#[test]
fn a_damaged_hard_state_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, MetadataLogLimits::default());
        disk.write(Some(&hard_state(3, 2, 0)), &[], None, true)
            .unwrap();
    }
    let path = dir.join(HARD_STATE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = MetadataLogDisk::open(dir, MetadataLogLimits::default())
        .err()
        .expect("damaged");
    assert!(format!("{err:#}").contains("crc"), "{err:#}");
}

#[test]
fn an_unsynced_commit_only_change_waits_for_the_next_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, MetadataLogLimits::default());
        disk.write(Some(&hard_state(1, 1, 0)), &entries(1, 3, 1), None, true)
            .unwrap();
        disk.write(Some(&hard_state(1, 1, 3)), &[], None, false)
            .unwrap();
    }
    // The commit index is recoverable (the leader resends it): not written without a sync.
    let (mut disk, state) = open(dir, MetadataLogLimits::default());
    assert_eq!(state.hard_state, hard_state(1, 1, 0));
    disk.write(Some(&hard_state(1, 1, 3)), &[], None, false)
        .unwrap();
    disk.write(None, &entries(4, 4, 1), None, true).unwrap();
    drop(disk);
    let (_, state) = open(dir, MetadataLogLimits::default());
    assert_eq!(state.hard_state, hard_state(1, 1, 3));
}

#[test]
fn an_entry_above_the_size_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let limits = MetadataLogLimits {
        max_entry_bytes: 64,
        ..Default::default()
    };
    let (mut disk, _) = open(dir, limits.clone());
    disk.write(None, &[entry(1, 1, b"small")], None, true)
        .unwrap();
    let mut batch = vec![entry(2, 1, b"fits")];
    batch.push(entry(3, 1, &[7u8; 100]));
    let err = disk
        .write(Some(&hard_state(1, 1, 3)), &batch, None, true)
        .expect_err("too large");
    assert!(format!("{err:#}").contains("above the limit"), "{err:#}");
    // Nothing of the refused write reached the disk.
    assert_eq!(disk.last_index(), 1);
    drop(disk);
    let (_, state) = open(dir, limits);
    assert_eq!(state.entries, vec![entry(1, 1, b"small")]);
    assert_eq!(state.hard_state, HardState::default());
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (mut disk, _) = open(dir, small_segments());
        for i in 1..=20 {
            disk.write(Some(&hard_state(1, 1, i)), &entries(i, i, 1), None, true)
                .unwrap();
        }
        disk.write(None, &[], Some(&snapshot(5, 1, b"image at 5")), true)
            .unwrap();
        disk.write(None, &[], Some(&snapshot(10, 1, b"image at 10")), true)
            .unwrap();
        // A third snapshot: the oldest (5) goes, two are kept.
        disk.write(None, &[], Some(&snapshot(15, 1, b"image at 15")), true)
            .unwrap();
    }
    assert_eq!(
        names(dir, ".checkpoint"),
        vec![
            format!("{:020}-1.checkpoint", 10),
            format!("{:020}-1.checkpoint", 15)
        ]
    );
    let newest = dir.join(format!("{:020}-1.checkpoint", 15));
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    let (_, state) = open(dir, small_segments());
    let s = state.snapshot.expect("the previous snapshot");
    assert_eq!(s.get_metadata().index, 10);
    assert_eq!(s.get_data(), b"image at 10");
    assert_eq!(state.entries, entries(11, 20, 1));
    assert!(!newest.exists(), "the damaged snapshot is set aside");
    let aside = dir.join(format!("{:020}-1.checkpoint.damaged", 15));
    assert!(aside.exists(), "and kept for inspection");
    // Set aside for good: the next open uses the previous snapshot without complaint.
    let (disk, state) = open(dir, small_segments());
    assert_eq!(state.snapshot.unwrap().get_metadata().index, 10);
    assert!(disk.size_bytes() > 0);
}

#[test]
fn segment_and_snapshot_names() {
    assert_eq!(segment_name(42), "00000000000000000042.log");
    assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
    assert_eq!(parse_segment_name("42.log"), None);
    assert_eq!(snapshot_name(7, 3), "00000000000000000007-3.checkpoint");
    assert_eq!(
        parse_snapshot_name("00000000000000000007-3.checkpoint"),
        Some((7, 3))
    );
    assert_eq!(
        parse_snapshot_name("00000000000000000007-.checkpoint"),
        None
    );
    assert_eq!(indexes(&entries(1, 2, 5)), vec![(1, 5), (2, 5)]);
}

/// Runs a single-voter quorum until `until` holds, writing every Persist to `disk`; returns the
/// committed (index, data) it output.
fn drive(
    q: &mut MetadataQuorum,
    disk: &mut MetadataLogDisk,
    proposals: &mut Vec<Vec<u8>>,
    mut until: impl FnMut(&MetadataQuorum, &[(u64, Vec<u8>)]) -> bool,
) -> Vec<(u64, Vec<u8>)> {
    let mut committed = Vec::new();
    for _ in 0..1000 {
        if until(q, &committed) {
            return committed;
        }
        if q.is_leader() && !proposals.is_empty() {
            q.propose(proposals.remove(0)).expect("leader takes it");
        } else {
            q.tick();
        }
        loop {
            let outs = q.take_outputs();
            if outs.is_empty() {
                break;
            }
            for o in outs {
                match o {
                    QuorumOutput::Persist {
                        ready,
                        hard_state,
                        entries,
                        snapshot,
                        must_sync,
                    } => {
                        disk.write(hard_state.as_ref(), &entries, snapshot.as_ref(), must_sync)
                            .unwrap();
                        q.persisted(ready);
                    }
                    QuorumOutput::Committed { index, data, .. } if !data.is_empty() => {
                        committed.push((index, data))
                    }
                    _ => {}
                }
            }
        }
    }
    panic!("the quorum did not get there in 1000 steps");
}

#[test]
fn a_single_voter_quorum_restarts_from_the_disk_with_its_committed_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("__cluster_metadata-0");
    let cfg = QuorumConfig::from_timeouts(1, vec![1], 100, 1000, 2000, 7);
    let mut wanted: Vec<Vec<u8>> = (0..5).map(|i| format!("batch {i}").into_bytes()).collect();
    let first_run = {
        let (mut disk, state) = open(&dir, MetadataLogLimits::default());
        let mut q = MetadataQuorum::restart(cfg.clone(), state).unwrap();
        let mut props = wanted.clone();
        let out = drive(&mut q, &mut disk, &mut props, |_, c| c.len() == 5);
        let datas: Vec<Vec<u8>> = out.iter().map(|c| c.1.clone()).collect();
        assert_eq!(datas, wanted);
        out
    };
    // Restart: the committed entries come back (raft replays them from the log) and the
    // quorum continues after them.
    let (mut disk, state) = open(&dir, MetadataLogLimits::default());
    // (The last commit-only hard state may be unwritten: commit is recoverable.)
    let term_before = state.hard_state.term;
    let mut q = MetadataQuorum::restart(cfg, state).unwrap();
    let mut props = vec![b"after restart".to_vec()];
    let out = drive(&mut q, &mut disk, &mut props, |q, c| {
        q.is_leader() && c.iter().any(|e| e.1 == b"after restart")
    });
    assert!(q.term() > term_before, "a new term after the restart");
    let replayed: Vec<(u64, Vec<u8>)> = out
        .iter()
        .filter(|c| c.1 != b"after restart")
        .cloned()
        .collect();
    assert_eq!(
        replayed, first_run,
        "committed entries intact, same indexes"
    );
    let new_index = out.iter().find(|c| c.1 == b"after restart").unwrap().0;
    assert!(new_index > first_run.last().unwrap().0);
    wanted.push(b"after restart".to_vec());
    drop(disk);
    let (_, state) = open(&dir, MetadataLogLimits::default());
    let on_disk: Vec<Vec<u8>> = state
        .entries
        .iter()
        .filter(|e| !e.get_data().is_empty())
        .map(|e| e.get_data().to_vec())
        .collect();
    assert_eq!(on_disk, wanted);
}

#[test]
fn a_quorum_restarts_from_its_compaction_snapshot_and_the_entries_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("__cluster_metadata-0");
    let limits = MetadataLogLimits {
        segment_bytes: 64,
        snapshots_kept: 1,
        ..Default::default()
    };
    let cfg = QuorumConfig::from_timeouts(1, vec![1], 100, 1000, 2000, 3);
    let (snap_at, after) = {
        let (mut disk, state) = open(&dir, limits.clone());
        let mut q = MetadataQuorum::restart(cfg.clone(), state).unwrap();
        let mut props: Vec<Vec<u8>> = (0..4).map(|i| format!("early {i}").into_bytes()).collect();
        let early = drive(&mut q, &mut disk, &mut props, |_, c| c.len() == 4);
        let snap_at = early.last().unwrap().0;
        let snap = q.compact(snap_at, b"image after early".to_vec()).unwrap();
        disk.write(None, &[], Some(&snap), true).unwrap();
        let mut props: Vec<Vec<u8>> = (0..3).map(|i| format!("late {i}").into_bytes()).collect();
        let late = drive(&mut q, &mut disk, &mut props, |_, c| c.len() == 3);
        // Segments wholly below the snapshot are gone (small segments: there were several).
        let first_kept: u64 = names(&dir, ".log")[0][..20].parse().unwrap();
        assert!(first_kept > 1 && first_kept <= snap_at + 1);
        (snap_at, late)
    };
    let (mut disk, state) = open(&dir, limits);
    let s = state.snapshot.clone().expect("the compaction snapshot");
    assert_eq!(s.get_metadata().index, snap_at);
    assert_eq!(s.get_data(), b"image after early");
    assert!(state.entries.iter().all(|e| e.index > snap_at));
    let mut q = MetadataQuorum::restart(cfg, state).unwrap();
    let mut props = vec![b"after restart".to_vec()];
    let out = drive(&mut q, &mut disk, &mut props, |q, c| {
        q.is_leader() && c.iter().any(|e| e.1 == b"after restart")
    });
    // Only what follows the snapshot is replayed; the rest is in the image.
    let replayed: Vec<(u64, Vec<u8>)> = out
        .iter()
        .filter(|c| c.1 != b"after restart")
        .cloned()
        .collect();
    assert_eq!(replayed, after);
}
