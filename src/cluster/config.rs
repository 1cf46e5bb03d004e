//! Cluster settings with Kafka's KRaft names (`node.id`, `process.roles`,
//! `controller.quorum.voters`, the listener names, the heartbeat and quorum timeouts), parsed and
//! validated from a plain key lookup so that every layer (broker, controller, quorum driver, the
//! simulator) can build one without the command line. No cluster key set means standalone: one
//! combined broker+controller node, exactly as Tern ran before clustering.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};

/// The keys this module owns (the broker's config loader warns about keys nobody owns).
pub const CLUSTER_KEYS: &[&str] = &[
    "node.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "broker.rack",
    "default.replication.factor",
    "offsets.topic.replication.factor",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "controller.quorum.election.timeout.ms",
    "controller.quorum.fetch.timeout.ms",
    "metadata.log.dir",
];

/// Keys whose presence turns on cluster (KRaft) mode; without any of them Tern is standalone.
const KRAFT_MODE_KEYS: &[&str] = &[
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
];

/// `controller.quorum.bootstrap.servers` (dynamic voters, KIP-853) is not supported: static voters only.
const DYNAMIC_VOTERS_KEY: &str = "controller.quorum.bootstrap.servers";

/// What this process runs (`process.roles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessRoles {
    Broker,
    Controller,
    /// `broker,controller`: both in one process (Kafka's "combined mode").
    Combined,
}

impl ProcessRoles {
    pub fn is_broker(self) -> bool {
        matches!(self, Self::Broker | Self::Combined)
    }
    pub fn is_controller(self) -> bool {
        matches!(self, Self::Controller | Self::Combined)
    }
}

/// One entry of `controller.quorum.voters`: `id@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

/// One entry of `listeners`: `NAME://host:port` (the name is also the protocol for PLAINTEXT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// The resolved cluster configuration.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// True when no KRaft key was given: one combined node, no controller listener, no quorum.
    pub standalone: bool,
    pub node_id: i32,
    pub roles: ProcessRoles,
    /// Static voters (empty when standalone), in the order given.
    pub voters: Vec<Voter>,
    /// Every listener of `listeners`, controller listeners included.
    pub listeners: Vec<Listener>,
    pub controller_listener_names: Vec<String>,
    pub inter_broker_listener_name: String,
    /// listener name -> security protocol (only PLAINTEXT is accepted).
    pub security_protocol_map: BTreeMap<String, String>,
    pub rack: Option<String>,
    pub default_replication_factor: i16,
    pub offsets_topic_replication_factor: i16,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    pub election_timeout_ms: u64,
    pub fetch_timeout_ms: u64,
    /// metadata.log.dir: where the metadata log (`__cluster_metadata-0`) lives; None = in the
    /// log dir (Kafka's rule: the first of `log.dirs`). `meta.properties` stays in the log dir.
    pub metadata_log_dir: Option<std::path::PathBuf>,
}

