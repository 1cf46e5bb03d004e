//! `tern-bench`: a Kafka-protocol benchmark that measures any Kafka-compatible broker the same
//! way (produce and end-to-end latency, throughput), plus `link` mode for the loopback ceiling.
//! See bench/README.md.

mod acks;
mod admin;
mod backlog;
mod batch;
mod cli;
mod clock;
mod consumer;
mod disk;
mod disk_read;
mod keys;
mod lag;
mod link;
mod parse;
mod presets;
mod producer;
mod run;
mod stats;
mod wire;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let res = match cli.cmd {
        cli::Cmd::Run(a) => run::run(a),
        cli::Cmd::Link(a) => link::run(a),
        cli::Cmd::Disk(a) => disk::run(a),
        cli::Cmd::Backlog(a) => backlog::run(a),
        cli::Cmd::Presets => {
            presets::list();
            Ok(())
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
