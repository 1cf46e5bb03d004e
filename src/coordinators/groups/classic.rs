//! The classic group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup), after Kafka's
//! `GroupCoordinator`: states Empty -> PreparingRebalance -> CompletingRebalance -> Stable,
//! generation fencing, MEMBER_ID_REQUIRED (JoinGroup v4+), static membership, the initial
//! rebalance delay, session and rebalance timeouts. Eager and cooperative rebalancing are both
//! driven by the clients on top of this (cooperative clients simply rejoin after revoking).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;

use super::records::{self, ClassicGroupValue, LogRecord, MemberValue};
use super::{Group, GroupCoordinator, Kind, codes};
use crate::kafka::handlers::str_bytes;
use crate::messages::Reply;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    pub fn name(&self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

pub struct ClassicMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<(i16, Reply<JoinGroupResponse>)>,
    pub awaiting_sync: Option<(i16, Reply<SyncGroupResponse>)>,
    pub last_heartbeat: Instant,
    pub is_new: bool,
    pub seq: u64,
}

impl ClassicMember {
    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub struct ClassicGroup {
    pub state: ClassicState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined -> expiry.
    pub pending: HashMap<String, Instant>,
    /// group.instance.id -> member id
    pub static_members: HashMap<String, String>,
    pub rebalance_deadline: Instant,
    /// Set during the initial delayed join of an empty group: the latest completion time.
    pub initial_join_until: Option<Instant>,
    pub new_member_added: bool,
    /// Wall-clock ms of the last state change (offset expiry counts from the group going empty).
    pub state_ts: i64,
    next_seq: u64,
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

pub(crate) fn join_error(version: i16, member_id: &str, code: i16) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = code;
    r.generation_id = -1;
    r.member_id = str_bytes(member_id);
    if version < 7 {
        r.protocol_name = Some(str_bytes(""));
    }
    r
}

pub(crate) fn sync_response(
    version: i16,
    code: i16,
    g: Option<&ClassicGroup>,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = code;
    r.assignment = assignment;
    if version >= 5
        && let Some(g) = g
    {
        r.protocol_type = g.protocol_type.as_deref().map(str_bytes);
        r.protocol_name = g.protocol.as_deref().map(str_bytes);
    }
    r
}

impl ClassicGroup {
    pub fn new() -> Self {
        Self {
            state: ClassicState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: Instant::now(),
            initial_join_until: None,
            new_member_added: false,
            // 0 = never had members: offsets-only groups expire by commit time alone.
            state_ts: 0,
            next_seq: 0,
        }
    }

    /// A group loaded from its last GroupMetadataValue: Stable with its members (whose session
    /// timers start now), or Empty.
    pub fn from_value(v: ClassicGroupValue, now: Instant) -> Self {
        let mut g = Self::new();
        g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        g.generation = v.generation;
        g.protocol = v.protocol;
        g.leader = v.leader;
        g.state_ts = v.state_ts;
        for m in v.members {
            let protocol = g.protocol.clone().unwrap_or_default();
            if let Some(iid) = &m.instance_id {
                g.static_members.insert(iid.clone(), m.member_id.clone());
            }
            g.next_seq += 1;
            g.members.insert(
                m.member_id.clone(),
                ClassicMember {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol, m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                    is_new: false,
                    seq: g.next_seq,
                },
            );
        }
        g.state = if g.members.is_empty() {
            ClassicState::Empty
        } else {
            ClassicState::Stable
        };
        if g.leader
            .as_ref()
            .is_some_and(|l| !g.members.contains_key(l))
        {
            g.leader = g.members.keys().next().cloned();
        }
        g
    }

