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
    let res = async {
        if !data.is_empty() {
            append_aligned(&f, 0, &[], &[data], 0).await?;
        }
        f.truncate(data.len() as u64).await?;
        f.fdatasync().await?;
        Ok::<(), StorageError>(())
    }
    .await;
    f.close().await?;
    res?;
    glommio::io::rename(&tmp, &dst).await?;
    sync_dir(dir).await
}

pub async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = glommio::io::Directory::open(dir).await?;
    d.sync().await?;
    d.close().await?;
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

pub fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn segment_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}
