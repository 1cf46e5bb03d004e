//! The only glommio-specific layer: opening DMA (O_DIRECT) files, aligned appends that
//! rewrite the unaligned tail block, chunked DMA reads, atomic small-file writes, and the
//! per-shard data-dir preparation (IOPOLL probe workaround).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};

use crate::StorageError;

/// Name of the probe file created by [`prepare_data_dir`].
pub const PROBE_FILE: &str = ".tern-dma-probe";
const PROBE_LEN: usize = 4096;

/// Call once per shard thread before opening any log on that disk.
///
/// glommio decides per disk whether to use IOPOLL by reading offset 0 of the first DmaFile a
/// thread opens; if that file is empty every later DMA read fails with EOPNOTSUPP. So we open
/// a >= 4 KiB file first (created atomically via temp + rename, parallel callers race).
/// Also creates the directory.
pub async fn prepare_data_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(PROBE_FILE);
    let ok = std::fs::metadata(&probe)
        .map(|m| m.len() >= PROBE_LEN as u64)
        .unwrap_or(false);
    if !ok {
        let tmp = dir.join(format!(
            "{PROBE_FILE}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, vec![0u8; PROBE_LEN])?;
        std::fs::rename(&tmp, &probe)?;
    }
    let f = DmaFile::open(&probe).await?;
    let r = f.read_at_aligned(0, PROBE_LEN).await;
    f.close().await?;
    let r = r?;
    if r.len() != PROBE_LEN {
        return Err(StorageError::Corrupt(format!(
            "probe file read {} bytes",
            r.len()
        )));
    }
    Ok(())
}

/// Opens a file for DMA read + write, creating it if missing (never `DmaFile::create`,
/// which opens write-only).
pub async fn open_dma(path: &Path) -> Result<DmaFile, StorageError> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await?)
}

/// Writes `[tail][batches...]` at `aligned_start` (the aligned start of the block holding
/// `tail`), zero-padded to the DMA alignment — or further, to at least `min_len` bytes (see
/// `ZERO_AHEAD_BYTES` in log.rs). Returns the new unaligned tail (the bytes after the last
/// alignment boundary of the new logical end) and the number of bytes written.
pub async fn append_aligned(
    file: &DmaFile,
    aligned_start: u64,
    tail: &[u8],
    batches: &[&[u8]],
    min_len: usize,
) -> Result<(Vec<u8>, usize), StorageError> {
    let align = file.alignment() as usize;
    assert!(
        aligned_start.is_multiple_of(align as u64),
        "unaligned write start {aligned_start}"
    );
    assert!(
        tail.len() < align,
        "tail {} not shorter than alignment {align}",
        tail.len()
    );
    let data_len = tail.len() + batches.iter().map(|b| b.len()).sum::<usize>();
    let buf_len = data_len.max(min_len).div_ceil(align) * align;
    let mut buf = file.alloc_dma_buffer(buf_len);
    let out = buf.as_bytes_mut();
    let mut at = tail.len();
    out[..at].copy_from_slice(tail);
    for b in batches {
        out[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    }
    out[at..].fill(0);
    let new_tail = out[data_len / align * align..data_len].to_vec();
    #[cfg(test)]
    {
        let path = file.path().map(|p| p.to_path_buf()).unwrap_or_default();
        if crate::fault::before_write(&path).await?.is_some() {
            // A torn write: half of the bytes reach the file, then a short count.
            use std::os::unix::fs::FileExt;
            let half = &buf.as_bytes()[..buf_len / 2];
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)?
                .write_at(half, aligned_start)?;
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short DMA write: {} of {buf_len} bytes", half.len()),
            )));
        }
    }
    let n = file.write_at(buf, aligned_start).await?;
    if n != buf_len {
        return Err(StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short DMA write: {n} of {buf_len} bytes"),
        )));
    }
    Ok((new_tail, buf_len))
}

/// Sequential reader over a DMA file in large chunks, bounded by `limit`.
pub struct ChunkReader {
    file: Rc<DmaFile>,
    limit: u64,
    chunk: usize,
    buf: Option<ReadResult>,
    buf_pos: u64,
}

