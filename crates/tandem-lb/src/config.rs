//! The traffic controller's configuration file (TOML), its defaults and validation. Every error
//! names the field, the value and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tandem_ha::config::Span;

/// Bounds on the probe settings, each with the reason.
pub mod bounds {
    use tandem_ha::config::Span;

    /// Below this a probe round costs more than it tells (two TLS handshakes per backend).
    pub const PROBE_INTERVAL_MIN: Span = Span::from_millis(100);
    /// Above this a dead Primary goes unnoticed for minutes even with `fall = 1`.
    pub const PROBE_INTERVAL_MAX: Span = Span::from_secs(60);
    /// A TLS handshake on a loaded LAN needs a few tens of milliseconds.
    pub const PROBE_TIMEOUT_MIN: Span = Span::from_millis(50);
    /// Consecutive results needed to change a page's state; beyond this detection is too slow.
    pub const FALL_RISE_MAX: u32 = 100;
    /// Backends in one controller: the guide's scenarios have two or three.
    pub const BACKENDS_MAX: usize = 16;
}

fn default_probe_interval() -> Span {
    Span::from_secs(1)
}
fn default_probe_timeout() -> Span {
    Span::from_millis(800)
}
fn default_fall() -> u32 {
    3
}
fn default_rise() -> u32 {
    2
}
fn default_group() -> String {
    "main".into()
}

/// How probes check the backends' TLS certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTls {
    /// Verify the chain against this CA (PEM) and the backend's `server_name`.
    Ca(PathBuf),
    /// Accept exactly these certificates (lower-case hex SHA-256 of the DER), whatever their
    /// names: Tandem's self-signed server certificates, printed by `tandem init`.
    Pinned(Vec<String>),
    /// Accept any certificate (labs only; a warning is logged at start).
    Insecure,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    pub name: String,
    /// `HOST:PORT` of the node's service listener.
    pub address: String,
    pub group: String,
    /// Name checked against the certificate with [`ProbeTls::Ca`]; the address's host otherwise.
    pub server_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub probe_interval: Span,
    pub probe_timeout: Span,
    pub fall: u32,
    pub rise: u32,
    pub probe_tls: ProbeTls,
    /// Where the controller keeps its memory across restarts (`state_file`; by default
    /// `lb-state.json` beside the configuration file). Relative paths are resolved against the
    /// configuration file's directory, so the value is the one the runtime opens.
    pub state_file: PathBuf,
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl LbConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Self::parse_in(&text, directory).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates a configuration read from the current directory.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_in(text, Path::new("."))
    }

    /// Parses and validates a configuration file found in `directory` (relative paths in it
    /// are resolved against it). Every problem is reported at once, each naming the field, the
    /// value and the fix, as `tandem.toml` is checked.
    pub fn parse_in(text: &str, directory: &Path) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|error| error.to_string())?;
        let mut problems = Vec::new();
        let parsed = Self::read(&table, directory, &mut problems);
        match (parsed, problems.as_slice()) {
            (Some(config), []) => Ok(config),
            (_, [one]) => Err(one.clone()),
            (_, problems) => Err(format!(
                "{} problems:\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            )),
        }
    }

    /// Reads every setting, pushing each problem found; `None` when one stops the config from
    /// being built (a problem has then been pushed).
    fn read(table: &toml::Table, directory: &Path, problems: &mut Vec<String>) -> Option<Self> {
        let mut top = Fields::new(table, "", problems);
        top.unknown(&[
            "listen",
            "admin",
            "probe_interval",
            "probe_timeout",
            "fall",
            "rise",
            "probe_tls",
            "state_file",
            "backend",
        ]);
        let listen_value = top.required::<toml::Value>("listen", "listen = \"0.0.0.0:443\"");
        let admin_text = top.required::<String>("admin", "admin = \"127.0.0.1:9444\"");
        let probe_interval = top
            .optional::<Span>("probe_interval")
            .unwrap_or_else(default_probe_interval);
        let probe_timeout = top
            .optional::<Span>("probe_timeout")
            .unwrap_or_else(default_probe_timeout);
        let fall = top.optional::<u32>("fall").unwrap_or_else(default_fall);
        let rise = top.optional::<u32>("rise").unwrap_or_else(default_rise);
        let state_file_given = top.optional::<PathBuf>("state_file");
        let tls_table = top.optional::<toml::Table>("probe_tls").unwrap_or_default();
        let backend_tables = top
            .optional::<Vec<toml::Table>>("backend")
            .unwrap_or_default();

        let listen = listen_value.and_then(|value| listen_addresses(value, problems));
        let admin = admin_text.and_then(|text| socket_addr("admin", &text, problems));
        if probe_interval < bounds::PROBE_INTERVAL_MIN
            || probe_interval > bounds::PROBE_INTERVAL_MAX
        {
            problems.push(format!(
                "probe_interval = {:?}: must be between {} and {}",
                probe_interval.to_string(),
                bounds::PROBE_INTERVAL_MIN,
                bounds::PROBE_INTERVAL_MAX
            ));
        }
        if probe_timeout < bounds::PROBE_TIMEOUT_MIN || probe_timeout > probe_interval {
            problems.push(format!(
                "probe_timeout = {:?}: must be at least {} and at most probe_interval ({}), so \
                 that one probe round ends before the next",
                probe_timeout.to_string(),
                bounds::PROBE_TIMEOUT_MIN,
                probe_interval
            ));
        }
        for (field, value) in [("fall", fall), ("rise", rise)] {
            if value == 0 || value > bounds::FALL_RISE_MAX {
                problems.push(format!(
                    "{field} = {value}: must be between 1 and {} (consecutive probe results)",
                    bounds::FALL_RISE_MAX
                ));
            }
        }
        let probe_tls = probe_tls(&tls_table, problems);
        let state_file = state_file(state_file_given.as_deref(), directory)
            .map_err(|problem| problems.push(problem))
            .ok();
        let backends = backends(&backend_tables, problems);
        Some(Self {
            listen: listen?,
            admin: admin?,
            probe_interval,
            probe_timeout,
            fall,
            rise,
            probe_tls: probe_tls?,
            state_file: state_file?,
            backends: backends?,
        })
    }
}

