//! Tandem's replication: Trusted Hosts over SSH and the framed replication protocol.
//!
//! The syncing side (a Secondary) initiates: it connects to its source's replication listener,
//! checks the source's host key against Trusted Hosts, authenticates with its own host key, opens
//! the `tandem-replication@1` subsystem and exchanges hellos. Nothing proceeds between nodes of
//! different software or schema versions. Test Connection is exactly that exchange.

pub mod protocol;
pub mod ssh;
pub mod wire;

use protocol::{Hello, PROTOCOL_VERSION, Request, Response};
use russh::keys::PrivateKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tandem_store::trust::{self, Endpoint};
use tandem_store::{NodeStore, StoreError};
use tokio::io::{AsyncRead, AsyncWrite};
use wire::{WireError, read_frame, write_frame};

/// The node-local log module that records replication and HA activity (guide: the
/// HighAvailability module log).
pub const LOG_MODULE: &str = "HighAvailability";
/// Time for a peer to answer one request.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(
        "{endpoint} is not a trusted host; add it with `tandem ha trusted-hosts add {endpoint} --key KEY` \
         (the key is what `tandem ha local-key` prints on that node)"
    )]
    NotTrusted { endpoint: Endpoint },
    #[error("cannot reach {endpoint}: {reason}; is Tandem running there, with its replication listener on that port?")]
    Unreachable { endpoint: Endpoint, reason: String },
    #[error(
        "{endpoint} presented host key {presented}, but {trusted} is trusted for it; if the peer \
         was reinstalled, re-add it with `tandem ha trusted-hosts add {endpoint} --key KEY`, \
         otherwise something else answers at that address"
    )]
    HostKeyMismatch {
        endpoint: Endpoint,
        presented: String,
        trusted: String,
    },
    #[error(
        "{endpoint} refused this node's key; on {endpoint}, add this node to Trusted Hosts with \
         `tandem ha trusted-hosts add <this node's address> --key '{local_key}'`"
    )]
    KeyRefused { endpoint: Endpoint, local_key: String },
    #[error("{0}")]
    Incompatible(String),
    #[error("replication protocol error: {0}")]
    Protocol(String),
    #[error("{endpoint} did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout { endpoint: Endpoint },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
}

/// What Test Connection found.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    pub endpoint: String,
    pub local: Hello,
    pub peer: Hello,
    /// Peer clock minus local clock, including the request's flight time.
    pub clock_offset_ms: i64,
}

struct Inner {
    node_name: String,
    node_id: String,
    host_key: PrivateKey,
    local: NodeStore,
    replicated_path: PathBuf,
}

/// This node's replication side; cheap to clone.
#[derive(Clone)]
pub struct Replication {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

impl Replication {
    pub fn new(
        node_name: String,
        node_id: String,
        host_key: PrivateKey,
        local: NodeStore,
        replicated_path: PathBuf,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_name,
                node_id,
                host_key,
                local,
                replicated_path,
            }),
        }
    }

    pub fn host_key(&self) -> &PrivateKey {
        &self.inner.host_key
    }

    pub fn local(&self) -> &NodeStore {
        &self.inner.local
    }

    /// This node's public key, as an operator pastes it into a peer's Trusted Hosts.
    pub fn public_key_line(&self) -> String {
        let mut public = self.inner.host_key.public_key().clone();
        public.set_comment(self.inner.node_name.as_str());
        public.to_openssh().unwrap_or_default()
    }

    /// Records a line in the HighAvailability module log; a failure to log never fails the
    /// operation being logged.
    pub async fn log(&self, message: &str) {
        if let Err(error) = self.inner.local.log(LOG_MODULE, "INFO", message).await {
            tracing::warn!(%error, message, "cannot write the HighAvailability log");
        }
    }

    /// This node's hello: versions, identity and where its history stands.
    pub async fn hello(&self) -> Result<Hello, ReplicationError> {
        let path = self.inner.replicated_path.clone();
        let (epoch, position) = tokio::task::spawn_blocking(move || {
            let conn = tandem_store::read_only_replicated(&path)?;
            Ok::<_, StoreError>((
                tandem_store::changes::latest_epoch(&conn)?.max(1),
                tandem_store::changes::position(&conn)?,
            ))
        })
        .await
        .map_err(|error| ReplicationError::Protocol(error.to_string()))??;
        Ok(Hello {
            protocol_version: PROTOCOL_VERSION,
            software_version: protocol::software_version(),
            schema_version: tandem_store::schema::REPLICATED.version(),
            node_name: self.inner.node_name.clone(),
            node_id: self.inner.node_id.clone(),
            epoch,
            position_seq: position.seq,
            position_checksum: position.checksum,
            wall_clock_ms: now_ms(),
        })
    }

    /// Serves one replication session opened by a trusted peer.
    pub async fn serve_session<S>(&self, mut stream: S, peer: SocketAddr) -> Result<(), ReplicationError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Request::Hello(theirs) = read_frame::<_, Request>(&mut stream).await?;
        let ours = self.hello().await?;
        if let Some(reason) = ours.incompatibility(&theirs) {
            self.log(&format!("refused replication with {} ({peer}): {reason}", theirs.node_name))
                .await;
            write_frame(&mut stream, &Response::Refused { reason }).await?;
            return Ok(());
        }
        write_frame(&mut stream, &Response::Hello(ours)).await?;
        self.log(&format!(
            "connection test from {} ({peer}) succeeded",
            theirs.node_name
        ))
        .await;
        Ok(())
    }

    /// Test Connection (guide: Manage Trusted Hosts): authenticates both ways and exchanges
    /// versions with the trusted host at `endpoint`.
    pub async fn test_connection(&self, endpoint: &Endpoint) -> Result<TestReport, ReplicationError> {
        let lookup = endpoint.clone();
        let trusted = self
            .inner
            .local
            .database()
            .read(move |conn| trust::get(conn, &lookup))
            .await?
            .ok_or_else(|| ReplicationError::NotTrusted { endpoint: endpoint.clone() })?;
        let mut connection = ssh::connect(self, endpoint, &trusted).await?;
        let ours = self.hello().await?;
        let sent_at = now_ms();
        let exchange = async {
            write_frame(&mut connection.stream, &Request::Hello(ours.clone())).await?;
            read_frame::<_, Response>(&mut connection.stream).await
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ReplicationError::Timeout { endpoint: endpoint.clone() })??;
        let received_at = now_ms();
        let peer = match answer {
            Response::Hello(peer) => peer,
            Response::Refused { reason } => return Err(ReplicationError::Incompatible(reason)),
        };
        if let Some(reason) = ours.incompatibility(&peer) {
            return Err(ReplicationError::Incompatible(reason));
        }
        let midpoint = sent_at + (received_at - sent_at) / 2;
        Ok(TestReport {
            endpoint: endpoint.to_string(),
            clock_offset_ms: peer.wall_clock_ms - midpoint,
            local: ours,
            peer,
        })
    }
}
