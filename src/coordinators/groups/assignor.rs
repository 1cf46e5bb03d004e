//! Server-side assignors of KIP-848 consumer groups: `uniform` (the default: balanced and sticky)
//! and `range` (per topic, contiguous ranges over the members sorted by id).

use std::collections::{BTreeMap, BTreeSet};

/// member id -> topic -> partitions
pub type Assignment = BTreeMap<String, BTreeMap<String, BTreeSet<i32>>>;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

pub struct AssignInput<'a> {
    /// member id -> subscribed topics
    pub members: &'a BTreeMap<String, BTreeSet<String>>,
    /// topic -> partition count (existing topics only)
    pub topics: &'a BTreeMap<String, i32>,
    /// the previous target assignment (for stickiness)
    pub previous: &'a Assignment,
}

pub fn assign(name: &str, input: &AssignInput) -> Assignment {
    match name {
        RANGE => range(input),
        _ => uniform(input),
    }
}

fn empty(input: &AssignInput) -> Assignment {
    input
        .members
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect()
}

pub fn range(input: &AssignInput) -> Assignment {
    let mut out = empty(input);
    for (topic, &n) in input.topics {
        let subs: Vec<&String> = input
            .members
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subs.is_empty() {
            continue;
        }
        let m = subs.len() as i32;
        let (per, extra) = (n / m, n % m);
        let mut next = 0;
        for (i, member) in subs.iter().enumerate() {
            let count = per + i32::from((i as i32) < extra);
            let set: BTreeSet<i32> = (next..next + count).collect();
            next += count;
            if !set.is_empty() {
                out.get_mut(*member)
                    .expect("member")
                    .insert(topic.clone(), set);
            }
        }
    }
    out
}

pub fn uniform(input: &AssignInput) -> Assignment {
    let mut owned: BTreeMap<&String, BTreeSet<(String, i32)>> =
        input.members.keys().map(|m| (m, BTreeSet::new())).collect();
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    let eligible = |m: &String, t: &String| input.members.get(m).is_some_and(|s| s.contains(t));
    // 1. Keep what members had, where still valid.
    for (m, prev) in input.previous {
        let Some(set) = owned.get_mut(m) else {
            continue;
        };
        for (t, ps) in prev {
            let Some(&n) = input.topics.get(t) else {
                continue;
            };
            if !eligible(m, t) {
                continue;
            }
            for &p in ps {
                if p < n && taken.insert((t.clone(), p)) {
                    set.insert((t.clone(), p));
                }
            }
        }
    }
    // 2. Hand out the rest, each to the least loaded eligible member.
    for (t, &n) in input.topics {
        for p in 0..n {
            if taken.contains(&(t.clone(), p)) {
                continue;
            }
            let best = owned
                .iter()
                .filter(|(m, _)| eligible(m, t))
                .min_by_key(|(m, s)| (s.len(), m.to_string()))
                .map(|(m, _)| (*m).clone());
            if let Some(m) = best {
                taken.insert((t.clone(), p));
                owned.get_mut(&m).expect("member").insert((t.clone(), p));
            }
        }
    }
    // 3. Balance: move partitions from the most to the least loaded eligible member while that
    //    lowers the spread (bounded).
    let total: usize = owned.values().map(BTreeSet::len).sum();
    for _ in 0..(total * total + 1).min(100_000) {
        let mut moved = false;
        let mut order: Vec<(&String, usize)> = owned.iter().map(|(m, s)| (*m, s.len())).collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        'outer: for (from, load) in order {
            let parts: Vec<(String, i32)> = owned[from].iter().rev().cloned().collect();
            for tp in parts {
                let to = owned
                    .iter()
                    .filter(|(m, _)| **m != from && eligible(m, &tp.0))
                    .min_by_key(|(m, s)| (s.len(), m.to_string()))
                    .map(|(m, s)| ((*m).clone(), s.len()));
                if let Some((to, to_load)) = to
                    && to_load + 1 < load
                {
                    owned.get_mut(from).expect("member").remove(&tp);
                    owned.get_mut(&to).expect("member").insert(tp);
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out = empty(input);
    for (m, set) in owned {
        let entry = out.get_mut(m).expect("member");
        for (t, p) in set {
            entry.entry(t).or_default().insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize, topics: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        (0..n)
            .map(|i| {
                (
                    format!("m{i}"),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    fn counts(a: &Assignment) -> Vec<usize> {
        a.values()
            .map(|t| t.values().map(BTreeSet::len).sum())
            .collect()
    }

    fn check_complete(a: &Assignment, topic: &str, n: i32) {
        let mut all: Vec<i32> = a
            .values()
            .flat_map(|t| t.get(topic).into_iter().flatten().copied())
            .collect();
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_is_balanced_complete_and_sticky() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 6)].into();
        let m3 = members(3, &["t"]);
        let a3 = uniform(&AssignInput {
            members: &m3,
            topics: &topics,
            previous: &BTreeMap::new(),
        });
        assert_eq!(counts(&a3), vec![2, 2, 2]);
        check_complete(&a3, "t", 6);
        let m4 = members(4, &["t"]);
        let a4 = uniform(&AssignInput {
            members: &m4,
            topics: &topics,
            previous: &a3,
        });
        check_complete(&a4, "t", 6);
        let mut c = counts(&a4);
        c.sort();
        assert_eq!(c, vec![1, 1, 2, 2]);
        // Sticky: every partition of a4 held by m0..m2 was theirs in a3.
        for m in ["m0", "m1", "m2"] {
            for p in a4[m].get("t").into_iter().flatten() {
                assert!(a3[m]["t"].contains(p));
            }
        }
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 7)].into();
        let m = members(3, &["t"]);
        let a = range(&AssignInput {
            members: &m,
            topics: &topics,
            previous: &BTreeMap::new(),
        });
        assert_eq!(a["m0"]["t"], [0, 1, 2].into());
        assert_eq!(a["m1"]["t"], [3, 4].into());
        assert_eq!(a["m2"]["t"], [5, 6].into());
    }
}
