//! Disk-full tests: segment writes that fail with ENOSPC or tear (a short write) through the
//! fault I/O layer ([`crate::fault`]). The invariants: every acknowledged record stays, nothing
//! unacknowledged is acknowledged later, a torn write leaves no trace (in memory, on disk,
//! after a reopen), and the log takes appends again without a reopen.

use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;

use crate::fault::{self, NoSpaceFault};
use crate::tests::{batch_ranges, chunk_bytes, headers, idem_batch, open, run, small_segments};
use crate::*;

/// Batch `seq..seq+n` of idempotent producer 7, epoch 0.
fn idem(seq: i32, n: usize) -> BytesMut {
    idem_batch(seq, n, 100)
}

async fn reopen(dir: &Path, config: LogConfig) -> Rc<PartitionLog> {
    open(dir, config, 1 << 20).await
}

/// Waits (bounded by iterations) until the log has cut back a write that found the disk full.
async fn until_rewound(log: &PartitionLog) {
    for _ in 0..10_000 {
        log.wait_idle().await;
        if !log.rewinding() {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the log never finished cutting back");
}

fn no_space(r: Result<(), StorageError>) -> bool {
    matches!(r, Err(StorageError::NoSpace(_)))
}

/// Size of segment `base`'s file on disk.
fn file_len(dir: &Path, base: i64) -> u64 {
    std::fs::metadata(dir.join(format!("{base:020}.log")))
        .unwrap()
        .len()
}

#[test]
fn enospc_fails_the_unwritten_appends_and_the_log_takes_writes_again() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir, LogConfig::default()).await;
        let a = log.append(idem(0, 2), 0, Durability::Synced).unwrap();
        a.done.await.unwrap();
        // B and C are written together and fail; D, queued behind them, fails too.
        let gate = fault::hold_writes();
        let b = log.append(idem(2, 2), 0, Durability::Written).unwrap();
        let c = log.append(idem(4, 2), 0, Durability::Synced).unwrap();
        fault::until_held(1).await;
        let d = log.append(idem(6, 2), 0, Durability::Written).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        fault::fail_next_segment_write_no_space(NoSpaceFault::Enospc);
        drop(gate);
        assert!(no_space(b.done.await), "B was not written");
        assert!(no_space(c.done.await), "C was not written");
        assert!(no_space(d.done.await), "D was queued behind a failed write");
        // Until the cut is done, appends are refused as retriable.
        if log.rewinding() {
            assert!(matches!(
                log.append(idem(2, 2), 0, Durability::Written),
                Err(AppendError::Io(StorageError::NoSpace(_)))
            ));
        }
        until_rewound(&log).await;
        assert_eq!(
            log.log_end_offset(),
            2,
            "the log end is back at the written end"
        );
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(batch_ranges(&log).await, vec![(0, 1)]);
        // The producer retries B: new (its first attempt left no producer state), at offset 2.
        let retry = log.append(idem(2, 2), 0, Durability::Synced).unwrap();
        assert!(!retry.duplicate);
        assert_eq!(retry.base_offset, 2);
        retry.done.await.unwrap();
        let e = log.append(idem(4, 4), 0, Durability::Synced).unwrap();
        e.done.await.unwrap();
        assert_eq!(batch_ranges(&log).await, vec![(0, 1), (2, 3), (4, 7)]);
        // And so it is after a crash and reopen.
        fault::process_crash();
        let log = reopen(&dir, LogConfig::default()).await;
        assert_eq!(batch_ranges(&log).await, vec![(0, 1), (2, 3), (4, 7)]);
        let next = log.append(idem(8, 1), 0, Durability::Written).unwrap();
        assert!(
            !next.duplicate,
            "producer state continues after the retried batch"
        );
        next.done.await.unwrap();
    });
}

