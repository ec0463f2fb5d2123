//! The node's configuration file, `tandem.toml`. Every problem in it is reported at once, each
//! naming the key, the value and the fix.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bumped only if the file's meaning changes incompatibly; a newer file is refused clearly.
pub const CONFIG_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub format: u32,
    pub node: NodeSection,
    pub listeners: Listeners,
    /// Who may reach the System Manager listener; absent: anyone who can reach its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_manager: Option<SystemManagerSection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The operator's name for this node (shown in portals, logs, Sync History).
    pub name: String,
    /// A UUID fixed at init; ties the config to its node-local store.
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// HTTPS for devices, the admin portal and API, and load-balancer probes (guide: 443).
    pub service: String,
    /// HTTPS for the System Manager (guide: 8443).
    pub system_manager: String,
    /// SSH for heartbeat, Test Connection and sync, trusted hosts only (guide: 22).
    pub replication: String,
    /// Open connections one source address may hold on each HTTPS listener
    /// (default [`CONNECTIONS_PER_ADDRESS_MAX_DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_address_max: Option<usize>,
    /// Networks (CIDR) exempt from `connections_per_address_max`: the load balancer, which
    /// brings every device through its own address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections_per_address_exempt: Vec<String>,
    /// Seconds a client has to send a request's headers, the first one included
    /// (default [`HEADER_READ_TIMEOUT_DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_s: Option<u64>,
    /// Seconds a connection may stay open with no request in progress
    /// (default [`IDLE_TIMEOUT_DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// Seconds a request body may take beyond what its size needs at
    /// [`BODY_READ_RATE_MIN_BYTES_PER_S`] (default [`BODY_READ_TIMEOUT_DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_read_timeout_s: Option<u64>,
}

impl Listeners {
    /// The three addresses, every limit at its default (what `init` writes).
    pub fn at(service: &str, system_manager: &str, replication: &str) -> Self {
        Self {
            service: service.to_owned(),
            system_manager: system_manager.to_owned(),
            replication: replication.to_owned(),
            connections_per_address_max: None,
            connections_per_address_exempt: Vec::new(),
            header_read_timeout_s: None,
            idle_timeout_s: None,
            body_read_timeout_s: None,
        }
    }
}

/// `[system_manager]`: access control of the System Manager listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemManagerSection {
    /// Client networks (CIDR) allowed to connect; others are closed before TLS. Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// A PEM file of CA certificates; when set, clients must present a certificate it signed.
    /// A relative path is resolved against the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
}

/// One source address may hold at most this many connections on an HTTPS listener (an eighth
/// of the listener's 8192), so no single client can take every place and keep devices,
/// administrators and load-balancer probes from other addresses out. A load balancer that
/// brings every device through one address belongs in `connections_per_address_exempt`.
pub const CONNECTIONS_PER_ADDRESS_MAX_DEFAULT: usize = 1024;
/// Time to send a request's headers, from the connection's start or the previous answer: a
/// device or browser sends them at once; 30 s is hyper's own default and spans a slow mobile
/// network's stalls, while a client that sends nothing holds its place no longer than that.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// A connection with no request in progress for this long is closed (HTTP/2: GOAWAY). Longer
/// than the header timeout, so HTTP/1.1 keep-alive ends by that first; HTTP/2 clients that keep
/// a connection for later requests reconnect in one round trip.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// A request body must be whole within this plus what its size needs at
/// [`BODY_READ_RATE_MIN_BYTES_PER_S`]. Enrollment and API bodies are a few kilobytes sent at
/// once after the headers; 10 s is ample for them, while a body trickled a byte at a time
/// holds its connection no longer.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Every byte received extends a body's deadline by its share of this rate: a 1 GiB app file
/// gets about 4.5 hours at 64 KiB/s, far slower than any real upload, while a trickle gains
/// nothing.
pub const BODY_READ_RATE_MIN_BYTES_PER_S: u64 = 64 * 1024;
/// Largest timeout accepted in `[listeners]` (an hour): a longer one would defeat its purpose.
const LISTENER_TIMEOUT_S_MAX: u64 = 3600;