/// Kafka's default listener.security.protocol.map.
const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";
const KNOWN_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.trim()
        .parse::<T>()
        .map_err(|_| anyhow!("invalid value for {key}: {v:?} is not a valid number"))
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Splits `host:port` (IPv6 in brackets: `[::1]:9093`).
fn host_port(key: &str, entry: &str, v: &str) -> Result<(String, u16)> {
    let (host, port) = entry
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("invalid value for {key}: {entry:?} in {v:?} has no :port"))?;
    let port: u16 = port.parse().map_err(|_| {
        anyhow!("invalid value for {key}: port {port:?} in {entry:?} is not a port")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

/// Parses `controller.quorum.voters`: `1@host:9093,2@host:9093` (ids unique and >= 0).
pub fn parse_voters(v: &str) -> Result<Vec<Voter>> {
    const KEY: &str = "controller.quorum.voters";
    let mut voters: Vec<Voter> = Vec::new();
    for entry in split_list(v) {
        let (id, addr) = entry.split_once('@').ok_or_else(|| {
            anyhow!("invalid value for {KEY}: {entry:?} in {v:?} is not of the form id@host:port")
        })?;
        let id: i32 = id.trim().parse().map_err(|_| {
            anyhow!("invalid value for {KEY}: voter id {id:?} in {entry:?} is not a number")
        })?;
        if id < 0 {
            bail!("invalid value for {KEY}: voter id {id} in {entry:?} must be >= 0");
        }
        let (host, port) = host_port(KEY, addr.trim(), v)?;
        if host.is_empty() || port == 0 {
            bail!("invalid value for {KEY}: {entry:?} needs a host and a non-zero port");
        }
        if voters.iter().any(|o| o.id == id) {
            bail!("invalid value for {KEY}: voter id {id} appears twice in {v:?}");
        }
        voters.push(Voter { id, host, port });
    }
    if voters.is_empty() {
        bail!("invalid value for {KEY}: {v:?} names no voter (expected id@host:port,...)");
    }
    Ok(voters)
}

/// Parses a listener list: `PLAINTEXT://0.0.0.0:9092,CONTROLLER://:9093` (names unique, upper-cased).
pub fn parse_listeners(key: &str, v: &str) -> Result<Vec<Listener>> {
    let mut out: Vec<Listener> = Vec::new();
    for entry in split_list(v) {
        let (name, addr) = entry.split_once("://").ok_or_else(|| {
            anyhow!("invalid value for {key}: {entry:?} is not of the form NAME://host:port")
        })?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() {
            bail!("invalid value for {key}: {entry:?} has an empty listener name");
        }
        let (host, port) = host_port(key, addr, v)?;
        if out.iter().any(|l| l.name == name) {
            bail!("invalid value for {key}: listener name {name} appears twice");
        }
        if port != 0 && out.iter().any(|l| l.port == port && l.host == host) {
            bail!("invalid value for {key}: two listeners on {host}:{port}");
        }
        out.push(Listener { name, host, port });
    }
    if out.is_empty() {
        bail!("invalid value for {key}: {v:?} names no listener");
    }
    Ok(out)
}

/// Parses `listener.security.protocol.map`: `CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT`.
pub fn parse_protocol_map(v: &str) -> Result<BTreeMap<String, String>> {
    const KEY: &str = "listener.security.protocol.map";
    let mut out = BTreeMap::new();
    for entry in split_list(v) {
        let (name, proto) = entry.split_once(':').ok_or_else(|| {
            anyhow!("invalid value for {KEY}: {entry:?} is not of the form NAME:PROTOCOL")
        })?;
        let name = name.trim().to_ascii_uppercase();
        let proto = proto.trim().to_ascii_uppercase();
        if !KNOWN_PROTOCOLS.contains(&proto.as_str()) {
            bail!("invalid value for {KEY}: unknown security protocol {proto} for listener {name}");
        }
        if out.insert(name.clone(), proto).is_some() {
            bail!("invalid value for {KEY}: listener name {name} appears twice");
        }
    }
    Ok(out)
}

impl ClusterConfig {
    /// Resolves the cluster keys; `listeners_default` is used when `listeners` is unset.
    /// Every refusal names the key and the problem (the binary exits with code 2 on it).
    pub fn from_props<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        listeners_default: &str,
    ) -> Result<Self> {
        if get(DYNAMIC_VOTERS_KEY).is_some() {
            bail!(
                "{DYNAMIC_VOTERS_KEY} is not supported (dynamic voters): list the static voters \
                 in controller.quorum.voters"
            );
        }
        let standalone = KRAFT_MODE_KEYS.iter().all(|k| get(k).is_none());
        let replication = |key: &str, default: &str| -> Result<i16> {
            let n: i16 = num(key, get(key).unwrap_or(default))?;
            if n < 1 {
                bail!("invalid value for {key}: {n} (must be >= 1)");
            }
            Ok(n)
        };
        let default_replication_factor = replication("default.replication.factor", "1")?;
        let offsets_topic_replication_factor =
            replication("offsets.topic.replication.factor", "3")?;
        let positive_ms = |key: &str, default: &str| -> Result<u64> {
            let n: u64 = num(key, get(key).unwrap_or(default))?;
            if n == 0 {
                bail!("invalid value for {key}: must be > 0");
            }
            Ok(n)
        };
        let broker_heartbeat_interval_ms = positive_ms("broker.heartbeat.interval.ms", "2000")?;
        let broker_session_timeout_ms = positive_ms("broker.session.timeout.ms", "9000")?;
        if broker_heartbeat_interval_ms >= broker_session_timeout_ms {
            bail!(
                "invalid value for broker.heartbeat.interval.ms: {broker_heartbeat_interval_ms} must \
                 be below broker.session.timeout.ms ({broker_session_timeout_ms}), or every broker \
                 would be fenced between two heartbeats"
            );
        }
        let election_timeout_ms = positive_ms("controller.quorum.election.timeout.ms", "1000")?;
        let fetch_timeout_ms = positive_ms("controller.quorum.fetch.timeout.ms", "2000")?;
        let metadata_log_dir = match get("metadata.log.dir").map(str::trim) {
            None => None,
            Some("") => {
                bail!("invalid value for metadata.log.dir: empty (leave it unset for the log dir)")
            }
            Some(d) => Some(std::path::PathBuf::from(d)),
        };
        let rack = match get("broker.rack").map(str::trim) {
            None => None,
            Some("") => bail!("invalid value for broker.rack: empty (leave it unset for no rack)"),
            Some(r) => Some(r.to_string()),
        };
        let node_id_raw = get("node.id").or(get("broker.id"));
        let listeners_text = get("listeners").unwrap_or(listeners_default);

        if standalone {
            let node_id: i32 = num("node.id", node_id_raw.unwrap_or("0"))?;
            if node_id < 0 {
                bail!("invalid value for node.id: {node_id} (must be >= 0)");
            }
            // The standalone listener keeps its historical parsing (config.rs): first entry only.
            return Ok(Self {
                standalone,
                node_id,
                roles: ProcessRoles::Combined,
                voters: Vec::new(),
                listeners: Vec::new(),
                controller_listener_names: Vec::new(),
                inter_broker_listener_name: "PLAINTEXT".into(),
                security_protocol_map: parse_protocol_map(
                    get("listener.security.protocol.map").unwrap_or(DEFAULT_PROTOCOL_MAP),
                )?,
                rack,
                default_replication_factor,
                offsets_topic_replication_factor,
                broker_heartbeat_interval_ms,
                broker_session_timeout_ms,
                election_timeout_ms,
                fetch_timeout_ms,
                metadata_log_dir,
            });
        }

        let roles = match get("process.roles") {
            None => bail!(
                "process.roles is required in cluster mode (controller.quorum.voters or \
                 controller.listener.names is set): broker, controller or broker,controller"
            ),
            Some(v) => parse_roles(v)?,
        };
        let node_id: i32 = match node_id_raw {
            None => bail!(
                "node.id is required when process.roles or controller.quorum.voters is set \
                 (every node of a cluster needs its own id)"
            ),
            Some(v) => num("node.id", v)?,
        };
        if node_id < 0 {
            bail!("invalid value for node.id: {node_id} (must be >= 0)");
        }
        let voters = match get("controller.quorum.voters") {
            None => bail!(
                "controller.quorum.voters is required with process.roles: list the controllers \
                 as id@host:port,..."
            ),
            Some(v) => parse_voters(v)?,
        };
        let is_voter = voters.iter().any(|v| v.id == node_id);
        if roles.is_controller() && !is_voter {
            bail!(
                "node.id {node_id} has the controller role (process.roles) but is not one of the \
                 voters in controller.quorum.voters ({})",
                voter_ids(&voters)
            );
        }
        if !roles.is_controller() && is_voter {
            bail!(
                "node.id {node_id} is listed in controller.quorum.voters but process.roles=broker: \
                 a voter must have the controller role"
            );
        }
        let controller_listener_names: Vec<String> = match get("controller.listener.names") {
            None => bail!(
                "controller.listener.names is required in cluster mode (e.g. CONTROLLER), \
                 naming the listener the controllers are reached on"
            ),
            Some(v) => split_list(v).map(str::to_ascii_uppercase).collect(),
        };
        if controller_listener_names.is_empty() {
            bail!("invalid value for controller.listener.names: names no listener");
        }
        let listeners = parse_listeners("listeners", listeners_text)?;
        let is_controller_listener = |l: &Listener| controller_listener_names.contains(&l.name);
        let broker_listeners: Vec<&Listener> = listeners
            .iter()
            .filter(|l| !is_controller_listener(l))
            .collect();
        if roles.is_controller() && !listeners.iter().any(is_controller_listener) {
            bail!(
                "listeners ({listeners_text}) must contain the controller listener {} \
                 (controller.listener.names) on a node with the controller role",
                controller_listener_names[0]
            );
        }
        if !roles.is_controller() && listeners.iter().any(is_controller_listener) {
            bail!(
                "listeners ({listeners_text}) must not contain a controller listener \
                 (controller.listener.names={}) when process.roles=broker",
                controller_listener_names.join(",")
            );
        }
        if roles == ProcessRoles::Controller && !broker_listeners.is_empty() {
            bail!(
                "listeners ({listeners_text}) may only contain controller listeners \
                 (controller.listener.names={}) when process.roles=controller",
                controller_listener_names.join(",")
            );
        }
        let inter_broker_listener_name = get("inter.broker.listener.name")
            .map(|s| s.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "PLAINTEXT".into());
        if controller_listener_names.contains(&inter_broker_listener_name) {
            bail!(
                "inter.broker.listener.name {inter_broker_listener_name} must not be a controller \
                 listener (controller.listener.names)"
            );
        }
        if roles.is_broker() {
            if broker_listeners.len() > 1 {
                bail!(
                    "listeners ({listeners_text}): Tern serves one broker listener for now, got {}",
                    broker_listeners.len()
                );
            }
            if !broker_listeners
                .iter()
                .any(|l| l.name == inter_broker_listener_name)
            {
                bail!(
                    "inter.broker.listener.name {inter_broker_listener_name} must be one of the \
                     broker listeners in listeners ({listeners_text})"
                );
            }
        }
        let explicit_map = get("listener.security.protocol.map");
        let mut security_protocol_map =
            parse_protocol_map(explicit_map.unwrap_or(DEFAULT_PROTOCOL_MAP))?;
        if explicit_map.is_none() {
            // As Kafka: without an explicit map, controller listener names map to PLAINTEXT.
            for name in &controller_listener_names {
                security_protocol_map
                    .entry(name.clone())
                    .or_insert_with(|| "PLAINTEXT".into());
            }
        }
        for l in &listeners {
            match security_protocol_map.get(&l.name).map(String::as_str) {
                None => bail!(
                    "listener {} has no security protocol in listener.security.protocol.map",
                    l.name
                ),
                Some("PLAINTEXT") => {}
                Some(p) => bail!(
                    "listener {} uses security protocol {p}: Tern supports PLAINTEXT only for now \
                     (listener.security.protocol.map)",
                    l.name
                ),
            }
        }
        Ok(Self {
            standalone,
            node_id,
            roles,
            voters,
            listeners,
            controller_listener_names,
            inter_broker_listener_name,
            security_protocol_map,
            rack,
            default_replication_factor,
            offsets_topic_replication_factor,
            broker_heartbeat_interval_ms,
            broker_session_timeout_ms,
            election_timeout_ms,
            fetch_timeout_ms,
            metadata_log_dir,
        })
    }

    /// The listener clients and other brokers use (None on a controller-only node or standalone,
    /// where config.rs keeps its own listener parsing).
    pub fn broker_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| l.name == self.inter_broker_listener_name)
    }

    /// The listener the quorum and broker registrations use (None unless a controller).
    pub fn controller_listener(&self) -> Option<&Listener> {
        let first = self.controller_listener_names.first()?;
        self.listeners.iter().find(|l| &l.name == first)
    }

    /// True when this process alone is the whole cluster (standalone, or the only voter in
    /// combined mode): it can run without any peer.
    pub fn is_single_node(&self) -> bool {
        self.standalone
            || (self.roles == ProcessRoles::Combined
                && self.voters.len() == 1
                && self.voters[0].id == self.node_id)
    }
}

