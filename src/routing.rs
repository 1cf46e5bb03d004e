//! Who serves what, read off a metadata snapshot: whether this broker may answer a request for
//! a partition (it leads it), whether it hosts a replica of it, how clients reach a broker
//! (Metadata, KIP-951 `NodeEndpoints`), and which broker Metadata / DescribeCluster name as the
//! controller. In standalone mode (`ClusterMetadata::brokers` empty) this node is the only
//! broker: it hosts and leads every partition, and every rule here reduces to what a single
//! node always answered.

use crate::kafka::errors;
use crate::metadata::{ClusterMetadata, NO_LEADER, TopicMeta, check_leader_epoch};

/// The error a partition request served only by the leader (Produce, Fetch from a consumer,
/// ListOffsets, DeleteRecords) gets on broker `node`, in Kafka's order: an unknown partition is
/// UNKNOWN_TOPIC_OR_PARTITION; a partition without a replica here is NOT_LEADER_OR_FOLLOWER; a
/// stale or future `requested_epoch` (-1 = not given) is FENCED / UNKNOWN_LEADER_EPOCH; a
/// replica that does not lead is NOT_LEADER_OR_FOLLOWER. NONE when `node` may serve it.
pub fn leader_refusal(
    meta: &ClusterMetadata,
    node: i32,
    topic: &str,
    partition: i32,
    requested_epoch: i32,
) -> i16 {
    let Some(tm) = meta.topic(topic).filter(|t| t.has_partition(partition)) else {
        return errors::UNKNOWN_TOPIC_OR_PARTITION;
    };
    if !hosts_replica(meta, tm, partition, node) {
        return errors::NOT_LEADER_OR_FOLLOWER;
    }
    let code = check_leader_epoch(tm.leader_epoch(partition), requested_epoch);
    if code != errors::NONE {
        return code;
    }
    if tm.leader(partition, node) != node {
        return errors::NOT_LEADER_OR_FOLLOWER;
    }
    errors::NONE
}

/// True when broker `node` may serve a consumer's read of `partition` as a follower
/// (KIP-392): it is in the partition's ISR and another broker leads it. A replica out of the
/// ISR sends the consumer back to the leader (NOT_LEADER_OR_FOLLOWER) rather than hold it
/// back at its own lagging high watermark.
pub fn serves_as_follower(meta: &ClusterMetadata, topic: &str, partition: i32, node: i32) -> bool {
    meta.is_cluster()
        && meta
            .topic(topic)
            .and_then(|t| t.partition_meta(partition))
            .is_some_and(|p| p.leader >= 0 && p.leader != node && p.isr.contains(&node))
}

/// A consumer Fetch's refusal on broker `node`: as `leader_refusal`, except that with
/// `follower_ok` (Fetch v11+, KIP-392) an in-sync follower serves it too (after the same
/// leader epoch check).
pub fn consumer_fetch_refusal(
    meta: &ClusterMetadata,
    node: i32,
    topic: &str,
    partition: i32,
    requested_epoch: i32,
    follower_ok: bool,
) -> i16 {
    let code = leader_refusal(meta, node, topic, partition, requested_epoch);
    if code == errors::NOT_LEADER_OR_FOLLOWER
        && follower_ok
        && serves_as_follower(meta, topic, partition, node)
    {
        return errors::NONE;
    }
    code
}