    /// The GroupMetadataValue describing this group now (`None` for an offsets-only group).
    pub fn metadata_value(&self, _now: Instant) -> Option<ClassicGroupValue> {
        if self.protocol_type.is_none() && self.generation == 0 && self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        Some(ClassicGroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_ts: self.state_ts,
            members: if self.state == ClassicState::Stable
                || self.state == ClassicState::CompletingRebalance
            {
                self.members
                    .values()
                    .map(|m| MemberValue {
                        member_id: m.member_id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        subscription: m.metadata(&protocol),
                        assignment: m.assignment.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    fn set_state(&mut self, s: ClassicState) {
        self.state = s;
        self.state_ts = records::now_ms();
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else {
            return Vec::new();
        };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n))
                && let Some(v) = votes.iter_mut().find(|(c, _)| c == name)
            {
                v.1 += 1;
            }
        }
        // Most votes; ties go to the earlier candidate (the first member's preference order).
        let mut best: Option<(String, usize)> = None;
        for (n, v) in votes {
            if best.as_ref().is_none_or(|(_, bv)| v > *bv) {
                best = Some((n, v));
            }
        }
        best.map(|(n, _)| n)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| ms(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Answers parked JoinGroup/SyncGroup requests with `code`.
    pub fn fail_parked(&mut self, code: i16) {
        for m in self.members.values_mut() {
            if let Some((v, r)) = m.awaiting_join.take() {
                let _ = r.send(join_error(v, &m.member_id, code));
            }
            if let Some((v, r)) = m.awaiting_sync.take() {
                let _ = r.send(sync_response(v, code, None, Bytes::new()));
            }
        }
    }

    /// The JoinGroup response of a member (the leader gets the member list).
    fn join_response(
        &self,
        version: i16,
        member_id: &str,
        skip_assignment: bool,
    ) -> JoinGroupResponse {
        let mut r = JoinGroupResponse::default();
        r.generation_id = self.generation;
        r.protocol_type = self.protocol_type.as_deref().map(str_bytes);
        r.protocol_name = Some(str_bytes(self.protocol.as_deref().unwrap_or("")));
        r.leader = str_bytes(self.leader.as_deref().unwrap_or(""));
        r.member_id = str_bytes(member_id);
        if version < 7 {
            r.protocol_type = None;
        }
        if self.leader.as_deref() == Some(member_id) {
            let protocol = self.protocol.clone().unwrap_or_default();
            for m in self.members.values() {
                let mut jm = JoinGroupResponseMember::default();
                jm.member_id = str_bytes(&m.member_id);
                if version >= 5 {
                    jm.group_instance_id = m.instance_id.as_deref().map(str_bytes);
                }
                jm.metadata = m.metadata(&protocol);
                r.members.push(jm);
            }
            r.skip_assignment = skip_assignment && version >= 9;
        }
        r
    }

    /// Enters PreparingRebalance (answering parked syncs of an interrupted CompletingRebalance).
    fn prepare_rebalance(&mut self, cfg_delay: Duration, now: Instant) {
        if self.state == ClassicState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some((v, r)) = m.awaiting_sync.take() {
                    let _ = r.send(sync_response(
                        v,
                        codes::REBALANCE_IN_PROGRESS,
                        None,
                        Bytes::new(),
                    ));
                }
            }
        }
        if self.state == ClassicState::Empty && !cfg_delay.is_zero() {
            let until = now + self.max_rebalance_timeout();
            self.initial_join_until = Some(until);
            self.rebalance_deadline = (now + cfg_delay).min(until);
            self.new_member_added = false;
        } else {
            self.initial_join_until = None;
            self.rebalance_deadline = now + self.max_rebalance_timeout();
        }
        self.set_state(ClassicState::PreparingRebalance);
    }

    fn remove_member(&mut self, id: &str) -> Option<ClassicMember> {
        let mut m = self.members.remove(id)?;
        if let Some(iid) = &m.instance_id
            && self.static_members.get(iid).map(String::as_str) == Some(id)
        {
            self.static_members.remove(iid);
        }
        if let Some((v, r)) = m.awaiting_join.take() {
            let _ = r.send(join_error(v, id, codes::UNKNOWN_MEMBER_ID));
        }
        if let Some((v, r)) = m.awaiting_sync.take() {
            let _ = r.send(sync_response(
                v,
                codes::UNKNOWN_MEMBER_ID,
                None,
                Bytes::new(),
            ));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.member_id.clone());
        }
        Some(m)
    }

    pub fn describe_into(&self, version: i16, d: &mut DescribedGroup) {
        let stable = self.state == ClassicState::Stable;
        if stable {
            d.protocol_data = str_bytes(self.protocol.as_deref().unwrap_or(""));
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        for m in self.members.values() {
            let mut dm = DescribedGroupMember::default();
            dm.member_id = str_bytes(&m.member_id);
            if version >= 4 {
                dm.group_instance_id = m.instance_id.as_deref().map(str_bytes);
            }
            dm.client_id = str_bytes(&m.client_id);
            dm.client_host = str_bytes(&m.client_host);
            if stable {
                dm.member_metadata = m.metadata(&protocol);
                dm.member_assignment = m.assignment.clone();
            }
            d.members.push(dm);
        }
    }
}

/// Looks up (or, for a join without member id, creates) the classic group `gid`. A consumer
/// (KIP-848) group without members is converted; with members it is an error.
fn classic_group<'a>(
    groups: &'a mut HashMap<String, Group>,
    gid: &str,
    partition: i32,
    create: bool,
) -> Result<&'a mut ClassicGroup, i16> {
    if !groups.contains_key(gid) {
        if !create {
            return Err(codes::UNKNOWN_MEMBER_ID);
        }
        groups.insert(gid.to_string(), Group::new_classic(gid, partition));
    }
    let g = groups.get_mut(gid).expect("inserted");
    if let Kind::Consumer(c) = &g.kind {
        if !c.members.is_empty() || !create {
            return Err(if create {
                codes::INCONSISTENT_GROUP_PROTOCOL
            } else {
                codes::UNKNOWN_MEMBER_ID
            });
        }
        g.kind = Kind::Classic(ClassicGroup::new());
    }
    match &mut g.kind {
        Kind::Classic(c) => Ok(c),
        Kind::Consumer(_) => unreachable!(),
    }
}

fn persist(co: &GroupCoordinator, gid: &str, partition: i32, g: &ClassicGroup) {
    if let Some(v) = g.metadata_value(Instant::now()) {
        co.append_detached(
            partition,
            vec![LogRecord::ClassicGroup {
                group: gid.to_string(),
                value: Some(v),
            }],
        );
    }
}

/// Completes the join phase when everyone has rejoined (outside the initial delay).
fn maybe_complete_join(
    co: &GroupCoordinator,
    gid: &str,
    partition: i32,
    g: &mut ClassicGroup,
    now: Instant,
) {
    if g.state == ClassicState::PreparingRebalance
        && g.initial_join_until.is_none()
        && g.all_joined()
    {
        complete_join(co, gid, partition, g, now);
    }
}

fn complete_join(
    co: &GroupCoordinator,
    gid: &str,
    partition: i32,
    g: &mut ClassicGroup,
    now: Instant,
) {
    g.initial_join_until = None;
    // Dynamic members that did not rejoin in time are removed; static ones stay (they keep
    // their identity until their session expires).
    let gone: Vec<String> = g
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for id in gone {
        log::info!("group {gid}: member {id} did not rejoin in time; removed");
        g.remove_member(&id);
    }
    g.generation += 1;
    if g.members.is_empty() {
        g.protocol = None;
        g.leader = None;
        g.set_state(ClassicState::Empty);
        log::info!("group {gid}: generation {} is empty", g.generation);
        persist(co, gid, partition, g);
        return;
    }
    g.protocol = g.select_protocol();
    g.protocol_type = g.members.values().next().map(|m| m.protocol_type.clone());
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .min_by_key(|m| m.seq)
            .or_else(|| g.members.values().min_by_key(|m| m.seq))
            .map(|m| m.member_id.clone());
    }
    g.set_state(ClassicState::CompletingRebalance);
    log::info!(
        "group {gid}: generation {} with {} members (protocol {:?}, leader {:?})",
        g.generation,
        g.members.len(),
        g.protocol,
        g.leader
    );
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let parked = g.members.get_mut(&id).and_then(|m| m.awaiting_join.take());
        if let Some((v, reply)) = parked {
            let resp = g.join_response(v, &id, false);
            let _ = reply.send(resp);
        }
        if let Some(m) = g.members.get_mut(&id) {
            m.is_new = false;
            m.last_heartbeat = now;
        }
    }
}

