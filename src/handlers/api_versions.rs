//! ApiVersions: the APIs and version ranges this broker implements (see `crate::api`).

use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::api;

pub fn handle(h: &ParsedHeader, _req: ApiVersionsRequest) -> ResponseFrame {
    let mut resp = ApiVersionsResponse::default();
    resp.api_keys = api::SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect();
    super::encode(h, &resp)
}
