//! One client connection: a reader loop that frames, decodes and dispatches requests in order,
//! and a writer task that sends responses in the same order. Requests are pipelined: the reader
//! goes on reading while earlier responses are still being produced (up to
//! `MAX_IN_FLIGHT_PER_CONNECTION`), but a request is fully dispatched to the owning shards before
//! the next one is read, so appends from one connection keep their order.
//!
//! Sending: a response that is one buffer goes through the shard's socket; a response made of
//! pieces (record payloads from the log) goes out by non-blocking gather `sendmsg`s on the shard
//! thread, waiting for socket room through glommio when it is full; a file range (and what
//! follows it) goes by `sendfile`/`writev` on the shard's blocking pool (the socket fd is blocking
//! underneath glommio). Record bytes are never copied in user space and a slow client never
//! stalls the shard thread.
//!
//! Socket queueing: the socket has `SO_TIMESTAMPNS` on, and before the first read of each
//! request the reader peeks (`recvmsg(MSG_PEEK)`, one byte) at the receive queue's head for the
//! kernel's receive time of the data holding the request's first byte. Dispatch time minus that
//! is `tern_request_queue_seconds`: the time the request sat in the socket (behind earlier
//! requests of the connection, or while the shard was busy) before the broker began handling
//! it. When TCP merged later segments into the one holding the request's start, the kernel keeps
//! the newest arrival time, so the figure is then a lower bound. The peek is one syscall per
//! request; `tern.metrics.request.queue.enable=false` turns it (and the metric) off.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::LocalBoxFuture;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::{SinkExt, StreamExt};
use tern_net::{FrameError, FrameLimits, HeaderError, OutChunk, ResponseFrame};
use tern_shard::net::TcpStream;

use crate::kafka::api;
use crate::kafka::dispatch::dispatch_request;
use crate::shard_state::ShardState;

/// Responses a connection may have outstanding before the reader stops reading.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// A response being produced, with what metrics need: the API and when the request was read.
type PendingResponse = (
    i16,
    std::time::Instant,
    LocalBoxFuture<'static, ResponseFrame>,
    InFlight,
);

/// Counts a request in `ShardState::in_flight` from dispatch until its response is written —
/// or until it is dropped unanswered (writer error, connection gone), so shutdown's drain never
/// waits for requests that no longer exist.
struct InFlight(Rc<ShardState>);

impl InFlight {
    fn new(state: &Rc<ShardState>) -> Self {
        state.in_flight.set(state.in_flight.get() + 1);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = self.0.in_flight.get();
        debug_assert!(n > 0, "in-flight count underflow");
        self.0.in_flight.set(n.saturating_sub(1));
    }
}

pub async fn serve(state: Rc<ShardState>, stream: TcpStream) {
    let fd = tern_shard::net::raw_fd(&stream);
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map_or_else(|| "?".into(), |a| a.to_string());
    // As Kafka reports a client's host (DescribeGroups, ConsumerGroupDescribe): "/" + IP.
    let client_host = peer_addr.map_or_else(String::new, |a| format!("/{}", a.ip()));
    let conn_id = state.next_connection_id.get();
    state.next_connection_id.set(conn_id + 1);
    state.connections.borrow_mut().insert(conn_id, fd);
    log::debug!("shard {}: connection {conn_id} from {peer}", state.id);

    let stamp = state.config.request_queue_metric;
    if stamp {
        enable_rx_timestamps(fd);
    }
    let (mut reader, mut writer) = stream.split();
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT_PER_CONNECTION);

    let writer_state = state.clone();
    let writer_task = tern_shard::task::spawn_joinable(async move {
        while let Some((api, started, pending, _in_flight)) = rx.next().await {
            let frame = pending.await;
            if frame.chunks.is_empty() {
                // The handler asked to close (it logged why). Shut the socket down now: the
                // client sees the close at once and the reader loop, blocked in a read, ends.
                writer_state.metrics.error(api, -100);
                // SAFETY: plain syscall on the connection's own fd, still open (the stream
                // halves are alive until `serve` returns).
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                return Err(io::Error::other("handler asked to close the connection"));
            }
            let len = frame.len();
            write_frame(&mut writer, fd, frame, &writer_state.cold_sends).await?;
            writer_state.metrics.bytes_out(len);
            writer_state.metrics.request_done(api, started.elapsed());
        }
        Ok::<_, io::Error>(writer)
    });

    let limits = FrameLimits {
        max_request_bytes: state.config.socket_request_max_bytes,
    };
    let mut stamped = StampedReader {
        inner: &mut reader,
        fd,
        stamp,
        first_byte: None,
    };
    let close_reason = read_loop(&state, &mut stamped, &limits, &client_host, tx).await;
    if let Some(reason) = close_reason {
        log::warn!("closing connection from {peer}: {reason}");
    }
    let writer = writer_task.await;
    state.connections.borrow_mut().remove(&conn_id);
    match writer {
        Some(Ok(writer)) => {
            let mut stream = reader.reunite(writer).expect("halves of one stream");
            let _ = stream.close().await;
        }
        Some(Err(e)) => log::debug!("connection from {peer}: {e}"),
        None => {}
    }
}

