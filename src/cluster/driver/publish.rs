//! Publishing the metadata to the shards: after committed entries are applied (batched: one
//! publication covers every entry applied since the last), shard 0 turns the image into a
//! `ClusterMetadata` snapshot (`cluster::view`) and sends the same `Arc` to every shard
//! (`ShardMessage::ApplyMetadata`), as the standalone controller always did: no lock, no
//! cross-core hop on produce or fetch. Callers wait for an offset to be published on every
//! shard (a created topic exists everywhere before CreateTopics answers).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};

use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::shard_state::ShardState;

/// Builds the snapshot to publish (version given), or None when there is nothing to publish yet.
pub type Source = Box<dyn Fn(u64) -> Option<ClusterMetadata>>;

pub struct Publisher {
    /// Metadata offset every shard has applied.
    published: Cell<u64>,
    waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    wake: mpsc::UnboundedSender<()>,
}

impl Publisher {
    /// Starts the publishing task. `shard` None: a controller-only node (nothing to host; the
    /// offset still advances so that waiters see it).
    pub fn start(shard: Option<Rc<ShardState>>, first_version: u64, source: Source) -> Rc<Self> {
        let (wake, mut rx) = mpsc::unbounded();
        let me = Rc::new(Self {
            published: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            wake,
        });
        let weak = Rc::downgrade(&me);
        tern_shard::task::spawn(async move {
            let mut version = first_version;
            while rx.next().await.is_some() {
                while rx.try_recv().is_ok() {}
                let Some(me) = weak.upgrade() else { return };
                version += 1;
                let Some(meta) = source(version) else {
                    continue;
                };
                let offset = meta.metadata_offset;
                if let Some(shard) = &shard {
                    let meta = Arc::new(meta);
                    let waits = (0..shard.count).map(|s| {
                        let meta = meta.clone();
                        async move {
                            shard
                                .call(s, |reply| ShardMessage::ApplyMetadata { meta, reply })
                                .await
                        }
                    });
                    futures::future::join_all(waits).await;
                }
                me.set_published(offset);
            }
        });
        me
    }

    /// Something was applied: publish soon (coalesced with whatever follows).
    pub fn mark_dirty(&self) {
        let _ = self.wake.unbounded_send(());
    }

    pub fn published(&self) -> u64 {
        self.published.get()
    }

    fn set_published(&self, offset: u64) {
        if offset < self.published.get() {
            // An installed snapshot can move the image back only if it is older (never from a
            // leader); keep the higher mark so waiters are not confused.
            return;
        }
        self.published.set(offset);
        let mut waiters = self.waiters.borrow_mut();
        let (done, rest): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(o, _)| *o <= offset);
        *waiters = rest;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    /// Waits until `offset` is applied on every shard. False if the publisher stopped.
    pub async fn wait_for(&self, offset: u64) -> bool {
        if self.published.get() >= offset {
            return true;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push((offset, tx));
        rx.await.is_ok()
    }
}
