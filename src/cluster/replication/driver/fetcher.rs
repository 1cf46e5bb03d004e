//! The replica fetcher of one shard for one leader broker (Kafka's ReplicaFetcherThread): one
//! connection to the leader's broker listener, and per round ONE Kafka Fetch request (v15,
//! ReplicaState = this broker's id and broker epoch, sessionless) covering every partition
//! this shard follows from that leader, each from `FollowerPartition::next_fetch`. The
//! leader long-polls (`replica.fetch.wait.max.ms`, 500 ms) and answers as soon as it has data.
//! A new follower role for this leader, or shutdown, cuts the round in flight short (the
//! connection goes, since answers come in order) so the new partition is fetched at once.
//! Answers go back to the rules: fetched batches are appended unchanged and written (and
//! fdatasynced under `tern.replication.ack.durability=synced`) before the next round, so the
//! fetch offset is what the leader counts for this replica,
//! DivergingEpoch truncates the local log, OFFSET_OUT_OF_RANGE below the leader's log start
//! restarts it empty there, other errors back off until the metadata moves. The task
//! ends when this shard follows nothing from the leader any more. Partitions this broker is
//! being added to by a reassignment fetch under `follower.replication.throttled.rate`
//! (`throttle.rs`): they ask for at most their share of the bucket, and skip a round while it
//! is empty.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tern_shard::net::TcpStream;
use tern_storage::PartitionLog;

