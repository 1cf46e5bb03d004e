//! `partition.metadata`: the file (as Kafka's) that ties a partition directory to its topic id,
//! so a topic deleted and re-created under the same name never sees the old incarnation's
//! records. It is written atomically (temp file, fsync, rename, fsync of the directory), and it
//! never costs data:
//! - missing, empty, truncated or garbage (what a power cut after a non-atomic write leaves):
//!   rebuilt from the directory's name and the cluster metadata, the records kept;
//! - naming a topic id the cluster metadata does not hold (the directory of a deleted topic that
//!   survived, e.g. a crash between the deletion's commit and the directory's removal): the old
//!   directory is renamed aside to `<topic>-<partition>.<old id>-stray` (a name no partition
//!   directory can have), kept for the operator, and a fresh directory takes its place;
//! - naming another live topic's id, a version this broker does not know, or unreadable (an I/O
//!   error): the broker refuses to start, with a message naming the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::metadata::ClusterMetadata;

/// The file's name in every partition directory.
pub const PARTITION_METADATA: &str = "partition.metadata";
/// The only format version this broker writes and reads.
const VERSION: u32 = 0;

/// What a partition directory's `partition.metadata` says.
#[derive(Debug, PartialEq)]
enum Found {
    /// No file (and maybe no directory yet).
    Missing,
    /// A well-formed file naming this topic id (`canonical`: byte for byte what we write).
    Names { id: uuid::Uuid, canonical: bool },
    /// Content from which no topic id can be read (empty, truncated, garbage).
    Unparseable(String),
    /// A well-formed version line of a version this broker does not know.
    UnknownVersion(String),
}

/// The file's content for topic `id`.
fn render(id: &uuid::Uuid) -> String {
    format!("version: {VERSION}\ntopic_id: {id}\n")
}

/// Reads the file's `version` and `topic_id` lines (any order, surrounding blanks ignored).
fn parse(bytes: &[u8]) -> Found {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Found::Unparseable("not UTF-8 text".into());
    };
    let mut version = None;
    let mut id = None;
    for line in text.lines() {
        match line.split_once(':') {
            Some(("version", v)) => version = Some(v.trim()),
            Some(("topic_id", v)) => id = Some(v.trim()),
            _ => {}
        }
    }
    match version {
        None => return Found::Unparseable(format!("no version line in {text:?}")),
        Some(v) if v.parse::<u32>().is_ok_and(|v| v != VERSION) => {
            return Found::UnknownVersion(v.to_string());
        }
        Some(v) if v.parse::<u32>().is_err() => {
            return Found::Unparseable(format!("version {v:?} is not a number"));
        }
        Some(_) => {}
    }
    match id.map(uuid::Uuid::parse_str) {
        Some(Ok(id)) => Found::Names {
            id,
            canonical: text == render(&id),
        },
        Some(Err(e)) => Found::Unparseable(format!("topic_id: {e}")),
        None => Found::Unparseable(format!("no topic_id line in {text:?}")),
    }
}

