//! The shard runtime: one glommio executor pinned per core, a deterministic placement of
//! partitions onto shards, explicit cross-shard calls (`ShardRouter::invoke_on`), and the thin
//! wrappers (tasks, timers, sockets, blocking work) that let the broker above read as plain async
//! Rust. Everything glommio-specific that is not disk I/O lives in this crate.

pub mod budget;
pub mod executor;
pub mod net;
pub mod placement;
pub mod router;
pub mod task;

pub use executor::{ShardSet, ShardSetConfig};
pub use placement::{ShardId, group_shard, partition_shard};
pub use router::{ShardContext, ShardRouter};