/// Typed values out of one TOML table, each problem pushed with the key's full name.
struct Fields<'a> {
    table: &'a toml::Table,
    /// `""` at the top, `"probe_tls."`, `"backend[1]."`.
    prefix: String,
    problems: &'a mut Vec<String>,
}

impl<'a> Fields<'a> {
    fn new(table: &'a toml::Table, prefix: &str, problems: &'a mut Vec<String>) -> Self {
        Self {
            table,
            prefix: prefix.to_owned(),
            problems,
        }
    }

    fn unknown(&mut self, known: &[&str]) {
        for key in self.table.keys() {
            if !known.contains(&key.as_str()) {
                self.problems.push(format!(
                    "{}{key}: unknown field `{key}`; the known ones here are {}",
                    self.prefix,
                    known.join(", ")
                ));
            }
        }
    }

    fn optional<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.table.get(key)?;
        match value.clone().try_into::<T>() {
            Ok(typed) => Some(typed),
            Err(error) => {
                // toml's message ends in a newline and names Rust's integer types.
                let error = error
                    .to_string()
                    .trim()
                    .replace("expected u32", "expected a whole number, e.g. 3");
                self.problems
                    .push(format!("{}{key} = {value}: {error}", self.prefix));
                None
            }
        }
    }

    fn required<T: serde::de::DeserializeOwned>(&mut self, key: &str, example: &str) -> Option<T> {
        if !self.table.contains_key(key) {
            self.problems.push(format!(
                "{}{key}: missing; add it, e.g. {example}",
                self.prefix
            ));
            return None;
        }
        self.optional(key)
    }
}

