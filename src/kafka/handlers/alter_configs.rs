//! AlterConfigs (the given set replaces a resource's overrides) and IncrementalAlterConfigs
//! (SET / DELETE / APPEND / SUBTRACT per key), for topics and the broker. Validated and applied
//! by the controller, which persists the metadata and pushes it to every shard before replying:
//! dynamic configs take effect at once (open logs get new settings) and survive restarts.

use std::rc::Rc;

use kafka_protocol::messages::{AlterConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::messages::{alter_configs_response, incremental_alter_configs_response};
use tern_net::{ParsedHeader, ResponseFrame};

use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::kafka::errors;
use crate::messages::{ControllerRequest, ShardMessage};
use crate::ops::configs::{Alteration, ConfigOp};
use crate::shard_state::{CONTROLLER_SHARD, ShardState};

async fn alter(
    state: &Rc<ShardState>,
    h: &ParsedHeader,
    resources: Vec<Alteration>,
    validate_only: bool,
) -> Vec<Result<(), (i16, String)>> {
    let n = resources.len();
    let res = state
        .call(CONTROLLER_SHARD, |reply| {
            ShardMessage::Controller(ControllerRequest::AlterConfigs {
                resources,
                validate_only,
                reply,
            })
        })
        .await
        .unwrap_or_else(|| {
            vec![Err((errors::REQUEST_TIMED_OUT, "broker is shutting down".into())); n]
        });
    for r in &res {
        if let Err((code, _)) = r {
            state.metrics.error(h.api_key, *code);
        }
    }
    res
}

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: AlterConfigsRequest,
) -> ResponseFrame {
    let resources: Vec<Alteration> = req
        .resources
        .iter()
        .map(|r| Alteration {
            resource_type: r.resource_type,
            resource_name: r.resource_name.to_string(),
            ops: r
                .configs
                .iter()
                .map(|c| ConfigOp {
                    name: c.name.to_string(),
                    op: if c.value.is_some() { 0 } else { 1 },
                    value: c.value.as_ref().map(|v| v.to_string()),
                })
                .collect(),
            incremental: false,
        })
        .collect();
    let results = alter(&state, &h, resources, req.validate_only).await;
    let keys = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()));
    super::encode(&h, &response(keys.collect(), results))
}

/// A resource: (type, name).
type Resource = (i8, StrBytes);

fn response(
    resources: Vec<Resource>,
    results: Vec<Result<(), (i16, String)>>,
) -> alter_configs_response::AlterConfigsResponse {
    let mut resp = alter_configs_response::AlterConfigsResponse::default();
    for ((resource_type, resource_name), res) in resources.into_iter().zip(results) {
        let mut o = alter_configs_response::AlterConfigsResourceResponse::default();
        o.resource_type = resource_type;
        o.resource_name = resource_name;
        // Success carries a null message, as in Kafka (the codec's default is "").
        o.error_message = res.as_ref().err().map(|(_, msg)| str_bytes(msg));
        if let Err((code, _)) = res {
            o.error_code = code;
        }
        resp.responses.push(o);
    }
    resp
}

pub async fn handle_incremental(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: IncrementalAlterConfigsRequest,
) -> ResponseFrame {
    let resources: Vec<Alteration> = req
        .resources
        .iter()
        .map(|r| Alteration {
            resource_type: r.resource_type,
            resource_name: r.resource_name.to_string(),
            ops: r
                .configs
                .iter()
                .map(|c| ConfigOp {
                    name: c.name.to_string(),
                    op: c.config_operation,
                    value: c.value.as_ref().map(|v| v.to_string()),
                })
                .collect(),
            incremental: true,
        })
        .collect();
    let results = alter(&state, &h, resources, req.validate_only).await;
    let keys = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()));
    super::encode(&h, &incremental_response(keys.collect(), results))
}

fn incremental_response(
    resources: Vec<Resource>,
    results: Vec<Result<(), (i16, String)>>,
) -> incremental_alter_configs_response::IncrementalAlterConfigsResponse {
    let mut resp = incremental_alter_configs_response::IncrementalAlterConfigsResponse::default();
    for ((resource_type, resource_name), res) in resources.into_iter().zip(results) {
        let mut o = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        o.resource_type = resource_type;
        o.resource_name = resource_name;
        // Success carries a null message, as in Kafka (the codec's default is "").
        o.error_message = res.as_ref().err().map(|(_, msg)| str_bytes(msg));
        if let Err((code, _)) = res {
            o.error_code = code;
        }
        resp.responses.push(o);
    }
    resp
}

#[cfg(test)]
type Results = Vec<Result<(), (i16, String)>>;

#[cfg(test)]
fn guard_inputs() -> (Vec<Resource>, Results) {
    (
        vec![(2, str_bytes("t")), (4, str_bytes("1"))],
        vec![
            Ok(()),
            Err((errors::INVALID_CONFIG, "bad value".to_string())),
        ],
    )
}

#[cfg(test)]
pub(crate) fn guard_responses(_version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    let (resources, results) = guard_inputs();
    vec![kafka_protocol::messages::ResponseKind::AlterConfigs(
        response(resources, results),
    )]
}

#[cfg(test)]
pub(crate) fn guard_responses_incremental(
    _version: i16,
) -> Vec<kafka_protocol::messages::ResponseKind> {
    let (resources, results) = guard_inputs();
    vec![
        kafka_protocol::messages::ResponseKind::IncrementalAlterConfigs(incremental_response(
            resources, results,
        )),
    ]
}
