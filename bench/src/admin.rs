//! Control-plane requests: Metadata (partition leaders and their advertised addresses),
//! CreateTopics / DeleteTopics for the bench topics, and ListOffsets (latest) for consumers.

use crate::wire::Conn;
use anyhow::{Result, bail};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, ListOffsetsRequest, MetadataRequest,
    TopicName,
    create_topics_request::CreatableTopic,
    delete_topics_request::DeleteTopicState,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Leaders of one topic's partitions, indexed by partition.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub leaders: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    /// node id -> "host:port" as advertised.
    pub brokers: HashMap<i32, String>,
    pub topics: Vec<TopicInfo>,
}

fn metadata(c: &mut Conn, names: &[String]) -> Result<(Cluster, Vec<i16>)> {
    let v = c.versions.metadata;
    let topics = names
        .iter()
        .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
        .collect();
    let req = MetadataRequest::default()
        .with_topics(Some(topics))
        .with_allow_auto_topic_creation(false);
    let resp = c.call(&req, v)?;
    let brokers = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut infos = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|x| x.0.as_str()) == Some(n.as_str()));
        let Some(t) = t else {
            errors.push(3); // UNKNOWN_TOPIC_OR_PARTITION
            continue;
        };
        errors.push(t.error_code);
        let mut leaders = vec![-1; t.partitions.len()];
        for p in &t.partitions {
            if let Some(slot) = leaders.get_mut(p.partition_index as usize) {
                *slot = p.leader_id.0;
            }
        }
        infos.push(TopicInfo {
            name: n.clone(),
            leaders,
        });
    }
    Ok((
        Cluster {
            brokers,
            topics: infos,
        },
        errors,
    ))
}

/// Create the topics that are missing (with `partitions` each) and wait until Metadata shows
/// every partition with a leader. An existing topic with another partition count is an error.
pub fn ensure_topics(
    c: &mut Conn,
    names: &[String],
    partitions: usize,
    replication: i16,
) -> Result<Cluster> {
    let (_, errors) = metadata(c, names)?;
    let missing: Vec<&String> = names
        .iter()
        .zip(&errors)
        .filter(|(_, e)| **e != 0)
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        let topics = missing
            .iter()
            .map(|n| {
                CreatableTopic::default()
                    .with_name(topic_name(n))
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(replication)
            })
            .collect();
        let req = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(30_000);
        let resp = c.call(&req, c.versions.create_topics)?;
        for t in &resp.topics {
            // 36 = TOPIC_ALREADY_EXISTS (a race with another creator) is fine.
            if t.error_code != 0 && t.error_code != 36 {
                bail!(
                    "CreateTopics v{} {}: error {} {:?}",
                    c.versions.create_topics,
                    t.name.0.as_str(),
                    t.error_code,
                    t.error_message.as_ref().map(|m| m.as_str())
                );
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (cl, errors) = metadata(c, names)?;
        for t in &cl.topics {
            if !t.leaders.is_empty() && t.leaders.len() != partitions {
                bail!(
                    "topic {} exists with {} partitions, the workload wants {partitions} \
                     (use another --topic-prefix)",
                    t.name,
                    t.leaders.len()
                );
            }
        }
        let ready = errors.iter().all(|e| *e == 0)
            && cl.topics.len() == names.len()
            && cl
                .topics
                .iter()
                .all(|t| t.leaders.len() >= partitions && t.leaders.iter().all(|l| *l >= 0));
        if ready {
            return Ok(cl);
        }
        if Instant::now() > deadline {
            bail!("topics not ready after 30 s (metadata errors {errors:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn delete_topics(c: &mut Conn, names: &[String]) -> Result<()> {
    let v = c.versions.delete_topics;
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if v >= 6 {
        req.topics = names
            .iter()
            .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
            .collect();
    } else {
        req.topic_names = names.iter().map(|n| topic_name(n)).collect();
    }
    c.call(&req, v)?;
    Ok(())
}

/// Latest offset of each partition in `parts` of `topic`.
pub fn latest_offsets(c: &mut Conn, topic: &str, parts: &[i32]) -> Result<Vec<i64>> {
    offsets_at(c, topic, parts, -1)
}

/// ListOffsets of each partition in `parts` for `timestamp` (-1 latest, -2 earliest).
///
/// Metadata may name a partition's leader before that broker has applied the change (a topic
/// just created in a cluster): the retriable errors UNKNOWN_TOPIC_OR_PARTITION (3),
/// LEADER_NOT_AVAILABLE (5) and NOT_LEADER_OR_FOLLOWER (6) are retried every 100 ms for up to
/// `LIST_OFFSETS_RETRY`; any other error, or one still there after that, fails the run.
pub fn offsets_at(c: &mut Conn, topic: &str, parts: &[i32], timestamp: i64) -> Result<Vec<i64>> {
    let deadline = Instant::now() + LIST_OFFSETS_RETRY;
    loop {
        match offsets_once(c, topic, parts, timestamp)? {
            Ok(out) => return Ok(out),
            Err((_, code)) if RETRIABLE.contains(&code) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((p, code)) => {
                bail!(
                    "ListOffsets v{} {topic}/{p}: error {code}",
                    c.versions.list_offsets
                )
            }
        }
    }
}

/// How long `offsets_at` retries a retriable partition error.
const LIST_OFFSETS_RETRY: Duration = Duration::from_secs(30);
/// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER.
const RETRIABLE: [i16; 3] = [3, 5, 6];

/// One ListOffsets round: the offsets, or the first partition with an error and its code.
fn offsets_once(
    c: &mut Conn,
    topic: &str,
    parts: &[i32],
    timestamp: i64,
) -> Result<std::result::Result<Vec<i64>, (i32, i16)>> {
    let v = c.versions.list_offsets;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                ),
        ]);
    let resp = c.call(&req, v)?;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let r = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|r| r.partition_index == *p);
        match r {
            Some(r) if r.error_code == 0 => out.push(r.offset),
            Some(r) => return Ok(Err((*p, r.error_code))),
            None => bail!("ListOffsets v{v} {topic}/{p}: partition missing from response"),
        }
    }
    Ok(Ok(out))
}
