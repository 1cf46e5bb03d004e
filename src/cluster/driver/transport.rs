//! The controller listener and the peer connections, on shard 0. Inbound: every accepted
//! connection is read frame by frame (`wire::FrameDecoder`); raft messages (each with its
//! sender's cluster id) go to the quorum,
//! RPCs to the node's handler, whose answers go back on the same connection in completion
//! order (each carries its correlation id). Outbound raft traffic: one connection per peer fed
//! by a bounded queue (a full queue drops the message: raft retries), reconnecting with
//! backoff; a failed connection or write reports `unreachable(peer)`. The read side of an
//! outbound connection is watched: the peer closing it (its process exited) makes the sender
//! reconnect at once, and a refused connection reports `peer_process_gone(peer)`, which lets
//! the quorum elect and the controller fence without waiting out their timeouts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures::channel::mpsc;
use futures::future::{Either, LocalBoxFuture, select};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use raft::prelude::Message;
use tern_shard::net::{ShardListener, TcpStream};

use super::wire::{self, FrameDecoder, FrameKind, Rpc, RpcReply};

/// Raft messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 64 << 10;

/// Binds the controller listener and serves it until the process ends.
pub fn listen(addr: SocketAddr, max_frame: usize, inbound: Rc<dyn Inbound>) -> std::io::Result<()> {
    let listener = ShardListener::bind(addr)?;
    log::info!("controller listener on {addr}");
    tern_shard::task::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    tern_shard::task::spawn(serve_conn(stream, max_frame, inbound.clone()))
                }
                Err(e) => {
                    log::warn!("controller listener: accept: {e}");
                    tern_shard::task::sleep(BACKOFF_MIN).await;
                }
            }
        }
    });
    Ok(())
}

/// What the listener delivers to (the node on shard 0).
pub trait Inbound {
    /// A raft message and the cluster id its sender has (None while it has none).
    fn raft(&self, cluster_id: Option<String>, message: Message);
    fn rpc(&self, rpc: Rpc) -> LocalBoxFuture<'static, RpcReply>;
    fn unreachable(&self, peer: i32);
    /// A connection to `peer`'s controller listener was refused: its process is gone.
    fn peer_process_gone(&self, peer: i32);
    /// The connection that carried broker `broker_id`'s heartbeats (naming `broker_epoch`)
    /// closed.
    fn heartbeats_connection_closed(&self, broker_id: i32, broker_epoch: i64);
}

async fn serve_conn(stream: TcpStream, max_frame: usize, inbound: Rc<dyn Inbound>) {
    let (mut rd, wr) = stream.split();
    let (reply_tx, mut reply_rx) = mpsc::unbounded::<Vec<u8>>();
    // The writer: answers in completion order.
    let writer = tern_shard::task::spawn_joinable(async move {
        let mut wr = wr;
        while let Some(frame) = reply_rx.next().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = wr.close().await;
    });
    let decoder = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    // (broker id, broker epoch) of the last heartbeat that came on this connection.
    let mut heartbeats_of: Option<(i32, i64)> = None;
    'conn: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some((FrameKind::Raft, payload))) => {
                    let decoded = wire::decode_raft_payload(&payload)
                        .map_err(|e| e.to_string())
                        .and_then(|(cluster, bytes)| {
                            crate::cluster::quorum::decode_message(bytes)
                                .map(|m| (cluster, m))
                                .map_err(|e| e.to_string())
                        });
                    match decoded {
                        Ok((cluster, m)) => inbound.raft(cluster, m),
                        Err(e) => {
                            log::warn!("controller listener: bad raft message: {e}; closing");
                            break 'conn;
                        }
                    }
                }
                Ok(Some((FrameKind::Request, payload))) => {
                    match wire::decode_rpc::<Rpc>(&payload) {
                        Ok((id, rpc)) => {
                            if let Rpc::Heartbeat {
                                broker_id,
                                broker_epoch,
                                ..
                            } = &rpc
                            {
                                heartbeats_of = Some((*broker_id, *broker_epoch));
                            }
                            let fut = inbound.rpc(rpc);
                            let tx = reply_tx.clone();
                            tern_shard::task::spawn(async move {
                                let reply = fut.await;
                                let mut out = BytesMut::new();
                                wire::encode_frame(
                                    &mut out,
                                    FrameKind::Response,
                                    &wire::encode_rpc(id, &reply),
                                );
                                let _ = tx.unbounded_send(out.to_vec());
                            });
                        }
                        Err(e) => {
                            log::warn!("controller listener: bad request: {e}; closing");
                            break 'conn;
                        }
                    }
                }
                Ok(Some((FrameKind::Response, _))) => {
                    log::warn!("controller listener: unexpected response frame; closing");
                    break 'conn;
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("controller listener: {e}; closing the connection");
                    break 'conn;
                }
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    drop(reply_tx);
    let _ = writer.await;
    if let Some((broker_id, broker_epoch)) = heartbeats_of {
        inbound.heartbeats_connection_closed(broker_id, broker_epoch);
    }
}

/// Outbound raft connections, one per peer.
pub struct Peers {
    queues: BTreeMap<i32, PeerQueue>,
}

/// What feeds one peer's sender task: its raft messages, and a nudge that ends a reconnect
/// backoff.
struct PeerQueue {
    messages: mpsc::Sender<Vec<u8>>,
    retry: mpsc::Sender<()>,
}

