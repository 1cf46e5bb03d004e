//! Log cleaner tests: latest value per key, multi-pass cleaning under a tiny map budget,
//! producers' last batches, tombstone expiry, and a crash (process kill or power cut) at every
//! step of a clean followed by a reopen.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::{BufMut, BytesMut};

use crate::compact_batch::Records;
use crate::fault;
use crate::tests::{append, chunk_bytes, headers, run};
use crate::*;

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        buf.push((u as u8) | 0x80);
        u >>= 7;
    }
    buf.push(u as u8);
}

fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

/// A batch of keyed records (value None = tombstone), all with timestamp `ts`.
fn kbatch(recs: &[(&str, Option<&str>)], ts: i64, pid: i64, seq: i32) -> BytesMut {
    let mut records = Vec::new();
    for (i, (k, v)) in recs.iter().enumerate() {
        let mut r = vec![0u8];
        put_varint(&mut r, 0);
        put_varint(&mut r, i as i64);
        put_bytes(&mut r, Some(k.as_bytes()));
        put_bytes(&mut r, v.map(str::as_bytes));
        put_varint(&mut r, 1); // one header, kept by the cleaner
        put_bytes(&mut r, Some(b"h"));
        put_bytes(&mut r, Some(b"x"));
        put_varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let n = recs.len() as i32;
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((49 + records.len()) as i32);
    b.put_i32(0);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(0);
    b.put_i32(n - 1);
    b.put_i64(ts);
    b.put_i64(ts);
    b.put_i64(pid);
    b.put_i16(if pid >= 0 { 0 } else { -1 });
    b.put_i32(seq);
    b.put_i32(n);
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        keys_required: true,
        ..LogConfig::default()
    }
}

/// (offset, key, value) of every record, and the number of (empty) batches without records.
async fn records(log: &PartitionLog) -> (Vec<(i64, String, Option<String>)>, usize) {
    let mut out = Vec::new();
    let mut empty = 0;
    let mut at = log.log_start_offset();
    while at < log.high_watermark() {
        let data = chunk_bytes(&log.read(at, 1 << 20).await.unwrap());
        let hs = headers(&data);
        if hs.is_empty() {
            break;
        }
        let mut pos = 0;
        for h in hs {
            let whole = &data[pos..pos + h.size];
            pos += h.size;
            let recs = Records::parse(whole, &h).unwrap();
            empty += (recs.len() == 0) as usize;
            for i in 0..recs.len() {
                let r = recs.get(i, &h).unwrap();
                if r.offset >= at {
                    out.push((
                        r.offset,
                        String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                        r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    ));
                }
            }
            at = h.last_offset() + 1;
        }
    }
    (out, empty)
}

fn latest(recs: &[(i64, String, Option<String>)]) -> BTreeMap<String, Option<String>> {
    recs.iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect()
}

fn assert_increasing(recs: &[(i64, String, Option<String>)]) {
    assert!(
        recs.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets must increase"
    );
}

/// `keys` keys with `versions` versions each (one record per batch, key-major interleaving),
/// then a filler batch per key prefix "z" so that every version sits in a non-active segment.
async fn fill(log: &PartitionLog, keys: usize, versions: usize) {
    for v in 0..versions {
        for k in 0..keys {
            let val = format!("v{v}");
            append(
                log,
                kbatch(&[(&format!("k{k:03}"), Some(&val))], now_ms(), -1, -1),
            )
            .await;
        }
    }
    roll_past(log).await;
}

/// Appends fillers until the last real record is in a rolled (finalised) segment.
async fn roll_past(log: &PartitionLog) {
    let end = log.log_end_offset();
    let mut i = 0;
    while log.segment_infos().last().unwrap().0 < end {
        append(
            log,
            kbatch(&[(&format!("zfill{i}"), Some("f"))], now_ms(), -1, -1),
        )
        .await;
        i += 1;
    }
    log.wait_idle().await;
}

fn compaction() -> CompactionConfig {
    CompactionConfig {
        delete_retention_ms: 3_600_000,
        min_cleanable_ratio: 0.0,
        ..CompactionConfig::default()
    }
}

