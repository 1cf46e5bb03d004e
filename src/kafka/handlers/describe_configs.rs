//! DescribeConfigs: topic and broker configs with their effective values, sources, synonyms,
//! types and (on request) documentation, as Kafka reports them. Answered from this shard's
//! metadata snapshot (no cross-shard call).

use std::rc::Rc;

use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use tern_net::{ParsedHeader, ResponseFrame};

use super::str_bytes;
use crate::config::BrokerConfig;
use crate::kafka::errors;
use crate::metadata::ClusterMetadata;
use crate::ops::configs::{self, BROKER_CONFIGS, RESOURCE_BROKER, RESOURCE_TOPIC, TOPIC_CONFIGS};
use crate::shard_state::ShardState;

/// (config, value, source, synonyms, read-only)
type Row = (
    &'static configs::Def,
    String,
    i8,
    Vec<(String, String, i8)>,
    bool,
);

pub async fn handle(
    state: Rc<ShardState>,
    h: ParsedHeader,
    req: DescribeConfigsRequest,
) -> ResponseFrame {
    let resp = build_response(&state.config, &state.metadata(), &req);
    for r in &resp.results {
        if r.error_code != errors::NONE {
            state.metrics.error(h.api_key, r.error_code);
        }
    }
    super::encode(&h, &resp)
}

/// The DescribeConfigs response to `req` from the broker's static config and the metadata
/// snapshot's dynamic configs.
pub(crate) fn build_response(
    cfg: &BrokerConfig,
    meta: &ClusterMetadata,
    req: &DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for r in &req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        let name = r.resource_name.to_string();
        // Null or empty: every config (Kafka's ConfigHelper; kafka-python sends an empty list).
        let wanted = |k: &str| {
            r.configuration_keys
                .as_ref()
                .is_none_or(|ks| ks.is_empty() || ks.iter().any(|x| x.as_str() == k))
        };
        let mut rows: Vec<Row> = Vec::new();
        match r.resource_type {
            RESOURCE_TOPIC => match meta.topic(&name) {
                Some(t) => {
                    for def in TOPIC_CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let (v, s, syn) = configs::topic_value(cfg, meta, t, def);
                        rows.push((def, v, s, syn, false));
                    }
                }
                None => {
                    out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
                    out.error_message = Some(str_bytes(&format!("Topic {name} does not exist")));
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == cfg.node_id.to_string() => {
                for def in BROKER_CONFIGS.iter().filter(|d| wanted(d.name)) {
                    let (v, s, syn) = configs::broker_value(cfg, meta, def);
                    rows.push((def, v, s, syn, !def.dynamic));
                }
            }
            RESOURCE_BROKER => {
                out.error_code = errors::INVALID_REQUEST;
                out.error_message = Some(str_bytes(&format!("Unknown broker id {name}")));
            }
            t => {
                out.error_code = errors::INVALID_REQUEST;
                out.error_message = Some(str_bytes(&format!("Unsupported resource type {t}")));
            }
        }
        for (def, value, source, synonyms, read_only) in rows {
            let mut c = DescribeConfigsResourceResult::default();
            c.name = str_bytes(def.name);
            c.value = Some(str_bytes(&value));
            c.read_only = read_only;
            c.config_source = source;
            c.is_sensitive = false;
            c.config_type = def.kind.type_code();
            if req.include_synonyms {
                c.synonyms = synonyms
                    .into_iter()
                    .map(|(n, v, s)| {
                        let mut y = DescribeConfigsSynonym::default();
                        y.name = str_bytes(&n);
                        y.value = Some(str_bytes(&v));
                        y.source = s;
                        y
                    })
                    .collect();
            }
            if req.include_documentation && !def.doc.is_empty() {
                c.documentation = Some(str_bytes(def.doc));
            }
            out.configs.push(c);
        }
        resp.results.push(out);
    }
    resp
}

#[cfg(test)]
pub(crate) fn guard_responses(version: i16) -> Vec<kafka_protocol::messages::ResponseKind> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let cfg = BrokerConfig::load(&Default::default()).expect("default config");
    let mut meta = crate::kafka::handlers::test_fixtures::cluster();
    meta.broker_configs
        .insert("log.retention.ms".into(), "1000".into());
    if let Some(t) = meta.topics.values_mut().next() {
        t.configs.insert("retention.ms".into(), "5000".into());
    }
    let resource = |rt: i8, name: &str, keys: Option<Vec<&str>>| {
        let mut r = DescribeConfigsResource::default();
        r.resource_type = rt;
        r.resource_name = str_bytes(name);
        r.configuration_keys = keys.map(|ks| ks.into_iter().map(str_bytes).collect());
        r
    };
    let mut out = Vec::new();
    for extras in [false, true] {
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![
            resource(RESOURCE_TOPIC, "orders", None),
            resource(RESOURCE_BROKER, &cfg.node_id.to_string(), None),
            resource(RESOURCE_BROKER, "", Some(vec!["log.retention.ms"])),
            resource(RESOURCE_TOPIC, "missing", None),
            resource(RESOURCE_BROKER, "99", None),
            resource(7, "x", None),
        ];
        // Synonyms from v1, documentation from v3 (the request cannot ask before).
        req.include_synonyms = extras;
        req.include_documentation = extras && version >= 3;
        out.push(kafka_protocol::messages::ResponseKind::DescribeConfigs(
            build_response(&cfg, &meta, &req),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_key_list_means_every_config() {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        let cfg = BrokerConfig::load(&Default::default()).unwrap();
        let meta = crate::kafka::handlers::test_fixtures::cluster();
        let mut req = DescribeConfigsRequest::default();
        let mut r = DescribeConfigsResource::default();
        r.resource_type = RESOURCE_BROKER;
        r.resource_name = str_bytes(&cfg.node_id.to_string());
        r.configuration_keys = Some(Vec::new());
        req.resources = vec![r];
        let resp = build_response(&cfg, &meta, &req);
        assert_eq!(resp.results[0].configs.len(), BROKER_CONFIGS.len());
        let al = resp.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "advertised.listeners")
            .unwrap();
        assert_eq!(al.config_source, configs::source::DEFAULT_CONFIG);
    }

    #[test]
    fn guard_responses_encode_at_every_advertised_version() {
        crate::kafka::handlers::test_fixtures::assert_guard_encodes(
            kafka_protocol::messages::ApiKey::DescribeConfigs,
            guard_responses,
        );
    }
}