fn listen_addresses(value: toml::Value, problems: &mut Vec<String>) -> Option<Vec<SocketAddr>> {
    let texts = match value {
        toml::Value::String(one) => vec![one],
        toml::Value::Array(many) => {
            let texts: Option<Vec<String>> = many
                .into_iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            let Some(texts) = texts else {
                problems.push(
                    "listen: give addresses as strings, e.g. listen = [\"0.0.0.0:443\"]".into(),
                );
                return None;
            };
            texts
        }
        other => {
            problems.push(format!(
                "listen = {other}: give an address or a list of them, e.g. listen = \"0.0.0.0:443\""
            ));
            return None;
        }
    };
    if texts.is_empty() {
        problems
            .push("listen = []: give at least one address, e.g. listen = \"0.0.0.0:443\"".into());
        return None;
    }
    let before = problems.len();
    let addresses: Vec<SocketAddr> = texts
        .iter()
        .filter_map(|text| socket_addr("listen", text, problems))
        .collect();
    (problems.len() == before).then_some(addresses)
}

fn probe_tls(table: &toml::Table, problems: &mut Vec<String>) -> Option<ProbeTls> {
    let mut fields = Fields::new(table, "probe_tls.", problems);
    fields.unknown(&["ca_file", "pinned_sha256", "insecure"]);
    let ca_file = fields.optional::<PathBuf>("ca_file");
    let pinned = fields
        .optional::<Vec<String>>("pinned_sha256")
        .unwrap_or_default();
    let insecure = fields.optional::<bool>("insecure").unwrap_or(false);
    let modes =
        usize::from(ca_file.is_some()) + usize::from(!pinned.is_empty()) + usize::from(insecure);
    match modes {
        0 => {
            problems.push(
                "[probe_tls]: say how probes check the nodes' certificates: ca_file = \
                 \"ca.pem\", pinned_sha256 = [\"<hex>\"] (the fingerprint `tandem init` \
                 prints), or insecure = true (labs only)"
                    .into(),
            );
            None
        }
        1 => {
            if let Some(path) = ca_file {
                return Some(ProbeTls::Ca(path));
            }
            if insecure {
                return Some(ProbeTls::Insecure);
            }
            let mut pins = Vec::new();
            for pin in pinned {
                let normalized = pin.replace(':', "").to_ascii_lowercase();
                if normalized.len() != 64 || !normalized.chars().all(|c| c.is_ascii_hexdigit()) {
                    problems.push(format!(
                        "probe_tls.pinned_sha256 = {pin:?}: not a SHA-256 fingerprint; give 64 \
                         hex digits, as `tandem init` prints them"
                    ));
                } else {
                    pins.push(normalized);
                }
            }
            Some(ProbeTls::Pinned(pins))
        }
        _ => {
            problems
                .push("[probe_tls]: set only one of ca_file, pinned_sha256 and insecure".into());
            None
        }
    }
}

fn backends(tables: &[toml::Table], problems: &mut Vec<String>) -> Option<Vec<BackendConfig>> {
    if tables.is_empty() {
        problems.push(
            "[[backend]]: none configured; add the Primary and the Secondary, each with name and \
             address"
                .into(),
        );
        return None;
    }
    if tables.len() > bounds::BACKENDS_MAX {
        problems.push(format!(
            "[[backend]]: {} configured, at most {}",
            tables.len(),
            bounds::BACKENDS_MAX
        ));
        return None;
    }
    let before = problems.len();
    let mut backends: Vec<BackendConfig> = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let at = format!("backend[{index}]");
        let mut fields = Fields::new(table, &format!("{at}."), problems);
        fields.unknown(&["name", "address", "group", "server_name"]);
        let name = fields.required::<String>("name", "name = \"main-primary\"");
        let address = fields.required::<String>("address", "address = \"10.0.0.1:443\"");
        let group = fields
            .optional::<String>("group")
            .unwrap_or_else(default_group);
        let server_name = fields.optional::<String>("server_name");
        if let Some(name) = &name {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                problems.push(format!(
                    "{at}.name = {name:?}: use letters, digits, - _ or . (it appears in metrics \
                     labels and on the command line)"
                ));
            } else if backends.iter().any(|other| &other.name == name) {
                problems.push(format!(
                    "{at}.name = {name:?}: another backend has this name; names must be unique"
                ));
            }
        }
        let host = match address
            .as_deref()
            .map(tandem_ha::address::PeerAddress::parse_with_port)
        {
            Some(Ok(parsed)) => Some(parsed.host().to_owned()),
            Some(Err(error)) => {
                // The node's service listener, named with the value and what is wrong.
                problems.push(format!(
                    "{at}.address = {:?}: {}",
                    address.as_deref().unwrap_or_default(),
                    error.problem
                ));
                None
            }
            None => None,
        };
        if group.is_empty() {
            problems.push(format!(
                "{at}.group = \"\": give a data-center name, e.g. \"main\" or \"dr\""
            ));
        }
        if let (Some(name), Some(address), Some(host)) = (name, address, host) {
            backends.push(BackendConfig {
                server_name: server_name.unwrap_or(host),
                name,
                address,
                group,
            });
        }
    }
    (problems.len() == before).then_some(backends)
}

