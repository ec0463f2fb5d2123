//! Tandem's replication: Trusted Hosts over SSH and the framed replication protocol.
//!
//! The syncing side (a Secondary) initiates: it connects to its source's replication listener,
//! checks the source's host key against Trusted Hosts, authenticates with its own host key, opens
//! the `tandem-replication@1` subsystem and exchanges hellos. Nothing proceeds between nodes of
//! different software or schema versions. Test Connection is exactly that exchange.

pub mod follow;
pub mod limit;
pub mod metrics;
pub mod ops;
pub mod protocol;
pub mod source;
pub mod ssh;
pub mod sync;
pub mod wire;

use protocol::{Hello, PROTOCOL_VERSION, Request, Response};
use russh::keys::PrivateKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_clock::wall_clock_ms;
use tandem_ha::machine::PeerView;
use tandem_node::Node;
use tandem_store::trust::{self, Endpoint, TrustedHost};
use tandem_store::{Database, FileStore, NodeStore, StoreError};
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
    #[error(
        "cannot reach {endpoint}: {reason}; is Tandem running there, with its replication listener on that port?"
    )]
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
    KeyRefused {
        endpoint: Endpoint,
        local_key: String,
    },
    #[error("{0}")]
    Incompatible(String),
    #[error("{0}")]
    Refused(String),
    #[error(
        "this node's history diverged from {source_node}'s after change {fork_seq}: it holds \
         {local_entries} change(s) that {source_node} does not have (it was probably Active on its \
         own). A scheduled sync never discards them; to save them to a file under the data dir and \
         resync from {source_node}, run `tandem failover sync {endpoint}`"
    )]
    Diverged {
        source_node: String,
        endpoint: Endpoint,
        fork_seq: i64,
        local_entries: i64,
    },
    /// Another sync holds the sync lock.
    #[error("{0}")]
    Busy(String),
    #[error("{endpoint} failed the request: {message}")]
    Remote { endpoint: Endpoint, message: String },
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

/// A peer address that does not parse is bad input (the store's `host` field error).
impl From<tandem_store::trust::AddressError> for ReplicationError {
    fn from(error: tandem_store::trust::AddressError) -> Self {
        ReplicationError::Store(error.into())
    }
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
    /// How long the hello took there and back (after the SSH handshake).
    pub round_trip_ms: i64,
}

/// How replication reaches the node's HA controller (attached by the server): what this node
/// tells peers about itself, and what it learns from them.
pub trait HaLink: Send + Sync + 'static {
    /// This node as peers see it (heartbeat answers, hellos).
    fn view(&self) -> PeerView;
    /// A peer said how it stands (its heartbeat to this node).
    fn peer_seen(&self, peer: PeerView);
    /// Carries out a switchover step asked by the trusted peer reached at `peer_endpoints`.
    fn switchover(
        &self,
        step: protocol::SwitchoverStep,
        peer_name: String,
        peer_endpoints: Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
}

struct Inner {
    ha: std::sync::OnceLock<Arc<dyn HaLink>>,
    /// Its one permit is held while a sync runs on this node: syncs never overlap (guide: Run
    /// Every advice). A semaphore rather than a mutex, so a page can ask whether a sync runs
    /// without taking the lock (and making a sync that starts then refuse as busy).
    sync_lock: tokio::sync::Semaphore,
    node_name: String,
    node_id: String,
    host_key: PrivateKey,
    local: NodeStore,
    replicated: Database,
    files: FileStore,
    data_dir: PathBuf,
    /// The highest position a continuous follower has asked to continue from, i.e. holds
    /// durably: what synchronous replication waits for.
    follower_acked: tokio::sync::watch::Sender<i64>,
    sync_metrics: metrics::SyncMetrics,
}

/// This node's replication side; cheap to clone.
#[derive(Clone)]
pub struct Replication {
    inner: Arc<Inner>,
}

