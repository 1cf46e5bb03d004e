//! Crate tests: real RecordBatch v2 bytes through a glommio executor on a tempdir.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::BatchHeader;
use crate::*;

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        buf.push((u as u8) | 0x80);
        u >>= 7;
    }
    buf.push(u as u8);
}

/// Options of a test batch.
#[derive(Clone, Copy)]
pub(crate) struct B {
    pub(crate) n: usize,
    pub(crate) base_ts: i64,
    pub(crate) ts_step: i64,
    pub(crate) pid: i64,
    pub(crate) epoch: i16,
    pub(crate) seq: i32,
    pub(crate) value_len: usize,
}

impl Default for B {
    fn default() -> Self {
        B {
            n: 1,
            base_ts: 1_000,
            ts_step: 1,
            pid: -1,
            epoch: -1,
            seq: -1,
            value_len: 10,
        }
    }
}

/// Encodes an uncompressed RecordBatch v2 with a correct CRC-32C.
pub(crate) fn batch(o: B) -> BytesMut {
    let mut records = Vec::new();
    for i in 0..o.n {
        let mut r = Vec::new();
        r.push(0u8); // attributes
        put_varint(&mut r, o.ts_step * i as i64);
        put_varint(&mut r, i as i64);
        put_varint(&mut r, -1); // null key
        put_varint(&mut r, o.value_len as i64);
        r.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, o.value_len));
        put_varint(&mut r, 0); // headers
        put_varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    let max_ts = o.base_ts + o.ts_step.max(0) * (o.n as i64 - 1);
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((49 + records.len()) as i32);
    b.put_i32(0);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(0);
    b.put_i32(o.n as i32 - 1);
    b.put_i64(o.base_ts);
    b.put_i64(max_ts);
    b.put_i64(o.pid);
    b.put_i16(o.epoch);
    b.put_i32(o.seq);
    b.put_i32(o.n as i32);
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

pub(crate) fn recs(n: usize) -> BytesMut {
    batch(B { n, ..B::default() })
}

pub(crate) fn run<Fut: std::future::Future<Output = ()> + 'static>(
    f: impl FnOnce(PathBuf) -> Fut + 'static,
) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    glommio::LocalExecutor::default().run(async move {
        prepare_data_dir(&root).await.unwrap();
        f(root.join("topic-0")).await;
    });
    drop(tmp);
}

pub(crate) async fn open(dir: &Path, config: LogConfig, cache_bytes: usize) -> Rc<PartitionLog> {
    PartitionLog::open(dir, config, TailCache::new(cache_bytes))
        .await
        .unwrap()
}

/// Appends a small batch (2 records of 60-byte values, first timestamp `base_ts`): a handful
/// fill a `small_segments(400)` segment.
async fn append_small(log: &PartitionLog, base_ts: i64) {
    append(
        log,
        batch(B {
            n: 2,
            value_len: 60,
            base_ts,
            ..B::default()
        }),
    )
    .await;
}

pub(crate) async fn append(log: &PartitionLog, b: BytesMut) -> Appended {
    let mut a = log.append(b, 0, Durability::Written).unwrap();
    (&mut a.done).await.unwrap();
    a
}

/// All bytes of the chunks (reading File ranges with std, as the broker's sendfile would).
pub(crate) fn chunk_bytes(chunks: &[ReadChunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        match c {
            ReadChunk::Memory(b) => out.extend_from_slice(b),
            ReadChunk::File { file, offset, len } => {
                let mut v = vec![0u8; *len as usize];
                file.read_exact_at(&mut v, *offset).unwrap();
                out.extend_from_slice(&v);
            }
        }
    }
    out
}

/// Headers of the complete batches in `buf`.
pub(crate) fn headers(buf: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + batch::HEADER_LEN <= buf.len() {
        let h = BatchHeader::parse(&buf[at..]).unwrap();
        if at + h.size > buf.len() {
            break;
        }
        h.validate(&buf[at..at + h.size]).unwrap();
        out.push(h);
        at += h.size;
    }
    out
}

/// Batch `seq..seq+n` of idempotent producer 7, epoch 0, with values of `value_len` bytes.
pub(crate) fn idem_batch(seq: i32, n: usize, value_len: usize) -> BytesMut {
    batch(B {
        n,
        pid: 7,
        epoch: 0,
        seq,
        value_len,
        ..B::default()
    })
}

/// The (base offset, last offset) of every batch below the log's high watermark (a read stops
/// at a segment end, so this reads on until the end).
pub(crate) async fn batch_ranges(log: &PartitionLog) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.high_watermark() {
        let data = chunk_bytes(&log.read(at, usize::MAX).await.unwrap());
        for h in headers(&data) {
            out.push((h.base_offset, h.last_offset()));
            at = h.last_offset() + 1;
        }
    }
    out
}

pub(crate) fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

