//! Request header parsing: api key, api version, correlation id, then (by header version)
//! client id and tagged fields. The header version comes from kafka-protocol's
//! `ApiKey::request_header_version`, with unknown versions mapped to the nearest known one.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ApiKey;

/// The fields of a request header the broker needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// `None` for header v0 or a null client id. Invalid UTF-8 is replaced (as Java does).
    pub client_id: Option<String>,
    /// The request header version used to parse (0, 1 or 2).
    pub header_version: i16,
}

/// Why a request header could not be parsed. The connection should be closed in every case
/// (Kafka does the same); `UnknownApiKey` and `Malformed` carry the correlation id for logging.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The frame ends inside the header.
    #[error("request header is truncated")]
    Truncated,
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("malformed request header (correlation id {correlation_id}): {reason}")]
    Malformed { correlation_id: i32, reason: String },
}

/// The request header version for `(api_key, version)`. Versions outside kafka-protocol's known
/// range use the header version of the nearest known version, so that e.g. an ApiVersions
/// request with a too-new version can still be parsed and answered with UNSUPPORTED_VERSION.
pub fn request_header_version(api_key: ApiKey, version: i16) -> i16 {
    let range = api_key.valid_versions();
    let clamped = version.clamp(range.min, range.max.max(range.min));
    api_key.request_header_version(clamped)
}

/// Parses the request header from the front of `frame`, advancing `frame` past it on success
/// (on error `frame` is left untouched).
pub fn parse_request_header(frame: &mut Bytes) -> Result<ParsedHeader, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::Truncated);
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(api_key).map_err(|()| HeaderError::UnknownApiKey {
        api_key,
        correlation_id,
    })?;
    parse_request_header_version(frame, request_header_version(key, api_version))
}

/// Parses a request header of an explicit header version (0, 1 or 2) from the front of `frame`,
/// advancing it past the header on success. The api key is not checked.
pub fn parse_request_header_version(
    frame: &mut Bytes,
    header_version: i16,
) -> Result<ParsedHeader, HeaderError> {
    let mut cur: &[u8] = frame;
    if cur.len() < 8 {
        return Err(HeaderError::Truncated);
    }
    let api_key = cur.get_i16();
    let api_version = cur.get_i16();
    let correlation_id = cur.get_i32();
    let malformed = |reason: String| HeaderError::Malformed {
        correlation_id,
        reason,
    };
    let mut client_id = None;
    if header_version >= 1 {
        if cur.len() < 2 {
            return Err(HeaderError::Truncated);
        }
        let len = cur.get_i16();
        if len < -1 {
            return Err(malformed(format!("client id length {len}")));
        }
        if len >= 0 {
            let len = len as usize;
            if cur.len() < len {
                return Err(HeaderError::Truncated);
            }
            client_id = Some(String::from_utf8_lossy(&cur[..len]).into_owned());
            cur.advance(len);
        }
    }
    if header_version >= 2 {
        let count = read_uvarint(&mut cur).map_err(|e| e.into_header_error(correlation_id))?;
        for _ in 0..count {
            let _tag = read_uvarint(&mut cur).map_err(|e| e.into_header_error(correlation_id))?;
            let size =
                read_uvarint(&mut cur).map_err(|e| e.into_header_error(correlation_id))? as usize;
            if cur.len() < size {
                return Err(HeaderError::Truncated);
            }
            cur.advance(size);
        }
    }
    let consumed = frame.len() - cur.len();
    frame.advance(consumed);
    Ok(ParsedHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
        header_version,
    })
}

enum VarintError {
    Truncated,
    TooLong,
}

impl VarintError {
    fn into_header_error(self, correlation_id: i32) -> HeaderError {
        match self {
            VarintError::Truncated => HeaderError::Truncated,
            VarintError::TooLong => HeaderError::Malformed {
                correlation_id,
                reason: "unsigned varint longer than 5 bytes".to_string(),
            },
        }
    }
}

fn read_uvarint(cur: &mut &[u8]) -> Result<u32, VarintError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        if cur.is_empty() {
            return Err(VarintError::Truncated);
        }
        let b = cur.get_u8();
        value |= u32::from(b & 0x7f).wrapping_shl(7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(VarintError::TooLong)
}
