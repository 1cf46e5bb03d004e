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

/// The snapshot shards apply, from `image`. Standalone, the node is the only broker and
/// leads everything, so the snapshot carries no brokers and no placement (an empty `brokers`
/// map means standalone to the handlers), exactly as before clustering.
pub fn shard_view(
    image: &crate::cluster::metadata_log::image::MetadataImage,
    listener: &str,
    controller_id: i32,
    version: u64,
    standalone: bool,
) -> ClusterMetadata {
    let mut meta = crate::cluster::view::cluster_metadata(image, listener, controller_id, version);
    if standalone {
        meta.brokers.clear();
        meta.controller_id = -1;
        for t in meta.topics.values_mut() {
            t.placement.clear();
        }
    }
    meta
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata_log::image::MetadataImage;
    use crate::cluster::metadata_log::records::{
        MetadataRecord, PartitionRecord, RegisterBrokerRecord,
    };

    #[test]
    fn standalone_snapshots_carry_no_brokers_or_placement() {
        let id = uuid::Uuid::from_u128(3);
        let mut image = MetadataImage::default();
        let records = vec![
            MetadataRecord::ClusterId {
                cluster_id: "c".into(),
            },
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 0,
                incarnation_id: uuid::Uuid::from_u128(1),
                broker_epoch: 1,
                endpoints: Vec::new(),
                rack: None,
                fenced: false,
            }),
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: 0,
                replicas: vec![0],
                isr: vec![0],
                elr: vec![],
                leader: 0,
                leader_epoch: 4,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }),
        ];
        image.apply_entry(1, &records).unwrap();
        let cluster = shard_view(&image, "PLAINTEXT", 0, 2, false);
        assert!(cluster.is_cluster());
        assert_eq!(cluster.controller_id, 0);
        let alone = shard_view(&image, "PLAINTEXT", 0, 2, true);
        assert!(!alone.is_cluster());
        assert_eq!(alone.controller_id, -1);
        let t = alone.topic("t").unwrap();
        assert!(t.placement.is_empty());
        assert_eq!((t.leader(0, 7), t.leader_epoch(0)), (7, 4));
        assert_eq!(alone.metadata_offset, 1);
    }
}
