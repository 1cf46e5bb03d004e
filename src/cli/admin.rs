//! `tern topic ...`, `tern cluster info`, `tern group delete|seek`: admin commands over the Kafka
//! protocol (CreateTopics, Metadata, DeleteTopics, DescribeConfigs, IncrementalAlterConfigs,
//! ListOffsets, DescribeCluster, DescribeLogDirs, DeleteGroups, OffsetCommit), so they work
//! against any Kafka-compatible broker.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, DEFAULT_BOOTSTRAP, table};

pub(super) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Kafka's error name for a code (e.g. "TOPIC_ALREADY_EXISTS (36)").
pub fn err_name(code: i16) -> String {
    let e = kafka_protocol::error::ResponseError::try_from_code(code);
    match e {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error {code}"),
    }
}

fn parse_kv(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("expected key=value, got {s:?}"),
    }
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        topic: String,
        #[arg(long, short = 'p', default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, repeatable: --config retention.ms=60000
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        /// Succeed if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// List topics.
    List {
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// Partitions (with earliest/latest offsets) and non-default configs of a topic.
    Describe {
        topic: String,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// Change topic configs (IncrementalAlterConfigs): --set k=v, --delete k (back to default).
    AlterConfig {
        topic: String,
        #[arg(long = "set", short = 's')]
        set: Vec<String>,
        #[arg(long = "delete", short = 'd')]
        delete: Vec<String>,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// Move a partition's replicas (AlterPartitionReassignments): --replicas 1,2,3, or
    /// --cancel a move in progress, or --list the moves in progress. --throttle BYTES/s sets
    /// the replication throttle for the move; --wait until it is done (then the throttle goes).
    Reassign {
        topic: String,
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        /// Target broker ids, the preferred leader first: 1,2,3
        #[arg(long, short = 'r')]
        replicas: Option<String>,
        /// leader/follower.replication.throttled.rate for the move, bytes per second.
        #[arg(long)]
        throttle: Option<u64>,
        #[arg(long)]
        list: bool,
        #[arg(long)]
        cancel: bool,
        #[arg(long)]
        wait: bool,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, brokers, controller, log dirs and broker configs that are not defaults.
    Info {
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// Change dynamic broker configs: --set log.retention.ms=60000, --delete k.
    AlterConfig {
        #[arg(long = "set", short = 's')]
        set: Vec<String>,
        #[arg(long = "delete", short = 'd')]
        delete: Vec<String>,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
    /// Move leadership (ElectLeaders): back to the preferred replicas, or an unclean election
    /// for partitions without a leader. Every partition unless --topic (and --partition).
    ElectLeaders {
        /// preferred | unclean
        #[arg(long, default_value = "preferred")]
        election_type: String,
        #[arg(long, short = 't')]
        topic: Option<String>,
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
    },
}

#[derive(Args, Debug)]
pub struct SeekArgs {
    pub group: String,
    /// The topic whose offsets to set.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Only this partition (default: all partitions of the topic).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    #[arg(long, conflicts_with_all = ["to_latest", "to_offset", "to_timestamp"])]
    pub to_earliest: bool,
    #[arg(long, conflicts_with_all = ["to_offset", "to_timestamp"])]
    pub to_latest: bool,
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Milliseconds since the epoch: the first offset at or after it.
    #[arg(long, conflicts_with = "to_offset")]
    pub to_timestamp: Option<i64>,
    #[arg(long, short = 'b', default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap_server: String,
}

pub fn run_topic(cmd: TopicCommand) -> i32 {
    let res = match cmd {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
            bootstrap_server,
        } => create(
            &bootstrap_server,
            &topic,
            partitions,
            replication_factor,
            &configs,
            if_not_exists,
        ),
        TopicCommand::List { bootstrap_server } => list(&bootstrap_server),
        TopicCommand::Describe {
            topic,
            bootstrap_server,
        } => describe(&bootstrap_server, &topic),
        TopicCommand::Delete {
            topics,
            bootstrap_server,
        } => delete(&bootstrap_server, &topics),
        TopicCommand::AlterConfig {
            topic,
            set,
            delete,
            bootstrap_server,
        } => alter_config(&bootstrap_server, 2, &topic, &set, &delete),
        TopicCommand::Reassign {
            topic,
            partition,
            replicas,
            throttle,
            list,
            cancel,
            wait,
            bootstrap_server,
        } => super::reassign::run(
            &bootstrap_server,
            &super::reassign::Reassign {
                topic: &topic,
                partition,
                replicas: replicas.as_deref(),
                throttle,
                list,
                cancel,
                wait,
            },
        ),
    };
    res.map(|()| 0).unwrap_or_else(|e| super::fail("topic", &e))
}

pub fn run_cluster(cmd: ClusterCommand) -> i32 {
    let res = match cmd {
        ClusterCommand::Info { bootstrap_server } => cluster_info(&bootstrap_server),
        ClusterCommand::AlterConfig {
            set,
            delete,
            bootstrap_server,
        } => alter_config(&bootstrap_server, 4, "", &set, &delete),
        ClusterCommand::ElectLeaders {
            election_type,
            topic,
            partition,
            bootstrap_server,
        } => super::elect_leaders::run(
            &bootstrap_server,
            &election_type,
            topic.as_deref(),
            partition,
        ),
    };
    res.map(|()| 0)
        .unwrap_or_else(|e| super::fail("cluster", &e))
}

fn create(
    addr: &str,
    topic: &str,
    partitions: i32,
    rf: i16,
    configs: &[String],
    if_not_exists: bool,
) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(topic));
    t.num_partitions = partitions;
    t.replication_factor = rf;
    for kv in configs {
        let (k, v) = parse_kv(kv)?;
        let mut cc = CreatableTopicConfig::default();
        cc.name = sb(&k);
        cc.value = Some(sb(&v));
        t.configs.push(cc);
    }
    let mut req = CreateTopicsRequest::default();
    req.topics.push(t);
    req.timeout_ms = 30_000;
    let resp = c.call(5, &req)?;
    let r = resp.topics.first().context("empty CreateTopics response")?;
    if r.error_code == 36 && if_not_exists {
        println!("topic {topic} already exists");
        return Ok(());
    }
    if r.error_code != 0 {
        bail!(
            "cannot create topic {topic}: {}{}",
            err_name(r.error_code),
            r.error_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    println!("created topic {topic} with {} partitions", r.num_partitions);
    Ok(())
}

pub(super) fn metadata(c: &mut Client, topics: Option<&[&str]>) -> Result<MetadataResponse> {
    let mut md = MetadataRequest::default();
    md.topics = topics.map(|ts| {
        ts.iter()
            .map(|t| {
                let mut mt = MetadataRequestTopic::default();
                mt.name = Some(TopicName(sb(t)));
                mt
            })
            .collect()
    });
    md.allow_auto_topic_creation = false;
    c.call(12, &md)
}

/// Partition ids of `topic` (error if it does not exist).
pub fn partitions_of(c: &mut Client, topic: &str) -> Result<Vec<i32>> {
    let meta = metadata(c, Some(&[topic]))?;
    let t = meta.topics.first().context("empty Metadata response")?;
    if t.error_code != 0 {
        bail!("topic {topic}: {}", err_name(t.error_code));
    }
    let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    ps.sort();
    Ok(ps)
}

/// ListOffsets for one timestamp spec (-2 earliest, -1 latest, or ms) over partitions.
pub fn list_offsets(
    c: &mut Client,
    topic: &str,
    parts: &[i32],
    ts: i64,
) -> Result<BTreeMap<i32, i64>> {
    let mut lo = ListOffsetsRequest::default();
    lo.replica_id = (-1).into();
    let mut lt = ListOffsetsTopic::default();
    lt.name = TopicName(sb(topic));
    for p in parts {
        let mut lp = ListOffsetsPartition::default();
        lp.partition_index = *p;
        lp.timestamp = ts;
        lt.partitions.push(lp);
    }
    lo.topics.push(lt);
    let r = c.call(5, &lo)?;
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets {topic}-{}: {}",
                    p.partition_index,
                    err_name(p.error_code)
                );
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

fn list(addr: &str) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let meta = metadata(&mut c, None)?;
    let mut names: Vec<(String, usize)> = meta
        .topics
        .iter()
        .filter_map(|t| {
            t.name
                .as_ref()
                .map(|n| (n.0.to_string(), t.partitions.len()))
        })
        .collect();
    names.sort();
    let mut rows = vec![vec!["TOPIC".to_string(), "PARTITIONS".to_string()]];
    rows.extend(names.into_iter().map(|(n, p)| vec![n, p.to_string()]));
    print!("{}", table(&rows));
    Ok(())
}

fn describe_configs(
    c: &mut Client,
    rtype: i8,
    name: &str,
) -> Result<Vec<(String, String, i8, bool)>> {
    let mut req = DescribeConfigsRequest::default();
    let mut r = DescribeConfigsResource::default();
    r.resource_type = rtype;
    r.resource_name = sb(name);
    r.configuration_keys = None;
    req.resources.push(r);
    let resp = c.call(1, &req)?;
    let res = resp
        .results
        .first()
        .context("empty DescribeConfigs response")?;
    if res.error_code != 0 {
        bail!(
            "DescribeConfigs {name}: {}{}",
            err_name(res.error_code),
            res.error_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    Ok(res
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                c.config_source,
                c.read_only,
            )
        })
        .collect())
}

fn source_name(s: i8) -> &'static str {
    match s {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        _ => "UNKNOWN",
    }
}

fn describe(addr: &str, topic: &str) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let meta = metadata(&mut c, Some(&[topic]))?;
    let t = meta.topics.first().context("empty Metadata response")?;
    if t.error_code != 0 {
        bail!("topic {topic}: {}", err_name(t.error_code));
    }
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let ids: Vec<i32> = parts.iter().map(|p| p.partition_index).collect();
    let earliest = list_offsets(&mut c, topic, &ids, -2)?;
    let latest = list_offsets(&mut c, topic, &ids, -1)?;
    println!(
        "Topic: {topic}  TopicId: {}  PartitionCount: {}",
        t.topic_id,
        parts.len()
    );
    let mut rows = vec![vec![
        "PARTITION".to_string(),
        "LEADER".to_string(),
        "REPLICAS".to_string(),
        "EARLIEST-OFFSET".to_string(),
        "LATEST-OFFSET".to_string(),
    ]];
    for p in parts {
        let reps: Vec<String> = p.replica_nodes.iter().map(|r| r.0.to_string()).collect();
        rows.push(vec![
            p.partition_index.to_string(),
            p.leader_id.0.to_string(),
            reps.join(","),
            earliest
                .get(&p.partition_index)
                .map(i64::to_string)
                .unwrap_or_else(|| "-".into()),
            latest
                .get(&p.partition_index)
                .map(i64::to_string)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", table(&rows));
    let configs = describe_configs(&mut c, 2, topic)?;
    let mut rows = vec![vec![
        "CONFIG".to_string(),
        "VALUE".to_string(),
        "SOURCE".to_string(),
    ]];
    for (k, v, s, _) in configs {
        if s != 5 {
            rows.push(vec![k, v, source_name(s).to_string()]);
        }
    }
    if rows.len() > 1 {
        println!();
        print!("{}", table(&rows));
    }
    Ok(())
}

fn delete(addr: &str, topics: &[String]) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let mut req = DeleteTopicsRequest::default();
    req.topic_names = topics.iter().map(|t| TopicName(sb(t))).collect();
    req.timeout_ms = 30_000;
    let resp = c.call(4, &req)?;
    let mut failed = 0;
    for r in &resp.responses {
        let name = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if r.error_code == 0 {
            println!("deleted topic {name}");
        } else {
            failed += 1;
            eprintln!("cannot delete topic {name}: {}", err_name(r.error_code));
        }
    }
    if failed > 0 {
        bail!("{failed} of {} topics not deleted", topics.len());
    }
    Ok(())
}

pub(super) fn alter_config(
    addr: &str,
    rtype: i8,
    name: &str,
    set: &[String],
    delete: &[String],
) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set key=value and/or --delete key");
    }
    let mut c = Client::connect(addr)?;
    let mut r = AlterConfigsResource::default();
    r.resource_type = rtype;
    r.resource_name = sb(name);
    for kv in set {
        let (k, v) = parse_kv(kv)?;
        let mut a = AlterableConfig::default();
        a.name = sb(&k);
        a.config_operation = 0;
        a.value = Some(sb(&v));
        r.configs.push(a);
    }
    for k in delete {
        let mut a = AlterableConfig::default();
        a.name = sb(k);
        a.config_operation = 1;
        a.value = None;
        r.configs.push(a);
    }
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources.push(r);
    let resp = c.call(0, &req)?;
    let res = resp
        .responses
        .first()
        .context("empty IncrementalAlterConfigs response")?;
    let what = if rtype == 2 {
        format!("topic {name}")
    } else {
        "the broker".to_string()
    };
    if res.error_code != 0 {
        bail!(
            "cannot alter configs of {what}: {}{}",
            err_name(res.error_code),
            res.error_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    println!("altered configs of {what}");
    Ok(())
}

fn cluster_info(addr: &str) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let here = super::cluster_info::print(&mut c, addr)?;
    println!();
    let mut ld = DescribeLogDirsRequest::default();
    ld.topics = None;
    if let Ok(dirs) = c.call(4, &ld) {
        for d in &dirs.results {
            let bytes: i64 = d
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.partition_size)
                .sum();
            let parts: usize = d.topics.iter().map(|t| t.partitions.len()).sum();
            println!(
                "Log dir: {}  partitions: {parts}  data: {bytes} bytes  disk: {} of {} bytes free",
                d.log_dir, d.usable_bytes, d.total_bytes
            );
        }
    }
    let broker = here.unwrap_or(0).to_string();
    let configs = describe_configs(&mut c, 4, &broker)?;
    let mut rows = vec![vec![
        "BROKER-CONFIG".to_string(),
        "VALUE".to_string(),
        "SOURCE".to_string(),
    ]];
    for (k, v, s, _) in configs {
        if s != 5 {
            rows.push(vec![k, v, source_name(s).to_string()]);
        }
    }
    println!();
    print!("{}", table(&rows));
    Ok(())
}

