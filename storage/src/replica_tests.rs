//! Tests of the follower's append path (`PartitionLog::append_replicated`) and the reads
//! capped at a replication high watermark (`read_below`).

use bytes::BytesMut;

use crate::batch;
use crate::tests::{B, append, batch, chunk_bytes, headers, open, recs, run, small_segments};
use crate::{AppendError, Durability, LogConfig};

/// A batch as a leader stores it: offsets and leader epoch assigned.
fn leader_batch(base: i64, n: usize, epoch: i32, pid: i64, seq: i32) -> BytesMut {
    let mut b = batch(B {
        n,
        pid,
        epoch: if pid >= 0 { 0 } else { -1 },
        seq,
        ..B::default()
    });
    batch::patch(&mut b, base, epoch);
    b
}

#[test]
fn replicated_batches_keep_leader_offsets_and_epochs() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let mut two = leader_batch(0, 3, 1, 7, 0);
        two.extend_from_slice(&leader_batch(3, 2, 2, 7, 3));
        let mut a = log.append_replicated(two, Durability::Synced).unwrap();
        (&mut a.done).await.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 4));
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(log.synced_end_offset(), 5);
        assert_eq!(log.leader_epochs(), vec![(1, 0), (2, 3)]);
        assert_eq!(log.last_epoch(), 2);
        assert_eq!(log.end_offset_for_epoch(1), (1, 3));
        assert_eq!(log.end_offset_for_epoch(5), (2, 5));
        assert_eq!(
            log.end_offset_for_epoch(0),
            (0, 0),
            "older than all: the first start"
        );
        let hs = headers(&chunk_bytes(&log.read(0, 1 << 20).await.unwrap()));
        assert_eq!(
            hs.iter()
                .map(|h| (h.base_offset, h.leader_epoch))
                .collect::<Vec<_>>(),
            vec![(0, 1), (3, 2)]
        );
        // The producer state came with the batches: a retry of seq 3 is a duplicate here too.
        let mut retry = batch(B {
            n: 2,
            pid: 7,
            epoch: 0,
            seq: 3,
            ..B::default()
        });
        batch::patch(&mut retry, 0, 0);
        let d = log.append(retry, 2, Durability::Written).unwrap();
        assert!(d.duplicate);
        assert_eq!((d.base_offset, d.last_offset), (3, 4));
        log.close().await.unwrap();
    });
}

#[test]
fn replicated_batches_must_follow_the_log_end() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        append(&log, recs(2)).await;
        // A gap, an overlap and a bad CRC are refused, and nothing is written.
        for base in [1, 3] {
            assert!(matches!(
                log.append_replicated(leader_batch(base, 1, 0, -1, -1), Durability::Written),
                Err(AppendError::CorruptMessage(_))
            ));
        }
        let mut bad = leader_batch(2, 1, 0, -1, -1);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            log.append_replicated(bad, Durability::Written),
            Err(AppendError::CorruptMessage(_))
        ));
        let mut good_then_gap = leader_batch(2, 1, 0, -1, -1);
        good_then_gap.extend_from_slice(&leader_batch(9, 1, 0, -1, -1));
        assert!(
            log.append_replicated(good_then_gap, Durability::Written)
                .is_err()
        );
        assert_eq!(log.log_end_offset(), 2);
        // A trailing partial batch (a fetch cut by max bytes) is dropped.
        let mut partial = leader_batch(2, 1, 0, -1, -1);
        let next = leader_batch(3, 1, 0, -1, -1);
        partial.extend_from_slice(&next[..next.len() / 2]);
        let mut a = log.append_replicated(partial, Durability::Written).unwrap();
        (&mut a.done).await.unwrap();
        assert_eq!(log.log_end_offset(), 3);
        log.close().await.unwrap();
    });
}

