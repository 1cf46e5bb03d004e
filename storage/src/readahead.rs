//! Readahead for cold reads: when a fetch is served from a segment file (sendfile from the page
//! cache, which O_DIRECT appends never fill), the kernel is asked to start reading the fetched
//! range plus `ahead` bytes beyond it (`posix_fadvise(WILLNEED)`), so the disk works on the
//! next fetch while this one is being sent, with large requests in flight instead of the
//! synchronous readahead of sendfile. Each segment remembers how far it was advised, so a
//! consumer reading sequentially advises each byte once. The call runs on the shard's blocking
//! pool (it may wait for request slots) and is not awaited: the shard thread never blocks and
//! the fetch never waits for it.
//!
//! Finding the batch a cold fetch starts at: the batch headers from the index position on are
//! read from the page cache with `preadv2(RWF_NOWAIT)` (61 bytes each, a few per fetch; never
//! record bytes), which fails at once instead of waiting when a page is not cached. A
//! sequential consumer's next position was brought in by the previous fetch's readahead, so the
//! fetch needs no disk read before the sendfile; on a miss the caller falls back to DMA reads.
//!
//! Disk queue bound (`in_flight_cap`, `tern.fetch.readahead.inflight.bytes`): each shard keeps
//! at most that many advised bytes that the disk has not read yet. An advice is noted with the
//! position of its last byte; before the next one, notes whose last byte has reached the page
//! cache (a 1-byte `preadv2(RWF_NOWAIT)`, which fails while the page is still being read) are
//! dropped, and the new advice is cut to the room left (none when less than [`MIN_STEP`] is
//! free; the segment's advised position then stays put and a later fetch asks again). Without
//! this, replaying consumers put tens of MiB of reads ahead of a producer's O_DIRECT write in
//! the device queue, which is what raised produce latency during a replay (see README "Cold
//! reads").
//!
//! Memory: the page cache, which the kernel reclaims. Beyond what consumers have read, at most
//! `ahead` bytes per segment being read sequentially are brought in early.

use std::cell::{Cell, RefCell};

use crate::batch::{BatchHeader, HEADER_LEN};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// A segment's readahead position: bytes `[0, advised)` were already advised (a hint).
#[derive(Default)]
pub struct Readahead {
    advised: Cell<u64>,
}

impl Readahead {
    /// The range to advise for a read of `[pos, pos + len)` with `ahead` bytes of readahead,
    /// below `limit` (the segment's written size); None when nothing new is to be advised.
    /// A read behind or far beyond the advised position (another reader, a seek) restarts at
    /// `pos`.
    pub fn next_range(&self, pos: u64, len: u64, ahead: u64, limit: u64) -> Option<(u64, u64)> {
        if ahead == 0 {
            return None;
        }
        let end = pos.saturating_add(len).saturating_add(ahead).min(limit);
        let advised = self.advised.get();
        let start = if (pos..end).contains(&advised) {
            advised
        } else if advised >= end && advised <= end.saturating_add(ahead) {
            return None; // already advised through this range (sequential reader)
        } else {
            pos
        };
        // Advise in steps of at least half the readahead, not for every small fetch.
        if start > pos && end - start < (ahead / 2).max(1) && end < limit {
            return None;
        }
        if start >= end {
            return None;
        }
        self.advised.set(end);
        Some((start, end - start))
    }

    /// Takes back an advice cut short: bytes from `end` on count as not advised.
    pub fn retract_to(&self, end: u64) {
        if end < self.advised.get() {
            self.advised.set(end);
        }
    }
}

/// Smallest advice started when the in-flight bound leaves less room than asked for.
pub const MIN_STEP: u64 = 256 << 10;

/// An advice the disk may still be reading: its file, last byte and length.
struct Outstanding {
    file: Arc<std::fs::File>,
    last: u64,
    len: u64,
}

thread_local! {
    /// This shard's advices not yet known to be read (one shard = one thread).
    static OUTSTANDING: RefCell<Vec<Outstanding>> = const { RefCell::new(Vec::new()) };
}

