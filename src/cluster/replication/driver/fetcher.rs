//! The replica fetcher of one shard for one leader broker (Kafka's ReplicaFetcherThread): one
//! connection to the leader's broker listener, and per round ONE Kafka Fetch request (v15,
//! ReplicaState = this broker's id and broker epoch, sessionless) covering every partition
//! this shard follows from that leader, each from `FollowerPartition::next_fetch`. The
//! leader long-polls (`replica.fetch.wait.max.ms`, 500 ms) and answers as soon as it has data.
//! Answers go back to the rules: fetched batches are appended unchanged and written (and
//! fdatasynced under `tern.replication.ack.durability=synced`) before the next round, so the
//! fetch offset is what the leader counts for this replica,
//! DivergingEpoch truncates the local log, errors back off until the metadata moves. The task
//! ends when this shard follows nothing from the leader any more.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tern_shard::net::TcpStream;

use super::{Key, Role, StorageLog};
use crate::cluster::replication::follower::{
    FetchResponse as RulesResponse, FetchedRecords, FollowerAction,
};
use crate::shard_state::ShardState;

const VERSION: i16 = 15;
/// replica.fetch.wait.max.ms (Kafka's default).
const MAX_WAIT_MS: i32 = 500;
/// replica.fetch.max.bytes (per partition) and the response bound.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 16 << 20;
/// A response larger than this closes the connection (bad input is never an unbounded
/// allocation).
const MAX_FRAME: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a round may take beyond the leader's long poll before the connection is dropped.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF: Duration = Duration::from_millis(200);

/// Record batches fetched for one partition.
pub struct Batches {
    first_offset: Option<i64>,
    bytes: Bytes,
}

impl FetchedRecords for Batches {
    fn first_offset(&self) -> Option<i64> {
        self.first_offset
    }
}

impl Batches {
    fn new(bytes: Bytes) -> Self {
        // A batch starts with its base offset (8 bytes) and length (4 bytes).
        let first_offset = (bytes.len() >= 12).then(|| (&bytes[..8]).get_i64());
        Self {
            first_offset,
            bytes,
        }
    }
}

fn leader_addr(state: &ShardState, leader: i32) -> Option<SocketAddr> {
    let meta = state.metadata();
    let b = meta.brokers.get(&leader)?;
    (b.host.as_str(), b.port).to_socket_addrs().ok()?.next()
}

