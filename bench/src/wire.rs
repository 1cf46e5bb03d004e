//! Kafka wire basics over a blocking `TcpStream`: size-prefixed frames, request/response headers,
//! ApiVersions negotiation (the highest version both sides support, within what the bench speaks).

use anyhow::{Context, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Negotiated versions of the APIs the bench uses.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub metadata: i16,
    pub list_offsets: i16,
    pub create_topics: i16,
    pub delete_topics: i16,
}

/// What the bench speaks: (api, lowest, highest).
const WANTED: [(ApiKey, i16, i16); 6] = [
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
];

impl Versions {
    fn from_response(r: &ApiVersionsResponse) -> Result<Versions> {
        let mut v = [0i16; 6];
        for (i, (key, lo, hi)) in WANTED.iter().enumerate() {
            let theirs = r
                .api_keys
                .iter()
                .find(|k| k.api_key == *key as i16)
                .ok_or_else(|| anyhow!("broker does not advertise {key:?}"))?;
            let top = theirs.max_version.min(*hi);
            if top < (*lo).max(theirs.min_version) {
                bail!(
                    "no common {key:?} version: broker {}-{}, bench {lo}-{hi}",
                    theirs.min_version,
                    theirs.max_version
                );
            }
            v[i] = top;
        }
        Ok(Versions {
            produce: v[0],
            fetch: v[1],
            metadata: v[2],
            list_offsets: v[3],
            create_topics: v[4],
            delete_topics: v[5],
        })
    }
}

/// Append a whole request frame (length, header, body) to `out`.
pub fn encode_frame<R: Request>(
    out: &mut BytesMut,
    corr: i32,
    req: &R,
    version: i16,
) -> Result<()> {
    let start = out.len();
    out.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("tern-bench")));
    header.encode(out, R::header_version(version))?;
    req.encode(out, version)?;
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Read one response frame; returns its body after the length prefix.
pub fn read_frame(s: &mut impl Read) -> Result<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(io_error)?;
    let len = i32::from_be_bytes(len);
    if !(4..=512 << 20).contains(&len) {
        bail!("bad response frame length {len}");
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).map_err(io_error)?;
    Ok(Bytes::from(buf))
}

fn io_error(e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => anyhow!("no response within {} s", IO_TIMEOUT.as_secs()),
        UnexpectedEof => anyhow!("connection closed by the broker"),
        _ => anyhow!(e),
    }
}

/// Socket read/write timeout: a broker that stops answering fails the run instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Split a response frame into (correlation id, body) for a request of type `R` at `version`.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<(i32, R::Response)> {
    let hv = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, hv)?;
    let resp = R::Response::decode(&mut frame, version)
        .with_context(|| format!("decoding {:?} v{version} response", R::KEY))?;
    Ok((header.correlation_id, resp))
}

/// A synchronous connection for control requests (and for consumers).
pub struct Conn {
    pub stream: TcpStream,
    pub versions: Versions,
    corr: i32,
    out: BytesMut,
}

impl Conn {
    pub fn connect(addr: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut c = Conn {
            stream,
            versions: Versions {
                produce: 0,
                fetch: 0,
                metadata: 0,
                list_offsets: 0,
                create_topics: 0,
                delete_topics: 0,
            },
            corr: 0,
            out: BytesMut::with_capacity(64 << 10),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tern-bench"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp = c.call(&req, 3)?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: retry with v0 as Kafka clients do.
            resp = c.call(&ApiVersionsRequest::default(), 0)?;
        }
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error {}", resp.error_code);
        }
        c.versions = Versions::from_response(&resp)?;
        Ok(c)
    }

    /// Send `req` at `version` and wait for its response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.corr = self.corr.wrapping_add(1);
        self.out.clear();
        encode_frame(&mut self.out, self.corr, req, version)?;
        self.stream.write_all(&self.out)?;
        let frame = read_frame(&mut self.stream)
            .with_context(|| format!("waiting for {:?} v{version} response", R::KEY))?;
        let (corr, resp) = decode_response::<R>(frame, version)?;
        if corr != self.corr {
            bail!(
                "{:?} v{version}: response correlation id {corr}, expected {}",
                R::KEY,
                self.corr
            );
        }
        Ok(resp)
    }
}
