//! encode_response and encode_api_versions_unsupported, decoded back with kafka-protocol.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tern_net::{EncodeError, ResponseFrame, encode_api_versions_unsupported, encode_response};

/// Checks the size prefix and returns (header, rest).
fn split(frame: &ResponseFrame, header_version: i16) -> (ResponseHeader, Bytes) {
    let mut b = frame.to_contiguous().unwrap();
    assert_eq!(b.len(), frame.len());
    let size = b.get_i32();
    assert_eq!(size as usize, b.len());
    let header = ResponseHeader::decode(&mut b, header_version).unwrap();
    (header, b)
}

fn roundtrip<T: Encodable + Decodable + PartialEq + std::fmt::Debug>(
    key: ApiKey,
    version: i16,
    body: &T,
) {
    let frame = encode_response(key as i16, version, 1234, body).unwrap();
    let hv = key.response_header_version(version);
    let (header, mut rest) = split(&frame, hv);
    assert_eq!(header.correlation_id, 1234);
    let decoded = T::decode(&mut rest, version).unwrap();
    assert!(rest.is_empty(), "{key:?} v{version}: trailing bytes");
    assert_eq!(&decoded, body, "{key:?} v{version}");
}

fn metadata() -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("localhost"))
                .with_port(9092),
        ])
        .with_controller_id(BrokerId(1))
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_error_code(3),
        ])
}

#[test]
fn encode_response_roundtrips_with_header_v0_and_v1() {
    for version in [1, 4, 8, 9, 12] {
        roundtrip(ApiKey::Metadata, version, &metadata());
    }
    assert_eq!(ApiKey::Metadata.response_header_version(1), 0);
    assert_eq!(ApiKey::Metadata.response_header_version(12), 1);
    // ApiVersions always uses response header v0, even for flexible versions.
    let av = ApiVersionsResponse::default().with_api_keys(vec![
        ApiVersion::default()
            .with_api_key(18)
            .with_min_version(0)
            .with_max_version(4),
    ]);
    for version in 0..=4 {
        roundtrip(ApiKey::ApiVersions, version, &av);
    }
    let frame = encode_response(ApiKey::ApiVersions as i16, 3, 9, &av).unwrap();
    let (_, rest) = split(&frame, 0);
    // Body starts right after the 4-byte correlation id: error_code 0.
    assert_eq!(&rest[..2], &[0, 0]);
}

#[test]
fn encode_response_errors() {
    assert!(matches!(
        encode_response(9999, 0, 1, &metadata()),
        Err(EncodeError::UnknownApiKey(9999))
    ));
    assert!(matches!(
        encode_response(ApiKey::Metadata as i16, 99, 1, &metadata()),
        Err(EncodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn api_versions_unsupported_is_v0_with_error_35() {
    let ranges = [(0i16, 3i16, 9i16), (1, 4, 12), (18, 0, 3)];
    let frame = encode_api_versions_unsupported(777, &ranges);
    let (header, mut rest) = split(&frame, 0);
    assert_eq!(header.correlation_id, 777);
    let resp = ApiVersionsResponse::decode(&mut rest, 0).unwrap();
    assert!(rest.is_empty());
    assert_eq!(resp.error_code, 35);
    let got: Vec<_> = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert_eq!(got, ranges);

    let empty = encode_api_versions_unsupported(1, &[]);
    let (_, mut rest) = split(&empty, 0);
    let resp = ApiVersionsResponse::decode(&mut rest, 0).unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(resp.api_keys.is_empty());
}