pub async fn run(state: Rc<ShardState>, leader: i32) {
    let mut conn: Option<TcpStream> = None;
    let mut correlation = 0i32;
    loop {
        let keys = state.replicas.followed_from(leader);
        if keys.is_empty() {
            return;
        }
        if conn.is_none() {
            let Some(addr) = leader_addr(&state, leader) else {
                tern_shard::task::sleep(BACKOFF).await;
                continue;
            };
            match tern_shard::net::connect(addr, CONNECT_TIMEOUT).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    log::debug!("replica fetcher: leader {leader} at {addr}: {e}");
                    tern_shard::task::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let (req, sent) = build_request(&state, &keys);
        if sent.is_empty() {
            tern_shard::task::sleep(BACKOFF).await;
            continue;
        }
        correlation = correlation.wrapping_add(1);
        let stream = conn.as_mut().expect("connected above");
        let round =
            tern_shard::task::timeout(ROUND_TIMEOUT, exchange(stream, &state, correlation, &req))
                .await;
        let resp = match round {
            Some(Ok(r)) => r,
            other => {
                if let Some(Err(e)) = other {
                    log::info!("replica fetcher: leader {leader}: {e:#}; reconnecting");
                }
                conn = None;
                forget(&state, &sent);
                tern_shard::task::sleep(BACKOFF).await;
                continue;
            }
        };
        let progressed = apply(&state, &sent, resp).await;
        if !progressed {
            // Every partition backed off (the leader moved or lags our metadata).
            tern_shard::task::sleep(BACKOFF).await;
        }
    }
}

/// One partition of a round: its key, topic id, and the rules' fetch id.
struct Sent {
    key: Key,
    topic_id: uuid::Uuid,
    fetch_id: u64,
}

fn build_request(state: &ShardState, keys: &[Key]) -> (FetchRequest, Vec<Sent>) {
    let mut topics: HashMap<uuid::Uuid, Vec<FetchPartition>> = HashMap::new();
    let mut sent = Vec::new();
    let mut broker_epoch = -1;
    let mut roles = state.replicas.roles().borrow_mut();
    for key in keys {
        let Some(Role::Follower(f)) = roles.get_mut(key) else {
            continue;
        };
        let (fetch_id, r) = f.rules.next_fetch(&StorageLog(&f.log));
        broker_epoch = r.broker_epoch;
        let mut p = FetchPartition::default();
        p.partition = key.1;
        p.current_leader_epoch = r.leader_epoch;
        p.fetch_offset = r.fetch_offset;
        p.last_fetched_epoch = r.last_fetched_epoch;
        p.log_start_offset = f.log.log_start_offset();
        p.partition_max_bytes = PARTITION_MAX_BYTES;
        topics.entry(f.topic_id).or_default().push(p);
        sent.push(Sent {
            key: key.clone(),
            topic_id: f.topic_id,
            fetch_id,
        });
    }
    let mut req = FetchRequest::default();
    let mut rs = ReplicaState::default();
    rs.replica_id = BrokerId(state.config.node_id);
    rs.replica_epoch = broker_epoch;
    req.replica_state = rs;
    req.max_wait_ms = MAX_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = RESPONSE_MAX_BYTES;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = topics
        .into_iter()
        .map(|(id, partitions)| {
            let mut t = FetchTopic::default();
            t.topic_id = id;
            t.partitions = partitions;
            t
        })
        .collect();
    (req, sent)
}

async fn exchange(
    stream: &mut TcpStream,
    state: &ShardState,
    correlation: i32,
    req: &FetchRequest,
) -> anyhow::Result<FetchResponse> {
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Fetch as i16;
    header.request_api_version = VERSION;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_string(format!(
        "tern-replica-{}-shard-{}",
        state.config.node_id, state.id
    )));
    let mut body = BytesMut::new();
    header.encode(&mut body, FetchRequest::header_version(VERSION))?;
    req.encode(&mut body, VERSION)?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = i32::from_be_bytes(len);
    anyhow::ensure!(
        len >= 0 && (len as usize) <= MAX_FRAME,
        "response size {len} out of bounds"
    );
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    let mut bytes = Bytes::from(buf);
    let rh = ResponseHeader::decode(&mut bytes, FetchResponse::header_version(VERSION))?;
    anyhow::ensure!(
        rh.correlation_id == correlation,
        "correlation id {} (expected {correlation})",
        rh.correlation_id
    );
    let resp = FetchResponse::decode(&mut bytes, VERSION)?;
    anyhow::ensure!(
        resp.error_code == 0,
        "fetch refused with error {}",
        resp.error_code
    );
    Ok(resp)
}

/// The round failed: every fetch in flight is given up (the next round replaces it).
fn forget(state: &ShardState, sent: &[Sent]) {
    let mut roles = state.replicas.roles().borrow_mut();
    for s in sent {
        if let Some(Role::Follower(f)) = roles.get_mut(&s.key) {
            f.rules.fetch_timed_out();
        }
    }
}

