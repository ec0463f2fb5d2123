//! The replication channel over SSH (russh): a server that accepts only public-key
//! authentication from Trusted Hosts and offers only the replication subsystem, and a client that
//! refuses a peer whose host key is not the one trusted for it.

use crate::limit::{AddressSlot, LogThrottle, PerAddress};
use crate::protocol::SUBSYSTEM;
use crate::{Replication, ReplicationError};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_crypto::TrustedKey;
use tandem_store::trust::{self, Endpoint, TrustedHost};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};

/// Replication connections served at once. A node has one or two peers; the margin covers an
/// operator's Test Connection and a stuck peer reconnecting.
pub const SSH_CONNECTIONS_MAX: usize = 16;
/// A connection that has not authenticated by then is closed. A peer on the same network
/// connects, exchanges keys and authenticates in well under a second, and the connecting side
/// gives up after [`CONNECT_TIMEOUT`] (10 s) itself, so a connection still unauthenticated
/// after that is no working peer: without this deadline, idle connections held every place of
/// [`SSH_CONNECTIONS_MAX`] for [`SSH_IDLE_TIMEOUT`] (120 s) and kept the real peers out.
pub const PREAUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Unauthenticated connections one source address may hold at once; beyond it a new one is
/// closed at once. A peer opens at most a few connections at a time (the heartbeat session, a
/// sync, the continuous-replication stream, an operator's Test Connection), each
/// unauthenticated only for its handshake, so 4 never refuses a peer, while idle connections
/// from one address can never take more than 4 of the [`SSH_CONNECTIONS_MAX`] places.
pub const UNAUTHENTICATED_PER_ADDRESS_MAX: usize = 4;
/// Unauthenticated connections in all: half of [`SSH_CONNECTIONS_MAX`], so connections from a
/// few addresses that never authenticate can never take the places of authenticated peers (the
/// kept heartbeat session above all, whose loss would look like a dead peer).
pub const UNAUTHENTICATED_MAX: usize = SSH_CONNECTIONS_MAX / 2;
/// At most one log line per this interval for connections refused at a limit, so a scan
/// cannot flood the log (the next line counts those left out).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Sessions (channels) one connection may open.
const SESSIONS_PER_CONNECTION_MAX: usize = 4;
/// A connection with no traffic for this long is closed (heartbeats run far more often).
pub const SSH_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time to reach a peer and finish the SSH handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay before answering a refused authentication, to slow down key guessing.
const AUTH_REJECTION_DELAY: Duration = Duration::from_millis(500);
/// The SSH user name; peers are identified by their keys, not by a user.
const SSH_USER: &str = "tandem";

fn server_config(replication: &Replication) -> Arc<russh::server::Config> {
    let config = russh::server::Config {
        keys: vec![replication.host_key().clone()],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: AUTH_REJECTION_DELAY,
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(SSH_IDLE_TIMEOUT),
        max_auth_attempts: 3,
        nodelay: true,
        ..Default::default()
    };
    Arc::new(config)
}

/// Serves the replication listener until `shutdown` turns true.
pub async fn serve(
    replication: Replication,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = server_config(&replication);
    let permits = Arc::new(Semaphore::new(SSH_CONNECTIONS_MAX));
    let unauthenticated = PerAddress::new(UNAUTHENTICATED_PER_ADDRESS_MAX);
    let unauthenticated_total = Arc::new(Semaphore::new(UNAUTHENTICATED_MAX));
    let refusals = LogThrottle::new(REFUSAL_LOG_INTERVAL);
    let key_refusals = Arc::new(LogThrottle::new(REFUSAL_LOG_INTERVAL));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "replication listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = unauthenticated.try_acquire(peer_addr.ip()) else {
            if let Some(left_out) = refusals.admit(std::time::Instant::now()) {
                tracing::warn!(
                    %peer_addr,
                    left_out,
                    "replication listener: {UNAUTHENTICATED_PER_ADDRESS_MAX} unauthenticated \
                     connections from this address already; closing"
                );
            }
            continue;
        };
        let Ok(preauth) = unauthenticated_total.clone().try_acquire_owned() else {
            if let Some(left_out) = refusals.admit(std::time::Instant::now()) {
                tracing::warn!(
                    %peer_addr,
                    left_out,
                    "replication listener: {UNAUTHENTICATED_MAX} connections are authenticating \
                     already; closing"
                );
            }
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(left_out) = refusals.admit(std::time::Instant::now()) {
                tracing::warn!(
                    %peer_addr,
                    left_out,
                    "replication listener: connection limit reached; closing"
                );
            }
            continue;
        };
        let (authenticated, on_authenticated) = oneshot::channel();
        let handler = PeerHandler {
            replication: replication.clone(),
            peer_addr,
            peer: None,
            sessions: HashMap::new(),
            authenticated: Some(authenticated),
            key_refusals: key_refusals.clone(),
        };
        let config = config.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(
                config,
                socket,
                handler,
                (slot, preauth),
                on_authenticated,
                stop,
            )
            .await;
            drop(permit);
        });
    }
}

