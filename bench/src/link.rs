//! The `link` command: the loopback TCP ceiling for the workload's frame size. An in-process
//! server reads size-prefixed frames; (1) "acked": it answers each with a produce-response-sized
//! frame and the client pipelines up to max-in-flight requests per connection (the produce path
//! with a broker that does nothing); (2) "stream": it discards, the client only writes.

use crate::batch::BatchBuilder;
use crate::cli::LinkArgs;
use crate::clock::now_ns;
use crate::producer::payload;
use crate::stats::{Percentiles, new_hist};
use crate::wire::{encode_frame, read_frame};
use anyhow::Result;
use bytes::BytesMut;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Serialize)]
pub struct Phase {
    pub mb_per_sec: f64,
    pub frames_per_sec: f64,
    /// Equivalent records/s (frames/s x records per frame).
    pub records_per_sec: f64,
    pub rtt_ms: Option<Percentiles>,
}

#[derive(Serialize)]
pub struct LinkResult {
    pub frame_bytes: usize,
    pub records_per_frame: usize,
    pub record_size: usize,
    pub connections: usize,
    pub max_in_flight: usize,
    pub acked: Phase,
    pub stream: Phase,
}

/// One Produce request frame carrying one full batch, as the producer would send it.
fn sample_frame(batch_size: usize, record_size: usize) -> Result<(Vec<u8>, usize)> {
    let mut b = BatchBuilder::new(batch_size);
    let p = payload(record_size, 1);
    while b.len() < batch_size {
        b.append(now_ns(), None, &p);
    }
    let n = b.count() as usize;
    let bytes = b.seal(crate::cli::Compression::None, &mut vec![])?;
    let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(crate::admin::topic_name("link"))
            .with_partition_data(vec![
                PartitionProduceData::default().with_records(Some(bytes)),
            ]),
    ]);
    let mut out = BytesMut::new();
    encode_frame(&mut out, 1, &req, 9)?;
    Ok((out.to_vec(), n))
}

fn serve(reply: bool) -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?.to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut resp = vec![0u8; 64];
                resp[..4].copy_from_slice(&60i32.to_be_bytes());
                while let Ok(frame) = read_frame(&mut s) {
                    if reply {
                        resp[4..8].copy_from_slice(&frame[4..8]); // correlation id
                        if s.write_all(&resp).is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn phase(
    addr: &str,
    frame: &[u8],
    conns: usize,
    in_flight: usize,
    acked: bool,
    secs: f64,
) -> Result<(u64, f64, Option<Percentiles>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(new_hist()));
    let mut handles = Vec::new();
    let start = Instant::now();
    for _ in 0..conns {
        let mut w = TcpStream::connect(addr)?;
        w.set_nodelay(true)?;
        let frame = frame.to_vec();
        let (stop, frames, hist) = (stop.clone(), frames.clone(), hist.clone());
        let mut r = w.try_clone()?;
        let (tx, rx) = sync_channel::<u64>(in_flight.saturating_sub(1));
        let reader = acked.then(|| {
            let (frames, hist) = (frames.clone(), hist.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(t) = rx.recv() {
                    if r.read_exact(&mut buf).is_err() {
                        break;
                    }
                    let us = ((now_ns() - t) / 1000).max(1);
                    hist.lock().unwrap().saturating_record(us);
                    frames.fetch_add(1, Relaxed);
                }
            })
        });
        handles.push(std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                if acked && tx.send(now_ns()).is_err() {
                    break;
                }
                if w.write_all(&frame).is_err() {
                    break;
                }
                if !acked {
                    frames.fetch_add(1, Relaxed);
                }
            }
            drop(tx);
            if let Some(h) = reader {
                let _ = h.join();
            }
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = frames.load(Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let p = acked.then(|| Percentiles::of(&hist.lock().unwrap()));
    Ok((n, elapsed, p))
}

pub fn run(args: LinkArgs) -> Result<()> {
    let w = args.workload.resolve()?;
    let (frame, per_frame) = sample_frame(w.batch_size, w.record_size)?;
    let conns = w.producers * w.topics;
    let secs = w.duration_s.min(10.0);
    println!(
        "link: {} connection(s), frames of {} B ({} records of {} B), {:.0} s per phase",
        conns,
        frame.len(),
        per_frame,
        w.record_size,
        secs
    );
    let mk = |n: u64, el: f64, rtt| Phase {
        mb_per_sec: n as f64 * frame.len() as f64 / el / 1e6,
        frames_per_sec: n as f64 / el,
        records_per_sec: n as f64 * per_frame as f64 / el,
        rtt_ms: rtt,
    };
    let (n, el, rtt) = phase(&serve(true)?, &frame, conns, w.max_in_flight, true, secs)?;
    let acked = mk(n, el, rtt);
    let (n, el, _) = phase(&serve(false)?, &frame, conns, w.max_in_flight, false, secs)?;
    let stream = mk(n, el, None);
    let res = LinkResult {
        frame_bytes: frame.len(),
        records_per_frame: per_frame,
        record_size: w.record_size,
        connections: conns,
        max_in_flight: w.max_in_flight,
        acked,
        stream,
    };
    for (name, p) in [("acked ", &res.acked), ("stream", &res.stream)] {
        println!(
            "{name}: {:>8.1} MB/s  {:>10.0} rec/s  {:>8.0} frames/s{}",
            p.mb_per_sec,
            p.records_per_sec,
            p.frames_per_sec,
            p.rtt_ms
                .as_ref()
                .map(|r| format!("  rtt {}", r.line()))
                .unwrap_or_default()
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&res)?)?;
        println!("wrote {path}");
    }
    Ok(())
}