/// The limits of the HTTPS listeners, parsed from `[listeners]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    pub connections_per_address_max: usize,
    pub connections_per_address_exempt: Vec<Network>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
            connections_per_address_exempt: Vec::new(),
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
        }
    }
}

/// `[system_manager]`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemManagerAccess {
    /// `None`: every client network.
    pub allow: Option<Vec<Network>>,
    /// As written (resolve it against the data directory).
    pub client_ca: Option<PathBuf>,
}

impl SystemManagerAccess {
    pub fn allows(&self, address: IpAddr) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|networks| networks.iter().any(|network| network.contains(address)))
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// Parses `value`; the error says what is wrong, for a message that names the key.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (address, prefix_len) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_len {
            None => bits,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= bits => prefix,
                _ => return Err(format!("/{prefix} is not a prefix length from 0 to {bits}")),
            },
        };
        // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps:
        // its prefix loses the 96 bits of the mapping.
        let (address, prefix_len) = match (address, address.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix_len >= 96 => {
                (IpAddr::V4(v4), prefix_len - 96)
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => {
                return Err(format!(
                    "/{prefix_len} is shorter than the IPv4-mapped prefix ::ffff:0:0/96; write \
                     the IPv4 network instead"
                ));
            }
            (address, _) => (address, prefix_len),
        };
        let network = Self {
            address,
            prefix_len,
        };
        if network.masked(network.address) != network.address {
            return Err(format!(
                "host bits are set after /{prefix_len} (did you mean {}/{prefix_len}?)",
                network.masked(network.address)
            ));
        }
        Ok(network)
    }

    /// `address` with the bits beyond the prefix cleared (for an address of this family).
    fn masked(&self, address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// Whether `address` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.address.is_ipv4() && self.masked(address) == self.address
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// The listener addresses, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerAddrs {
    pub service: SocketAddr,
    pub system_manager: SocketAddr,
    pub replication: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML for a Tandem node: {message}")]
    Syntax { path: String, message: String },
    #[error("{path} has {} problem(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

/// Checks a node name: it appears in certificates, log lines and peers' Trusted Hosts.
pub fn node_name_problem(name: &str) -> Option<String> {
    const NODE_NAME_CHARS_MAX: usize = 63; // a DNS label's limit, so the name can be a host name
    let valid = !name.is_empty()
        && name.len() <= NODE_NAME_CHARS_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!valid).then(|| {
        format!(
            "node name {name:?} must be 1 to {NODE_NAME_CHARS_MAX} letters, digits, '-', '_' or '.'"
        )
    })
}

/// Parses a listener address, explaining the expected form on failure.
pub fn parse_listener(key: &str, value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("{key} = {value:?} is not an IP address and port; write it like \"127.0.0.1:4443\" or \"[::]:443\"")
    })
}

