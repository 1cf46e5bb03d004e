//! KIP-848 consumer groups (`group.protocol=consumer`): ConsumerGroupHeartbeat drives everything.
//! The broker keeps a group epoch (bumped whenever membership, subscriptions or the subscribed
//! topics' partition counts change), computes a target assignment with the `uniform` or `range`
//! assignor when the group epoch moves past the assignment epoch, and reconciles each member
//! towards its target on the member's own heartbeats (as Kafka's CurrentAssignmentBuilder):
//! partitions to give up are revoked first (the member keeps its epoch until it reports them
//! released), then the member moves to the assignment epoch and receives the new partitions that
//! no other member still owns. Members are fenced after the session timeout, or after the
//! rebalance timeout when they do not release revoked partitions.
//!
//! Persisted: the group epoch (so epochs keep growing across restarts). Members are not: after a
//! restart every member's next heartbeat gets UNKNOWN_MEMBER_ID and it rejoins (epoch 0).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_describe_response::{
    self as cgd, Member as DescribedMember,
};
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HbAssignment, ConsumerGroupHeartbeatResponse,
    TopicPartitions as HbTopicPartitions,
};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};

use super::assignor::{self, AssignInput, Assignment};
use super::records::{self, LogRecord};
use super::{Group, GroupCoordinator, Kind, codes, protocol};
use crate::kafka::handlers::str_bytes;
use crate::metadata::ClusterMetadata;
use crate::shard_state::ShardState;

type TopicSet = BTreeMap<String, BTreeSet<i32>>;

pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// Partitions the member owns (as the broker last told it).
    pub assigned: TopicSet,
    /// Partitions the member was asked to give up and has not yet reported released.
    pub revoking: TopicSet,
    pub revoke_deadline: Option<Instant>,
    pub last_heartbeat: Instant,
    /// Send the assignment in the next heartbeat response.
    pub send_assignment: bool,
    /// Left with epoch -2 (a static member that will come back): kept until its session expires.
    pub left_static: bool,
}

pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub target: Assignment,
    pub members: BTreeMap<String, ConsumerMember>,
    pub static_members: HashMap<String, String>,
    /// Partition counts of the subscribed topics the target was computed for.
    pub topics: BTreeMap<String, i32>,
    pub assignor: String,
    /// Wall-clock ms when the group last became empty (offset expiry).
    pub empty_since: i64,
}

fn count(s: &TopicSet) -> usize {
    s.values().map(BTreeSet::len).sum()
}

fn contains(s: &TopicSet, t: &str, p: i32) -> bool {
    s.get(t).is_some_and(|ps| ps.contains(&p))
}

fn minus(a: &TopicSet, b: &TopicSet) -> TopicSet {
    let mut out = TopicSet::new();
    for (t, ps) in a {
        for p in ps {
            if !contains(b, t, *p) {
                out.entry(t.clone()).or_default().insert(*p);
            }
        }
    }
    out
}

fn intersect(a: &TopicSet, b: &TopicSet) -> TopicSet {
    let mut out = TopicSet::new();
    for (t, ps) in a {
        for p in ps {
            if contains(b, t, *p) {
                out.entry(t.clone()).or_default().insert(*p);
            }
        }
    }
    out
}

fn union_into(a: &mut TopicSet, b: &TopicSet) {
    for (t, ps) in b {
        a.entry(t.clone()).or_default().extend(ps.iter().copied());
    }
}

