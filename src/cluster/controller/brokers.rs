//! Broker lifecycle decisions: registration (a new broker epoch, fenced at first), heartbeats
//! (session renewal; unfencing once the broker has caught up with the metadata log up to its
//! own registration), session expiry and fencing (KRaft's order: first out of every ISR, with a
//! new leader elected from the ISR, then the ELR, per KIP-966, then the fence record), and
//! producer-id blocks.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{Controller, ControllerError, Decision, HEARTBEATS_PROVING_ALIVE, Session, codes};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{
    BrokerEndpoint, ConfigResource, MetadataRecord, NO_LEADER, PartitionChangeRecord,
    RegisterBrokerRecord,
};

/// BrokerRegistration request (Kafka API 62's fields that matter here).
#[derive(Clone, Debug)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// The cluster id in the broker's data directory (None: a fresh directory).
    pub cluster_id: Option<String>,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// BrokerHeartbeat request (Kafka API 63).
#[derive(Clone, Copy, Debug)]
pub struct BrokerHeartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The offset of the last metadata entry the broker has applied.
    pub current_metadata_offset: u64,
    pub want_fence: bool,
    pub want_shutdown: bool,
    /// The broker's log dir is below its free-space floor (as Kafka's broker reports offline
    /// log dirs): the controller moves its leaderships away (`disk_full.rs`).
    pub log_dir_full: bool,
}

/// BrokerHeartbeat response; it holds once the returned records (if any) have committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

impl Controller {
    /// Whether the registered process of `broker_id` has proven alive after `incarnation_id`
    /// asked to register: that registration is a duplicate node.id for good (the driver stops
    /// that process at once instead of retrying until the session expires).
    pub fn is_proven_duplicate(&self, broker_id: i32, incarnation_id: Uuid) -> bool {
        self.sessions.get(&broker_id).is_some_and(|s| {
            s.contested
                .is_some_and(|(inc, n)| inc == incarnation_id && n >= HEARTBEATS_PROVING_ALIVE)
        })
    }

