//! The topology part of `tern cluster info`: the brokers (id, listeners, rack, alive or fenced:
//! DescribeCluster v2 with `include_fenced_brokers`), the metadata quorum (DescribeQuorum: the
//! leader, its epoch, the high watermark, each voter's and observer's log end and lag = leader
//! log end - its log end), and the partitions without a leader (Metadata). Works against a
//! standalone node too (one broker, one voter).

use anyhow::{Result, bail};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::DescribeQuorumResponse;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};

use super::admin::err_name;
use super::{Client, table};
use crate::cluster::status::{QuorumStatus, ReplicaStatus};

/// The metadata log's partition (DescribeQuorum names it).
const METADATA_TOPIC: &str = "__cluster_metadata";

/// Prints the brokers, the quorum and the leaderless partitions of the cluster behind `addr`;
/// returns the id of the broker at `addr` when it can tell (for its broker configs).
pub fn print(c: &mut Client, addr: &str) -> Result<Option<i32>> {
    let mut dc = DescribeClusterRequest::default();
    dc.include_fenced_brokers = true;
    let resp = c.call(2, &dc)?;
    if resp.error_code != 0 {
        bail!("DescribeCluster: {}", err_name(resp.error_code));
    }
    println!("Cluster id: {}", resp.cluster_id);
    println!("Controller: {}", resp.controller_id.0);
    // A fresh connection: a broker without DescribeQuorum closes the one it is asked on.
    let quorum = Client::connect(addr).and_then(|mut q| describe_quorum(&mut q));
    let controller_listeners = |id: i32| -> Vec<String> {
        quorum.as_ref().map_or_else(
            |_| Vec::new(),
            |(_, r)| {
                r.nodes
                    .iter()
                    .filter(|n| n.node_id.0 == id)
                    .flat_map(|n| n.listeners.iter())
                    .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                    .collect()
            },
        )
    };
    let mut rows = vec![
        ["BROKER", "LISTENERS", "RACK", "STATE"]
            .map(str::to_string)
            .to_vec(),
    ];
    // The broker this connection reached (the first reachable one of a bootstrap list).
    let peer = c.peer_addr();
    let mut here = None;
    for b in &resp.brokers {
        let endpoint = format!("{}:{}", b.host, b.port);
        let reached = peer.is_some_and(|p| {
            p.port() == b.port as u16
                && (p.ip().to_string() == b.host.as_str() || p.ip().is_loopback())
        });
        if reached
            && (here.is_none() || peer.is_some_and(|p| p.ip().to_string() == b.host.as_str()))
        {
            here = Some(b.broker_id.0);
        }
        let mut listeners = vec![endpoint];
        listeners.extend(controller_listeners(b.broker_id.0));
        rows.push(vec![
            b.broker_id.0.to_string(),
            listeners.join(","),
            b.rack
                .as_ref()
                .map_or_else(|| "-".into(), |r| r.to_string()),
            if b.is_fenced { "fenced" } else { "alive" }.to_string(),
        ]);
    }
    print!("{}", table(&rows));
    println!();
    match &quorum {
        Ok((status, _)) => print_quorum(status),
        Err(e) => println!("Quorum: unavailable ({e:#})"),
    }
    println!();
    print_leaderless(c)?;
    Ok(here.or_else(|| resp.brokers.first().map(|b| b.broker_id.0)))
}

fn describe_quorum(c: &mut Client) -> Result<(QuorumStatus, DescribeQuorumResponse)> {
    let mut p = PartitionData::default();
    p.partition_index = 0;
    let mut t = TopicData::default();
    t.topic_name = TopicName(super::admin::sb(METADATA_TOPIC));
    t.partitions = vec![p];
    let mut req = DescribeQuorumRequest::default();
    req.topics = vec![t];
    let resp = c.call(2, &req)?;
    if resp.error_code != 0 {
        bail!("DescribeQuorum: {}", err_name(resp.error_code));
    }
    let Some(p) = resp.topics.first().and_then(|t| t.partitions.first()) else {
        bail!("DescribeQuorum: no partition in the answer");
    };
    if p.error_code != 0 {
        bail!("DescribeQuorum: {}", err_name(p.error_code));
    }
    let replicas = |v: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
        v.iter()
            .map(|r| ReplicaStatus {
                replica_id: r.replica_id.0,
                log_end_offset: r.log_end_offset,
                last_fetch_ms: r.last_fetch_timestamp,
                last_caught_up_ms: r.last_caught_up_timestamp,
            })
            .collect()
    };
    let status = QuorumStatus {
        leader_id: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: replicas(&p.current_voters),
        observers: replicas(&p.observers),
    };
    Ok((status, resp))
}

fn print_quorum(q: &QuorumStatus) {
    println!(
        "Quorum: leader {}  epoch {}  high watermark {}",
        q.leader_id, q.leader_epoch, q.high_watermark
    );
    let leader_end = q
        .voters
        .iter()
        .find(|v| v.replica_id == q.leader_id)
        .map(|v| v.log_end_offset);
    let lag = |leo: i64| match leader_end {
        Some(end) if leo >= 0 => (end - leo).max(0).to_string(),
        _ => "-".to_string(),
    };
    let mut rows = vec![
        ["REPLICA", "ROLE", "LOG-END", "LAG"]
            .map(str::to_string)
            .to_vec(),
    ];
    for (v, (_, voter_lag)) in q.voters.iter().zip(q.voter_lags()) {
        let role = if v.replica_id == q.leader_id {
            "leader"
        } else {
            "follower"
        };
        rows.push(vec![
            v.replica_id.to_string(),
            role.to_string(),
            v.log_end_offset.to_string(),
            voter_lag.map_or_else(|| "-".into(), |l| l.to_string()),
        ]);
    }
    for o in &q.observers {
        rows.push(vec![
            o.replica_id.to_string(),
            "observer".to_string(),
            o.log_end_offset.to_string(),
            lag(o.log_end_offset),
        ]);
    }
    print!("{}", table(&rows));
}

fn print_leaderless(c: &mut Client) -> Result<()> {
    let md = super::admin::metadata(c, None)?;
    let mut rows = vec![
        ["TOPIC", "PARTITION", "REPLICAS", "ISR"]
            .map(str::to_string)
            .to_vec(),
    ];
    let ids = |v: &[kafka_protocol::messages::BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for t in &md.topics {
        let name = t.name.as_ref().map_or("", |n| n.0.as_str());
        for p in &t.partitions {
            if p.leader_id.0 < 0 {
                rows.push(vec![
                    name.to_string(),
                    p.partition_index.to_string(),
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                ]);
            }
        }
    }
    if rows.len() == 1 {
        println!("Partitions without a leader: none");
    } else {
        println!("Partitions without a leader: {}", rows.len() - 1);
        print!("{}", table(&rows));
    }
    Ok(())
}
