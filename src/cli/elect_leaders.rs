//! `tern cluster elect-leaders`: ElectLeaders (API 43) from the command line, as Kafka's
//! `kafka-leader-election.sh`: `--election-type preferred|unclean`, every partition or
//! `--topic` (with `--partition`). Prints one line per partition with its outcome; fails
//! (exit 1) when any partition reports an error other than ELECTION_NOT_NEEDED.

use anyhow::{Result, bail};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ElectLeadersRequest, TopicName};

use super::Client;
use super::admin::{err_name, sb};

/// Kafka's ELECTION_NOT_NEEDED: nothing to do, not a failure.
const ELECTION_NOT_NEEDED: i16 = 84;

/// The election type's wire value from its name.
fn election_type(name: &str) -> Result<i8> {
    match name.to_ascii_lowercase().as_str() {
        "preferred" => Ok(0),
        "unclean" => Ok(1),
        other => bail!("unknown election type {other:?} (expected preferred or unclean)"),
    }
}

pub fn run(addr: &str, election: &str, topic: Option<&str>, partition: Option<i32>) -> Result<()> {
    let kind = election_type(election)?;
    if partition.is_some() && topic.is_none() {
        bail!("--partition needs --topic");
    }
    let mut c = Client::connect(addr)?;
    let mut req = ElectLeadersRequest::default();
    req.election_type = kind;
    req.timeout_ms = 30_000;
    if let Some(t) = topic {
        let partitions = match partition {
            Some(p) => vec![p],
            None => super::admin::partitions_of(&mut c, t)?,
        };
        let mut tp = TopicPartitions::default();
        tp.topic = TopicName(sb(t));
        tp.partitions = partitions;
        req.topic_partitions = Some(vec![tp]);
    }
    let resp = c.call(2, &req)?;
    if resp.error_code != 0 {
        bail!("ElectLeaders: {}", err_name(resp.error_code));
    }
    let mut failed = 0;
    let mut elected = 0;
    for t in &resp.replica_election_results {
        for p in &t.partition_result {
            let what = match p.error_code {
                0 => {
                    elected += 1;
                    "elected".to_string()
                }
                code => {
                    if code != ELECTION_NOT_NEEDED {
                        failed += 1;
                    }
                    let msg = p.error_message.as_deref().unwrap_or("");
                    format!("{}: {msg}", err_name(code))
                }
            };
            println!("{}-{}: {what}", t.topic.0, p.partition_id);
        }
    }
    println!("{elected} leaders elected");
    if failed > 0 {
        bail!("{failed} partitions could not elect a leader");
    }
    Ok(())
}
