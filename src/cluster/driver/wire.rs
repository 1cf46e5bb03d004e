//! The controller listener's wire format (ours: this protocol is internal in Kafka too), sans-IO.
//! A frame is `[u32 len][u8 kind][payload]`, big-endian, `len` counting kind + payload and
//! bounded by an explicit maximum. Kinds: a raft message (`quorum::encode_message` protobuf),
//! a broker RPC request and its response (serde JSON, each with a correlation id). Answers carry
//! Kafka error codes. `FrameDecoder` is incremental over a byte buffer: garbage or an oversize
//! length is an error (the connection is closed with a log line), never a panic or an unbounded
//! allocation.

use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Serialize};

pub use crate::cluster::controller::ConfigChange;
use crate::cluster::controller::ControllerError;
use crate::cluster::metadata_log::records::BrokerEndpoint;

/// Default bound on one frame (a metadata snapshot for a broker-only node is the largest).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
const HEADER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Raft = 1,
    Request = 2,
    Response = 3,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Raft),
            2 => Some(Self::Request),
            3 => Some(Self::Response),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Appends one frame to `out`.
pub fn encode_frame(out: &mut BytesMut, kind: FrameKind, payload: &[u8]) {
    let len = u32::try_from(payload.len() + 1).expect("frame fits u32");
    out.reserve(HEADER + payload.len());
    out.put_u32(len);
    out.put_u8(kind as u8);
    out.put_slice(payload);
}

/// Splits frames off a growing byte buffer.
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        assert!(max_frame > 0);
        Self { max_frame }
    }

    /// The next whole frame in `buf` (consumed), `Ok(None)` if more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<(FrameKind, BytesMut)>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len == 0 {
            return Err(WireError::Empty);
        }
        if len > self.max_frame {
            return Err(WireError::TooLarge(len, self.max_frame));
        }
        if buf.len() > 4 {
            FrameKind::from_u8(buf[4]).ok_or(WireError::UnknownKind(buf[4]))?;
        }
        if buf.len() < 4 + len {
            return Ok(None);
        }
        buf.advance(4);
        let kind = FrameKind::from_u8(buf[0]).expect("checked above");
        buf.advance(1);
        Ok(Some((kind, buf.split_to(len - 1))))
    }
}

/// A topic of a forwarded CreateTopics (the front has validated names and configs and resolved
/// -1 replication factors).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireNewTopic {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
    /// A manual replica assignment (partitions 0..n); then the counts above only echo it.
    #[serde(default)]
    pub assignments: Vec<Vec<i32>>,
}

/// A broker RPC to the (active) controller.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Rpc {
    Register {
        broker_id: i32,
        cluster_id: Option<String>,
        incarnation_id: uuid::Uuid,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    },
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: u64,
        want_shutdown: bool,
        /// The log dir is below its free-space floor (absent from an older broker: false).
        #[serde(default)]
        log_dir_full: bool,
    },
    CreateTopics {
        topics: Vec<WireNewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// One group of changes per resource; each group commits or fails as a whole.
    AlterConfigs {
        resources: Vec<Vec<ConfigChange>>,
    },
    AllocateProducerIds {
        broker_id: i32,
        broker_epoch: i64,
    },
    DescribeQuorum,
    /// A broker-only node follows the metadata: the committed image if newer than `have_offset`
    /// (waits up to `wait_ms` for one).
    FetchMetadata {
        have_offset: u64,
        wait_ms: u64,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition), answered after commit.
    AlterPartition {
        req: crate::cluster::replication::AlterPartitionRequest,
    },
    /// ElectLeaders: 0 preferred, 1 unclean; partitions None = every partition.
    ElectLeaders {
        election_type: i8,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// AlterPartitionReassignments: (topic, partition, target replicas or None to cancel).
    AlterReassignments {
        changes: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
    },
    /// ListPartitionReassignments: partitions None = every partition.
    ListReassignments {
        partitions: Option<Vec<(String, i32)>>,
    },
}

/// A per-item outcome: Ok or a Kafka error code with its message.
pub type ItemResult<T> = Result<T, (i16, String)>;

/// The answer to an `Rpc`. `offset` is the metadata-log offset the caller must have applied
/// before it relies on the answer (0 = nothing committed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum RpcReply {
    /// The whole request was refused (e.g. NOT_CONTROLLER), with the leader if known.
    Error {
        code: i16,
        message: String,
        leader: Option<i32>,
    },
    Registered {
        broker_epoch: i64,
        offset: u64,
    },
    Heartbeat {
        is_caught_up: bool,
        is_fenced: bool,
        should_shut_down: bool,
        offset: u64,
    },
    CreatedTopics {
        results: Vec<ItemResult<(uuid::Uuid, i32, i16)>>,
        offset: u64,
    },
    DeletedTopics {
        results: Vec<ItemResult<uuid::Uuid>>,
        offset: u64,
    },
    Results {
        results: Vec<ItemResult<()>>,
        offset: u64,
    },
    ProducerIds {
        start: i64,
        len: i64,
        offset: u64,
    },
    Quorum(crate::cluster::status::QuorumStatus),
    /// Registration refused for good (DUPLICATE_BROKER_REGISTRATION): another process with
    /// this node.id is alive (its session kept heartbeating after this one asked). The plain
    /// `Error` with that code means "maybe my own previous process": retry until it expires.
    DuplicateBroker {
        message: String,
    },
    /// `image` is a `MetadataImage::to_snapshot` (None: nothing newer than asked).
    Metadata {
        image: Option<Vec<u8>>,
        controller_id: i32,
    },
    /// The committed partition state, or the refusal (INVALID_UPDATE_VERSION, ...).
    AlterPartition {
        result: ItemResult<crate::cluster::replication::PartitionState>,
        offset: u64,
    },
    /// ElectLeaders: (topic, partition, error code, message) per partition.
    Elected {
        results: Vec<(String, i32, i16, Option<String>)>,
        offset: u64,
    },
    /// ListPartitionReassignments: the reassignments in progress.
    Reassignments {
        ongoing: Vec<crate::cluster::controller::reassignment::OngoingReassignment>,
    },
}

