//! Produce acknowledgements: the per-connection reader thread that matches Produce responses to
//! in-flight requests (in order, by correlation id) and records produce latency, and the
//! dry-run stand-in that "acks" at once and parses the batches as a consumer would.

use crate::clock::now_ns;
use crate::parse;
use crate::stats::Shared;
use crate::wire::{decode_response, read_frame};
use kafka_protocol::messages::ProduceRequest;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

/// The records of one partition inside an in-flight request: `times[start..end]`.
pub struct PartRange {
    pub partition: i32,
    pub start: usize,
    pub end: usize,
}

pub struct InFlight {
    pub corr: i32,
    pub ranges: Vec<PartRange>,
    /// Intended send time of every record in the request.
    pub times: Vec<u64>,
    /// Request frame size.
    pub bytes: usize,
}

pub fn spawn_reader(
    mut stream: TcpStream,
    rx: Receiver<InFlight>,
    version: i16,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("acks".into())
        .spawn(move || {
            while let Ok(inf) = rx.recv() {
                if let Err(e) = handle(&mut stream, &inf, version, &shared) {
                    shared.fail(format!("{e:#}"));
                    // Keep draining the channel so the producer never blocks forever.
                    while rx.recv().is_ok() {}
                    return;
                }
            }
        })
        .expect("spawn ack reader")
}

fn handle(
    stream: &mut TcpStream,
    inf: &InFlight,
    version: i16,
    shared: &Shared,
) -> anyhow::Result<()> {
    let frame = read_frame(stream).map_err(|e| {
        e.context(format!(
            "Produce v{version} corr {} ({} partitions, {} records, {} bytes)",
            inf.corr,
            inf.ranges.len(),
            inf.times.len(),
            inf.bytes
        ))
    })?;
    let now = now_ns();
    let (corr, resp) = decode_response::<ProduceRequest>(frame, version)?;
    if corr != inf.corr {
        anyhow::bail!(
            "Produce v{version}: response correlation id {corr}, expected {} (responses out of order)",
            inf.corr
        );
    }
    let mut answered = 0;
    for t in &resp.responses {
        for p in &t.partition_responses {
            let Some(r) = inf.ranges.iter().find(|r| r.partition == p.index) else {
                anyhow::bail!(
                    "Produce v{version}: response for partition {} that was not in the request",
                    p.index
                );
            };
            answered += 1;
            let times = &inf.times[r.start..r.end];
            if p.error_code == 0 {
                shared.record_acks(now, times);
            } else {
                shared.record_error(p.error_code, times.len() as u64);
            }
        }
    }
    if answered != inf.ranges.len() {
        anyhow::bail!(
            "Produce v{version}: response answers {answered} partitions, request had {}",
            inf.ranges.len()
        );
    }
    Ok(())
}

/// Dry run: ack the request at once and walk its batches like a consumer (e2e from the value).
pub fn dry_run_ack(req: &ProduceRequest, times: &[u64], shared: &Shared) {
    let now = now_ns();
    shared.record_acks(now, times);
    let mut seen = Vec::with_capacity(times.len());
    for t in &req.topic_data {
        for p in &t.partition_data {
            if let Some(rec) = &p.records {
                let _ = parse::walk(rec, 0, |_, ts_ms, v| {
                    seen.push(crate::consumer::send_time(ts_ms, v));
                });
            }
        }
    }
    shared.record_consumed(now_ns(), &seen);
}
