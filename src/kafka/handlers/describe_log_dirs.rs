//! DescribeLogDirs: the one data directory, its capacity (statvfs), and the size of every
//! partition in it (gathered from the owning shards).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::DescribeLogDirsRequest;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::shard_state::ShardState;

/// (total, usable) bytes of the file system holding `dir`.
fn capacity(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a zeroed out-parameter of the right type.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let f = st.f_frsize as i64;
    Some((st.f_blocks as i64 * f, st.f_bavail as i64 * f))
}

/// Kafka's lag of a current (not future) replica's log: how far its log end is behind the
/// partition's high watermark (ReplicaManager.getLogEndOffsetLag), never negative.
fn offset_lag(high_watermark: i64, log_end_offset: i64) -> i64 {
    (high_watermark - log_end_offset).max(0)
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeLogDirsRequest,
) -> ResponseFrame {
    let stats = crate::ops::metrics::collect_all(&state).await;
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for s in &stats {
        for p in &s.partitions {
            if let Some(w) = &wanted
                && !w.get(&p.topic).is_some_and(|ps| ps.contains(&p.partition))
            {
                continue;
            }
            let mut dp = DescribeLogDirsPartition::default();
            dp.partition_index = p.partition;
            dp.partition_size = p.size_bytes as i64;
            dp.offset_lag = offset_lag(p.high_watermark, p.log_end_offset);
            dp.is_future_key = false;
            by_topic.entry(p.topic.clone()).or_default().push(dp);
        }
    }
    let dir = state.config.log_dir.clone();
    let abs = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let cap = tern_shard::task::run_blocking(move || capacity(&dir)).await;
    super::encode(&h, &response(&abs.display().to_string(), cap, by_topic))
}

/// The answer for the one log directory: its capacity and its partitions by topic.
fn response(
    log_dir: &str,
    cap: Option<(i64, i64)>,
    by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>>,
) -> DescribeLogDirsResponse {
    let mut r = DescribeLogDirsResult::default();
    r.log_dir = str_bytes(log_dir);
    let (total, usable) = cap.unwrap_or((-1, -1));
    r.total_bytes = total;
    r.usable_bytes = usable;
    for (name, mut parts) in by_topic {
        parts.sort_by_key(|p| p.partition_index);
        let mut t = DescribeLogDirsTopic::default();
        t.name = kafka_protocol::messages::TopicName(str_bytes(&name));
        t.partitions = parts;
        r.topics.push(t);
    }
    let mut resp = DescribeLogDirsResponse::default();
    resp.results.push(r);
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let mut p = DescribeLogDirsPartition::default();
    p.partition_index = 1;
    p.partition_size = 4096;
    let by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> =
        [("t".to_string(), vec![p])].into_iter().collect();
    [Some((1 << 40, 1 << 39)), None]
        .into_iter()
        .map(|cap| {
            kafka_protocol::messages::ResponseKind::DescribeLogDirs(response(
                "/data",
                cap,
                by_topic.clone(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn offset_lag_is_the_log_end_behind_the_high_watermark() {
        assert_eq!(super::offset_lag(10, 10), 0);
        assert_eq!(super::offset_lag(7, 10), 0); // writes not yet visible: no lag
        assert_eq!(super::offset_lag(12, 10), 2);
    }

    #[test]
    fn capacity_of_tmp() {
        let (total, usable) = super::capacity(&std::env::temp_dir()).expect("statvfs");
        assert!(total > 0 && usable >= 0 && usable <= total);
    }
}