/// How many of `want` bytes may be advised with `in_flight` bytes outstanding under a bound of
/// `cap` (0 = unbounded): all, the room left, or none when the room is below [`MIN_STEP`] (and
/// below `want`).
fn grant(in_flight: u64, want: u64, cap: u64) -> u64 {
    if cap == 0 {
        return want;
    }
    let g = want.min(cap.saturating_sub(in_flight));
    if g < want.min(MIN_STEP) { 0 } else { g }
}

/// Whether the byte at `pos` of `file` is in the page cache or cannot be (an error, the end of
/// the file): only "not cached yet" (EAGAIN) keeps an advice outstanding.
fn read_done(file: &std::fs::File, pos: u64) -> bool {
    let mut b = [0u8; 1];
    let iov = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec over a live stack byte; RWF_NOWAIT never waits for the disk.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            pos as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock
}

/// This shard's advised bytes the disk has not read yet (after dropping finished advices).
pub fn in_flight() -> u64 {
    OUTSTANDING.with(|o| {
        let mut o = o.borrow_mut();
        o.retain(|a| !read_done(&a.file, a.last));
        o.iter().map(|a| a.len).sum()
    })
}

/// Starts reading up to `len` bytes of `file` from `start` into the page cache, on the blocking
/// pool, within this shard's bound of `in_flight_cap` bytes the disk has yet to read (0 = no
/// bound); returns how many bytes were advised (0: none, the bound is reached). The hint's
/// completion is not awaited.
pub fn advise_willneed(file: Arc<std::fs::File>, start: u64, len: u64, in_flight_cap: u64) -> u64 {
    let len = if in_flight_cap == 0 {
        len
    } else {
        let g = grant(in_flight(), len, in_flight_cap);
        if g == 0 {
            return 0;
        }
        OUTSTANDING.with(|o| {
            o.borrow_mut().push(Outstanding {
                file: file.clone(),
                last: start + g - 1,
                len: g,
            })
        });
        g
    };
    advise_on_pool(file, start, len);
    len
}

fn advise_on_pool(file: Arc<std::fs::File>, start: u64, len: u64) {
    let job = glommio::executor().spawn_blocking(move || {
        // SAFETY: an advisory syscall on an fd kept open by the `Arc`.
        let rc = unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                start as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            )
        };
        if rc != 0 {
            log::debug!("posix_fadvise(WILLNEED) failed: error {rc}");
        }
    });
    glommio::spawn_local(job).detach();
}

/// Most headers [`find_batch_cached`] reads before giving up (the index is sparse: the batch
/// sought is normally within a few of the indexed position).
const MAX_HEADERS: usize = 64;

/// What reading one header from the page cache found.
enum Cached {
    Header(BatchHeader),
    /// Not in the page cache (or an I/O error, a short read): the caller reads through DMA.
    Miss,
}

fn header_at(file: &std::fs::File, pos: u64) -> Cached {
    let mut buf = [0u8; HEADER_LEN];
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over a live stack buffer; RWF_NOWAIT makes the call fail with EAGAIN
    // instead of waiting for the disk, so the shard thread never blocks.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            pos as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    if n != HEADER_LEN as isize {
        return Cached::Miss;
    }
    match BatchHeader::parse(&buf) {
        Ok(h) => Cached::Header(h),
        Err(_) => Cached::Miss, // let the DMA path report corruption
    }
}

