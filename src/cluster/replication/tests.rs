//! One unit test per replication rule (leader, follower, log model), named after the rule.

use uuid::Uuid;

use super::follower::{FetchResponse, FollowerAction, FollowerPartition, truncation_offset};
use super::leader::{LeaderOutput, LeaderPartition};
use super::log_model::SequenceCheck;
use super::*;

const T: Uuid = Uuid::from_u128(1);

fn cfg(min_isr: usize, durability: AckDurability) -> ReplicationConfig {
    ReplicationConfig {
        min_insync_replicas: min_isr,
        replica_lag_time_max_ms: 1_000,
        alter_partition_retry_ms: 500,
        ack_durability: durability,
        ..Default::default()
    }
}

fn state(isr: &[i32], leader_epoch: i32) -> PartitionState {
    PartitionState {
        leader: 1,
        leader_epoch,
        partition_epoch: 0,
        isr: isr.to_vec(),
        replicas: vec![1, 2, 3],
    }
}

/// A leader (broker 1, epoch 1) over a log with `n` records of epoch 1.
fn leader(min_isr: usize, isr: &[i32], n: usize) -> (LeaderPartition, PartitionLogModel) {
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    let mut l = LeaderPartition::new(
        cfg(min_isr, AckDurability::Written),
        1,
        10,
        T,
        0,
        &state(isr, 1),
        &log,
        0,
        0,
    );
    for i in 0..n {
        log.append_as_leader(1, -1, 0, i as u64);
    }
    l.on_log_progress(&log);
    (l, log)
}

fn fetch(replica: i32, offset: i64, last_epoch: i32) -> FetchRequest {
    FetchRequest {
        replica_id: replica,
        broker_epoch: 20 + replica as i64,
        leader_epoch: 1,
        fetch_offset: offset,
        last_fetched_epoch: last_epoch,
        replicated_offset: offset,
        log_start_offset: 0,
    }
}

fn alter_requests(l: &mut LeaderPartition) -> Vec<Vec<i32>> {
    l.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            LeaderOutput::AlterPartition(r) => Some(r.new_isr.iter().map(|x| x.0).collect()),
            _ => None,
        })
        .collect()
}

fn done(l: &mut LeaderPartition) -> Vec<(u64, Result<i64, i16>)> {
    l.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            LeaderOutput::ProduceDone { id, result } => Some((id, result)),
            _ => None,
        })
        .collect()
}

#[test]
fn replication_hw_is_the_min_replicated_offset_over_the_isr() {
    let (mut l, log) = leader(2, &[1, 2, 3], 10);
    assert_eq!(l.high_watermark(), 0);
    l.on_fetch(&fetch(2, 7, 1), &log, true, 1);
    assert_eq!(l.high_watermark(), 0, "broker 3 has nothing yet");
    l.on_fetch(&fetch(3, 4, 1), &log, true, 1);
    assert_eq!(l.high_watermark(), 4);
    l.on_fetch(&fetch(3, 10, 1), &log, true, 2);
    assert_eq!(l.high_watermark(), 7);
}

#[test]
fn replication_hw_advances_only_while_isr_reaches_min_insync_replicas() {
    // KIP-966 strict: ISR {1} with min.insync.replicas 2 commits nothing, not even locally.
    let (mut l, log) = leader(2, &[1], 5);
    assert_eq!(l.high_watermark(), 0);
    l.on_fetch(&fetch(2, 5, 1), &log, true, 1);
    assert_eq!(l.high_watermark(), 0, "2 is only a pending member");
    assert_eq!(alter_requests(&mut l), vec![vec![1, 2]]);
    l.on_partition_state(&PartitionState {
        partition_epoch: 1,
        ..state(&[1, 2], 1)
    });
    assert_eq!(l.high_watermark(), 5);
}