/// Blocking: what `dir`'s file says; Err only for an I/O error other than "not found".
fn inspect_blocking(dir: &Path) -> Result<Found> {
    let file = dir.join(PARTITION_METADATA);
    match std::fs::read(&file) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Blocking: fsync of a directory, making the entries created or renamed in it durable.
fn sync_dir_blocking(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of directory {}", dir.display()))
}

/// Blocking: creates the partition directory if needed, its entry in the log directory made
/// durable before anything is written into it.
fn create_dir_blocking(dir: &Path) -> Result<()> {
    tern_storage::create_dir_all_durable(dir)
        .map(drop)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Blocking: writes the file for topic `id` atomically and durably (temp, fsync, rename, fsync
/// of the partition directory).
fn write_blocking(dir: &Path, id: &uuid::Uuid) -> Result<()> {
    create_dir_blocking(dir)?;
    tern_storage::write_file_atomic_blocking(dir, PARTITION_METADATA, render(id).as_bytes())
        .with_context(|| format!("writing {}", dir.join(PARTITION_METADATA).display()))
}

/// Where the directory of the deleted topic `old` is kept: `<dir>.<old id>-stray`.
fn stray_path(dir: &Path, old: &uuid::Uuid) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-stray", old.simple()));
    dir.with_file_name(name)
}

/// Blocking: renames `dir` aside (see [`stray_path`]), durably; returns the new path.
fn move_aside_blocking(dir: &Path, old: &uuid::Uuid) -> Result<PathBuf> {
    let aside = stray_path(dir, old);
    if aside.exists() {
        bail!(
            "{} belongs to deleted topic id {old}, but {} (where it would be kept) exists \
             already: move one of them away",
            dir.display(),
            aside.display()
        );
    }
    std::fs::rename(dir, &aside)
        .with_context(|| format!("renaming {} to {}", dir.display(), aside.display()))?;
    if let Some(parent) = dir.parent() {
        sync_dir_blocking(parent)?;
    }
    Ok(aside)
}

/// Makes `dir` the directory of topic `id` (see the module doc), reading `meta` to tell a
/// deleted topic's directory from another live topic's. Blocking file work runs on the
/// blocking pool.
pub async fn ensure(dir: &Path, id: uuid::Uuid, meta: &ClusterMetadata) -> Result<()> {
    let file = dir.join(PARTITION_METADATA);
    let owned = dir.to_path_buf();
    let found = tern_shard::task::run_blocking(move || inspect_blocking(&owned)).await?;
    match found {
        Found::Names {
            id: named,
            canonical,
        } if named == id => {
            if canonical {
                return Ok(());
            }
            log::warn!("{}: not in canonical form: rewriting it", file.display());
        }
        Found::Missing => {}
        Found::Unparseable(why) => log::warn!(
            "{}: unreadable ({why}); rebuilding it for topic id {id} from the cluster metadata \
             and keeping the directory's records",
            file.display()
        ),
        Found::UnknownVersion(v) => bail!(
            "{}: version {v} is not one this broker reads (it writes {VERSION}); refusing to start \
             rather than guess which topic the directory belongs to",
            file.display()
        ),
        Found::Names { id: named, .. } => {
            if let Some((other, _)) = meta.topic_by_id(&named) {
                bail!(
                    "{} names topic id {named}, which is live topic {other:?}, not this \
                     directory's topic (id {id}); refusing to start: fix or remove the file",
                    file.display()
                );
            }
            let owned = dir.to_path_buf();
            let aside =
                tern_shard::task::run_blocking(move || move_aside_blocking(&owned, &named)).await?;
            log::warn!(
                "{} belonged to topic id {named}, which the cluster metadata no longer holds (a \
                 deleted topic of the same name): kept it as {}, starting a fresh directory",
                dir.display(),
                aside.display()
            );
        }
    }
    let owned = dir.to_path_buf();
    tern_shard::task::run_blocking(move || write_blocking(&owned, &id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> uuid::Uuid {
        uuid::Uuid::parse_str("6f1c1a0e-2b4d-4c1e-9b7a-0a1b2c3d4e5f").unwrap()
    }

    #[test]
    fn parses_what_it_writes() {
        assert_eq!(
            parse(render(&id()).as_bytes()),
            Found::Names {
                id: id(),
                canonical: true
            }
        );
        let loose = format!("topic_id: {}\r\nversion:0", id());
        assert_eq!(
            parse(loose.as_bytes()),
            Found::Names {
                id: id(),
                canonical: false
            }
        );
    }

    #[test]
    fn damaged_content_is_unparseable_never_another_id() {
        let good = render(&id());
        for n in 0..good.len() - 1 {
            let found = parse(&good.as_bytes()[..n]);
            assert!(
                matches!(found, Found::Unparseable(_)),
                "prefix of {n} bytes: {found:?}"
            );
        }
        // Only the final newline lost: the id is whole.
        assert_eq!(
            parse(&good.as_bytes()[..good.len() - 1]),
            Found::Names {
                id: id(),
                canonical: false
            }
        );
        assert!(matches!(parse(b"\xff\x00garbage"), Found::Unparseable(_)));
        assert!(matches!(
            parse(b"version: x\ntopic_id: 1"),
            Found::Unparseable(_)
        ));
        assert_eq!(
            parse(format!("version: 1\ntopic_id: {}\n", id()).as_bytes()),
            Found::UnknownVersion("1".into())
        );
    }

    #[test]
    fn write_then_inspect_and_move_aside() {
        let root = std::env::temp_dir().join(format!("tern-pm-{}", std::process::id()));
        let dir = root.join("t-0");
        assert_eq!(inspect_blocking(&dir).unwrap(), Found::Missing);
        write_blocking(&dir, &id()).unwrap();
        assert_eq!(
            inspect_blocking(&dir).unwrap(),
            Found::Names {
                id: id(),
                canonical: true
            }
        );
        assert!(!dir.join(format!("{PARTITION_METADATA}.tmp")).exists());
        std::fs::write(dir.join("00000000000000000000.log"), b"records").unwrap();
        let aside = move_aside_blocking(&dir, &id()).unwrap();
        assert_eq!(
            aside.file_name().unwrap().to_str().unwrap(),
            format!("t-0.{}-stray", id().simple())
        );
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read(aside.join("00000000000000000000.log")).unwrap(),
            b"records"
        );
        // A second stray of the same id would overwrite the first: refused instead.
        write_blocking(&dir, &id()).unwrap();
        assert!(move_aside_blocking(&dir, &id()).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
