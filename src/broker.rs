//! A shard's life: prepare the data disk, load metadata, open the partitions this shard owns,
//! serve cross-shard messages, accept client connections; on shutdown stop accepting, let
//! in-flight requests finish, then (once every shard has drained) close the logs cleanly.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tern_shard::ShardContext;
use tern_shard::net::ShardListener;
use tern_storage::TailCache;

use crate::config::BrokerConfig;
use crate::messages::ShardMessage;
use crate::partition_manager::PartitionManager;
use crate::shard_state::ShardState;

/// Process-wide coordination between the signal handler and the shards (atomics only: this is
/// the one piece of state every thread touches, and only at start-up and shutdown).
#[derive(Default)]
pub struct Lifecycle {
    pub shutdown: Arc<AtomicBool>,
    pub listening: AtomicUsize,
    pub drained: AtomicUsize,
    pub closed: AtomicUsize,
    pub failed: AtomicBool,
    /// A configuration problem found at run time (exit code 2: docs/cluster.md).
    pub config_error: AtomicBool,
    /// Set once the metadata is ready to serve clients (this broker is registered and
    /// unfenced); shards bind their client listener only then.
    pub metadata_ready: AtomicBool,
    /// Set by shard 0 once its controlled shutdown is over (this broker leads nothing, or the
    /// wait gave up); the other shards serve clients until then.
    pub leadership_released: AtomicBool,
    /// What the main thread read for the driver (taken by shard 0).
    pub cluster_start: std::sync::Mutex<Option<crate::cluster::driver::prepare::Prepared>>,
    /// The metadata every shard starts from.
    pub initial_meta: std::sync::OnceLock<crate::metadata::ClusterMetadata>,
}