/// Cleans until the map covered the whole dirty part; returns the number of passes.
async fn clean_fully(log: &PartitionLog, map: &mut OffsetMap) -> usize {
    let mut passes = 0;
    let mut throttle = IoThrottle::new(0.0);
    while let Some(out) = log
        .clean(map, &compaction(), &mut throttle, now_ms())
        .await
        .unwrap()
    {
        passes += 1;
        assert!(passes < 100, "cleaning does not converge");
        if out.complete {
            break;
        }
    }
    passes
}

fn real(recs: &[(i64, String, Option<String>)]) -> Vec<(i64, String, Option<String>)> {
    recs.iter()
        .filter(|(_, k, _)| !k.starts_with("zfill"))
        .cloned()
        .collect()
}

#[test]
fn cleaning_keeps_the_latest_value_per_key() {
    run(|dir| async move {
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        fill(&log, 10, 5).await;
        let (before, _) = records(&log).await;
        let (segs, size) = (log.segment_count(), log.size_bytes());
        let mut map = OffsetMap::with_budget(1 << 20);
        assert_eq!(clean_fully(&log, &mut map).await, 1);
        let (after, _) = records(&log).await;
        assert_increasing(&after);
        let got = real(&after);
        assert_eq!(got.len(), 10, "one record per key: {got:?}");
        assert!(got.iter().all(|(_, _, v)| v.as_deref() == Some("v4")));
        assert_eq!(latest(&after), latest(&before));
        assert!(log.segment_count() <= segs && log.size_bytes() < size);
        assert_eq!(
            log.first_dirty_offset(),
            log.segment_infos().last().unwrap().0
        );
        // Nothing dirty left: no second pass.
        let mut throttle = IoThrottle::new(0.0);
        assert!(
            log.clean(&mut map, &compaction(), &mut throttle, now_ms())
                .await
                .unwrap()
                .is_none()
        );
        // Appends still work and land after the cleaned part; reopen (clean and unclean) reads
        // the same.
        append(&log, kbatch(&[("k000", Some("v5"))], now_ms(), -1, -1)).await;
        let (expect, _) = records(&log).await;
        log.close().await.unwrap();
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        assert_eq!(records(&log).await.0, expect);
        drop(log);
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        assert_eq!(records(&log).await.0, expect);
        // Indexes of the cleaned segments serve reads from the middle.
        for (o, _, _) in &expect {
            let data = chunk_bytes(&log.read(*o, 1).await.unwrap());
            let h = headers(&data)[0];
            assert!(h.base_offset <= *o && *o <= h.last_offset());
        }
    });
}

#[test]
fn a_partition_larger_than_the_map_is_cleaned_in_several_passes() {
    run(|dir| async move {
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        fill(&log, 40, 3).await;
        let (before, _) = records(&log).await;
        // 12 slots: at most 10 keys per pass.
        let mut map = OffsetMap::with_budget(12 * offset_map::SLOT_BYTES);
        assert_eq!(map.max_entries(), 10);
        let passes = clean_fully(&log, &mut map).await;
        assert!(
            passes >= 4,
            "{passes} passes for 40+ keys with a 10-key map"
        );
        let (after, _) = records(&log).await;
        assert_increasing(&after);
        let got = real(&after);
        assert_eq!(got.len(), 40, "{got:?}");
        assert!(got.iter().all(|(_, _, v)| v.as_deref() == Some("v2")));
        assert_eq!(latest(&after), latest(&before));
    });
}

