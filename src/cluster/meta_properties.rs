//! `<log.dirs>/meta.properties`, as in Kafka (KRaft, version 1): which cluster and node a data
//! directory belongs to (`version`, `node.id`, `cluster.id`, `directory.id`). Written once when
//! a node formats its empty data directory (atomically and durably); read on every start so a
//! data directory of another cluster, or of another node, is refused instead of joined.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// The file name inside the log dir.
pub const META_PROPERTIES_FILE: &str = "meta.properties";
/// The `version` this build writes and reads (Kafka's KRaft version).
pub const META_PROPERTIES_VERSION: u32 = 1;
/// Largest meta.properties read (it is a handful of short lines).
const MAX_BYTES: u64 = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaProperties {
    pub version: u32,
    pub node_id: i32,
    pub cluster_id: String,
    /// This log directory's id (Kafka's JBOD directory id); None in files that lack it.
    pub directory_id: Option<String>,
}

impl MetaProperties {
    /// A freshly formatted directory of `node_id` in `cluster_id`, with a new directory id.
    pub fn new(node_id: i32, cluster_id: &str) -> Self {
        Self {
            version: META_PROPERTIES_VERSION,
            node_id,
            cluster_id: cluster_id.to_string(),
            directory_id: Some(uuid::Uuid::new_v4().simple().to_string()[..22].to_string()),
        }
    }

    /// The file's text (Kafka's java.util.Properties layout: a comment, then sorted keys).
    pub fn to_text(&self) -> String {
        let mut s = String::from("#\n#Written by tern\n");
        s.push_str(&format!("cluster.id={}\n", self.cluster_id));
        if let Some(d) = &self.directory_id {
            s.push_str(&format!("directory.id={d}\n"));
        }
        s.push_str(&format!("node.id={}\n", self.node_id));
        s.push_str(&format!("version={}\n", self.version));
        s
    }

    /// Parses the file's text; an unknown version, a missing or malformed key is an error.
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                bail!("malformed line {line:?}");
            };
            keys.insert(k.trim().to_string(), v.trim().to_string());
        }
        let get = |k: &str| keys.get(k).with_context(|| format!("no {k}"));
        let version: u32 = get("version")?.parse().context("version is not a number")?;
        ensure!(
            version == META_PROPERTIES_VERSION,
            "version {version} (this build reads version {META_PROPERTIES_VERSION}, KRaft)"
        );
        let node_id: i32 = get("node.id")?.parse().context("node.id is not a number")?;
        ensure!(node_id >= 0, "node.id {node_id} is negative");
        let cluster_id = get("cluster.id")?.clone();
        ensure!(!cluster_id.is_empty(), "cluster.id is empty");
        Ok(Self {
            version,
            node_id,
            cluster_id,
            directory_id: keys.get("directory.id").cloned(),
        })
    }
}

pub fn meta_properties_path(log_dir: &Path) -> PathBuf {
    log_dir.join(META_PROPERTIES_FILE)
}

/// Reads `<log_dir>/meta.properties`: `Ok(None)` if there is none (an unformatted directory);
/// an unreadable or malformed file is an error (never silently "unformatted").
pub fn read_meta_properties(log_dir: &Path) -> Result<Option<MetaProperties>> {
    let path = meta_properties_path(log_dir);
    match std::fs::metadata(&path) {
        Ok(m) => ensure!(
            m.len() <= MAX_BYTES,
            "{}: {} bytes, not a meta.properties",
            path.display(),
            m.len()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    MetaProperties::parse(&text)
        .map(Some)
        .with_context(|| format!("{}", path.display()))
}

/// Writes `<log_dir>/meta.properties` atomically and durably (temp + fsync + rename + dir fsync).
pub fn write_meta_properties(log_dir: &Path, props: &MetaProperties) -> Result<()> {
    tern_storage::write_file_atomic_blocking(
        log_dir,
        META_PROPERTIES_FILE,
        props.to_text().as_bytes(),
    )
    .with_context(|| format!("writing {}", meta_properties_path(log_dir).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_meta_properties(tmp.path()).unwrap(), None);
        let props = MetaProperties::new(3, "MkU3OEVBNTcwNTJENDM2Qk");
        write_meta_properties(tmp.path(), &props).unwrap();
        assert_eq!(
            read_meta_properties(tmp.path()).unwrap(),
            Some(props.clone())
        );
        assert!(!tmp.path().join("meta.properties.tmp").exists());
        // Rewriting replaces it.
        let other = MetaProperties::new(3, "another");
        write_meta_properties(tmp.path(), &other).unwrap();
        assert_eq!(read_meta_properties(tmp.path()).unwrap(), Some(other));
    }

    #[test]
    fn reads_a_file_kafka_wrote() {
        let text = "#\n#Tue Dec 01 10:00:00 UTC 2026\nnode.id=1\ndirectory.id=J8aAPcfLQt2bqs1JT_rMgQ\n\
                    version=1\ncluster.id=4L6g3nShT-eMCtK--X86sw\n";
        let p = MetaProperties::parse(text).unwrap();
        assert_eq!(
            p,
            MetaProperties {
                version: 1,
                node_id: 1,
                cluster_id: "4L6g3nShT-eMCtK--X86sw".into(),
                directory_id: Some("J8aAPcfLQt2bqs1JT_rMgQ".into()),
            }
        );
        assert_eq!(MetaProperties::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn malformed_files_are_errors() {
        for (text, why) in [
            ("node.id=1\ncluster.id=x\n", "no version"),
            ("version=0\nnode.id=1\ncluster.id=x\n", "version 0"),
            ("version=1\ncluster.id=x\n", "no node.id"),
            (
                "version=1\nnode.id=one\ncluster.id=x\n",
                "node.id is not a number",
            ),
            ("version=1\nnode.id=-2\ncluster.id=x\n", "negative"),
            ("version=1\nnode.id=1\n", "no cluster.id"),
            ("version=1\nnode.id=1\ncluster.id=\n", "cluster.id is empty"),
            ("version=1\nnode.id\n", "malformed line"),
        ] {
            let err = MetaProperties::parse(text).expect_err(why);
            assert!(format!("{err:#}").contains(why), "{why}: {err:#}");
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(META_PROPERTIES_FILE), "garbage\n").unwrap();
        let err = read_meta_properties(tmp.path()).expect_err("malformed");
        assert!(format!("{err:#}").contains("meta.properties"), "{err:#}");
    }
}
