//! `tern produce` (stdin lines -> records) and `tern consume` (records -> stdout), over the Kafka
//! protocol (Metadata, Produce, ListOffsets, Fetch, OffsetFetch, OffsetCommit).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, OffsetFetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tern_net::partitioner::murmur2;

use super::admin::{commit, err_name, list_offsets, partitions_of};
use super::{Client, DEFAULT_BOOTSTRAP};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Send every record to this partition (default: by key hash as Kafka's default
    /// partitioner, round robin without a key).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Split each line at the first occurrence of this into key and value (e.g. ':' or '\t').
    #[arg(long, short = 'K')]
    pub key_separator: Option<String>,
    /// Header added to every record, repeatable: --header source=cli
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// acks: all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Records per produce request and partition.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap_server: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Reset {
    Earliest,
    Latest,
    /// Fail (exit 1) when the position is out of range.
    None,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Only this partition (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Start at the earliest offset.
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset (in every consumed partition).
    #[arg(long, short = 'o', conflicts_with = "timestamp")]
    pub offset: Option<i64>,
    /// Start at the first record with a timestamp at or after this (ms since the epoch).
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// Start at the group's committed offsets and commit progress (a simple member-less
    /// consumer, like kafka-console-consumer with assign + commit).
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Where to go when there is no committed offset or the position is out of range
    /// (auto.offset.reset). Default: latest, or earliest with --from-beginning.
    #[arg(long, value_enum)]
    pub reset: Option<Reset>,
    /// Exit after this many records.
    #[arg(long, short = 'n')]
    pub max_messages: Option<u64>,
    /// Exit when no record arrived for this long (default: wait forever).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms),
    /// %h headers (k=v,...), %% a percent sign; \n and \t are understood.
    #[arg(long, short = 'f', default_value = "%v\\n")]
    pub format: String,
    #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap_server: String,
}

pub fn run_produce(a: ProduceArgs) -> i32 {
    produce(&a)
        .map(|()| 0)
        .unwrap_or_else(|e| super::fail("produce", &e))
}

pub fn run_consume(a: ConsumeArgs) -> i32 {
    consume(&a)
        .map(|()| 0)
        .unwrap_or_else(|e| super::fail("consume", &e))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn produce(a: &ProduceArgs) -> Result<()> {
    let acks: i16 = match a.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks must be all, 1 or 0 (got {other:?})"),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for h in &a.headers {
        match h.split_once('=') {
            Some((k, v)) => headers.push((k.to_string(), v.to_string())),
            None => bail!("--header expects key=value, got {h:?}"),
        }
    }
    let sep = a.key_separator.as_ref().map(|s| s.replace("\\t", "\t"));
    let mut c = Client::connect(&a.bootstrap_server)?;
    let parts = partitions_of(&mut c, &a.topic)?;
    if let Some(p) = a.partition
        && !parts.contains(&p)
    {
        bail!("topic {} has no partition {p}", a.topic);
    }
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut rr = 0usize;
    let mut sent = 0u64;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose()?;
        let eof = line.is_none();
        if let Some(line) = line {
            let (key, value) = match &sep {
                Some(s) => match line.split_once(s.as_str()) {
                    Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                    None => (None, line.clone()),
                },
                None => (None, line.clone()),
            };
            let p = match (a.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => parts[((murmur2(k) & 0x7fff_ffff) as usize) % parts.len()],
                (None, None) => {
                    rr += 1;
                    parts[rr % parts.len()]
                }
            };
            let mut hs = kafka_protocol::indexmap::IndexMap::new();
            for (k, v) in &headers {
                hs.insert(sb(k), Some(Bytes::from(v.clone())));
            }
            pending.entry(p).or_default().push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: -1,
                timestamp: now_ms(),
                key,
                value: Some(Bytes::from(value)),
                headers: hs,
            });
        }
        let full = pending.values().any(|v| v.len() >= a.batch_size.max(1));
        if (full || eof) && !pending.is_empty() {
            sent += send(&mut c, &a.topic, acks, std::mem::take(&mut pending))?;
        }
        if eof {
            break;
        }
    }
    eprintln!("produced {sent} records to {}", a.topic);
    Ok(())
}