#[test]
fn append_read_roundtrip() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.high_watermark()
            ),
            (0, 0, 0)
        );
        let a = append(&log, recs(3)).await;
        assert_eq!((a.base_offset, a.last_offset, a.duplicate), (0, 2, false));
        let b = append(&log, recs(2)).await;
        assert_eq!((b.base_offset, b.last_offset), (3, 4));
        assert_eq!((log.log_end_offset(), log.high_watermark()), (5, 5));
        let chunks = log.read(0, 1 << 20).await.unwrap();
        assert!(chunks.iter().all(|c| matches!(c, ReadChunk::Memory(_))));
        let hs = headers(&chunk_bytes(&chunks));
        assert_eq!(
            hs.iter()
                .map(|h| (h.base_offset, h.last_offset()))
                .collect::<Vec<_>>(),
            vec![(0, 2), (3, 4)]
        );
        // read from the middle returns the batch containing it
        let hs = headers(&chunk_bytes(&log.read(4, 1 << 20).await.unwrap()));
        assert_eq!(hs[0].base_offset, 3);
        let hs = headers(&chunk_bytes(&log.read(1, 1 << 20).await.unwrap()));
        assert_eq!(hs[0].base_offset, 0);
        log.close().await.unwrap();
    });
}

#[test]
fn multi_batch_append_and_max_bytes() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let mut req = recs(2);
        req.extend_from_slice(&recs(3));
        req.extend_from_slice(&recs(1));
        let a = append(&log, req).await;
        assert_eq!((a.base_offset, a.last_offset), (0, 5));
        // max_bytes 1: the first batch whole anyway
        let c = log.read(0, 1).await.unwrap();
        assert_eq!(c.len(), 1);
        let one = c[0].len() as usize;
        assert_eq!(headers(&chunk_bytes(&c)).len(), 1);
        let c = log.read(0, one + recs(3).len()).await.unwrap();
        assert_eq!(headers(&chunk_bytes(&c)).len(), 2);
        let c = log.read(0, usize::MAX).await.unwrap();
        assert_eq!(headers(&chunk_bytes(&c)).len(), 3);
    });
}

#[test]
fn offset_out_of_range() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert!(log.read(0, 100).await.unwrap().is_empty());
        append(&log, recs(3)).await;
        assert!(matches!(
            log.read(4, 100).await,
            Err(ReadError::OffsetOutOfRange {
                log_start_offset: 0,
                high_watermark: 3
            })
        ));
        assert!(matches!(
            log.read(-1, 100).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(3, 100).await.unwrap().is_empty());
    });
}

#[test]
fn segment_roll_by_size_and_disk_reads() {
    run(|dir| async move {
        let one = recs(4).len() as u64;
        let log = open(&dir, small_segments(3 * one), 0).await;
        for i in 0..10 {
            let a = append(&log, recs(4)).await;
            assert_eq!(a.base_offset, i * 4);
        }
        assert_eq!(log.segment_count(), 4);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "00000000000000000000.log",
                "00000000000000000012.log",
                "00000000000000000024.log",
                "00000000000000000036.log"
            ]
        );
        // rolled segments have their index files
        assert!(dir.join("00000000000000000000.index").exists());
        assert!(dir.join("00000000000000000012.timeindex").exists());
        assert_eq!(log.size_bytes(), 10 * one);
        // cache budget 0: every read comes from disk
        for off in 0..40 {
            let c = log.read(off, 1).await.unwrap();
            assert!(matches!(c[0], ReadChunk::File { .. }));
            let hs = headers(&chunk_bytes(&c));
            assert_eq!(hs.len(), 1);
            assert_eq!(hs[0].base_offset, off / 4 * 4);
        }
        // a large read stays within one segment
        let hs = headers(&chunk_bytes(&log.read(12, 1 << 20).await.unwrap()));
        assert_eq!(
            hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![12, 16, 20]
        );
        log.close().await.unwrap();
        let log = open(&dir, small_segments(3 * one), 0).await;
        assert_eq!(log.log_end_offset(), 40);
        let hs = headers(&chunk_bytes(&log.read(37, 1).await.unwrap()));
        assert_eq!(hs[0].base_offset, 36);
    });
}

#[test]
fn segment_roll_by_time() {
    run(|dir| async move {
        let cfg = LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        };
        let log = open(&dir, cfg, 1 << 20).await;
        for _ in 0..3 {
            append(&log, recs(1)).await;
        }
        assert_eq!(log.segment_count(), 3);
        let never = LogConfig {
            segment_ms: u64::MAX,
            ..LogConfig::default()
        };
        log.close().await.unwrap();
        let log = open(&dir, never, 1 << 20).await;
        append(&log, recs(1)).await;
        assert_eq!(log.segment_count(), 3);
    });
}