#[test]
fn a_torn_write_is_cut_back_from_the_file() {
    run(|dir| async move {
        fault::enable();
        let log = reopen(&dir, LogConfig::default()).await;
        let a = log.append(idem(0, 3), 0, Durability::Synced).unwrap();
        a.done.await.unwrap();
        let written = log.size_bytes();
        fault::fail_next_segment_write_no_space(NoSpaceFault::Torn);
        // A large batch: its first half reaches the file, past the written end.
        let big = log.append(idem(3, 40), 0, Durability::Written).unwrap();
        assert!(no_space(big.done.await));
        until_rewound(&log).await;
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.size_bytes(), written);
        assert_eq!(
            file_len(&dir, 0),
            written,
            "the torn bytes are cut off the file"
        );
        assert_eq!(batch_ranges(&log).await, vec![(0, 2)]);
        // A crash now: the reopened log is what was acknowledged.
        fault::process_crash();
        let log = reopen(&dir, LogConfig::default()).await;
        assert_eq!(batch_ranges(&log).await, vec![(0, 2)]);
        let again = log.append(idem(3, 40), 0, Durability::Synced).unwrap();
        assert!(!again.duplicate);
        again.done.await.unwrap();
        assert_eq!(batch_ranges(&log).await, vec![(0, 2), (3, 42)]);
    });
}

#[test]
fn enospc_at_the_first_write_of_a_new_segment() {
    run(|dir| async move {
        fault::enable();
        let config = small_segments(1500);
        let log = reopen(&dir, config.clone()).await;
        // Three batches of ~390 bytes fill the first segment; the fourth rolls.
        for i in 0..3 {
            let a = log.append(idem(3 * i, 3), 0, Durability::Synced).unwrap();
            a.done.await.unwrap();
        }
        assert_eq!(log.segment_count(), 1);
        let acked = batch_ranges(&log).await;
        fault::fail_next_segment_write_no_space(NoSpaceFault::Enospc);
        let a = log.append(idem(9, 3), 0, Durability::Synced).unwrap();
        assert_eq!(log.segment_count(), 2, "the append rolled");
        assert!(no_space(a.done.await));
        until_rewound(&log).await;
        assert_eq!(log.log_end_offset(), 9);
        assert_eq!(batch_ranges(&log).await, acked);
        // The new segment is empty and active; the old one was finalised as usual.
        let a = log.append(idem(9, 3), 0, Durability::Synced).unwrap();
        a.done.await.unwrap();
        let mut all = acked.clone();
        all.push((9, 11));
        assert_eq!(batch_ranges(&log).await, all);
        assert_eq!(log.segment_count(), 2);
        fault::process_crash();
        let log = reopen(&dir, config).await;
        assert_eq!(batch_ranges(&log).await, all);
    });
}

#[test]
fn a_replica_append_after_a_full_disk_continues_at_the_written_end() {
    run(|dir| async move {
        fault::enable();
        let leader = reopen(&dir.with_file_name("leader-0"), LogConfig::default()).await;
        for i in 0..3 {
            let a = leader
                .append(idem(2 * i, 2), 3, Durability::Written)
                .unwrap();
            a.done.await.unwrap();
        }
        let all = chunk_bytes(&leader.read(0, usize::MAX).await.unwrap());
        let hs = headers(&all);
        let follower = reopen(&dir, LogConfig::default()).await;
        let first = BytesMut::from(&all[..hs[0].size]);
        follower
            .append_replicated(first, Durability::Written)
            .unwrap()
            .done
            .await
            .unwrap();
        fault::fail_next_segment_write_no_space(NoSpaceFault::Torn);
        let rest = BytesMut::from(&all[hs[0].size..]);
        let r = follower
            .append_replicated(rest.clone(), Durability::Written)
            .unwrap();
        assert!(no_space(r.done.await));
        until_rewound(&follower).await;
        assert_eq!(follower.log_end_offset(), 2);
        // The follower fetches again from its log end.
        follower
            .append_replicated(rest, Durability::Synced)
            .unwrap()
            .done
            .await
            .unwrap();
        assert_eq!(batch_ranges(&follower).await, batch_ranges(&leader).await);
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    });
}
