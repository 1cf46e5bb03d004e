//! KIP-392 follower fetching, the leader's side: which replica a consumer should read a
//! partition from (Fetch v11+ `preferred_read_replica`), chosen by the broker setting
//! `replica.selector.class` (`ReplicaSelector`). Kafka's default is none (consumers read from
//! the leader); `org.apache.kafka.common.replica.RackAwareReplicaSelector` sends a consumer
//! whose `rack_id` (librdkafka's `client.rack`) names a rack to an in-sync replica in that
//! rack, unless the leader is in it. Only replicas that hold the consumer's fetch offset
//! qualify (Kafka's `ReplicaManager.findPreferredReadReplica`), so the chosen follower can
//! serve it; the most caught-up one wins.

/// `replica.selector.class`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicaSelector {
    /// Unset: consumers read from the leader (Kafka's default).
    #[default]
    LeaderOnly,
    /// Kafka's `RackAwareReplicaSelector`.
    RackAware,
}

/// The class name Kafka and Tern accept for the rack-aware selector.
pub const RACK_AWARE_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

impl ReplicaSelector {
    /// The setting's value: empty for none, or the rack-aware selector's class name (its
    /// simple name `RackAwareReplicaSelector` too). None for any other class (Tern loads no
    /// plugins).
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim() {
            "" => Some(Self::LeaderOnly),
            RACK_AWARE_SELECTOR | "RackAwareReplicaSelector" => Some(Self::RackAware),
            _ => None,
        }
    }
}

/// A replica the leader could send a consumer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCandidate {
    pub broker: i32,
    pub rack: Option<String>,
    /// Its log start and log end as the leader knows them (from its last fetch).
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// In the committed ISR and on an unfenced broker.
    pub in_sync_and_live: bool,
}

/// The replica a consumer in `client_rack` fetching from `fetch_offset` should read from,
/// when it is not the leader (`leader_rack` is the leader's own rack). None: the leader
/// serves it (no selector, no rack given, the leader is in that rack, or no in-sync replica
/// there holds the offset).
pub fn preferred_read_replica(
    selector: ReplicaSelector,
    client_rack: &str,
    leader_rack: Option<&str>,
    fetch_offset: i64,
    candidates: &[ReadCandidate],
) -> Option<i32> {
    if selector != ReplicaSelector::RackAware || client_rack.is_empty() {
        return None;
    }
    if leader_rack == Some(client_rack) {
        return None;
    }
    candidates
        .iter()
        .filter(|c| {
            c.in_sync_and_live
                && c.rack.as_deref() == Some(client_rack)
                && c.log_start_offset <= fetch_offset
                && c.log_end_offset >= fetch_offset
        })
        // The most caught-up replica; ties go to the lowest broker id (deterministic).
        .max_by_key(|c| (c.log_end_offset, std::cmp::Reverse(c.broker)))
        .map(|c| c.broker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(broker: i32, rack: &str, start: i64, end: i64, isr: bool) -> ReadCandidate {
        ReadCandidate {
            broker,
            rack: Some(rack.to_string()),
            log_start_offset: start,
            log_end_offset: end,
            in_sync_and_live: isr,
        }
    }

    #[test]
    fn replica_selector_setting_values() {
        assert_eq!(
            ReplicaSelector::parse(""),
            Some(ReplicaSelector::LeaderOnly)
        );
        assert_eq!(
            ReplicaSelector::parse(RACK_AWARE_SELECTOR),
            Some(ReplicaSelector::RackAware)
        );
        assert_eq!(
            ReplicaSelector::parse("RackAwareReplicaSelector"),
            Some(ReplicaSelector::RackAware)
        );
        assert_eq!(ReplicaSelector::parse("com.example.MySelector"), None);
    }

    #[test]
    fn read_replica_is_an_in_sync_replica_in_the_consumers_rack() {
        let c = [
            cand(2, "b", 0, 100, true),
            cand(3, "c", 0, 100, true),
            cand(4, "c", 0, 120, true),
        ];
        let sel = ReplicaSelector::RackAware;
        assert_eq!(preferred_read_replica(sel, "b", Some("a"), 50, &c), Some(2));
        assert_eq!(
            preferred_read_replica(sel, "c", Some("a"), 50, &c),
            Some(4),
            "the most caught-up"
        );
        // The leader's rack, an unknown rack, no rack, no selector: the leader.
        assert_eq!(preferred_read_replica(sel, "a", Some("a"), 50, &c), None);
        assert_eq!(preferred_read_replica(sel, "z", Some("a"), 50, &c), None);
        assert_eq!(preferred_read_replica(sel, "", Some("a"), 50, &c), None);
        assert_eq!(
            preferred_read_replica(ReplicaSelector::LeaderOnly, "b", Some("a"), 50, &c),
            None
        );
    }

    #[test]
    fn read_replica_must_be_in_sync_and_hold_the_fetch_offset() {
        let sel = ReplicaSelector::RackAware;
        let out_of_sync = [cand(2, "b", 0, 100, false)];
        assert_eq!(
            preferred_read_replica(sel, "b", None, 50, &out_of_sync),
            None
        );
        let behind = [cand(2, "b", 0, 40, true)];
        assert_eq!(preferred_read_replica(sel, "b", None, 50, &behind), None);
        let trimmed = [cand(2, "b", 60, 100, true)];
        assert_eq!(preferred_read_replica(sel, "b", None, 50, &trimmed), None);
        let at_end = [cand(2, "b", 0, 50, true)];
        assert_eq!(preferred_read_replica(sel, "b", None, 50, &at_end), Some(2));
        // Equal positions: the lowest id.
        let tie = [cand(3, "b", 0, 80, true), cand(2, "b", 0, 80, true)];
        assert_eq!(preferred_read_replica(sel, "b", None, 50, &tie), Some(2));
    }
}
