//! The `disk` command: the storage ceiling for the workload, as `link` is the network's. One
//! thread per partition (up to 64) appends the workload's batch size with O_DIRECT to its own
//! file in `--dir` — what a broker writing each partition's segment does — (1) without syncs
//! (acks=1 in Tern), (2) with an `fdatasync` after every write (acks=all); then the read ceiling
//! (`disk_read.rs`): sequential O_DIRECT and cold buffered reads. The files are removed at the
//! end. Run it on the file system the broker's data dir lives on.

use crate::cli::DiskArgs;
use crate::disk_read::{self, ReadCeiling};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// O_DIRECT buffers and offsets must be aligned to the logical block size; 4 KiB covers it.
const ALIGN: usize = 4096;
/// Each file is rewritten from offset 0 after this many bytes, bounding the space used.
const MAX_FILE_BYTES: u64 = 1 << 30;

#[derive(Serialize)]
pub struct DiskPhase {
    pub mb_per_sec: f64,
    pub writes_per_sec: f64,
}

#[derive(Serialize)]
pub struct DiskResult {
    pub dir: String,
    pub files: usize,
    pub write_bytes: usize,
    pub seconds_per_phase: f64,
    pub unsynced: DiskPhase,
    pub synced: DiskPhase,
    pub read: ReadCeiling,
}

/// A heap buffer aligned for O_DIRECT, filled with non-zero bytes.
pub(crate) struct AlignedBuf {
    pub(crate) ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    pub(crate) fn new(len: usize) -> Result<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len, ALIGN)?;
        // SAFETY: the layout has a non-zero size (len >= ALIGN is checked by the caller).
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            bail!("cannot allocate {len} bytes");
        }
        // SAFETY: `ptr` points to `len` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(ptr, 0x5a, len) };
        Ok(AlignedBuf { ptr, layout })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid and initialised for `layout.size()` bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn writer(
    path: PathBuf,
    len: usize,
    sync: bool,
    stop: &AtomicBool,
    bytes: &AtomicU64,
) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let buf = AlignedBuf::new(len)?;
    let mut off = 0u64;
    while !stop.load(Relaxed) {
        if off + len as u64 > MAX_FILE_BYTES {
            file.set_len(0)?;
            off = 0;
        }
        let data = buf.as_slice();
        // SAFETY: plain pwrite of a live, aligned buffer to a file we own.
        let n = unsafe {
            libc::pwrite(
                file.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                off as libc::off_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("O_DIRECT write to {}", path.display()));
        }
        if sync {
            file.sync_data()?;
        }
        off += n as u64;
        bytes.fetch_add(n as u64, Relaxed);
    }
    Ok(())
}

fn phase(dir: &Path, files: usize, len: usize, sync: bool, secs: f64) -> Result<DiskPhase> {
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..files)
        .map(|i| {
            let path = dir.join(format!("tern-bench-disk-{i}"));
            let (stop, bytes) = (stop.clone(), bytes.clone());
            std::thread::spawn(move || writer(path, len, sync, &stop, &bytes))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = bytes.load(Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.join().expect("disk writer panicked") {
            first_err.get_or_insert(e);
        }
    }
    for i in 0..files {
        let _ = std::fs::remove_file(dir.join(format!("tern-bench-disk-{i}")));
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(DiskPhase {
        mb_per_sec: n as f64 / elapsed / 1e6,
        writes_per_sec: n as f64 / len as f64 / elapsed,
    })
}

pub fn run(args: DiskArgs) -> Result<()> {
    let w = args.workload.resolve()?;
    let files = (w.topics * w.partitions).clamp(1, 64);
    let len = w.batch_size.div_ceil(ALIGN).max(1) * ALIGN;
    let secs = w.duration_s.min(10.0);
    let dir = PathBuf::from(&args.dir);
    std::fs::create_dir_all(&dir)?;
    println!(
        "disk: {files} file(s) in {}, O_DIRECT appends of {len} B, {secs:.0} s per phase",
        dir.display()
    );
    let unsynced = phase(&dir, files, len, false, secs)?;
    let synced = phase(&dir, files, len, true, secs)?;
    for (name, p) in [("no sync  ", &unsynced), ("fdatasync", &synced)] {
        println!(
            "{name}: {:>8.1} MB/s  {:>8.0} writes/s",
            p.mb_per_sec, p.writes_per_sec
        );
    }
    let read = disk_read::measure(&dir, args.read.plan())?;
    print_read(&read);
    let res = DiskResult {
        dir: dir.display().to_string(),
        files,
        write_bytes: len,
        seconds_per_phase: secs,
        unsynced,
        synced,
        read,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&res)?)?;
        println!("wrote {path}");
    }
    Ok(())
}

/// Prints the read ceiling's two lines.
pub fn print_read(r: &ReadCeiling) {
    let p = &r.plan;
    println!(
        "read ceiling: {:.1} GB in {} KiB reads, {} in flight",
        p.total_bytes as f64 / 1e9,
        p.chunk_bytes >> 10,
        p.depth
    );
    println!("  O_DIRECT       : {:>8.1} MB/s", r.o_direct_mb_per_sec);
    println!(
        "  buffered (cold): {:>8.1} MB/s",
        r.buffered_cold_mb_per_sec
    );
}