impl Replication {
    pub fn new(node: &Node) -> Self {
        Self {
            inner: Arc::new(Inner {
                ha: std::sync::OnceLock::new(),
                sync_lock: tokio::sync::Semaphore::const_new(1),
                follower_acked: tokio::sync::watch::Sender::new(0),
                sync_metrics: metrics::SyncMetrics::default(),
                node_name: node.config.node.name.clone(),
                node_id: node.config.node.id.clone(),
                host_key: node.ssh_host_key.private_key().clone(),
                local: node.local.clone(),
                replicated: node.replicated.clone(),
                files: node.files.clone(),
                data_dir: node.data_dir.clone(),
            }),
        }
    }

    /// Connects the HA controller; done once, by the server, before it serves.
    pub fn attach_ha(&self, link: Arc<dyn HaLink>) {
        let _ = self.inner.ha.set(link);
    }

    /// The HA controller's view of this node, when one is attached (a running server).
    pub fn ha_link_view(&self) -> Option<PeerView> {
        self.inner.ha.get().map(|link| link.view())
    }

    /// The lock every sync takes; `None` if a sync already runs.
    pub fn try_sync_lock(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.inner.sync_lock.try_acquire().ok()
    }

    /// Whether a sync (manual or scheduled) runs on this node now.
    pub fn sync_running(&self) -> bool {
        self.inner.sync_lock.available_permits() == 0
    }

    /// The position a continuous follower holds durably (the highest it asked to continue from).
    pub fn follower_acked(&self) -> tokio::sync::watch::Receiver<i64> {
        self.inner.follower_acked.subscribe()
    }

    /// Forgets what followers confirmed: a node that becomes Active counts only confirmations
    /// made to it as Active, never ones left from before (a snapshot may have lowered its head).
    pub fn reset_follower_acked(&self) {
        self.inner.follower_acked.send_replace(0);
    }

    /// A follower asked for the entries after `seq`: it holds everything up to `seq` durably.
    pub(crate) fn follower_holds(&self, seq: i64) {
        self.inner.follower_acked.send_if_modified(|acked| {
            let raised = seq > *acked;
            if raised {
                *acked = seq;
            }
            raised
        });
    }