#[test]
fn reads_below_a_limit_stop_at_its_batch() {
    run(|dir| async move {
        let one = recs(2).len() as u64;
        // Memory (tail cache) and file reads, across segment rolls.
        for cache in [1 << 20, 0] {
            let sub = dir.join(format!("c{cache}"));
            let log = open(&sub, small_segments(3 * one), cache).await;
            for _ in 0..6 {
                append(&log, recs(2)).await;
            }
            for (limit, want) in [
                (12, vec![0, 2, 4, 6, 8, 10]),
                (6, vec![0, 2, 4]),
                (2, vec![0]),
                (0, vec![]),
            ] {
                let chunks = log.read_below(0, usize::MAX, limit).await.unwrap();
                let mut got = Vec::new();
                let mut from = 0;
                // A file read covers one segment: read on as a consumer would.
                let mut chunks = chunks;
                loop {
                    let hs = headers(&chunk_bytes(&chunks));
                    if hs.is_empty() {
                        break;
                    }
                    got.extend(hs.iter().map(|h| h.base_offset));
                    from = hs.last().unwrap().last_offset() + 1;
                    chunks = log.read_below(from, usize::MAX, limit).await.unwrap();
                }
                assert_eq!(got, want, "limit {limit} cache {cache}");
                assert!(from <= limit);
            }
            log.close().await.unwrap();
        }
    });
}

#[test]
fn truncating_to_the_log_end_drops_epochs_noted_there_without_records() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let mut a = log
            .append_replicated(leader_batch(0, 3, 1, -1, -1), Durability::Synced)
            .unwrap();
        (&mut a.done).await.unwrap();
        // A leadership at epoch 2 that wrote nothing, then the new leader says epoch 1 ends at 3.
        log.note_epoch_start(2);
        assert_eq!(log.last_epoch(), 2);
        log.truncate_to(3).await.unwrap();
        assert_eq!(log.leader_epochs(), vec![(1, 0)]);
        assert_eq!((log.last_epoch(), log.log_end_offset()), (1, 3));
        log.close().await.unwrap();
    });
}

#[test]
fn a_follower_log_restarts_empty_at_the_leaders_log_start() {
    run(|dir| async move {
        let one = leader_batch(0, 2, 1, 7, 0).len() as u64;
        // Several segments and a producer snapshot (rolls write one), to see them all go.
        let log = open(&dir, small_segments(2 * one), 1 << 20).await;
        for i in 0..4 {
            let mut a = log
                .append_replicated(
                    leader_batch(2 * i, 2, 1, 7, 2 * i as i32),
                    Durability::Synced,
                )
                .unwrap();
            (&mut a.done).await.unwrap();
        }
        assert!(log.segment_count() > 1);
        assert_eq!(log.log_end_offset(), 8);
        // Below the log end is refused: that is truncate_to's job.
        assert!(log.truncate_fully_and_start_at(5).await.is_err());
        log.truncate_fully_and_start_at(20).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 20));
        assert_eq!((log.high_watermark(), log.synced_end_offset()), (20, 20));
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.leader_epochs(), vec![]);
        assert_eq!(log.last_epoch(), -1);
        assert_eq!(log.producer_count(), 0);
        assert!(matches!(
            log.read(0, 1 << 20).await,
            Err(crate::ReadError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(20, 1 << 20).await.unwrap().is_empty());
        // The leader's batches from its log start append, with their epoch and producer.
        let mut a = log
            .append_replicated(leader_batch(20, 3, 4, 9, 11), Durability::Synced)
            .unwrap();
        (&mut a.done).await.unwrap();
        assert_eq!(log.leader_epochs(), vec![(4, 20)]);
        log.close().await.unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".log"))
            .collect();
        assert_eq!(names, vec![format!("{:020}.log", 20)]);
        // And so it reopens.
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 23));
        assert_eq!(log.leader_epochs(), vec![(4, 20)]);
        let hs = headers(&chunk_bytes(&log.read(20, 1 << 20).await.unwrap()));
        assert_eq!(
            hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![20]
        );
        log.close().await.unwrap();
    });
}
