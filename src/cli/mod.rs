//! `tern group ...`: inspect consumer groups of a running broker. A small blocking Kafka client
//! (std::net + the kafka-protocol codecs): DescribeGroups for state, members and assignments,
//! OffsetFetch for committed offsets, Metadata + ListOffsets (latest) for the log end, and
//! lag = log end offset - committed offset per partition.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, BytesMut};
use clap::Subcommand;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    DescribeGroupsRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetFetchRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::coordinators::groups::protocol::assignment_partitions;

pub mod admin;
mod cluster_info;
pub mod data;
mod elect_leaders;
mod reassign;

pub use admin::{ClusterCommand, TopicCommand, run_cluster, run_topic};
pub use data::{ConsumeArgs, ProduceArgs, run_consume, run_produce};

/// Default `--bootstrap-server`.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Prints an operational error the way every subcommand does and returns exit code 1.
pub fn fail(cmd: &str, e: &anyhow::Error) -> i32 {
    eprintln!("tern {cmd}: {e:#}");
    1
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Members, assignments, committed offsets and lag of a group.
    Describe {
        group: String,
        /// host:port of the broker.
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap_server: String,
    },
    /// The groups the broker coordinates.
    List {
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap_server: String,
    },
    /// Delete groups (they must have no members) and their committed offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap_server: String,
    },
    /// Set a group's committed offsets (the group must have no members), like
    /// kafka-consumer-groups --reset-offsets --execute.
    Seek(admin::SeekArgs),
}

pub fn run_group(cmd: GroupCommand) -> i32 {
    let res = match cmd {
        GroupCommand::Describe {
            group,
            bootstrap_server,
        } => describe(&bootstrap_server, &group),
        GroupCommand::List { bootstrap_server } => list(&bootstrap_server),
        GroupCommand::Delete {
            groups,
            bootstrap_server,
        } => admin::delete_groups(&bootstrap_server, &groups),
        GroupCommand::Seek(args) => admin::seek(&args),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tern group: {e:#}");
            1
        }
    }
}

pub struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    /// Connects to the first reachable broker of `addr`: `host:port`, or a comma-separated
    /// list of them as Kafka's `--bootstrap-server` takes.
    pub fn connect(addr: &str) -> Result<Self> {
        use std::net::ToSocketAddrs;
        let mut addrs = Vec::new();
        for one in addr.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match one.to_socket_addrs() {
                Ok(a) => addrs.extend(a),
                Err(e) => bail!("bad broker address {one:?}: {e} (expected host:port)"),
            }
        }
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            let why = match last {
                Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "connection refused".to_string()
                }
                Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    "connection timed out".to_string()
                }
                Some(e) => e.to_string(),
                None => "address resolved to nothing".to_string(),
            };
            bail!("no broker at {addr}: {why}");
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            stream,
            correlation: 0,
        })
    }

    /// The broker address this client is connected to.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Sends a request (framed, with the next correlation id). Alone, for requests that get no
    /// response (Produce with acks=0); `call` also reads the response.
    pub fn send_only<R: Request>(&mut self, version: i16, req: &R) -> Result<()> {
        self.correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("tern-cli"));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response> {
        self.send_only(version, req)?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .context("reading response (did the broker close the connection?)")?;
        let n = i32::from_be_bytes(len);
        if !(0..=(256 << 20)).contains(&n) {
            bail!("bad response length {n}");
        }
        let mut buf = vec![0u8; n as usize];
        self.stream.read_exact(&mut buf)?;
        let mut bytes = bytes::Bytes::from(buf);
        let rh = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))?;
        if rh.correlation_id != self.correlation {
            bail!("correlation id mismatch");
        }
        let resp = R::Response::decode(&mut bytes, version)?;
        let _ = bytes.remaining();
        Ok(resp)
    }
}

fn list(addr: &str) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let resp = c.call(4, &ListGroupsRequest::default())?;
    println!("{:<40} {:<20} {:<10}", "GROUP", "STATE", "PROTOCOL-TYPE");
    for g in resp.groups {
        println!(
            "{:<40} {:<20} {:<10}",
            g.group_id.0.as_str(),
            g.group_state.as_str(),
            g.protocol_type.as_str()
        );
    }
    Ok(())
}

pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn describe(addr: &str, group: &str) -> Result<()> {
    let mut c = Client::connect(addr)?;
    // 1. The group: state, members, assignments.
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![StrBytes::from_string(group.to_string()).into()];
    let resp = c.call(5, &req)?;
    let g: DescribedGroup = resp
        .groups
        .into_iter()
        .next()
        .context("empty DescribeGroups response")?;
    if g.error_code != 0 {
        bail!("DescribeGroups {group}: error code {}", g.error_code);
    }
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut member_rows = vec![vec![
        "MEMBER-ID".to_string(),
        "CLIENT-ID".to_string(),
        "HOST".to_string(),
        "ASSIGNMENT".to_string(),
    ]];
    let mut topics: BTreeSet<String> = BTreeSet::new();
    for m in &g.members {
        let parts = assignment_partitions(&m.member_assignment).unwrap_or_default();
        let mut desc = Vec::new();
        for (t, ps) in &parts {
            topics.insert(t.clone());
            for p in ps {
                owner.insert((t.clone(), *p), m.member_id.to_string());
            }
            let list: Vec<String> = ps.iter().map(i32::to_string).collect();
            desc.push(format!("{t}:{}", list.join(",")));
        }
        member_rows.push(vec![
            m.member_id.to_string(),
            m.client_id.to_string(),
            if m.client_host.is_empty() {
                "-".into()
            } else {
                m.client_host.to_string()
            },
            if desc.is_empty() {
                "-".into()
            } else {
                desc.join(" ")
            },
        ]);
    }

    // 2. Committed offsets (all partitions the group committed).
    let mut of = OffsetFetchRequest::default();
    of.group_id = StrBytes::from_string(group.to_string()).into();
    of.topics = None;
    let offsets = c.call(7, &of)?;
    if offsets.error_code != 0 {
        bail!("OffsetFetch {group}: error code {}", offsets.error_code);
    }
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &offsets.topics {
        topics.insert(t.name.0.to_string());
        for p in &t.partitions {
            if p.committed_offset >= 0 {
                committed.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }

    // 3. Partitions of those topics and their log end offsets.
    let mut md = MetadataRequest::default();
    md.topics = Some(
        topics
            .iter()
            .map(|t| {
                let mut mt = MetadataRequestTopic::default();
                mt.name = Some(StrBytes::from_string(t.clone()).into());
                mt
            })
            .collect(),
    );
    md.allow_auto_topic_creation = false;
    let meta = c.call(9, &md)?;
    let mut partitions: Vec<(String, i32)> = Vec::new();
    for t in &meta.topics {
        let Some(name) = &t.name else { continue };
        if t.error_code != 0 {
            continue;
        }
        for p in &t.partitions {
            partitions.push((name.0.to_string(), p.partition_index));
        }
    }
    // Committed partitions of topics that no longer exist still show up (without a log end).
    for k in committed.keys() {
        if !partitions.contains(k) {
            partitions.push(k.clone());
        }
    }
    partitions.sort();
    let mut lo = ListOffsetsRequest::default();
    lo.replica_id = (-1).into();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    for (t, ps) in &by_topic {
        let mut lt = ListOffsetsTopic::default();
        lt.name = StrBytes::from_string(t.to_string()).into();
        for p in ps {
            let mut lp = ListOffsetsPartition::default();
            lp.partition_index = *p;
            lp.timestamp = -1;
            lt.partitions.push(lp);
        }
        lo.topics.push(lt);
    }
    let mut end: BTreeMap<(String, i32), i64> = BTreeMap::new();
    if !lo.topics.is_empty() {
        let r = c.call(5, &lo)?;
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code == 0 {
                    end.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
    }

    println!(
        "{}",
        table(&[
            vec![
                "GROUP".into(),
                "STATE".into(),
                "PROTOCOL-TYPE".into(),
                "PROTOCOL".into(),
                "MEMBERS".into()
            ],
            vec![
                group.to_string(),
                g.group_state.to_string(),
                if g.protocol_type.is_empty() {
                    "-".into()
                } else {
                    g.protocol_type.to_string()
                },
                if g.protocol_data.is_empty() {
                    "-".into()
                } else {
                    g.protocol_data.to_string()
                },
                g.members.len().to_string(),
            ],
        ])
    );
    if !g.members.is_empty() {
        println!("{}", table(&member_rows));
    }
    let mut rows = vec![vec![
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "CURRENT-OFFSET".to_string(),
        "LOG-END-OFFSET".to_string(),
        "LAG".to_string(),
        "MEMBER-ID".to_string(),
    ]];
    let mut total_lag = 0i64;
    for (t, p) in &partitions {
        let key = (t.clone(), *p);
        let cur = committed.get(&key).copied();
        let leo = end.get(&key).copied();
        let lag = match (cur, leo) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        total_lag += lag.unwrap_or(0);
        let show = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        rows.push(vec![
            t.clone(),
            p.to_string(),
            show(cur),
            show(leo),
            show(lag),
            owner.get(&key).cloned().unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", table(&rows));
    println!("\nTOTAL-LAG {total_lag}");
    Ok(())
}