fn send(
    c: &mut Client,
    topic: &str,
    acks: i16,
    batches: BTreeMap<i32, Vec<Record>>,
) -> Result<u64> {
    let mut td = TopicProduceData::default();
    td.name = TopicName(sb(topic));
    let mut n = 0u64;
    for (p, recs) in &batches {
        let mut recs = recs.clone();
        for (i, r) in recs.iter_mut().enumerate() {
            r.offset = i as i64;
        }
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )?;
        let mut pd = PartitionProduceData::default();
        pd.index = *p;
        pd.records = Some(buf.freeze());
        td.partition_data.push(pd);
        n += recs.len() as u64;
    }
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 30_000;
    req.topic_data.push(td);
    if acks == 0 {
        // No response comes for acks=0: write the request and move on.
        c.send_only(7, &req)?;
        return Ok(n);
    }
    let resp = c.call(7, &req)?;
    for t in &resp.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                bail!(
                    "producing to {topic}-{}: {}{}",
                    p.index,
                    err_name(p.error_code),
                    p.error_message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(n)
}

fn unescape(f: &str) -> String {
    f.replace("\\n", "\n").replace("\\t", "\t")
}

fn render(fmt: &str, topic: &str, p: i32, r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = fmt.chars().peekable();
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('t') => out.extend_from_slice(topic.as_bytes()),
            Some('p') => out.extend_from_slice(p.to_string().as_bytes()),
            Some('o') => out.extend_from_slice(r.offset.to_string().as_bytes()),
            Some('k') => out.extend_from_slice(&text(&r.key)),
            Some('v') => out.extend_from_slice(&text(&r.value)),
            Some('T') => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
            Some('h') => {
                let hs: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_ref()
                                .map(|v| String::from_utf8_lossy(v).to_string())
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                out.extend_from_slice(hs.join(",").as_bytes());
            }
            Some('%') => out.push(b'%'),
            Some(other) => {
                out.push(b'%');
                let mut buf = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
            None => out.push(b'%'),
        }
    }
    out
}

/// Decodes the complete record batches of a fetch response's records.
fn decode_records(mut data: Bytes) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    while data.len() >= 17 {
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if len < 0 {
            bail!("bad batch length {len}");
        }
        let total = 12 + len as usize;
        if data.len() < total {
            break; // a partial batch at the end (max_bytes)
        }
        let mut one = data.split_to(total);
        if one[16] != 2 {
            continue; // legacy message format
        }
        let set = RecordBatchDecoder::decode(&mut one)?;
        out.extend(set.records.into_iter().filter(|r| !r.control));
    }
    Ok(out)
}