fn rebalance(co: &GroupCoordinator, gid: &str, partition: i32, g: &mut ClassicGroup, now: Instant) {
    if matches!(
        g.state,
        ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty
    ) {
        g.prepare_rebalance(
            Duration::from_millis(co.gcfg().initial_rebalance_delay_ms),
            now,
        );
    }
    maybe_complete_join(co, gid, partition, g, now);
}

#[allow(clippy::too_many_arguments)]
fn add_member(
    co: &GroupCoordinator,
    gid: &str,
    partition: i32,
    g: &mut ClassicGroup,
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    req: &JoinGroupRequest,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    version: i16,
    reply: Reply<JoinGroupResponse>,
    now: Instant,
) {
    g.next_seq += 1;
    if let Some(iid) = &instance_id {
        g.static_members.insert(iid.clone(), member_id.clone());
    }
    if g.members.is_empty() {
        g.protocol_type = Some(req.protocol_type.to_string());
    }
    if g.leader.is_none() {
        g.leader = Some(member_id.clone());
    }
    g.members.insert(
        member_id.clone(),
        ClassicMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type.to_string(),
            protocols,
            assignment: Bytes::new(),
            awaiting_join: Some((version, reply)),
            awaiting_sync: None,
            last_heartbeat: now,
            is_new: true,
            seq: g.next_seq,
        },
    );
    g.new_member_added = true;
    rebalance(co, gid, partition, g, now);
}

