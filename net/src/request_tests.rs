//! Tests of request decoding: valid requests of every api key and version decode to what was
//! encoded, hostile counts are rejected without huge allocations, and no input panics.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader,
    RequestKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use super::*;
use crate::header::{ParsedHeader, parse_request_header};

macro_rules! default_kinds {
    ($key:expr; $($name:ident),* $(,)?) => {
        match $key {
            $(ApiKey::$name => RequestKind::$name(Default::default()),)*
        }
    };
}

fn default_kind(key: ApiKey) -> RequestKind {
    all_kinds!(default_kinds!(key))
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// Requests with content (counts, strings, records, large int values).
fn populated(key: ApiKey) -> Option<RequestKind> {
    Some(match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(topic("orders"))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(3)
                                .with_records(Some(Bytes::from(vec![0x42; 300]))),
                            PartitionProduceData::default().with_index(4),
                        ]),
                ]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(52_428_800)
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(topic("orders"))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(1 << 40)
                                .with_partition_max_bytes(1_048_576),
                        ]),
                ]),
        ),
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic("a"))),
                    MetadataRequestTopic::default().with_name(Some(topic("bb"))),
                ]))
                .with_allow_auto_topic_creation(true),
        ),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("tern-test"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        ),
        _ => return None,
    })
}

/// Every (api key, version) with a default request, plus populated ones; as full frames
/// (header + body) and the request they encode.
fn samples() -> &'static [(Bytes, RequestKind)] {
    static SAMPLES: OnceLock<Vec<(Bytes, RequestKind)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut out = Vec::new();
        for key in ApiKey::iter() {
            let range = key.valid_versions();
            for version in range.min..=range.max {
                for req in [Some(default_kind(key)), populated(key)]
                    .into_iter()
                    .flatten()
                {
                    let mut body = BytesMut::new();
                    if req.encode(&mut body, version).is_err() {
                        continue; // e.g. a populated field that this version lacks
                    }
                    let header = RequestHeader::default()
                        .with_request_api_key(key as i16)
                        .with_request_api_version(version)
                        .with_correlation_id(17)
                        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
                    let mut frame = BytesMut::new();
                    header
                        .encode(&mut frame, key.request_header_version(version))
                        .unwrap();
                    frame.extend_from_slice(&body);
                    out.push((frame.freeze(), req));
                }
            }
        }
        out
    })
}

fn populated_count() -> usize {
    ApiKey::iter()
        .filter_map(|k| populated(k).map(|req| (k, req)))
        .map(|(k, req)| {
            let r = k.valid_versions();
            (r.min..=r.max)
                .filter(|&v| req.encode(&mut BytesMut::new(), v).is_ok())
                .count()
        })
        .sum()
}

fn parse_and_decode(frame: Bytes) -> Result<(ParsedHeader, RequestKind), String> {
    let mut frame = frame;
    let header = parse_request_header(&mut frame).map_err(|e| e.to_string())?;
    let req = decode_request(&header, frame).map_err(|e| e.to_string())?;
    Ok((header, req))
}

#[test]
fn every_valid_request_decodes_to_what_was_encoded() {
    let samples = samples();
    let pairs: usize = ApiKey::iter()
        .map(|k| (k.valid_versions().max - k.valid_versions().min + 1) as usize)
        .sum();
    let defaults = samples.len() - populated_count();
    eprintln!("{pairs} (key, version) pairs, {defaults} default samples");
    assert!(defaults * 10 >= pairs * 9, "too few samples encode");
    let mut populated = 0;
    for (frame, req) in samples {
        let mut body = frame.clone();
        let header = parse_request_header(&mut body).unwrap();
        assert_eq!(header.correlation_id, 17);
        assert_eq!(header.client_id.as_deref(), Some("fuzz"));
        let decoded =
            decode_request(&header, body.clone()).unwrap_or_else(|e| panic!("{req:?}: {e}"));
        // Byte-exact: re-encoding what was decoded gives the body back.
        let mut reencoded = BytesMut::new();
        decoded.encode(&mut reencoded, header.api_version).unwrap();
        assert_eq!(&reencoded[..], &body[..], "{req:?} v{}", header.api_version);
        if matches!(&decoded, RequestKind::Fetch(f) if f.max_bytes == 52_428_800) {
            populated += 1; // exercised the clamp-and-redecode path
        }
    }
    assert!(populated > 0);
}