/// Runs one replication connection: closed at [`PREAUTH_TIMEOUT`] unless it authenticated by
/// then (its `slot` among the unauthenticated connections, of its address and in all, is given
/// back then), and at shutdown.
async fn serve_connection(
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    handler: PeerHandler,
    slot: (AddressSlot, tokio::sync::OwnedSemaphorePermit),
    on_authenticated: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let peer_addr = handler.peer_addr;
    let connection = async move {
        match russh::server::run_stream(config, socket, handler).await {
            Ok(session) => {
                if let Err(error) = session.await {
                    tracing::debug!(%peer_addr, %error, "replication connection ended");
                }
            }
            Err(error) => tracing::debug!(%peer_addr, %error, "SSH handshake failed"),
        }
    };
    tokio::pin!(connection);
    tokio::select! {
        () = &mut connection => return,
        _ = stop.wait_for(|stop| *stop) => return,
        () = tokio::time::sleep(PREAUTH_TIMEOUT) => {
            // Debug only: a scan from many addresses would otherwise write a line per
            // connection; the refusals at the limits are the throttled warnings.
            tracing::debug!(
                %peer_addr,
                "closed a replication connection that did not authenticate within {} s",
                PREAUTH_TIMEOUT.as_secs()
            );
            return;
        }
        authenticated = on_authenticated => {
            // The handler is gone without authenticating: the connection is ending.
            if authenticated.is_err() {
                return;
            }
        }
    }
    drop(slot);
    tokio::select! {
        () = &mut connection => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}

struct PeerHandler {
    replication: Replication,
    peer_addr: SocketAddr,
    /// The trusted hosts the authenticated key belongs to, once authenticated.
    peer: Option<Vec<TrustedHost>>,
    sessions: HashMap<ChannelId, Channel<Msg>>,
    /// Told once the peer has authenticated, which lifts the pre-authentication deadline.
    authenticated: Option<oneshot::Sender<()>>,
    /// Shared by the listener's connections: refused keys are logged at most once per
    /// [`REFUSAL_LOG_INTERVAL`], so a flood of keys cannot flood the log.
    key_refusals: Arc<LogThrottle>,
}

impl PeerHandler {
    async fn trusted(&self, key: &PublicKey) -> Result<Vec<TrustedHost>, ReplicationError> {
        let key = TrustedKey::from_public(key);
        let hosts = self
            .replication
            .local()
            .database()
            .read(move |conn| trust::by_key(conn, &key.openssh))
            .await?;
        Ok(hosts)
    }
}

impl PeerHandler {
    /// Tells the operator which key was refused, from where: a peer whose key was never added
    /// to this node's Trusted Hosts shows up here with the fingerprint to compare.
    async fn refused(&self, key: &PublicKey) {
        let Some(left_out) = self.key_refusals.admit(std::time::Instant::now()) else {
            return;
        };
        let fingerprint = TrustedKey::from_public(key).fingerprint;
        tracing::warn!(
            peer = %self.peer_addr,
            %fingerprint,
            left_out,
            "refused a replication connection: its key is not in Trusted Hosts; if that node is \
             a peer, add it with `tandem ha trusted-hosts add HOST:PORT --key KEY`"
        );
        self.replication
            .log(&format!(
                "refused a replication connection from {} with untrusted key {fingerprint}",
                self.peer_addr
            ))
            .await;
    }
}

impl russh::server::Handler for PeerHandler {
    type Error = ReplicationError;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.trusted(offer.public_key).await?.is_empty() {
            // Clients offer a key before signing with it (russh's and OpenSSH's do): this is
            // where a peer missing from Trusted Hosts is refused, so this is where it is told.
            self.refused(offer.public_key).await;
            return Ok(Auth::reject());
        }
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        verified: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let hosts = self.trusted(verified.public_key).await?;
        if hosts.is_empty() {
            self.refused(verified.public_key).await;
            return Ok(Auth::reject());
        }
        self.peer = Some(hosts);
        if let Some(authenticated) = self.authenticated.take() {
            // The receiver is gone only when the connection is being closed anyway.
            let _ = authenticated.send(());
        }
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.peer.is_none() || self.sessions.len() >= SESSIONS_PER_CONNECTION_MAX {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.sessions.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(open) = (name == SUBSYSTEM)
            .then(|| self.sessions.remove(&channel))
            .flatten()
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let replication = self.replication.clone();
        let peer = self.peer_addr;
        let trusted = self.peer.clone().unwrap_or_default();
        tokio::spawn(async move {
            if let Err(error) = replication
                .serve_session(open.into_stream(), peer, trusted)
                .await
            {
                tracing::info!(%peer, %error, "replication session ended with an error");
            }
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}

pub struct PeerKeyCheck {
    expected: String,
    presented: Arc<Mutex<Option<TrustedKey>>>,
}

impl russh::client::Handler for PeerKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let presented = TrustedKey::from_public(key);
        let matches = presented.openssh == self.expected;
        *self
            .presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(presented);
        Ok(matches)
    }
}

/// Opens the replication subsystem on a trusted peer: checks its host key, authenticates with
/// this node's key, and returns the channel as a byte stream.
pub async fn connect(
    replication: &Replication,
    endpoint: &Endpoint,
    trusted: &TrustedHost,
) -> Result<PeerConnection, ReplicationError> {
    let presented = Arc::new(Mutex::new(None));
    let check = PeerKeyCheck {
        expected: trusted.public_key.clone(),
        presented: presented.clone(),
    };
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: Some(SSH_IDLE_TIMEOUT),
        nodelay: true,
        ..Default::default()
    });
    let address = (endpoint.host().to_owned(), endpoint.port());
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        russh::client::connect(config, address, check),
    )
    .await;
    let mut handle = match connected {
        Err(_) => {
            return Err(ReplicationError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            });
        }
        Ok(Ok(handle)) => handle,
        Ok(Err(error)) => {
            let presented = presented
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            return Err(match presented {
                Some(key) if key.openssh != trusted.public_key => {
                    ReplicationError::HostKeyMismatch {
                        endpoint: endpoint.clone(),
                        presented: key.fingerprint,
                        trusted: trusted.fingerprint.clone(),
                    }
                }
                _ => ReplicationError::Unreachable {
                    endpoint: endpoint.clone(),
                    reason: error.to_string(),
                },
            });
        }
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(replication.host_key().clone()), None);
    let authenticated = handle
        .authenticate_publickey(SSH_USER, key)
        .await
        .map_err(|error| ReplicationError::Protocol(format!("authentication failed: {error}")))?;
    if !authenticated.success() {
        return Err(ReplicationError::KeyRefused {
            endpoint: endpoint.clone(),
            local_key: replication.public_key_line(),
        });
    }
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|error| ReplicationError::Protocol(format!("cannot open a session: {error}")))?;
    let mut channel = channel;
    channel
        .request_subsystem(true, SUBSYSTEM)
        .await
        .map_err(|error| ReplicationError::Protocol(format!("subsystem refused: {error}")))?;
    let reply = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match channel.wait().await {
                Some(russh::ChannelMsg::Success) => return Ok(()),
                Some(russh::ChannelMsg::Failure) | None => {
                    return Err(ReplicationError::Protocol(format!(
                        "{endpoint} does not offer Tandem replication (subsystem {SUBSYSTEM})"
                    )));
                }
                Some(_) => continue,
            }
        }
    })
    .await;
    match reply {
        Ok(result) => result?,
        Err(_) => {
            return Err(ReplicationError::Protocol(format!(
                "{endpoint} did not answer the replication subsystem request"
            )));
        }
    }
    Ok(PeerConnection {
        stream: channel.into_stream(),
        _handle: handle,
    })
}

/// An open replication channel to a peer. Dropping it closes the SSH connection.
pub struct PeerConnection {
    pub stream: russh::ChannelStream<russh::client::Msg>,
    _handle: russh::client::Handle<PeerKeyCheck>,
}
