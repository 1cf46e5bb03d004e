//! The `run` command: set up topics, start consumers then producers, print a live line once a
//! second, stop after warm-up + duration, and report (summary on stdout, full result as JSON).

use crate::admin::{self, Cluster, TopicInfo};
use crate::cli::{RunArgs, Workload};
use crate::clock::process_cpu;
use crate::consumer::{self, ConsumerCfg};
use crate::lag::saturated;
use crate::producer::{self, ProducerCfg};
use crate::stats::{LagHists, Percentiles, Rate, Shared, new_hist};
use crate::wire::{Conn, Versions};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Serialize)]
pub struct RunResult {
    pub label: String,
    pub bootstrap: String,
    pub dry_run: bool,
    pub versions: Option<Versions>,
    pub workload: Workload,
    pub measured_secs: f64,
    /// Acknowledged records (all sent records for acks=0).
    pub produce: Rate,
    pub consume: Rate,
    pub produce_errors: u64,
    pub produce_error_codes: HashMap<i16, u64>,
    pub produce_latency_ms: Percentiles,
    pub e2e_latency_ms: Percentiles,
    /// Producer lateness against the schedule (fixed rate; measured window), whole lag.
    pub bench_send_lag_ms: Percentiles,
    /// The part of the send lag spent blocked on the broker (no free in-flight slot, socket
    /// writes): backpressure, which the produce latency figures include.
    pub bench_send_wait_broker_ms: Percentiles,
    /// The rest: the generator's own thread being late (pacing sleep overshoot, preemption,
    /// encoding). A measurement fault.
    pub bench_send_lag_own_ms: Percentiles,
    /// Own-lateness p99 above which the run is marked saturated.
    pub generator_saturation_threshold_ms: f64,
    /// The generator could not keep its schedule (fixed rate, own-lateness p99 > threshold):
    /// latency figures include the bench's own delays.
    pub generator_saturated: bool,
    /// CPUs the bench was pinned to (`--cpus`), if any.
    pub bench_cpus: Option<Vec<usize>>,
    /// CPU used by this bench process during the measured window.
    pub bench_cpu_secs: f64,
    pub bench_cpu_percent_of_core: f64,
    pub bench_cpu_ns_per_record: f64,
    pub error: Option<String>,
}

