//! Replica placement for CreateTopics / CreatePartitions: spreads replicas and leaders evenly
//! over the usable brokers, counting what they already hold, and puts the replicas of one
//! partition on different racks while there are racks enough (`broker.rack`; a broker without
//! a rack counts as rack ""). Greedy and deterministic: the leader of each new partition is the
//! broker with the fewest leaders, each follower the broker on the least-used rack of that
//! partition with the fewest replicas; ties go round-robin from the partition index.

use std::collections::BTreeMap;

/// A broker that may receive new replicas.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
    /// Leaderships and replicas it already holds.
    pub leaders: usize,
    pub replicas: usize,
}

/// Places `partitions` new partitions of `replication_factor` replicas (leader first).
/// `first_partition` is the index of the first new one (for round-robin tie-breaking).
/// Needs `replication_factor <= candidates.len()` (checked by the caller, which owns the error).
pub fn place(
    candidates: &mut [Candidate],
    first_partition: usize,
    partitions: usize,
    replication_factor: usize,
) -> Vec<Vec<i32>> {
    assert!(replication_factor >= 1 && replication_factor <= candidates.len());
    candidates.sort_by_key(|c| c.id);
    let n = candidates.len();
    let mut out = Vec::with_capacity(partitions);
    for p in first_partition..first_partition + partitions {
        // Round-robin rank: the broker at position p % n wins ties for this partition.
        let rank = |i: usize| (i + n - p % n) % n;
        let leader = (0..n)
            .min_by_key(|&i| (candidates[i].leaders, candidates[i].replicas, rank(i)))
            .expect("at least one candidate");
        let mut chosen = vec![leader];
        let mut rack_use: BTreeMap<&str, usize> = BTreeMap::new();
        *rack_use.entry(rack_of(&candidates[leader])).or_default() += 1;
        while chosen.len() < replication_factor {
            let next = (0..n)
                .filter(|i| !chosen.contains(i))
                .min_by_key(|&i| {
                    let c = &candidates[i];
                    let used = rack_use.get(rack_of(c)).copied().unwrap_or(0);
                    (used, c.replicas, rank(i))
                })
                .expect("replication factor <= candidates");
            *rack_use.entry(rack_of(&candidates[next])).or_default() += 1;
            chosen.push(next);
        }
        candidates[leader].leaders += 1;
        for &i in &chosen {
            candidates[i].replicas += 1;
        }
        out.push(chosen.iter().map(|&i| candidates[i].id).collect());
    }
    out
}

fn rack_of(c: &Candidate) -> &str {
    c.rack.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                id: i as i32 + 1,
                rack: r.map(str::to_string),
                leaders: 0,
                replicas: 0,
            })
            .collect()
    }

    fn counts(assign: &[Vec<i32>]) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
        let (mut leaders, mut replicas) = (BTreeMap::new(), BTreeMap::new());
        for a in assign {
            *leaders.entry(a[0]).or_default() += 1;
            for b in a {
                *replicas.entry(*b).or_default() += 1;
            }
        }
        (leaders, replicas)
    }

    #[test]
    fn cluster_placement_spreads_replicas_and_leaders_evenly() {
        let mut b = brokers(&[None, None, None]);
        let a = place(&mut b, 0, 12, 3);
        let (leaders, replicas) = counts(&a);
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![12, 12, 12]
        );
        for r in &a {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3, "distinct replicas {r:?}");
        }
        // A second topic on the same brokers keeps the spread (loads carry over).
        let a2 = place(&mut b, 0, 5, 2);
        let (l2, _) = counts(&a2);
        assert!(l2.values().all(|&n| n <= 2), "{l2:?}");
        assert_eq!(b.iter().map(|c| c.leaders).sum::<usize>(), 17);
        let max = b.iter().map(|c| c.leaders).max().unwrap();
        let min = b.iter().map(|c| c.leaders).min().unwrap();
        assert!(max - min <= 1, "{b:?}");
    }

    #[test]
    fn cluster_placement_puts_replicas_on_distinct_racks() {
        // Racks a, a, b, b, c, c (ids 1..6): three replicas always on three racks.
        let mut b = brokers(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let rack = |id: i32| ["a", "a", "b", "b", "c", "c"][id as usize - 1];
        let a = place(&mut b, 0, 30, 3);
        for r in &a {
            let mut racks: Vec<_> = r.iter().map(|&id| rack(id)).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "{r:?}");
        }
        let (leaders, _) = counts(&a);
        assert!(leaders.values().all(|&n| n == 5), "{leaders:?}");
        // More replicas than racks: every rack used before one repeats.
        let mut b = brokers(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        for r in place(&mut b, 0, 8, 3) {
            let in_a = r.iter().filter(|&&id| id <= 2).count();
            assert!(in_a == 1 || in_a == 2, "{r:?}");
        }
    }
}