/// The position and header of the first batch whose last offset is >= `offset`, scanning from
/// `start` below `limit` through the page cache only; None when a page is not cached, nothing
/// was found below `limit`, or more than [`MAX_HEADERS`] headers would be read.
pub fn find_batch_cached(
    file: &std::fs::File,
    start: u64,
    offset: i64,
    limit: u64,
) -> Option<(u64, BatchHeader)> {
    let mut pos = start;
    for _ in 0..MAX_HEADERS {
        if pos + HEADER_LEN as u64 > limit {
            return None;
        }
        let Cached::Header(h) = header_at(file, pos) else {
            return None;
        };
        if pos + h.size as u64 > limit || h.size < HEADER_LEN {
            return None;
        }
        if h.last_offset() >= offset {
            return Some((pos, h));
        }
        pos += h.size as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{MIN_STEP, Readahead, find_batch_cached, grant, read_done};
    use std::io::Write;

    #[test]
    fn batch_found_from_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut sizes = Vec::new();
        for i in 0..4i64 {
            let mut b = crate::tests::recs(5); // offsets 5i..5i+4
            b[0..8].copy_from_slice(&(i * 5).to_be_bytes());
            sizes.push(b.len() as u64);
            f.write_all(&b).unwrap();
        }
        drop(f);
        // Written through the page cache: every header is cached.
        let file = std::fs::File::open(&path).unwrap();
        let total: u64 = sizes.iter().sum();
        let (pos, h) = find_batch_cached(&file, 0, 12, total).unwrap();
        assert_eq!(pos, sizes[0] + sizes[1]);
        assert_eq!(h.base_offset, 10);
        // Offset 0 is the first batch; an offset past the data or a limit cutting the batch
        // short: not found (the caller falls back to DMA reads).
        assert_eq!(find_batch_cached(&file, 0, 0, total).unwrap().0, 0);
        assert!(find_batch_cached(&file, 0, 20, total).is_none());
        assert!(find_batch_cached(&file, 0, 12, sizes[0] + sizes[1] + 10).is_none());
    }

    #[test]
    fn sequential_reader_advises_each_byte_once() {
        let r = Readahead::default();
        const M: u64 = 1 << 20;
        // First fetch: its range and 4 MiB beyond.
        assert_eq!(r.next_range(0, M, 4 * M, 100 * M), Some((0, 5 * M)));
        // The next fetches are inside the advised window until half of it is used up.
        assert_eq!(r.next_range(M, M, 4 * M, 100 * M), None);
        assert_eq!(r.next_range(2 * M, M, 4 * M, 100 * M), Some((5 * M, 2 * M)));
        // Capped at the written size.
        assert_eq!(
            r.next_range(95 * M, M, 8 * M, 100 * M),
            Some((95 * M, 5 * M))
        );
        // A reader elsewhere restarts at its own position.
        assert_eq!(
            r.next_range(10 * M, M, 4 * M, 100 * M),
            Some((10 * M, 5 * M))
        );
        // No readahead configured: nothing.
        assert_eq!(Readahead::default().next_range(0, M, 0, 100 * M), None);
    }

    #[test]
    fn in_flight_bound_cuts_and_defers_advice() {
        const M: u64 = 1 << 20;
        // Unbounded: everything; bounded: the room left, none below MIN_STEP.
        assert_eq!(grant(100 * M, 9 * M, 0), 9 * M);
        assert_eq!(grant(0, 9 * M, 4 * M), 4 * M);
        assert_eq!(grant(3 * M, 9 * M, 4 * M), M);
        assert_eq!(grant(4 * M - MIN_STEP / 2, 9 * M, 4 * M), 0);
        // A small advice that fits whole goes through even below MIN_STEP.
        assert_eq!(grant(4 * M - 4096, 4096, 4 * M), 4096);
        // A cut advice is taken back, so the next fetch advises from where it stopped.
        let r = Readahead::default();
        assert_eq!(r.next_range(0, M, 8 * M, 100 * M), Some((0, 9 * M)));
        r.retract_to(4 * M);
        assert_eq!(r.next_range(M, M, 8 * M, 100 * M), Some((4 * M, 6 * M)));
    }

    #[test]
    fn advice_is_outstanding_until_its_last_byte_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        // Written through the page cache: cached, so done; past the end: done too.
        let f = std::fs::File::open(&path).unwrap();
        assert!(read_done(&f, 8191));
        assert!(read_done(&f, 1 << 30));
    }
}
