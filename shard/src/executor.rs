//! Starting the shards: one glommio `LocalExecutor` per shard, pinned to a CPU when there are
//! enough CPUs, all joined into one channel mesh before the shard's main future runs.

use std::future::Future;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::router::ShardContext;

/// Executor settings shared by all shards.
#[derive(Clone, Debug)]
pub struct ShardSetConfig {
    pub shards: usize,
    /// Pin shard i to CPU i (only when `shards <= available CPUs`).
    pub pin: bool,
    /// Spin this long before parking an idle shard: cuts cross-shard wake-up latency on VMs
    /// (see the platform notes) at the price of CPU. `None` parks at once.
    pub spin_before_park: Option<Duration>,
    /// Capacity of each shard-to-shard channel (messages).
    pub channel_capacity: usize,
    /// io_uring ring depth per shard (4096 works; 65536 does not).
    pub ring_depth: usize,
    /// Threads in each shard's blocking pool (sendfile/writev to sockets).
    pub blocking_threads: usize,
}

impl Default for ShardSetConfig {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin: true,
            spin_before_park: None,
            channel_capacity: 1024,
            ring_depth: 1024,
            blocking_threads: 2,
        }
    }
}

/// A running set of shards.
pub struct ShardSet;

impl ShardSet {
    /// Starts `config.shards` executors; each runs `main(ctx)`. Blocks until all return.
    /// Returns Err with a message if any shard failed to start or panicked.
    pub fn run<M, F, Fut>(config: &ShardSetConfig, main: F) -> Result<(), String>
    where
        M: Send + 'static,
        F: Fn(ShardContext<M>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(config.shards >= 1, "at least one shard");
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mesh: MeshBuilder<M, glommio::channels::channel_mesh::Full> =
            MeshBuilder::full(config.shards, config.channel_capacity);
        let mut handles = Vec::new();
        for id in 0..config.shards {
            let placement = if config.pin && config.shards <= cpus {
                Placement::Fixed(id)
            } else {
                Placement::Unbound
            };
            let mut builder = LocalExecutorBuilder::new(placement)
                .name(&format!("tern-shard-{id}"))
                .ring_depth(config.ring_depth)
                .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(
                    config.blocking_threads.max(1),
                ));
            if let Some(spin) = config.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            let mesh = mesh.clone();
            let main = main.clone();
            let count = config.shards;
            let handle = builder
                .spawn(move || async move {
                    let (senders, receivers) = mesh.join().await.expect("joining the shard mesh");
                    let ctx = ShardContext::new(id, count, senders, receivers);
                    main(ctx).await
                })
                .map_err(|e| format!("starting shard {id}: {e}"))?;
            handles.push(handle);
        }
        let mut failed = None;
        for (id, h) in handles.into_iter().enumerate() {
            if h.join().is_err() {
                failed = Some(format!("shard {id} panicked (see stderr)"));
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
