//! The records of the internal offsets log, in Kafka's `__consumer_offsets` schemas (non-flexible
//! versions, byte-compatible with Kafka's):
//!
//! | key | value |
//! |---|---|
//! | v1 `OffsetCommitKey` (int16 1, group, topic, int32 partition) | v3 `OffsetCommitValue` (int16 3, int64 offset, int32 leader epoch, metadata, int64 commit timestamp) |
//! | v2 `GroupMetadataKey` (int16 2, group) | v3 `GroupMetadataValue` (protocol type, generation, protocol, leader, state timestamp, members) |
//! | v3 `ConsumerGroupMetadataKey` (int16 3, group) | v0 (int16 0, int32 group epoch) |
//!
//! A null value is a tombstone (offset deleted / group deleted). Records are written as
//! RecordBatch v2 (uncompressed, no producer id) with `RecordBatchEncoder`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

#[derive(Clone, Debug, PartialEq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ts: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClassicGroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_ts: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LogRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    ClassicGroup {
        group: String,
        value: Option<ClassicGroupValue>,
    },
    ConsumerGroup {
        group: String,
        epoch: Option<i32>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nstr(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), String> {
        if self.0.remaining() < n {
            Err("truncated record".into())
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nstr(&mut self) -> Result<Option<String>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        self.need(n as usize)?;
        let b = self.0.split_to(n as usize);
        Ok(Some(String::from_utf8_lossy(&b).into_owned()))
    }
    fn str(&mut self) -> Result<String, String> {
        Ok(self.nstr()?.unwrap_or_default())
    }
    fn bytes(&mut self) -> Result<Bytes, String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Bytes::new());
        }
        self.need(n as usize)?;
        Ok(self.0.split_to(n as usize))
    }
}

impl LogRecord {
    /// (key, value) bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut k = BytesMut::new();
        match self {
            LogRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                k.put_i16(1);
                put_str(&mut k, group);
                put_str(&mut k, topic);
                k.put_i32(*partition);
                let v = value.as_ref().map(|v| {
                    let mut b = BytesMut::new();
                    b.put_i16(3);
                    b.put_i64(v.offset);
                    b.put_i32(v.leader_epoch);
                    put_str(&mut b, &v.metadata);
                    b.put_i64(v.commit_ts);
                    b.freeze()
                });
                (k.freeze(), v)
            }
            LogRecord::ClassicGroup { group, value } => {
                k.put_i16(2);
                put_str(&mut k, group);
                let v = value.as_ref().map(|v| {
                    let mut b = BytesMut::new();
                    b.put_i16(3);
                    put_str(&mut b, &v.protocol_type);
                    b.put_i32(v.generation);
                    put_nstr(&mut b, v.protocol.as_deref());
                    put_nstr(&mut b, v.leader.as_deref());
                    b.put_i64(v.state_ts);
                    b.put_i32(v.members.len() as i32);
                    for m in &v.members {
                        put_str(&mut b, &m.member_id);
                        put_nstr(&mut b, m.instance_id.as_deref());
                        put_str(&mut b, &m.client_id);
                        put_str(&mut b, &m.client_host);
                        b.put_i32(m.rebalance_timeout_ms);
                        b.put_i32(m.session_timeout_ms);
                        put_bytes(&mut b, &m.subscription);
                        put_bytes(&mut b, &m.assignment);
                    }
                    b.freeze()
                });
                (k.freeze(), v)
            }
            LogRecord::ConsumerGroup { group, epoch } => {
                k.put_i16(3);
                put_str(&mut k, group);
                let v = epoch.map(|e| {
                    let mut b = BytesMut::new();
                    b.put_i16(0);
                    b.put_i32(e);
                    b.freeze()
                });
                (k.freeze(), v)
            }
        }
    }

    /// Decodes a record; `Ok(None)` for key versions this broker does not use (skipped).
    pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<Option<LogRecord>, String> {
        let mut k = Reader(key);
        match k.i16()? {
            0 | 1 => {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        let ver = r.i16()?;
                        let offset = r.i64()?;
                        let leader_epoch = if ver >= 3 { r.i32()? } else { -1 };
                        let metadata = r.str()?;
                        let commit_ts = r.i64()?;
                        Some(OffsetValue {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_ts,
                        })
                    }
                };
                Ok(Some(LogRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = k.str()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        let ver = r.i16()?;
                        if ver != 3 {
                            return Err(format!("group metadata value v{ver} is not supported"));
                        }
                        let protocol_type = r.str()?;
                        let generation = r.i32()?;
                        let protocol = r.nstr()?;
                        let leader = r.nstr()?;
                        let state_ts = r.i64()?;
                        let n = r.i32()?;
                        let mut members = Vec::new();
                        for _ in 0..n.max(0) {
                            members.push(MemberValue {
                                member_id: r.str()?,
                                instance_id: r.nstr()?,
                                client_id: r.str()?,
                                client_host: r.str()?,
                                rebalance_timeout_ms: r.i32()?,
                                session_timeout_ms: r.i32()?,
                                subscription: r.bytes()?,
                                assignment: r.bytes()?,
                            });
                        }
                        Some(ClassicGroupValue {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                            state_ts,
                            members,
                        })
                    }
                };
                Ok(Some(LogRecord::ClassicGroup { group, value }))
            }
            3 => {
                let group = k.str()?;
                let epoch = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        let _ver = r.i16()?;
                        Some(r.i32()?)
                    }
                };
                Ok(Some(LogRecord::ConsumerGroup { group, epoch }))
            }
            _ => Ok(None),
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One RecordBatch v2 holding `records`.
pub fn encode_batch(records: &[LogRecord]) -> BytesMut {
    let ts = now_ms();
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            Record {
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
                key: Some(key),
                value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding an uncompressed v2 batch cannot fail");
    buf
}

/// Decodes the batches in `bytes` into (offset, record) pairs.
pub fn decode_batches(mut bytes: Bytes) -> Result<Vec<(i64, LogRecord)>, String> {
    let sets =
        RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| format!("decoding batch: {e}"))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            let Some(key) = r.key else { continue };
            match LogRecord::decode(key, r.value) {
                Ok(Some(rec)) => out.push((r.offset, rec)),
                Ok(None) => {}
                Err(e) => log::warn!("offsets log: skipping record at {}: {e}", r.offset),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_through_a_batch() {
        let recs = vec![
            LogRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: 0,
                    metadata: "m".into(),
                    commit_ts: 7,
                }),
            },
            LogRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            LogRecord::ClassicGroup {
                group: "g".into(),
                value: Some(ClassicGroupValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    state_ts: 9,
                    members: vec![MemberValue {
                        member_id: "m1".into(),
                        instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300000,
                        session_timeout_ms: 45000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                }),
            },
            LogRecord::ConsumerGroup {
                group: "h".into(),
                epoch: Some(12),
            },
            LogRecord::ConsumerGroup {
                group: "h".into(),
                epoch: None,
            },
        ];
        let batch = encode_batch(&recs).freeze();
        let back = decode_batches(batch).unwrap();
        assert_eq!(back.len(), recs.len());
        for (i, (off, r)) in back.into_iter().enumerate() {
            assert_eq!(off, i as i64);
            assert_eq!(r, recs[i]);
        }
    }
}
