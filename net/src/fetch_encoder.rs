//! Hand-written Fetch response encoder (the consume hot path). Record data is never copied:
//! each partition's records go out as their own chunks (in-memory `Bytes` or file ranges for
//! sendfile) between slices of one metadata buffer. Supports Fetch v4..=12; v13+ identifies
//! topics by id and is not supported here.

use bytes::{BufMut, BytesMut};

use crate::response::{EncodeError, OutChunk, ResponseFrame, put_response_header};

/// Lowest Fetch version this encoder writes.
pub const FETCH_MIN_VERSION: i16 = 4;
/// Highest Fetch version this encoder writes (v13+ uses topic ids).
pub const FETCH_MAX_VERSION: i16 = 12;

const FETCH_API_KEY: i16 = 1;

/// One partition of a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchPartitionOut {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// Written for v5+.
    pub log_start_offset: i64,
    /// Whole record batches, sent as-is. Empty = zero-length (not null) records.
    pub records: Vec<OutChunk>,
}

/// One topic of a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchTopicOut {
    pub name: String,
    pub partitions: Vec<FetchPartitionOut>,
}

/// Encodes a complete Fetch response (size prefix, response header v0 (v1 for v12), body).
///
/// `error_code` and `session_id` are written for v7+. aborted_transactions is written as null
/// (what Kafka sends for READ_UNCOMMITTED), preferred_read_replica (v11+) as -1, and no tagged
/// fields are written.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    throttle_time_ms: i32,
    error_code: i16,
    session_id: i32,
    topics: &[FetchTopicOut],
) -> Result<ResponseFrame, EncodeError> {
    if !(FETCH_MIN_VERSION..=FETCH_MAX_VERSION).contains(&version) {
        return Err(EncodeError::UnsupportedVersion {
            api_key: FETCH_API_KEY,
            version,
        });
    }
    let flexible = version >= 12;
    let estimate: usize = 32
        + topics
            .iter()
            .map(|t| 8 + t.name.len() + 48 * t.partitions.len())
            .sum::<usize>();
    let mut meta = BytesMut::with_capacity(estimate);
    // (position in `meta` after which the records go, the records)
    let mut inserts: Vec<(usize, &[OutChunk])> = Vec::new();
    let mut records_total: u64 = 0;

    meta.put_i32(0); // size, patched below
    put_response_header(&mut meta, i16::from(flexible), correlation_id);
    meta.put_i32(throttle_time_ms);
    if version >= 7 {
        meta.put_i16(error_code);
        meta.put_i32(session_id);
    }
    put_array_len(&mut meta, flexible, topics.len(), "topics")?;
    for topic in topics {
        put_string(&mut meta, flexible, &topic.name)?;
        put_array_len(&mut meta, flexible, topic.partitions.len(), "partitions")?;
        for p in &topic.partitions {
            meta.put_i32(p.partition_index);
            meta.put_i16(p.error_code);
            meta.put_i64(p.high_watermark);
            meta.put_i64(p.last_stable_offset);
            if version >= 5 {
                meta.put_i64(p.log_start_offset);
            }
            // aborted_transactions: null
            if flexible {
                meta.put_u8(0);
            } else {
                meta.put_i32(-1);
            }
            if version >= 11 {
                meta.put_i32(-1); // preferred_read_replica
            }
            let len: u64 = p.records.iter().map(OutChunk::len).sum();
            if len > i32::MAX as u64 {
                return Err(EncodeError::TooLarge(len));
            }
            if flexible {
                put_uvarint(&mut meta, len as u32 + 1);
            } else {
                meta.put_i32(len as i32);
            }
            inserts.push((meta.len(), &p.records));
            records_total += len;
            if flexible {
                meta.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            meta.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        meta.put_u8(0); // response tagged fields
    }

    let size = (meta.len() - 4) as u64 + records_total;
    if size > i32::MAX as u64 {
        return Err(EncodeError::TooLarge(size));
    }
    meta[..4].copy_from_slice(&(size as i32).to_be_bytes());
    let meta = meta.freeze();

    let mut chunks = Vec::with_capacity(2 * inserts.len() + 1);
    let mut prev = 0;
    for (at, records) in inserts {
        if records.iter().all(OutChunk::is_empty) {
            continue; // keep the metadata contiguous
        }
        chunks.push(OutChunk::Bytes(meta.slice(prev..at)));
        chunks.extend(records.iter().filter(|c| !c.is_empty()).cloned());
        prev = at;
    }
    chunks.push(OutChunk::Bytes(meta.slice(prev..)));
    Ok(ResponseFrame { chunks })
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(
    buf: &mut BytesMut,
    flexible: bool,
    len: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if flexible {
        let n = u32::try_from(len)
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or(EncodeError::FieldTooLong { what, len })?;
        put_uvarint(buf, n);
    } else {
        let n = i32::try_from(len).map_err(|_| EncodeError::FieldTooLong { what, len })?;
        buf.put_i32(n);
    }
    Ok(())
}

fn put_string(buf: &mut BytesMut, flexible: bool, s: &str) -> Result<(), EncodeError> {
    let len = s.len();
    let too_long = EncodeError::FieldTooLong {
        what: "topic name",
        len,
    };
    if len > i16::MAX as usize {
        return Err(too_long);
    }
    if flexible {
        put_uvarint(buf, len as u32 + 1);
    } else {
        buf.put_i16(len as i16);
    }
    buf.put_slice(s.as_bytes());
    Ok(())
}