impl ConsumerGroup {
    pub fn new(epoch: i32) -> Self {
        Self {
            epoch,
            assignment_epoch: epoch,
            target: Assignment::new(),
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            topics: BTreeMap::new(),
            assignor: assignor::UNIFORM.to_string(),
            empty_since: 0,
        }
    }

    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !m.revoking.is_empty()
                || m.assigned != self.target.get(&m.member_id).cloned().unwrap_or_default()
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// Bumps the group epoch if the subscribed topics' partition counts changed; recomputes the
    /// target assignment when the group epoch is ahead of it.
    fn refresh_target(&mut self, meta: &ClusterMetadata) -> bool {
        let topics: BTreeMap<String, i32> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| meta.topic(&t).map(|m| (t, m.partitions)))
            .collect();
        let mut bumped = false;
        if topics != self.topics {
            self.topics = topics;
            self.epoch += 1;
            bumped = true;
        }
        if self.epoch > self.assignment_epoch {
            // The assignor most members prefer (ties: alphabetical), else the default.
            let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
            for m in self.members.values() {
                if let Some(a) = &m.server_assignor {
                    *votes.entry(a.as_str()).or_default() += 1;
                }
            }
            let max = votes.values().copied().max().unwrap_or(0);
            self.assignor = votes
                .iter()
                .find(|(_, v)| **v == max)
                .map(|(k, _)| k.to_string())
                .unwrap_or_else(|| assignor::UNIFORM.to_string());
            let subs: BTreeMap<String, BTreeSet<String>> = self
                .members
                .values()
                .map(|m| (m.member_id.clone(), m.subscribed.clone()))
                .collect();
            self.target = assignor::assign(
                &self.assignor,
                &AssignInput {
                    members: &subs,
                    topics: &self.topics,
                    previous: &self.target,
                },
            );
            self.assignment_epoch = self.epoch;
            log::debug!(
                "consumer group: epoch {} target assignment computed by {} for {} members",
                self.epoch,
                self.assignor,
                subs.len()
            );
        }
        bumped
    }

    /// Moves `member_id` towards its target (see the module docs). `owned` is what the member
    /// reported owning in this heartbeat (`None` = unchanged since its last report).
    fn reconcile(&mut self, member_id: &str, owned: Option<&TopicSet>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let others: TopicSet = {
            let mut s = TopicSet::new();
            for (id, m) in &self.members {
                if id != member_id {
                    union_into(&mut s, &m.assigned);
                    union_into(&mut s, &m.revoking);
                }
            }
            s
        };
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !m.revoking.is_empty() {
            let released = owned.is_some_and(|o| intersect(o, &m.revoking).is_empty());
            if !released {
                return;
            }
            m.revoking.clear();
            m.revoke_deadline = None;
        }
        let revoke = minus(&m.assigned, &target);
        if count(&revoke) > 0 {
            m.assigned = intersect(&m.assigned, &target);
            m.revoking = revoke;
            m.revoke_deadline =
                Some(now + Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64));
            m.send_assignment = true;
            return;
        }
        let new = minus(&minus(&target, &m.assigned), &others);
        if count(&new) > 0 {
            union_into(&mut m.assigned, &new);
            m.send_assignment = true;
        }
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(iid) = &m.instance_id
                && self.static_members.get(iid).map(String::as_str) == Some(id)
            {
                self.static_members.remove(iid);
            }
            self.target.remove(id);
            self.epoch += 1;
            if self.members.is_empty() {
                self.empty_since = records::now_ms();
            }
        }
    }

    /// DescribeGroups view (the classic format: subscription / assignment as the "consumer"
    /// embedded protocol), so classic tools can describe a KIP-848 group too.
    pub fn describe_classic_into(
        &self,
        _meta: &ClusterMetadata,
        version: i16,
        d: &mut DescribedGroup,
    ) {
        d.protocol_data = str_bytes(&self.assignor);
        for m in self.members.values() {
            let mut dm = DescribedGroupMember::default();
            dm.member_id = str_bytes(&m.member_id);
            if version >= 4 {
                dm.group_instance_id = m.instance_id.as_deref().map(str_bytes);
            }
            dm.client_id = str_bytes(&m.client_id);
            dm.client_host = str_bytes(&m.client_host);
            let subs: Vec<String> = m.subscribed.iter().cloned().collect();
            dm.member_metadata = protocol::encode_subscription(&subs);
            let parts: Vec<(String, Vec<i32>)> = m
                .assigned
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
                .collect();
            dm.member_assignment = protocol::encode_assignment(&parts);
            d.members.push(dm);
        }
    }
}

fn hb_error(code: i16, msg: &str) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = code;
    r.error_message = Some(str_bytes(msg));
    r
}