impl Lifecycle {
    /// Stops the process because of `msg`; with `config`, exit code 2.
    pub fn fail(&self, msg: &str, config: bool) {
        if config {
            eprintln!("tern: configuration error: {msg}");
            log::error!("configuration error: {msg}");
            self.config_error.store(true, Ordering::SeqCst);
        } else {
            log::error!("{msg}");
        }
        self.failed.store(true, Ordering::SeqCst);
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// The bound metrics endpoint, for the start-up line (set once by shard 0).
static METRICS_ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How often a shard checks for the shutdown signal (and barrier progress).
const LIFECYCLE_POLL: Duration = Duration::from_millis(20);
/// How long shutdown waits for in-flight requests (long polls included) before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the wait for the replica fetchers' rounds in flight at shutdown (a round long-polls
/// 500 ms; one to a leader that stopped answering is cut off here).
const FETCHER_STOP_LIMIT: Duration = Duration::from_secs(2);
/// Bound on the other shards' wait for shard 0's controlled shutdown (its own bound plus slack).
const RELEASE_WAIT_LIMIT: Duration = Duration::from_secs(40);

async fn barrier(counter: &AtomicUsize, count: usize) {
    counter.fetch_add(1, Ordering::SeqCst);
    while counter.load(Ordering::SeqCst) < count {
        tern_shard::task::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run_shard(
    mut ctx: ShardContext<ShardMessage>,
    config: Arc<BrokerConfig>,
    life: Arc<Lifecycle>,
) {
    let id = ctx.id;
    let count = ctx.count;
    if let Err(e) = tern_storage::prepare_data_dir(&config.log_dir).await {
        log::error!(
            "shard {id}: preparing data dir {}: {e}",
            config.log_dir.display()
        );
        life.failed.store(true, Ordering::SeqCst);
        life.shutdown.store(true, Ordering::SeqCst);
    }
    // What the main thread read from the metadata log (shard 0's driver publishes from there).
    let meta = life.initial_meta.get().cloned().unwrap_or_default();
    let cache = TailCache::new(config.tail_cache_bytes);
    let partitions = PartitionManager::new(id, count, cache);
    let started = Instant::now();
    if let Err(e) = partitions.reconcile(&config, &meta).await {
        log::error!("shard {id}: opening partitions: {e:#}");
        life.failed.store(true, Ordering::SeqCst);
        life.shutdown.store(true, Ordering::SeqCst);
    }
    log::info!(
        "shard {id}: {} partitions open in {:?}",
        partitions.all().len(),
        started.elapsed()
    );
    let state = Rc::new(ShardState::new(
        ctx.router.clone(),
        config.clone(),
        Arc::new(meta),
        partitions,
    ));
    // Consumer groups: replay this shard's __consumer_offsets partitions before serving anything.
    if let Err(e) = crate::coordinators::groups::start(&state).await {
        log::error!("shard {id}: loading consumer groups: {e:#}");
        life.failed.store(true, Ordering::SeqCst);
        life.shutdown.store(true, Ordering::SeqCst);
    }

    if id == crate::shard_state::CONTROLLER_SHARD {
        start_driver(&state, &life);
    }

    let serving_state = state.clone();
    let serve_task = tern_shard::task::spawn_joinable(async move {
        ctx.serve(move |msg| {
            serving_state.metrics.cross_received();
            crate::kafka::dispatch::handle_shard_message(serving_state.clone(), msg)
        })
        .await;
    });

    // Retention: a named periodic task per shard, walking only this shard's partitions.
    tern_shard::task::spawn(
        crate::ops::retention::RetentionTask::new(state.clone(), life.clone()).run(),
    );
    // Disk full: a named periodic task per shard reading the log dir's free space.
    tern_shard::task::spawn(
        crate::ops::disk_space::DiskSpaceTask::new(state.clone(), life.clone()).run(),
    );
    // The log cleaner: a named low-priority task queue per shard, cleaning this shard's
    // compacted partitions.
    if let Some(cleaner) = crate::ops::cleaner::CleanerTask::new(state.clone(), life.clone()) {
        tern_shard::task::spawn_background("log-cleaner", 100, cleaner.run());
    }
    // The Prometheus endpoint: its socket on a std thread, the gathering on shard 0.
    let mut metrics_addr = None;
    if id == crate::shard_state::CONTROLLER_SHARD
        && let Some(addr) = config.metrics_listener
    {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        match crate::ops::metrics::start_http(addr, tx) {
            Ok(local) => {
                metrics_addr = Some(local);
                tern_shard::task::spawn(crate::ops::metrics::serve_scrapes(state.clone(), rx));
            }
            Err(e) => {
                log::error!("metrics endpoint: cannot listen on {addr}: {e}; metrics are disabled")
            }
        }
    }
    if let Some(a) = metrics_addr {
        METRICS_ADDR.get_or_init(|| a.to_string());
    }

    // Clients are served once the metadata is ready (cluster mode: registered and unfenced).
    while !life.metadata_ready.load(Ordering::SeqCst) && !life.shutdown.load(Ordering::SeqCst) {
        tern_shard::task::sleep(Duration::from_millis(5)).await;
    }
    // A controller-only node has no client listener (its `listen` is the controller listener).
    let serves_clients = config.cluster.standalone || config.cluster.roles.is_broker();
    let bound = if serves_clients && !life.shutdown.load(Ordering::SeqCst) {
        Some(ShardListener::bind(config.listen))
    } else {
        None
    };
    let listener = match bound {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            log::error!("shard {id}: binding {}: {e}", config.listen);
            life.failed.store(true, Ordering::SeqCst);
            life.shutdown.store(true, Ordering::SeqCst);
            None
        }
    };
    if life.listening.fetch_add(1, Ordering::SeqCst) + 1 == count
        && !life.failed.load(Ordering::SeqCst)
    {
        log::info!(
            "tern {} ready: listening on {}, advertised as {}:{}, {} shards, data in {}, metrics on {}",
            env!("CARGO_PKG_VERSION"),
            config.listen,
            config.advertised_host,
            config.advertised_port,
            count,
            config.log_dir.display(),
            METRICS_ADDR
                .get()
                .map(|a| format!("http://{a}/metrics"))
                .unwrap_or_else(|| "(disabled)".into())
        );
    }

    // The accept loop is its own task, polled only when a connection arrives. (Re-polling one
    // in-flight accept on every lifecycle tick made glommio store a waker per poll until the
    // task's waker refcount overflowed after ~11 minutes; dropping an in-flight io_uring accept
    // instead would lose the connection it completes with.)
    let accepting = Rc::new(std::cell::Cell::new(true));
    if let Some(listener) = listener {
        let state = state.clone();
        let accepting = accepting.clone();
        tern_shard::task::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) if accepting.get() => {
                        state.metrics.connection_accepted();
                        tern_shard::task::spawn(crate::kafka::connection::serve(
                            state.clone(),
                            stream,
                        ));
                    }
                    Ok(stream) => {
                        // Shutting down: refuse politely (close at once).
                        let mut stream = stream;
                        let _ = futures::AsyncWriteExt::close(&mut stream).await;
                    }
                    Err(e) => {
                        log::warn!("shard {id}: accept: {e}");
                        tern_shard::task::sleep(LIFECYCLE_POLL).await;
                    }
                }
            }
        });
    }
    while !life.shutdown.load(Ordering::SeqCst) {
        tern_shard::task::sleep(LIFECYCLE_POLL).await;
    }
    // Controlled shutdown: shard 0 has the controller fence this broker and waits until its
    // leaderships have moved (bounded); every shard keeps serving clients meanwhile, so a
    // waiting produce request is answered NOT_LEADER_OR_FOLLOWER with the new leader instead of
    // losing its connection.
    if id == crate::shard_state::CONTROLLER_SHARD {
        if let Some(driver) = state.controller.as_ref().and_then(|c| c.driver()) {
            driver.shut_down().await;
        }
        life.leadership_released.store(true, Ordering::SeqCst);
    } else {
        let waited = Instant::now();
        while !life.leadership_released.load(Ordering::SeqCst)
            && waited.elapsed() < RELEASE_WAIT_LIMIT
        {
            tern_shard::task::sleep(LIFECYCLE_POLL).await;
        }
    }
    // Linger (cluster mode): the leaderships are gone, but a producer learns that only from a
    // response. Closing its connection now makes it rediscover the leader by Metadata, which no
    // longer lists this (fenced) broker: librdkafka then decommissions this broker's handle
    // while moving the partition away, and the decommission can park the partition on its
    // internal broker until the 1 s topic scan (seen as 300-1300 ms stalls in
    // scripts/replication-failover --signal term). Serving a moment longer answers an active
    // producer's next request NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951) while the
    // connection is up. Ends early once no client connection is left.
    if state.metadata().is_cluster() {
        let linger = Duration::from_millis(config.controlled_shutdown_linger_ms);
        let start = Instant::now();
        while start.elapsed() < linger && !state.connections.borrow().is_empty() {
            tern_shard::task::sleep(Duration::from_millis(5)).await;
        }
    }
    accepting.set(false);

    // Phase 1: stop reading from clients; finish what is in flight (parked JoinGroup/SyncGroup
    // requests are answered NOT_COORDINATOR so they do not hold the drain).
    state.groups.shutdown();
    for fd in state.connections.borrow().values() {
        // SAFETY: shutting down the read side of a socket we own; the fd stays open.
        unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
    }
    let drain_start = Instant::now();
    while (state.in_flight.get() > 0 || !state.connections.borrow().is_empty())
        && drain_start.elapsed() < DRAIN_TIMEOUT
    {
        tern_shard::task::sleep(Duration::from_millis(5)).await;
    }
    if state.in_flight.get() > 0 {
        log::warn!(
            "shard {id}: {} requests still in flight at shutdown",
            state.in_flight.get()
        );
    }
    barrier(&life.drained, count).await;
    // Phase 2: no request is running anywhere; stop the replica fetchers (none may append to
    // a log being closed), persist the high watermarks (replication-offset-checkpoint) and
    // close the logs cleanly.
    crate::cluster::replication::driver::ShardReplicas::stop_fetchers(&state, FETCHER_STOP_LIMIT)
        .await;
    crate::cluster::replication::driver::ShardReplicas::write_checkpoint(&state).await;
    state.partitions.close_all().await;
    state.groups.close().await;
    barrier(&life.closed, count).await;
    state.router.close();
    let _ = serve_task.now_or_never();
    log::info!("shard {id}: stopped");
}

/// Shard 0: starts the driver (quorum, controller, listener, registration) and
/// marks the metadata ready once this broker is unfenced.
fn start_driver(state: &Rc<ShardState>, life: &Arc<Lifecycle>) {
    let Some(prepared) = life.cluster_start.lock().expect("not poisoned").take() else {
        life.fail("cluster start-up state missing", false);
        return;
    };
    let fatal_life = life.clone();
    let config_life = life.clone();
    let hooks = crate::cluster::driver::FatalHooks {
        fatal: Rc::new(move |m: String| fatal_life.fail(&m, false)),
        config_error: Rc::new(move |m: String| config_life.fail(&m, true)),
    };
    match crate::cluster::driver::Driver::start(state.clone(), prepared, hooks) {
        Ok(driver) => {
            if let Some(c) = &state.controller {
                c.attach(driver.clone());
            }
            let life = life.clone();
            tern_shard::task::spawn(async move {
                driver.ready().await;
                log::info!("node {}: metadata ready", driver.node_id);
                life.metadata_ready.store(true, Ordering::SeqCst);
            });
        }
        Err(e) => life.fail(&format!("{e:#}"), false),
    }
}
