//! Trusted Hosts (node-local): the peers allowed to open the replication channel, each with the
//! host key it must present. Keyed by the `HOST:PORT` an operator types.

use crate::common::{Check, now};
use crate::error::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::fmt;

/// The replication port when `HOST` is given without one (the guide's SSH port).
pub const DEFAULT_REPLICATION_PORT: u16 = 22;

/// `HOST[:PORT]` as typed on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
    pub fn parse(text: &str) -> StoreResult<Self> {
        let text = text.trim();
        let invalid = |problem: &str| {
            StoreError::Invalid(crate::error::InvalidInput::single(
                "host",
                text,
                format!(
                    "{problem}; write HOST or HOST:PORT, e.g. 10.0.0.2:2222 or mdm-b.example.com"
                ),
            ))
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| invalid("unclosed ["))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(invalid("unexpected text after ]")),
            }
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            (host, Some(port))
        } else {
            (text, None)
        };
        let port = match port {
            None => DEFAULT_REPLICATION_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
        };
        let mut check = Check::new();
        check.token(
            "host",
            host,
            253,
            |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'),
            "letters, digits and - . : _ (a host name or IP address)",
        );
        check.finish()?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedHost {
    pub host: String,
    pub port: u16,
    pub public_key: String,
    pub fingerprint: String,
    pub added_at: String,
}

impl TrustedHost {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TrustedHost> {
    Ok(TrustedHost {
        host: row.get(0)?,
        port: row.get(1)?,
        public_key: row.get(2)?,
        fingerprint: row.get(3)?,
        added_at: row.get(4)?,
    })
}

const SELECT: &str = "SELECT host, port, public_key, fingerprint, added_at FROM trusted_hosts";

/// Adds or replaces the trusted key for `endpoint`. `key_text` is checked and normalised.
pub fn add(conn: &Connection, endpoint: &Endpoint, key_text: &str) -> StoreResult<TrustedHost> {
    let key = tandem_crypto::TrustedKey::parse(key_text).map_err(|error| {
        StoreError::Invalid(crate::error::InvalidInput::single(
            "key",
            key_text,
            error.to_string(),
        ))
    })?;
    conn.execute(
        "INSERT INTO trusted_hosts (host, port, public_key, fingerprint, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (host, port) DO UPDATE SET public_key = excluded.public_key,
             fingerprint = excluded.fingerprint, added_at = excluded.added_at",
        params![
            endpoint.host,
            endpoint.port,
            key.openssh,
            key.fingerprint,
            now()
        ],
    )?;
    get(conn, endpoint)?.ok_or_else(|| StoreError::not_found("trusted host", endpoint))
}

pub fn remove(conn: &Connection, endpoint: &Endpoint) -> StoreResult<()> {
    let removed = conn.execute(
        "DELETE FROM trusted_hosts WHERE host = ?1 AND port = ?2",
        params![endpoint.host, endpoint.port],
    )?;
    if removed == 0 {
        return Err(StoreError::not_found("trusted host", endpoint));
    }
    Ok(())
}

pub fn list(conn: &Connection) -> StoreResult<Vec<TrustedHost>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} ORDER BY host, port"))?
        .query_map([], from_row)?
        .collect::<Result<_, _>>()?)
}

pub fn get(conn: &Connection, endpoint: &Endpoint) -> StoreResult<Option<TrustedHost>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE host = ?1 AND port = ?2"))?
        .query_row(params![endpoint.host, endpoint.port], from_row)
        .optional()?)
}

/// The trusted hosts whose key is `key` (normalised OpenSSH text without comment).
pub fn by_key(conn: &Connection, key: &str) -> StoreResult<Vec<TrustedHost>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE public_key = ?1"))?
        .query_map([key], from_row)?
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_default_port_and_clear_errors() {
        let parse = |text| Endpoint::parse(text).map(|e| e.to_string());
        assert_eq!(parse("mdm-b.example.com").unwrap(), "mdm-b.example.com:22");
        assert_eq!(parse("10.0.0.2:2222").unwrap(), "10.0.0.2:2222");
        assert_eq!(parse("[::1]:2222").unwrap(), "[::1]:2222");
        assert_eq!(parse("::1").unwrap(), "[::1]:22");
        for bad in ["host:0", "host:99999", "host:x", "", "a b", "[::1"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("host"), "{bad}: {error}");
        }
    }
}