#[test]
fn replication_hw_never_moves_back_on_a_leader() {
    let (mut l, log) = leader(1, &[1, 2], 10);
    l.on_fetch(&fetch(2, 8, 1), &log, true, 1);
    assert_eq!(l.high_watermark(), 8);
    // 3 joins (pending) with less than the HW? Not allowed; and a follower going back (after
    // its own truncation) does not pull the HW down.
    l.on_fetch(&fetch(2, 3, 1), &log, true, 2);
    assert_eq!(l.high_watermark(), 8);
    l.on_partition_state(&PartitionState {
        partition_epoch: 1,
        ..state(&[1, 2, 3], 1)
    });
    assert_eq!(l.high_watermark(), 8);
}

#[test]
fn replication_isr_expand_needs_catch_up_in_the_current_epoch() {
    // The leader's epoch 2 starts at offset 6: a follower at the HW but below the epoch start
    // has not fetched in this epoch and may not join.
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    for i in 0..6 {
        log.append_as_leader(1, -1, 0, i);
    }
    log.start_epoch(2);
    let mut l = LeaderPartition::new(
        cfg(1, AckDurability::Written),
        1,
        10,
        T,
        0,
        &state(&[1], 2),
        &log,
        4,
        0,
    );
    assert_eq!(l.epoch_start_offset(), 6);
    for i in 6..9 {
        log.append_as_leader(2, -1, 0, i);
    }
    l.on_log_progress(&log);
    assert_eq!(l.high_watermark(), 9, "ISR {{1}} and min.insync 1");
    let mut f = fetch(2, 5, 1);
    f.leader_epoch = 2;
    assert!(matches!(
        l.on_fetch(&f, &log, true, 1),
        FetchAnswer::Read { .. }
    ));
    assert!(
        alter_requests(&mut l).is_empty(),
        "below the HW and epoch start"
    );
    let mut f = fetch(2, 9, 2);
    f.leader_epoch = 2;
    l.on_fetch(&f, &log, false, 2);
    assert!(
        alter_requests(&mut l).is_empty(),
        "fenced / stale broker epoch"
    );
    l.on_fetch(&f, &log, true, 3);
    let out = l.take_outputs();
    let LeaderOutput::AlterPartition(req) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(req.new_isr, vec![(1, 10), (2, 22)]);
    assert_eq!((req.leader_epoch, req.partition_epoch), (2, 0));
}

#[test]
fn replication_isr_shrinks_after_replica_lag_time_max() {
    let (mut l, log) = leader(1, &[1, 2, 3], 10);
    // 2 keeps up, 3 fetches but stays behind.
    for t in (100..=1_100).step_by(100) {
        l.on_fetch(&fetch(2, 10, 1), &log, true, t);
        l.on_fetch(&fetch(3, 2, 1), &log, true, t);
        l.tick(t);
    }
    assert_eq!(alter_requests(&mut l), vec![vec![1, 2]]);
    // One change in flight at a time; refused -> dropped, proposed again on a later tick.
    l.tick(1_200);
    assert!(alter_requests(&mut l).is_empty());
    l.on_alter_partition_response(Err(codes::INVALID_UPDATE_VERSION));
    l.tick(1_300);
    assert_eq!(alter_requests(&mut l), vec![vec![1, 2]]);
}

#[test]
fn replication_acks_all_refused_before_append_when_isr_below_min() {
    let (l, _) = leader(2, &[1], 0);
    assert_eq!(l.check_produce(true), Err(codes::NOT_ENOUGH_REPLICAS));
    assert_eq!(
        l.check_produce(false),
        Ok(()),
        "acks=1 does not need the ISR"
    );
    let (l, _) = leader(2, &[1, 2], 0);
    assert_eq!(l.check_produce(true), Ok(()));
}

