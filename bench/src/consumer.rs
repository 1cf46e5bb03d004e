//! One consumer thread: assigned partitions directly (no consumer group), starts at the latest
//! offset (ListOffsets), long-polls Fetch on each leader and records end-to-end latency as
//! `now - send time` carried in the record value (falling back to the record's CreateTime).

use crate::admin::{latest_offsets, topic_name};
use crate::clock::now_ns;
use crate::parse;
use crate::stats::Shared;
use crate::wire::Conn;
use anyhow::{Result, bail};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;

pub struct ConsumerCfg {
    pub topic: String,
    /// (partition, leader node) pairs assigned to this consumer.
    pub parts: Vec<(i32, i32)>,
    pub addr_of: HashMap<i32, String>,
    pub max_wait_ms: i32,
}

/// The send time (ns) of a consumed record: the value's first 8 bytes when they hold a
/// plausible wall-clock time (within a day of now), else the CreateTime in ms.
#[inline]
pub fn send_time(ts_ms: i64, value: &[u8]) -> u64 {
    if value.len() >= 8 {
        let t = u64::from_le_bytes(value[..8].try_into().unwrap());
        let ms = (t / 1_000_000) as i64;
        if (ms - ts_ms).abs() < 86_400_000 {
            return t;
        }
    }
    (ts_ms.max(0) as u64) * 1_000_000
}

struct Leader {
    conn: Conn,
    parts: Vec<i32>,
    offsets: Vec<i64>,
}

pub fn spawn(cfg: ConsumerCfg, shared: Arc<Shared>, ready: Arc<AtomicUsize>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            if let Err(e) = run(&cfg, &shared, &ready) {
                shared.fail(format!("consumer on {}: {e:#}", cfg.topic));
            }
        })
        .expect("spawn consumer")
}

fn run(cfg: &ConsumerCfg, shared: &Shared, ready: &AtomicUsize) -> Result<()> {
    let mut by_node: HashMap<i32, Vec<i32>> = HashMap::new();
    for (p, node) in &cfg.parts {
        by_node.entry(*node).or_default().push(*p);
    }
    let mut leaders = Vec::new();
    for (node, parts) in by_node {
        let mut conn = Conn::connect(&cfg.addr_of[&node])?;
        let offsets = latest_offsets(&mut conn, &cfg.topic, &parts)?;
        leaders.push(Leader {
            conn,
            parts,
            offsets,
        });
    }
    ready.fetch_add(1, Relaxed);
    let name = topic_name(&cfg.topic);
    let mut times = Vec::new();
    while !shared.stop_consumers.load(Relaxed) {
        for l in &mut leaders {
            let v = l.conn.versions.fetch;
            let partitions = l
                .parts
                .iter()
                .zip(&l.offsets)
                .map(|(p, o)| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(*o)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(4 << 20)
                })
                .collect();
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(cfg.max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(64 << 20)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name.clone())
                        .with_partitions(partitions),
                ]);
            let resp = l.conn.call(&req, v)?;
            let now = now_ns();
            if resp.error_code != 0 {
                bail!("Fetch v{v}: top-level error {}", resp.error_code);
            }
            for t in &resp.responses {
                for pd in &t.partitions {
                    let Some(i) = l.parts.iter().position(|p| *p == pd.partition_index) else {
                        bail!("Fetch v{v}: unrequested partition {}", pd.partition_index);
                    };
                    if pd.error_code != 0 {
                        bail!(
                            "Fetch v{v} {}/{} at offset {}: error {}",
                            cfg.topic,
                            pd.partition_index,
                            l.offsets[i],
                            pd.error_code
                        );
                    }
                    let Some(recs) = &pd.records else { continue };
                    let walked = parse::walk(recs, l.offsets[i], |_, ts_ms, v| {
                        times.push(send_time(ts_ms, v));
                    })?;
                    if let Some(next) = walked.next_offset {
                        l.offsets[i] = l.offsets[i].max(next);
                    }
                }
            }
            if !times.is_empty() {
                shared.record_consumed(now, &times);
                times.clear();
            }
        }
    }
    Ok(())
}