fn consume(a: &ConsumeArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let reset = a.reset.unwrap_or(if a.from_beginning {
        Reset::Earliest
    } else {
        Reset::Latest
    });
    let fmt = unescape(&a.format);
    let mut c = Client::connect(&a.bootstrap_server)?;
    let all = partitions_of(&mut c, &a.topic)?;
    let parts: Vec<i32> = match a.partition {
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => bail!("topic {} has no partition {p}", a.topic),
        None => all,
    };
    let reset_to = |c: &mut Client, ps: &[i32]| -> Result<BTreeMap<i32, i64>> {
        match reset {
            Reset::Earliest => list_offsets(c, &a.topic, ps, -2),
            Reset::Latest => list_offsets(c, &a.topic, ps, -1),
            Reset::None => bail!(
                "no valid position for {}-{:?} and --reset none",
                a.topic,
                ps
            ),
        }
    };
    let mut pos: BTreeMap<i32, i64> = if let Some(o) = a.offset {
        parts.iter().map(|p| (*p, o)).collect()
    } else if let Some(ts) = a.timestamp {
        let at = list_offsets(&mut c, &a.topic, &parts, ts)?;
        let end = list_offsets(&mut c, &a.topic, &parts, -1)?;
        parts
            .iter()
            .map(|p| (*p, if at[p] < 0 { end[p] } else { at[p] }))
            .collect()
    } else if a.from_beginning {
        list_offsets(&mut c, &a.topic, &parts, -2)?
    } else if let Some(g) = &a.group {
        let mut of = OffsetFetchRequest::default();
        of.group_id = sb(g).into();
        let mut t = OffsetFetchRequestTopic::default();
        t.name = TopicName(sb(&a.topic));
        t.partition_indexes = parts.clone();
        of.topics = Some(vec![t]);
        let r = c.call(7, &of)?;
        if r.error_code != 0 {
            bail!("OffsetFetch {g}: {}", err_name(r.error_code));
        }
        let mut committed = BTreeMap::new();
        for t in &r.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    committed.insert(p.partition_index, p.committed_offset);
                }
            }
        }
        let missing: Vec<i32> = parts
            .iter()
            .filter(|p| !committed.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            committed.extend(reset_to(&mut c, &missing)?);
        }
        committed
    } else {
        reset_to(&mut c, &parts)?
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let mut last_data = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if a.max_messages.is_some_and(|m| count >= m) {
            break;
        }
        if a.timeout_ms
            .is_some_and(|t| last_data.elapsed() >= Duration::from_millis(t))
        {
            break;
        }
        let mut req = FetchRequest::default();
        req.replica_id = (-1).into();
        req.max_wait_ms = 500;
        req.min_bytes = 1;
        req.max_bytes = 16 << 20;
        req.session_epoch = -1;
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(sb(&a.topic));
        for (p, o) in &pos {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *o;
            fp.log_start_offset = -1;
            fp.partition_max_bytes = 1 << 20;
            fp.current_leader_epoch = -1;
            ft.partitions.push(fp);
        }
        req.topics.push(ft);
        let resp = c.call(11, &req)?;
        if resp.error_code != 0 {
            bail!("Fetch: {}", err_name(resp.error_code));
        }
        let mut progressed: BTreeMap<i32, i64> = BTreeMap::new();
        let mut out_of_range = Vec::new();
        for t in &resp.responses {
            for p in &t.partitions {
                let idx = p.partition_index;
                if p.error_code == 1 {
                    out_of_range.push(idx);
                    continue;
                }
                if p.error_code != 0 {
                    bail!("fetching {}-{idx}: {}", a.topic, err_name(p.error_code));
                }
                let Some(data) = p.records.clone() else {
                    continue;
                };
                let cur = pos[&idx];
                for r in decode_records(data)? {
                    if r.offset < cur {
                        continue;
                    }
                    if a.max_messages.is_some_and(|m| count >= m) {
                        break;
                    }
                    out.write_all(&render(&fmt, &a.topic, idx, &r))?;
                    count += 1;
                    pos.insert(idx, r.offset + 1);
                    progressed.insert(idx, r.offset + 1);
                }
            }
        }
        out.flush()?;
        if !out_of_range.is_empty() {
            let fixed = reset_to(&mut c, &out_of_range)?;
            for (p, o) in &fixed {
                eprintln!(
                    "tern consume: offset {} of {}-{p} is out of range; reset to {o} ({reset:?})",
                    pos[p], a.topic
                );
                pos.insert(*p, *o);
            }
        }
        if !progressed.is_empty() {
            last_data = Instant::now();
            if let Some(g) = &a.group {
                commit(&mut c, g, &a.topic, &progressed)?;
            }
        }
    }
    eprintln!("consumed {count} records");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_placeholders() {
        let r = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 7,
            sequence: -1,
            timestamp: 99,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        assert_eq!(
            render("%t/%p/%o/%k/%v/%T%%\n", "t", 2, &r),
            b"t/2/7/k/v/99%\n"
        );
    }
}