#[test]
fn replication_acks_all_answers_when_hw_passes_or_times_out_or_resigns() {
    let (mut l, mut log) = leader(2, &[1, 2, 3], 0);
    let off = log.append_as_leader(1, -1, 0, 7);
    l.on_log_progress(&log);
    l.await_replication(1, off, 1_000);
    l.on_fetch(&fetch(2, 1, 1), &log, true, 1);
    assert!(done(&mut l).is_empty(), "3 is in the ISR and lacks it");
    l.on_fetch(&fetch(3, 1, 1), &log, true, 1);
    assert_eq!(done(&mut l), vec![(1, Ok(0))]);
    // The ISR shrinks below min.insync while a batch waits: the HW stalls; it times out.
    let off = log.append_as_leader(1, -1, 0, 8);
    l.on_log_progress(&log);
    l.await_replication(2, off, 2_000);
    l.on_partition_state(&PartitionState {
        partition_epoch: 1,
        ..state(&[1], 1)
    });
    l.on_fetch(&fetch(2, 2, 1), &log, true, 2);
    assert!(done(&mut l).is_empty());
    l.tick(2_000);
    assert_eq!(done(&mut l), vec![(2, Err(codes::REQUEST_TIMED_OUT))]);
    let (mut l, mut log) = leader(1, &[1, 2], 0);
    // Leadership lost: waiters answer NOT_LEADER_OR_FOLLOWER.
    let off = log.append_as_leader(1, -1, 0, 10);
    l.on_log_progress(&log);
    l.await_replication(4, off, 5_000);
    assert_eq!(
        l.resign(),
        vec![LeaderOutput::ProduceDone {
            id: 4,
            result: Err(codes::REQUEST_TIMED_OUT)
        }]
    );
}

#[test]
fn replication_acks_all_after_append_when_isr_shrank_below_min() {
    // min.insync 2: the HW passed the batch, but by the time it is answered the committed ISR
    // is below min.insync.replicas (Kafka answers NOT_ENOUGH_REPLICAS_AFTER_APPEND then).
    let (mut l, mut log) = leader(2, &[1, 2], 0);
    let off = log.append_as_leader(1, -1, 0, 1);
    l.on_log_progress(&log);
    l.on_fetch(&fetch(2, 1, 1), &log, true, 1);
    assert_eq!(l.high_watermark(), 1);
    // Appended before, waits now, ISR shrank to {1}: the HW already covers it.
    l.on_partition_state(&PartitionState {
        partition_epoch: 1,
        ..state(&[1], 1)
    });
    l.await_replication(5, off, 10_000);
    assert_eq!(
        done(&mut l),
        vec![(5, Err(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND))]
    );
}

#[test]
fn replication_synced_durability_counts_only_fdatasynced_offsets() {
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    let mut l = LeaderPartition::new(
        cfg(2, AckDurability::Synced),
        1,
        10,
        T,
        0,
        &state(&[1, 2], 1),
        &log,
        0,
        0,
    );
    for i in 0..4 {
        log.append_as_leader(1, -1, 0, i);
    }
    l.on_log_progress(&log);
    let mut f = fetch(2, 4, 1);
    f.replicated_offset = 2; // written 4, synced 2
    l.on_fetch(&f, &log, true, 1);
    assert_eq!(l.high_watermark(), 0, "the leader synced nothing yet");
    log.synced_to(3, log.generation());
    l.on_log_progress(&log);
    assert_eq!(l.high_watermark(), 2);
    // The follower side reports its synced end as replicated.
    let mut flog = PartitionLogModel::default();
    flog.append_as_follower(&log.read(0, 4));
    flog.synced_to(1, flog.generation());
    let mut fp = FollowerPartition::new(2, 22, 1, 1, AckDurability::Synced, 0);
    let (_, req) = fp.next_fetch(&flog);
    assert_eq!((req.fetch_offset, req.replicated_offset), (4, 1));
}

#[test]
fn replication_fetch_checks_the_leader_epoch() {
    let (mut l, log) = leader(1, &[1, 2], 3);
    let mut f = fetch(2, 0, -1);
    f.leader_epoch = 0;
    assert_eq!(
        l.on_fetch(&f, &log, true, 1),
        FetchAnswer::Error(codes::FENCED_LEADER_EPOCH)
    );
    f.leader_epoch = 2;
    assert_eq!(
        l.on_fetch(&f, &log, true, 1),
        FetchAnswer::Error(codes::UNKNOWN_LEADER_EPOCH)
    );
    let mut f = fetch(9, 0, -1);
    f.replica_id = 9;
    assert_eq!(
        l.on_fetch(&f, &log, true, 1),
        FetchAnswer::Error(codes::NOT_LEADER_OR_FOLLOWER)
    );
}