#[test]
fn cache_eviction_reads_from_disk() {
    run(|dir| async move {
        let one = recs(5).len();
        let cache = TailCache::new(one * 2);
        let log = PartitionLog::open(&dir, LogConfig::default(), cache.clone())
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..6 {
            let mut b = recs(5);
            append(&log, b.clone()).await;
            b[0..8].copy_from_slice(&(i * 5i64).to_be_bytes());
            expected.push(b);
        }
        assert!(cache.used_bytes() <= one * 2);
        // oldest evicted: disk
        let c = log.read(0, one).await.unwrap();
        assert!(matches!(c[0], ReadChunk::File { offset: 0, .. }));
        assert_eq!(chunk_bytes(&c), expected[0].to_vec());
        let c = log.read(12, one).await.unwrap();
        assert_eq!(chunk_bytes(&c), expected[2].to_vec());
        // newest still cached: memory, same bytes
        let c = log.read(27, usize::MAX).await.unwrap();
        assert!(matches!(c[0], ReadChunk::Memory(_)));
        assert_eq!(chunk_bytes(&c), expected[5].to_vec());
        // whole log from disk
        let c = log.read(0, usize::MAX).await.unwrap();
        let all: Vec<u8> = expected.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(chunk_bytes(&c), all);
        log.close().await.unwrap();
        assert_eq!(cache.used_bytes(), 0);
    });
}

#[test]
fn time_index_lookup() {
    run(|dir| async move {
        let log = open(&dir, small_segments(4000), 1 << 20).await;
        // batch i: 10 records, timestamps 1000*i + 10*j
        for i in 0..20 {
            append(
                &log,
                batch(B {
                    n: 10,
                    base_ts: 1000 * i,
                    ts_step: 10,
                    ..B::default()
                }),
            )
            .await;
        }
        assert!(log.segment_count() > 1);
        assert!(log.index_entries().1 > 0);
        assert_eq!(log.offset_for_timestamp(-5).await.unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(5).await.unwrap(), Some((1, 10)));
        assert_eq!(
            log.offset_for_timestamp(7035).await.unwrap(),
            Some((74, 7040))
        );
        assert_eq!(
            log.offset_for_timestamp(7090).await.unwrap(),
            Some((79, 7090))
        );
        assert_eq!(
            log.offset_for_timestamp(7091).await.unwrap(),
            Some((80, 8000))
        );
        assert_eq!(
            log.offset_for_timestamp(19_090).await.unwrap(),
            Some((199, 19_090))
        );
        assert_eq!(log.offset_for_timestamp(19_091).await.unwrap(), None);
        assert_eq!(log.max_timestamp().await.unwrap(), Some((19_090, 199)));
        // every record
        for i in 0..20i64 {
            for j in 0..10i64 {
                let ts = 1000 * i + 10 * j;
                assert_eq!(
                    log.offset_for_timestamp(ts).await.unwrap(),
                    Some((10 * i + j, ts))
                );
            }
        }
    });
}

#[test]
fn timestamps_in_compressed_batches_and_max_timestamp() {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        append(
            &log,
            batch(B {
                n: 3,
                base_ts: 100,
                ts_step: 1,
                ..B::default()
            }),
        )
        .await;
        for (k, compression) in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .into_iter()
        .enumerate()
        {
            let base = 1000 * (k as i64 + 1);
            // out-of-order timestamps inside the batch; the max is in the middle
            let tss = [base + 5, base + 50, base + 20];
            let records: Vec<Record> = tss
                .iter()
                .enumerate()
                .map(|(i, &ts)| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: -1,
                    timestamp: ts,
                    key: None,
                    value: Some(Bytes::from(vec![b'x'; 100])),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let a = append(&log, buf).await;
            assert_eq!(a.last_offset - a.base_offset, 2);
            let b0 = a.base_offset;
            assert_eq!(
                log.offset_for_timestamp(base + 10).await.unwrap(),
                Some((b0 + 1, base + 50)),
                "{compression:?}"
            );
            assert_eq!(
                log.offset_for_timestamp(base).await.unwrap(),
                Some((b0, base + 5))
            );
            assert_eq!(
                log.max_timestamp().await.unwrap(),
                Some((base + 50, b0 + 1))
            );
        }
    });
}

#[test]
fn clean_close_and_reopen_without_rescan() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        for _ in 0..3 {
            append(&log, recs(2)).await;
        }
        log.close().await.unwrap();
        assert!(matches!(
            log.append(recs(1), 0, Durability::Written),
            Err(AppendError::Closed)
        ));
        assert!(dir.join(".clean_shutdown").exists());
        assert!(dir.join("00000000000000000000.index").exists());
        drop(log);
        // Damage the last batch: a rescan would truncate it, a trusted clean open does not.
        let path = dir.join("00000000000000000000.log");
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            len,
            3 * recs(2).len() as u64,
            "truncated to the logical size"
        );
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"X", len - 3).unwrap();
        drop(f);
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert!(!dir.join(".clean_shutdown").exists());
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.high_watermark(), 6);
        let a = append(&log, recs(1)).await;
        assert_eq!(a.base_offset, 6);
        let hs = headers(&chunk_bytes(&log.read(0, 2 * recs(2).len()).await.unwrap()));
        assert_eq!(hs.len(), 2);
    });
}

#[test]
fn unclean_reopen_recovers() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        for _ in 0..5 {
            append(&log, recs(3)).await;
        }
        log.wait_idle().await;
        drop(log);
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(log.high_watermark(), 15);
        let hs = headers(&chunk_bytes(&log.read(0, usize::MAX).await.unwrap()));
        assert_eq!(hs.len(), 5);
        let a = append(&log, recs(1)).await;
        assert_eq!(a.base_offset, 15);
        assert_eq!(log.leader_epochs(), vec![(0, 0)]);
        log.wait_idle().await;
        drop(log);
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 16);
    });
}

