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
