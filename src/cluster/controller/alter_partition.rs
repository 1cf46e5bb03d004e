//! The controller side of AlterPartition (Kafka API 56): a partition leader proposes a new ISR
//! with the leader epoch and partition epoch its view is based on; the controller accepts it
//! only for the current leader, leader epoch and partition epoch (INVALID_UPDATE_VERSION
//! otherwise: the optimistic version check), and only with added members that are unfenced and
//! carry their current broker epoch (INELIGIBLE_REPLICA, KIP-903). Members removed while the
//! ISR falls below min.insync.replicas join the ELR, as on fencing, and the ELR is cleared once
//! the ISR is back at min.insync.replicas (KIP-966). An expansion that brings in the last target
//! replica of a reassignment completes it (`reassignment.rs`). Elections on
//! fencing stay in `brokers.rs`.

use super::reassignment::PartitionFields;
use super::{Controller, ControllerError, Decision, codes};
use crate::cluster::metadata_log::records::{ConfigResource, MetadataRecord};
use crate::cluster::replication::{AlterPartitionRequest, PartitionState, codes as rcodes};

impl Controller {
    /// Decides one AlterPartition: the state the partition will have once the returned records
    /// commit (no records when the ISR is already the proposed one).
    pub fn alter_partition(
        &mut self,
        req: &AlterPartitionRequest,
    ) -> Decision<(PartitionState, Vec<MetadataRecord>)> {
        self.require_active()?;
        self.check_epoch(req.broker_id, req.broker_epoch)?;
        let image = &self.working;
        let topic = image.topics.get(&req.topic_id).ok_or_else(|| {
            ControllerError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic id")
        })?;
        let p = topic.partitions.get(&req.partition).ok_or_else(|| {
            ControllerError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, "unknown partition")
        })?;
        if p.leader != req.broker_id {
            return Err(ControllerError::new(
                rcodes::NOT_LEADER_OR_FOLLOWER,
                format!("broker {} is not the leader ({})", req.broker_id, p.leader),
            ));
        }
        if req.leader_epoch < p.leader_epoch {
            return Err(ControllerError::new(
                rcodes::FENCED_LEADER_EPOCH,
                format!(
                    "leader epoch {} is older than {}",
                    req.leader_epoch, p.leader_epoch
                ),
            ));
        }
        if req.leader_epoch != p.leader_epoch || req.partition_epoch != p.partition_epoch {
            return Err(ControllerError::new(
                rcodes::INVALID_UPDATE_VERSION,
                format!(
                    "partition epoch {} (leader epoch {}) is not the current {} ({})",
                    req.partition_epoch, req.leader_epoch, p.partition_epoch, p.leader_epoch
                ),
            ));
        }
        let isr: Vec<i32> = req.new_isr.iter().map(|&(b, _)| b).collect();
        let mut distinct = isr.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if !isr.contains(&req.broker_id)
            || distinct.len() != isr.len()
            || isr.iter().any(|b| !p.replicas.contains(b))
        {
            return Err(ControllerError::new(
                codes::INVALID_REQUEST,
                format!(
                    "ISR {isr:?} must hold the leader and distinct replicas of {:?}",
                    p.replicas
                ),
            ));
        }
        for &(b, epoch) in &req.new_isr {
            if p.isr.contains(&b) {
                continue;
            }
            let ok = image
                .brokers
                .get(&b)
                .is_some_and(|x| !x.fenced && x.registration.broker_epoch == epoch);
            if !ok {
                return Err(ControllerError::new(
                    rcodes::INELIGIBLE_REPLICA,
                    format!("broker {b} (epoch {epoch}) is fenced or has another broker epoch"),
                ));
            }
        }
        if isr == p.isr {
            return Ok((
                PartitionState {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr,
                    replicas: p.replicas.clone(),
                },
                Vec::new(),
            ));
        }
        let min_isr = image
            .configs
            .get(&(ConfigResource::Topic, topic.name.clone()))
            .and_then(|c| c.get("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.cfg.min_insync_replicas);
        // KIP-966: the ELR exists only while the ISR is below min.insync.replicas. Once the
        // ISR is back at min, the HW advances again without the ELR members, so they no longer
        // hold everything committed and must not stay electable (found by simulator seed 13).
        let mut elr: Vec<i32> = if isr.len() >= min_isr {
            Vec::new()
        } else {
            p.elr.iter().copied().filter(|b| !isr.contains(b)).collect()
        };
        if isr.len() < min_isr {
            for &b in &p.isr {
                if !isr.contains(&b) && !elr.contains(&b) {
                    elr.push(b);
                }
            }
        }
        // KIP-455: the ISR change that brings in the last target replica also completes a
        // reassignment in progress (the removing replicas go; a removed leader hands over).
        let mut fields = PartitionFields::of(p);
        fields.isr = isr;
        fields.elr = elr;
        fields.complete_reassignment(image);
        let next = PartitionState {
            leader: fields.leader,
            leader_epoch: p.leader_epoch + i32::from(fields.leader != p.leader),
            partition_epoch: p.partition_epoch + 1,
            isr: fields.isr.clone(),
            replicas: fields.replicas.clone(),
        };
        if fields.replicas != p.replicas {
            log::info!(
                "controller: reassignment of {}-{} complete: replicas {:?} (ISR {:?}, leader {})",
                topic.name,
                req.partition,
                fields.replicas,
                fields.isr,
                fields.leader
            );
        }
        let record = fields
            .change_from(req.topic_id, req.partition, p)
            .expect("the ISR changes");
        Ok((
            next,
            self.stage(vec![MetadataRecord::PartitionChange(record)])?,
        ))
    }
}
