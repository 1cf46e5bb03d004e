//! The in-memory view of the metadata log that raft-rs reads through its `Storage` trait: the
//! entries since the last snapshot, the hard state and the snapshot itself (with the image
//! bytes, which raft-rs' `MemStorage` does not keep). Durability is not here: the driver writes
//! what `MetadataQuorum` hands out and confirms it; on restart this store is rebuilt from what
//! the driver read back from disk.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

pub struct LogStore {
    mem: MemStorage,
    /// The latest snapshot (index 0 = none yet).
    snapshot: Snapshot,
}

impl LogStore {
    /// A new log whose first configuration has these voters (raft ids).
    pub fn new(voters: Vec<u64>) -> Self {
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        Self {
            mem,
            snapshot: Snapshot::default(),
        }
    }

    /// Rebuilds the store from persisted state: a snapshot (optional), the entries after it
    /// and the hard state.
    pub fn restore(
        voters: Vec<u64>,
        snapshot: Option<Snapshot>,
        entries: &[Entry],
        hard_state: HardState,
    ) -> raft::Result<Self> {
        let mut store = Self::new(voters);
        if let Some(s) = snapshot {
            store.install(s)?;
        }
        store.append(entries)?;
        store.mem.wl().set_hardstate(hard_state);
        Ok(store)
    }

    pub fn append(&mut self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.mem.wl().set_hardstate(hs);
    }

    /// A snapshot from the leader (or from disk) replaces the log up to its index.
    pub fn install(&mut self, snapshot: Snapshot) -> raft::Result<()> {
        self.mem.wl().apply_snapshot(snapshot.clone())?;
        self.snapshot = snapshot;
        Ok(())
    }

    /// A local snapshot at `index` (applied); entries up to it are dropped from memory.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> raft::Result<Snapshot> {
        let term = self.mem.term(index)?;
        let conf_state = self.mem.initial_state()?.conf_state;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        self.mem.wl().compact(index)?;
        self.snapshot = snapshot.clone();
        Ok(snapshot)
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