pub fn join(
    co: &GroupCoordinator,
    version: i16,
    client_id: String,
    client_host: String,
    req: JoinGroupRequest,
    reply: Reply<JoinGroupResponse>,
) {
    let cfg = co.gcfg().clone();
    let now = Instant::now();
    let gid = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let instance_id = if version >= 5 {
        req.group_instance_id.as_ref().map(|s| s.to_string())
    } else {
        None
    };
    let rebalance_timeout = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let protocols: Vec<(String, Bytes)> = req
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    let fail = |reply: Reply<JoinGroupResponse>, code: i16| {
        let _ = reply.send(join_error(version, &member_id, code));
    };
    if gid.is_empty() {
        return fail(reply, codes::INVALID_GROUP_ID);
    }
    if co.draining.get() {
        return fail(reply, codes::NOT_COORDINATOR);
    }
    if req.session_timeout_ms < cfg.min_session_timeout_ms
        || req.session_timeout_ms > cfg.max_session_timeout_ms
    {
        return fail(reply, codes::INVALID_SESSION_TIMEOUT);
    }
    if protocols.is_empty() || req.protocol_type.is_empty() {
        return fail(reply, codes::INCONSISTENT_GROUP_PROTOCOL);
    }
    let partition = co.partition_of(&gid);
    let mut groups = co.groups.borrow_mut();
    let g = match classic_group(&mut groups, &gid, partition, member_id.is_empty()) {
        Ok(g) => g,
        Err(code) => return fail(reply, code),
    };
    // A known member (or a pending one) may always rejoin with its own protocols.
    let known = g.members.contains_key(&member_id);
    if !(g.supports(&req.protocol_type, &protocols) || known && g.members.len() == 1) {
        return fail(reply, codes::INCONSISTENT_GROUP_PROTOCOL);
    }

    if member_id.is_empty() {
        if let Some(iid) = instance_id.clone() {
            if let Some(old_id) = g.static_members.get(&iid).cloned() {
                // A static member restarted: it takes over its old identity (new member id).
                let new_id = format!("{iid}-{}", uuid::Uuid::new_v4());
                let Some(mut m) = g.members.remove(&old_id) else {
                    g.static_members.remove(&iid);
                    return fail(reply, codes::UNKNOWN_MEMBER_ID);
                };
                if let Some((v, r)) = m.awaiting_join.take() {
                    let _ = r.send(join_error(v, &old_id, codes::FENCED_INSTANCE_ID));
                }
                if let Some((v, r)) = m.awaiting_sync.take() {
                    let _ = r.send(sync_response(
                        v,
                        codes::FENCED_INSTANCE_ID,
                        None,
                        Bytes::new(),
                    ));
                }
                let unchanged = m.matches(&protocols);
                m.member_id = new_id.clone();
                m.client_id = client_id;
                m.client_host = client_host;
                m.session_timeout_ms = req.session_timeout_ms;
                m.rebalance_timeout_ms = rebalance_timeout;
                m.last_heartbeat = now;
                g.static_members.insert(iid.clone(), new_id.clone());
                if g.leader.as_deref() == Some(old_id.as_str()) {
                    g.leader = Some(new_id.clone());
                }
                log::info!("group {gid}: static member {iid} rejoined as {new_id} (was {old_id})");
                match g.state {
                    ClassicState::Stable if unchanged => {
                        g.members.insert(new_id.clone(), m);
                        let resp = g.join_response(version, &new_id, true);
                        persist(co, &gid, partition, g);
                        let _ = reply.send(resp);
                    }
                    ClassicState::PreparingRebalance => {
                        m.protocols = protocols;
                        m.awaiting_join = Some((version, reply));
                        g.members.insert(new_id, m);
                        maybe_complete_join(co, &gid, partition, g, now);
                    }
                    _ => {
                        m.protocols = protocols;
                        m.awaiting_join = Some((version, reply));
                        g.members.insert(new_id, m);
                        rebalance(co, &gid, partition, g, now);
                    }
                }
                return;
            }
            let new_id = format!("{iid}-{}", uuid::Uuid::new_v4());
            return add_member(
                co,
                &gid,
                partition,
                g,
                new_id,
                Some(iid),
                client_id,
                client_host,
                &req,
                rebalance_timeout,
                protocols,
                version,
                reply,
                now,
            );
        }
        let new_id = format!(
            "{}-{}",
            if client_id.is_empty() {
                "member"
            } else {
                &client_id
            },
            uuid::Uuid::new_v4()
        );
        if version >= 4 {
            g.pending
                .insert(new_id.clone(), now + ms(req.session_timeout_ms));
            let _ = reply.send(join_error(version, &new_id, codes::MEMBER_ID_REQUIRED));
            return;
        }
        return add_member(
            co,
            &gid,
            partition,
            g,
            new_id,
            None,
            client_id,
            client_host,
            &req,
            rebalance_timeout,
            protocols,
            version,
            reply,
            now,
        );
    }

    if g.pending.remove(&member_id).is_some() {
        return add_member(
            co,
            &gid,
            partition,
            g,
            member_id,
            instance_id,
            client_id,
            client_host,
            &req,
            rebalance_timeout,
            protocols,
            version,
            reply,
            now,
        );
    }
    if let Some(iid) = &instance_id
        && g.static_members.get(iid).is_some_and(|id| *id != member_id)
    {
        return fail(reply, codes::FENCED_INSTANCE_ID);
    }
    if !g.members.contains_key(&member_id) {
        return fail(reply, codes::UNKNOWN_MEMBER_ID);
    }
    let is_leader = g.leader.as_deref() == Some(member_id.as_str());
    let m = g.members.get_mut(&member_id).expect("checked");
    m.last_heartbeat = now;
    let unchanged = m.matches(&protocols);
    let update = |m: &mut ClassicMember, reply| {
        if let Some((v, old)) = m.awaiting_join.take() {
            let _ = old.send(join_error(v, &m.member_id, codes::REBALANCE_IN_PROGRESS));
        }
        m.protocols = protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = rebalance_timeout;
        m.awaiting_join = Some((version, reply));
    };
    match g.state {
        ClassicState::PreparingRebalance => {
            update(m, reply);
            maybe_complete_join(co, &gid, partition, g, now);
        }
        ClassicState::CompletingRebalance if unchanged => {
            let resp = g.join_response(version, &member_id, false);
            let _ = reply.send(resp);
        }
        ClassicState::Stable if unchanged && !is_leader => {
            let resp = g.join_response(version, &member_id, false);
            let _ = reply.send(resp);
        }
        ClassicState::CompletingRebalance | ClassicState::Stable => {
            update(m, reply);
            rebalance(co, &gid, partition, g, now);
        }
        ClassicState::Empty => fail(reply, codes::UNKNOWN_MEMBER_ID),
    }
}