/// Leader log: epoch 1 at 0..4, epoch 3 at 4..8. Follower (old leader of epoch 2): epoch 1 at
/// 0..4, epoch 2 at 4..7.
fn diverged() -> (PartitionLogModel, PartitionLogModel) {
    let mut leader = PartitionLogModel::default();
    let mut follower = PartitionLogModel::default();
    leader.start_epoch(1);
    follower.start_epoch(1);
    for i in 0..4 {
        leader.append_as_leader(1, -1, 0, i);
    }
    follower.append_as_follower(&leader.read(0, 4));
    follower.start_epoch(2);
    for i in 0..3 {
        follower.append_as_leader(2, -1, 0, 100 + i);
    }
    leader.start_epoch(3);
    for i in 0..4 {
        leader.append_as_leader(3, -1, 0, 200 + i);
    }
    (leader, follower)
}

#[test]
fn replication_fetch_answers_diverging_epoch_when_logs_disagree() {
    let (llog, flog) = diverged();
    let mut l = LeaderPartition::new(
        cfg(1, AckDurability::Written),
        1,
        10,
        T,
        0,
        &PartitionState {
            leader_epoch: 3,
            ..state(&[1], 3)
        },
        &llog,
        0,
        0,
    );
    let mut f = fetch(2, flog.log_end_offset(), flog.last_fetched_epoch());
    f.leader_epoch = 3;
    // The leader never had epoch 2: its largest epoch below is 1, ending at 4.
    assert_eq!(
        l.on_fetch(&f, &llog, true, 1),
        FetchAnswer::Diverging {
            epoch: 1,
            end_offset: 4,
            high_watermark: 8 // ISR {1}, min.insync 1
        }
    );
    // Same epoch but the follower is past the leader's end of it (KIP-279's case).
    let mut f = fetch(2, 6, 1);
    f.leader_epoch = 3;
    assert!(matches!(
        l.on_fetch(&f, &llog, true, 1),
        FetchAnswer::Diverging {
            epoch: 1,
            end_offset: 4,
            ..
        }
    ));
    // A follower that agrees gets records.
    let mut f = fetch(2, 4, 1);
    f.leader_epoch = 3;
    assert!(matches!(
        l.on_fetch(&f, &llog, true, 1),
        FetchAnswer::Read { from: 4, .. }
    ));
}

#[test]
fn replication_follower_hw_never_rises_on_a_truncation() {
    // The follower starts with HW 3 and a log of 7 that diverges from the leader's at 4; the
    // leader's HW is 8. An intermediate truncation (to 7: the follower lacks the leader's
    // epoch) must not lift the HW over records not yet known to match (seed 1379).
    let (_llog, mut flog) = diverged();
    let mut fp = FollowerPartition::new(2, 22, 1, 3, AckDurability::Written, 3);
    let (id, _) = fp.next_fetch(&flog);
    let action = fp.on_fetch_response(
        id,
        FetchResponse::<Vec<LogEntry>>::Diverging {
            epoch: 3,
            end_offset: 8,
            high_watermark: 8,
        },
        &flog,
    );
    let FollowerAction::Truncate(to) = action else {
        panic!("{action:?}")
    };
    flog.truncate_to(to);
    fp.truncated(&flog);
    assert_eq!(fp.high_watermark(), 3, "unchanged, not min(8, log end)");
    flog.truncate_to(2);
    fp.truncated(&flog);
    assert_eq!(fp.high_watermark(), 2, "down to the log end");
}

