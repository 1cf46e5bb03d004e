//! Crash and fault tests: writes and syncs held or failed at the I/O layer, then a process
//! crash (the log is abandoned and reopened) or a simulated power cut ([`crate::fault`]).
//! The invariant checked throughout: a record whose append was acknowledged at some
//! durability level is in the log after a crash that level promises to survive.

use std::path::Path;

use bytes::BytesMut;
use futures::FutureExt;

use crate::fault;
use crate::tests::{B, batch_ranges, idem_batch, open, run};
use crate::*;

/// Batch `seq..seq+n` of idempotent producer 7, epoch 0.
fn idem(seq: i32, n: usize) -> BytesMut {
    idem_batch(seq, n, B::default().value_len)
}

/// Whether an ack future has resolved, and how (without waiting).
fn peek(a: &mut Appended) -> Option<Result<(), StorageError>> {
    (&mut a.done).now_or_never()
}

async fn append_one(log: &PartitionLog) {
    let a = log
        .append(crate::tests::recs(1), 0, Durability::Synced)
        .unwrap();
    a.done.await.unwrap();
}

/// Reopens `dir` as after a crash: the old instance is abandoned, its held I/O never resumes.
async fn reopen(dir: &Path) -> std::rc::Rc<PartitionLog> {
    open(dir, LogConfig::default(), 1 << 20).await
}

#[test]
fn acks1_retry_waits_for_the_original_write() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        let gate = fault::hold_writes();
        let mut orig = log.append(idem(0, 3), 0, Durability::Written).unwrap();
        fault::until_held(1).await; // the original is being written
        let mut retry = log.append(idem(0, 3), 0, Durability::Written).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
        assert!(peek(&mut orig).is_none());
        assert!(
            peek(&mut retry).is_none(),
            "acks=1 retry acknowledged before the original was written"
        );
        // Process crash while the write is held: nothing was acknowledged, nothing is there,
        // and the producer state rebuilt from disk takes the retry as new.
        std::mem::forget(gate);
        fault::process_crash();
        let log = reopen(&dir).await;
        assert_eq!(batch_ranges(&log).await, vec![]);
        let again = log.append(idem(0, 3), 0, Durability::Written).unwrap();
        assert!(!again.duplicate);
        again.done.await.unwrap();
        assert_eq!(batch_ranges(&log).await, vec![(0, 2)]);
    });
}

#[test]
fn acks_all_retry_waits_for_the_original_sync() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        let gate = fault::hold_syncs();
        let mut orig = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        fault::until_held(1).await; // written, being synced
        assert_eq!(log.high_watermark(), 3);
        let mut retry_all = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        let mut retry_one = log.append(idem(0, 3), 0, Durability::Written).unwrap();
        assert!(retry_all.duplicate && retry_one.duplicate);
        assert!(peek(&mut orig).is_none());
        assert!(
            peek(&mut retry_all).is_none(),
            "acks=all retry acknowledged before the original was synced"
        );
        assert!(
            matches!(peek(&mut retry_one), Some(Ok(()))),
            "acks=1 retry of a written batch is answered at once"
        );
        // Power cut while the sync is held: the unsynced original is gone; it was never
        // acknowledged at acks=all.
        std::mem::forget(gate);
        fault::power_cut();
        let log = reopen(&dir).await;
        assert_eq!(batch_ranges(&log).await, vec![]);
    });
}

#[test]
fn writes_go_on_while_an_earlier_acks_all_sync_runs() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        append_one(&log).await; // the leader epoch's checkpoint (a sync of its own) is written
        let gate = fault::hold_syncs();
        let mut a = log
            .append(crate::tests::recs(1), 0, Durability::Synced)
            .unwrap();
        fault::until_held(1).await; // written, its fdatasync held
        // Later appends are written meanwhile (group commit, not a sync per write in turn).
        let b = log
            .append(crate::tests::recs(1), 0, Durability::Written)
            .unwrap();
        b.done.await.unwrap();
        let mut c = log
            .append(crate::tests::recs(1), 0, Durability::Synced)
            .unwrap();
        for _ in 0..1000 {
            if log.high_watermark() == 4 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(
            log.high_watermark(),
            4,
            "written while the first sync is held"
        );
        assert!(peek(&mut a).is_none(), "acked before its sync");
        assert!(peek(&mut c).is_none(), "acked before its sync");
        let syncs = log.sync_count();
        drop(gate);
        a.done.await.unwrap();
        // The first sync was asked for before `c` was written: `c` needs a second one.
        c.done.await.unwrap();
        assert_eq!(log.sync_count(), syncs + 2);
        fault::power_cut();
        let log = reopen(&dir).await;
        assert_eq!(
            batch_ranges(&log).await,
            vec![(0, 0), (1, 1), (2, 2), (3, 3)]
        );
    });
}

