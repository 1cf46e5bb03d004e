//! The broker's side of membership, on shard 0 of every broker: registration with the active
//! controller (a new incarnation id per process start, the advertised broker endpoint, the
//! rack), then a heartbeat every `broker.heartbeat.interval.ms` carrying the metadata offset
//! this node has applied (and whether its log dir is below the free-space floor); the controller unfences the broker once that offset reaches its
//! registration, and fences it when the heartbeats stop. INCONSISTENT_CLUSTER_ID stops the
//! process with exit code 2, and so does DUPLICATE_BROKER_REGISTRATION once the controller has
//! seen the other process alive (two of its heartbeats after our first attempt); until then it
//! may be our own previous process (a restart), so registration is retried until that session
//! expires. Also the data directory's
//! `meta.properties`: written once the cluster id is known, and a directory of another cluster
//! is refused.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{LocalBoxFuture, Shared};

use super::Driver;
use super::node::Fatal;
use super::wire::{Rpc, RpcReply};
use crate::cluster::controller::codes;
use crate::cluster::meta_properties::{MetaProperties, write_meta_properties};
use crate::cluster::metadata_log::records::BrokerEndpoint;
use crate::config::BrokerConfig;

/// Heartbeat period while fenced (catching up should not wait a full interval).
const FENCED_HEARTBEAT: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_millis(200);
/// One controlled-shutdown heartbeat's bound.
const SHUTDOWN_CALL: Duration = Duration::from_secs(2);
/// Controlled shutdown stops waiting when no controller has answered for this long.
const NO_CONTROLLER_GIVE_UP: Duration = Duration::from_secs(5);

pub struct BrokerLifecycle {
    pub broker_id: i32,
    incarnation_id: uuid::Uuid,
    endpoints: Vec<BrokerEndpoint>,
    rack: Option<String>,
    cluster_id: Option<String>,
    interval: Duration,
    session_timeout: Duration,
    /// Current broker epoch (-1 = not registered).
    pub epoch: Cell<i64>,
    pub fenced: Cell<bool>,
    /// Set at shutdown: heartbeats ask to be fenced (controlled shutdown) from then on.
    pub shutting_down: Cell<bool>,
    /// Last heartbeat round trip, in microseconds.
    pub heartbeat_latency_us: Cell<u64>,
    /// Whether the log dir is below its free-space floor (shard 0's `DiskSpace`): heartbeats
    /// report it, and the controller moves leaderships off a full broker.
    log_dir_full: Box<dyn Fn() -> bool>,
    ready_tx: RefCell<Option<oneshot::Sender<()>>>,
    ready_rx: Shared<oneshot::Receiver<()>>,
}