#[test]
fn replication_follower_truncates_itself_to_the_largest_common_epoch_end() {
    let (llog, mut flog) = diverged();
    let mut fp = FollowerPartition::new(2, 22, 1, 3, AckDurability::Written, 3);
    let (id, req) = fp.next_fetch(&flog);
    assert_eq!((req.fetch_offset, req.last_fetched_epoch), (7, 2));
    let action = fp.on_fetch_response(
        id,
        FetchResponse::<Vec<LogEntry>>::Diverging {
            epoch: 1,
            end_offset: 4,
            high_watermark: 4,
        },
        &flog,
    );
    assert_eq!(action, FollowerAction::Truncate(4));
    let leader_before = llog.entries().to_vec();
    flog.truncate_to(4);
    fp.truncated(&flog);
    assert_eq!(
        llog.entries(),
        &leader_before[..],
        "the leader's log is untouched"
    );
    // Then it fetches from 4 in epoch 1 and gets the leader's epoch-3 batches.
    let (id, req) = fp.next_fetch(&flog);
    assert_eq!((req.fetch_offset, req.last_fetched_epoch), (4, 1));
    let action = fp.on_fetch_response(
        id,
        FetchResponse::Records {
            entries: llog.read(4, 10),
            high_watermark: 8,
        },
        &flog,
    );
    let FollowerAction::Append(entries) = action else {
        panic!("{action:?}")
    };
    flog.append_as_follower(&entries);
    fp.appended(&flog);
    assert_eq!(flog.entries(), llog.entries());
    assert_eq!(fp.high_watermark(), 8);
    // When the follower lacks the leader's epoch it cuts to its own epoch end below it.
    let (_, f2) = diverged();
    assert_eq!(
        truncation_offset(&f2, 3, 8),
        7.min(f2.end_offset_for_epoch(3).1)
    );
    assert_eq!(truncation_offset(&f2, 1, 4), 4);
    assert_eq!(truncation_offset(&f2, -1, -1), 0);
}

#[test]
fn replication_follower_hw_is_the_leaders_capped_by_its_own_log_end() {
    let (llog, _) = diverged();
    let mut flog = PartitionLogModel::default();
    let mut fp = FollowerPartition::new(2, 22, 1, 3, AckDurability::Written, 0);
    let (id, _) = fp.next_fetch(&flog);
    let FollowerAction::Append(entries) = fp.on_fetch_response(
        id,
        FetchResponse::Records {
            entries: llog.read(0, 3),
            high_watermark: 8,
        },
        &flog,
    ) else {
        panic!()
    };
    flog.append_as_follower(&entries);
    fp.appended(&flog);
    assert_eq!(fp.high_watermark(), 3, "capped by the follower's LEO");
    // An answer to an older fetch is dropped.
    let (_old, _) = fp.next_fetch(&flog);
    let (new, _) = fp.next_fetch(&flog);
    assert_eq!(
        fp.on_fetch_response(new - 1, FetchResponse::<Vec<LogEntry>>::Error(6), &flog),
        FollowerAction::Idle
    );
    assert_eq!(
        fp.on_fetch_response(new, FetchResponse::<Vec<LogEntry>>::Error(6), &flog),
        FollowerAction::Backoff(6)
    );
}

#[test]
fn replication_log_model_crash_loses_the_unsynced_tail_and_keeps_a_torn_prefix() {
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    for i in 0..10 {
        log.append_as_leader(1, 5, i, i as u64);
    }
    log.synced_to(4, log.generation());
    let gen_before = log.generation();
    log.truncate_to(8);
    log.synced_to(8, gen_before); // a sync issued before the truncation covers nothing new
    assert_eq!(log.synced_end_offset(), 4);
    log.crash(2);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.synced_end_offset(), 6);
    // Producer state is rebuilt from what is left.
    assert_eq!(log.check_sequence(5, 6), SequenceCheck::Next);
    assert_eq!(log.check_sequence(5, 3), SequenceCheck::Duplicate(3));
    assert_eq!(log.check_sequence(5, 8), SequenceCheck::OutOfOrder);
    assert_eq!(log.check_sequence(6, 1), SequenceCheck::OutOfOrder);
    assert_eq!(log.check_sequence(6, 0), SequenceCheck::Next);
}

