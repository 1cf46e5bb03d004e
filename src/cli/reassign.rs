//! `tern topic reassign`: partition reassignment (KIP-455) from the command line, as Kafka's
//! `kafka-reassign-partitions.sh` for one partition at a time: `--replicas 1,2,3` starts a move
//! (AlterPartitionReassignments), `--cancel` reverts one in progress, `--list` shows the moves
//! in progress (ListPartitionReassignments), `--throttle BYTES` sets
//! `leader.replication.throttled.rate` and `follower.replication.throttled.rate` on the brokers
//! first, and `--wait` polls until the move is done, prints the final replicas and ISR, and
//! then removes a throttle it set.

use std::time::Duration;

use anyhow::{Result, bail};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};

use super::Client;
use super::admin::{err_name, sb};
use crate::cluster::replication::throttle::{FOLLOWER_RATE_KEY, LEADER_RATE_KEY};

/// How often `--wait` asks whether the move is done.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// What to do (from the flags).
pub struct Reassign<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub replicas: Option<&'a str>,
    pub throttle: Option<u64>,
    pub list: bool,
    pub cancel: bool,
    pub wait: bool,
}

/// "1,2,3" -> [1, 2, 3].
fn parse_replicas(s: &str) -> Result<Vec<i32>> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<i32>()
                .map_err(|_| anyhow::anyhow!("bad broker id {x:?} in --replicas"))
        })
        .collect()
}

pub fn run(addr: &str, r: &Reassign) -> Result<()> {
    let actions = [r.replicas.is_some(), r.cancel, r.list]
        .iter()
        .filter(|&&x| x)
        .count();
    if actions != 1 {
        bail!("give exactly one of --replicas, --cancel, --list");
    }
    if r.list {
        if r.throttle.is_some() || r.wait {
            bail!("--list takes no --throttle or --wait");
        }
        return list(addr, r.topic, r.partition);
    }
    let Some(partition) = r.partition else {
        bail!("--partition is required with --replicas and --cancel");
    };
    let target = r.replicas.map(parse_replicas).transpose()?;
    if let Some(rate) = r.throttle {
        let set = [
            format!("{LEADER_RATE_KEY}={rate}"),
            format!("{FOLLOWER_RATE_KEY}={rate}"),
        ];
        super::admin::alter_config(addr, 4, "", &set, &[])?;
    }
    alter(addr, r.topic, partition, target.clone())?;
    match &target {
        Some(t) => println!("{}-{partition}: reassignment to {t:?} started", r.topic),
        None => println!("{}-{partition}: reassignment cancelled", r.topic),
    }
    if r.wait {
        wait(addr, r.topic, partition)?;
        if r.throttle.is_some() {
            let keys = [LEADER_RATE_KEY.to_string(), FOLLOWER_RATE_KEY.to_string()];
            super::admin::alter_config(addr, 4, "", &[], &keys)?;
            println!("throttle removed");
        }
    }
    Ok(())
}

fn alter(addr: &str, topic: &str, partition: i32, target: Option<Vec<i32>>) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let mut p = ReassignablePartition::default();
    p.partition_index = partition;
    p.replicas = target.map(|t| t.into_iter().map(BrokerId).collect());
    let mut t = ReassignableTopic::default();
    t.name = TopicName(sb(topic));
    t.partitions = vec![p];
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.timeout_ms = 30_000;
    req.allow_replication_factor_change = true;
    req.topics = vec![t];
    let resp = c.call(1, &req)?;
    if resp.error_code != 0 {
        bail!(
            "AlterPartitionReassignments: {}: {}",
            err_name(resp.error_code),
            resp.error_message.as_deref().unwrap_or("")
        );
    }
    for t in &resp.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "{}-{}: {}: {}",
                    t.name.0,
                    p.partition_index,
                    err_name(p.error_code),
                    p.error_message.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// (partition, replicas, adding, removing) of the moves in progress of `topic`.
type Ongoing = Vec<(i32, Vec<i32>, Vec<i32>, Vec<i32>)>;

fn ongoing(c: &mut Client, topic: &str, partition: Option<i32>) -> Result<Ongoing> {
    let mut req = ListPartitionReassignmentsRequest::default();
    req.timeout_ms = 30_000;
    let partitions = match partition {
        Some(p) => vec![p],
        None => super::admin::partitions_of(c, topic)?,
    };
    let mut t = ListPartitionReassignmentsTopics::default();
    t.name = TopicName(sb(topic));
    t.partition_indexes = partitions;
    req.topics = Some(vec![t]);
    let resp = c.call(0, &req)?;
    if resp.error_code != 0 {
        bail!(
            "ListPartitionReassignments: {}: {}",
            err_name(resp.error_code),
            resp.error_message.as_deref().unwrap_or("")
        );
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    let mut out: Ongoing = resp
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

fn list(addr: &str, topic: &str, partition: Option<i32>) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let moves = ongoing(&mut c, topic, partition)?;
    for (p, replicas, adding, removing) in &moves {
        println!("{topic}-{p}: replicas {replicas:?} adding {adding:?} removing {removing:?}");
    }
    println!("{} reassignments in progress", moves.len());
    Ok(())
}

fn wait(addr: &str, topic: &str, partition: i32) -> Result<()> {
    let mut c = Client::connect(addr)?;
    while !ongoing(&mut c, topic, Some(partition))?.is_empty() {
        std::thread::sleep(WAIT_POLL);
    }
    let meta = super::admin::metadata(&mut c, Some(&[topic]))?;
    let p = meta
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition);
    match p {
        Some(p) => {
            let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
            println!(
                "{topic}-{partition}: done: replicas {:?} isr {:?} leader {}",
                ids(&p.replica_nodes),
                ids(&p.isr_nodes),
                p.leader_id.0
            );
        }
        None => println!("{topic}-{partition}: done"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_parse_from_a_comma_list() {
        assert_eq!(parse_replicas("1, 2,3").unwrap(), vec![1, 2, 3]);
        assert!(parse_replicas("1,x").is_err());
        assert!(
            parse_replicas("").unwrap().is_empty(),
            "the broker refuses it"
        );
    }
}