/// The state file's path: the value given (relative to the configuration's directory) or the
/// default beside the configuration. Its directory must exist: the controller writes there
/// whenever its memory changes and must not discover a typo after a failover.
fn state_file(given: Option<&Path>, directory: &Path) -> Result<PathBuf, String> {
    let path = match given {
        None => directory.join(crate::state_file::STATE_FILE_NAME_DEFAULT),
        Some(given) => {
            let shown = given.display();
            let text = given.as_os_str().to_string_lossy();
            if text.is_empty() || text.ends_with('/') || given.file_name().is_none() {
                return Err(format!(
                    "state_file = {:?}: name a file, e.g. state_file = \"/var/lib/tandem/lb-state.json\"",
                    shown.to_string()
                ));
            }
            directory.join(given)
        }
    };
    let shown = path.display().to_string();
    if path.is_dir() {
        return Err(format!(
            "state_file = {shown:?}: is a directory; name a file in it, e.g. \"{}\"",
            path.join(crate::state_file::STATE_FILE_NAME_DEFAULT)
                .display()
        ));
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(format!(
            "state_file = {shown:?}: the directory {} does not exist; create it (writable by the \
             user tandem lb runs as) or name another file",
            parent.display()
        ));
    }
    Ok(path)
}

fn socket_addr(field: &str, text: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    text.parse()
        .map_err(|_| {
            problems.push(format!(
                "{field} = {text:?}: not an IP address and port; write e.g. \"127.0.0.1:9443\" \
                 or \"[::]:443\""
            ))
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        listen = "127.0.0.1:9443"
        admin = "127.0.0.1:9444"
        probe_interval = "1s"
        probe_timeout = "800ms"
        fall = 3
        rise = 2
        [probe_tls]
        insecure = true
        [[backend]]
        name = "main-primary"
        address = "10.0.0.1:443"
        [[backend]]
        name = "dr-secondary"
        address = "[fd00::2]:443"
        group = "dr"
    "#;

    #[test]
    fn the_issues_example_parses_with_its_values() {
        let config = LbConfig::parse(GOOD).unwrap();
        assert_eq!(config.listen, vec!["127.0.0.1:9443".parse().unwrap()]);
        assert_eq!(config.probe_interval, Span::from_secs(1));
        assert_eq!(config.probe_timeout, Span::from_millis(800));
        assert_eq!((config.fall, config.rise), (3, 2));
        assert_eq!(config.probe_tls, ProbeTls::Insecure);
        assert_eq!(config.backends[0].group, "main");
        assert_eq!(config.backends[0].server_name, "10.0.0.1");
        assert_eq!(config.backends[1].server_name, "fd00::2");
        assert_eq!(config.backends[1].group, "dr");
        assert_eq!(config.state_file, Path::new("./lb-state.json"));
    }

    #[test]
    fn the_state_file_is_resolved_beside_the_configuration_and_its_directory_must_exist() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("sub")).unwrap();
        let config = LbConfig::parse_in(GOOD, temp.path()).unwrap();
        assert_eq!(config.state_file, temp.path().join("lb-state.json"));
        let given = GOOD.replace("fall = 3", "state_file = \"memory.json\"\nfall = 3");
        let config = LbConfig::parse_in(&given, temp.path()).unwrap();
        assert_eq!(config.state_file, temp.path().join("memory.json"));
        let cases = [
            ("\"nowhere/memory.json\"", "the directory"),
            ("\"sub\"", "is a directory"),
            ("\"\"", "state_file = \"\": name a file"),
        ];
        for (value, expected) in cases {
            let text = GOOD.replace("fall = 3", &format!("state_file = {value}\nfall = 3"));
            let error = LbConfig::parse_in(&text, temp.path()).unwrap_err();
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
            assert!(error.contains("state_file = "), "{error}");
        }
    }

    #[test]
    fn errors_name_the_field_the_value_and_the_fix() {
        let cases = [
            (GOOD.replace("\"1s\"", "\"1 fortnight\""), "probe_interval"),
            (
                GOOD.replace("\"800ms\"", "\"2s\""),
                "probe_timeout = \"2s\"",
            ),
            (
                GOOD.replace("fall = 3", "fall = 0"),
                "fall = 0: must be between 1 and 100",
            ),
            (
                GOOD.replace("\"127.0.0.1:9444\"", "\"localhost\""),
                "admin = \"localhost\"",
            ),
            (
                GOOD.replace("\"10.0.0.1:443\"", "\"10.0.0.1\""),
                "backend[0].address = \"10.0.0.1\"",
            ),
            (
                GOOD.replace("dr-secondary", "main-primary"),
                "must be unique",
            ),
            (
                GOOD.replace("insecure = true", "insecure = false"),
                "[probe_tls]: say how",
            ),
            (
                GOOD.replace(
                    "insecure = true",
                    "insecure = true\npinned_sha256 = [\"ab\"]",
                ),
                "only one of",
            ),
            (
                GOOD.replace("insecure = true", "pinned_sha256 = [\"ab\"]"),
                "pinned_sha256 = \"ab\": not a SHA-256",
            ),
            (
                GOOD.replace("rise = 2", "rise = 2\nfail = 3"),
                "unknown field `fail`",
            ),
            (
                GOOD.replace("name = \"main-primary\"", "name = \"main primary\""),
                "backend[0].name",
            ),
        ];
        for (text, expected) in cases {
            let error = LbConfig::parse(&text).unwrap_err();
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        // Three mistakes: before, only "missing field `admin`" was reported.
        let text = GOOD
            .replace("admin = \"127.0.0.1:9444\"\n", "")
            .replace("fall = 3", "fall = \"three\"")
            .replace("\"10.0.0.1:443\"", "\"10.0.0.1\"")
            .replace("rise = 2", "rise = 2\nfail = 3");
        let error = LbConfig::parse(&text).unwrap_err();
        for expected in [
            "4 problems",
            "admin: missing; add it, e.g. admin = \"127.0.0.1:9444\"",
            "fall = \"three\": invalid type",
            "backend[0].address = \"10.0.0.1\"",
            "fail: unknown field `fail`",
        ] {
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
        let error = LbConfig::parse("[[backend]]\nadress = \"x\"\n").unwrap_err();
        for expected in [
            "listen: missing",
            "admin: missing",
            "[probe_tls]: say how",
            "backend[0].adress: unknown field",
            "backend[0].name: missing",
            "backend[0].address: missing",
        ] {
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
    }

    #[test]
    fn pins_are_normalized_and_listen_takes_a_list() {
        let pin = "AB:".repeat(31) + "AB";
        let text = GOOD
            .replace("insecure = true", &format!("pinned_sha256 = [{pin:?}]"))
            .replace(
                "listen = \"127.0.0.1:9443\"",
                "listen = [\"127.0.0.1:9443\", \"127.0.0.1:9445\"]",
            );
        let config = LbConfig::parse(&text).unwrap();
        assert_eq!(config.probe_tls, ProbeTls::Pinned(vec!["ab".repeat(32)]));
        assert_eq!(config.listen.len(), 2);
    }
}
