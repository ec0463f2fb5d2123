//! `HOST[:PORT]`, parsed once: the one grammar for a peer's replication address (the HA
//! configuration's Primary, Trusted Hosts), the SMTP relay and a witness URL's authority.
//!
//! Two parsers of the same text were a real failover bug: an address one accepted and the other
//! refused failed every heartbeat, and every failed heartbeat counts toward promotion. So the
//! configuration stores the parsed [`PeerAddress`], Trusted Hosts are keyed by it, and the
//! runtime connects to exactly the host and port it holds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// The replication port when `HOST` is given without one (the guide's SSH port; Trusted Hosts
/// have always used it).
pub const DEFAULT_REPLICATION_PORT: u16 = 22;
/// A DNS name is at most 253 characters (RFC 1035); an IPv6 literal is shorter.
pub const HOST_CHARS_MAX: usize = 253;
/// The longest `HOST:PORT`: the host, two brackets, the colon and five digits. Anything longer
/// is not an address, and is refused before it is echoed into logs.
pub const PEER_ADDRESS_CHARS_MAX: usize = HOST_CHARS_MAX + 8;
/// Characters of a refused value echoed back in an error: enough to recognise it, never a
/// whole pasted payload.
const ECHO_CHARS_MAX: usize = 80;

/// A peer's address: a host name, an IPv4 address or an IPv6 address, and a port from 1 to
/// 65535. Displayed as the canonical `host:port` (`[v6]:port`), which is also how it is
/// stored; parsing that text gives the same value back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddress {
    host: String,
    port: u16,
}

/// Text that is not `HOST[:PORT]`: the value (shortened) and what is wrong with it, with the
/// fix. The caller names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` {problem}")]
pub struct AddressError {
    pub value: String,
    pub problem: String,
}

/// How to write an address, appended to every problem.
const USAGE: &str = "write HOST or HOST:PORT, e.g. 10.0.0.2:2222, [fd00::2]:2222 or \
                     mdm-b.example.com";

impl PeerAddress {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; the port is
    /// [`DEFAULT_REPLICATION_PORT`] when none is given. Surrounding spaces are ignored.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        Self::parse_with_default_port(text, DEFAULT_REPLICATION_PORT)
    }

    /// As [`PeerAddress::parse`], with the port a service uses when none is given (25 for an
    /// SMTP relay, 443 for an `https://` witness).
    pub fn parse_with_default_port(text: &str, default_port: u16) -> Result<Self, AddressError> {
        let (host, port) = split_host_port(text)?;
        Ok(Self {
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// As [`PeerAddress::parse`], where the port must be given (a load balancer's backend,
    /// whose service port has no default).
    pub fn parse_with_port(text: &str) -> Result<Self, AddressError> {
        let (host, port) = split_host_port(text)?;
        let Some(port) = port else {
            let mut missing = refused(text.trim(), "");
            missing.problem =
                "has no port; write HOST:PORT, e.g. 10.0.0.1:443 or [fd00::2]:443".to_owned();
            return Err(missing);
        };
        Ok(Self { host, port })
    }

    /// An address from the parts it was stored as (a Trusted Hosts row), checked by the same
    /// rules as typed text.
    pub fn from_parts(host: &str, port: u16) -> Result<Self, AddressError> {
        let shown = Self {
            host: host.to_owned(),
            port,
        }
        .to_string();
        check_host(host).map_err(|problem| refused(&shown, problem))?;
        if port == 0 {
            return Err(refused(&shown, "the port must be a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as it is written before `:port` or in a URL: an IPv6 address in brackets.
    pub fn host_in_brackets(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

fn refused(text: &str, problem: impl fmt::Display) -> AddressError {
    let mut value: String = text.chars().take(ECHO_CHARS_MAX).collect();
    if text.chars().count() > ECHO_CHARS_MAX {
        value.push('…');
    }
    AddressError {
        value,
        problem: format!("is not HOST[:PORT]: {problem}; {USAGE}"),
    }
}

/// The one grammar: the host and the port if one is given.
fn split_host_port(text: &str) -> Result<(String, Option<u16>), AddressError> {
    let text = text.trim();
    let fail = |problem: &str| refused(text, problem);
    if text.chars().count() > PEER_ADDRESS_CHARS_MAX {
        return Err(fail(&format!(
            "longer than {PEER_ADDRESS_CHARS_MAX} characters"
        )));
    }
    if let Some(bad) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(fail(&format!(
            "contains {:?} (spaces and control characters are not allowed)",
            bad
        )));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| fail("unclosed ["))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(fail("brackets hold an IPv6 address only"));
        }
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(fail("unexpected text after ]")),
        }
    } else {
        match text.split_once(':') {
            // One colon: HOST:PORT. More: a bare IPv6 address (checked below).
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (text, None),
        }
    };
    check_host(host).map_err(|problem| fail(&problem))?;
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| fail("the port must be a number from 1 to 65535"))?,
        ),
    };
    Ok((host.to_owned(), port))
}

/// A host name (letters, digits, `-`, `.`, `_`: what Trusted Hosts always accepted), an IPv4
/// address, or an IPv6 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.len() > HOST_CHARS_MAX {
        return Err(format!(
            "the host is longer than {HOST_CHARS_MAX} characters"
        ));
    }
    if host.contains(':') {
        return match host.parse::<Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "{host:?} is neither a host name nor an IPv6 address"
            )),
        };
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "the host contains {bad:?}; a host name has only letters, digits and - . _"
        ));
    }
    Ok(())
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_in_brackets(), self.port)
    }
}

