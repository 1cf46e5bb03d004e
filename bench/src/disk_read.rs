//! The read ceiling of the storage: files of a given total size are written once with O_DIRECT,
//! then read back sequentially twice, `depth` threads each reading its own files in large
//! aligned chunks: (1) with O_DIRECT (what the device does), (2) buffered through the page
//! cache, which is dropped for each file first (`posix_fadvise(DONTNEED)`), so the figure is the
//! cold path a broker's sendfile of old data takes, kernel readahead included. Used by `disk`
//! and by `backlog` (which reports its consumption as a share of this ceiling, same run).

use crate::disk::AlignedBuf;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the read ceiling is measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReadPlan {
    /// Bytes over all files.
    pub total_bytes: u64,
    /// Bytes per read call (a multiple of 4 KiB).
    pub chunk_bytes: usize,
    /// Reader threads, each with its own file: reads in flight at once.
    pub depth: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadCeiling {
    pub plan: ReadPlan,
    pub o_direct_mb_per_sec: f64,
    pub buffered_cold_mb_per_sec: f64,
}

impl ReadCeiling {
    /// The better of the two paths: what a broker reading old data could reach.
    pub fn best_mb_per_sec(&self) -> f64 {
        self.o_direct_mb_per_sec.max(self.buffered_cold_mb_per_sec)
    }
}

fn file_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("tern-bench-read-{i}"))
}

/// Writes `len` bytes to `path` with O_DIRECT writes of `buf`, then syncs.
fn fill(path: &Path, len: u64, buf: &AlignedBuf) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let data = buf.as_slice();
    let mut off = 0u64;
    while off < len {
        // SAFETY: plain pwrite of a live, aligned buffer to a file we own.
        let n = unsafe {
            libc::pwrite(
                file.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                off as libc::off_t,
            )
        };
        if n <= 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("O_DIRECT write to {}", path.display()));
        }
        off += n as u64;
    }
    file.sync_data()?;
    Ok(())
}

/// Reads `path` from start to end in `chunk`-sized reads; returns the bytes read.
fn read_all(path: &Path, direct: bool, chunk: usize) -> Result<u64> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let file = opts
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !direct {
        // Drop whatever of the file is cached, so the buffered figure is a cold read.
        // SAFETY: plain advisory syscall on an fd we own.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            bail!("posix_fadvise(DONTNEED) on {}: error {rc}", path.display());
        }
    }
    let buf = AlignedBuf::new(chunk)?;
    let mut off = 0u64;
    loop {
        // SAFETY: the buffer is live, aligned and `chunk` bytes long; we own the fd.
        let n = unsafe { libc::pread(file.as_raw_fd(), buf.ptr.cast(), chunk, off as libc::off_t) };
        if n < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("reading {}", path.display()));
        }
        if n == 0 {
            return Ok(off);
        }
        off += n as u64;
    }
}

/// One read pass over all files with `plan.depth` threads; returns MB/s.
fn pass(paths: &[PathBuf], direct: bool, chunk: usize, depth: usize) -> Result<f64> {
    let start = Instant::now();
    let bytes: Result<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..depth)
            .map(|t| {
                s.spawn(move || -> Result<u64> {
                    let mut n = 0;
                    for p in paths.iter().skip(t).step_by(depth) {
                        n += read_all(p, direct, chunk)?;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("disk reader panicked"))
            .collect()
    });
    let n: u64 = bytes?.iter().sum();
    Ok(n as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// Measures the read ceiling in `dir` (created if missing); the files are removed at the end.
pub fn measure(dir: &Path, plan: ReadPlan) -> Result<ReadCeiling> {
    if plan.chunk_bytes == 0 || !plan.chunk_bytes.is_multiple_of(4096) || plan.depth == 0 {
        bail!("read chunk must be a positive multiple of 4096 and depth at least 1");
    }
    std::fs::create_dir_all(dir)?;
    // Two files per reader so that each reader moves on to a fresh file once, as a consumer
    // moves to the next segment; files of at least one chunk.
    let files = plan.depth * 2;
    let per_file = (plan.total_bytes / files as u64).max(plan.chunk_bytes as u64);
    let per_file = per_file.div_ceil(plan.chunk_bytes as u64) * plan.chunk_bytes as u64;
    let paths: Vec<PathBuf> = (0..files).map(|i| file_path(dir, i)).collect();
    let res = (|| {
        let buf = AlignedBuf::new(plan.chunk_bytes)?;
        for p in &paths {
            fill(p, per_file, &buf)?;
        }
        let o_direct = pass(&paths, true, plan.chunk_bytes, plan.depth)?;
        let buffered = pass(&paths, false, plan.chunk_bytes, plan.depth)?;
        Ok(ReadCeiling {
            plan: ReadPlan {
                total_bytes: per_file * files as u64,
                ..plan
            },
            o_direct_mb_per_sec: o_direct,
            buffered_cold_mb_per_sec: buffered,
        })
    })();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    res
}