pub async fn sync(
    co: &GroupCoordinator,
    version: i16,
    req: SyncGroupRequest,
    reply: Reply<SyncGroupResponse>,
) {
    let now = Instant::now();
    let gid = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let partition = co.partition_of(&gid);
    let fail = |reply: Reply<SyncGroupResponse>, code: i16| {
        let _ = reply.send(sync_response(version, code, None, Bytes::new()));
    };
    let write = {
        let mut groups = co.groups.borrow_mut();
        let g = match classic_group(&mut groups, &gid, partition, false) {
            Ok(g) => g,
            Err(code) => return fail(reply, code),
        };
        let Some(m) = g.members.get(&member_id) else {
            return fail(reply, codes::UNKNOWN_MEMBER_ID);
        };
        if version >= 3
            && let Some(iid) = &req.group_instance_id
            && m.instance_id.as_deref() != Some(iid.as_str())
        {
            return fail(reply, codes::FENCED_INSTANCE_ID);
        }
        if req.generation_id != g.generation {
            return fail(reply, codes::ILLEGAL_GENERATION);
        }
        if version >= 5
            && (req
                .protocol_type
                .as_ref()
                .is_some_and(|t| Some(t.as_str()) != g.protocol_type.as_deref())
                || req
                    .protocol_name
                    .as_ref()
                    .is_some_and(|n| Some(n.as_str()) != g.protocol.as_deref()))
        {
            return fail(reply, codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        match g.state {
            ClassicState::Empty => return fail(reply, codes::UNKNOWN_MEMBER_ID),
            ClassicState::PreparingRebalance => return fail(reply, codes::REBALANCE_IN_PROGRESS),
            ClassicState::Stable => {
                let a = m.assignment.clone();
                let resp = sync_response(version, codes::NONE, Some(g), a);
                g.members
                    .get_mut(&member_id)
                    .expect("member")
                    .last_heartbeat = now;
                let _ = reply.send(resp);
                return;
            }
            ClassicState::CompletingRebalance => {}
        }
        let is_leader = g.leader.as_deref() == Some(member_id.as_str());
        let m = g.members.get_mut(&member_id).expect("member");
        m.last_heartbeat = now;
        if let Some((v, old)) = m.awaiting_sync.replace((version, reply)) {
            let _ = old.send(sync_response(
                v,
                codes::REBALANCE_IN_PROGRESS,
                None,
                Bytes::new(),
            ));
        }
        if !is_leader {
            return;
        }
        let assignments: HashMap<String, Bytes> = req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect();
        let generation = g.generation;
        // Persist the group with its new assignment; members get it once it is durable.
        let mut value = g
            .metadata_value(now)
            .expect("a group with members has metadata");
        for mv in &mut value.members {
            mv.assignment = assignments.get(&mv.member_id).cloned().unwrap_or_default();
        }
        let fut = co.append(
            partition,
            &[LogRecord::ClassicGroup {
                group: gid.clone(),
                value: Some(value),
            }],
        );
        (fut, assignments, generation)
    };
    let (fut, assignments, generation) = write;
    let res = fut.await;
    let mut groups = co.groups.borrow_mut();
    let Some(Group {
        kind: Kind::Classic(g),
        ..
    }) = groups.get_mut(&gid)
    else {
        return;
    };
    if g.generation != generation || g.state != ClassicState::CompletingRebalance {
        return; // a new rebalance started meanwhile (parked syncs were answered then)
    }
    match res {
        Ok(_) => {
            let protocol_type = g.protocol_type.clone();
            let protocol = g.protocol.clone();
            for m in g.members.values_mut() {
                m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                if let Some((v, r)) = m.awaiting_sync.take() {
                    let mut resp = sync_response(v, codes::NONE, None, m.assignment.clone());
                    if v >= 5 {
                        resp.protocol_type = protocol_type.as_deref().map(str_bytes);
                        resp.protocol_name = protocol.as_deref().map(str_bytes);
                    }
                    let _ = r.send(resp);
                }
                m.last_heartbeat = now;
            }
            g.set_state(ClassicState::Stable);
            log::info!("group {gid}: generation {generation} is stable");
        }
        Err(e) => {
            log::error!("group {gid}: storing the assignment failed: {e}");
            g.fail_parked(codes::COORDINATOR_NOT_AVAILABLE);
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
            }
            rebalance(co, &gid, partition, g, Instant::now());
        }
    }
}

pub fn heartbeat(co: &GroupCoordinator, req: HeartbeatRequest) -> i16 {
    let now = Instant::now();
    let gid = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let partition = co.partition_of(&gid);
    let mut groups = co.groups.borrow_mut();
    let g = match classic_group(&mut groups, &gid, partition, false) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let Some(m) = g.members.get_mut(&member_id) else {
        return codes::UNKNOWN_MEMBER_ID;
    };
    if let Some(iid) = &req.group_instance_id
        && m.instance_id.as_deref() != Some(iid.as_str())
    {
        return codes::FENCED_INSTANCE_ID;
    }
    if g.state == ClassicState::Empty {
        return codes::UNKNOWN_MEMBER_ID;
    }
    if req.generation_id != g.generation {
        return codes::ILLEGAL_GENERATION;
    }
    m.last_heartbeat = now;
    match g.state {
        ClassicState::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
        _ => codes::NONE,
    }
}

pub fn leave(co: &GroupCoordinator, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let now = Instant::now();
    let gid = req.group_id.0.to_string();
    let partition = co.partition_of(&gid);
    let leaving: Vec<(String, Option<String>)> = if version <= 2 {
        vec![(req.member_id.to_string(), None)]
    } else {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    };
    let mut results: Vec<i16> = Vec::new();
    {
        let mut groups = co.groups.borrow_mut();
        match classic_group(&mut groups, &gid, partition, false) {
            Err(code) => results = vec![code; leaving.len()],
            Ok(g) => {
                for (mid, iid) in &leaving {
                    let target = match iid {
                        Some(iid) => match g.static_members.get(iid) {
                            None => Err(codes::UNKNOWN_MEMBER_ID),
                            Some(found) if !mid.is_empty() && found != mid => {
                                Err(codes::FENCED_INSTANCE_ID)
                            }
                            Some(found) => Ok(found.clone()),
                        },
                        None => Ok(mid.clone()),
                    };
                    let code = match target {
                        Err(c) => c,
                        Ok(id) => {
                            if g.pending.remove(&id).is_some() {
                                maybe_complete_join(co, &gid, partition, g, now);
                                codes::NONE
                            } else if g.remove_member(&id).is_some() {
                                log::info!("group {gid}: member {id} left");
                                match g.state {
                                    ClassicState::PreparingRebalance => {
                                        maybe_complete_join(co, &gid, partition, g, now)
                                    }
                                    _ => rebalance(co, &gid, partition, g, now),
                                }
                                codes::NONE
                            } else {
                                codes::UNKNOWN_MEMBER_ID
                            }
                        }
                    };
                    results.push(code);
                }
            }
        }
    }
    leave_response(version, &leaving, results)
}

/// The LeaveGroup response: one result per leaving (member id, instance id).
fn leave_response(
    version: i16,
    leaving: &[(String, Option<String>)],
    results: Vec<i16>,
) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    if version <= 2 {
        resp.error_code = results.first().copied().unwrap_or(codes::NONE);
    } else {
        for ((mid, iid), code) in leaving.iter().zip(results) {
            let mut mr = MemberResponse::default();
            mr.member_id = str_bytes(mid);
            mr.group_instance_id = iid.as_deref().map(str_bytes);
            mr.error_code = code;
            resp.members.push(mr);
        }
    }
    resp
}

