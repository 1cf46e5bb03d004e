//! ApiVersions: the APIs and version ranges this broker implements (see `crate::kafka::api`).

use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use tern_net::{ParsedHeader, ResponseFrame};

use crate::kafka::api;

pub fn handle(h: &ParsedHeader, _req: ApiVersionsRequest) -> ResponseFrame {
    super::encode(h, &response())
}

/// The answer (the same at every version; the encoder drops what a version lacks).
fn response() -> ApiVersionsResponse {
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
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    vec![kafka_protocol::messages::ResponseKind::ApiVersions(
        response(),
    )]
}