#[test]
fn unsupported_versions_and_unknown_keys() {
    let header = |api_key, api_version| ParsedHeader {
        api_key,
        api_version,
        correlation_id: 1,
        client_id: None,
        header_version: 1,
    };
    assert!(matches!(
        decode_request(&header(18, 99), Bytes::new()),
        Err(DecodeError::UnsupportedVersion {
            api_key: 18,
            version: 99,
            min: 0,
            ..
        })
    ));
    assert!(matches!(
        decode_request(&header(1, 0), Bytes::new()),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        decode_request(&header(-5, 0), Bytes::new()),
        Err(DecodeError::UnknownApiKey(-5))
    ));
}

/// Without the guard, kafka-protocol would `Vec::with_capacity` these counts (hundreds of GB),
/// which aborts the process.
#[test]
fn huge_counts_are_rejected() {
    let h = |api_key: ApiKey, api_version| ParsedHeader {
        api_key: api_key as i16,
        api_version,
        correlation_id: 1,
        client_id: None,
        header_version: 1,
    };
    // Metadata v1: topics = Int32 array.
    let mut body = BytesMut::new();
    body.put_i32(i32::MAX);
    body.put_slice(&[0; 16]);
    let err = decode_request(&h(ApiKey::Metadata, 1), body.freeze()).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");

    // Metadata v12: topics = compact array, count 2^32 - 2.
    let body = Bytes::from_static(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
    let err = decode_request(&h(ApiKey::Metadata, 12), body).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");

    // Produce v9: transactional_id (compact string), acks, timeout, then topic_data count; a
    // boolean-looking 0x80 byte right before must not hide it either.
    let mut body = BytesMut::new();
    body.put_u8(0); // null transactional id
    body.put_i16(-1);
    body.put_i32(30_000);
    body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let err = decode_request(&h(ApiKey::Produce, 9), body.freeze()).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");

    // Fetch v4 with a huge topics count after the fixed fields.
    let mut body = BytesMut::new();
    body.put_i32(-1); // replica id
    body.put_i32(500);
    body.put_i32(1);
    body.put_i32(1 << 20);
    body.put_i8(0);
    body.put_i32(0x4000_0000);
    let err = decode_request(&h(ApiKey::Fetch, 4), body.freeze()).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
}

fn mutate(frame: &Bytes, ops: &[(prop::sample::Index, u8, u8)]) -> Bytes {
    let mut v = frame.to_vec();
    for (idx, byte, op) in ops {
        if v.is_empty() {
            v.push(*byte);
            continue;
        }
        let i = idx.index(v.len());
        apply(&mut v, i, *byte, *op);
    }
    Bytes::from(v)
}

fn apply(v: &mut Vec<u8>, i: usize, byte: u8, op: u8) {
    {
        match op {
            0 => v[i] = byte,
            1 => v.insert(i, byte),
            2 => {
                v.remove(i);
            }
            3 => v.truncate(i),
            4 => {
                // A huge Int32 (array count / length) at i.
                let end = (i + 4).min(v.len());
                let huge = [0x7f, 0xff, byte, 0xff];
                v[i..end].copy_from_slice(&huge[..end - i]);
            }
            5 => {
                // A long varint at i.
                let end = (i + 5).min(v.len());
                for b in &mut v[i..end] {
                    *b = 0x80 | byte;
                }
            }
            _ => v[i] ^= 1 << (byte % 8),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(
        api_key in prop_oneof![0i16..95, any::<i16>()],
        api_version in prop_oneof![-1i16..20, any::<i16>()],
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut frame = BytesMut::new();
        frame.put_i16(api_key);
        frame.put_i16(api_version);
        frame.put_i32(1);
        frame.extend_from_slice(&body);
        let _ = parse_and_decode(frame.freeze());
        // The body alone, for a valid header of that key and version.
        let header = ParsedHeader {
            api_key,
            api_version,
            correlation_id: 1,
            client_id: None,
            header_version: 1,
        };
        let _ = decode_request(&header, Bytes::from(body));
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        sample in any::<prop::sample::Index>(),
        ops in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..8), 1..6),
    ) {
        let samples = samples();
        let (frame, _) = &samples[sample.index(samples.len())];
        let _ = parse_and_decode(mutate(frame, &ops));
    }
}

#[test]
fn every_sample_survives_every_single_huge_value() {
    // Deterministic sweep: a huge Int32 or varint at every offset of every sample.
    for (frame, _) in samples() {
        for i in 0..frame.len() {
            for op in [4u8, 5] {
                let mut v = frame.to_vec();
                apply(&mut v, i, 0xff, op);
                let _ = parse_and_decode(Bytes::from(v));
            }
        }
    }
}
