//! The persisted high watermarks (Kafka's `replication-offset-checkpoint`): the text format
//! (version line `0`, a count line, then one `topic partition high_watermark` line per
//! partition), parsing it defensively (a damaged file is reported and ignored, never a
//! panic), and the rule for the high watermark a new replication role starts from. The file
//! I/O (one file per shard in the log dir, temp + fdatasync + rename, written every
//! `replica.high.watermark.checkpoint.interval.ms` and at clean shutdown) is the driver's
//! (`driver/checkpoint.rs`).

use std::collections::BTreeMap;

/// Kafka's file name; shard N > 0 of a multi-shard broker appends `.N`.
pub const FILE_NAME: &str = "replication-offset-checkpoint";

const VERSION: &str = "0";

/// (topic, partition) -> high watermark.
pub type HighWatermarks = BTreeMap<(String, i32), i64>;

/// The file of shard `shard` in its log dir.
pub fn file_name(shard: usize) -> String {
    if shard == 0 {
        FILE_NAME.to_string()
    } else {
        format!("{FILE_NAME}.{shard}")
    }
}

/// True for a file this module writes (any shard's).
pub fn is_checkpoint_file(name: &str) -> bool {
    name == FILE_NAME
        || name
            .strip_prefix(FILE_NAME)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn encode(hws: &HighWatermarks) -> String {
    let mut out = format!("{VERSION}\n{}\n", hws.len());
    for ((topic, partition), hw) in hws {
        out.push_str(&format!("{topic} {partition} {hw}\n"));
    }
    out
}

/// Parses a checkpoint file; Err names what is wrong (the caller logs it and starts without).
pub fn parse(text: &str) -> Result<HighWatermarks, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(VERSION) => {}
        other => return Err(format!("unknown version line {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("missing or bad count line")?;
    let mut out = HighWatermarks::new();
    for n in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| format!("{count} entries announced, {n} found"))?;
        let mut parts = line.split(' ');
        let (Some(topic), Some(partition), Some(hw), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad entry line {line:?}"));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| format!("bad partition in {line:?}"))?;
        let hw: i64 = hw.parse().map_err(|_| format!("bad offset in {line:?}"))?;
        if topic.is_empty() || partition < 0 || hw < 0 {
            return Err(format!("bad entry line {line:?}"));
        }
        out.insert((topic.to_string(), partition), hw);
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(format!("more than the {count} entries announced"));
    }
    Ok(out)
}

/// Merges the files of several shards (a partition may have moved between shards when the
/// shard count changed): the highest high watermark wins, as a high watermark only grows.
pub fn merge(into: &mut HighWatermarks, other: HighWatermarks) {
    for (k, hw) in other {
        let e = into.entry(k).or_insert(hw);
        *e = (*e).max(hw);
    }
}

/// The high watermark a new replication role starts from: the previous role's on this
/// broker, else the checkpointed one, never above the log end (a truncated log, or a file
/// from before a truncation); 0 without either.
pub fn starting_high_watermark(
    previous_role: Option<i64>,
    checkpointed: Option<i64>,
    log_end: i64,
) -> i64 {
    previous_role
        .or(checkpointed)
        .unwrap_or(0)
        .min(log_end)
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_in_kafkas_format() {
        let mut hws = HighWatermarks::new();
        hws.insert(("orders".into(), 0), 42);
        hws.insert(("orders".into(), 1), 0);
        hws.insert(("__consumer_offsets".into(), 7), 9);
        let text = encode(&hws);
        assert_eq!(
            text,
            "0\n3\n__consumer_offsets 7 9\norders 0 42\norders 1 0\n"
        );
        assert_eq!(parse(&text).unwrap(), hws);
        assert_eq!(parse("0\n0\n").unwrap(), HighWatermarks::new());
    }

    #[test]
    fn checkpoint_damaged_files_are_refused_not_panicked_on() {
        for bad in [
            "",
            "1\n0\n",
            "0\n",
            "0\nx\n",
            "0\n2\norders 0 1\n",
            "0\n1\norders 0\n",
            "0\n1\norders zero 1\n",
            "0\n1\norders 0 -5\n",
            "0\n1\norders 0 1 extra\n",
            "0\n1\norders 0 1\norders 1 1\n",
            "0\n18446744073709551616\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn checkpoint_files_are_named_per_shard() {
        assert_eq!(file_name(0), "replication-offset-checkpoint");
        assert_eq!(file_name(3), "replication-offset-checkpoint.3");
        assert!(is_checkpoint_file("replication-offset-checkpoint"));
        assert!(is_checkpoint_file("replication-offset-checkpoint.12"));
        assert!(!is_checkpoint_file("replication-offset-checkpoint.tmp"));
        assert!(!is_checkpoint_file("replication-offset-checkpoint."));
        assert!(!is_checkpoint_file("leader-epoch-checkpoint"));
    }

    #[test]
    fn checkpoint_merge_keeps_the_highest_and_start_is_capped_by_the_log_end() {
        let mut a = HighWatermarks::new();
        a.insert(("t".into(), 0), 5);
        let mut b = HighWatermarks::new();
        b.insert(("t".into(), 0), 9);
        b.insert(("t".into(), 1), 2);
        merge(&mut a, b);
        assert_eq!(a[&("t".to_string(), 0)], 9);
        assert_eq!(a[&("t".to_string(), 1)], 2);
        assert_eq!(starting_high_watermark(None, None, 100), 0);
        assert_eq!(starting_high_watermark(None, Some(40), 100), 40);
        assert_eq!(starting_high_watermark(Some(50), Some(40), 100), 50);
        assert_eq!(starting_high_watermark(None, Some(400), 100), 100);
    }
}