fn parse_roles(v: &str) -> Result<ProcessRoles> {
    let (mut broker, mut controller) = (false, false);
    for role in split_list(v) {
        let seen = match role.to_ascii_lowercase().as_str() {
            "broker" => std::mem::replace(&mut broker, true),
            "controller" => std::mem::replace(&mut controller, true),
            _ => bail!(
                "invalid value for process.roles: unknown role {role:?} (expected broker, \
                 controller or broker,controller)"
            ),
        };
        if seen {
            bail!("invalid value for process.roles: role {role} appears twice in {v:?}");
        }
    }
    match (broker, controller) {
        (true, true) => Ok(ProcessRoles::Combined),
        (true, false) => Ok(ProcessRoles::Broker),
        (false, true) => Ok(ProcessRoles::Controller),
        (false, false) => bail!(
            "invalid value for process.roles: empty (expected broker, controller or \
             broker,controller)"
        ),
    }
}

fn voter_ids(voters: &[Voter]) -> String {
    voters
        .iter()
        .map(|v| v.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<ClusterConfig> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClusterConfig::from_props(|k| map.get(k).map(String::as_str), "PLAINTEXT://:9092")
    }

    fn combined(id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("process.roles", "broker,controller".into()),
            (
                "controller.quorum.voters",
                "1@127.0.0.1:9093,2@127.0.0.1:9094,3@127.0.0.1:9095".into(),
            ),
            ("controller.listener.names", "CONTROLLER".into()),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093".into(),
            ),
            ("node.id", id.to_string()),
        ]
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        format!("{:#}", load(pairs).unwrap_err())
    }

    fn with<'a>(
        base: &'a [(&'static str, String)],
        over: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = base
            .iter()
            .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        out.extend(over.iter().filter(|(_, v)| !v.is_empty()).copied());
        out
    }

    #[test]
    fn cluster_config_standalone_without_kraft_keys() {
        let c = load(&[]).unwrap();
        assert!(c.standalone && c.is_single_node());
        assert_eq!(c.roles, ProcessRoles::Combined);
        assert_eq!(c.node_id, 0);
        assert_eq!(c.broker_session_timeout_ms, 9000);
        assert_eq!(c.broker_heartbeat_interval_ms, 2000);
        assert_eq!(c.election_timeout_ms, 1000);
        assert_eq!(c.fetch_timeout_ms, 2000);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(c.metadata_log_dir, None);
        let c = load(&[("metadata.log.dir", " /srv/meta ")]).unwrap();
        assert_eq!(
            c.metadata_log_dir.as_deref(),
            Some(std::path::Path::new("/srv/meta"))
        );
        assert!(err(&[("metadata.log.dir", " ")]).contains("metadata.log.dir"));
        let c = load(&[("broker.id", "4"), ("broker.rack", "az1")]).unwrap();
        assert_eq!((c.node_id, c.rack.as_deref()), (4, Some("az1")));
    }

    #[test]
    fn cluster_config_combined_three_voters() {
        let base = combined("2");
        let c = load(&with(
            &base,
            &[
                ("node.id", "2"),
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:9096,CONTROLLER://127.0.0.1:9094",
                ),
            ],
        ))
        .unwrap();
        assert!(!c.standalone && !c.is_single_node());
        assert_eq!(c.roles, ProcessRoles::Combined);
        assert_eq!(c.voters.len(), 3);
        assert_eq!(
            c.voters[1],
            Voter {
                id: 2,
                host: "127.0.0.1".into(),
                port: 9094
            }
        );
        assert_eq!(c.controller_listener().unwrap().port, 9094);
        assert_eq!(c.broker_listener().unwrap().port, 9096);
        assert_eq!(c.security_protocol_map["CONTROLLER"], "PLAINTEXT");
    }

    #[test]
    fn cluster_config_single_voter_is_single_node() {
        let base = combined("1");
        let c = load(&with(
            &base,
            &[("controller.quorum.voters", "1@localhost:9093")],
        ))
        .unwrap();
        assert!(c.is_single_node());
    }

    #[test]
    fn cluster_config_separate_roles() {
        let base = combined("1");
        let c = load(&with(
            &base,
            &[
                ("process.roles", "controller"),
                ("listeners", "CONTROLLER://127.0.0.1:9093"),
            ],
        ))
        .unwrap();
        assert_eq!(c.roles, ProcessRoles::Controller);
        assert!(c.broker_listener().is_none());
        let c = load(&with(
            &base,
            &[
                ("process.roles", "broker"),
                ("node.id", "7"),
                ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ],
        ))
        .unwrap();
        assert_eq!(c.roles, ProcessRoles::Broker);
        assert!(c.controller_listener().is_none());
    }

    #[test]
    fn cluster_config_voters_parser() {
        let v = parse_voters("1@a:9093, 2@[::1]:9094").unwrap();
        assert_eq!(
            v[1],
            Voter {
                id: 2,
                host: "::1".into(),
                port: 9094
            }
        );
        for bad in [
            "",
            "1",
            "1@host",
            "x@h:1",
            "-1@h:1",
            "1@h:port",
            "1@h:0",
            "1@:9",
            "1@h:1,1@h:2",
            "1@h:70000",
        ] {
            let e = format!("{:#}", parse_voters(bad).unwrap_err());
            assert!(e.contains("controller.quorum.voters"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn cluster_config_refusals_name_the_problem() {
        let base = combined("1");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("node.id", "")], "node.id is required"),
            (&[("node.id", "-3")], "node.id"),
            (&[("node.id", "9")], "not one of the voters"),
            (
                &[
                    ("process.roles", "broker"),
                    ("listeners", "PLAINTEXT://:9092"),
                ],
                "a voter must have the controller role",
            ),
            (&[("process.roles", "")], "process.roles is required"),
            (&[("process.roles", "broker,broker")], "appears twice"),
            (&[("process.roles", "zookeeper")], "unknown role"),
            (
                &[("controller.quorum.voters", "")],
                "controller.quorum.voters is required",
            ),
            (
                &[("controller.quorum.voters", "1@h")],
                "controller.quorum.voters",
            ),
            (
                &[("controller.listener.names", "")],
                "controller.listener.names is required",
            ),
            (
                &[("listeners", "PLAINTEXT://:9092")],
                "must contain the controller listener",
            ),
            (
                &[("inter.broker.listener.name", "CONTROLLER")],
                "must not be a controller listener",
            ),
            (
                &[("inter.broker.listener.name", "INTERNAL")],
                "must be one of the broker listeners",
            ),
            (
                &[(
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
                )],
                "PLAINTEXT only",
            ),
            (
                &[("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT")],
                "no security protocol",
            ),
            (
                &[("listener.security.protocol.map", "PLAINTEXT:FOO")],
                "unknown security protocol",
            ),
            (&[("listeners", "PLAINTEXT//:9092")], "NAME://host:port"),
            (
                &[("controller.quorum.bootstrap.servers", "h:9093")],
                "not supported",
            ),
            (
                &[("broker.session.timeout.ms", "1000")],
                "below broker.session.timeout.ms",
            ),
            (
                &[("controller.quorum.election.timeout.ms", "0")],
                "must be > 0",
            ),
            (
                &[("default.replication.factor", "0")],
                "default.replication.factor",
            ),
            (&[("broker.rack", " ")], "broker.rack"),
        ];
        for (over, want) in cases {
            let e = err(&with(&base, over));
            assert!(e.contains(want), "{over:?}: {e:?} lacks {want:?}");
        }
        // Controller-only nodes may not serve a broker listener; brokers may not serve the controller one.
        let e = err(&with(&base, &[("process.roles", "controller")]));
        assert!(e.contains("may only contain controller listeners"), "{e}");
        let e = err(&with(
            &base,
            &[("process.roles", "broker"), ("node.id", "7")],
        ));
        assert!(e.contains("must not contain a controller listener"), "{e}");
        // Voters without roles is cluster mode too, so the missing roles are named.
        let e = err(&[("controller.quorum.voters", "1@h:1"), ("node.id", "1")]);
        assert!(e.contains("process.roles is required"), "{e}");
    }
}