#[test]
fn corrupt_last_batch_truncated_on_recovery() {
    run(|dir| async move {
        let one = recs(2).len() as u64;
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        for _ in 0..4 {
            append(&log, recs(2)).await;
        }
        log.wait_idle().await;
        drop(log);
        let path = dir.join("00000000000000000000.log");
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"\xff", 3 * one + 70).unwrap();
        drop(f);
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.size_bytes(), 3 * one);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * one);
        let a = append(&log, recs(2)).await;
        assert_eq!((a.base_offset, a.last_offset), (6, 7));
        let hs = headers(&chunk_bytes(&log.read(0, usize::MAX).await.unwrap()));
        assert_eq!(
            hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![0, 2, 4, 6]
        );
        log.wait_idle().await;
        drop(log);
        // and again from disk only
        let log = open(&dir, LogConfig::default(), 0).await;
        assert_eq!(log.log_end_offset(), 8);
        let hs = headers(&chunk_bytes(&log.read(0, usize::MAX).await.unwrap()));
        assert_eq!(
            hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![0, 2, 4, 6]
        );
    });
}

#[test]
fn missing_index_is_rebuilt() {
    run(|dir| async move {
        let one = recs(3).len() as u64;
        let cfg = LogConfig {
            segment_bytes: 5 * one,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let log = open(&dir, cfg.clone(), 0).await;
        for _ in 0..12 {
            append(&log, recs(3)).await;
        }
        let entries = log.index_entries();
        log.close().await.unwrap();
        drop(log);
        std::fs::remove_file(dir.join("00000000000000000000.index")).unwrap();
        std::fs::write(dir.join("00000000000000000015.timeindex"), b"junk").unwrap();
        let log = open(&dir, cfg, 0).await;
        assert_eq!(log.index_entries(), entries);
        assert!(dir.join("00000000000000000000.index").exists());
        assert_eq!(log.log_end_offset(), 36);
        for off in [0, 7, 14, 15, 29, 35] {
            let hs = headers(&chunk_bytes(&log.read(off, 1).await.unwrap()));
            assert_eq!(hs[0].base_offset, off / 3 * 3);
        }
    });
}

#[test]
fn truncate_to_boundary() {
    run(|dir| async move {
        let one = recs(2).len() as u64;
        let log = open(&dir, small_segments(2 * one), 1 << 20).await;
        for _ in 0..6 {
            append(&log, recs(2)).await;
        }
        assert_eq!(log.segment_count(), 3);
        assert!(matches!(
            log.truncate_to(5).await,
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(matches!(
            log.truncate_to(13).await,
            Err(StorageError::InvalidArgument(_))
        ));
        log.truncate_to(6).await.unwrap();
        assert_eq!((log.log_end_offset(), log.high_watermark()), (6, 6));
        assert_eq!(log.segment_count(), 2);
        assert_eq!(log.size_bytes(), 3 * one);
        assert!(log.read(6, 100).await.unwrap().is_empty());
        assert!(matches!(
            log.read(7, 100).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        let a = append(&log, recs(3)).await;
        assert_eq!((a.base_offset, a.last_offset), (6, 8));
        let hs = headers(&chunk_bytes(&log.read(4, usize::MAX).await.unwrap()));
        assert_eq!(
            hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![4, 6]
        );
        log.truncate_to(0).await.unwrap();
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.segment_count(), 1);
        append(&log, recs(1)).await;
        log.wait_idle().await;
        drop(log);
        let log = open(&dir, small_segments(2 * one), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 1);
    });
}

#[test]
fn idempotent_producer() {
    run(|dir| async move {
        let p = |seq: i32, n: usize, epoch: i16| {
            batch(B {
                n,
                pid: 7,
                epoch,
                seq,
                ..B::default()
            })
        };
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let a = append(&log, p(0, 5, 0)).await;
        assert_eq!((a.base_offset, a.last_offset, a.duplicate), (0, 4, false));
        append(&log, recs(2)).await; // non-idempotent in between
        let b = append(&log, p(5, 3, 0)).await;
        assert_eq!((b.base_offset, b.last_offset), (7, 9));
        // retry of the first batch: duplicate with its original offsets, nothing written
        let size = log.size_bytes();
        let d = append(&log, p(0, 5, 0)).await;
        assert_eq!((d.base_offset, d.last_offset, d.duplicate), (0, 4, true));
        assert_eq!(log.size_bytes(), size);
        assert_eq!(log.log_end_offset(), 10);
        assert!(matches!(
            log.append(p(10, 1, 0), 0, Durability::Written),
            Err(AppendError::OutOfOrderSequence)
        ));
        assert!(matches!(
            log.append(p(2, 3, 0), 0, Durability::Written),
            Err(AppendError::OutOfOrderSequence)
        ));
        // new epoch resets; old epoch is fenced
        append(&log, p(0, 1, 1)).await;
        assert!(matches!(
            log.append(p(1, 1, 0), 0, Durability::Written),
            Err(AppendError::InvalidProducerEpoch)
        ));
        // unknown producer: any sequence
        append(
            &log,
            batch(B {
                pid: 8,
                epoch: 0,
                seq: 42,
                ..B::default()
            }),
        )
        .await;
        assert_eq!(log.producer_count(), 2);
        // clean reopen: from the snapshot
        log.close().await.unwrap();
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let d = append(&log, p(0, 1, 1)).await;
        assert!(d.duplicate);
        assert!(matches!(
            log.append(p(5, 1, 1), 0, Durability::Written),
            Err(AppendError::OutOfOrderSequence)
        ));
        append(&log, p(1, 1, 1)).await;
        log.wait_idle().await;
        drop(log);
        // unclean reopen: rebuilt by replay
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let d = append(&log, p(1, 1, 1)).await;
        assert!(d.duplicate);
        assert_eq!(d.base_offset, 12);
        assert!(matches!(
            log.append(p(0, 1, 0), 0, Durability::Written),
            Err(AppendError::InvalidProducerEpoch)
        ));
        let n = append(&log, p(2, 1, 1)).await;
        assert_eq!(n.base_offset, 13);
    });
}

#[test]
fn invalid_batches_write_nothing() {
    run(|dir| async move {
        let log = open(
            &dir,
            LogConfig {
                max_batch_bytes: 500,
                ..LogConfig::default()
            },
            1 << 20,
        )
        .await;
        let corrupt =
            |r: Result<Appended, AppendError>| matches!(r, Err(AppendError::CorruptMessage(_)));
        // bad CRC (in the second batch: nothing of the first is written either)
        let mut req = recs(2);
        let mut bad = recs(2);
        let n = bad.len();
        bad[n - 1] ^= 1;
        req.extend_from_slice(&bad);
        assert!(corrupt(log.append(req, 0, Durability::Written)));
        // bad magic
        let mut b = recs(1);
        b[16] = 1;
        assert!(corrupt(log.append(b, 0, Durability::Written)));
        // record count vs lastOffsetDelta: a valid batch whose records disagree (Kafka's
        // InvalidRecordException, not corruption)
        let mut b = recs(3);
        b[57..61].copy_from_slice(&2i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            log.append(b, 0, Durability::Written),
            Err(AppendError::InvalidRecord(_))
        ));
        // batchLength beyond the buffer / truncated / too small / empty
        let b = recs(2);
        assert!(corrupt(log.append(
            BytesMut::from(&b[..b.len() - 1]),
            0,
            Durability::Written
        )));
        assert!(corrupt(log.append(
            BytesMut::from(&b[..30]),
            0,
            Durability::Written
        )));
        let mut tiny = recs(1);
        tiny[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(corrupt(log.append(tiny, 0, Durability::Written)));
        assert!(corrupt(log.append(BytesMut::new(), 0, Durability::Written)));
        // too large
        let big = batch(B {
            value_len: 600,
            ..B::default()
        });
        assert!(matches!(
            log.append(big, 0, Durability::Written),
            Err(AppendError::MessageTooLarge)
        ));
        // garbage never panics
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            assert!(
                log.append(BytesMut::from(&junk[..]), 0, Durability::Written)
                    .is_err()
            );
        }
        assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
        let a = append(&log, recs(1)).await;
        assert_eq!(a.base_offset, 0);
    });
}

#[test]
fn concurrent_appends_are_coalesced_into_few_writes() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let before = log.write_count();
        let dones: Vec<_> = (0..10)
            .map(|_| log.append(recs(2), 0, Durability::Written).unwrap().done)
            .collect();
        for r in futures::future::join_all(dones).await {
            r.unwrap();
        }
        let writes = log.write_count() - before;
        // The first append starts a write at once; the nine queued behind it share the next.
        assert!((1..=2).contains(&writes), "{writes} writes for 10 appends");
        assert_eq!(log.high_watermark(), 20);
        let chunks = log.read(0, 1 << 20).await.unwrap();
        let total: u64 = chunks.iter().map(ReadChunk::len).sum();
        assert_eq!(total, log.size_bytes(), "every appended batch is readable");
    });
}