/// Timers of one classic group.
pub fn tick(co: &GroupCoordinator, gid: &str, now: Instant) {
    let mut groups = co.groups.borrow_mut();
    let Some(group) = groups.get_mut(gid) else {
        return;
    };
    let partition = group.partition;
    let Kind::Classic(g) = &mut group.kind else {
        return;
    };
    g.pending.retain(|_, deadline| *deadline > now);
    // Session expiry (members parked in JoinGroup/SyncGroup are kept alive; a new member that
    // never completes its first join is bounded by the rebalance deadline).
    let expired: Vec<String> = g
        .members
        .values()
        .filter(|m| {
            m.awaiting_join.is_none()
                && m.awaiting_sync.is_none()
                && now.duration_since(m.last_heartbeat) >= ms(m.session_timeout_ms)
        })
        .map(|m| m.member_id.clone())
        .collect();
    for id in expired {
        log::info!("group {gid}: member {id} session timed out; removing it");
        g.remove_member(&id);
        match g.state {
            ClassicState::PreparingRebalance => {}
            _ => g.prepare_rebalance(
                Duration::from_millis(co.gcfg().initial_rebalance_delay_ms),
                now,
            ),
        }
    }
    if g.state == ClassicState::PreparingRebalance {
        if now >= g.rebalance_deadline {
            match g.initial_join_until {
                Some(until) if g.new_member_added && now < until => {
                    g.new_member_added = false;
                    let delay = Duration::from_millis(co.gcfg().initial_rebalance_delay_ms);
                    g.rebalance_deadline = (now + delay).min(until);
                }
                _ => complete_join(co, gid, partition, g, now),
            }
        } else {
            maybe_complete_join(co, gid, partition, g, now);
        }
    }
}

