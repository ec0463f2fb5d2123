//! The device CA and the server certificate as stored in the replicated database.

use crate::common::now;
use crate::error::{StoreError, StoreResult};
use rusqlite::{Connection, params};
use tandem_crypto::{CertificateAuthority, IssuedCertificate};

/// The server certificate and key the HTTPS listeners present.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

pub fn store_device_ca(conn: &Connection, ca: &CertificateAuthority) -> StoreResult<()> {
    insert(
        conn,
        "device_ca",
        ca.common_name(),
        ca.certificate_pem(),
        &ca.private_key_pem(),
    )
}

pub fn store_server_tls(
    conn: &Connection,
    common_name: &str,
    issued: &IssuedCertificate,
) -> StoreResult<()> {
    insert(
        conn,
        "server_tls",
        common_name,
        &issued.certificate_pem,
        &issued.private_key_pem,
    )
}

fn insert(conn: &Connection, name: &str, cn: &str, cert: &str, key: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO pki_material (name, common_name, certificate_pem, private_key_pem, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, cn, cert, key, now()],
    )
    .map_err(StoreError::from_sqlite)?;
    Ok(())
}

fn load(conn: &Connection, name: &'static str) -> StoreResult<(String, String, String)> {
    conn.query_row(
        "SELECT common_name, certificate_pem, private_key_pem FROM pki_material WHERE name = ?1",
        [name],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .map_err(|error| match error {
        rusqlite::Error::QueryReturnedNoRows => StoreError::Corrupt(format!(
            "the replicated database has no {name}; was this node created by `tandem init`?"
        )),
        other => other.into(),
    })
}

pub fn device_ca(conn: &Connection) -> StoreResult<CertificateAuthority> {
    let (common_name, certificate_pem, private_key_pem) = load(conn, "device_ca")?;
    Ok(CertificateAuthority::from_stored(
        &common_name,
        &certificate_pem,
        &private_key_pem,
    )?)
}

pub fn server_tls(conn: &Connection) -> StoreResult<ServerTls> {
    let (_, certificate_pem, private_key_pem) = load(conn, "server_tls")?;
    Ok(ServerTls {
        certificate_pem,
        private_key_pem,
    })
}