#[test]
fn synced_appends_share_fdatasync() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let before = log.sync_count();
        let mut dones = Vec::new();
        for i in 0..10 {
            let a = log.append(recs(2), 3, Durability::Synced).unwrap();
            assert_eq!(a.base_offset, 2 * i);
            dones.push(a.done);
        }
        for r in futures::future::join_all(dones).await {
            r.unwrap();
        }
        let syncs = log.sync_count() - before;
        assert!(
            (1..=2).contains(&syncs),
            "{syncs} fdatasyncs for 10 appends"
        );
        assert_eq!(log.high_watermark(), 20);
        // Written appends do not sync
        let before = log.sync_count();
        append(&log, recs(1)).await;
        assert_eq!(log.sync_count(), before);
        assert_eq!(
            log.leader_epochs(),
            vec![(3, 0)],
            "a lower epoch adds no entry"
        );
    });
}

#[test]
fn watch_fires_on_high_watermark_advance() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let w = log.watch();
        let a = log.append(recs(1), 0, Durability::Written).unwrap();
        w.await.unwrap();
        assert_eq!(log.high_watermark(), 1);
        a.done.await.unwrap();
        let w = log.watch();
        log.close().await.unwrap();
        assert!(w.await.is_err());
        assert!(log.watch().await.is_err());
    });
}

