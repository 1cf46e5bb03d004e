//! What the main thread reads before the shards start (blocking std::fs work is fine there):
//! the metadata log of a voter (`MetadataLogDisk::open`), the image its committed entries
//! build (the metadata every shard starts from), the first entry of an upgraded standalone
//! data dir (`__tern_meta/cluster.json` without a metadata log), `meta.properties`, and the
//! voters' controller-listener addresses.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, Result, anyhow};

use crate::cluster::config::ClusterConfig;
use crate::cluster::meta_properties::{MetaProperties, read_meta_properties};
use crate::cluster::metadata_log::image::MetadataImage;
use crate::cluster::metadata_log::records::{MetadataRecord, decode_entry};
use crate::cluster::metadata_log::upgrade::legacy_records;
use crate::cluster::quorum::PersistedState;
use crate::cluster::quorum::disk::{MetadataLogDisk, MetadataLogLimits};
use crate::config::BrokerConfig;
use crate::metadata::ClusterMetadata;

/// The metadata log's directory under the log dir (or under `metadata.log.dir`).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// A voter's log, read back.
pub struct VoterLog {
    pub disk: MetadataLogDisk,
    pub state: PersistedState,
    /// The image of the snapshot the log starts from (empty without one).
    pub snapshot_image: MetadataImage,
}

pub struct Prepared {
    /// What every shard starts from.
    pub initial: ClusterMetadata,
    pub voter_log: Option<VoterLog>,
    /// First records of an upgraded standalone data dir.
    pub legacy: Option<Vec<MetadataRecord>>,
    pub voters: Vec<(i32, SocketAddr)>,
    pub meta_properties: Option<MetaProperties>,
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving controller {host}:{port}"))?
        .next()
        .ok_or_else(|| anyhow!("controller {host}:{port} has no address"))
}

pub fn prepare(config: &BrokerConfig) -> Result<Prepared> {
    let cluster: &ClusterConfig = &config.cluster;
    let meta_properties = read_meta_properties(&config.log_dir)?;
    if let Some(p) = &meta_properties
        && p.node_id != cluster.node_id
    {
        anyhow::bail!(
            "the data directory {} belongs to node.id {}, not {}",
            config.log_dir.display(),
            p.node_id,
            cluster.node_id
        );
    }
    let voters = cluster
        .voters
        .iter()
        .map(|v| Ok((v.id, resolve(&v.host, v.port)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut prepared = Prepared {
        initial: ClusterMetadata::default(),
        voter_log: None,
        legacy: None,
        voters,
        meta_properties,
    };
    if !cluster.roles.is_controller() {
        return Ok(prepared);
    }
    let dir = cluster
        .metadata_log_dir
        .as_deref()
        .unwrap_or(&config.log_dir)
        .join(METADATA_LOG_DIR);
    let (disk, state) = MetadataLogDisk::open(&dir, MetadataLogLimits::default())
        .with_context(|| format!("opening the metadata log {}", dir.display()))?;
    let snapshot_image = match &state.snapshot {
        Some(s) => MetadataImage::from_snapshot(s.get_data())
            .map_err(|e| anyhow!("metadata snapshot in {}: {e}", dir.display()))?,
        None => MetadataImage::default(),
    };
    let mut image = snapshot_image.clone();
    let commit = state.hard_state.commit;
    for e in state
        .entries
        .iter()
        .filter(|e| e.index <= commit && !e.data.is_empty())
    {
        if e.index <= image.last_offset {
            continue;
        }
        let records = decode_entry(&e.data)
            .map_err(|err| anyhow!("metadata log entry {}: {err}", e.index))?;
        image
            .apply_entry(e.index, &records)
            .map_err(|err| anyhow!("metadata log entry {}: {err}", e.index))?;
    }
    let log_is_empty = state.snapshot.is_none() && state.entries.is_empty();
    if log_is_empty && crate::metadata::metadata_path(&config.log_dir).exists() {
        let legacy = crate::metadata::load(&config.log_dir)?;
        log::info!(
            "upgrading the standalone data dir {} (cluster {}, {} topics) into the metadata log",
            config.log_dir.display(),
            legacy.cluster_id,
            legacy.topics.len()
        );
        prepared.initial = legacy.clone();
        prepared.legacy = Some(legacy_records(&legacy, cluster.node_id));
    } else {
        prepared.initial = super::publish::shard_view(
            &image,
            &cluster.inter_broker_listener_name,
            -1,
            1,
            cluster.standalone,
        );
    }
    prepared.voter_log = Some(VoterLog {
        disk,
        state,
        snapshot_image,
    });
    Ok(prepared)
}
