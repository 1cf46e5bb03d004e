//! Committed offsets: OffsetCommit (validated against the group's generation / member epoch,
//! answered once the records are fdatasynced), OffsetFetch, DeleteGroups, OffsetDelete, expiry.

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};

use super::classic::ClassicState;
use super::records::{self, LogRecord, OffsetValue};
use super::{Group, GroupCoordinator, Kind, OFFSET_METADATA_MAX_BYTES, codes, protocol};
use crate::kafka::handlers::str_bytes;
use crate::shard_state::ShardState;

/// One group of an OffsetFetch request (the v8+ shape; older versions are converted).
#[derive(Clone, Debug)]
pub struct FetchGroup {
    pub group_id: String,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    /// `None` = all committed partitions.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Clone, Debug)]
pub struct FetchedPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error_code: i16,
}

#[derive(Clone, Debug, Default)]
pub struct FetchedGroup {
    pub error_code: i16,
    pub topics: Vec<(String, Vec<FetchedPartition>)>,
}

/// Whether `member_id`/`generation` (a member epoch for KIP-848 groups) may commit to `g`.
fn validate_commit(g: &Group, member_id: &str, generation: i32, instance_id: Option<&str>) -> i16 {
    match &g.kind {
        Kind::Classic(c) => {
            if generation < 0 && member_id.is_empty() {
                // A commit from outside group management (manual assignment / admin).
                return if c.members.is_empty() && c.state == ClassicState::Empty {
                    codes::NONE
                } else {
                    codes::UNKNOWN_MEMBER_ID
                };
            }
            if let Some(iid) = instance_id
                && c.static_members.get(iid).is_some_and(|id| id != member_id)
            {
                return codes::FENCED_INSTANCE_ID;
            }
            if !c.members.contains_key(member_id) {
                return if c.state == ClassicState::Empty && generation < 0 {
                    codes::NONE
                } else {
                    codes::UNKNOWN_MEMBER_ID
                };
            }
            if generation != c.generation {
                return codes::ILLEGAL_GENERATION;
            }
            if c.state == ClassicState::CompletingRebalance {
                return codes::REBALANCE_IN_PROGRESS;
            }
            codes::NONE
        }
        Kind::Consumer(c) => {
            if generation < 0 && member_id.is_empty() {
                return if c.members.is_empty() {
                    codes::NONE
                } else {
                    codes::UNKNOWN_MEMBER_ID
                };
            }
            let Some(m) = c.members.get(member_id) else {
                return codes::UNKNOWN_MEMBER_ID;
            };
            if generation != m.epoch {
                return codes::STALE_MEMBER_EPOCH;
            }
            codes::NONE
        }
    }
}