impl RpcReply {
    pub fn error(e: ControllerError, leader: Option<i32>) -> Self {
        RpcReply::Error {
            code: e.code,
            message: e.message,
            leader,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    body: T,
}

/// Encodes a request or response with its correlation id.
pub fn encode_rpc<T: Serialize>(id: u64, body: &T) -> Vec<u8> {
    serde_json::to_vec(&Envelope { id, body }).expect("rpc types serialise")
}

pub fn decode_rpc<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<(u64, T), WireError> {
    let e: Envelope<T> =
        serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok((e.id, e.body))
}

/// Longest cluster id a raft frame carries (ours are 22 characters, Kafka's too).
pub const MAX_CLUSTER_ID: usize = 64;

/// The payload of a raft frame: `[u8 n][n bytes: the sender's cluster id, n = 0 while it has
/// none][raft message protobuf]`, so that a node refuses a peer of another cluster before raft
/// sees its message.
pub fn encode_raft_payload(cluster_id: Option<&str>, message: &[u8]) -> Vec<u8> {
    let id = cluster_id.unwrap_or("").as_bytes();
    assert!(id.len() <= MAX_CLUSTER_ID, "cluster id too long");
    let mut out = Vec::with_capacity(1 + id.len() + message.len());
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(message);
    out
}

/// Splits a raft frame's payload into the sender's cluster id and the message bytes.
pub fn decode_raft_payload(payload: &[u8]) -> Result<(Option<String>, &[u8]), WireError> {
    let (&n, rest) = payload
        .split_first()
        .ok_or_else(|| WireError::Malformed("raft frame without a cluster id".into()))?;
    let n = n as usize;
    if n > MAX_CLUSTER_ID || rest.len() < n {
        return Err(WireError::Malformed(format!(
            "raft frame cluster id of {n} bytes"
        )));
    }
    let id = std::str::from_utf8(&rest[..n])
        .map_err(|_| WireError::Malformed("raft frame cluster id is not UTF-8".into()))?;
    Ok(((n > 0).then(|| id.to_string()), &rest[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_decode_incrementally() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, FrameKind::Raft, b"abc");
        let req = Rpc::DeleteTopics {
            names: vec!["t".into()],
        };
        encode_frame(&mut out, FrameKind::Request, &encode_rpc(7, &req));
        let dec = FrameDecoder::new(1024);
        // Fed one byte at a time, frames come out whole and in order.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in out.iter() {
            buf.put_u8(*b);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, &got[0].1[..]), (FrameKind::Raft, &b"abc"[..]));
        assert_eq!(got[1].0, FrameKind::Request);
        assert_eq!(decode_rpc::<Rpc>(&got[1].1).unwrap(), (7, req));
    }

    #[test]
    fn raft_payloads_carry_the_cluster_id() {
        let p = encode_raft_payload(Some("abc"), b"msg");
        assert_eq!(
            decode_raft_payload(&p).unwrap(),
            (Some("abc".into()), &b"msg"[..])
        );
        let p = encode_raft_payload(None, b"msg");
        assert_eq!(decode_raft_payload(&p).unwrap(), (None, &b"msg"[..]));
    }

    #[test]
    fn garbage_and_oversize_frames_are_errors() {
        let dec = FrameDecoder::new(100);
        let mut big = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert_eq!(dec.decode(&mut big), Err(WireError::TooLarge(256, 100)));
        let mut huge = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff, 1][..]);
        assert!(matches!(
            dec.decode(&mut huge),
            Err(WireError::TooLarge(..))
        ));
        let mut empty = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(dec.decode(&mut empty), Err(WireError::Empty));
        let mut kind = BytesMut::from(&[0u8, 0, 0, 3, 9][..]);
        assert_eq!(dec.decode(&mut kind), Err(WireError::UnknownKind(9)));
        // Random bytes: an error or a frame, never a panic.
        let mut seed = 0x1234_5678u64;
        for _ in 0..2000 {
            let mut buf = BytesMut::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.put_u8((seed >> 33) as u8);
            }
            while let Ok(Some((k, payload))) = dec.decode(&mut buf) {
                if k == FrameKind::Request {
                    let _ = decode_rpc::<Rpc>(&payload);
                }
                if k == FrameKind::Raft {
                    let _ = crate::cluster::quorum::decode_message(&payload);
                }
            }
        }
        assert!(decode_rpc::<Rpc>(b"{not json").is_err());
        assert!(decode_raft_payload(b"").is_err());
        assert!(decode_raft_payload(&[5, b'a']).is_err());
        assert!(decode_raft_payload(&[200; 300]).is_err());
        assert!(decode_rpc::<RpcReply>(b"{\"id\":1,\"body\":{\"Nope\":1}}").is_err());
    }
}