impl Peers {
    /// Starts one sender task per peer (node id -> controller listener address).
    pub fn start(peers: BTreeMap<i32, SocketAddr>, inbound: Rc<dyn Inbound>) -> Self {
        let mut queues = BTreeMap::new();
        for (id, addr) in peers {
            let (messages, rx) = mpsc::channel(PEER_QUEUE);
            let (retry, retry_rx) = mpsc::channel(1);
            queues.insert(id, PeerQueue { messages, retry });
            tern_shard::task::spawn(run_peer(id, addr, rx, retry_rx, inbound.clone()));
        }
        Self { queues }
    }

    /// Queues a raft message with this node's cluster id; dropped (raft retries) when the
    /// peer's queue is full or unknown.
    pub fn send(&mut self, to: i32, message: &Message, cluster_id: Option<&str>) {
        let Some(q) = self.queues.get_mut(&to) else {
            log::warn!("raft message to unknown peer {to} dropped");
            return;
        };
        let mut out = BytesMut::new();
        wire::encode_frame(
            &mut out,
            FrameKind::Raft,
            &wire::encode_raft_payload(
                cluster_id,
                &crate::cluster::quorum::encode_message(message),
            ),
        );
        if q.messages.try_send(out.to_vec()).is_err() {
            log::debug!("peer {to}: queue full; raft message dropped");
        }
    }

    /// Every peer waiting out a reconnect backoff tries again now (a new active controller
    /// learns at once which peers' processes are gone: their connections are refused).
    pub fn retry_now(&mut self) {
        for q in self.queues.values_mut() {
            let _ = q.retry.try_send(());
        }
    }
}

/// Why a peer connection ended.
enum Ended {
    /// This node is shutting down (the queue closed).
    Closed,
    /// A write failed.
    WriteFailed,
    /// The peer closed it (a peer never writes on this connection: EOF or an error on the
    /// read side means its process closed the socket, most often because it exited).
    PeerClosed,
}

async fn run_peer(
    id: i32,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut retry: mpsc::Receiver<()>,
    inbound: Rc<dyn Inbound>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    let mut last_at_once: Option<std::time::Instant> = None;
    loop {
        let stream = match tern_shard::net::connect(addr, CONNECT_TIMEOUT).await {
            Ok(s) => {
                if logged_down {
                    log::info!("controller peer {id} ({addr}) reachable again");
                }
                logged_down = false;
                s
            }
            Err(e) => {
                if !logged_down {
                    log::info!("controller peer {id} ({addr}) unreachable: {e}");
                    logged_down = true;
                }
                inbound.unreachable(id);
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    // Nobody listens there: the peer's process is gone (or not started).
                    inbound.peer_process_gone(id);
                }
                // Messages queued meanwhile are stale: drop them (raft resends what matters).
                while rx.try_recv().is_ok() {}
                if !wait_out(&mut backoff, &mut retry).await {
                    return; // the node is gone
                }
                continue;
            }
        };
        let connected = std::time::Instant::now();
        match send_until_ended(id, stream, &mut rx).await {
            Ended::Closed => return,
            Ended::WriteFailed => {}
            Ended::PeerClosed => {
                log::info!("controller peer {id} ({addr}) closed the connection; reconnecting")
            }
        }
        inbound.unreachable(id);
        if connected.elapsed() >= BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        // Reconnect at once (a refusal then tells within a millisecond that the process is
        // gone), but at most once per `BACKOFF_MAX`: a peer whose connections keep ending
        // is dialled at the backoff's pace.
        if last_at_once.is_none_or(|t| t.elapsed() >= BACKOFF_MAX) {
            last_at_once = Some(std::time::Instant::now());
        } else if !wait_out(&mut backoff, &mut retry).await {
            return;
        }
    }
}

/// Sleeps `backoff` (cut short by `Peers::retry_now`) and doubles it up to `BACKOFF_MAX`.
/// False when the node dropped its `Peers`.
async fn wait_out(backoff: &mut Duration, retry: &mut mpsc::Receiver<()>) -> bool {
    let sleep = tern_shard::task::sleep(*backoff);
    futures::pin_mut!(sleep);
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    !matches!(select(retry.next(), sleep).await, Either::Left((None, _)))
}

/// Writes the queued raft messages to `stream` until the queue closes, a write fails or the
/// peer closes the connection.
async fn send_until_ended(id: i32, stream: TcpStream, rx: &mut mpsc::Receiver<Vec<u8>>) -> Ended {
    let (mut rd, mut wr) = stream.split();
    let peer_closed = async move {
        let mut scratch = [0u8; 64];
        loop {
            match rd.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a peer has nothing to say here; ignore it
            }
        }
    };
    futures::pin_mut!(peer_closed);
    let ended = loop {
        let first = match select(rx.next(), peer_closed.as_mut()).await {
            Either::Left((Some(first), _)) => first,
            Either::Left((None, _)) => break Ended::Closed,
            Either::Right(((), _)) => break Ended::PeerClosed,
        };
        // Batch what is queued into one write.
        let mut batch = first;
        while batch.len() < READ_CHUNK {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                _ => break,
            }
        }
        if let Err(e) = wr.write_all(&batch).await {
            log::info!("controller peer {id}: write failed: {e}; reconnecting");
            break Ended::WriteFailed;
        }
    };
    let _ = wr.close().await;
    ended
}