/// Carries out the rules' actions for each partition of the answer. True when some partition
/// did not back off.
async fn apply(state: &Rc<ShardState>, sent: &[Sent], resp: FetchResponse) -> bool {
    let mut answers: HashMap<(uuid::Uuid, i32), RulesResponse<Batches>> = HashMap::new();
    for t in resp.responses {
        for p in t.partitions {
            let hw = p.high_watermark;
            let answer = if p.error_code != 0 {
                RulesResponse::Error(p.error_code)
            } else if p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0 {
                RulesResponse::Diverging {
                    epoch: p.diverging_epoch.epoch,
                    end_offset: p.diverging_epoch.end_offset,
                    high_watermark: hw,
                }
            } else {
                RulesResponse::Records {
                    entries: Batches::new(p.records.unwrap_or_default()),
                    high_watermark: hw,
                }
            };
            answers.insert((t.topic_id, p.partition_index), answer);
        }
    }
    let mut progressed = false;
    for s in sent {
        let Some(answer) = answers.remove(&(s.topic_id, s.key.1)) else {
            forget(state, std::slice::from_ref(s));
            continue;
        };
        let action = {
            let mut roles = state.replicas.roles().borrow_mut();
            let Some(Role::Follower(f)) = roles.get_mut(&s.key) else {
                continue;
            };
            let log = f.log.clone();
            // Bad input from the leader is refused here, never asserted on by the rules.
            if let RulesResponse::Records { entries, .. } = &answer
                && entries
                    .first_offset
                    .is_some_and(|o| o != log.log_end_offset())
            {
                log::warn!(
                    "{}-{}: leader answered from offset {:?}, not {}; dropped",
                    s.key.0,
                    s.key.1,
                    entries.first_offset,
                    log.log_end_offset()
                );
                f.rules.fetch_timed_out();
                continue;
            }
            (
                f.rules
                    .on_fetch_response(s.fetch_id, answer, &StorageLog(&log)),
                log,
            )
        };
        let (action, log) = action;
        match action {
            FollowerAction::Append(_) | FollowerAction::Truncate(_)
                if state.replicas.stopping() =>
            {
                // Shutting down: the logs are about to close; the next start fetches again.
            }
            FollowerAction::Append(batches) => {
                progressed = true;
                let bytes = BytesMut::from(&batches.bytes[..]);
                // What this replica does before its fetch offset counts on the leader:
                // fdatasync (`synced`) or the write alone (`written`).
                let durability = state.config.replication_ack_durability.storage();
                match log.append_replicated(bytes, durability) {
                    Ok(a) => {
                        if let Err(e) = a.done.await {
                            log::error!("{}-{}: replicated write failed: {e}", s.key.0, s.key.1);
                        }
                    }
                    Err(e) => log::warn!("{}-{}: replicated append refused: {e}", s.key.0, s.key.1),
                }
                note_appended(state, &s.key);
            }
            FollowerAction::Truncate(to) => {
                progressed = true;
                log::info!(
                    "{}-{}: truncating to {to} (log end {}) on the leader's DivergingEpoch",
                    s.key.0,
                    s.key.1,
                    log.log_end_offset()
                );
                if let Err(e) = log.truncate_to(to.max(log.log_start_offset())).await {
                    log::error!("{}-{}: truncation to {to} failed: {e}", s.key.0, s.key.1);
                }
                note_appended(state, &s.key);
            }
            FollowerAction::Idle => progressed = true,
            FollowerAction::Backoff(code) => {
                log::debug!("{}-{}: leader answered {code}", s.key.0, s.key.1);
            }
        }
    }
    progressed
}

fn note_appended(state: &ShardState, key: &Key) {
    if let Some(Role::Follower(f)) = state.replicas.roles().borrow_mut().get_mut(key) {
        let log = f.log.clone();
        f.rules.appended(&StorageLog(&log));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_batches_start_at_their_base_offset() {
        let mut b = BytesMut::new();
        b.put_i64(4242);
        b.put_i32(49);
        b.extend_from_slice(&[0u8; 49]);
        assert_eq!(Batches::new(b.freeze()).first_offset(), Some(4242));
        // Nothing fetched, or less than a batch's offset and length: no records.
        assert_eq!(Batches::new(Bytes::new()).first_offset(), None);
        assert_eq!(
            Batches::new(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1, 0])).first_offset(),
            None
        );
    }
}