impl BrokerLifecycle {
    pub fn new(
        config: &BrokerConfig,
        cluster_id: Option<String>,
        log_dir_full: Box<dyn Fn() -> bool>,
    ) -> Self {
        let c = &config.cluster;
        let (tx, rx) = oneshot::channel();
        Self {
            broker_id: c.node_id,
            incarnation_id: uuid::Uuid::new_v4(),
            endpoints: vec![BrokerEndpoint {
                name: c.inter_broker_listener_name.clone(),
                host: config.advertised_host.clone(),
                port: config.advertised_port,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: c.rack.clone(),
            cluster_id,
            interval: Duration::from_millis(c.broker_heartbeat_interval_ms),
            // One session plus a heartbeat: the old incarnation's session has surely expired.
            session_timeout: Duration::from_millis(
                c.broker_session_timeout_ms + 2 * c.broker_heartbeat_interval_ms,
            ),
            epoch: Cell::new(-1),
            fenced: Cell::new(true),
            shutting_down: Cell::new(false),
            heartbeat_latency_us: Cell::new(0),
            log_dir_full,
            ready_tx: RefCell::new(Some(tx)),
            ready_rx: rx.shared(),
        }
    }

    /// Resolves once the broker has been unfenced for the first time.
    pub fn ready(&self) -> LocalBoxFuture<'static, ()> {
        let rx = self.ready_rx.clone();
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    fn set_fenced(&self, fenced: bool) {
        if self.fenced.replace(fenced) != fenced {
            log::info!(
                "broker {}: {}",
                self.broker_id,
                if fenced {
                    "fenced"
                } else {
                    "unfenced (caught up)"
                }
            );
        }
        if !fenced && let Some(tx) = self.ready_tx.borrow_mut().take() {
            let _ = tx.send(());
        }
    }
}

/// Registration then heartbeats, for the life of the process.
pub async fn run(driver: Rc<Driver>, me: Rc<BrokerLifecycle>, config_error: Fatal) {
    // When the controller first refused us as a duplicate. The old incarnation's session runs
    // from the controller's clock, which may have started it after our first attempt (a whole
    // cluster restarted: a new active controller gives every registered broker a fresh
    // session), but never after its refusal: so the window starts at the first refusal.
    let mut first_refusal: Option<Instant> = None;
    'register: loop {
        let reply = driver
            .call(
                Rpc::Register {
                    broker_id: me.broker_id,
                    cluster_id: me.cluster_id.clone(),
                    incarnation_id: me.incarnation_id,
                    endpoints: me.endpoints.clone(),
                    rack: me.rack.clone(),
                },
                super::REQUEST_TIMEOUT,
            )
            .await;
        match reply {
            RpcReply::Registered {
                broker_epoch,
                offset,
            } => {
                me.epoch.set(broker_epoch);
                me.set_fenced(true);
                log::info!(
                    "broker {}: registered, broker epoch {broker_epoch}",
                    me.broker_id
                );
                while !driver.wait_applied(offset, Duration::from_secs(5)).await {
                    log::info!(
                        "broker {}: catching up with the metadata log to {offset}",
                        me.broker_id
                    );
                }
            }
            RpcReply::DuplicateBroker { message } => {
                config_error(format!(
                    "broker registration refused (duplicate node.id {}): {message}",
                    me.broker_id
                ));
                return;
            }
            RpcReply::Error { code, message, .. }
                if code == codes::DUPLICATE_BROKER_REGISTRATION
                    && first_refusal.get_or_insert_with(Instant::now).elapsed()
                        < me.session_timeout =>
            {
                // Our previous incarnation's session may still be alive (a restart): it
                // expires within one session timeout; another live process would not.
                log::info!(
                    "broker {}: {message}; retrying until the old session expires",
                    me.broker_id
                );
                tern_shard::task::sleep(RETRY).await;
                continue;
            }
            RpcReply::Error { code, message, .. }
                if code == codes::DUPLICATE_BROKER_REGISTRATION
                    || code == codes::INCONSISTENT_CLUSTER_ID =>
            {
                let what = if code == codes::DUPLICATE_BROKER_REGISTRATION {
                    "duplicate node.id"
                } else {
                    "data directory of another cluster"
                };
                config_error(format!("broker registration refused ({what}): {message}"));
                return;
            }
            RpcReply::Error { code, message, .. } => {
                log::debug!(
                    "broker {}: registration: error {code}: {message}",
                    me.broker_id
                );
                tern_shard::task::sleep(RETRY).await;
                continue;
            }
            other => {
                log::warn!(
                    "broker {}: unexpected registration answer {other:?}",
                    me.broker_id
                );
                tern_shard::task::sleep(RETRY).await;
                continue;
            }
        }
        loop {
            let started = Instant::now();
            let reply = driver
                .call(
                    Rpc::Heartbeat {
                        broker_id: me.broker_id,
                        broker_epoch: me.epoch.get(),
                        metadata_offset: driver.applied_offset(),
                        want_shutdown: me.shutting_down.get(),
                        log_dir_full: (me.log_dir_full)(),
                    },
                    me.interval,
                )
                .await;
            me.heartbeat_latency_us
                .set(started.elapsed().as_micros() as u64);
            match reply {
                RpcReply::Heartbeat {
                    is_fenced, offset, ..
                } => {
                    driver.wait_applied(offset, me.interval).await;
                    me.set_fenced(is_fenced);
                }
                RpcReply::Error { code, message, .. }
                    if code == codes::STALE_BROKER_EPOCH
                        || code == codes::BROKER_ID_NOT_REGISTERED =>
                {
                    log::info!(
                        "broker {}: heartbeat refused ({message}); registering again",
                        me.broker_id
                    );
                    me.set_fenced(true);
                    continue 'register;
                }
                RpcReply::Error { code, message, .. } => {
                    log::debug!(
                        "broker {}: heartbeat: error {code}: {message}",
                        me.broker_id
                    );
                }
                other => log::warn!(
                    "broker {}: unexpected heartbeat answer {other:?}",
                    me.broker_id
                ),
            }
            let pause = if me.fenced.get() {
                FENCED_HEARTBEAT.min(me.interval)
            } else {
                me.interval
            };
            tern_shard::task::sleep(pause).await;
        }
    }
}

/// Controlled shutdown (Kafka's BrokerHeartbeat want_shut_down): heartbeats asking to shut
/// down, until the controller answers should_shut_down (it fenced this broker: every leadership
/// moved to another ISR member, or to nobody when none is left) and this node has applied that
/// change, so its leader roles have answered their waiting produce requests
/// NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951) before the connections close. Bounded by
/// `timeout`; gives up sooner when no controller answers at all (after `NO_CONTROLLER_GIVE_UP`),
/// and at once on a voter that sees no quorum left (the last node of a cluster, whose own
/// controller may answer but can no longer commit the fencing). A fenced
/// broker's next start also registers at once instead of waiting for this session to expire.
pub async fn shut_down(driver: &Driver, me: &BrokerLifecycle, timeout: Duration) {
    me.shutting_down.set(true);
    if me.epoch.get() < 0 {
        return;
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let mut answered = false;
    loop {
        // The last node of a cluster (or one cut off from the others): no majority of the
        // voters is left to commit the fencing, so waiting for it is pointless.
        if driver.quorum_out_of_reach() {
            log::info!(
                "broker {}: controlled shutdown not acknowledged (the metadata quorum is gone: no majority of the voters heard from); stopping after {} ms, still leading {} partitions",
                me.broker_id,
                started.elapsed().as_millis(),
                driver.leader_count()
            );
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "broker {}: controlled shutdown: still leading {} partitions after {} ms; stopping anyway",
                me.broker_id,
                driver.leader_count(),
                started.elapsed().as_millis()
            );
            return;
        }
        let rpc = Rpc::Heartbeat {
            broker_id: me.broker_id,
            broker_epoch: me.epoch.get(),
            metadata_offset: driver.applied_offset(),
            want_shutdown: true,
            log_dir_full: (me.log_dir_full)(),
        };
        // Bounded here too: on the active controller the call is answered locally, and its
        // fencing waits for a commit that a quorum gone meanwhile never gives.
        let round = left.min(SHUTDOWN_CALL);
        match tern_shard::task::timeout(round, driver.call(rpc, round)).await {
            Some(RpcReply::Heartbeat {
                should_shut_down,
                offset,
                ..
            }) => {
                answered = true;
                // Bounded per round, so a commit that never comes (the quorum went away after
                // answering) is noticed above.
                driver.wait_applied(offset, left.min(SHUTDOWN_CALL)).await;
                let leading = driver.leader_count();
                if should_shut_down && leading == 0 {
                    log::info!(
                        "broker {}: controlled shutdown: fenced and leading nothing after {} ms",
                        me.broker_id,
                        started.elapsed().as_millis()
                    );
                    return;
                }
                log::debug!(
                    "broker {}: controlled shutdown: still leading {leading} partitions",
                    me.broker_id
                );
            }
            other => {
                if !answered && started.elapsed() >= NO_CONTROLLER_GIVE_UP {
                    log::info!(
                        "broker {}: controlled shutdown not acknowledged (no controller answers): {other:?}",
                        me.broker_id
                    );
                    return;
                }
                log::debug!(
                    "broker {}: controlled shutdown heartbeat: {other:?}",
                    me.broker_id
                );
            }
        }
        tern_shard::task::sleep(FENCED_HEARTBEAT).await;
    }
}

/// Writes `meta.properties` once this node knows the cluster id; refuses (exit code 2) a data
/// directory formatted for another cluster.
pub async fn guard_cluster_id(
    driver: Rc<Driver>,
    log_dir: PathBuf,
    stored: Option<MetaProperties>,
    config_error: Fatal,
) {
    loop {
        let cluster_id = match &driver.node {
            Some(n) => n.st.borrow().controller.committed().cluster_id.clone(),
            None => driver.follower_image.borrow().0.cluster_id.clone(),
        };
        let Some(cluster_id) = cluster_id else {
            driver.publisher.wait_for(driver.applied_offset() + 1).await;
            continue;
        };
        match &stored {
            Some(p) if p.cluster_id == cluster_id => return,
            Some(p) => {
                config_error(format!(
                    "the data directory {} belongs to cluster {}, but the quorum's cluster is {cluster_id}",
                    log_dir.display(),
                    p.cluster_id
                ));
                return;
            }
            None => {
                let props = MetaProperties::new(driver.node_id, &cluster_id);
                let dir = log_dir.clone();
                match tern_shard::task::run_blocking(move || write_meta_properties(&dir, &props))
                    .await
                {
                    Ok(()) => {
                        log::info!("formatted {} for cluster {cluster_id}", log_dir.display())
                    }
                    Err(e) => {
                        log::error!("writing meta.properties in {}: {e:#}", log_dir.display())
                    }
                }
                return;
            }
        }
    }
}