/// The networks of a list of CIDR values, each bad one a problem naming `key`, value and fix.
fn networks(key: &str, values: &[String], problems: &mut Vec<String>) -> Vec<Network> {
    values
        .iter()
        .filter_map(|value| match Network::parse(value) {
            Ok(network) => Some(network),
            Err(why) => {
                problems.push(format!(
                    "{key}: {value:?} is not a network: {why}; write a CIDR like \"10.0.0.0/8\", \
                     \"192.0.2.7/32\" or \"2001:db8::/32\""
                ));
                None
            }
        })
        .collect()
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|error| ConfigError::Syntax {
            path: shown.clone(),
            message: error.to_string(),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: shown,
                problems,
            })
        }
    }

    /// Every problem with the values, not just the first.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.format != CONFIG_FORMAT {
            problems.push(format!(
                "format = {} is not supported by this Tandem (it reads format {CONFIG_FORMAT}); \
                 run the Tandem release that wrote this file",
                self.format
            ));
        }
        if let Some(problem) = node_name_problem(&self.node.name) {
            problems.push(format!("[node] {problem}"));
        }
        if uuid::Uuid::parse_str(&self.node.id).is_err() {
            problems.push(format!(
                "[node] id = {:?} is not a UUID; it was written by `tandem init` and must not be edited",
                self.node.id
            ));
        }
        let parsed = [
            ("[listeners] service", &self.listeners.service),
            ("[listeners] system_manager", &self.listeners.system_manager),
            ("[listeners] replication", &self.listeners.replication),
        ]
        .map(|(key, value)| parse_listener(key, value));
        for result in &parsed {
            if let Err(problem) = result {
                problems.push(problem.clone());
            }
        }
        if let [Ok(a), Ok(b), Ok(c)] = &parsed
            && (a == b || b == c || a == c)
        {
            problems.push(format!(
                "[listeners] service, system_manager and replication must use different addresses (got {a}, {b}, {c})"
            ));
        }
        if let Err(more) = self.listener_limits() {
            problems.extend(more);
        }
        if let Err(more) = self.system_manager_access() {
            problems.extend(more);
        }
        problems
    }

    /// The HTTPS listeners' limits, or every problem with them.
    pub fn listener_limits(&self) -> Result<ListenerLimits, Vec<String>> {
        let listeners = &self.listeners;
        let mut problems = Vec::new();
        let defaults = ListenerLimits::default();
        let connections_per_address_max = match listeners.connections_per_address_max {
            None => defaults.connections_per_address_max,
            Some(0) => {
                problems.push(
                    "[listeners] connections_per_address_max = 0 would refuse every client; \
                     write at least 1 (the default is 1024), or remove the line"
                        .to_owned(),
                );
                0
            }
            Some(max) => max,
        };
        let connections_per_address_exempt = networks(
            "[listeners] connections_per_address_exempt",
            &listeners.connections_per_address_exempt,
            &mut problems,
        );
        let mut timeout = |key: &str, value: Option<u64>, default: Duration| match value {
            None => default,
            Some(seconds) if (1..=LISTENER_TIMEOUT_S_MAX).contains(&seconds) => {
                Duration::from_secs(seconds)
            }
            Some(seconds) => {
                problems.push(format!(
                    "[listeners] {key} = {seconds} is out of range; write 1 to \
                     {LISTENER_TIMEOUT_S_MAX} seconds (the default is {}), or remove the line",
                    default.as_secs()
                ));
                default
            }
        };
        let limits = ListenerLimits {
            connections_per_address_max,
            connections_per_address_exempt,
            header_read_timeout: timeout(
                "header_read_timeout_s",
                listeners.header_read_timeout_s,
                defaults.header_read_timeout,
            ),
            idle_timeout: timeout(
                "idle_timeout_s",
                listeners.idle_timeout_s,
                defaults.idle_timeout,
            ),
            body_read_timeout: timeout(
                "body_read_timeout_s",
                listeners.body_read_timeout_s,
                defaults.body_read_timeout,
            ),
        };
        if problems.is_empty() {
            Ok(limits)
        } else {
            Err(problems)
        }
    }

    /// `[system_manager]`, or every problem with it.
    pub fn system_manager_access(&self) -> Result<SystemManagerAccess, Vec<String>> {
        let Some(section) = &self.system_manager else {
            return Ok(SystemManagerAccess::default());
        };
        let mut problems = Vec::new();
        let allow = section
            .allow
            .as_ref()
            .map(|allow| networks("[system_manager] allow", allow, &mut problems));
        if allow.as_ref().is_some_and(Vec::is_empty) && problems.is_empty() {
            problems.push(
                "[system_manager] allow = [] would refuse every client, the operator included; \
                 list the administrators' networks (e.g. [\"10.0.0.0/8\", \"127.0.0.1/32\"]), \
                 or remove the line to allow all"
                    .to_owned(),
            );
        }
        if section
            .client_ca
            .as_deref()
            .is_some_and(|path| path.trim().is_empty())
        {
            problems.push(
                "[system_manager] client_ca = \"\" names no file; write the path of a PEM file \
                 of CA certificates, or remove the line"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(SystemManagerAccess {
                allow,
                client_ca: section.client_ca.as_ref().map(PathBuf::from),
            })
        } else {
            Err(problems)
        }
    }

    pub fn listener_addrs(&self) -> Result<ListenerAddrs, String> {
        Ok(ListenerAddrs {
            service: parse_listener("[listeners] service", &self.listeners.service)?,
            system_manager: parse_listener(
                "[listeners] system_manager",
                &self.listeners.system_manager,
            )?,
            replication: parse_listener("[listeners] replication", &self.listeners.replication)?,
        })
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!(
            "# Tandem node configuration, written by `tandem init`.\n\
             # Listener addresses may be edited (restart the node to apply); [node] id must not be.\n\
             {body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeConfig {
        NodeConfig {
            format: CONFIG_FORMAT,
            node: NodeSection {
                name: "main-primary".into(),
                id: uuid::Uuid::new_v4().to_string(),
            },
            listeners: Listeners::at("127.0.0.1:4443", "127.0.0.1:8443", "127.0.0.1:2222"),
            system_manager: None,
        }
    }

    #[test]
    fn networks_parse_and_match_as_cidr() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.1.2".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let host = Network::parse("127.0.0.1").unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("192.0.2.1".parse().unwrap())
        );
        assert!(
            Network::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::9".parse().unwrap())
        );
        assert!(
            Network::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            Network::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(
            Network::parse("ten/8")
                .unwrap_err()
                .contains("not an IP address")
        );
    }

    #[test]
    fn listener_limits_and_system_manager_access_report_every_problem() {
        let text = sample().to_toml().replace(
            "[listeners]",
            "[listeners]\nconnections_per_address_max = 0\nidle_timeout_s = 0\n\
             connections_per_address_exempt = [\"10.0.0.5/33\"]",
        ) + "\n[system_manager]\nallow = [\"10.0.0.0/8\", \"192.168.1.0/24x\"]\n";
        let config: NodeConfig = toml::from_str(&text).unwrap();
        let problems = config.problems();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("connections_per_address_max = 0"));
        assert!(problems[1].contains("connections_per_address_exempt: \"10.0.0.5/33\""));
        assert!(problems[2].contains("idle_timeout_s = 0"));
        assert!(problems[3].contains("[system_manager] allow: \"192.168.1.0/24x\""));
        assert!(problems[3].contains("write a CIDR like"));
    }

    #[test]
    fn absent_settings_take_their_defaults() {
        let config = sample();
        assert_eq!(config.listener_limits().unwrap(), ListenerLimits::default());
        let access = config.system_manager_access().unwrap();
        assert!(access.allows("203.0.113.9".parse().unwrap()));
        let text = config.to_toml() + "\n[system_manager]\nallow = [\"127.0.0.1/32\"]\n";
        let parsed: NodeConfig = toml::from_str(&text).unwrap();
        let access = parsed.system_manager_access().unwrap();
        assert!(access.allows("127.0.0.1".parse().unwrap()));
        assert!(!access.allows("127.0.0.2".parse().unwrap()));
        assert_eq!(
            toml::from_str::<NodeConfig>(&parsed.to_toml()).unwrap(),
            parsed
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let config = sample();
        let parsed: NodeConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(parsed, config);
        assert!(parsed.problems().is_empty());
    }

    #[test]
    fn reports_every_problem_with_its_fix() {
        let mut config = sample();
        config.format = 9;
        config.node.name = "bad name!".into();
        config.listeners.service = "localhost".into();
        config.listeners.replication = config.listeners.system_manager.clone();
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("format = 9"));
        assert!(problems[1].contains("\"bad name!\""));
        assert!(problems[2].contains("\"localhost\" is not an IP address and port"));
        config.listeners.service = "127.0.0.1:1".into();
        assert!(
            config
                .problems()
                .iter()
                .any(|p| p.contains("different addresses"))
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = sample()
            .to_toml()
            .replace("[listeners]", "[listeners]\nservce = \"x\"");
        let error = toml::from_str::<NodeConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("servce"), "{error}");
    }
}