fn to_ids(meta: &ClusterMetadata, s: &TopicSet) -> Vec<HbTopicPartitions> {
    s.iter()
        .filter_map(|(t, ps)| {
            meta.topic(t).map(|tm| {
                let mut tp = HbTopicPartitions::default();
                tp.topic_id = tm.id;
                tp.partitions = ps.iter().copied().collect();
                tp
            })
        })
        .collect()
}

pub fn heartbeat(
    state: &Rc<ShardState>,
    _version: i16,
    client_id: String,
    client_host: String,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let co = &state.groups;
    let cfg = co.gcfg().clone();
    let meta = state.metadata();
    let now = Instant::now();
    let gid = req.group_id.0.to_string();
    let mut member_id = req.member_id.to_string();
    let epoch = req.member_epoch;
    if gid.is_empty() {
        return hb_error(codes::INVALID_REQUEST, "GroupId can't be empty.");
    }
    if req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return hb_error(
            codes::INVALID_REQUEST,
            "SubscribedTopicRegex is not supported by this broker.",
        );
    }
    if let Some(a) = &req.server_assignor
        && !assignor::ASSIGNORS.contains(&a.as_str())
    {
        return hb_error(
            codes::UNSUPPORTED_ASSIGNOR,
            &format!("ServerAssignor {a} is not supported. Supported assignors: uniform, range."),
        );
    }
    if epoch == 0 {
        if member_id.is_empty() {
            member_id = uuid::Uuid::new_v4().simple().to_string();
        }
        if req.subscribed_topic_names.is_none() {
            return hb_error(
                codes::INVALID_REQUEST,
                "SubscribedTopicNames must be set in first request.",
            );
        }
    } else if member_id.is_empty() {
        return hb_error(codes::INVALID_REQUEST, "MemberId can't be empty.");
    }
    let partition = co.partition_of(&gid);
    let mut persist_epoch = None;
    let resp = {
        let mut groups = co.groups.borrow_mut();
        if !groups.contains_key(&gid) {
            if epoch != 0 {
                return hb_error(codes::UNKNOWN_MEMBER_ID, "Unknown member.");
            }
            groups.insert(gid.clone(), Group::new_classic(&gid, partition));
        }
        let group = groups.get_mut(&gid).expect("present");
        if let Kind::Classic(c) = &group.kind {
            if !c.members.is_empty() || !c.pending.is_empty() {
                return hb_error(
                    codes::GROUP_ID_NOT_FOUND,
                    &format!("Group {gid} is not a consumer group."),
                );
            }
            if epoch != 0 {
                return hb_error(codes::UNKNOWN_MEMBER_ID, "Unknown member.");
            }
            let start = c.generation.max(0);
            group.kind = Kind::Consumer(ConsumerGroup::new(start));
        }
        let Kind::Consumer(g) = &mut group.kind else {
            unreachable!()
        };
        let epoch_before = g.epoch;

        // Owned partitions reported by the member (topic ids -> names).
        let owned: Option<TopicSet> = req.topic_partitions.as_ref().map(|tps| {
            let mut s = TopicSet::new();
            for tp in tps {
                if let Some((name, _)) = meta.topic_by_id(&tp.topic_id) {
                    s.entry(name.clone())
                        .or_default()
                        .extend(tp.partitions.iter().copied());
                }
            }
            s
        });

        match epoch {
            -1 | -2 => {
                let mut r = ConsumerGroupHeartbeatResponse::default();
                r.member_id = Some(str_bytes(&member_id));
                r.member_epoch = epoch;
                r.heartbeat_interval_ms = 0;
                if g.members.contains_key(&member_id) {
                    let is_static = g.members[&member_id].instance_id.is_some();
                    if epoch == -2 && is_static {
                        let m = g.members.get_mut(&member_id).expect("member");
                        m.left_static = true;
                        m.last_heartbeat = now;
                        log::info!(
                            "consumer group {gid}: static member {member_id} left temporarily"
                        );
                    } else {
                        g.remove_member(&member_id);
                        log::info!("consumer group {gid}: member {member_id} left");
                        g.refresh_target(&meta);
                    }
                }
                if g.epoch != epoch_before {
                    persist_epoch = Some(g.epoch);
                }
                r
            }
            0 => {
                let iid = req.instance_id.as_ref().map(|s| s.to_string());
                let mut fresh = true;
                if let Some(iid) = &iid {
                    if let Some(old_id) = g.static_members.get(iid).cloned() {
                        if old_id != member_id {
                            let old_left = g.members.get(&old_id).is_none_or(|m| m.left_static);
                            if !old_left {
                                return hb_error(
                                    codes::UNRELEASED_INSTANCE_ID,
                                    &format!(
                                        "Static member {iid} is still in use by member {old_id}."
                                    ),
                                );
                            }
                            // The static member is back: it takes over the old member's epoch and
                            // assignment without a rebalance.
                            if let Some(mut m) = g.members.remove(&old_id) {
                                m.member_id = member_id.clone();
                                m.left_static = false;
                                m.send_assignment = true;
                                m.last_heartbeat = now;
                                if let Some(t) = g.target.remove(&old_id) {
                                    g.target.insert(member_id.clone(), t);
                                }
                                g.members.insert(member_id.clone(), m);
                                fresh = false;
                            }
                            g.static_members.insert(iid.clone(), member_id.clone());
                        }
                    } else {
                        g.static_members.insert(iid.clone(), member_id.clone());
                    }
                }
                if fresh && !g.members.contains_key(&member_id) {
                    g.members.insert(
                        member_id.clone(),
                        ConsumerMember {
                            member_id: member_id.clone(),
                            instance_id: iid,
                            rack_id: None,
                            client_id: client_id.clone(),
                            client_host: client_host.clone(),
                            rebalance_timeout_ms: 300_000,
                            subscribed: BTreeSet::new(),
                            server_assignor: None,
                            epoch: 0,
                            previous_epoch: 0,
                            assigned: TopicSet::new(),
                            revoking: TopicSet::new(),
                            revoke_deadline: None,
                            last_heartbeat: now,
                            send_assignment: true,
                            left_static: false,
                        },
                    );
                    g.epoch += 1;
                    log::info!("consumer group {gid}: member {member_id} joined");
                } else if let Some(m) = g.members.get_mut(&member_id) {
                    // A known member rejoining (it lost its state): it gets its assignment again.
                    m.send_assignment = true;
                }
                heartbeat_common(
                    g,
                    &gid,
                    &member_id,
                    &client_id,
                    &req,
                    owned.as_ref(),
                    &meta,
                    &cfg,
                    now,
                    epoch_before,
                    &mut persist_epoch,
                )
            }
            e => {
                let Some(m) = g.members.get(&member_id) else {
                    return hb_error(codes::UNKNOWN_MEMBER_ID, "Unknown member.");
                };
                if e != m.epoch {
                    let tolerated = e == m.previous_epoch
                        && owned
                            .as_ref()
                            .is_some_and(|o| minus(o, &m.assigned).is_empty());
                    if !tolerated {
                        return hb_error(
                            codes::FENCED_MEMBER_EPOCH,
                            &format!(
                                "The member epoch {e} is fenced; the current epoch is {}.",
                                m.epoch
                            ),
                        );
                    }
                }
                heartbeat_common(
                    g,
                    &gid,
                    &member_id,
                    &client_id,
                    &req,
                    owned.as_ref(),
                    &meta,
                    &cfg,
                    now,
                    epoch_before,
                    &mut persist_epoch,
                )
            }
        }
    };
    if let Some(e) = persist_epoch {
        co.append_detached(
            partition,
            vec![LogRecord::ConsumerGroup {
                group: gid,
                epoch: Some(e),
            }],
        );
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn heartbeat_common(
    g: &mut ConsumerGroup,
    gid: &str,
    member_id: &str,
    client_id: &str,
    req: &ConsumerGroupHeartbeatRequest,
    owned: Option<&TopicSet>,
    meta: &ClusterMetadata,
    cfg: &super::GroupConfig,
    now: Instant,
    epoch_before: i32,
    persist_epoch: &mut Option<i32>,
) -> ConsumerGroupHeartbeatResponse {
    let m = g.members.get_mut(member_id).expect("member exists");
    m.last_heartbeat = now;
    m.left_static = false;
    if !client_id.is_empty() {
        m.client_id = client_id.to_string();
    }
    if req.rebalance_timeout_ms > 0 {
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    }
    if let Some(r) = &req.rack_id {
        m.rack_id = Some(r.to_string());
    }
    if let Some(a) = &req.server_assignor {
        m.server_assignor = Some(a.to_string());
    }
    let mut changed = false;
    if let Some(names) = &req.subscribed_topic_names {
        let subs: BTreeSet<String> = names.iter().map(|t| t.0.to_string()).collect();
        if subs != m.subscribed {
            m.subscribed = subs;
            changed = true;
        }
    }
    // A member that reports owning something other than what the broker thinks gets the full
    // assignment again (it may have missed a response).
    if let Some(o) = owned
        && *o != m.assigned
        && m.revoking.is_empty()
    {
        m.send_assignment = true;
    }
    if changed {
        g.epoch += 1;
    }
    g.refresh_target(meta);
    g.reconcile(member_id, owned, now);
    if g.epoch != epoch_before {
        *persist_epoch = Some(g.epoch);
        log::info!(
            "consumer group {gid}: group epoch {} (member {member_id})",
            g.epoch
        );
    }
    let m = g.members.get_mut(member_id).expect("member exists");
    let assignment = (m.send_assignment || req.member_epoch == 0).then(|| {
        m.send_assignment = false;
        to_ids(meta, &m.assigned)
    });
    member_response(
        member_id,
        m.epoch,
        cfg.consumer_heartbeat_interval_ms,
        assignment,
    )
}

/// A member's heartbeat answer, with its assignment (topic ids) when it is to be sent.
fn member_response(
    member_id: &str,
    epoch: i32,
    heartbeat_interval_ms: i32,
    assignment: Option<Vec<HbTopicPartitions>>,
) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.member_id = Some(str_bytes(member_id));
    r.member_epoch = epoch;
    r.heartbeat_interval_ms = heartbeat_interval_ms;
    r.assignment = assignment.map(|topic_partitions| {
        let mut a = HbAssignment::default();
        a.topic_partitions = topic_partitions;
        a
    });
    r
}