#[test]
fn remove_deletes_directory() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        append(&log, recs(1)).await;
        let chunks = log.read(0, 100).await.unwrap();
        log.remove().await.unwrap();
        assert!(!dir.exists());
        assert_eq!(chunks.len(), 1);
        assert!(matches!(
            log.append(recs(1), 0, Durability::Written),
            Err(AppendError::Closed)
        ));
    });
}

#[test]
fn garbage_on_disk_never_panics() {
    run(|dir| async move {
        std::fs::create_dir_all(&dir).unwrap();
        let good = {
            let mut b = recs(2);
            b[0..8].copy_from_slice(&0i64.to_be_bytes());
            b
        };
        for (k, junk_len) in [0usize, 1, 60, 61, 4096, 10_000].into_iter().enumerate() {
            let mut data = good.to_vec();
            data.extend((0..junk_len).map(|i| (i * 7 + k) as u8 | 1));
            std::fs::write(dir.join("00000000000000000000.log"), &data).unwrap();
            std::fs::write(
                dir.join("00000000000000000000.index"),
                &data[..data.len().min(100)],
            )
            .unwrap();
            std::fs::write(dir.join("leader-epoch-checkpoint"), b"0\n99999999999\n").unwrap();
            std::fs::write(dir.join("00000000000000000000.snapshot"), b"{not json").unwrap();
            let log = open(&dir, LogConfig::default(), 1 << 20).await;
            assert_eq!(log.log_end_offset(), 2, "junk {junk_len}");
            assert_eq!(log.size_bytes(), good.len() as u64);
            assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 1000)));
            log.remove().await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
        }
        // a clean marker next to garbage indexes: indexes are checked, the log rebuilt
        std::fs::write(dir.join("00000000000000000000.log"), &good).unwrap();
        std::fs::write(dir.join("00000000000000000000.index"), b"garbage").unwrap();
        std::fs::write(dir.join(".clean_shutdown"), b"").unwrap();
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 2);
    });
}

#[test]
fn retention_by_size_deletes_whole_old_segments() {
    run(|dir| async move {
        let log = open(&dir, small_segments(400), 1 << 20).await;
        for _ in 0..20 {
            append_small(&log, B::default().base_ts).await;
        }
        log.wait_idle().await;
        let segs = log.segment_infos();
        assert!(segs.len() >= 5, "{segs:?}");
        let total = log.size_bytes();
        // Keep about half: whole segments only, oldest first, never the active one.
        let out = log
            .enforce_retention(-1, (total / 2) as i64, 0)
            .await
            .unwrap();
        assert!(out.segments_deleted > 0);
        let after = log.segment_infos();
        assert_eq!(after[0].0, log.log_start_offset());
        assert!(log.size_bytes() >= total / 2, "deleted too much");
        assert!(
            log.size_bytes() - after[0].2 < total / 2,
            "deleted too little"
        );
        assert_eq!(after.last(), segs.last());
        // Below the new start: out of range; at it: readable.
        let start = log.log_start_offset();
        assert!(matches!(
            log.read(start - 1, 1 << 20).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        let hs = headers(&chunk_bytes(&log.read(start, 1 << 20).await.unwrap()));
        assert_eq!(hs[0].base_offset, start);
        // Survives a clean and an unclean reopen.
        log.close().await.unwrap();
        let log = open(&dir, small_segments(400), 1 << 20).await;
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), 40);
        drop(log); // no close: the next open recovers
        assert!(!dir.join(".clean_shutdown").exists());
        let log = open(&dir, small_segments(400), 1 << 20).await;
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), 40);
        assert_eq!(log.segment_infos(), after);
        // Retention of 0 bytes keeps the active segment.
        log.enforce_retention(-1, 0, 0).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_end_offset(), 40);
    });
}

#[test]
fn retention_by_time_and_rolls_expired_active_segment() {
    run(|dir| async move {
        let log = open(&dir, small_segments(400), 1 << 20).await;
        for i in 0..10 {
            append_small(&log, 1_000 + i).await;
        }
        for i in 0..6 {
            append_small(&log, 100_000 + i).await;
        }
        log.wait_idle().await;
        // now=101_000, retention 50_000 ms: everything with max ts < 51_000 goes.
        let out = log.enforce_retention(50_000, -1, 101_000).await.unwrap();
        assert!(out.segments_deleted > 0);
        let start = log.log_start_offset();
        assert!(start > 0 && start <= 20, "start {start}");
        // Every expired segment went (they are the oldest); each one left has a newer record.
        let infos = log.segment_infos();
        assert_eq!(infos[0].0, start);
        for (base, _, _, ts) in infos {
            assert!(
                ts >= 51_000,
                "segment {base} (max timestamp {ts}) is expired"
            );
        }
        let hs = headers(&chunk_bytes(&log.read(20, 1 << 20).await.unwrap()));
        assert_eq!(hs[0].base_offset, 20, "new records kept");
        // Everything expired: the active segment is rolled, then deleted on the next pass.
        let out = log.enforce_retention(1, -1, 1_000_000).await.unwrap();
        assert!(out.rolled);
        log.wait_idle().await;
        log.enforce_retention(1, -1, 1_000_000).await.unwrap();
        assert_eq!(log.log_start_offset(), 32);
        assert_eq!(log.segment_count(), 1);
        append(&log, recs(1)).await;
        assert_eq!(log.log_end_offset(), 33);
    });
}

