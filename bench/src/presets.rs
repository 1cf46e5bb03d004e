//! Named workload presets in the style of the OpenMessaging Benchmark workloads.

use crate::cli::WorkloadArgs;
use anyhow::{Result, bail};

struct Preset {
    name: &'static str,
    about: &'static str,
    topics: usize,
    partitions: usize,
    record_size: usize,
    keys: &'static str,
    rate: &'static str,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "1-topic-1-partition-1kb",
        about: "one partition, 1 KiB records, max rate",
        topics: 1,
        partitions: 1,
        record_size: 1024,
        keys: "none",
        rate: "max",
    },
    Preset {
        name: "1-topic-16-partitions-1kb",
        about: "16 partitions, 1 KiB records, max rate",
        topics: 1,
        partitions: 16,
        record_size: 1024,
        keys: "none",
        rate: "max",
    },
    Preset {
        name: "1-topic-100-partitions-1kb",
        about: "100 partitions, 1 KiB records, random keys, max rate",
        topics: 1,
        partitions: 100,
        record_size: 1024,
        keys: "random",
        rate: "max",
    },
    Preset {
        name: "1-topic-16-partitions-100b",
        about: "16 partitions, 100 B records, max rate",
        topics: 1,
        partitions: 16,
        record_size: 100,
        keys: "none",
        rate: "max",
    },
    Preset {
        name: "1000-partitions-100b",
        about: "1 topic with 1000 partitions, 100 B records, random keys, 50k records/s",
        topics: 1,
        partitions: 1000,
        record_size: 100,
        keys: "random",
        rate: "50000",
    },
];

/// The preset named `name` as unresolved workload flags.
pub fn get(name: &str) -> Result<WorkloadArgs> {
    let Some(p) = PRESETS.iter().find(|p| p.name == name) else {
        bail!("unknown preset {name:?}; `tern-bench presets` lists them");
    };
    Ok(WorkloadArgs {
        topics: Some(p.topics),
        partitions: Some(p.partitions),
        record_size: Some(p.record_size),
        keys: Some(p.keys.to_string()),
        rate: Some(p.rate.to_string()),
        ..WorkloadArgs::default()
    })
}

/// Print every preset.
pub fn list() {
    for p in PRESETS {
        println!("{:<28} {}", p.name, p.about);
    }
}