pub fn delete_groups(addr: &str, groups: &[String]) -> Result<()> {
    let mut c = Client::connect(addr)?;
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = groups.iter().map(|g| sb(g).into()).collect();
    let resp = c.call(2, &req)?;
    let mut failed = 0;
    for r in &resp.results {
        if r.error_code == 0 {
            println!("deleted group {}", r.group_id.0);
        } else {
            failed += 1;
            eprintln!(
                "cannot delete group {}: {}",
                r.group_id.0,
                err_name(r.error_code)
            );
        }
    }
    if failed > 0 {
        bail!("{failed} of {} groups not deleted", groups.len());
    }
    Ok(())
}

/// Commits `offsets` for `group` as a simple (member-less) consumer.
pub fn commit(
    c: &mut Client,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<()> {
    let mut req = OffsetCommitRequest::default();
    req.group_id = sb(group).into();
    req.generation_id_or_member_epoch = -1;
    req.member_id = sb("");
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(sb(topic));
    for (p, o) in offsets {
        let mut pp = OffsetCommitRequestPartition::default();
        pp.partition_index = *p;
        pp.committed_offset = *o;
        pp.committed_leader_epoch = -1;
        t.partitions.push(pp);
    }
    req.topics.push(t);
    let resp = c.call(7, &req)?;
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "committing offset of {group} for {topic}-{}: {}{}",
                    p.partition_index,
                    err_name(p.error_code),
                    if p.error_code == 22 || p.error_code == 25 || p.error_code == 27 {
                        " (the group has active members: stop them first)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

pub fn seek(a: &SeekArgs) -> Result<()> {
    let mut c = Client::connect(&a.bootstrap_server)?;
    let all = partitions_of(&mut c, &a.topic)?;
    let parts: Vec<i32> = match a.partition {
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => bail!("topic {} has no partition {p}", a.topic),
        None => all,
    };
    let offsets: BTreeMap<i32, i64> = if let Some(o) = a.to_offset {
        let lo = list_offsets(&mut c, &a.topic, &parts, -2)?;
        let hi = list_offsets(&mut c, &a.topic, &parts, -1)?;
        parts.iter().map(|p| (*p, o.clamp(lo[p], hi[p]))).collect()
    } else if let Some(ts) = a.to_timestamp {
        let at = list_offsets(&mut c, &a.topic, &parts, ts)?;
        let hi = list_offsets(&mut c, &a.topic, &parts, -1)?;
        parts
            .iter()
            .map(|p| (*p, if at[p] < 0 { hi[p] } else { at[p] }))
            .collect()
    } else if a.to_latest {
        list_offsets(&mut c, &a.topic, &parts, -1)?
    } else if a.to_earliest {
        list_offsets(&mut c, &a.topic, &parts, -2)?
    } else {
        bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-timestamp MS");
    };
    commit(&mut c, &a.group, &a.topic, &offsets)?;
    let mut rows = vec![vec![
        "GROUP".to_string(),
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "NEW-OFFSET".to_string(),
    ]];
    for (p, o) in &offsets {
        rows.push(vec![
            a.group.clone(),
            a.topic.clone(),
            p.to_string(),
            o.to_string(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}
