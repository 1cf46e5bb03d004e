//! `GuardBuf`: a `bytes::Buf` wrapper that kafka-protocol decodes through, so that a hostile
//! array count cannot make kafka-protocol's `Vec::with_capacity(count)` allocate gigabytes (an
//! allocation failure aborts the process; it is not a catchable panic).
//!
//! kafka-protocol reads array counts, string/bytes lengths and tag numbers/sizes as `Int32`
//! (`try_get_i32`) or as unsigned varints (a run of `try_get_u8` calls), and allocates right after
//! reading a count. Kafka itself rejects any array whose count exceeds the remaining bytes (every
//! element is at least one byte). The guard enforces that without knowing the schema:
//!
//! * Varints: whenever a `try_get_u8` may complete a varint (every candidate start within the
//!   current run of single-byte reads is checked, so booleans read just before cannot hide one),
//!   a value above `max(remaining + 1, GUARD)` is rejected with an error. Varints are only ever
//!   lengths, counts and tags, so no valid request is rejected (short of an empty unknown tagged
//!   field numbered above 65536).
//! * Int32: plain int fields (timeouts, max bytes...) may legitimately exceed the remaining bytes,
//!   so a value above `max(remaining + 1, GUARD)` is *clamped* to `remaining + 1` instead. As a
//!   count or length that still fails exactly where the real value would have; as a plain value
//!   it does not change what is consumed. So the guarded decode succeeds iff the real decode
//!   succeeds without a huge allocation, and when anything was clamped the caller decodes again
//!   without the guard to get the true values.

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::protocol::buf::ByteBuf;

/// Counts up to this many are let through even if they exceed the remaining bytes: the
/// allocation they can cause is bounded (`GUARD * size_of::<T>()`), and values like timeouts
/// below it need no second decode.
pub(crate) const GUARD: u64 = 1 << 16;

pub(crate) struct GuardBuf {
    inner: Bytes,
    /// The last (up to 5) bytes of the current run of consecutive `try_get_u8` calls.
    run: [u8; 5],
    run_len: usize,
    /// An `Int32` was clamped: the decoded values may differ from the wire values.
    pub(crate) clamped: bool,
    /// A varint count/length that exceeded the remaining bytes: `(value, remaining)`.
    pub(crate) rejected: Option<(u64, usize)>,
}

impl GuardBuf {
    pub(crate) fn new(inner: Bytes) -> Self {
        Self {
            inner,
            run: [0; 5],
            run_len: 0,
            clamped: false,
            rejected: None,
        }
    }

    fn limit(&self) -> u64 {
        (self.inner.remaining() as u64 + 1).max(GUARD)
    }

    /// The largest value any varint ending at the last byte of the run can have.
    fn max_varint_ending_here(&self) -> u64 {
        let run = &self.run[..self.run_len];
        let mut max = 0u64;
        for start in 0..run.len() {
            let cand = &run[start..];
            let (last, init) = cand.split_last().expect("non-empty");
            if init.iter().any(|b| b & 0x80 == 0) {
                continue;
            }
            if last & 0x80 != 0 && cand.len() < 5 {
                continue; // not complete yet
            }
            // Same arithmetic as kafka-protocol's UnsignedVarInt (u32, excess bits dropped).
            let mut value: u32 = 0;
            for (i, b) in cand.iter().enumerate() {
                value |= u32::from(b & 0x7f).wrapping_shl(7 * i as u32);
            }
            max = max.max(u64::from(value));
        }
        max
    }
}

impl Buf for GuardBuf {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        // Every multi-byte read other than try_get_i32 ends up here: it ends the u8 run.
        self.run_len = 0;
        self.inner.advance(cnt);
    }

    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        let b = self.inner.try_get_u8()?;
        if self.run_len == self.run.len() {
            self.run.copy_within(1.., 0);
            self.run_len -= 1;
        }
        self.run[self.run_len] = b;
        self.run_len += 1;
        let value = self.max_varint_ending_here();
        if value > self.limit() {
            let remaining = self.inner.remaining();
            self.rejected = Some((value, remaining));
            return Err(TryGetError {
                requested: usize::try_from(value).unwrap_or(usize::MAX),
                available: remaining,
            });
        }
        Ok(b)
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        self.run_len = 0;
        let v = self.inner.try_get_i32()?;
        let limit = self.limit();
        if v > 0 && v as u64 > limit {
            self.clamped = true;
            // limit < v <= i32::MAX, so remaining + 1 <= limit fits.
            return Ok((self.inner.remaining() + 1) as i32);
        }
        Ok(v)
    }
}

impl ByteBuf for GuardBuf {
    fn peek_bytes(&mut self, r: std::ops::Range<usize>) -> Bytes {
        self.inner.slice(r)
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.run_len = 0;
        self.inner.split_to(size)
    }
}