    /// Waits for the sync lock: a continuous follower applies each batch under it.
    #[allow(clippy::expect_used)] // the semaphore is never closed (below)
    pub async fn sync_lock(&self) -> tokio::sync::SemaphorePermit<'_> {
        // Acquiring fails only on a closed semaphore, and nothing ever closes this one.
        self.inner
            .sync_lock
            .acquire()
            .await
            .expect("the sync lock's semaphore is never closed")
    }

    /// Answers a peer's heartbeat: reports the peer to the HA controller and returns this
    /// node's view. A node without a controller (never the case while serving) answers from its
    /// stored history.
    pub async fn ha_view(&self, peer: &PeerView) -> Result<PeerView, ReplicationError> {
        if let Some(link) = self.inner.ha.get() {
            link.peer_seen(peer.clone());
            return Ok(link.view());
        }
        let hello = self.hello().await?;
        Ok(PeerView {
            node_name: hello.node_name,
            node_id: hello.node_id,
            ha_enabled: false,
            mode: tandem_ha::Mode::Primary,
            state: tandem_ha::State::Active,
            epoch: hello.epoch,
            wall_clock_ms: hello.wall_clock_ms,
            replication: None,
            on_standby_lost: None,
            synchronous_timeout: None,
            acknowledging_without_standby: None,
            known: Vec::new(),
            fail_over_controls: None,
        })
    }

    /// One heartbeat over an open session: sends this node's view, returns the peer's.
    pub async fn heartbeat(
        &self,
        session: &mut Session,
        ours: &PeerView,
    ) -> Result<PeerView, ReplicationError> {
        let answer = sync::request(
            &mut session.connection.stream,
            &session.endpoint,
            &Request::Heartbeat(ours.clone()),
        )
        .await?;
        match answer {
            Response::Heartbeat(peer) => Ok(peer),
            other => Err(ReplicationError::Protocol(format!(
                "{} answered a heartbeat with {other:?}",
                session.endpoint
            ))),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.inner.node_name
    }

    pub fn replicated(&self) -> &Database {
        &self.inner.replicated
    }

    /// Counts of the syncs this node ran, for `/metrics`.
    pub fn sync_metrics(&self) -> &metrics::SyncMetrics {
        &self.inner.sync_metrics
    }

    pub fn files(&self) -> &FileStore {
        &self.inner.files
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn host_key(&self) -> &PrivateKey {
        &self.inner.host_key
    }

    pub fn local(&self) -> &NodeStore {
        &self.inner.local
    }

    /// Runs a switchover step for a peer (see [`HaLink::switchover`]), then reports this node's
    /// position.
    pub async fn switchover_step(
        &self,
        step: protocol::SwitchoverStep,
        peer_name: &str,
        peer_endpoints: &[String],
    ) -> Result<Response, ReplicationError> {
        let link =
            self.inner.ha.get().ok_or_else(|| {
                ReplicationError::Refused("this node runs no HA controller".into())
            })?;
        link.switchover(step, peer_name.to_owned(), peer_endpoints.to_vec())
            .await
            .map_err(ReplicationError::Refused)?;
        let position = self
            .inner
            .replicated
            .read(tandem_store::changes::position)
            .await?;
        Ok(Response::Switchover {
            position_seq: position.seq,
            position_checksum: position.checksum,
            epoch: link.view().epoch,
        })
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
        let (stored_epoch, position) = self
            .inner
            .replicated
            .read(|conn| {
                Ok((
                    tandem_store::changes::latest_epoch(conn)?.max(1),
                    tandem_store::changes::position(conn)?,
                ))
            })
            .await?;
        // The HA epoch when a controller runs (it may be above the last change's epoch: a node
        // promoted that has not written yet).
        let epoch = match self.inner.ha.get() {
            Some(link) => link.view().epoch.max(stored_epoch),
            None => stored_epoch,
        };
        Ok(Hello {
            protocol_version: PROTOCOL_VERSION,
            software_version: protocol::software_version(),
            schema_version: tandem_store::schema::REPLICATED.version(),
            node_name: self.inner.node_name.clone(),
            node_id: self.inner.node_id.clone(),
            epoch,
            position_seq: position.seq,
            position_checksum: position.checksum,
            wall_clock_ms: wall_clock_ms(),
        })
    }

    /// Serves one replication session opened by a trusted peer.
    pub async fn serve_session<S>(
        &self,
        mut stream: S,
        peer: SocketAddr,
        trusted: Vec<TrustedHost>,
    ) -> Result<(), ReplicationError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Request::Hello(theirs) = read_frame::<_, Request>(&mut stream).await? else {
            return Err(ReplicationError::Protocol(
                "the peer did not start with a hello".into(),
            ));
        };
        let ours = self.hello().await?;
        let incompatible = ours.incompatibility(&theirs);
        if let Some(reason) = &incompatible {
            if ours.protocol_version != theirs.protocol_version {
                self.log(&format!(
                    "refused replication with {} ({peer}): {reason}",
                    theirs.node_name
                ))
                .await;
                write_frame(
                    &mut stream,
                    &Response::Refused {
                        reason: reason.clone(),
                    },
                )
                .await?;
                return Ok(());
            }
            tracing::info!(peer = %theirs.node_name, %reason, "heartbeats only with this peer");
        }
        write_frame(&mut stream, &Response::Hello(ours)).await?;
        tracing::debug!(peer = %theirs.node_name, %peer, "replication session opened");
        let context = source::PeerContext {
            incompatible,
            node_name: theirs.node_name.clone(),
            endpoints: trusted
                .iter()
                .map(|host| host.endpoint().to_string())
                .collect(),
        };
        source::serve_requests(self, &mut stream, &context).await
    }

    /// The trusted host entry for `endpoint`, or why there is none.
    pub async fn trusted_host(&self, endpoint: &Endpoint) -> Result<TrustedHost, ReplicationError> {
        let lookup = endpoint.clone();
        self.inner
            .local
            .database()
            .read(move |conn| trust::get(conn, &lookup))
            .await?
            .ok_or_else(|| ReplicationError::NotTrusted {
                endpoint: endpoint.clone(),
            })
    }

    /// Connects to a trusted host and exchanges hellos; the session is ready for requests.
    /// Refused (`Incompatible`) when the two nodes run different software or schema versions.
    pub async fn open_session(&self, endpoint: &Endpoint) -> Result<Session, ReplicationError> {
        let session = self.open_ha_session(endpoint).await?;
        match session.incompatible {
            Some(reason) => Err(ReplicationError::Incompatible(reason)),
            None => Ok(session),
        }
    }

    /// A session for heartbeats and peer checks only. It opens across software and schema
    /// versions (not across protocol versions), with the reason in `incompatible`: a peer that
    /// answers is alive whatever it runs. Were a version difference a failed heartbeat, a
    /// Secondary upgraded first would promote itself beside a healthy Primary, and a Primary
    /// restarted on a new release would not see that a peer had taken over.
    pub async fn open_ha_session(&self, endpoint: &Endpoint) -> Result<Session, ReplicationError> {
        let trusted = self.trusted_host(endpoint).await?;
        let mut connection = ssh::connect(self, endpoint, &trusted).await?;
        let ours = self.hello().await?;
        let sent_at = wall_clock_ms();
        let exchange = async {
            write_frame(&mut connection.stream, &Request::Hello(ours.clone())).await?;
            read_frame::<_, Response>(&mut connection.stream).await
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ReplicationError::Timeout {
                endpoint: endpoint.clone(),
            })??;
        let received_at = wall_clock_ms();
        let peer = match answer {
            Response::Hello(peer) => peer,
            Response::Refused { reason } => return Err(ReplicationError::Incompatible(reason)),
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "{endpoint} answered the hello with {other:?}"
                )));
            }
        };
        let incompatible = ours.incompatibility(&peer);
        if incompatible.is_some() && ours.protocol_version != peer.protocol_version {
            return Err(ReplicationError::Incompatible(
                incompatible.unwrap_or_default(),
            ));
        }
        let midpoint = sent_at + (received_at - sent_at) / 2;
        Ok(Session {
            endpoint: endpoint.clone(),
            incompatible,
            clock_offset_ms: peer.wall_clock_ms - midpoint,
            round_trip_ms: received_at - sent_at,
            local: ours,
            peer,
            connection,
        })
    }

    /// Test Connection (guide: Manage Trusted Hosts): authenticates both ways and exchanges
    /// versions with the trusted host at `endpoint`.
    pub async fn test_connection(
        &self,
        endpoint: &Endpoint,
    ) -> Result<TestReport, ReplicationError> {
        let session = self.open_session(endpoint).await?;
        self.log(&format!(
            "Test Connection to {endpoint} ({}) succeeded",
            session.peer.node_name
        ))
        .await;
        Ok(TestReport {
            endpoint: endpoint.to_string(),
            clock_offset_ms: session.clock_offset_ms,
            round_trip_ms: session.round_trip_ms,
            local: session.local,
            peer: session.peer,
        })
    }
}

/// An open replication session with a peer, after both hellos.
pub struct Session {
    pub endpoint: Endpoint,
    /// Why the two nodes must not replicate (different software or schema versions): the
    /// session then carries heartbeats only ([`Replication::open_ha_session`]).
    pub incompatible: Option<String>,
    pub local: Hello,
    pub peer: Hello,
    /// Peer clock minus local clock, including the hello's flight time.
    pub clock_offset_ms: i64,
    /// How long the hello took there and back.
    pub round_trip_ms: i64,
    pub connection: ssh::PeerConnection,
}
