//! `tern`: a Kafka-wire-compatible event streaming broker, thread-per-core on glommio.
//!
//! `tern serve` (the default) runs the broker; see README.md for flags and the config file.

mod broker;
mod cli;
mod cluster;
mod config;
mod controller;
mod coordinators;
mod kafka;
mod messages;
mod metadata;
mod ops;
mod partition_identity;
mod partition_manager;
mod routing;
mod shard_state;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::{Parser, Subcommand};

use crate::broker::Lifecycle;
use crate::config::{BrokerConfig, ServeArgs};

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "A Kafka-compatible event streaming broker (thread-per-core, io_uring)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// Consumer groups: list, describe (offsets and lag), delete, seek (Kafka protocol).
    #[command(subcommand)]
    Group(cli::GroupCommand),
    /// Topics: create, list, describe, delete, alter-config (Kafka protocol).
    #[command(subcommand)]
    Topic(cli::TopicCommand),
    /// Write stdin lines to a topic as records.
    Produce(cli::ProduceArgs),
    /// Print a topic's records.
    Consume(cli::ConsumeArgs),
    /// The cluster: info, alter-config (dynamic broker configs).
    #[command(subcommand)]
    Cluster(cli::ClusterCommand),
}

fn main() {
    // Leveled logging: TERN_LOG (or RUST_LOG) takes env_logger filters, e.g. `info`,
    // `warn,tern=debug`; the default is `info`.
    let filter = std::env::var("TERN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    env_logger::Builder::new()
        .parse_filters(&filter)
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Group(cmd)) => std::process::exit(cli::run_group(cmd)),
        Some(Command::Topic(cmd)) => std::process::exit(cli::run_topic(cmd)),
        Some(Command::Produce(a)) => std::process::exit(cli::run_produce(a)),
        Some(Command::Consume(a)) => std::process::exit(cli::run_consume(a)),
        Some(Command::Cluster(cmd)) => std::process::exit(cli::run_cluster(cmd)),
        None => cli.serve,
    };
    std::process::exit(serve(args));
}

fn serve(args: ServeArgs) -> i32 {
    kafka::handlers::encode_fallback::init_test_hook();
    let config = match BrokerConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tern: configuration error: {e:#}");
            log::error!("configuration error: {e:#}");
            return 2;
        }
    };
    // Durable: every directory created here is fsynced into its parent.
    if let Err(e) = tern_storage::create_dir_all_durable(&config.log_dir) {
        log::error!("cannot create log dir {}: {e}", config.log_dir.display());
        return 1;
    }
    let life = Arc::new(Lifecycle::default());
    // The metadata log (and meta.properties) are read before the shards start; standalone is
    // a single-voter quorum through the same driver.
    match cluster::driver::prepare::prepare(&config) {
        Ok(p) => {
            let _ = life.initial_meta.set(p.initial.clone());
            *life.cluster_start.lock().expect("not poisoned") = Some(p);
        }
        Err(e) => {
            eprintln!("tern: {e:#}");
            log::error!("{e:#}");
            return 2;
        }
    }
    // A client that disappears mid-response must give EPIPE, not kill the process.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, life.shutdown.clone()) {
            log::error!("installing signal handler: {e}");
            return 1;
        }
    }
    if let Some(cpus) = &config.cpus {
        // The metrics and blocking threads started from here inherit it; shards are pinned
        // one by one below.
        if let Err(e) = tern_shard::executor::restrict_process_threads(cpus) {
            log::error!("--cpus {cpus:?}: {e}");
            return 1;
        }
        log::info!("running on CPUs {cpus:?}");
    }
    let shard_config = tern_shard::ShardSetConfig {
        shards: config.shards,
        cpus: config.cpus.clone(),
        spin_before_park: config
            .spin_before_park_us
            .map(std::time::Duration::from_micros),
        ..Default::default()
    };
    let config = Arc::new(config);
    let run_life = life.clone();
    let result = tern_shard::ShardSet::run(&shard_config, move |ctx| {
        broker::run_shard(ctx, config.clone(), run_life.clone())
    });
    match result {
        Ok(()) if !life.failed.load(Ordering::SeqCst) => {
            log::info!("tern stopped cleanly");
            0
        }
        Ok(()) if life.config_error.load(Ordering::SeqCst) => 2,
        Ok(()) => 1,
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}