#[test]
fn replication_acks_all_waiters_time_out_at_their_own_request_deadline() {
    // Each acks=all produce carries its request's timeout_ms: a short one times out while a
    // longer one, waiting for the same ISR, keeps waiting.
    let (mut l, mut log) = leader(2, &[1, 2], 0);
    let first = log.append_as_leader(1, -1, 0, 1);
    l.on_log_progress(&log);
    l.await_replication(1, first, 300);
    let second = log.append_as_leader(1, -1, 0, 2);
    l.on_log_progress(&log);
    l.await_replication(2, second, 2_000);
    l.tick(299);
    assert!(done(&mut l).is_empty(), "no deadline reached yet");
    l.tick(300);
    assert_eq!(done(&mut l), vec![(1, Err(codes::REQUEST_TIMED_OUT))]);
    l.tick(1_999);
    assert!(done(&mut l).is_empty());
    l.on_fetch(&fetch(2, 2, 1), &log, true, 1_999);
    assert_eq!(
        done(&mut l),
        vec![(2, Ok(1))],
        "answered once the ISR has it"
    );
    // A zero timeout (timeout_ms 0): answered at once when the HW already covers it.
    l.await_replication(3, second, 0);
    assert_eq!(done(&mut l), vec![(3, Ok(1))]);
}

/// A log whose writes have not all completed yet (the storage log's written end lags its end).
struct Unwritten<'a> {
    log: &'a PartitionLogModel,
    written: i64,
}

impl ReplicaLog for Unwritten<'_> {
    fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }
    fn written_end_offset(&self) -> i64 {
        self.written
    }
    fn synced_end_offset(&self) -> i64 {
        self.log.synced_end_offset().min(self.written)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.end_offset_for_epoch(epoch)
    }
    fn last_fetched_epoch(&self) -> i32 {
        self.log.last_fetched_epoch()
    }
}

#[test]
fn replication_written_durability_counts_completed_writes_without_fdatasync() {
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    let mut l = LeaderPartition::new(
        cfg(2, AckDurability::Written),
        1,
        10,
        T,
        0,
        &state(&[1, 2], 1),
        &log,
        0,
        0,
    );
    for i in 0..4 {
        log.append_as_leader(1, -1, 0, i);
    }
    // Appended 4, writes completed for 3, nothing synced.
    l.on_log_progress(&Unwritten {
        log: &log,
        written: 3,
    });
    l.on_fetch(&fetch(2, 4, 1), &log, true, 1);
    assert_eq!(
        l.high_watermark(),
        3,
        "the leader counts its completed writes, not its appended end, and no sync"
    );
    l.on_log_progress(&log);
    assert_eq!(l.high_watermark(), 4);
    assert_eq!(log.synced_end_offset(), 0, "nothing was fdatasynced");
    // The follower side reports its log end (written) as replicated, synced or not.
    let mut flog = PartitionLogModel::default();
    flog.append_as_follower(&log.read(0, 4));
    let mut fp = FollowerPartition::new(2, 22, 1, 1, AckDurability::Written, 0);
    let (_, req) = fp.next_fetch(&flog);
    assert_eq!((req.fetch_offset, req.replicated_offset), (4, 4));
}

#[test]
fn replication_ack_durability_setting_parses_synced_and_written() {
    assert_eq!(AckDurability::parse("synced"), Some(AckDurability::Synced));
    assert_eq!(
        AckDurability::parse(" Written "),
        Some(AckDurability::Written)
    );
    assert_eq!(AckDurability::parse("fsync"), None);
    assert_eq!(
        AckDurability::Written.storage(),
        tern_storage::Durability::Written
    );
    assert_eq!(
        AckDurability::Synced.storage(),
        tern_storage::Durability::Synced
    );
}