/// Reads and dispatches requests until EOF or a protocol violation (returned as the reason).
async fn read_loop(
    state: &Rc<ShardState>,
    reader: &mut StampedReader<'_>,
    limits: &FrameLimits,
    client_host: &str,
    mut tx: mpsc::Sender<PendingResponse>,
) -> Option<String> {
    loop {
        let frame = match tern_net::read_frame(reader, limits).await {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(FrameError::Io(e)) => {
                log::debug!("read error: {e}");
                return None;
            }
            Err(e) => return Some(format!("bad frame: {e}")),
        };
        let started = std::time::Instant::now();
        let queued = reader.first_byte.take().map(|t| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_sub(t)
        });
        state.metrics.bytes_in(frame.len() + 4);
        let mut body = frame.freeze();
        let header = match tern_net::parse_request_header(&mut body) {
            Ok(h) => h,
            Err(HeaderError::UnknownApiKey {
                api_key,
                correlation_id,
            }) => {
                return Some(format!(
                    "unknown api key {api_key} (correlation id {correlation_id})"
                ));
            }
            Err(e) => return Some(format!("bad request header: {e}")),
        };
        let api_versions = kafka_protocol::messages::ApiKey::ApiVersions as i16;
        let api_key = header.api_key;
        if let Some(q) = queued {
            state.metrics.request_queued(api_key, q);
        }
        let pending: Option<LocalBoxFuture<'static, ResponseFrame>> =
            if !api::is_supported(header.api_key, header.api_version) {
                if header.api_key == api_versions {
                    let frame = tern_net::encode_api_versions_unsupported(
                        header.correlation_id,
                        &api::ranges(),
                    );
                    Some(Box::pin(async move { frame }))
                } else {
                    state.metrics.error(header.api_key, -100);
                    return Some(format!(
                        "unsupported request: api key {} version {} from client {:?}",
                        header.api_key, header.api_version, header.client_id
                    ));
                }
            } else {
                let request = match tern_net::decode_request(&header, body.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        return Some(format!(
                            "malformed request api key {} v{}: {e}",
                            header.api_key, header.api_version
                        ));
                    }
                };
                let is_produce = header.api_key == kafka_protocol::messages::ApiKey::Produce as i16;
                let body_for_produce = is_produce.then_some(body);
                dispatch_request(
                    state.clone(),
                    header,
                    client_host,
                    request,
                    body_for_produce,
                )
                .await
                .response
            };
        if let Some(p) = pending
            && tx
                .send((api_key, started, p, InFlight::new(state)))
                .await
                .is_err()
        {
            return None; // the writer stopped (socket error)
        }
    }
}

/// Turns on kernel receive timestamps (`SO_TIMESTAMPNS`, wall clock) for the connection. A
/// failure only loses the queueing metric.
fn enable_rx_timestamps(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: plain setsockopt on the connection's open fd with a valid int option value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::debug!("SO_TIMESTAMPNS: {}", io::Error::last_os_error());
    }
}

