//! The broker's client of the controller quorum: sends an `Rpc` to the active controller over
//! the controller listener and returns its answer. It tries the last known leader first, then
//! every voter in turn; NOT_CONTROLLER (with the leader's id as a hint) or a failed connection
//! moves on to the next; after a bounded time the answer is REQUEST_TIMED_OUT. One connection
//! per voter, one request at a time on it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::{AsyncReadExt, AsyncWriteExt};
use tern_shard::net::TcpStream;

use super::wire::{self, FrameDecoder, FrameKind, Rpc, RpcReply};
use crate::cluster::controller::codes;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const ROUND_PAUSE: Duration = Duration::from_millis(100);

pub struct RpcClient {
    voters: Vec<(i32, SocketAddr)>,
    hint: Cell<Option<i32>>,
    conns: RefCell<BTreeMap<i32, Rc<futures::lock::Mutex<Option<TcpStream>>>>>,
    next_id: Cell<u64>,
    max_frame: usize,
}

impl RpcClient {
    pub fn new(voters: Vec<(i32, SocketAddr)>, max_frame: usize) -> Self {
        Self {
            voters,
            hint: Cell::new(None),
            conns: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(1),
            max_frame,
        }
    }

    /// The leader the last answer named.
    pub fn leader_hint(&self) -> Option<i32> {
        self.hint.get()
    }

    pub fn set_hint(&self, leader: Option<i32>) {
        if leader.is_some() {
            self.hint.set(leader);
        }
    }

    /// Sends `rpc` to the active controller, retrying others until `timeout` passes.
    /// `per_call` bounds one attempt (a long-polling fetch needs more than its wait).
    pub async fn call(&self, rpc: &Rpc, timeout: Duration, per_call: Duration) -> RpcReply {
        let deadline = Instant::now() + timeout;
        let mut last = RpcReply::Error {
            code: crate::kafka::errors::REQUEST_TIMED_OUT,
            message: "no controller answered".into(),
            leader: None,
        };
        while Instant::now() < deadline {
            let mut order: Vec<(i32, SocketAddr)> = Vec::new();
            if let Some(h) = self.hint.get()
                && let Some(v) = self.voters.iter().find(|v| v.0 == h)
            {
                order.push(*v);
            }
            order.extend(self.voters.iter().filter(|v| Some(v.0) != self.hint.get()));
            for (id, addr) in order {
                match self.call_one(id, addr, rpc, per_call).await {
                    Ok(RpcReply::Error {
                        code: codes::NOT_CONTROLLER,
                        message,
                        leader,
                    }) => {
                        if leader.is_some() && leader != Some(id) {
                            self.hint.set(leader);
                        } else if self.hint.get() == Some(id) {
                            self.hint.set(None);
                        }
                        last = RpcReply::Error {
                            code: codes::NOT_CONTROLLER,
                            message,
                            leader,
                        };
                    }
                    Ok(reply) => {
                        self.hint.set(Some(id));
                        return reply;
                    }
                    Err(e) => {
                        log::debug!("controller {id} ({addr}): {e}");
                        if self.hint.get() == Some(id) {
                            self.hint.set(None);
                        }
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            tern_shard::task::sleep(ROUND_PAUSE).await;
        }
        last
    }

    async fn call_one(
        &self,
        id: i32,
        addr: SocketAddr,
        rpc: &Rpc,
        per_call: Duration,
    ) -> io::Result<RpcReply> {
        let slot = self
            .conns
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| Rc::new(futures::lock::Mutex::new(None)))
            .clone();
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(tern_shard::net::connect(addr, CONNECT_TIMEOUT).await?);
        }
        let corr = self.next_id.get();
        self.next_id.set(corr + 1);
        let stream = guard.as_mut().expect("connected");
        let res =
            tern_shard::task::timeout(per_call, exchange(stream, corr, rpc, self.max_frame)).await;
        match res {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => {
                if let Some(mut s) = guard.take() {
                    let _ = s.close().await;
                }
                Err(e)
            }
            None => {
                if let Some(mut s) = guard.take() {
                    let _ = s.close().await;
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "controller did not answer in time",
                ))
            }
        }
    }
}

async fn exchange(
    stream: &mut TcpStream,
    corr: u64,
    rpc: &Rpc,
    max_frame: usize,
) -> io::Result<RpcReply> {
    let mut out = BytesMut::new();
    wire::encode_frame(&mut out, FrameKind::Request, &wire::encode_rpc(corr, rpc));
    stream.write_all(&out).await?;
    let decoder = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some((FrameKind::Response, payload))) => {
                let (id, reply) = wire::decode_rpc::<RpcReply>(&payload)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if id == corr {
                    return Ok(reply);
                }
                // A late answer to an earlier (timed-out) request: skip it.
            }
            Ok(Some((kind, _))) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected {kind:?} frame"),
                ));
            }
            Ok(None) => {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "controller closed the connection",
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}
