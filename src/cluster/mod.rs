//! Tern as a cluster (KRaft-style): the cluster settings, the metadata log's records and the
//! image they build, the controller's decisions over that image, and the Raft quorum that
//! replicates the log. Everything here is sans-IO (no glommio, no clock, no sockets): inputs are
//! requests, ticks, peer messages and I/O completions; outputs are records to propose, messages
//! to send and writes/syncs to issue. The glommio driver (shard 0) and the simulator host the
//! same code. See docs/cluster.md.

#![allow(dead_code)] // foundations: the glommio driver hosts them next (docs/cluster.md)

pub mod config;
pub mod controller;
pub mod driver;
pub mod meta_properties;
pub mod metadata_log;
pub mod quorum;
pub mod replication;
#[cfg(test)]
mod sim;
pub mod status;
pub mod view;
