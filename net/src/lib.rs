//! `tern-net`: the Kafka wire layer of Tern, independent of any async runtime.
//!
//! Owns: request framing ([`read_frame`]), request header parsing ([`parse_request_header`]),
//! request body decoding ([`decode_request`], hardened against hostile input), response
//! encoding ([`encode_response`], [`encode_api_versions_unsupported`]) and the hand-written
//! zero-copy Fetch response encoder ([`encode_fetch_response`]). It does not own sockets,
//! sendfile or any broker logic: responses are handed back as [`ResponseFrame`]s made of
//! in-memory chunks and file ranges that the connection writes out.

mod fetch_encoder;
mod frame;
mod guard;
mod header;
pub mod partitioner;
mod request;
mod response;

pub use fetch_encoder::{
    FETCH_MAX_VERSION, FETCH_MIN_VERSION, FetchNodeEndpoint, FetchPartitionOut, FetchTopicOut,
    encode_fetch_response,
};
pub use frame::{DEFAULT_MAX_REQUEST_BYTES, FrameError, FrameLimits, read_frame};
pub use header::{
    HeaderError, ParsedHeader, parse_request_header, parse_request_header_version,
    request_header_version,
};
pub use request::{DecodeError, decode_request};
pub use response::{
    EncodeError, OutChunk, ResponseFrame, encode_api_versions_unsupported, encode_response,
};

/// Kafka error code UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;