fn dry_cluster(w: &Workload, names: &[String]) -> Cluster {
    Cluster {
        brokers: HashMap::from([(0, "dry-run".to_string())]),
        topics: names
            .iter()
            .map(|n| TopicInfo {
                name: n.clone(),
                leaders: vec![0; w.partitions],
            })
            .collect(),
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let w = args.workload.resolve()?;
    if let Some(cpus) = &args.cpus {
        // Before any thread is spawned: producers, ack readers and consumers inherit it.
        crate::clock::pin_to(&cpus.0).map_err(|e| anyhow::anyhow!("--cpus {:?}: {e}", cpus.0))?;
    }
    let names: Vec<String> = (0..w.topics).map(|i| w.topic_name(i)).collect();
    let (cluster, versions) = if args.dry_run {
        (dry_cluster(&w, &names), None)
    } else {
        let mut c = Conn::connect(&args.bootstrap)?;
        let cl = admin::ensure_topics(&mut c, &names, w.partitions, w.replication_factor)?;
        (cl, Some(c.versions))
    };
    for t in &cluster.topics {
        for l in &t.leaders {
            if !cluster.brokers.contains_key(l) {
                bail!(
                    "{}: leader node {l} is not among the advertised brokers",
                    t.name
                );
            }
        }
    }
    println!("workload: {}", serde_json::to_string(&w)?);
    if let Some(v) = &versions {
        println!("negotiated versions: {}", serde_json::to_string(v)?);
    }
    let shared = Arc::new(Shared::new());
    let ready = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    if !args.dry_run {
        for t in &cluster.topics {
            for c in 0..w.consumers {
                let parts = (0..w.partitions)
                    .filter(|p| p % w.consumers == c)
                    .map(|p| (p as i32, t.leaders[p]))
                    .collect();
                let cfg = ConsumerCfg {
                    topic: t.name.clone(),
                    parts,
                    addr_of: cluster.brokers.clone(),
                    max_wait_ms: w.fetch_max_wait_ms,
                };
                consumers.push(consumer::spawn(cfg, shared.clone(), ready.clone()));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while ready.load(Relaxed) < consumers.len() && !shared.failed() {
            if Instant::now() > deadline {
                bail!("consumers not ready after 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut producers = Vec::new();
    for (ti, t) in cluster.topics.iter().enumerate() {
        for i in 0..w.producers {
            let cfg = ProducerCfg {
                w: w.clone(),
                topic: t.name.clone(),
                leaders: t.leaders.clone(),
                addr_of: cluster.brokers.clone(),
                seed: (ti * 1000 + i) as u64 + 1,
                dry_run: args.dry_run,
            };
            producers.push(producer::spawn(cfg, shared.clone()));
        }
    }

    let mut total_p = new_hist();
    let mut total_e = new_hist();
    let mut total_lag = LagHists::new();
    let start = Instant::now();
    let warm_end = start + w.warmup();
    let end = warm_end + w.duration();
    // Without a warm-up the first interval already counts.
    let mut measuring = w.warmup_s <= 0.0;
    let (mut a0, mut c0, mut cpu0, mut t0) = (0, 0, process_cpu(), start);
    let mut last = (0u64, 0u64, start);
    let mut tick = start;
    let (a1, c1, cpu1, t1) = loop {
        tick += Duration::from_secs(1);
        let now = Instant::now();
        if tick > now {
            std::thread::sleep(tick - now);
        }
        let (ip, ie) = shared.take_interval();
        let il = shared.take_lag();
        let (acked, cons) = (shared.acked.load(Relaxed), shared.consumed.load(Relaxed));
        let sent = shared.sent.load(Relaxed);
        let done_p = if w.acks == 0 { sent } else { acked };
        let dt = last.2.elapsed().as_secs_f64();
        let pp = Percentiles::of(&ip);
        let pe = Percentiles::of(&ie);
        let rps = (done_p - last.0) as f64 / dt;
        let crps = (cons - last.1) as f64 / dt;
        let own_p99 = Percentiles::of(&il.own).p99;
        println!(
            "[{:>4.0}s] prod {:>9.0} rec/s {:>7.1} MB/s p50 {:>7.3} p99 {:>7.3} ms | cons {:>9.0} rec/s e2e p50 {:>7.3} p99 {:>7.3} ms | lag own p99 {:>6.3} ms | err {}{}",
            start.elapsed().as_secs_f64(),
            rps,
            rps * w.record_size as f64 / 1e6,
            pp.p50,
            pp.p99,
            crps,
            pe.p50,
            pe.p99,
            own_p99,
            shared.errors.load(Relaxed),
            if measuring { "" } else { "  (warm-up)" }
        );
        last = (done_p, cons, Instant::now());
        if measuring {
            total_p.add(&ip)?;
            total_e.add(&ie)?;
            total_lag.add(&il);
        }
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            (a0, c0, cpu0, t0) = (done_p, cons, process_cpu(), now);
        }
        if now >= end || shared.failed() {
            break (done_p, cons, process_cpu(), now);
        }
    };
    shared.stop.store(true, Relaxed);
    for p in producers {
        let _ = p.join();
    }
    // Let consumers catch up with what was acknowledged (bounded).
    let catch_up = Instant::now() + Duration::from_secs(5);
    while !args.dry_run
        && shared.consumed.load(Relaxed) < shared.acked.load(Relaxed).max(shared.sent.load(Relaxed))
        && Instant::now() < catch_up
        && w.consumers > 0
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.stop_consumers.store(true, Relaxed);
    for c in consumers {
        let _ = c.join();
    }
    let (ip, ie) = shared.take_interval();
    let il = shared.take_lag();
    if measuring {
        total_p.add(&ip)?;
        total_e.add(&ie)?;
        total_lag.add(&il);
    }
    if args.delete_topics && !args.dry_run {
        let mut c = Conn::connect(&args.bootstrap)?;
        admin::delete_topics(&mut c, &names)?;
    }
    let secs = (t1 - t0).as_secs_f64();
    let cpu = (cpu1.saturating_sub(cpu0)).as_secs_f64();
    let produced = a1 - a0;
    let own = Percentiles::of(&total_lag.own);
    let res = RunResult {
        label: args.label.clone(),
        bootstrap: args.bootstrap.clone(),
        dry_run: args.dry_run,
        versions,
        measured_secs: secs,
        produce: Rate::new(produced, secs, w.record_size),
        consume: Rate::new(c1 - c0, secs, w.record_size),
        produce_errors: shared.errors.load(Relaxed),
        produce_error_codes: shared
            .error_codes
            .lock()
            .unwrap()
            .clone()
            .into_iter()
            .collect(),
        produce_latency_ms: Percentiles::of(&total_p),
        e2e_latency_ms: Percentiles::of(&total_e),
        bench_send_lag_ms: Percentiles::of(&total_lag.total),
        bench_send_wait_broker_ms: Percentiles::of(&total_lag.broker),
        bench_send_lag_own_ms: own.clone(),
        generator_saturation_threshold_ms: args.saturation_ms,
        generator_saturated: saturated(w.rate.is_some(), own.p99, args.saturation_ms),
        bench_cpus: args.cpus.as_ref().map(|c| c.0.clone()),
        bench_cpu_secs: cpu,
        bench_cpu_percent_of_core: cpu / secs.max(1e-9) * 100.0,
        bench_cpu_ns_per_record: cpu * 1e9 / produced.max(1) as f64,
        error: shared.fatal.lock().unwrap().clone(),
        workload: w,
    };
    summary(&res);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&res)?)?;
        println!("wrote {path}");
    }
    if let Some(e) = &res.error {
        bail!("run failed: {e}");
    }
    Ok(())
}

fn summary(r: &RunResult) {
    println!(
        "---- summary{} ----",
        if r.dry_run { " (dry run)" } else { "" }
    );
    println!(
        "produce : {:.0} rec/s  {:.1} MB/s  ({} records in {:.1} s, {} errors {:?})",
        r.produce.records_per_sec,
        r.produce.mb_per_sec,
        r.produce.records,
        r.measured_secs,
        r.produce_errors,
        r.produce_error_codes
    );
    println!("  latency {}", r.produce_latency_ms.line());
    println!(
        "consume : {:.0} rec/s  {:.1} MB/s",
        r.consume.records_per_sec, r.consume.mb_per_sec
    );
    println!("  e2e     {}", r.e2e_latency_ms.line());
    println!(
        "bench cpu: {:.1}% of one core, {:.0} ns per record{}",
        r.bench_cpu_percent_of_core,
        r.bench_cpu_ns_per_record,
        r.bench_cpus
            .as_ref()
            .map(|c| format!(", pinned to CPUs {c:?}"))
            .unwrap_or_default()
    );
    println!(
        "send lag: p99 {:.3} max {:.3} ms = waiting on the broker p99 {:.3} max {:.3} ms + own lateness p99 {:.3} max {:.3} ms",
        r.bench_send_lag_ms.p99,
        r.bench_send_lag_ms.max,
        r.bench_send_wait_broker_ms.p99,
        r.bench_send_wait_broker_ms.max,
        r.bench_send_lag_own_ms.p99,
        r.bench_send_lag_own_ms.max
    );
    if r.generator_saturated {
        println!(
            "GENERATOR SATURATED: own lateness p99 {:.3} ms > {:.3} ms; latencies include the bench's own delays",
            r.bench_send_lag_own_ms.p99, r.generator_saturation_threshold_ms
        );
    } else if r.workload.rate.is_some() {
        println!(
            "generator kept up: own lateness p99 {:.3} ms <= {:.3} ms",
            r.bench_send_lag_own_ms.p99, r.generator_saturation_threshold_ms
        );
    }
}
