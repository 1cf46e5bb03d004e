//! Topic decisions: CreateTopics (replication factor, -1 = default.replication.factor, or an
//! explicit assignment), CreatePartitions and DeleteTopics, validated as Kafka's controller does
//! and placed over the unfenced brokers by `placement`.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::placement::{self, Candidate};
use super::{Controller, ControllerError, Decision, codes};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{
    ConfigResource, MetadataRecord, NO_LEADER, PartitionRecord,
};

/// One topic of a CreateTopics request.
#[derive(Clone, Debug, Default)]
pub struct CreateTopic {
    pub name: String,
    /// Chosen by the caller (random in the broker, seeded in the simulator).
    pub topic_id: Uuid,
    /// -1 = the default.
    pub num_partitions: i32,
    /// -1 = default.replication.factor.
    pub replication_factor: i16,
    /// Explicit replicas per partition 0..n (then both counts must be -1).
    pub assignments: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// A created (or, with validate_only, creatable) topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// CreatePartitions for one topic: grow to `count` partitions.
#[derive(Clone, Debug, Default)]
pub struct CreatePartitions {
    pub name: String,
    pub count: i32,
    /// Replicas of each new partition (empty = placed by the controller).
    pub assignments: Vec<Vec<i32>>,
}

impl Controller {
    /// CreateTopics: per-topic outcomes and the one batch that creates all the accepted ones.
    pub fn create_topics(
        &mut self,
        topics: &[CreateTopic],
        validate_only: bool,
    ) -> Decision<(Vec<Decision<CreatedTopic>>, Vec<MetadataRecord>)> {
        self.require_active()?;
        let mut names = BTreeSet::new();
        let duplicates: BTreeSet<&str> = topics
            .iter()
            .filter(|t| !names.insert(t.name.as_str()))
            .map(|t| t.name.as_str())
            .collect();
        let mut scratch = self.working.clone();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for t in topics {
            let outcome = if duplicates.contains(t.name.as_str()) {
                Err(ControllerError::new(
                    codes::INVALID_REQUEST,
                    format!("topic {} appears twice in the request", t.name),
                ))
            } else {
                self.plan_topic(&scratch, t)
            };
            match outcome {
                Ok((created, batch)) => {
                    for r in &batch {
                        scratch.apply(r).expect("a planned topic applies");
                    }
                    records.extend(batch);
                    results.push(Ok(created));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if validate_only {
            records.clear();
        }
        Ok((results, self.stage(records)?))
    }

    fn plan_topic(
        &self,
        image: &MetadataImage,
        t: &CreateTopic,
    ) -> Decision<(CreatedTopic, Vec<MetadataRecord>)> {
        crate::metadata::validate_topic_name(&t.name)
            .map_err(|m| ControllerError::new(codes::INVALID_TOPIC_EXCEPTION, m))?;
        if image.topic_by_name(&t.name).is_some() {
            return Err(ControllerError::new(
                codes::TOPIC_ALREADY_EXISTS,
                format!("Topic '{}' already exists.", t.name),
            ));
        }
        if image.topics.contains_key(&t.topic_id) || t.topic_id.is_nil() {
            return Err(ControllerError::new(
                codes::INVALID_REQUEST,
                "topic id is taken or nil",
            ));
        }
        let assignments = if t.assignments.is_empty() {
            let partitions = if t.num_partitions == -1 {
                self.cfg.default_partitions
            } else {
                t.num_partitions
            };
            if partitions < 1 || partitions > self.cfg.max_partitions_per_topic {
                return Err(ControllerError::new(
                    codes::INVALID_PARTITIONS,
                    format!(
                        "Number of partitions must be 1..={}, got {partitions}.",
                        self.cfg.max_partitions_per_topic
                    ),
                ));
            }
            let rf = if t.replication_factor == -1 {
                self.cfg.default_replication_factor
            } else {
                t.replication_factor
            };
            self.place(image, 0, partitions as usize, rf)?
        } else {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(ControllerError::new(
                    codes::INVALID_REQUEST,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            if t.assignments.len() as i32 > self.cfg.max_partitions_per_topic {
                return Err(ControllerError::new(
                    codes::INVALID_PARTITIONS,
                    "too many partitions",
                ));
            }
            let rf = t.assignments[0].len();
            if let Some(other) = t.assignments.iter().find(|a| a.len() != rf) {
                return Err(ControllerError::new(
                    codes::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                        other.len()
                    ),
                ));
            }
            for (p, a) in t.assignments.iter().enumerate() {
                check_assignment(image, p, a)?;
            }
            t.assignments.clone()
        };
        let mut records = vec![MetadataRecord::Topic {
            name: t.name.clone(),
            topic_id: t.topic_id,
        }];
        for (name, value) in &t.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: t.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
        records.extend(partition_records(image, t.topic_id, 0, &assignments));
        let created = CreatedTopic {
            topic_id: t.topic_id,
            num_partitions: assignments.len() as i32,
            replication_factor: assignments[0].len() as i16,
        };
        Ok((created, records))
    }

    /// CreatePartitions for one topic.
    pub fn create_partitions(
        &mut self,
        req: &CreatePartitions,
        validate_only: bool,
    ) -> Decision<Vec<MetadataRecord>> {
        self.require_active()?;
        let image = &self.working;
        let t = image.topic_by_name(&req.name).ok_or_else(|| {
            ControllerError::new(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Topic '{}' does not exist.", req.name),
            )
        })?;
        let current = t.partitions.len() as i32;
        if req.count <= current {
            return Err(ControllerError::new(
                codes::INVALID_PARTITIONS,
                format!(
                    "Topic currently has {current} partitions, which is higher than or equal to the requested {}.",
                    req.count
                ),
            ));
        }
        if req.count > self.cfg.max_partitions_per_topic {
            return Err(ControllerError::new(
                codes::INVALID_PARTITIONS,
                format!("at most {} partitions", self.cfg.max_partitions_per_topic),
            ));
        }
        let rf = t.partitions[&0].replicas.len();
        let new = (req.count - current) as usize;
        let assignments = if req.assignments.is_empty() {
            self.place(image, current as usize, new, rf as i16)?
        } else {
            if req.assignments.len() != new {
                return Err(ControllerError::new(
                    codes::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "{} new partitions but {} assignments",
                        new,
                        req.assignments.len()
                    ),
                ));
            }
            for (i, a) in req.assignments.iter().enumerate() {
                if a.len() != rf {
                    return Err(ControllerError::new(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "partition {} has {} replicas, the topic has {rf}",
                            current as usize + i,
                            a.len()
                        ),
                    ));
                }
                check_assignment(image, current as usize + i, a)?;
            }
            req.assignments.clone()
        };
        let records = partition_records(image, t.id, current, &assignments);
        if validate_only {
            return Ok(Vec::new());
        }
        self.stage(records)
    }

    /// DeleteTopics for one topic.
    pub fn delete_topic(&mut self, name: &str) -> Decision<(Uuid, Vec<MetadataRecord>)> {
        self.require_active()?;
        let id = self
            .working
            .topic_by_name(name)
            .map(|t| t.id)
            .ok_or_else(|| {
                ControllerError::new(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic '{name}' does not exist."),
                )
            })?;
        Ok((
            id,
            self.stage(vec![MetadataRecord::RemoveTopic { topic_id: id }])?,
        ))
    }

    /// Placement over the unfenced brokers, with their current loads.
    fn place(
        &self,
        image: &MetadataImage,
        first: usize,
        partitions: usize,
        rf: i16,
    ) -> Decision<Vec<Vec<i32>>> {
        let mut candidates: Vec<Candidate> = image
            .unfenced_brokers()
            .map(|b| Candidate {
                id: b.registration.broker_id,
                rack: b.registration.rack.clone(),
                leaders: 0,
                replicas: 0,
            })
            .collect();
        if rf < 1 || rf as usize > candidates.len() {
            return Err(ControllerError::new(
                codes::INVALID_REPLICATION_FACTOR,
                format!(
                    "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                    candidates.len()
                ),
            ));
        }
        for t in image.topics.values() {
            for p in t.partitions.values() {
                for c in candidates.iter_mut() {
                    if p.leader == c.id {
                        c.leaders += 1;
                    }
                    if p.replicas.contains(&c.id) {
                        c.replicas += 1;
                    }
                }
            }
        }
        Ok(placement::place(
            &mut candidates,
            first,
            partitions,
            rf as usize,
        ))
    }
}

fn check_assignment(image: &MetadataImage, partition: usize, replicas: &[i32]) -> Decision<()> {
    let bad = |m: String| Err(ControllerError::new(codes::INVALID_REPLICA_ASSIGNMENT, m));
    if replicas.is_empty() {
        return bad(format!(
            "The manual partition assignment includes an empty replica list (partition {partition})."
        ));
    }
    if let Some((_, b)) = replicas
        .iter()
        .enumerate()
        .find(|(i, b)| replicas[..*i].contains(b))
    {
        return bad(format!(
            "The manual partition assignment includes the broker {b} more than once (partition {partition})."
        ));
    }
    if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
        return bad(format!(
            "The manual partition assignment includes broker {b}, but no broker with that ID is registered."
        ));
    }
    if !replicas.iter().any(|b| image.is_unfenced(*b)) {
        return bad(format!(
            "All brokers specified in the manual partition assignment for partition {partition} are fenced."
        ));
    }
    Ok(())
}

/// New partitions `first..`: leader = first unfenced replica, ISR = the unfenced replicas.
fn partition_records(
    image: &MetadataImage,
    topic_id: Uuid,
    first: i32,
    assignments: &[Vec<i32>],
) -> Vec<MetadataRecord> {
    assignments
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|b| image.is_unfenced(*b))
                .collect();
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: first + i as i32,
                replicas: replicas.clone(),
                leader: isr.first().copied().unwrap_or(NO_LEADER),
                isr,
                elr: Vec::new(),
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
        })
        .collect()
}