/// The owner shard's refusal of a partition request (None: serve it from the local log, which
/// exists when `has_log`). Leadership may have moved since the connection's shard checked it,
/// and a follower's log must not be served. Standalone: only a missing log is refused
/// (UNKNOWN_TOPIC_OR_PARTITION), as always.
pub fn owner_refusal(
    meta: &ClusterMetadata,
    node: i32,
    topic: &str,
    partition: i32,
    has_log: bool,
) -> Option<i16> {
    if !meta.is_cluster() {
        return (!has_log).then_some(errors::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match meta.topic(topic).filter(|t| t.has_partition(partition)) {
        None => Some(errors::UNKNOWN_TOPIC_OR_PARTITION),
        Some(t) if !has_log || t.leader(partition, node) != node => {
            Some(errors::NOT_LEADER_OR_FOLLOWER)
        }
        Some(_) => None,
    }
}

/// True when broker `node` holds a replica of `partition` of `tm` (and so keeps its log):
/// every partition on a standalone node; in cluster mode, when the placement lists `node`.
pub fn hosts_replica(meta: &ClusterMetadata, tm: &TopicMeta, partition: i32, node: i32) -> bool {
    if !meta.is_cluster() || tm.placement.is_empty() {
        return tm.has_partition(partition);
    }
    tm.partition_meta(partition)
        .is_some_and(|p| p.replicas.contains(&node))
}

/// True when `broker` is registered and unfenced (standalone: only this node, `local`).
pub fn is_live(meta: &ClusterMetadata, broker: i32, local: i32) -> bool {
    if meta.is_cluster() {
        meta.brokers.get(&broker).is_some_and(|b| !b.fenced)
    } else {
        broker == local
    }
}

/// The leader of `partition` as clients should see it: the placement's leader when it is a
/// live broker, else NO_LEADER (Kafka's LEADER_NOT_AVAILABLE).
pub fn live_leader(meta: &ClusterMetadata, tm: &TopicMeta, partition: i32, local: i32) -> i32 {
    let leader = tm.leader(partition, local);
    if leader != NO_LEADER && is_live(meta, leader, local) {
        leader
    } else {
        NO_LEADER
    }
}

/// The replicas of `partition` that are not on a live broker (Metadata's offline replicas).
pub fn offline_replicas(meta: &ClusterMetadata, tm: &TopicMeta, partition: i32) -> Vec<i32> {
    tm.partition_meta(partition).map_or_else(Vec::new, |p| {
        p.replicas
            .iter()
            .copied()
            .filter(|r| meta.brokers.get(r).is_none_or(|b| b.fenced))
            .collect()
    })
}

/// The controller id brokers report to clients (Metadata, DescribeCluster with the brokers
/// endpoint type). Clients send controller-bound requests (CreateTopics, ...) to it, and any
/// broker forwards them, so it must be a broker they can reach: the active controller when it
/// is a live broker (combined mode); else this broker when it is live; else the lowest live
/// broker id; -1 when no broker is live. (Kafka's KRaft brokers report a random live broker;
/// Tern's choice is deterministic and names the real controller whenever it can.)
/// Standalone: this node.
pub fn reported_controller(meta: &ClusterMetadata, local: i32) -> i32 {
    if !meta.is_cluster() {
        return local;
    }
    if is_live(meta, meta.controller_id, local) {
        meta.controller_id
    } else if is_live(meta, local, local) {
        local
    } else {
        meta.live_brokers().next().map_or(NO_LEADER, |b| b.id)
    }
}

/// How clients reach a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::handlers::test_fixtures;

    #[test]
    fn standalone_serves_every_partition() {
        let meta = test_fixtures::cluster();
        assert_eq!(leader_refusal(&meta, 1, "orders", 0, -1), errors::NONE);
        assert_eq!(leader_refusal(&meta, 1, "orders", 2, 3), errors::NONE);
        assert_eq!(
            leader_refusal(&meta, 1, "orders", 2, 2),
            errors::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            leader_refusal(&meta, 1, "orders", 3, -1),
            errors::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(owner_refusal(&meta, 1, "orders", 0, true), None);
        assert_eq!(
            owner_refusal(&meta, 1, "orders", 0, false),
            Some(errors::UNKNOWN_TOPIC_OR_PARTITION)
        );
        assert_eq!(reported_controller(&meta, 1), 1);
        let tm = meta.topic("orders").unwrap();
        assert!(hosts_replica(&meta, tm, 2, 1));
        assert_eq!(live_leader(&meta, tm, 0, 1), 1);
        assert!(offline_replicas(&meta, tm, 0).is_empty());
    }

    #[test]
    fn cluster_mode_serves_only_led_partitions() {
        // Broker 1 leads p0, replicates p1 (led by 2), has no replica of p2 (leaderless).
        let meta = test_fixtures::multi_broker();
        assert_eq!(leader_refusal(&meta, 1, "orders", 0, -1), errors::NONE);
        assert_eq!(
            leader_refusal(&meta, 1, "orders", 1, -1),
            errors::NOT_LEADER_OR_FOLLOWER
        );
        assert_eq!(
            leader_refusal(&meta, 1, "orders", 2, -1),
            errors::NOT_LEADER_OR_FOLLOWER
        );
        // A replica checks the epoch first; a non-replica does not look at it.
        assert_eq!(
            leader_refusal(&meta, 1, "orders", 1, 0),
            errors::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            leader_refusal(&meta, 1, "orders", 2, 0),
            errors::NOT_LEADER_OR_FOLLOWER
        );
        assert_eq!(leader_refusal(&meta, 2, "orders", 1, 6), errors::NONE);
        assert_eq!(
            leader_refusal(&meta, 1, "nope", 0, -1),
            errors::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(owner_refusal(&meta, 1, "orders", 0, true), None);
        let nlf = Some(errors::NOT_LEADER_OR_FOLLOWER);
        assert_eq!(owner_refusal(&meta, 1, "orders", 0, false), nlf);
        // A follower's log is not served.
        assert_eq!(owner_refusal(&meta, 1, "orders", 1, true), nlf);
        assert_eq!(
            owner_refusal(&meta, 1, "nope", 0, false),
            Some(errors::UNKNOWN_TOPIC_OR_PARTITION)
        );

        let tm = meta.topic("orders").unwrap();
        assert!(hosts_replica(&meta, tm, 0, 1));
        assert!(hosts_replica(&meta, tm, 1, 1));
        assert!(!hosts_replica(&meta, tm, 2, 1));
        assert!(hosts_replica(&meta, tm, 2, 3));
        assert_eq!(live_leader(&meta, tm, 1, 1), 2);
        assert_eq!(live_leader(&meta, tm, 2, 1), NO_LEADER);
        // Broker 3 is fenced, broker 4 was never registered.
        assert_eq!(offline_replicas(&meta, tm, 0), vec![3]);
        assert_eq!(offline_replicas(&meta, tm, 2), vec![3, 4]);
    }

    #[test]
    fn reported_controller_is_a_live_broker() {
        let mut meta = test_fixtures::multi_broker();
        meta.controller_id = 2;
        assert_eq!(reported_controller(&meta, 1), 2);
        // A controller that is not a live broker (controller-only node, unknown): this broker.
        meta.controller_id = 3;
        assert_eq!(reported_controller(&meta, 1), 1);
        meta.controller_id = -1;
        assert_eq!(reported_controller(&meta, 1), 1);
        // This broker fenced: the lowest live one.
        assert_eq!(reported_controller(&meta, 3), 1);
        for b in meta.brokers.values_mut() {
            b.fenced = true;
        }
        assert_eq!(reported_controller(&meta, 1), -1);
    }
}