#[test]
fn delete_records_moves_start_and_persists() {
    run(|dir| async move {
        let log = open(&dir, small_segments(400), 1 << 20).await;
        for _ in 0..10 {
            append_small(&log, B::default().base_ts).await;
        }
        log.wait_idle().await;
        assert_eq!(log.delete_records(5).await.unwrap(), 5);
        assert_eq!(log.log_start_offset(), 5);
        assert!(matches!(
            log.read(4, 100).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(5, 100).await.is_ok());
        assert!(matches!(
            log.delete_records(21).await,
            Err(StorageError::OutOfRange(_))
        ));
        assert_eq!(log.delete_records(3).await.unwrap(), 5, "never moves back");
        let n = log.segment_count();
        assert_eq!(log.delete_records(-1).await.unwrap(), 20);
        assert!(log.segment_count() < n);
        drop(log); // unclean
        let log = open(&dir, small_segments(400), 1 << 20).await;
        assert_eq!(log.log_start_offset(), 20);
        assert_eq!(log.log_end_offset(), 20);
    });
}

#[test]
fn set_config_applies_to_next_append() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        append(&log, recs(1)).await;
        log.set_config(LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        })
        .unwrap();
        append(&log, recs(1)).await;
        append(&log, recs(1)).await;
        assert_eq!(log.segment_count(), 3);
        assert!(
            log.set_config(LogConfig {
                segment_bytes: 0,
                ..LogConfig::default()
            })
            .is_err()
        );
    });
}

#[test]
fn small_appends_write_zero_padding_ahead_and_overwrite_it() {
    run(|dir| async move {
        let path = dir.join("00000000000000000000.log");
        let file_len = || std::fs::metadata(&path).unwrap().len();
        // No tail cache: every read below comes from the file.
        let log = open(&dir, LogConfig::default(), 0).await;
        let one = recs(2).len() as u64;
        append(&log, recs(2)).await;
        let padded = file_len();
        assert!(
            padded >= one + (256 << 10),
            "a small append that extends the file pads ahead: {padded}"
        );
        for _ in 0..9 {
            append(&log, recs(2)).await;
        }
        assert_eq!(
            file_len(),
            padded,
            "later small appends overwrite the padding"
        );
        let data = chunk_bytes(&log.read(0, usize::MAX).await.unwrap());
        assert_eq!(data.len() as u64, 10 * one, "reads stop at the log end");
        assert_eq!(headers(&data).len(), 10);
        // Crash: recovery reads the padding as a torn tail and cuts it off.
        log.wait_idle().await;
        drop(log);
        let log = open(&dir, LogConfig::default(), 0).await;
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(file_len(), 10 * one);
        let a = append(&log, recs(2)).await;
        assert_eq!(a.base_offset, 20);
        // A clean close cuts the padding too.
        log.close().await.unwrap();
        assert_eq!(file_len(), 11 * one);
    });
}

#[test]
fn large_appends_are_not_padded() {
    run(|dir| async move {
        let path = dir.join("00000000000000000000.log");
        let log = open(&dir, LogConfig::default(), 0).await;
        let big = batch(B {
            n: 70,
            value_len: 1024,
            ..B::default()
        });
        let len = big.len() as u64;
        assert!(len >= 64 << 10);
        append(&log, big).await;
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert!(
            (len..len + 4096).contains(&file_len),
            "bandwidth-bound writes only pad to the DMA alignment: {file_len} for {len}"
        );
    });
}

#[test]
fn zero_range_detects_padding_only() {
    use std::io::Write;
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&[1, 2, 3, 0, 0, 0, 0, 0]).unwrap();
    assert!(crate::io::is_zero_range(&f, 3, 8, 16).unwrap());
    assert!(
        !crate::io::is_zero_range(&f, 2, 8, 16).unwrap(),
        "data is not padding"
    );
    assert!(
        !crate::io::is_zero_range(&f, 3, 8, 4).unwrap(),
        "too long to inspect"
    );
    assert!(
        crate::io::is_zero_range(&f, 8, 8, 4).unwrap(),
        "empty range"
    );
}

#[test]
fn padding_budget_bounds_padding_in_flight() {
    use crate::log::{PaddingBudget, ZERO_AHEAD_IN_FLIGHT_MAX};
    let unit = 256 << 10;
    let before = PaddingBudget::in_flight();
    let mut held = Vec::new();
    while let Some(b) = PaddingBudget::take(unit) {
        held.push(b);
    }
    assert_eq!(held.len(), (ZERO_AHEAD_IN_FLIGHT_MAX - before) / unit);
    assert!(PaddingBudget::in_flight() <= ZERO_AHEAD_IN_FLIGHT_MAX);
    held.pop();
    assert!(
        PaddingBudget::take(unit).is_some(),
        "a finished write gives its share back"
    );
    drop(held);
    assert_eq!(PaddingBudget::in_flight(), before);
}