use super::{Key, Role, StorageLog};
use crate::cluster::replication::codes;
use crate::cluster::replication::follower::{
    FetchResponse as RulesResponse, FetchedRecords, FollowerAction, log_start_to_follow,
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
/// The pause after an append found the disk full (ENOSPC): the leader would answer the same
/// records at once, so without it the fetcher would spin fetching and refusing them. The
/// follower falls behind meanwhile and leaves the ISR after `replica.lag.time.max.ms`.
const NO_SPACE_BACKOFF: Duration = Duration::from_secs(1);

/// Record batches fetched for one partition.
pub struct Batches {
    first_offset: Option<i64>,
    /// Last offset of the first batch.
    first_last_offset: Option<i64>,
    bytes: Bytes,
}

impl FetchedRecords for Batches {
    fn first_offset(&self) -> Option<i64> {
        self.first_offset
    }

    fn first_batch_last_offset(&self) -> Option<i64> {
        self.first_last_offset
    }
}

impl Batches {
    fn new(bytes: Bytes) -> Self {
        // A batch starts with its base offset (8 bytes) and length (4 bytes); the last offset
        // delta is at byte 23 (after partition leader epoch, magic and CRC).
        let first_offset = (bytes.len() >= 12).then(|| (&bytes[..8]).get_i64());
        let first_last_offset = first_offset
            .filter(|_| bytes.len() >= 27)
            .map(|base| base + i64::from((&bytes[23..27]).get_i32()));
        Self {
            first_offset,
            first_last_offset,
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
        let wake = state.replicas.fetcher_wake(leader);
        let round = {
            let stream = conn.as_mut().expect("connected above");
            let round = tern_shard::task::timeout(
                ROUND_TIMEOUT,
                exchange(stream, &state, correlation, &req),
            );
            futures::pin_mut!(round);
            match futures::future::select(round, wake).await {
                futures::future::Either::Left((r, _)) => Some(r),
                futures::future::Either::Right(_) => None,
            }
        };
        let Some(round) = round else {
            // A partition to follow from this leader appeared (or shutdown): the long poll in
            // flight cannot be cut short on its connection (answers come in order), so the
            // connection goes and the next round, with the new partition, starts at once.
            conn = None;
            forget(&state, &sent);
            continue;
        };
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
        let round = apply(&state, &sent, resp).await;
        if round.disk_full {
            tern_shard::task::sleep(NO_SPACE_BACKOFF).await;
        } else if !round.progressed {
            // Every partition backed off (the leader moved or lags our metadata).
            tern_shard::task::sleep(BACKOFF).await;
        }
    }
}

/// One partition of a round: its key, topic id, the rules' fetch id, and whether it is a
/// replica a reassignment is adding (its bytes count against the throttle).
struct Sent {
    key: Key,
    topic_id: uuid::Uuid,
    fetch_id: u64,
    throttled: bool,
    /// The follower role the fetch was for (leader epoch): an answer that arrives after the
    /// role was replaced (a new leader epoch, or the replica removed and re-added) is dropped,
    /// since the new role's fetch ids start again and the old leader's records may diverge.
    leader_epoch: i32,
}

fn build_request(state: &ShardState, keys: &[Key]) -> (FetchRequest, Vec<Sent>) {
    let mut topics: HashMap<uuid::Uuid, Vec<FetchPartition>> = HashMap::new();
    let mut sent = Vec::new();
    let mut broker_epoch = -1;
    // follower.replication.throttled.rate: the partitions this broker is being added to share
    // the bucket's allowance; with none left they sit this round out.
    let meta = state.metadata();
    let node = state.config.node_id;
    let adding: Vec<bool> = keys
        .iter()
        .map(|k| super::is_adding(&meta, &k.0, k.1, node))
        .collect();
    let throttled_count = adding.iter().filter(|&&a| a).count();
    let share = if throttled_count > 0 {
        state
            .replicas
            .throttle_allowance(&meta, state.count, super::ThrottleSide::Follower)
            .map(|a| a / throttled_count as u64)
    } else {
        None
    };
    let mut roles = state.replicas.roles().borrow_mut();
    for (key, &throttled) in keys.iter().zip(&adding) {
        let Some(Role::Follower(f)) = roles.get_mut(key) else {
            continue;
        };
        let mut max_bytes = PARTITION_MAX_BYTES;
        if throttled && let Some(share) = share {
            if share == 0 {
                continue;
            }
            max_bytes = max_bytes.min(share.min(i32::MAX as u64) as i32);
        }
        let (fetch_id, r) = f.rules.next_fetch(&StorageLog(&f.log));
        broker_epoch = r.broker_epoch;
        let mut p = FetchPartition::default();
        p.partition = key.1;
        p.current_leader_epoch = r.leader_epoch;
        p.fetch_offset = r.fetch_offset;
        p.last_fetched_epoch = r.last_fetched_epoch;
        p.log_start_offset = f.log.log_start_offset();
        p.partition_max_bytes = max_bytes;
        topics.entry(f.topic_id).or_default().push(p);
        sent.push(Sent {
            key: key.clone(),
            topic_id: f.topic_id,
            fetch_id,
            throttled,
            leader_epoch: r.leader_epoch,
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

/// What a round's answer did.
struct RoundOutcome {
    /// Some partition did not back off.
    progressed: bool,
    /// Some append found the disk full.
    disk_full: bool,
}

/// Carries out the rules' actions for each partition of the answer.
async fn apply(state: &Rc<ShardState>, sent: &[Sent], resp: FetchResponse) -> RoundOutcome {
    // Each partition's answer and the leader's log start offset.
    let mut answers: HashMap<(uuid::Uuid, i32), (RulesResponse<Batches>, i64)> = HashMap::new();
    for t in resp.responses {
        for p in t.partitions {
            let hw = p.high_watermark;
            let answer = if p.error_code == codes::OFFSET_OUT_OF_RANGE {
                RulesResponse::OffsetOutOfRange {
                    leader_log_start: p.log_start_offset,
                    high_watermark: hw,
                }
            } else if p.error_code != 0 {
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
            answers.insert(
                (t.topic_id, p.partition_index),
                (answer, p.log_start_offset),
            );
        }
    }
    let mut progressed = false;
    let mut disk_full = false;
    // Appends in flight: every partition's batches are queued on its log first and awaited
    // together below, so the partitions' writes and fdatasyncs overlap instead of running one
    // partition after another (a round of 16 partitions cost 16 fdatasyncs in a row).
    let mut appending: Vec<(&Sent, i64, Option<i64>, AppendDone)> = Vec::new();
    for s in sent {
        let Some((answer, leader_log_start)) = answers.remove(&(s.topic_id, s.key.1)) else {
            forget(state, std::slice::from_ref(s));
            continue;
        };
        let hw_before = follower_hw(state, &s.key);
        if s.throttled
            && let RulesResponse::Records { entries, .. } = &answer
        {
            state
                .replicas
                .throttle_consume(super::ThrottleSide::Follower, entries.bytes.len() as u64);
        }
        let action = {
            let mut roles = state.replicas.roles().borrow_mut();
            let Some(Role::Follower(f)) = roles.get_mut(&s.key) else {
                continue;
            };
            if f.rules.leader_epoch() != s.leader_epoch {
                continue; // meant for an earlier follower role
            }
            let log = f.log.clone();
            // Bad input from the leader is refused here. An empty log (restarted at the
            // leader's log start) may get the batch holding that offset: the rules decide.
            let leo = log.log_end_offset();
            let empty = leo == log.log_start_offset();
            if let RulesResponse::Records { entries, .. } = &answer
                && entries
                    .first_offset
                    .is_some_and(|o| o != leo && !(empty && o < leo))
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
                match start_append(state, &s.key, &log, &batches) {
                    Some(done) => {
                        appending.push((s, leader_log_start, hw_before, done));
                        continue; // finished after the loop
                    }
                    None => note_appended(state, &s.key),
                }
            }
            FollowerAction::RestartAndAppend { at, records } => {
                progressed = true;
                log::info!(
                    "{}-{}: the leader's log start lies inside its batch at {at}: the log \
                     restarts there",
                    s.key.0,
                    s.key.1
                );
                match log.truncate_fully_and_start_at(at).await {
                    Ok(()) => {
                        if let Some(done) = start_append(state, &s.key, &log, &records) {
                            disk_full |= finish_append(state, &s.key, done.await);
                        }
                    }
                    Err(e) => log::error!("{}-{}: restart at {at} failed: {e}", s.key.0, s.key.1),
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
                if let Some(Role::Follower(f)) = state.replicas.roles().borrow_mut().get_mut(&s.key)
                {
                    let log = f.log.clone();
                    f.rules.truncated(&StorageLog(&log));
                }
            }
            FollowerAction::RestartAt(start) => {
                progressed = true;
                log::warn!(
                    "{}-{}: log end {} is below the leader's log start {start}: restarting the \
                     log empty there (OFFSET_OUT_OF_RANGE)",
                    s.key.0,
                    s.key.1,
                    log.log_end_offset()
                );
                if let Err(e) = log.truncate_fully_and_start_at(start).await {
                    log::error!("{}-{}: restart at {start} failed: {e}", s.key.0, s.key.1);
                }
                note_appended(state, &s.key);
            }
            FollowerAction::Idle => progressed = true,
            FollowerAction::Backoff(code) => {
                log::debug!("{}-{}: leader answered {code}", s.key.0, s.key.1);
            }
        }
        after_answer(state, &s.key, leader_log_start, hw_before).await;
    }
    let (keys, dones): (Vec<_>, Vec<_>) = appending
        .into_iter()
        .map(|(s, start, hw, done)| ((s, start, hw), done))
        .unzip();
    for ((s, leader_log_start, hw_before), result) in
        keys.into_iter().zip(futures::future::join_all(dones).await)
    {
        disk_full |= finish_append(state, &s.key, result);
        note_appended(state, &s.key);
        after_answer(state, &s.key, leader_log_start, hw_before).await;
    }
    RoundOutcome {
        progressed,
        disk_full,
    }
}

/// What follows every partition's answer once its action is done: the log start follows the
/// leader's, and a moved high watermark wakes consumers reading from this follower (KIP-392).
async fn after_answer(
    state: &ShardState,
    key: &Key,
    leader_log_start: i64,
    hw_before: Option<i64>,
) {
    follow_log_start(state, key, leader_log_start).await;
    if follower_hw(state, key) != hw_before {
        state.replicas.wake_hw(key);
    }
}

/// An append's completion at this broker's `tern.replication.ack.durability`.
type AppendDone = futures::future::LocalBoxFuture<'static, Result<(), tern_storage::StorageError>>;

/// Queues fetched batches unchanged on the log; the future completes once they are durable at
/// this broker's `tern.replication.ack.durability` (fdatasync under `synced`, the write under
/// `written`): only then may the next fetch offset count on the leader (`note_appended`).
/// An I/O refusal (a full disk, a log cutting back a failed write) comes back as a completed
/// future, so `finish_append` sees it like a failed write; None when the batches themselves
/// were refused (logged).
fn start_append(
    state: &ShardState,
    key: &Key,
    log: &PartitionLog,
    batches: &Batches,
) -> Option<AppendDone> {
    let bytes = BytesMut::from(&batches.bytes[..]);
    let durability = state.config.replication_ack_durability.storage();
    match log.append_replicated(bytes, durability) {
        Ok(a) => Some(a.done),
        Err(tern_storage::AppendError::Io(e)) => Some(futures::future::ready(Err(e)).boxed_local()),
        Err(e) => {
            log::warn!("{}-{}: replicated append refused: {e}", key.0, key.1);
            None
        }
    }
}

/// Handles an append's outcome. True when the disk was full (ENOSPC: the log cut the write
/// back, nothing of it counts; the shard's disk state refuses Produce and rechecks the free
/// space).
fn finish_append(
    state: &ShardState,
    key: &Key,
    result: Result<(), tern_storage::StorageError>,
) -> bool {
    let Err(err) = result else {
        return false;
    };
    if err.is_no_space() {
        state.disk.note_no_space();
        log::debug!(
            "{}-{}: replicated write found the disk full: {err}",
            key.0,
            key.1
        );
        true
    } else {
        log::error!("{}-{}: replicated write failed: {err}", key.0, key.1);
        false
    }
}

/// The leader's log start reaches this replica (DeleteRecords, retention on the leader), up
/// to the high watermark this follower knows (`follower::log_start_to_follow`).
async fn follow_log_start(state: &ShardState, key: &Key, leader_log_start: i64) {
    let (log, to) = {
        let roles = state.replicas.roles().borrow();
        let Some(Role::Follower(f)) = roles.get(key) else {
            return;
        };
        let hw = f.rules.high_watermark().min(f.log.high_watermark());
        match log_start_to_follow(leader_log_start, f.log.log_start_offset(), hw) {
            Some(to) => (f.log.clone(), to),
            None => return,
        }
    };
    if let Err(e) = log.delete_records(to).await {
        log::warn!(
            "{}-{}: log start not moved to the leader's {to}: {e}",
            key.0,
            key.1
        );
    }
}

fn note_appended(state: &ShardState, key: &Key) {
    if let Some(Role::Follower(f)) = state.replicas.roles().borrow_mut().get_mut(key) {
        let log = f.log.clone();
        f.rules.appended(&StorageLog(&log));
    }
}

/// This follower's high watermark (None: no follower role any more).
fn follower_hw(state: &ShardState, key: &Key) -> Option<i64> {
    match state.replicas.roles().borrow().get(key) {
        Some(Role::Follower(f)) => Some(f.rules.high_watermark()),
        _ => None,
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