/// Session and revocation timeouts of one consumer group.
pub fn tick(co: &GroupCoordinator, state: &Rc<ShardState>, gid: &str, now: Instant) {
    let session = Duration::from_millis(co.gcfg().consumer_session_timeout_ms as u64);
    let mut persist = None;
    let partition;
    {
        let mut groups = co.groups.borrow_mut();
        let Some(group) = groups.get_mut(gid) else {
            return;
        };
        partition = group.partition;
        let Kind::Consumer(g) = &mut group.kind else {
            return;
        };
        let before = g.epoch;
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| {
                now.duration_since(m.last_heartbeat) >= session
                    || m.revoke_deadline.is_some_and(|d| now >= d)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            log::info!("consumer group {gid}: member {id} fenced (session or rebalance timeout)");
            g.remove_member(&id);
        }
        if g.epoch != before {
            g.refresh_target(&state.metadata());
            persist = Some(g.epoch);
        }
    }
    if let Some(e) = persist {
        co.append_detached(
            partition,
            vec![LogRecord::ConsumerGroup {
                group: gid.to_string(),
                epoch: Some(e),
            }],
        );
    }
}

fn described_assignment(meta: &ClusterMetadata, s: &TopicSet) -> cgd::Assignment {
    let mut a = cgd::Assignment::default();
    for (t, ps) in s {
        let mut tp = cgd::TopicPartitions::default();
        tp.topic_id = meta.topic(t).map(|m| m.id).unwrap_or_default();
        tp.topic_name = str_bytes(t).into();
        tp.partitions = ps.iter().copied().collect();
        a.topic_partitions.push(tp);
    }
    a
}