/// A batch of `values` encoded by kafka-protocol (the client-side encoder) with `compression`.
fn encoded(
    compression: kafka_protocol::records::Compression,
    offsets: &[i64],
    value: &[u8],
) -> BytesMut {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = offsets
        .iter()
        .map(|&offset| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32, // one batch (the encoder splits where offset - sequence changes)
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf
}

/// Rewrites lastOffsetDelta and the record count of a batch, fixing its CRC.
fn claim(mut b: BytesMut, last_offset_delta: i32, count: i32) -> BytesMut {
    b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

const CODECS: [kafka_protocol::records::Compression; 5] = {
    use kafka_protocol::records::Compression::*;
    [None, Gzip, Snappy, Lz4, Zstd]
};

#[test]
fn batch_records_are_checked_against_the_header_for_every_codec() {
    run(|dir| async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        let invalid =
            |r: Result<Appended, AppendError>| matches!(r, Err(AppendError::InvalidRecord(_)));
        for c in CODECS {
            let leo = log.log_end_offset();
            let three = || encoded(c, &[0, 1, 2], b"value");
            // 3 records claiming 100 (count and lastOffsetDelta agree with each other).
            assert!(
                invalid(log.append(claim(three(), 99, 100), 0, Durability::Written)),
                "{c:?}"
            );
            // 3 records claiming 2.
            assert!(
                invalid(log.append(claim(three(), 1, 2), 0, Durability::Written)),
                "{c:?}"
            );
            // Inner offset deltas not 0, 1, 2.
            let shuffled = claim(encoded(c, &[0, 2, 1], b"value"), 2, 3);
            assert!(
                invalid(log.append(shuffled, 0, Durability::Written)),
                "{c:?}"
            );
            assert_eq!(log.log_end_offset(), leo, "{c:?}: nothing written");
            let a = append(&log, three()).await;
            assert_eq!((a.base_offset, a.last_offset), (leo, leo + 2), "{c:?}");
        }
        // A record whose declared length disagrees with its fields; bytes after the last one.
        let mut b = recs(2);
        b[61] += 2; // first record's length (zigzag varint) one more
        let b = claim(b, 1, 2);
        assert!(invalid(log.append(b, 0, Durability::Written)));
        let mut b = recs(2);
        b.extend_from_slice(b"\0\0");
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        assert!(invalid(log.append(claim(b, 1, 2), 0, Durability::Written)));
        // Undecodable compressed data is corrupt.
        for codec in 1..=4i16 {
            let mut b = recs(2);
            b[21..23].copy_from_slice(&codec.to_be_bytes());
            assert!(
                matches!(
                    log.append(claim(b, 1, 2), 0, Durability::Written),
                    Err(AppendError::CorruptMessage(_))
                ),
                "codec {codec}"
            );
        }
    });
}

#[test]
fn decompressed_size_is_bounded() {
    run(|dir| async move {
        let limit = 1 << 20;
        let cfg = LogConfig {
            max_decompressed_batch_bytes: limit,
            ..LogConfig::default()
        };
        let log = open(&dir, cfg, 1 << 20).await;
        for c in CODECS.into_iter().skip(1) {
            // A zip bomb: a few KiB that decompress to 8 MiB of zeros.
            let bomb = encoded(c, &[0], &vec![0u8; 8 << 20]);
            assert!(bomb.len() < 1 << 20, "{c:?}: {} bytes", bomb.len());
            assert!(
                matches!(
                    log.append(bomb, 0, Durability::Written),
                    Err(AppendError::InvalidRecord(_))
                ),
                "{c:?}"
            );
            // Under the limit: accepted.
            append(&log, encoded(c, &[0, 1], &vec![0u8; limit / 4])).await;
        }
        assert_eq!(log.log_end_offset(), 8);
    });
}

#[test]
fn a_roll_leaves_other_atomic_writes_in_flight_alone() {
    // The flusher lists the directory at every roll (producer snapshots); a `.tmp` of an
    // atomic write in flight (the cleaner's index files, a checkpoint) must survive that, or
    // its rename fails with ENOENT and the log fails. Stale ones go at the next open.
    run(|dir| async move {
        let one = recs(4).len() as u64;
        let log = open(&dir, small_segments(2 * one), 0).await;
        let in_flight = dir.join("00000000000000000099.timeindex.tmp");
        std::fs::write(&in_flight, b"x").unwrap();
        for _ in 0..6 {
            append(&log, recs(4)).await;
        }
        assert!(log.segment_count() >= 3);
        log.close().await.unwrap();
        assert!(
            in_flight.exists(),
            "a roll removed another write's .tmp file"
        );
        let log = open(&dir, small_segments(2 * one), 0).await;
        assert!(!in_flight.exists(), "open removes stale .tmp files");
        assert_eq!(log.log_end_offset(), 24);
    });
}
