//! What every handler shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tandem_crypto::CertificateAuthority;
use tandem_ha::NodeStatus;
use tandem_store::{Database, FileStore, NodeStore};
use tokio::sync::watch;

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
}

pub struct Shared {
    pub node_name: String,
    pub db: Database,
    pub files: FileStore,
    pub local: NodeStore,
    pub device_ca: CertificateAuthority,
    pub status: watch::Receiver<NodeStatus>,
    pub device_gate: Arc<DeviceGate>,
    pub auth_cache: AuthCache,
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
}
