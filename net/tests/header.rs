//! parse_request_header: header v0/v1/v2, version clamping, truncation and malformed input.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tern_net::{HeaderError, parse_request_header, parse_request_header_version};

fn encode_header(h: &RequestHeader, body: &[u8]) -> Bytes {
    let key = ApiKey::try_from(h.request_api_key).unwrap();
    let hv = key.request_header_version(h.request_api_version);
    let mut buf = BytesMut::new();
    h.encode(&mut buf, hv).unwrap();
    buf.extend_from_slice(body);
    buf.freeze()
}

#[test]
fn header_v1() {
    let h = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(1)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("my-client")));
    let mut frame = encode_header(&h, b"BODY");
    let p = parse_request_header(&mut frame).unwrap();
    assert_eq!(p.api_key, 3);
    assert_eq!(p.api_version, 1);
    assert_eq!(p.correlation_id, 42);
    assert_eq!(p.client_id.as_deref(), Some("my-client"));
    assert_eq!(p.header_version, 1);
    assert_eq!(&frame[..], b"BODY");
}

#[test]
fn header_v1_null_client_id() {
    let h = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(3)
        .with_correlation_id(-7)
        .with_client_id(None);
    let mut frame = encode_header(&h, b"");
    let p = parse_request_header(&mut frame).unwrap();
    assert_eq!(p.client_id, None);
    assert_eq!(p.correlation_id, -7);
    assert!(frame.is_empty());
}

#[test]
fn header_v2_with_tagged_fields() {
    let h = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(12)
        .with_correlation_id(i32::MAX)
        .with_client_id(Some(StrBytes::from_static_str("c")))
        .with_unknown_tagged_field(3, Bytes::from_static(b"xyz"))
        .with_unknown_tagged_field(200, Bytes::from_static(&[0; 300]));
    let mut frame = encode_header(&h, b"\x01\x02");
    let p = parse_request_header(&mut frame).unwrap();
    assert_eq!(p.header_version, 2);
    assert_eq!(p.api_version, 12);
    assert_eq!(p.correlation_id, i32::MAX);
    assert_eq!(p.client_id.as_deref(), Some("c"));
    assert_eq!(&frame[..], b"\x01\x02");
}

#[test]
fn header_v0() {
    let mut buf = BytesMut::new();
    buf.put_i16(7);
    buf.put_i16(0);
    buf.put_i32(99);
    buf.put_slice(b"rest");
    let mut frame = buf.freeze();
    let p = parse_request_header_version(&mut frame, 0).unwrap();
    assert_eq!((p.api_key, p.api_version, p.correlation_id), (7, 0, 99));
    assert_eq!(p.client_id, None);
    assert_eq!(p.header_version, 0);
    assert_eq!(&frame[..], b"rest");
}

#[test]
fn unknown_versions_use_nearest_known_header_version() {
    // ApiVersions v99 (too new): header v2 like v3+; v-1 (too old): header v1 like v0.
    for (version, expected_hv) in [(99i16, 2i16), (-1, 1)] {
        let mut buf = BytesMut::new();
        buf.put_i16(ApiKey::ApiVersions as i16);
        buf.put_i16(version);
        buf.put_i32(5);
        buf.put_i16(2);
        buf.put_slice(b"id");
        if expected_hv == 2 {
            buf.put_u8(0);
        }
        let mut frame = buf.freeze();
        let p = parse_request_header(&mut frame).unwrap();
        assert_eq!(p.header_version, expected_hv);
        assert_eq!(p.api_version, version);
        assert_eq!(p.client_id.as_deref(), Some("id"));
        assert!(frame.is_empty());
    }
}

#[test]
fn every_truncation_is_an_error() {
    let h = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("client")))
        .with_unknown_tagged_field(1, Bytes::from_static(b"abc"));
    let full = encode_header(&h, b"");
    for n in 0..full.len() {
        let mut frame = full.slice(..n);
        let err = parse_request_header(&mut frame).unwrap_err();
        assert!(matches!(err, HeaderError::Truncated), "{n}: {err:?}");
        assert_eq!(frame.len(), n, "frame must be untouched on error");
    }
    let mut frame = full.clone();
    assert!(parse_request_header(&mut frame).is_ok());
}

#[test]
fn unknown_api_key_and_malformed() {
    let mut buf = BytesMut::new();
    buf.put_i16(9999);
    buf.put_i16(0);
    buf.put_i32(77);
    buf.put_i16(-1);
    let mut frame = buf.freeze();
    assert!(matches!(
        parse_request_header(&mut frame),
        Err(HeaderError::UnknownApiKey {
            api_key: 9999,
            correlation_id: 77
        })
    ));

    let mut buf = BytesMut::new();
    buf.put_i16(ApiKey::Metadata as i16);
    buf.put_i16(1);
    buf.put_i32(78);
    buf.put_i16(-2);
    let mut frame = buf.freeze();
    assert!(matches!(
        parse_request_header(&mut frame),
        Err(HeaderError::Malformed {
            correlation_id: 78,
            ..
        })
    ));

    // A tagged-field varint longer than 5 bytes.
    let mut buf = BytesMut::new();
    buf.put_i16(ApiKey::Metadata as i16);
    buf.put_i16(12);
    buf.put_i32(79);
    buf.put_i16(-1);
    buf.put_slice(&[0xff; 6]);
    let mut frame = buf.freeze();
    assert!(matches!(
        parse_request_header(&mut frame),
        Err(HeaderError::Malformed {
            correlation_id: 79,
            ..
        })
    ));
}

#[test]
fn invalid_utf8_client_id_is_replaced() {
    let mut buf = BytesMut::new();
    buf.put_i16(ApiKey::Metadata as i16);
    buf.put_i16(1);
    buf.put_i32(1);
    buf.put_i16(2);
    buf.put_slice(&[0xff, b'a']);
    let mut frame = buf.freeze();
    let p = parse_request_header(&mut frame).unwrap();
    assert_eq!(p.client_id.as_deref(), Some("\u{fffd}a"));
}
