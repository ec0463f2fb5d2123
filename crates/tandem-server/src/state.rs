//! What every handler shares.

use crate::tls;
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use tandem_crypto::CertificateAuthority;
use tandem_ha::NodeStatus;
use tandem_store::{Database, FileStore, NodeStore};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthCache;

/// The one gate every new device connection passes (`tandem failover client-connection
/// disable|enable`). Connections are judged when accepted: closing the gate refuses new device
/// connections while those already open finish their work.
#[derive(Debug)]
pub struct DeviceGate {
    open: AtomicBool,
}

impl Default for DeviceGate {
    fn default() -> Self {
        Self {
            open: AtomicBool::new(true),
        }
    }
}

impl DeviceGate {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }
}

/// Facts about the connection a request arrived on, set by the accept loop.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    /// SHA-256 of the client certificate, when the peer presented one the device CA signed.
    pub client_certificate_sha256: Option<String>,
    /// Whether the device gate was open when this connection was accepted.
    pub devices_allowed: bool,
    /// The client address is a known proxy's (`connections_per_address_exempt`), shared by
    /// every client behind it.
    pub through_proxy: bool,
}

/// The client address of a request, for log lines (empty when the request did not come through
/// a listener, as in handler tests).
pub fn source_of<B>(request: &axum::http::Request<B>) -> String {
    request
        .extensions()
        .get::<ConnectionInfo>()
        .map(|info| info.remote.to_string())
        .unwrap_or_default()
}

/// The node's TLS identity and device CA, from the replicated database. Replaceable while
/// serving: a promoted Secondary serves the certificate and CA it replicated from its Primary,
/// so devices keep trusting the server and the server keeps trusting their identities.
pub struct Identity {
    service: RwLock<TlsAcceptor>,
    system_manager: RwLock<TlsAcceptor>,
    device_ca: RwLock<Arc<CertificateAuthority>>,
    /// SHA-256 of the server certificate served now, to skip reloading an unchanged identity.
    certificate_sha256: RwLock<String>,
    /// The CAs a System Manager client's certificate must chain to (`[system_manager]
    /// client_ca`); `None`: no client certificate is asked for.
    system_manager_client_roots: Option<Arc<rustls::RootCertStore>>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn replace<T>(lock: &RwLock<T>, value: T) {
    *lock
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

impl Identity {
    /// Builds the TLS configurations from the replicated database.
    pub async fn load(
        db: &Database,
        system_manager_client_roots: Option<Arc<rustls::RootCertStore>>,
    ) -> Result<Self, crate::ServerError> {
        let (server, device_ca, fingerprint) = Self::read_stored(db).await?;
        let system_manager =
            tls::system_manager_config(&server, system_manager_client_roots.as_ref())?;
        Ok(Self {
            service: RwLock::new(TlsAcceptor::from(tls::service_config(&server, &device_ca)?)),
            system_manager: RwLock::new(TlsAcceptor::from(system_manager)),
            device_ca: RwLock::new(Arc::new(device_ca)),
            certificate_sha256: RwLock::new(fingerprint),
            system_manager_client_roots,
        })
    }

    async fn read_stored(
        db: &Database,
    ) -> Result<(tandem_store::pki::ServerTls, CertificateAuthority, String), crate::ServerError>
    {
        let (server, device_ca) = db
            .read(|conn| {
                Ok((
                    tandem_store::pki::server_tls(conn)?,
                    tandem_store::pki::device_ca(conn)?,
                ))
            })
            .await?;
        let fingerprint = hex::encode(sha2::Sha256::digest(
            format!("{}{}", server.certificate_pem, device_ca.certificate_pem()).as_bytes(),
        ));
        Ok((server, device_ca, fingerprint))
    }

    /// Serves the identity now stored in the database, if it changed (after a full sync).
    pub async fn reload(&self, db: &Database) -> Result<bool, crate::ServerError> {
        let (server, device_ca, fingerprint) = Self::read_stored(db).await?;
        if read(&self.certificate_sha256) == fingerprint {
            return Ok(false);
        }
        let service = TlsAcceptor::from(tls::service_config(&server, &device_ca)?);
        let system_manager = TlsAcceptor::from(tls::system_manager_config(
            &server,
            self.system_manager_client_roots.as_ref(),
        )?);
        replace(&self.service, service);
        replace(&self.system_manager, system_manager);
        replace(&self.device_ca, Arc::new(device_ca));
        replace(&self.certificate_sha256, fingerprint);
        Ok(true)
    }

    pub fn service_acceptor(&self) -> TlsAcceptor {
        read(&self.service)
    }

    pub fn system_manager_acceptor(&self) -> TlsAcceptor {
        read(&self.system_manager)
    }

    pub fn device_ca(&self) -> Arc<CertificateAuthority> {
        read(&self.device_ca)
    }
}

pub struct Shared {
    pub node_name: String,
    pub db: Database,
    pub files: FileStore,
    pub local: NodeStore,
    pub identity: Arc<Identity>,
    pub status: watch::Receiver<NodeStatus>,
    /// Where devices and administrators should go while this node is not Active (the Primary's
    /// address, or why the node is fenced); set by the HA runtime.
    pub elsewhere: RwLock<Option<String>>,
    pub device_gate: Arc<DeviceGate>,
    pub auth_cache: AuthCache,
    /// The browser consoles' login sessions.
    pub consoles: crate::console::Consoles,
    /// The `Tandem-Ballot` header value the probes send (set by the HA runtime whenever what it
    /// says changes), so a probe formats nothing and reads no database.
    pub ballot_header: RwLock<axum::http::HeaderValue>,
    /// The counters `/metrics` shows (requests, logins, heartbeats).
    pub metrics: Arc<crate::metrics::NodeMetrics>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn node_status(&self) -> NodeStatus {
        *self.status.borrow()
    }

    /// "; the Primary is …" for refusals while this node is not Active.
    pub fn where_to_go(&self) -> String {
        match read(&self.elsewhere) {
            Some(hint) => format!(" ({hint})"),
            None => String::new(),
        }
    }

    pub fn set_elsewhere(&self, hint: Option<String>) {
        replace(&self.elsewhere, hint);
    }

    pub fn ballot_header(&self) -> axum::http::HeaderValue {
        read(&self.ballot_header)
    }

    /// Sets what the probes' `Tandem-Ballot` header says.
    pub fn set_ballot(&self, ballot: &tandem_ha::ballot::ProbeBallot) {
        // The value holds digits, ids of letters, digits and '-', '=', ';' and spaces only
        // (`ProbeBallot::header_value`), all valid in a header; a failure would be a bug there.
        match axum::http::HeaderValue::from_str(&ballot.header_value()) {
            Ok(value) => replace(&self.ballot_header, value),
            Err(error) => tracing::error!(%error, "the ballot header is not a valid header value"),
        }
    }
}