/// The kernel's receive time (since the Unix epoch) of the data at the head of the socket's
/// receive queue, by a non-blocking one-byte `MSG_PEEK`; `None` when nothing is queued or the
/// data carries no timestamp.
fn peek_rx_timestamp(fd: RawFd) -> Option<Duration> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; iov and control point into live stack buffers of the
    // stated sizes; CMSG_* walk only inside `control` as bounded by msg_controllen.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        if n <= 0 {
            return None;
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                if ts.tv_sec <= 0 {
                    return None;
                }
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    None
}

/// The connection's read half, noting for each request when the kernel received its first
/// byte (`first_byte`, taken by the reader loop once the request is read).
struct StampedReader<'a> {
    inner: &'a mut futures::io::ReadHalf<TcpStream>,
    fd: RawFd,
    /// `tern.metrics.request.queue.enable`: peek for the receive timestamp at all.
    stamp: bool,
    first_byte: Option<Duration>,
}

impl futures::io::AsyncRead for StampedReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stamp && this.first_byte.is_none() {
            // Before the request's first read; nothing queued yet means it arrives later and
            // the peek is repeated when the read is polled again.
            this.first_byte = peek_rx_timestamp(this.fd);
        }
        Pin::new(&mut *this.inner).poll_read(cx, buf)
    }
}

/// Writes one response. `cold_sends` bounds the shard's segment-file bytes being sent on the
/// blocking pool at once: a response with file ranges waits for room there (in arrival order)
/// before its blocking part starts; a response from memory never touches it.
async fn write_frame(
    writer: &mut futures::io::WriteHalf<TcpStream>,
    fd: RawFd,
    frame: ResponseFrame,
    cold_sends: &tern_shard::budget::InFlightBudget,
) -> io::Result<()> {
    if frame.chunks.len() == 1
        && let OutChunk::Bytes(b) = &frame.chunks[0]
    {
        return writer.write_all(b).await;
    }
    writer.flush().await?;
    // Record payloads go out zero-copy: memory chunks by non-blocking gather writes right here.
    // When the socket is full, glommio's own send waits for room (an io_uring POLLOUT, no
    // thread hop) and sends straight from our buffer; then the gather writes resume. Only a
    // file range (and whatever follows it) goes to the blocking pool, as sendfile can block.
    let mut chunks = frame.chunks;
    loop {
        send_prefix_nonblocking(fd, &mut chunks)?;
        // The socket is full (or a file range is next). Empty chunks in front carry nothing to
        // wait on: drop them, then wait with the first real one.
        let empty = chunks
            .iter()
            .take_while(|c| matches!(c, OutChunk::Bytes(b) if b.is_empty()))
            .count();
        chunks.drain(..empty);
        let Some(OutChunk::Bytes(b)) = chunks.first() else {
            break;
        };
        let b = b.clone();
        let n = writer.write(&b).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // What was sent is cut off; an emptied chunk goes with the next gather write.
        chunks[0] = OutChunk::Bytes(b.slice(n..));
    }
    if chunks.is_empty() {
        return Ok(());
    }
    let file_bytes: u64 = chunks
        .iter()
        .map(|c| match c {
            OutChunk::File { len, .. } => *len,
            OutChunk::Bytes(_) => 0,
        })
        .sum();
    // Only file ranges are cold; memory chunks left over by a full socket go without waiting.
    let _held = if file_bytes > 0 {
        Some(cold_sends.acquire(file_bytes).await)
    } else {
        None
    };
    tern_shard::task::run_blocking(move || send_chunks_blocking(fd, chunks)).await
}

/// Most iovecs passed to one `sendmsg`/`writev` (Linux's IOV_MAX).
const IOV_MAX: usize = 1024;