#[test]
fn replication_isr_expand_takes_back_a_replica_that_led_an_empty_partition() {
    // Broker 3 led epoch 0 of an empty partition (its epoch cache: 0 -> 0, no record), died,
    // and broker 1 leads epoch 1 (cache 1 -> 0) with ISR {1, 2}. The restarted 3 fetches with
    // last fetched epoch 0, older than any epoch the leader knows: that epoch ends where the
    // leader's first one starts (Kafka), so the logs agree, the fetch counts and 3 rejoins.
    // With (-1, -1) the leader answered a DivergingEpoch that reads as "none" on the wire, the
    // follower idled and 3 never rejoined (test_16: empty `__consumer_offsets` partitions
    // left with an ISR of one, so no group could form under min.insync.replicas=2).
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    let mut l = LeaderPartition::new(
        cfg(2, AckDurability::Written),
        1,
        10,
        T,
        0,
        &state(&[1, 2], 1),
        &log,
        0,
        0,
    );
    let mut flog = PartitionLogModel::default();
    flog.start_epoch(0);
    let mut fp = FollowerPartition::new(3, 23, 1, 1, AckDurability::Written, 0);
    let (id, req) = fp.next_fetch(&flog);
    assert_eq!((req.fetch_offset, req.last_fetched_epoch), (0, 0));
    assert_eq!(log.end_offset_for_epoch(0), (0, 0));
    let answer = l.on_fetch(&req, &log, true, 1);
    let FetchAnswer::Read { from, .. } = answer else {
        panic!("the logs agree up to offset 0, not {answer:?}");
    };
    assert_eq!(from, 0);
    assert_eq!(alter_requests(&mut l), vec![vec![1, 2, 3]]);
    let resp = FetchResponse::Records {
        entries: log.read(from, 10),
        high_watermark: l.high_watermark(),
    };
    assert_eq!(fp.on_fetch_response(id, resp, &flog), FollowerAction::Idle);
}

