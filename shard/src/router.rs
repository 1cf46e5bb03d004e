//! Cross-shard calls. Each shard holds a `ShardRouter<M>` with a bounded channel to every other
//! shard (a glommio full mesh); `invoke_on(shard, msg)` delivers a plain message value to the
//! shard that owns the data. A message carries its own reply channel (a `futures` oneshot, which
//! wakes a task on another thread correctly), so the router itself is reply-agnostic.
//!
//! Ordering: messages from one shard to another arrive in send order, and the receiving shard
//! starts handling them in that order (`ShardContext::serve` polls each handler once, in arrival
//! order, before receiving the next message). Handlers that must order work (produce appends)
//! do it synchronously in their first poll.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use futures::FutureExt;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::placement::ShardId;

/// Sends messages to other shards.
pub struct ShardRouter<M: Send + 'static> {
    id: ShardId,
    count: usize,
    senders: Senders<M>,
    sent: Cell<u64>,
}

impl<M: Send + 'static> ShardRouter<M> {
    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Messages this shard has sent to others (for metrics).
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// Delivers `msg` to `shard`, waiting if its queue is full. Must not target this shard: the
    /// caller runs local work directly.
    pub async fn invoke_on(&self, shard: ShardId, msg: M) -> Result<(), M> {
        assert_ne!(
            shard, self.id,
            "invoke_on is for other shards; run local work directly"
        );
        assert!(shard < self.count, "shard {shard} out of range");
        self.sent.set(self.sent.get() + 1);
        self.senders.send_to(shard, msg).await.map_err(|e| match e {
            glommio::GlommioError::Closed(glommio::ResourceType::Channel(m)) => m,
            glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m)) => m,
            other => panic!("unexpected channel error: {other}"),
        })
    }

    /// Closes this shard's outgoing channels (shutdown).
    pub fn close(&self) {
        self.senders.close();
    }
}

/// What a shard receives when it starts: its identity, its router, its inbound channels.
pub struct ShardContext<M: Send + 'static> {
    pub id: ShardId,
    pub count: usize,
    pub router: Rc<ShardRouter<M>>,
    receivers: Option<Receivers<M>>,
}

impl<M: Send + 'static> ShardContext<M> {
    pub(crate) fn new(
        id: ShardId,
        count: usize,
        senders: Senders<M>,
        receivers: Receivers<M>,
    ) -> Self {
        let router = Rc::new(ShardRouter {
            id,
            count,
            senders,
            sent: Cell::new(0),
        });
        Self {
            id,
            count,
            router,
            receivers: Some(receivers),
        }
    }

    /// Spawns one receive loop per peer; each message is handed to `handler`, whose future is
    /// spawned as a task on this shard (first-polled in arrival order). Returns when all peers
    /// have closed their channels.
    pub async fn serve<H, F>(&mut self, handler: H)
    where
        H: Fn(M) -> F + Clone + 'static,
        F: Future<Output = ()> + 'static,
    {
        let mut receivers = self.receivers.take().expect("serve is called once");
        let mut loops = Vec::new();
        for (_peer, rx) in receivers.streams() {
            let handler = handler.clone();
            loops.push(
                glommio::spawn_local(async move {
                    while let Some(msg) = rx.recv().await {
                        let mut fut = Box::pin(handler(msg));
                        // Poll once inline so that synchronous prefixes run in arrival order.
                        if fut.as_mut().now_or_never().is_none() {
                            glommio::spawn_local(fut).detach();
                        }
                    }
                })
                .detach(),
            );
        }
        for l in loops {
            l.await;
        }
    }
}