/// Sends the leading memory chunks with non-blocking `sendmsg` calls until the socket is full
/// or a file range comes next; removes what was sent from `chunks` (trimming a partly sent one).
/// Never blocks the shard thread (MSG_DONTWAIT).
fn send_prefix_nonblocking(fd: RawFd, chunks: &mut Vec<OutChunk>) -> io::Result<()> {
    loop {
        let n_mem = chunks
            .iter()
            .take_while(|c| matches!(c, OutChunk::Bytes(_)))
            .count()
            .min(IOV_MAX);
        if n_mem == 0 {
            return Ok(());
        }
        let iov: Vec<libc::iovec> = chunks[..n_mem]
            .iter()
            .map(|c| match c {
                OutChunk::Bytes(b) => libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                },
                OutChunk::File { .. } => unreachable!("only memory chunks were counted"),
            })
            .collect();
        let wanted: usize = iov.iter().map(|v| v.iov_len).sum();
        // SAFETY: a zeroed msghdr is valid; the iovecs point into `Bytes` owned by `chunks`,
        // which outlive the call.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        // Drop the fully sent chunks (empty ones included), trim a partly sent one.
        let mut n = sent as usize;
        let mut done = 0;
        while done < n_mem {
            let OutChunk::Bytes(b) = &mut chunks[done] else {
                unreachable!("only memory chunks were sent")
            };
            if b.len() <= n {
                n -= b.len();
                done += 1;
            } else {
                *b = b.slice(n..);
                break;
            }
        }
        chunks.drain(..done);
        if (sent as usize) < wanted {
            return Ok(()); // the socket is full: the blocking pool sends the rest
        }
    }
}

/// Writes chunks to a blocking socket: runs of memory chunks with `writev`, file ranges with
/// `sendfile`. Runs on the blocking pool only.
fn send_chunks_blocking(fd: RawFd, chunks: Vec<OutChunk>) -> io::Result<()> {
    let mut i = 0;
    while i < chunks.len() {
        match &chunks[i] {
            OutChunk::File { file, offset, len } => {
                sendfile_all(fd, file, *offset, *len)?;
                i += 1;
            }
            OutChunk::Bytes(_) => {
                let mut run: Vec<Bytes> = Vec::new();
                while let Some(OutChunk::Bytes(b)) = chunks.get(i) {
                    if !b.is_empty() {
                        run.push(b.clone());
                    }
                    i += 1;
                }
                writev_all(fd, run)?;
            }
        }
    }
    Ok(())
}

fn writev_all(fd: RawFd, mut bufs: Vec<Bytes>) -> io::Result<()> {
    let mut start = 0;
    while start < bufs.len() {
        let end = (start + IOV_MAX).min(bufs.len());
        let iov: Vec<libc::iovec> = bufs[start..end]
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: every iovec points into a live `Bytes` held by `bufs` for the call's duration.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as usize;
        while n > 0 && start < bufs.len() {
            let l = bufs[start].len();
            if n >= l {
                n -= l;
                start += 1;
            } else {
                let rest = bufs[start].slice(n..);
                bufs[start] = rest;
                n = 0;
            }
        }
    }
    Ok(())
}