#[test]
fn tombstones_go_after_delete_retention_and_the_producers_last_batch_stays() {
    run(|dir| async move {
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        let old = now_ms() - 10_000;
        // Idempotent producer 7 writes a and b; later plain writes make both obsolete.
        append(
            &log,
            kbatch(&[("a", Some("1")), ("b", Some("1"))], old, 7, 0),
        )
        .await;
        append(
            &log,
            kbatch(&[("a", Some("2")), ("b", Some("2"))], old, -1, -1),
        )
        .await;
        // An old tombstone (expires) and a fresh one (stays).
        append(&log, kbatch(&[("c", Some("1"))], old, -1, -1)).await;
        append(&log, kbatch(&[("c", None)], old, -1, -1)).await;
        append(&log, kbatch(&[("d", Some("1"))], old, -1, -1)).await;
        append(&log, kbatch(&[("d", None)], now_ms(), -1, -1)).await;
        roll_past(&log).await;
        let cfg_c = CompactionConfig {
            delete_retention_ms: 5_000,
            ..compaction()
        };
        let mut map = OffsetMap::with_budget(1 << 16);
        let mut throttle = IoThrottle::new(0.0);
        let out = log
            .clean(&mut map, &cfg_c, &mut throttle, now_ms())
            .await
            .unwrap()
            .unwrap();
        assert!(out.complete && out.records_removed == 5, "{out:?}");
        let (after, empty) = records(&log).await;
        let got = real(&after);
        let keys: Vec<(&str, Option<&str>)> = got
            .iter()
            .map(|(_, k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(keys, vec![("a", Some("2")), ("b", Some("2")), ("d", None)]);
        assert_eq!(empty, 1, "producer 7's last batch is kept, empty");
        // After a restart the producer's sequence is still known: a retry of its batch is a
        // duplicate, the next sequence is accepted.
        drop(log);
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        let retry = log
            .append(
                kbatch(&[("a", Some("1")), ("b", Some("1"))], old, 7, 0),
                0,
                Durability::Written,
            )
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 0);
        let next = log
            .append(
                kbatch(&[("a", Some("3"))], now_ms(), 7, 2),
                0,
                Durability::Written,
            )
            .unwrap();
        assert!(!next.duplicate);
        next.done.await.unwrap();
    });
}

#[test]
fn null_keys_are_refused_on_compacted_logs() {
    run(|dir| async move {
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        match log.append(crate::tests::recs(3), 0, Durability::Written) {
            Err(AppendError::NullKeys {
                record_indexes,
                message,
            }) => {
                assert_eq!(record_indexes, vec![0, 1, 2]);
                assert!(message.contains("without key"), "{message}");
            }
            other => panic!("expected NullKeys, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), 0);
    });
}

/// Builds the same dirty log in `dir`.
async fn dirty_log(dir: &Path) -> Rc<PartitionLog> {
    let log = crate::tests::open(dir, cfg(), 1 << 20).await;
    fill(&log, 8, 4).await;
    // Synced, so that a power cut keeps everything written before the clean.
    let a = log
        .append(
            kbatch(&[("zfill-synced", Some("f"))], now_ms(), -1, -1),
            0,
            Durability::Synced,
        )
        .unwrap();
    a.done.await.unwrap();
    log
}

#[test]
fn a_crash_at_any_step_of_a_clean_leaves_the_log_as_before_or_after() {
    for power_cut in [false, true] {
        let mut k = 1;
        loop {
            let finished = std::rc::Rc::new(std::cell::Cell::new(false));
            let fin = finished.clone();
            run(move |dir| async move {
                fault::enable();
                let log = dirty_log(&dir).await;
                let (before, _) = records(&log).await;
                let mut map = OffsetMap::with_budget(1 << 16);
                let mut throttle = IoThrottle::new(0.0);
                fault::crash_at(k);
                let r = log
                    .clean(&mut map, &compaction(), &mut throttle, now_ms())
                    .await;
                if r.is_ok() && fault::crash_points_passed() < k {
                    fin.set(true); // every step has been crashed at
                    return;
                }
                assert!(r.is_err(), "crash point {k} did not stop the clean");
                drop(log);
                fault::process_crash();
                if power_cut {
                    fault::power_cut();
                }
                let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
                let (got, _) = records(&log).await;
                assert_increasing(&got);
                assert_eq!(latest(&got), latest(&before), "crash point {k}");
                // Every record is one of before, and every latest one is there.
                for r in &got {
                    assert!(
                        before.contains(r),
                        "crash point {k}: {r:?} was never written"
                    );
                }
                // Cleaning again completes and leaves the fully cleaned log.
                clean_fully(&log, &mut map).await;
                let (after, _) = records(&log).await;
                assert_eq!(real(&after).len(), 8, "crash point {k}");
                assert_eq!(latest(&after), latest(&before));
                let leftovers: Vec<_> = std::fs::read_dir(&dir)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
                    .collect();
                assert!(leftovers.is_empty(), "{leftovers:?}");
            });
            if finished.get() {
                assert!(k > 4, "the clean has several crash points");
                break;
            }
            k += 1;
            assert!(k < 200, "too many crash points");
        }
    }
}

#[test]
fn min_compaction_lag_keeps_young_segments_and_max_lag_overrides_the_ratio() {
    run(|dir| async move {
        let log = crate::tests::open(&dir, cfg(), 1 << 20).await;
        let old = now_ms() - 60_000;
        // Old versions of k0..k9 (a minute ago), then fresh versions of the same keys.
        for v in 0..3 {
            for k in 0..10 {
                let val = format!("old{v}");
                append(
                    &log,
                    kbatch(&[(&format!("k{k:03}"), Some(&val))], old, -1, -1),
                )
                .await;
            }
        }
        let fresh_from = log.log_end_offset();
        for k in 0..10 {
            append(
                &log,
                kbatch(&[(&format!("k{k:03}"), Some("new"))], now_ms(), -1, -1),
            )
            .await;
        }
        roll_past(&log).await;
        let (before, _) = records(&log).await;

        // min.compaction.lag.ms of 30 s: the segments holding fresh records are not cleanable,
        // so the first uncleanable offset is at or before the first fresh record, and nothing
        // fresh is touched: every old version stays readable as the latest below that point.
        let lagged = CompactionConfig {
            min_compaction_lag_ms: 30_000,
            ..compaction()
        };
        let c = log.cleanable(&lagged, now_ms());
        assert!(c.first_uncleanable <= fresh_from, "{c:?}");
        assert!(c.dirty_bytes > 0 && c.due(&lagged), "{c:?}");
        let mut map = OffsetMap::with_budget(1 << 16);
        let mut throttle = IoThrottle::new(0.0);
        let out = log
            .clean(&mut map, &lagged, &mut throttle, now_ms())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.map_end, c.first_uncleanable);
        let (after, _) = records(&log).await;
        let fresh: Vec<_> = after.iter().filter(|(o, _, _)| *o >= fresh_from).collect();
        let fresh_before: Vec<_> = before.iter().filter(|(o, _, _)| *o >= fresh_from).collect();
        assert_eq!(
            fresh, fresh_before,
            "records past the lag are kept as they were"
        );
        let olds: Vec<_> = real(&after)
            .into_iter()
            .filter(|(o, _, _)| *o < c.first_uncleanable)
            .collect();
        assert!(
            olds.len() <= 10 && !olds.is_empty(),
            "one old version per key at most below the uncleanable offset: {olds:?}"
        );

        // Without the lag the rest is cleanable: below min.cleanable.dirty.ratio it is not due,
        // unless its dirty data is older than max.compaction.lag.ms.
        let strict = CompactionConfig {
            min_cleanable_ratio: 1.0,
            ..compaction()
        };
        let c = log.cleanable(&strict, now_ms());
        assert!(c.dirty_bytes > 0 && c.dirty_ratio() < 1.0, "{c:?}");
        assert!(!c.overdue && !c.due(&strict), "{c:?}");
        let overdue = CompactionConfig {
            max_compaction_lag_ms: 1,
            ..strict
        };
        // The fillers were written just now: wait past max.compaction.lag.ms by the clock
        // argument instead of sleeping.
        let c = log.cleanable(&overdue, now_ms() + 10_000);
        assert!(c.overdue && c.due(&overdue), "{c:?}");
        assert!(
            log.clean(&mut map, &overdue, &mut throttle, now_ms() + 10_000)
                .await
                .unwrap()
                .is_some()
        );
        let got = real(&records(&log).await.0);
        assert_eq!(got.len(), 10, "{got:?}");
        assert!(got.iter().all(|(_, _, v)| v.as_deref() == Some("new")));
    });
}
