//! Placement: which shard owns a partition (or a consumer group). Deterministic and documented,
//! so every shard computes the same owner without asking anyone:
//!
//! `shard = (fnv1a_32(topic) + partition) mod shard_count`
//!
//! Consecutive partitions of one topic land on consecutive shards, so a topic with at least as
//! many partitions as shards spreads over all cores; the topic hash staggers the starting shard
//! so that many single-partition topics also spread. Placement only depends on the shard count:
//! changing `--shards` between restarts is fine because all shards share the data directory.
//!
//! Consumer groups: a group is coordinated by the shard that owns its partition of the internal
//! `__consumer_offsets` log, `p = (javaStringHash(group) & 0x7fffffff) % offsets.topic.num.partitions`
//! (Kafka's formula), i.e. by `partition_shard("__consumer_offsets", p, shard_count)` — see
//! `src/groups/mod.rs`. Since the number of offsets partitions is fixed, a change of the shard
//! count moves whole offsets partitions, never individual groups.

/// Index of a shard (0-based, dense).
pub type ShardId = usize;

/// 32-bit FNV-1a: tiny, stable across versions and platforms (unlike `DefaultHasher`).
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The shard that owns partition `partition` of `topic`.
pub fn partition_shard(topic: &str, partition: i32, shard_count: usize) -> ShardId {
    assert!(shard_count > 0, "a broker has at least one shard");
    let p = u64::from(partition.max(0) as u32);
    ((u64::from(fnv1a_32(topic.as_bytes())) + p) % shard_count as u64) as ShardId
}

/// The shard that owns a consumer group's state machine.
pub fn group_shard(group_id: &str, shard_count: usize) -> ShardId {
    assert!(shard_count > 0, "a broker has at least one shard");
    (fnv1a_32(group_id.as_bytes()) as usize) % shard_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_partitions_spread_over_all_shards() {
        let shards = 4;
        let mut seen = [0usize; 4];
        for p in 0..8 {
            seen[partition_shard("orders", p, shards)] += 1;
        }
        assert_eq!(seen, [2, 2, 2, 2]);
    }

    #[test]
    fn placement_is_stable() {
        // Pinned values: changing the hash would move partitions between shards.
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(partition_shard("t", 0, 1), 0);
        assert_eq!(group_shard("g", 1), 0);
    }
}
