//! Starting the shards: one glommio `LocalExecutor` per shard, pinned to a CPU when there are
//! enough CPUs, all joined into one channel mesh before the shard's main future runs.

use std::future::Future;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::router::ShardContext;

/// Default of [`ShardSetConfig::io_poll_interval`].
pub const DEFAULT_IO_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Executor settings shared by all shards.
#[derive(Clone, Debug)]
pub struct ShardSetConfig {
    pub shards: usize,
    /// Pin shard i to CPU i (only when `shards <= available CPUs`).
    pub pin: bool,
    /// Spin this long before parking an idle shard: cuts cross-shard wake-up latency on VMs
    /// (see the platform notes) at the price of CPU. `None` parks at once.
    pub spin_before_park: Option<Duration>,
    /// Longest a shard runs tasks before it polls io_uring for completions (glommio's preempt
    /// timer). glommio polls I/O only between rounds of its task queues, and a queue that
    /// yields runs again at once while runnable, so this bounds how long background CPU work
    /// keeps arrived requests unread (the log cleaner sleeps instead). Kept at glommio's 100 ms:
    /// with 1 ms, shards parked in io_uring for good at shutdown (a lost wake-up, 3 of 16
    /// test_01 runs on a loaded machine; 0 of 6 at 100 ms).
    pub io_poll_interval: Duration,
    /// Capacity of each shard-to-shard channel (messages).
    pub channel_capacity: usize,
    /// io_uring ring depth per shard (4096 works; 65536 does not).
    pub ring_depth: usize,
    /// Threads in each shard's blocking pool (sendfile/writev to sockets).
    pub blocking_threads: usize,
    /// Run on these CPUs only (`tern serve --cpus`): shard i is pinned to `cpus[i % len]`
    /// (shards share CPUs when there are more shards), blocking pools are fenced to the set.
    /// Overrides `pin`.
    pub cpus: Option<Vec<usize>>,
}

impl Default for ShardSetConfig {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin: true,
            spin_before_park: None,
            io_poll_interval: DEFAULT_IO_POLL_INTERVAL,
            channel_capacity: 1024,
            ring_depth: 1024,
            blocking_threads: 2,
            cpus: None,
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
        let fence = match &config.cpus {
            Some(list) => {
                assert!(
                    !list.is_empty(),
                    "an empty CPU list is rejected when parsed"
                );
                let set = glommio::CpuSet::online()
                    .map_err(|e| format!("listing CPUs: {e}"))?
                    .filter(|l| list.contains(&l.cpu));
                if set.is_empty() {
                    return Err(format!("none of CPUs {list:?} is online"));
                }
                Some(set)
            }
            None => None,
        };
        for id in 0..config.shards {
            let placement = match &config.cpus {
                Some(list) => Placement::Fixed(list[id % list.len()]),
                None if config.pin && config.shards <= cpus => Placement::Fixed(id),
                None => Placement::Unbound,
            };
            let threads = config.blocking_threads.max(1);
            let pool = match &fence {
                Some(set) => glommio::PoolPlacement::Fenced(threads, set.clone()),
                None => glommio::PoolPlacement::Unbound(threads),
            };
            let mut builder = LocalExecutorBuilder::new(placement)
                .name(&format!("tern-shard-{id}"))
                .ring_depth(config.ring_depth)
                .preempt_timer(config.io_poll_interval)
                .blocking_thread_pool_placement(pool);
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

/// Parses a CPU list as `taskset -c` takes it (`N`, `N-M`, comma-separated): sorted, no
/// duplicates, not empty.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad CPU {x:?} in {s:?}: {e}"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b || b >= 4096 {
            return Err(format!("bad CPU range {part:?}"));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(format!("empty CPU list {s:?}"));
    }
    Ok(out)
}

/// Restricts the calling thread, and the threads it starts afterwards, to `cpus`.
pub fn restrict_process_threads(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it (indices checked
    // against CPU_SETSIZE) and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::other(format!("CPU {c} out of range")));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_taskset() {
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert_eq!(parse_cpu_list("0, 2-3,2"), Ok(vec![0, 2, 3]));
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }
}