    /// Registers (or re-registers) a broker: a new broker epoch, fenced until caught up.
    /// A re-registration of an unfenced broker first takes it out of every ISR.
    pub fn register_broker(
        &mut self,
        req: &BrokerRegistration,
        now_ms: u64,
    ) -> Decision<(i64, Vec<MetadataRecord>)> {
        self.require_active()?;
        if req.broker_id < 0 {
            return Err(ControllerError::new(
                codes::INVALID_REQUEST,
                "broker id must be >= 0",
            ));
        }
        if let (Some(theirs), Some(ours)) = (&req.cluster_id, &self.working.cluster_id)
            && theirs != ours
        {
            return Err(ControllerError::new(
                codes::INCONSISTENT_CLUSTER_ID,
                format!(
                    "broker {} belongs to cluster {theirs}, this is cluster {ours}",
                    req.broker_id
                ),
            ));
        }
        let mut records = Vec::new();
        if let Some(existing) = self.working.brokers.get(&req.broker_id) {
            let alive = self.session_alive(req.broker_id, now_ms);
            if existing.registration.incarnation_id != req.incarnation_id
                && alive
                && !existing.fenced
            {
                if self.is_proven_duplicate(req.broker_id, req.incarnation_id) {
                    return Err(ControllerError::new(
                        codes::DUPLICATE_BROKER_REGISTRATION,
                        format!(
                            "another broker process with node.id {} is alive: it kept heartbeating after this one asked to register",
                            req.broker_id
                        ),
                    ));
                }
                if let Some(session) = self.sessions.get_mut(&req.broker_id)
                    && session
                        .contested
                        .is_none_or(|(inc, _)| inc != req.incarnation_id)
                {
                    session.contested = Some((req.incarnation_id, 0));
                }
                return Err(ControllerError::new(
                    codes::DUPLICATE_BROKER_REGISTRATION,
                    format!(
                        "another broker is registered with node.id {} and its session is alive",
                        req.broker_id
                    ),
                ));
            }
            if !existing.fenced {
                records.extend(isr_removals(
                    &self.working,
                    req.broker_id,
                    self.cfg.min_insync_replicas,
                    &self.full_log_dirs(),
                ));
            }
        }
        let broker_epoch = self.working.max_broker_epoch + 1;
        records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: req.broker_id,
            incarnation_id: req.incarnation_id,
            broker_epoch,
            endpoints: req.endpoints.clone(),
            rack: req.rack.clone(),
            fenced: true,
        }));
        self.sessions.insert(req.broker_id, Session::new(now_ms));
        Ok((broker_epoch, self.stage(records)?))
    }

    /// A heartbeat: renews the session; unfences a caught-up broker; fences on request.
    pub fn heartbeat(
        &mut self,
        req: &BrokerHeartbeat,
        now_ms: u64,
    ) -> Decision<(HeartbeatReply, Vec<MetadataRecord>)> {
        self.require_active()?;
        let fenced = self.check_epoch(req.broker_id, req.broker_epoch)?.fenced;
        let session = self
            .sessions
            .entry(req.broker_id)
            .or_insert_with(|| Session::new(now_ms));
        session.last_heartbeat_ms = now_ms;
        session.lost_ms = None;
        session.gone = false;
        if let Some((_, heartbeats)) = &mut session.contested {
            *heartbeats = heartbeats.saturating_add(1);
        }
        self.note_log_dir(req.broker_id, req.log_dir_full);
        let is_caught_up = self
            .registration_offsets
            .get(&req.broker_id)
            .is_some_and(|&o| req.current_metadata_offset >= o);
        let (records, is_fenced) = if req.want_fence || req.want_shutdown {
            // Controlled shutdown moves leadership and ISR membership away by fencing.
            (
                if fenced {
                    Vec::new()
                } else {
                    self.fence_records(req.broker_id)
                },
                true,
            )
        } else if fenced && is_caught_up {
            (self.unfence_records(req.broker_id), false)
        } else if !fenced && req.log_dir_full {
            (self.moves_off_full_log_dir(req.broker_id), false)
        } else {
            (Vec::new(), fenced)
        };
        let records = self.stage(records)?;
        // Kafka's should_shut_down: once the broker leads nothing (its leaderships moved to
        // other ISR members, or to nobody when none is left) it may stop.
        let should_shut_down = req.want_shutdown && self.working.leader_count(req.broker_id) == 0;
        let reply = HeartbeatReply {
            is_caught_up,
            is_fenced,
            should_shut_down,
        };
        Ok((reply, records))
    }

    /// Evidence that broker `broker_id`'s process may be gone: the connection that carried its
    /// heartbeats closed (`broker_epoch` = the epoch those heartbeats named; ignored unless it
    /// is still the registered one, so an old incarnation's socket cannot end a restart's
    /// session), or a connection to its controller listener failed (`None`). Its session then
    /// ends `CONNECTION_LOSS_GRACE_MS` from now unless it heartbeats first; `tick` fences it.
    pub fn broker_connection_lost(
        &mut self,
        broker_id: i32,
        broker_epoch: Option<i64>,
        now_ms: u64,
    ) {
        if let Some(s) = self.unfenced_session(broker_id, broker_epoch) {
            s.lost_ms.get_or_insert(now_ms);
        }
    }

    /// Proof that broker `broker_id`'s process is gone: its controller listener refused a
    /// connection (a kill -9 or crash closes the listening socket with the process; a stopped
    /// or partitioned process still accepts, or times out). Its session is over at the next
    /// `tick` unless a heartbeat comes first (a restarted process registers anew).
    pub fn broker_process_gone(&mut self, broker_id: i32) {
        if let Some(s) = self.unfenced_session(broker_id, None) {
            s.gone = true;
        }
    }

    /// The session of `broker_id` when this controller is active and the broker is registered
    /// and unfenced (with `broker_epoch`, if given, its registered epoch): the one that
    /// evidence of its process being gone may end.
    fn unfenced_session(
        &mut self,
        broker_id: i32,
        broker_epoch: Option<i64>,
    ) -> Option<&mut Session> {
        if !self.active {
            return None;
        }
        let b = self.working.brokers.get(&broker_id)?;
        if b.fenced || broker_epoch.is_some_and(|e| e != b.registration.broker_epoch) {
            return None;
        }
        self.sessions.get_mut(&broker_id)
    }

    /// Clock tick: fences every unfenced broker whose session expired (one batch each).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Vec<MetadataRecord>> {
        if !self.active {
            return Vec::new();
        }
        let expired: Vec<i32> = self
            .working
            .brokers
            .iter()
            .filter(|(id, b)| !b.fenced && !self.session_alive(**id, now_ms))
            .map(|(id, _)| *id)
            .collect();
        let mut batches: Vec<Vec<MetadataRecord>> = expired
            .into_iter()
            .map(|id| {
                log::info!("controller: broker {id} session expired; fencing it");
                let records = self.fence_records(id);
                self.stage(records).expect("active")
            })
            .collect();
        batches.extend(self.leadership_tick(now_ms));
        batches
    }

    /// AllocateProducerIds: a block of ids no other broker gets.
    pub fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Decision<((i64, i64), Vec<MetadataRecord>)> {
        self.require_active()?;
        self.check_epoch(broker_id, broker_epoch)?;
        let start = self.working.next_producer_id;
        let len = self.cfg.producer_id_block_size;
        let records = vec![MetadataRecord::ProducerIds {
            broker_id,
            broker_epoch,
            next_producer_id: start + len,
        }];
        Ok(((start, len), self.stage(records)?))
    }

    pub(super) fn check_epoch(
        &self,
        broker_id: i32,
        epoch: i64,
    ) -> Decision<&crate::cluster::metadata_log::image::BrokerImage> {
        let b = self.working.brokers.get(&broker_id).ok_or_else(|| {
            ControllerError::new(
                codes::BROKER_ID_NOT_REGISTERED,
                format!("broker {broker_id} is not registered"),
            )
        })?;
        if b.registration.broker_epoch != epoch {
            return Err(ControllerError::new(
                codes::STALE_BROKER_EPOCH,
                format!(
                    "broker {broker_id} epoch {epoch} is not the current {}",
                    b.registration.broker_epoch
                ),
            ));
        }
        Ok(b)
    }

    fn session_alive(&self, broker_id: i32, now_ms: u64) -> bool {
        self.sessions.get(&broker_id).is_some_and(|s| {
            !s.gone
                && now_ms < s.last_heartbeat_ms + self.cfg.session_timeout_ms
                && s.lost_ms
                    .is_none_or(|lost| now_ms < lost + super::CONNECTION_LOSS_GRACE_MS)
        })
    }

    /// ISR removals (with new leaders) then the fence record.
    fn fence_records(&self, broker_id: i32) -> Vec<MetadataRecord> {
        let epoch = self.working.brokers[&broker_id].registration.broker_epoch;
        let mut records = isr_removals(
            &self.working,
            broker_id,
            self.cfg.min_insync_replicas,
            &self.full_log_dirs(),
        );
        records.push(MetadataRecord::FenceBroker {
            broker_id,
            broker_epoch: epoch,
        });
        records
    }

    /// The unfence record, then leaders for partitions that have none and list this broker in
    /// their ELR (it holds everything committed).
    fn unfence_records(&self, broker_id: i32) -> Vec<MetadataRecord> {
        let epoch = self.working.brokers[&broker_id].registration.broker_epoch;
        let mut records = vec![MetadataRecord::UnfenceBroker {
            broker_id,
            broker_epoch: epoch,
        }];
        for t in self.working.topics.values() {
            for (&partition, p) in &t.partitions {
                if p.leader == NO_LEADER && p.elr.contains(&broker_id) {
                    records.push(MetadataRecord::PartitionChange(PartitionChangeRecord {
                        topic_id: t.id,
                        partition,
                        leader: Some(broker_id),
                        isr: Some(vec![broker_id]),
                        elr: Some(p.elr.iter().copied().filter(|&b| b != broker_id).collect()),
                        replicas: None,
                        ..Default::default()
                    }));
                }
            }
        }
        records
    }
}