impl ChunkReader {
    pub fn new(file: Rc<DmaFile>, limit: u64, chunk: usize) -> ChunkReader {
        ChunkReader {
            file,
            limit,
            chunk,
            buf: None,
            buf_pos: 0,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes `[pos, pos+len)`, or None if that range extends past the limit or the file.
    pub async fn get(&mut self, pos: u64, len: usize) -> Result<Option<&[u8]>, StorageError> {
        let Some(end) = pos.checked_add(len as u64) else {
            return Ok(None);
        };
        if end > self.limit {
            return Ok(None);
        }
        let cached = match &self.buf {
            Some(b) => pos >= self.buf_pos && end <= self.buf_pos + b.len() as u64,
            None => false,
        };
        if !cached {
            let want = (len.max(self.chunk) as u64).min(self.limit - pos) as usize;
            let r = self.file.read_at(pos, want).await?;
            self.buf = Some(r);
            self.buf_pos = pos;
        }
        let b = self.buf.as_ref().expect("filled above");
        let from = (pos - self.buf_pos) as usize;
        if from + len > b.len() {
            return Ok(None); // file shorter than expected
        }
        Ok(Some(&b[from..from + len]))
    }
}

/// Writes a small file atomically and durably: temp file, fdatasync, rename, dir sync.
pub async fn write_file_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&tmp)
        .await?;
    #[cfg(test)]
    crate::fault::created(&tmp);
    let res = async {
        if !data.is_empty() {
            append_aligned(&f, 0, &[], &[data], 0).await?;
        }
        f.truncate(data.len() as u64).await?;
        fdatasync(&f).await?;
        Ok::<(), StorageError>(())
    }
    .await;
    f.close().await?;
    res?;
    glommio::io::rename(&tmp, &dst).await?;
    #[cfg(test)]
    crate::fault::renamed(&tmp, &dst);
    sync_dir(dir).await
}

/// fdatasync of a DMA file (through io_uring: never blocks the shard thread).
pub async fn fdatasync(file: &DmaFile) -> Result<(), StorageError> {
    // What the sync covers is what was written when it was asked for (writes that complete
    // while it runs may or may not be covered).
    #[cfg(test)]
    let covered = file
        .path()
        .map(|p| (crate::fault::file_len(&p), p.to_path_buf()));
    #[cfg(test)]
    crate::fault::before_sync().await?;
    file.fdatasync().await?;
    #[cfg(test)]
    if let Some((len, p)) = covered {
        crate::fault::synced(&p, len);
    }
    Ok(())
}

/// fsync of a directory (through io_uring: never blocks the shard thread), making the entries
/// created, renamed or removed in it durable.
pub async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = glommio::io::Directory::open(dir).await?;
    d.sync().await?;
    d.close().await?;
    #[cfg(test)]
    crate::fault::dir_synced(dir);
    Ok(())
}

/// Creates (or truncates) an empty file with std (a metadata operation, used on segment roll).
/// Its directory entry is durable only after a [`sync_dir`] of its parent.
pub fn create_empty_file(path: &Path) -> Result<(), StorageError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    #[cfg(test)]
    crate::fault::created(path);
    Ok(())
}

/// Replaces `dir/name` with `data` atomically and durably: a temp file written and fsynced,
/// renamed over the old one, then `dir` fsynced so the rename survives power loss. Blocking:
/// call it off the shard thread (the blocking pool, or before the shards start).
pub fn write_file_atomic_blocking(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents durably: each new directory's parent is fsynced after
/// the directory is created in it (POSIX: a new entry is durable only after its directory is
/// synced). Blocking: call it off the shard thread (the blocking pool). Returns the
/// directories it created, outermost first.
pub fn create_dir_all_durable(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(e),
        }
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
        created.push(d);
    }
    Ok(created)
}

/// [`create_dir_all_durable`] on the blocking pool (never blocks the shard thread).
pub async fn create_dir_all(dir: &Path) -> Result<(), StorageError> {
    let d = dir.to_path_buf();
    let created = glommio::executor()
        .spawn_blocking(move || create_dir_all_durable(&d))
        .await?;
    #[cfg(test)]
    for d in &created {
        crate::fault::created(d);
        crate::fault::dir_synced(d.parent().expect("a created directory has a parent"));
    }
    let _ = created;
    Ok(())
}

/// Reads a whole small file with std (only at open time); None if missing or over `max`.
pub fn read_small_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > max => {
            log::warn!(
                "{} is {} bytes, over the {max} limit; ignoring it",
                path.display(),
                m.len()
            );
            Ok(None)
        }
        Ok(_) => Ok(Some(std::fs::read(path)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `file[from..to)` holds only zero bytes: the padding appends write past the log end,
/// as opposed to torn or corrupt data. Ranges longer than `max` are not inspected (false).
pub fn is_zero_range(file: &std::fs::File, from: u64, to: u64, max: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if to < from || to - from > max {
        return Ok(false);
    }
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(buf.iter().all(|b| *b == 0))
}

/// Removes a file (durable once its directory is synced).
pub fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    #[cfg(test)]
    crate::fault::removing(path);
    unlink_if_exists(path)
}

fn unlink_if_exists(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// [`remove_if_exists`] on the shard's blocking pool: an unlink waits on the file system's
/// journal (1-4 ms measured during a clean), time the shard must not spend.
pub async fn remove_if_exists_off_shard(path: PathBuf) -> Result<(), StorageError> {
    // The power-cut model of the tests tracks removals on the shard's thread.
    #[cfg(test)]
    crate::fault::removing(&path);
    glommio::executor()
        .spawn_blocking(move || unlink_if_exists(&path))
        .await
}

pub fn segment_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}
