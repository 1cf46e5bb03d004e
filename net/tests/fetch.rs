//! encode_fetch_response round-trips through kafka-protocol's FetchResponse decoder for every
//! supported version; record chunks are passed through, never copied.

use std::io::Write;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use tern_net::{
    EncodeError, FetchNodeEndpoint, FetchPartitionOut, FetchTopicOut, OutChunk, ResponseFrame,
    encode_fetch_response,
};

fn chunk(seed: u8, len: usize) -> OutChunk {
    OutChunk::Bytes(Bytes::from(
        (0..len)
            .map(|i| seed.wrapping_add(i as u8))
            .collect::<Vec<_>>(),
    ))
}

fn sample_topics() -> Vec<FetchTopicOut> {
    vec![
        FetchTopicOut {
            name: "orders".to_string(),
            topic_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            partitions: vec![
                FetchPartitionOut {
                    partition_index: 0,
                    error_code: 0,
                    high_watermark: 100,
                    last_stable_offset: 99,
                    log_start_offset: 7,
                    aborted_transactions: None,
                    current_leader: None,
                    diverging_epoch: None,
                    preferred_read_replica: -1,
                    records: vec![chunk(1, 61), chunk(2, 200), chunk(3, 1)],
                },
                FetchPartitionOut {
                    partition_index: 3,
                    error_code: 1,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted_transactions: Some(vec![]),
                    current_leader: None,
                    diverging_epoch: None,
                    preferred_read_replica: -1,
                    records: vec![],
                },
                FetchPartitionOut {
                    partition_index: 9,
                    error_code: 0,
                    high_watermark: i64::MAX,
                    last_stable_offset: 5,
                    log_start_offset: 0,
                    aborted_transactions: Some(vec![(1000, 2), (i64::MAX, -1)]),
                    current_leader: None,
                    diverging_epoch: None,
                    preferred_read_replica: -1,
                    records: vec![chunk(4, 300)],
                },
            ],
        },
        FetchTopicOut {
            name: "é-topic".to_string(),
            topic_id: 1,
            partitions: vec![FetchPartitionOut {
                partition_index: 1,
                error_code: 6,
                high_watermark: 1,
                last_stable_offset: 1,
                log_start_offset: 1,
                aborted_transactions: None,
                current_leader: Some((3, 17)),
                diverging_epoch: Some((5, 1234)),
                preferred_read_replica: 2,
                records: vec![chunk(5, 10), OutChunk::Bytes(Bytes::new()), chunk(6, 20)],
            }],
        },
        FetchTopicOut {
            name: String::new(),
            topic_id: 0,
            partitions: vec![],
        },
    ]
}

fn endpoints() -> Vec<FetchNodeEndpoint> {
    vec![
        FetchNodeEndpoint {
            node_id: 3,
            host: "broker-3.example".into(),
            port: 9093,
            rack: Some("r1".into()),
        },
        FetchNodeEndpoint {
            node_id: 4,
            host: "127.0.0.1".into(),
            port: 1,
            rack: None,
        },
    ]
}

fn concat(frame: &ResponseFrame) -> Bytes {
    frame.to_contiguous().expect("only in-memory chunks")
}

fn records_of(p: &FetchPartitionOut) -> Bytes {
    let mut b = BytesMut::new();
    for c in &p.records {
        match c {
            OutChunk::Bytes(x) => b.extend_from_slice(x),
            OutChunk::File { .. } => unreachable!(),
        }
    }
    b.freeze()
}

#[test]
fn roundtrip_every_version() {
    let topics = sample_topics();
    for version in 4..=18i16 {
        let frame =
            encode_fetch_response(version, 31337, 250, 7, 4242, &topics, &endpoints()).unwrap();
        let mut b = concat(&frame);
        assert_eq!(b.len(), frame.len());
        assert_eq!(b.get_i32() as usize, b.len(), "v{version} size prefix");
        let hv = if version >= 12 { 1 } else { 0 };
        let header = ResponseHeader::decode(&mut b, hv).unwrap();
        assert_eq!(header.correlation_id, 31337);
        let resp = FetchResponse::decode(&mut b, version).unwrap();
        assert!(b.is_empty(), "v{version}: {} trailing bytes", b.len());

        assert_eq!(resp.throttle_time_ms, 250);
        if version >= 7 {
            assert_eq!(resp.error_code, 7);
            assert_eq!(resp.session_id, 4242);
        } else {
            assert_eq!(resp.error_code, 0);
            assert_eq!(resp.session_id, 0);
        }
        assert_eq!(resp.responses.len(), topics.len());
        let want_endpoints: Vec<_> = if version >= 16 { endpoints() } else { vec![] };
        assert_eq!(
            resp.node_endpoints.len(),
            want_endpoints.len(),
            "v{version}"
        );
        for (got, want) in resp.node_endpoints.iter().zip(&want_endpoints) {
            assert_eq!(got.node_id.0, want.node_id);
            assert_eq!(got.host.as_str(), want.host);
            assert_eq!(got.port, want.port);
            assert_eq!(got.rack.as_ref().map(|r| r.to_string()), want.rack);
        }
        assert!(resp.unknown_tagged_fields.is_empty());
        for (rt, t) in resp.responses.iter().zip(&topics) {
            if version >= 13 {
                assert_eq!(rt.topic_id.as_u128(), t.topic_id);
                assert!(rt.topic.0.is_empty());
            } else {
                assert_eq!(rt.topic.0.as_str(), t.name);
            }
            assert_eq!(rt.partitions.len(), t.partitions.len());
            for (rp, p) in rt.partitions.iter().zip(&t.partitions) {
                assert_eq!(rp.partition_index, p.partition_index);
                assert_eq!(rp.error_code, p.error_code);
                assert_eq!(rp.high_watermark, p.high_watermark);
                assert_eq!(rp.last_stable_offset, p.last_stable_offset);
                let lso = if version >= 5 { p.log_start_offset } else { -1 };
                assert_eq!(rp.log_start_offset, lso);
                let txns = rp.aborted_transactions.as_ref().map(|v| {
                    v.iter()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect::<Vec<_>>()
                });
                assert_eq!(txns, p.aborted_transactions, "v{version}");
                let leader = (
                    rp.current_leader.leader_id.0,
                    rp.current_leader.leader_epoch,
                );
                match p.current_leader {
                    Some(l) if version >= 12 => assert_eq!(leader, l),
                    _ => assert_eq!(leader, (-1, -1), "default"),
                }
                let diverging = (rp.diverging_epoch.epoch, rp.diverging_epoch.end_offset);
                match p.diverging_epoch {
                    Some(d) if version >= 12 => assert_eq!(diverging, d),
                    _ => assert_eq!(diverging, (-1, -1), "default"),
                }
                let preferred = if version >= 11 {
                    p.preferred_read_replica
                } else {
                    -1
                };
                assert_eq!(rp.preferred_read_replica.0, preferred, "v{version}");
                assert_eq!(rp.records.as_ref(), Some(&records_of(p)), "v{version}");
                assert!(rp.unknown_tagged_fields.is_empty());
            }
        }
    }
}