fn sendfile_all(fd: RawFd, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut off = offset as libc::off_t;
    let end = offset + len;
    while (off as u64) < end {
        let want = (end - off as u64).min(1 << 30) as usize;
        // SAFETY: plain syscall on fds we hold open; `off` is a valid out-parameter.
        let n = unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            // The file is shorter than the range (truncated underneath): the response would be
            // malformed, so the connection must be closed.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment shorter than fetch range",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn nonblocking_prefix_send_handles_empty_chunks_and_stops_at_files() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = std::sync::Arc::new(std::fs::File::open("/proc/self/exe").unwrap());
        let mut chunks = vec![
            OutChunk::Bytes(Bytes::from_static(b"ab")),
            OutChunk::Bytes(Bytes::new()),
            OutChunk::Bytes(Bytes::from_static(b"cd")),
            OutChunk::Bytes(Bytes::new()),
            OutChunk::File {
                file,
                offset: 0,
                len: 4,
            },
            OutChunk::Bytes(Bytes::from_static(b"ef")),
        ];
        send_prefix_nonblocking(a.as_raw_fd(), &mut chunks).unwrap();
        assert_eq!(chunks.len(), 2, "stops at the file range");
        assert!(matches!(chunks[0], OutChunk::File { .. }));
        let mut got = [0u8; 4];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcd");

        let mut only_empty = vec![OutChunk::Bytes(Bytes::new()), OutChunk::Bytes(Bytes::new())];
        send_prefix_nonblocking(a.as_raw_fd(), &mut only_empty).unwrap();
        assert!(only_empty.is_empty());
    }

    #[test]
    fn write_frame_waits_for_a_slow_reader_and_keeps_order() {
        // A reader that starts late: the socket is already full when write_frame starts with
        // empty chunks in front. It must wait on the shard (not fail on a zero-length write)
        // and deliver every byte once, in order.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let big = |v: u8| Bytes::from(vec![v; 6 << 20]);
        let filled = glommio::LocalExecutor::default().run(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let fd = tern_shard::net::raw_fd(&stream);
            // Fill the socket: 6 MiB never fits a loopback socket buffer.
            let mut fill = vec![OutChunk::Bytes(big(1))];
            send_prefix_nonblocking(fd, &mut fill).unwrap();
            let left: u64 = fill.iter().map(OutChunk::len).sum();
            assert!(left > 0, "the socket is full");
            let chunks = vec![
                OutChunk::Bytes(Bytes::new()),
                OutChunk::Bytes(Bytes::new()),
                OutChunk::Bytes(big(2)),
                OutChunk::Bytes(Bytes::new()),
                OutChunk::Bytes(Bytes::from_static(b"end")),
            ];
            let (_r, mut w) = futures::io::AsyncReadExt::split(stream);
            let unbounded = tern_shard::budget::InFlightBudget::new(0);
            write_frame(&mut w, fd, ResponseFrame { chunks }, &unbounded)
                .await
                .unwrap();
            w.close().await.unwrap();
            (6 << 20) - left as usize
        });
        let all = reader.join().unwrap();
        assert_eq!(all.len(), filled + (6 << 20) + 3);
        assert!(all[..filled].iter().all(|x| *x == 1));
        assert!(all[filled..all.len() - 3].iter().all(|x| *x == 2));
        assert_eq!(&all[all.len() - 3..], b"end");
    }

    #[test]
    fn file_range_larger_than_the_cold_bound_goes_out_and_frees_it() {
        // A response whose file range exceeds tern.fetch.cold.inflight.bytes takes the whole
        // bound, is sent whole, and gives the bound back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        glommio::LocalExecutor::default().run(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let fd = tern_shard::net::raw_fd(&stream);
            let (_r, mut w) = futures::io::AsyncReadExt::split(stream);
            let bound = tern_shard::budget::InFlightBudget::new(1024);
            let chunks = vec![
                OutChunk::Bytes(Bytes::from_static(b"head")),
                OutChunk::File {
                    file,
                    offset: 100,
                    len: 150_000,
                },
                OutChunk::Bytes(Bytes::from_static(b"tail")),
            ];
            write_frame(&mut w, fd, ResponseFrame { chunks }, &bound)
                .await
                .unwrap();
            assert_eq!(bound.in_use(), 0);
            w.close().await.unwrap();
        });
        let all = reader.join().unwrap();
        assert_eq!(&all[..4], b"head");
        assert_eq!(&all[4..150_004], &data[100..150_100]);
        assert_eq!(&all[150_004..], b"tail");
    }

    #[test]
    fn nonblocking_prefix_send_keeps_what_a_full_socket_did_not_take() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let big = Bytes::from(vec![7u8; 8 << 20]);
        let mut chunks = vec![
            OutChunk::Bytes(Bytes::from_static(b"hdr")),
            OutChunk::Bytes(big),
        ];
        send_prefix_nonblocking(a.as_raw_fd(), &mut chunks).unwrap();
        let left: u64 = chunks.iter().map(OutChunk::len).sum();
        assert!(left > 0, "an 8 MiB payload does not fit a socket buffer");
        // The rest goes out by the blocking path; everything arrives once, in order.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            b.read_to_end(&mut all).unwrap();
            all
        });
        send_chunks_blocking(a.as_raw_fd(), chunks).unwrap();
        drop(a);
        let all = reader.join().unwrap();
        assert_eq!(all.len(), 3 + (8 << 20));
        assert_eq!(&all[..3], b"hdr");
        assert!(all[3..].iter().all(|x| *x == 7));
    }
}