pub fn describe(state: &Rc<ShardState>, id: &str) -> cgd::DescribedGroup {
    let meta = state.metadata();
    let groups = state.groups.groups.borrow();
    describe_group(&meta, id, groups.get(id).map(|g| &g.kind))
}

/// The ConsumerGroupDescribe entry of group `id` (`None`: no such group).
fn describe_group(meta: &ClusterMetadata, id: &str, kind: Option<&Kind>) -> cgd::DescribedGroup {
    let mut d = cgd::DescribedGroup::default();
    d.group_id = str_bytes(id).into();
    match kind {
        Some(Kind::Consumer(g)) => {
            d.group_state = str_bytes(g.state_name());
            d.group_epoch = g.epoch;
            d.assignment_epoch = g.assignment_epoch;
            d.assignor_name = str_bytes(&g.assignor);
            for m in g.members.values() {
                let mut dm = DescribedMember::default();
                dm.member_id = str_bytes(&m.member_id);
                dm.instance_id = m.instance_id.as_deref().map(str_bytes);
                dm.rack_id = m.rack_id.as_deref().map(str_bytes);
                dm.member_epoch = m.epoch;
                dm.client_id = str_bytes(&m.client_id);
                dm.client_host = str_bytes(&m.client_host);
                dm.subscribed_topic_names =
                    m.subscribed.iter().map(|t| str_bytes(t).into()).collect();
                dm.assignment = described_assignment(meta, &m.assigned);
                dm.target_assignment = described_assignment(
                    meta,
                    &g.target.get(&m.member_id).cloned().unwrap_or_default(),
                );
                dm.member_type = 1;
                d.members.push(dm);
            }
        }
        Some(Kind::Classic(_)) => {
            d.error_code = codes::GROUP_ID_NOT_FOUND;
            d.error_message = Some(str_bytes(&format!("Group {id} is not a consumer group.")));
        }
        None => {
            d.error_code = codes::GROUP_ID_NOT_FOUND;
            d.error_message = Some(str_bytes(&format!("Group {id} not found.")));
        }
    }
    d
}