#[test]
fn record_chunks_are_passed_through_not_copied() {
    let topics = sample_topics();
    let frame = encode_fetch_response(12, 1, 0, 0, 0, &topics, &[]).unwrap();
    let inputs: Vec<&Bytes> = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| &p.records)
        .filter_map(|c| match c {
            OutChunk::Bytes(b) if !b.is_empty() => Some(b),
            _ => None,
        })
        .collect();
    for input in inputs {
        assert!(
            frame.chunks.iter().any(|c| matches!(c, OutChunk::Bytes(b)
                if b.as_ptr() == input.as_ptr() && b.len() == input.len())),
            "record chunk was copied"
        );
    }
    assert!(frame.chunks.iter().all(|c| !c.is_empty()));
}

#[test]
fn file_chunks_are_kept_as_file_ranges() {
    let path = std::env::temp_dir().join(format!("tern-net-fetch-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&[9u8; 4096]).unwrap();
    drop(f);
    let file = Arc::new(std::fs::File::open(&path).unwrap());
    std::fs::remove_file(&path).unwrap();

    let topics = vec![FetchTopicOut {
        name: "t".into(),
        topic_id: 5,
        partitions: vec![FetchPartitionOut {
            partition_index: 0,
            error_code: 0,
            high_watermark: 10,
            last_stable_offset: 10,
            log_start_offset: 0,
            aborted_transactions: None,
            current_leader: None,
            diverging_epoch: None,
            preferred_read_replica: -1,
            records: vec![
                OutChunk::File {
                    file: file.clone(),
                    offset: 100,
                    len: 1000,
                },
                chunk(0, 24),
            ],
        }],
    }];
    for version in [4i16, 11, 12, 13, 18] {
        let frame = encode_fetch_response(version, 1, 0, 0, 0, &topics, &[]).unwrap();
        assert!(frame.to_contiguous().is_none());
        let (file_idx, _) = frame
            .chunks
            .iter()
            .enumerate()
            .find(|(_, c)| {
                matches!(
                    c,
                    OutChunk::File {
                        offset: 100,
                        len: 1000,
                        ..
                    }
                )
            })
            .unwrap();
        // Everything before the file chunk is metadata ending with the records length prefix.
        let before: Vec<u8> = frame.chunks[..file_idx]
            .iter()
            .flat_map(|c| match c {
                OutChunk::Bytes(b) => b.to_vec(),
                OutChunk::File { .. } => unreachable!(),
            })
            .collect();
        let size = i32::from_be_bytes(before[..4].try_into().unwrap()) as usize;
        assert_eq!(size + 4, frame.len());
        if version >= 12 {
            // unsigned varint of 1024 + 1 = 1025
            assert_eq!(&before[before.len() - 2..], &[0x81, 0x08]);
        } else {
            assert_eq!(&before[before.len() - 4..], &1024i32.to_be_bytes());
        }
    }
}

#[test]
fn unsupported_versions_are_errors() {
    for version in [-1i16, 0, 3, 19] {
        assert!(matches!(
            encode_fetch_response(version, 1, 0, 0, 0, &[], &[]),
            Err(EncodeError::UnsupportedVersion { api_key: 1, .. })
        ));
    }
}

#[test]
fn empty_response() {
    for version in 4..=18i16 {
        let frame = encode_fetch_response(version, 5, 0, 0, 0, &[], &[]).unwrap();
        let mut b = concat(&frame);
        b.advance(4);
        ResponseHeader::decode(&mut b, if version >= 12 { 1 } else { 0 }).unwrap();
        let resp = FetchResponse::decode(&mut b, version).unwrap();
        assert!(resp.responses.is_empty());
        assert!(b.is_empty());
    }
}