/// Responses made by this file's builders from a stable group with a static leader and a
/// dynamic follower (every optional part filled), for the handlers' version guards.
#[cfg(test)]
pub(crate) mod guard {
    use super::*;

    fn member(id: &str, instance_id: Option<&str>) -> ClassicMember {
        ClassicMember {
            member_id: id.to_string(),
            instance_id: instance_id.map(str::to_string),
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), Bytes::from_static(b"subscription"))],
            assignment: Bytes::from_static(b"assignment"),
            awaiting_join: None,
            awaiting_sync: None,
            last_heartbeat: Instant::now(),
            is_new: false,
            seq: 0,
        }
    }

    pub(crate) fn group() -> ClassicGroup {
        let mut g = ClassicGroup::new();
        g.state = ClassicState::Stable;
        g.protocol_type = Some("consumer".to_string());
        g.protocol = Some("range".to_string());
        g.generation = 3;
        g.leader = Some("leader".to_string());
        for m in [
            member("leader", Some("instance-1")),
            member("follower", None),
        ] {
            g.members.insert(m.member_id.clone(), m);
        }
        g
    }

    pub(crate) fn join_responses(version: i16) -> Vec<JoinGroupResponse> {
        let g = group();
        vec![
            g.join_response(version, "leader", true),
            g.join_response(version, "follower", false),
            join_error(version, "new-member", codes::MEMBER_ID_REQUIRED),
        ]
    }

    pub(crate) fn sync_responses(version: i16) -> Vec<SyncGroupResponse> {
        let g = group();
        vec![
            sync_response(version, codes::NONE, Some(&g), Bytes::from_static(b"mine")),
            sync_response(version, codes::REBALANCE_IN_PROGRESS, None, Bytes::new()),
        ]
    }

    pub(crate) fn leave_responses(version: i16) -> Vec<LeaveGroupResponse> {
        let leaving = [
            ("leader".to_string(), Some("instance-1".to_string())),
            ("gone".to_string(), None),
        ];
        let results = vec![codes::NONE, codes::UNKNOWN_MEMBER_ID];
        let n = if version <= 2 { 1 } else { 2 };
        vec![leave_response(version, &leaving[..n], results)]
    }
}