/// Responses made by this file's builders from a group with one fully described member, for
/// the handlers' version guards.
#[cfg(test)]
pub(crate) mod guard {
    use super::*;

    pub(crate) fn metadata() -> ClusterMetadata {
        let topic = crate::metadata::TopicMeta::new(uuid::Uuid::from_u128(5), 3, BTreeMap::new());
        ClusterMetadata {
            cluster_id: "cluster".to_string(),
            topics: [("t".to_string(), topic)].into_iter().collect(),
            ..Default::default()
        }
    }

    fn assigned() -> TopicSet {
        [("t".to_string(), [0, 2].into_iter().collect())]
            .into_iter()
            .collect()
    }

    pub(crate) fn group() -> ConsumerGroup {
        let mut g = ConsumerGroup::new(4);
        g.assignment_epoch = 4;
        g.target.insert("m1".to_string(), assigned());
        g.members.insert(
            "m1".to_string(),
            ConsumerMember {
                member_id: "m1".to_string(),
                instance_id: Some("instance-1".to_string()),
                rack_id: Some("rack-a".to_string()),
                client_id: "client".to_string(),
                client_host: "/127.0.0.1".to_string(),
                rebalance_timeout_ms: 30_000,
                subscribed: ["t".to_string()].into_iter().collect(),
                server_assignor: Some("uniform".to_string()),
                epoch: 4,
                previous_epoch: 3,
                assigned: assigned(),
                revoking: TopicSet::new(),
                revoke_deadline: None,
                last_heartbeat: Instant::now(),
                send_assignment: true,
                left_static: false,
            },
        );
        g
    }

    pub(crate) fn heartbeat_responses(_version: i16) -> Vec<ConsumerGroupHeartbeatResponse> {
        let meta = metadata();
        vec![
            member_response("m1", 4, 5_000, Some(to_ids(&meta, &assigned()))),
            member_response("m1", 4, 5_000, None),
            hb_error(codes::FENCED_MEMBER_EPOCH, "The member epoch is fenced."),
        ]
    }

    pub(crate) fn consumer_describe(_version: i16) -> Vec<cgd::DescribedGroup> {
        let meta = metadata();
        let consumer = Kind::Consumer(group());
        let classic = Kind::Classic(super::super::classic::ClassicGroup::new());
        vec![
            describe_group(&meta, "consumer", Some(&consumer)),
            describe_group(&meta, "classic", Some(&classic)),
            describe_group(&meta, "missing", None),
        ]
    }
}
