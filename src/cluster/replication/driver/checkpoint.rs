//! The driver's side of the persisted high watermarks (Kafka's `replication-offset-checkpoint`,
//! format and rules in `replication/hw_checkpoint.rs`): each shard keeps one file in the log
//! dir for the replicated partitions it owns, rewritten (temp + fdatasync + rename + dir sync)
//! every `replica.high.watermark.checkpoint.interval.ms` when a high watermark moved, and at
//! clean shutdown. On the first reconcile after a start, every shard's file is read, so a
//! restarted leader or follower starts from its last checkpointed high watermark instead of 0.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use super::{Role, ShardReplicas};
use crate::cluster::replication::hw_checkpoint::{self, HighWatermarks};
use crate::shard_state::ShardState;

/// A checkpoint file larger than this is ignored (bad input is never an unbounded read).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads and merges every shard's checkpoint file in `log_dir` (a missing dir or file is an
/// empty map; a damaged one is logged and skipped).
pub(super) fn load(log_dir: &Path) -> HighWatermarks {
    let mut out = HighWatermarks::new();
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !hw_checkpoint::is_checkpoint_file(name) {
            continue;
        }
        let path = entry.path();
        match tern_storage::read_small_file(&path, MAX_FILE_BYTES) {
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(hw_checkpoint::parse)
            {
                Ok(hws) => hw_checkpoint::merge(&mut out, hws),
                Err(e) => log::warn!("{}: ignored ({e})", path.display()),
            },
            Ok(None) => {}
            Err(e) => log::warn!("{}: unreadable ({e})", path.display()),
        }
    }
    out
}

impl ShardReplicas {
    /// The checkpointed high watermark of `key` (loads the files on first use).
    pub(super) fn checkpointed_hw(&self, state: &ShardState, key: &super::Key) -> Option<i64> {
        let mut c = self.checkpointed.borrow_mut();
        c.get_or_insert_with(|| load(&state.config.log_dir))
            .get(key)
            .copied()
    }

    /// Remembers the high watermark of a role that ends (the next checkpoint keeps it).
    pub(super) fn remember_hw(&self, key: &super::Key, hw: i64) {
        if let Some(c) = self.checkpointed.borrow_mut().as_mut() {
            c.insert(key.clone(), hw);
        }
    }

    /// What this shard's file holds now: the current roles' high watermarks and the
    /// remembered ones, for partitions this shard still has.
    fn high_watermarks(&self, state: &ShardState) -> HighWatermarks {
        let mut hws = self.checkpointed.borrow().clone().unwrap_or_default();
        for (key, role) in self.roles.borrow().iter() {
            let hw = match role {
                Role::Leader(l) => l.rules.high_watermark(),
                Role::Follower(f) => f.rules.high_watermark(),
            };
            hws.insert(key.clone(), hw);
        }
        hws.retain(|(topic, p), _| state.partitions.get(topic, *p).is_some());
        hws
    }

    /// Writes this shard's checkpoint file when its content changed since the last write.
    pub async fn write_checkpoint(state: &Rc<ShardState>) {
        let me = &state.replicas;
        if me.checkpointed.borrow().is_none() {
            return; // no role was ever made here: nothing to persist
        }
        // One writer at a time (the periodic task and shutdown share the temp file).
        while me.checkpoint_busy.replace(true) {
            tern_shard::task::sleep(Duration::from_millis(5)).await;
        }
        Self::write_checkpoint_now(state).await;
        me.checkpoint_busy.set(false);
    }

    async fn write_checkpoint_now(state: &Rc<ShardState>) {
        let me = &state.replicas;
        let text = hw_checkpoint::encode(&me.high_watermarks(state));
        if me.last_checkpoint.borrow().as_deref() == Some(text.as_str()) {
            return;
        }
        let name = hw_checkpoint::file_name(state.id);
        match tern_storage::write_file_atomic(&state.config.log_dir, &name, text.as_bytes()).await {
            Ok(()) => *me.last_checkpoint.borrow_mut() = Some(text),
            Err(e) => log::warn!("writing {name} failed: {e}"),
        }
    }

    /// Every checkpoint interval while this shard has replication roles; a last write when
    /// the last role is gone.
    pub(super) async fn run_checkpoints(state: Rc<ShardState>) {
        let interval = Duration::from_millis(state.config.hw_checkpoint_interval_ms);
        loop {
            tern_shard::task::sleep(interval).await;
            ShardReplicas::write_checkpoint(&state).await;
            if state.replicas.roles.borrow().is_empty() {
                state.replicas.checkpointing.set(false);
                return;
            }
        }
    }
}
