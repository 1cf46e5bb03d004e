//! Sockets for shards: every shard binds the same listening address (glommio sets SO_REUSEPORT,
//! so the kernel spreads incoming connections over the shards).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

pub use glommio::net::TcpStream;

/// A listening socket owned by one shard.
pub struct ShardListener {
    inner: glommio::net::TcpListener,
}

impl ShardListener {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let inner =
            glommio::net::TcpListener::bind(addr).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { inner })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .local_addr()
            .map_err(|e| io::Error::other(e.to_string()))
    }

    pub async fn accept(&self) -> io::Result<TcpStream> {
        let s = self
            .inner
            .accept()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        s.set_nodelay(true)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(s)
    }
}

/// The raw fd of a stream (for sendfile/writev done on the blocking pool).
pub fn raw_fd(s: &TcpStream) -> RawFd {
    s.as_raw_fd()
}

/// Connects to `addr` (TCP_NODELAY set), failing after `timeout`.
pub async fn connect(addr: SocketAddr, timeout: std::time::Duration) -> io::Result<TcpStream> {
    // glommio's conversion keeps the OS error's kind: a refused connection stays
    // `ConnectionRefused` (nobody listens there: the process is gone).
    let s = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    s.set_nodelay(true)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(s)
}