impl FromStr for PeerAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        Self::parse(text)
    }
}

impl Serialize for PeerAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerAddress {
    /// Stored as text; configurations saved before the address was typed held what the
    /// operator typed (`10.0.0.1`, `host:2222`), which parses to the same address.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_to_the_canonical_host_and_port() {
        for (text, shown) in [
            ("mdm-b.example.com", "mdm-b.example.com:22"),
            ("10.0.0.2:2222", "10.0.0.2:2222"),
            (" 10.0.0.2 ", "10.0.0.2:22"),
            ("[::1]:2222", "[::1]:2222"),
            ("[fd00::2]", "[fd00::2]:22"),
            ("::1", "[::1]:22"),
            ("node_b.lan:65535", "node_b.lan:65535"),
        ] {
            let address = PeerAddress::parse(text).unwrap();
            assert_eq!(address.to_string(), shown, "{text}");
            assert_eq!(PeerAddress::parse(shown).unwrap(), address, "{shown}");
        }
        let address = PeerAddress::parse("[::1]:2222").unwrap();
        assert_eq!((address.host(), address.port()), ("::1", 2222));
    }

    #[test]
    fn bad_addresses_are_refused_with_the_value_and_the_fix() {
        let long = "a".repeat(HOST_CHARS_MAX + 1);
        let longer = "a".repeat(PEER_ADDRESS_CHARS_MAX + 1);
        for (bad, why) in [
            ("", "the host is empty"),
            (":22", "the host is empty"),
            ("host:0", "1 to 65535"),
            ("host:99999", "1 to 65535"),
            ("host:http", "1 to 65535"),
            ("host:", "1 to 65535"),
            ("a b", "spaces and control characters"),
            ("host\u{7}:22", "spaces and control characters"),
            ("user@host", "contains '@'"),
            ("http://host", "1 to 65535"),
            ("[::1", "unclosed ["),
            ("[host]:22", "IPv6 address only"),
            ("[::1]x", "unexpected text"),
            ("a:b:c", "neither a host name nor an IPv6 address"),
            ("münchen.example", "contains 'ü'"),
            (long.as_str(), "longer than 253"),
            (longer.as_str(), "longer than 261"),
        ] {
            let error = PeerAddress::parse(bad).unwrap_err();
            assert!(error.problem.contains(why), "{bad:?}: {error}");
            assert!(error.problem.contains("write HOST or HOST:PORT"), "{error}");
            assert!(error.value.chars().count() <= ECHO_CHARS_MAX + 1, "{error}");
        }
    }

    #[test]
    fn stored_parts_are_checked_by_the_same_rules() {
        assert_eq!(
            PeerAddress::from_parts("fd00::2", 2222)
                .unwrap()
                .to_string(),
            "[fd00::2]:2222"
        );
        assert!(PeerAddress::from_parts("a b", 22).is_err());
        assert!(PeerAddress::from_parts("host", 0).is_err());
    }

    #[test]
    fn a_service_port_applies_when_none_is_given() {
        let relay = PeerAddress::parse_with_default_port("mail.example.com", 25).unwrap();
        assert_eq!(relay.to_string(), "mail.example.com:25");
        let relay = PeerAddress::parse_with_default_port("mail.example.com:587", 25).unwrap();
        assert_eq!(relay.port(), 587);
    }

    #[test]
    fn addresses_are_stored_as_text_and_old_stored_text_loads() {
        let address: PeerAddress = serde_json::from_str("\"10.0.0.1\"").unwrap();
        assert_eq!(serde_json::to_string(&address).unwrap(), "\"10.0.0.1:22\"");
        assert!(serde_json::from_str::<PeerAddress>("\"a b\"").is_err());
    }
}