#[test]
fn acks_all_retry_queued_behind_the_original_is_acked_after_its_sync() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        // Another batch is being written; the original and its retry queue behind it.
        let gate = fault::hold_writes();
        let first = log
            .append(crate::tests::recs(1), 0, Durability::Written)
            .unwrap();
        fault::until_held(1).await;
        let mut orig = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        let mut retry = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        assert_eq!((retry.base_offset, retry.last_offset), (1, 3));
        assert!(peek(&mut orig).is_none());
        assert!(
            peek(&mut retry).is_none(),
            "retry acknowledged while queued"
        );
        drop(gate);
        first.done.await.unwrap();
        orig.done.await.unwrap();
        retry.done.await.unwrap();
        // Both acknowledged at acks=all: they survive a power cut, once.
        fault::power_cut();
        let log = reopen(&dir).await;
        assert_eq!(batch_ranges(&log).await, vec![(0, 0), (1, 3)]);
        let again = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        assert!(again.duplicate);
        again.done.await.unwrap();
    });
}

#[test]
fn acks_all_retry_of_an_acks1_original_forces_a_sync() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        let a = log.append(idem(0, 3), 0, Durability::Written).unwrap();
        a.done.await.unwrap();
        let before = log.sync_count();
        let retry = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        assert!(retry.duplicate);
        retry.done.await.unwrap();
        assert!(
            log.sync_count() > before,
            "acked at acks=all without a sync"
        );
        fault::power_cut();
        let log = reopen(&dir).await;
        assert_eq!(batch_ranges(&log).await, vec![(0, 2)]);
    });
}

#[test]
fn failed_original_write_fails_its_retry_and_dedups_nothing() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        let gate = fault::hold_writes();
        fault::fail_next_write();
        let orig = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        fault::until_held(1).await;
        let mut retry = log.append(idem(0, 3), 0, Durability::Written).unwrap();
        assert!(
            peek(&mut retry).is_none(),
            "retry acknowledged before the original was written"
        );
        drop(gate);
        assert!(orig.done.await.is_err());
        assert!(
            retry.done.await.is_err(),
            "the retry of a batch whose write failed must fail too"
        );
        // The failed log takes nothing more (its producer state is no longer trusted) ...
        assert!(matches!(
            log.append(idem(0, 3), 0, Durability::Written),
            Err(AppendError::Io(StorageError::Failed(_)))
        ));
        // ... and once reopened, the retry is written, not taken as a duplicate.
        drop(log);
        fault::power_cut();
        let log = reopen(&dir).await;
        let again = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        assert!(!again.duplicate);
        again.done.await.unwrap();
        assert_eq!(batch_ranges(&log).await, vec![(0, 2)]);
    });
}

#[test]
fn failed_original_sync_fails_its_acks_all_retry() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await;
        // A first batch, so that the leader-epoch checkpoint (and its sync) is written already.
        append_one(&log).await;
        let gate = fault::hold_syncs();
        fault::fail_next_sync();
        let orig = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        fault::until_held(1).await;
        let mut retry = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        assert_eq!(retry.base_offset, 1);
        assert!(peek(&mut retry).is_none());
        drop(gate);
        assert!(orig.done.await.is_err());
        assert!(retry.done.await.is_err());
    });
}

#[test]
fn new_partition_directory_survives_a_power_cut() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir).await; // creates the partition directory and its first segment
        append_one(&log).await;
        assert_eq!(fault::unsynced_entries(), Vec::<std::path::PathBuf>::new());
        fault::power_cut();
        let log = reopen(&dir).await;
        assert_eq!(
            batch_ranges(&log).await,
            vec![(0, 0)],
            "acks=all record lost"
        );
    });
}

#[test]
fn rolled_segments_survive_a_power_cut() {
    run(|dir| async move {
        let one = crate::tests::recs(1).len() as u64;
        let cfg = crate::tests::small_segments(2 * one);
        fault::enable();
        let log = open(&dir, cfg.clone(), 1 << 20).await;
        for _ in 0..5 {
            append_one(&log).await;
            // Every acknowledged record's segment has a durable directory entry.
            assert_eq!(fault::unsynced_entries(), Vec::<std::path::PathBuf>::new());
        }
        assert_eq!(log.segment_count(), 3);
        fault::power_cut();
        let log = open(&dir, cfg, 1 << 20).await;
        assert_eq!(
            batch_ranges(&log).await,
            vec![(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)],
            "acks=all records lost"
        );
    });
}

#[test]
fn truncation_survives_a_power_cut() {
    run(|dir| async move {
        let one = crate::tests::recs(1).len() as u64;
        let cfg = crate::tests::small_segments(2 * one);
        fault::enable();
        let log = open(&dir, cfg.clone(), 1 << 20).await;
        for _ in 0..5 {
            append_one(&log).await;
        }
        log.truncate_to(1).await.unwrap();
        fault::power_cut();
        // The deleted later segments must not come back (they would not follow segment 0).
        let log = open(&dir, cfg, 1 << 20).await;
        assert_eq!(batch_ranges(&log).await, vec![(0, 0)]);
    });
}