pub async fn commit(
    state: &Rc<ShardState>,
    version: i16,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let co = &state.groups;
    let meta = state.metadata();
    let gid = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let generation = req.generation_id_or_member_epoch;
    let partition = co.partition_of(&gid);
    let now = records::now_ms();

    // Group-level validation (creates an offsets-only group for simple commits).
    let group_code = if gid.is_empty() {
        codes::INVALID_GROUP_ID
    } else {
        let mut groups = co.groups.borrow_mut();
        match groups.get(&gid) {
            None if generation < 0 && member_id.is_empty() => {
                groups.insert(gid.clone(), Group::new_classic(&gid, partition));
                codes::NONE
            }
            None => {
                if version >= 9 {
                    codes::UNKNOWN_MEMBER_ID
                } else {
                    codes::ILLEGAL_GENERATION
                }
            }
            Some(g) => validate_commit(
                g,
                &member_id,
                generation,
                if version >= 7 {
                    req.group_instance_id.as_ref().map(|s| s.as_str())
                } else {
                    None
                },
            ),
        }
    };

    let mut codes_out: Vec<Vec<i16>> = Vec::new();
    let mut recs: Vec<LogRecord> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = t.name.0.to_string();
        let topic = meta.topic(&name);
        let mut row = Vec::new();
        for (pi, p) in t.partitions.iter().enumerate() {
            let code = if group_code != codes::NONE {
                group_code
            } else if topic
                .is_none_or(|tm| p.partition_index < 0 || p.partition_index >= tm.partitions)
            {
                codes::UNKNOWN_TOPIC_OR_PARTITION
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
            {
                codes::OFFSET_METADATA_TOO_LARGE
            } else {
                recs.push(LogRecord::Offset {
                    group: gid.clone(),
                    topic: name.clone(),
                    partition: p.partition_index,
                    value: Some(OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_ts: now,
                    }),
                });
                slots.push((ti, pi));
                codes::NONE
            };
            row.push(code);
        }
        codes_out.push(row);
    }
    if !recs.is_empty() {
        match co.append(partition, &recs).await {
            Ok(base) => {
                for (i, rec) in recs.into_iter().enumerate() {
                    co.apply_record(partition, base + i as i64, rec);
                }
            }
            Err(e) => {
                log::error!("group {gid}: writing offsets failed: {e}");
                for (ti, pi) in slots {
                    codes_out[ti][pi] = codes::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
    }
    commit_response(&req.topics, codes_out)
}

/// The OffsetCommit response: one code per requested partition, in request order.
pub(crate) fn commit_response(
    topics: &[OffsetCommitRequestTopic],
    codes_out: Vec<Vec<i16>>,
) -> OffsetCommitResponse {
    let mut resp = OffsetCommitResponse::default();
    for (t, row) in topics.iter().zip(codes_out) {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        for (p, code) in t.partitions.iter().zip(row) {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

pub fn fetch(co: &GroupCoordinator, req: FetchGroup) -> FetchedGroup {
    let groups = co.groups.borrow();
    let g = groups.get(&req.group_id);
    // KIP-848 members fetch with their member id and epoch (OffsetFetch v9).
    if let (Some(g), Some(mid)) = (g, req.member_id.as_ref())
        && let Kind::Consumer(c) = &g.kind
        && req.member_epoch >= 0
    {
        match c.members.get(mid) {
            None => {
                return FetchedGroup {
                    error_code: codes::UNKNOWN_MEMBER_ID,
                    topics: Vec::new(),
                };
            }
            Some(m) if m.epoch != req.member_epoch => {
                return FetchedGroup {
                    error_code: codes::STALE_MEMBER_EPOCH,
                    topics: Vec::new(),
                };
            }
            _ => {}
        }
    }
    let lookup = |t: &str, p: i32| -> FetchedPartition {
        match g.and_then(|g| g.offsets.get(&(t.to_string(), p))) {
            Some(e) => FetchedPartition {
                partition: p,
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata: e.metadata.clone(),
                error_code: codes::NONE,
            },
            None => FetchedPartition {
                partition: p,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                error_code: codes::NONE,
            },
        }
    };
    let topics = match req.topics {
        Some(ts) => ts
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps.iter().map(|p| lookup(&t, *p)).collect();
                (t, parts)
            })
            .collect(),
        None => {
            let mut out: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
            if let Some(g) = g {
                for (t, p) in g.offsets.keys() {
                    if out.last().is_none_or(|(lt, _)| lt != t) {
                        out.push((t.clone(), Vec::new()));
                    }
                    out.last_mut().expect("pushed").1.push(lookup(t, *p));
                }
            }
            out
        }
    };
    FetchedGroup {
        error_code: codes::NONE,
        topics,
    }
}

fn tombstones(g: &Group) -> Vec<LogRecord> {
    let mut recs: Vec<LogRecord> = g
        .offsets
        .keys()
        .map(|(t, p)| LogRecord::Offset {
            group: g.id.clone(),
            topic: t.clone(),
            partition: *p,
            value: None,
        })
        .collect();
    recs.push(match g.kind {
        Kind::Classic(_) => LogRecord::ClassicGroup {
            group: g.id.clone(),
            value: None,
        },
        Kind::Consumer(_) => LogRecord::ConsumerGroup {
            group: g.id.clone(),
            epoch: None,
        },
    });
    recs
}

pub async fn delete_groups(co: &GroupCoordinator, ids: Vec<String>) -> Vec<DeletableGroupResult> {
    let mut out = Vec::new();
    for id in ids {
        let write = {
            let groups = co.groups.borrow();
            match groups.get(&id) {
                None => Err(codes::GROUP_ID_NOT_FOUND),
                Some(g) if !g.is_empty() => Err(codes::NON_EMPTY_GROUP),
                Some(g) => Ok((g.partition, co.append(g.partition, &tombstones(g)))),
            }
        };
        let code = match write {
            Err(c) => c,
            Ok((_, fut)) => match fut.await {
                Ok(_) => {
                    let mut groups = co.groups.borrow_mut();
                    if groups.get(&id).is_some_and(Group::is_empty) {
                        groups.remove(&id);
                    }
                    log::info!("group {id} deleted");
                    codes::NONE
                }
                Err(e) => {
                    log::error!("deleting group {id}: {e}");
                    codes::COORDINATOR_NOT_AVAILABLE
                }
            },
        };
        out.push(deleted_group(&id, code));
    }
    out
}

fn deleted_group(id: &str, code: i16) -> DeletableGroupResult {
    let mut r = DeletableGroupResult::default();
    r.group_id = str_bytes(id).into();
    r.error_code = code;
    r
}

/// Topics the group's members are subscribed to (`None`: members use a protocol the broker
/// cannot read, so every topic counts as subscribed).
fn subscribed_topics(g: &Group) -> Option<BTreeSet<String>> {
    match &g.kind {
        Kind::Consumer(c) => Some(c.subscribed_topics()),
        Kind::Classic(c) => {
            if c.members.is_empty() {
                return Some(BTreeSet::new());
            }
            if c.protocol_type.as_deref() != Some("consumer") {
                return None;
            }
            let mut out = BTreeSet::new();
            for m in c.members.values() {
                for (_, meta) in &m.protocols {
                    out.extend(protocol::subscription_topics(meta)?);
                }
            }
            Some(out)
        }
    }
}

pub async fn offset_delete(
    co: &GroupCoordinator,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let gid = req.group_id.0.to_string();
    let mut resp = OffsetDeleteResponse::default();
    let (partition, recs, rows) = {
        let groups = co.groups.borrow();
        let Some(g) = groups.get(&gid) else {
            resp.error_code = codes::GROUP_ID_NOT_FOUND;
            return resp;
        };
        let Some(subscribed) = subscribed_topics(g) else {
            resp.error_code = codes::NON_EMPTY_GROUP;
            return resp;
        };
        let mut recs = Vec::new();
        let mut rows = Vec::new();
        for t in &req.topics {
            let name = t.name.0.to_string();
            let mut row = Vec::new();
            for p in &t.partitions {
                let code = if subscribed.contains(&name) {
                    codes::GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    if g.offsets.contains_key(&(name.clone(), p.partition_index)) {
                        recs.push(LogRecord::Offset {
                            group: gid.clone(),
                            topic: name.clone(),
                            partition: p.partition_index,
                            value: None,
                        });
                    }
                    codes::NONE
                };
                row.push((p.partition_index, code));
            }
            rows.push((t.name.clone(), row));
        }
        (g.partition, recs, rows)
    };
    let mut failed = false;
    if !recs.is_empty() {
        match co.append(partition, &recs).await {
            Ok(base) => {
                for (i, rec) in recs.into_iter().enumerate() {
                    co.apply_record(partition, base + i as i64, rec);
                }
            }
            Err(e) => {
                log::error!("group {gid}: deleting offsets failed: {e}");
                failed = true;
            }
        }
    }
    offset_delete_response(rows, failed)
}

/// The OffsetDelete response of a group that exists: a code per partition (`failed`: the
/// tombstones could not be written).
fn offset_delete_response(
    rows: Vec<(TopicName, Vec<(i32, i16)>)>,
    failed: bool,
) -> OffsetDeleteResponse {
    let mut resp = OffsetDeleteResponse::default();
    for (name, row) in rows {
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = name;
        for (p, code) in row {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p;
            pr.error_code = if failed && code == codes::NONE {
                codes::COORDINATOR_NOT_AVAILABLE
            } else {
                code
            };
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Expires the offsets of groups without members once `offsets.retention.minutes` have passed
/// since both the commit and the group becoming empty; removes groups left with nothing.
pub fn expire(co: &GroupCoordinator, now_ms: i64) {
    let retention = co.gcfg().offsets_retention_ms;
    let mut writes: Vec<(i32, Vec<LogRecord>)> = Vec::new();
    {
        let mut groups = co.groups.borrow_mut();
        let mut dead = Vec::new();
        for g in groups.values_mut() {
            if !g.is_empty() {
                continue;
            }
            let empty_since = match &g.kind {
                Kind::Classic(c) => c.state_ts,
                Kind::Consumer(c) => c.empty_since,
            };
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(_, e)| e.commit_ts.max(empty_since).saturating_add(retention) <= now_ms)
                .map(|(k, _)| k.clone())
                .collect();
            let mut recs = Vec::new();
            for (t, p) in expired {
                g.offsets.remove(&(t.clone(), p));
                recs.push(LogRecord::Offset {
                    group: g.id.clone(),
                    topic: t,
                    partition: p,
                    value: None,
                });
            }
            if g.offsets.is_empty() && empty_since.saturating_add(retention) <= now_ms {
                recs.extend(tombstones(g));
                dead.push(g.id.clone());
            }
            if !recs.is_empty() {
                log::info!("group {}: {} offsets expired", g.id, recs.len());
                writes.push((g.partition, recs));
            }
        }
        for id in dead {
            log::info!("group {id}: removed (empty, no offsets left)");
            groups.remove(&id);
        }
    }
    for (p, recs) in writes {
        co.append_detached(p, recs);
    }
}

/// Responses made by this file's builders, for the handlers' version guards.
#[cfg(test)]
pub(crate) mod guard {
    use super::*;
    use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;

    fn topic() -> TopicName {
        str_bytes("t").into()
    }

    pub(crate) fn commit_responses(_version: i16) -> Vec<OffsetCommitResponse> {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = topic();
        for p in 0..3 {
            let mut rp = OffsetCommitRequestPartition::default();
            rp.partition_index = p;
            t.partitions.push(rp);
        }
        let codes_out = vec![vec![
            codes::NONE,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            codes::OFFSET_METADATA_TOO_LARGE,
        ]];
        vec![commit_response(&[t], codes_out)]
    }

    pub(crate) fn delete_groups_results(_version: i16) -> Vec<DeletableGroupResult> {
        vec![
            deleted_group("deleted", codes::NONE),
            deleted_group("busy", codes::NON_EMPTY_GROUP),
        ]
    }

    pub(crate) fn offset_delete_responses(_version: i16) -> Vec<OffsetDeleteResponse> {
        let rows = vec![(
            topic(),
            vec![(0, codes::NONE), (1, codes::GROUP_SUBSCRIBED_TO_TOPIC)],
        )];
        vec![
            offset_delete_response(rows.clone(), false),
            offset_delete_response(rows, true),
        ]
    }
}
