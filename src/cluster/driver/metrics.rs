//! The driver's Prometheus metrics (appended to shard 0's scrape): the controller's role and
//! the quorum's term (KRaft's controller epoch), the leader, the committed and published
//! metadata offsets, registered and fenced brokers, unclean leader elections, and this broker's
//! heartbeat state and latency.

use std::fmt::Write;

use super::Driver;

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

pub fn render(d: &Driver) -> String {
    let mut out = String::new();
    let (active, term, leader, committed, image) = match &d.node {
        Some(n) => {
            let st = n.st.borrow();
            (
                st.controller.is_active(),
                st.quorum.term() as f64,
                st.leader.unwrap_or(-1),
                st.quorum.committed_index() as f64,
                st.controller.committed().clone(),
            )
        }
        None => {
            let (image, controller) = d.follower_image.borrow().clone();
            (false, -1.0, controller, -1.0, image)
        }
    };
    gauge(
        &mut out,
        "tern_controller_active",
        "1 on the active controller (the metadata quorum's leader), else 0.",
        active as u8 as f64,
    );
    gauge(
        &mut out,
        "tern_controller_voter",
        "1 when this node is a voter of the metadata quorum.",
        d.node.is_some() as u8 as f64,
    );
    gauge(
        &mut out,
        "tern_metadata_quorum_term",
        "Raft term of the metadata quorum (the controller epoch); -1 on a broker-only node.",
        term,
    );
    gauge(
        &mut out,
        "tern_metadata_quorum_leader",
        "Node id of the active controller as this node knows it (-1 unknown).",
        leader as f64,
    );
    gauge(
        &mut out,
        "tern_metadata_committed_index",
        "Highest committed raft index of the metadata log (-1 on a broker-only node).",
        committed,
    );
    gauge(
        &mut out,
        "tern_metadata_offset",
        "Offset of the last metadata-log entry published to this node's shards.",
        d.applied_offset() as f64,
    );
    gauge(
        &mut out,
        "tern_registered_brokers",
        "Brokers registered in the metadata image.",
        image.brokers.len() as f64,
    );
    gauge(
        &mut out,
        "tern_fenced_brokers",
        "Registered brokers that are fenced.",
        image.brokers.values().filter(|b| b.fenced).count() as f64,
    );
    if let Some(n) = &d.node {
        let st = n.st.borrow();
        if st.controller.is_active() {
            let committed = st.controller.committed();
            let _ = writeln!(
                out,
                "# HELP tern_broker_metadata_lag Metadata-log entries a registered broker is \
                 behind the active controller's committed offset, as of its last heartbeat \
                 (reported by the active controller only).\n# TYPE tern_broker_metadata_lag gauge"
            );
            for id in committed.brokers.keys() {
                let lag = st
                    .broker_offsets
                    .get(id)
                    .map_or(-1.0, |&o| committed.last_offset.saturating_sub(o) as f64);
                let _ = writeln!(out, "tern_broker_metadata_lag{{broker=\"{id}\"}} {lag}");
            }
        }
    }
    // Leadership: elections this node's controller decided (while it was the active one).
    if let Some(n) = &d.node {
        let _ = writeln!(
            out,
            "# HELP tern_unclean_leader_elections_total Unclean leader elections (an out-of-sync \
             replica made leader) this node decided as the active controller.\n# TYPE \
             tern_unclean_leader_elections_total counter\ntern_unclean_leader_elections_total {}",
            n.st.borrow().controller.unclean_elections()
        );
    }
    if let Some(l) = &d.lifecycle {
        gauge(
            &mut out,
            "tern_broker_fenced",
            "1 while this broker is fenced (not registered, or not caught up).",
            l.fenced.get() as u8 as f64,
        );
        gauge(
            &mut out,
            "tern_broker_epoch",
            "This broker's epoch (-1 before registration).",
            l.epoch.get() as f64,
        );
        gauge(
            &mut out,
            "tern_broker_heartbeat_latency_seconds",
            "Round trip of the last heartbeat to the active controller.",
            l.heartbeat_latency_us.get() as f64 / 1e6,
        );
    }
    out
}
