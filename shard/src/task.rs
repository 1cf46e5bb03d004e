//! Task, timer and blocking-work helpers for code running on a shard. Thin wrappers over glommio
//! so that broker logic does not name the runtime.

use std::future::Future;
use std::time::Duration;

/// Runs `fut` on the current shard in the background.
pub fn spawn<F>(fut: F)
where
    F: Future + 'static,
    F::Output: 'static,
{
    glommio::spawn_local(fut).detach();
}

/// Runs `fut` on the current shard and returns a handle whose drop does not cancel it.
pub fn spawn_joinable<F>(fut: F) -> glommio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    glommio::spawn_local(fut).detach()
}

/// Sleeps without blocking the shard.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Runs a blocking closure (a syscall that may wait, such as `sendfile` to a slow socket) on this
/// shard's blocking thread pool, so the shard thread never stalls.
pub async fn run_blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Yields to other tasks on this shard if this one has run for too long.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Runs `fut` on the current shard in its own named task queue with a small CPU share
/// (`shares` against the default queue's 1000) and latency not important: background work such
/// as the log cleaner, which glommio then preempts in favour of the serving tasks whenever both
/// are runnable. Logs (and does not run `fut`) if the queue cannot be created.
pub fn spawn_background<F>(name: &str, shares: usize, fut: F)
where
    F: Future + 'static,
    F::Output: 'static,
{
    let tq = glommio::executor().create_task_queue(
        glommio::Shares::Static(shares),
        glommio::Latency::NotImportant,
        name,
    );
    match glommio::spawn_local_into(fut, tq) {
        Ok(t) => drop(t.detach()),
        Err(e) => {
            log::error!("task queue {name}: {e}; the task does not run");
        }
    }
}

/// Runs `fut` for at most `d`: `None` if the time ran out first (the future is dropped).
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
    use futures::FutureExt;
    let fut = std::pin::pin!(fut.fuse());
    let timer = std::pin::pin!(sleep(d).fuse());
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}