/// The partition changes that take `broker` out of every ISR. A leader it held moves to the
/// first other ISR member in replica order (one whose log dir is not in `full` first), else to
/// an unfenced ELR member (which rejoins the ISR), else nobody. A member removed while the ISR drops below min.insync.replicas joins the
/// ELR (KIP-966: the high watermark stops advancing then, so it holds everything committed).
pub(super) fn isr_removals(
    image: &MetadataImage,
    broker: i32,
    default_min_isr: usize,
    full: &BTreeSet<i32>,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        let min_isr = image
            .configs
            .get(&(ConfigResource::Topic, t.name.clone()))
            .and_then(|c| c.get("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default_min_isr);
        for (&partition, p) in &t.partitions {
            if !p.isr.contains(&broker) {
                continue;
            }
            let mut isr: Vec<i32> = p.isr.iter().copied().filter(|&b| b != broker).collect();
            let mut elr = p.elr.clone();
            if isr.len() < min_isr {
                elr.push(broker);
            }
            let mut leader = p.leader;
            if leader == broker {
                let eligible = |b: &&i32| **b != broker && image.is_unfenced(**b);
                let in_isr = p.replicas.iter().filter(|b| isr.contains(b));
                let with_room = in_isr.clone().filter(|b| !full.contains(b)).find(eligible);
                leader = match with_room.or_else(|| in_isr.clone().find(eligible)) {
                    Some(&b) => b,
                    None => match p.replicas.iter().filter(|b| elr.contains(b)).find(eligible) {
                        Some(&b) => {
                            elr.retain(|&x| x != b);
                            isr.push(b);
                            b
                        }
                        None => NO_LEADER,
                    },
                };
            }
            out.push(MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: t.id,
                partition,
                isr: Some(isr),
                elr: (elr != p.elr).then_some(elr),
                leader: (leader != p.leader).then_some(leader),
                replicas: None,
                ..Default::default()
            }));
        }
    }
    out
}
