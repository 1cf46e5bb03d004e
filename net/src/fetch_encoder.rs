//! Hand-written Fetch response encoder (the consume hot path). Record data is never copied:
//! each partition's records go out as their own chunks (in-memory `Bytes` or file ranges for
//! sendfile) between slices of one metadata buffer. Supports Fetch v4..=18: v12+ is flexible
//! (compact encodings, tagged fields: the partition's `CurrentLeader`, the response's
//! `NodeEndpoints` from v16), v13+ names topics by id.

use bytes::{BufMut, BytesMut};

use crate::response::{EncodeError, OutChunk, ResponseFrame, put_response_header};

/// Lowest Fetch version this encoder writes.
pub const FETCH_MIN_VERSION: i16 = 4;
/// Highest Fetch version this encoder writes.
pub const FETCH_MAX_VERSION: i16 = 18;

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
    /// Null for READ_UNCOMMITTED; (producer id, first offset) pairs for READ_COMMITTED.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    /// KIP-951 leader hint (leader id, leader epoch): the tagged `CurrentLeader`, written for
    /// v12+ when set.
    pub current_leader: Option<(i32, i32)>,
    /// KIP-320/279 `DivergingEpoch` (epoch, end offset) for a follower whose log diverges:
    /// the tagged field 0, written for v12+ when set.
    pub diverging_epoch: Option<(i32, i64)>,
    /// KIP-392 `PreferredReadReplica`, written for v11+ (-1: none).
    pub preferred_read_replica: i32,
    /// Whole record batches, sent as-is. Empty = zero-length (not null) records.
    pub records: Vec<OutChunk>,
}

/// One topic of a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchTopicOut {
    /// Written up to v12.
    pub name: String,
    /// The topic id (UUID as a big-endian u128), written for v13+.
    pub topic_id: u128,
    pub partitions: Vec<FetchPartitionOut>,
}

/// A broker named by a partition's `current_leader` (the tagged `NodeEndpoints`, v16+).
#[derive(Clone, Debug)]
pub struct FetchNodeEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Encodes a complete Fetch response (size prefix, response header v0 (v1 for v12), body).
///
/// `error_code` and `session_id` are written for v7+, preferred_read_replica (v11+) as given;
/// `node_endpoints` (v16+) only when not empty.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    throttle_time_ms: i32,
    error_code: i16,
    session_id: i32,
    topics: &[FetchTopicOut],
    node_endpoints: &[FetchNodeEndpoint],
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
            .map(|t| 24 + t.name.len() + 64 * t.partitions.len())
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
        if version >= 13 {
            meta.put_u128(topic.topic_id);
        } else {
            put_string(&mut meta, flexible, &topic.name)?;
        }
        put_array_len(&mut meta, flexible, topic.partitions.len(), "partitions")?;
        for p in &topic.partitions {
            meta.put_i32(p.partition_index);
            meta.put_i16(p.error_code);
            meta.put_i64(p.high_watermark);
            meta.put_i64(p.last_stable_offset);
            if version >= 5 {
                meta.put_i64(p.log_start_offset);
            }
            match &p.aborted_transactions {
                None if flexible => meta.put_u8(0),
                None => meta.put_i32(-1),
                Some(txns) => {
                    put_array_len(&mut meta, flexible, txns.len(), "aborted transactions")?;
                    for (producer_id, first_offset) in txns {
                        meta.put_i64(*producer_id);
                        meta.put_i64(*first_offset);
                        if flexible {
                            meta.put_u8(0); // aborted transaction tagged fields
                        }
                    }
                }
            }
            if version >= 11 {
                meta.put_i32(p.preferred_read_replica);
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
                // Tagged fields in tag order: DivergingEpoch (tag 0, an EpochEndOffset of
                // 4 + 8 bytes), CurrentLeader (tag 1, a LeaderIdAndEpoch of 4 + 4 bytes), each
                // with its own (empty) tagged fields.
                let tags = p.diverging_epoch.is_some() as u32 + p.current_leader.is_some() as u32;
                put_uvarint(&mut meta, tags);
                if let Some((epoch, end_offset)) = p.diverging_epoch {
                    put_uvarint(&mut meta, 0); // tag
                    put_uvarint(&mut meta, 13); // size
                    meta.put_i32(epoch);
                    meta.put_i64(end_offset);
                    meta.put_u8(0);
                }
                if let Some((leader_id, leader_epoch)) = p.current_leader {
                    put_uvarint(&mut meta, 1); // tag
                    put_uvarint(&mut meta, 9); // size
                    meta.put_i32(leader_id);
                    meta.put_i32(leader_epoch);
                    meta.put_u8(0);
                }
            }
        }
        if flexible {
            meta.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        if version >= 16 && !node_endpoints.is_empty() {
            // One tagged field: NodeEndpoints (tag 0), a compact array of structs.
            let mut field = BytesMut::new();
            put_array_len(&mut field, true, node_endpoints.len(), "node endpoints")?;
            for n in node_endpoints {
                field.put_i32(n.node_id);
                put_string(&mut field, true, &n.host)?;
                field.put_i32(n.port);
                match &n.rack {
                    Some(r) => put_string(&mut field, true, r)?,
                    None => field.put_u8(0), // null compact string
                }
                field.put_u8(0); // endpoint tagged fields
            }
            meta.put_u8(1); // number of tagged fields
            put_uvarint(&mut meta, 0); // tag
            put_array_len_raw(&mut meta, field.len(), "node endpoints")?;
            meta.put_slice(&field);
        } else {
            meta.put_u8(0); // no response tagged fields
        }
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

/// A tagged field's size (an unsigned varint, not offset by one).
fn put_array_len_raw(
    buf: &mut BytesMut,
    len: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    let n = u32::try_from(len).map_err(|_| EncodeError::FieldTooLong { what, len })?;
    put_uvarint(buf, n);
    Ok(())
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
        what: "string",
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
