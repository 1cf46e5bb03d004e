//! Request framing: reading one size-prefixed request frame from a byte stream, with the size
//! validated against explicit limits before anything is allocated.

use bytes::BytesMut;
use futures::io::{AsyncRead, AsyncReadExt};

/// Kafka's default `socket.request.max.bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 104_857_600;

/// Upper bounds; all explicit and configurable by the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// `socket.request.max.bytes`: the largest request frame (excluding the 4-byte size prefix).
    pub max_request_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// Why a frame could not be read. Every variant means the connection should be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying stream failed, or ended in the middle of a frame (`UnexpectedEof`).
    #[error("i/o error while reading a request frame: {0}")]
    Io(#[from] std::io::Error),
    /// The declared size exceeds `max_request_bytes`.
    #[error("request frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    /// The declared size is negative.
    #[error("request frame has negative size {0}")]
    Negative(i32),
}

/// Reads one size-prefixed request frame and returns its payload (without the size prefix).
///
/// Returns `Ok(None)` on a clean EOF before the first byte of a frame. An EOF anywhere inside a
/// frame (including inside the size prefix) is `FrameError::Io` with kind `UnexpectedEof`. The
/// size is validated (negative or larger than `limits.max_request_bytes` is an error) before
/// anything is allocated; the allocation is exactly the declared size.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: &FrameLimits,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut filled = 0;
    while filled < size_buf.len() {
        match r.read(&mut size_buf[filled..]).await {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => {
                return Err(FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a frame size prefix",
                )));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let size = i32::from_be_bytes(size_buf);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size_usize = size as usize;
    if size_usize > limits.max_request_bytes {
        return Err(FrameError::TooLarge {
            size: i64::from(size),
            max: limits.max_request_bytes,
        });
    }
    let mut buf = BytesMut::zeroed(size_usize);
    r.read_exact(&mut buf[..]).await?;
    Ok(Some(buf))
}