#[test]
fn replication_log_truncation_at_the_log_end_drops_epochs_noted_without_entries() {
    // Like the storage log: the last fetched epoch is the epoch cache's, so an epoch led
    // without writing counts, and a truncation to the log end drops it (Kafka's
    // truncateFromEnd), else the follower would send it again and diverge forever.
    let mut log = PartitionLogModel::default();
    log.start_epoch(1);
    log.append_as_leader(1, -1, 0, 0);
    log.start_epoch(3);
    assert_eq!(log.last_fetched_epoch(), 3);
    log.truncate_to(1);
    assert_eq!(log.last_fetched_epoch(), 1);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn replication_follower_below_the_leaders_log_start_restarts_its_log_there() {
    // The follower was away while the leader deleted offsets 0..10 (retention or
    // DeleteRecords): its fetch from 3 is out of range, and it restarts empty at 10.
    let mut flog = PartitionLogModel::default();
    flog.start_epoch(1);
    for i in 0..3 {
        flog.append_as_leader(1, -1, 0, i);
    }
    let mut fp = FollowerPartition::new(2, 22, 1, 1, AckDurability::Written, 0);
    let (id, req) = fp.next_fetch(&flog);
    assert_eq!(req.fetch_offset, 3);
    let resp = FetchResponse::<Vec<LogEntry>>::OffsetOutOfRange {
        leader_log_start: 10,
        high_watermark: 12,
    };
    assert_eq!(
        fp.on_fetch_response(id, resp.clone(), &flog),
        FollowerAction::RestartAt(10)
    );
    // Out of range but not below the leader's log start (a leader behind our metadata):
    // wait, never restart.
    for _ in 3..10 {
        flog.append_as_leader(1, -1, 0, 0);
    }
    let (id, req) = fp.next_fetch(&flog);
    assert_eq!(req.fetch_offset, 10);
    assert_eq!(
        fp.on_fetch_response(id, resp, &flog),
        FollowerAction::Backoff(codes::OFFSET_OUT_OF_RANGE)
    );
    // The restarted log has no epoch: the leader serves it from its fetch offset without a
    // divergence check (Kafka checks only a LastFetchedEpoch that is set).
    let (mut l, llog) = leader(1, &[1, 2, 3], 12);
    let answer = l.on_fetch(&fetch(2, 10, -1), &llog, true, 1);
    assert!(
        matches!(answer, FetchAnswer::Read { from: 10, .. }),
        "{answer:?}"
    );
}

/// Fetched batches as the broker sees them: a first batch `base..=last`.
#[derive(Debug, PartialEq)]
struct OneBatch {
    base: i64,
    last: i64,
}

impl super::follower::FetchedRecords for OneBatch {
    fn first_offset(&self) -> Option<i64> {
        Some(self.base)
    }

    fn first_batch_last_offset(&self) -> Option<i64> {
        Some(self.last)
    }
}

/// A log restarted empty at `at` (RestartAt): its start and end are both `at`, no epoch.
struct RestartedLog {
    at: i64,
}

impl ReplicaLog for RestartedLog {
    fn log_end_offset(&self) -> i64 {
        self.at
    }

    fn log_start_offset(&self) -> i64 {
        self.at
    }

    fn synced_end_offset(&self) -> i64 {
        self.at
    }

    fn end_offset_for_epoch(&self, _epoch: i32) -> (i32, i64) {
        (-1, -1)
    }

    fn last_fetched_epoch(&self) -> i32 {
        -1
    }
}

#[test]
fn replication_follower_restarted_inside_a_leader_batch_restarts_at_its_base() {
    // DeleteRecords moved the leader's log start to 10, inside its batch 8..=12: the restarted
    // follower fetches from 10 and gets that batch; it restarts at 8 and appends it (Kafka's
    // UnexpectedAppendOffsetException rule). The same batch for a log that is not empty is
    // refused.
    let mut flog = PartitionLogModel::default();
    flog.start_epoch(1);
    flog.append_as_leader(1, -1, 0, 0);
    let mut fp = FollowerPartition::new(2, 22, 1, 1, AckDurability::Written, 0);
    let (id, _) = fp.next_fetch(&flog);
    let oor = FetchResponse::<OneBatch>::OffsetOutOfRange {
        leader_log_start: 10,
        high_watermark: 13,
    };
    assert_eq!(
        fp.on_fetch_response(id, oor, &flog),
        FollowerAction::RestartAt(10)
    );
    let restarted = RestartedLog { at: 10 };
    fp.appended(&restarted);
    let batch = || FetchResponse::Records {
        entries: OneBatch { base: 8, last: 12 },
        high_watermark: 13,
    };
    let restart_and_append = FollowerAction::RestartAndAppend {
        at: 8,
        records: OneBatch { base: 8, last: 12 },
    };
    let (id, req) = fp.next_fetch(&restarted);
    assert_eq!(req.fetch_offset, 10);
    assert_eq!(
        fp.on_fetch_response(id, batch(), &restarted),
        restart_and_append
    );
    // The role may be rebuilt while (or after) the log restarts (the broker registered
    // again, a new leader epoch): the new role sees the same empty log and does the same.
    let mut rebuilt = FollowerPartition::new(2, 23, 1, 1, AckDurability::Written, 0);
    let (id, _) = rebuilt.next_fetch(&restarted);
    assert_eq!(
        rebuilt.on_fetch_response(id, batch(), &restarted),
        restart_and_append
    );
    // A log holding records up to 10 never takes a batch from below its end.
    let mut held = PartitionLogModel::default();
    for _ in 0..10 {
        held.append_as_leader(1, -1, 0, 0);
    }
    let (id, req) = fp.next_fetch(&held);
    assert_eq!(req.fetch_offset, 10);
    assert_eq!(
        fp.on_fetch_response(id, batch(), &held),
        FollowerAction::Backoff(codes::OFFSET_OUT_OF_RANGE)
    );
}

#[test]
fn replication_follower_log_start_follows_the_leaders_up_to_its_high_watermark() {
    use super::follower::log_start_to_follow;
    assert_eq!(log_start_to_follow(50, 0, 80), Some(50));
    assert_eq!(
        log_start_to_follow(50, 0, 30),
        Some(30),
        "never past its HW"
    );
    assert_eq!(log_start_to_follow(50, 50, 80), None, "already there");
    assert_eq!(log_start_to_follow(20, 50, 80), None, "never back");
    assert_eq!(
        log_start_to_follow(-1, 0, 80),
        None,
        "an error answer carries -1"
    );
}
