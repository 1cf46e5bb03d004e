//! Outgoing responses: [`ResponseFrame`] (a list of in-memory chunks and file ranges, size prefix
//! included), generic encoding of kafka-protocol response bodies with the right response header,
//! and the special ApiVersions UNSUPPORTED_VERSION reply.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::UNSUPPORTED_VERSION;

/// One piece of an outgoing response.
#[derive(Clone, Debug)]
pub enum OutChunk {
    /// In-memory bytes.
    Bytes(Bytes),
    /// A byte range of a file, to be sent with sendfile by the connection (never read into
    /// memory by this crate).
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
}

impl OutChunk {
    /// Length of this chunk in bytes.
    pub fn len(&self) -> u64 {
        match self {
            OutChunk::Bytes(b) => b.len() as u64,
            OutChunk::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A complete response frame: the chunks, written in order, are the 4-byte size prefix,
/// the response header and the body.
#[derive(Clone, Debug, Default)]
pub struct ResponseFrame {
    pub chunks: Vec<OutChunk>,
}

impl ResponseFrame {
    /// Total length in bytes, size prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(OutChunk::is_empty)
    }

    /// Wraps an already complete frame (it must start with its own 4-byte size prefix).
    pub fn from_bytes(b: Bytes) -> Self {
        Self {
            chunks: vec![OutChunk::Bytes(b)],
        }
    }

    /// Returns the frame as one contiguous buffer if it has no file chunks (tests, small replies).
    pub fn to_contiguous(&self) -> Option<Bytes> {
        if let [OutChunk::Bytes(b)] = self.chunks.as_slice() {
            return Some(b.clone());
        }
        let mut out = BytesMut::with_capacity(self.len());
        for c in &self.chunks {
            match c {
                OutChunk::Bytes(b) => out.extend_from_slice(b),
                OutChunk::File { .. } => return None,
            }
        }
        Some(out.freeze())
    }
}

/// Why a response could not be encoded (a broker bug, never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("api key {api_key} version {version} cannot be encoded")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("response does not fit in a frame ({0} bytes)")]
    TooLarge(u64),
    #[error("{what} too long to encode ({len})")]
    FieldTooLong { what: &'static str, len: usize },
    #[error("kafka-protocol failed to encode the response: {0}")]
    Protocol(String),
}

/// Appends the response header (v0: correlation id; v1: plus an empty tagged-field section).
pub(crate) fn put_response_header(buf: &mut BytesMut, header_version: i16, correlation_id: i32) {
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0);
    }
}

/// Encodes a complete response (size prefix + response header + body) for a kafka-protocol body.
/// The response header version comes from `ApiKey::response_header_version` (ApiVersions is
/// always v0).
pub fn encode_response<T: Encodable>(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<ResponseFrame, EncodeError> {
    let key = ApiKey::try_from(api_key).map_err(|()| EncodeError::UnknownApiKey(api_key))?;
    let range = key.valid_versions();
    if api_version < range.min || api_version > range.max {
        return Err(EncodeError::UnsupportedVersion {
            api_key,
            version: api_version,
        });
    }
    let header_version = key.response_header_version(api_version);
    let body_size = body
        .compute_size(api_version)
        .map_err(|e| EncodeError::Protocol(format!("{e:#}")))?;
    let mut buf = BytesMut::with_capacity(4 + 5 + body_size);
    buf.put_i32(0);
    put_response_header(&mut buf, header_version, correlation_id);
    body.encode(&mut buf, api_version)
        .map_err(|e| EncodeError::Protocol(format!("{e:#}")))?;
    let size = buf.len() - 4;
    let size = i32::try_from(size).map_err(|_| EncodeError::TooLarge(size as u64))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(ResponseFrame::from_bytes(buf.freeze()))
}

/// The reply Kafka sends to an ApiVersions request with an unsupported version: an
/// ApiVersionsResponse v0 body (response header v0) with error code UNSUPPORTED_VERSION (35)
/// and the broker's supported ranges `(api_key, min_version, max_version)`.
pub fn encode_api_versions_unsupported(
    correlation_id: i32,
    ranges: &[(i16, i16, i16)],
) -> ResponseFrame {
    let size = 4 + 2 + 4 + 6 * ranges.len();
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    put_response_header(&mut buf, 0, correlation_id);
    buf.put_i16(UNSUPPORTED_VERSION);
    buf.put_i32(ranges.len() as i32);
    for &(key, min, max) in ranges {
        buf.put_i16(key);
        buf.put_i16(min);
        buf.put_i16(max);
    }
    ResponseFrame::from_bytes(buf.freeze())
}
