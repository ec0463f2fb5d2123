//! The node's configuration file, `tandem.toml`. Every problem in it is reported at once, each
//! naming the key, the value and the fix.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Bumped only if the file's meaning changes incompatibly; a newer file is refused clearly.
pub const CONFIG_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub format: u32,
    pub node: NodeSection,
    pub listeners: Listeners,
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
        problems
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
            listeners: Listeners {
                service: "127.0.0.1:4443".into(),
                system_manager: "127.0.0.1:8443".into(),
                replication: "127.0.0.1:2222".into(),
            },
        }
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
