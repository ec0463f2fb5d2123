//! Trusted Hosts (node-local): the peers allowed to open the replication channel, each with the
//! host key it must present. Keyed by the `HOST:PORT` an operator types.

use crate::common::now;
use crate::error::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// `HOST[:PORT]` of a peer: the one parser, shared with the HA configuration's Primary, so an
/// address one accepts is never refused by the other (which failed every heartbeat).
pub use tandem_ha::address::{AddressError, DEFAULT_REPLICATION_PORT, PeerAddress as Endpoint};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedHost {
    pub host: String,
    pub port: u16,
    pub public_key: String,
    pub fingerprint: String,
    pub added_at: String,
    /// `host` and `port`, parsed when the row was read.
    #[serde(skip)]
    address: Endpoint,
}

impl TrustedHost {
    pub fn endpoint(&self) -> Endpoint {
        self.address.clone()
    }
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TrustedHost> {
    let host: String = row.get(0)?;
    let port: u16 = row.get(1)?;
    // Rows were written from a parsed address; one that no longer parses was edited by hand.
    let address = Endpoint::from_parts(&host, port).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(TrustedHost {
        host,
        port,
        public_key: row.get(2)?,
        fingerprint: row.get(3)?,
        added_at: row.get(4)?,
        address,
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
            endpoint.host(),
            endpoint.port(),
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
        params![endpoint.host(), endpoint.port()],
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
        .query_row(params![endpoint.host(), endpoint.port()], from_row)
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
            let error = StoreError::from(Endpoint::parse(bad).unwrap_err()).to_string();
            assert!(error.contains("host"), "{bad}: {error}");
        }
    }

    #[test]
    fn rows_stored_before_the_shared_parser_still_load() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE trusted_hosts (host TEXT NOT NULL, port INTEGER NOT NULL,
                 public_key TEXT NOT NULL, fingerprint TEXT NOT NULL, added_at TEXT NOT NULL,
                 PRIMARY KEY (host, port));
             INSERT INTO trusted_hosts VALUES
                 ('mdm-b.example.com', 22, 'ssh-ed25519 AAAA', 'SHA256:b', '2026-01-01T00:00:00Z'),
                 ('node_c.lan', 2222, 'ssh-ed25519 AAAA', 'SHA256:c', '2026-01-01T00:00:00Z'),
                 ('::1', 2222, 'ssh-ed25519 AAAA', 'SHA256:v6', '2026-01-01T00:00:00Z');",
        )
        .unwrap();
        let shown: Vec<String> = list(&conn)
            .unwrap()
            .iter()
            .map(|host| host.endpoint().to_string())
            .collect();
        assert_eq!(
            shown,
            ["[::1]:2222", "mdm-b.example.com:22", "node_c.lan:2222"]
        );
        // The HA configuration's Primary, typed as before, finds the same row.
        let primary: tandem_ha::config::HaConfig = serde_json::from_value(serde_json::json!({
            "enabled": true, "mode": "Secondary", "nodeStatus": "Standby",
            "primary": "mdm-b.example.com", "startTime": "00:00", "runEvery": "1h",
            "heartbeatInterval": "10s", "heartbeatFailures": 3, "recheckInterval": "5s",
            "onFailure": "promote", "witnesses": [], "notifyEmail": [],
            "notifyOnSyncCompletion": false, "notifyOnFailure": true
        }))
        .unwrap();
        let address = primary.primary.unwrap();
        assert!(get(&conn, &address).unwrap().is_some(), "{address}");
    }
}
