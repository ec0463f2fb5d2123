//! The accept loop shared by both HTTPS listeners: a cap on open connections, a TLS handshake
//! deadline, the device gate, the client certificate handed to handlers, and a graceful drain.

use crate::state::{ConnectionInfo, DeviceGate};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Open connections per listener. A 100,000-device fleet checks in over short keep-alive
/// connections through a load balancer; beyond this, new connections are closed at once rather
/// than letting the node run out of file descriptors and memory.
pub const CONNECTIONS_MAX: usize = 8192;
/// A client that has not finished its TLS handshake by then is dropped (slowloris guard).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to receive a request's headers, and the idle limit between keep-alive requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, connections get this long to finish their requests before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

pub struct HttpsListener {
    pub name: &'static str,
    pub tcp: TcpListener,
    /// The TLS acceptor, read per connection so a reloaded identity applies to new ones.
    pub acceptor: fn(&crate::state::Identity) -> TlsAcceptor,
    pub identity: Arc<crate::state::Identity>,
    pub router: Router,
    /// `Some` on the service listener, whose device traffic the gate controls.
    pub device_gate: Option<Arc<DeviceGate>>,
}

impl HttpsListener {
    /// Serves until `shutdown` turns true, then drains open connections.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                accepted = self.tcp.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = self.name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(listener = self.name, %remote, "connection limit reached; closing");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let devices_allowed = self.device_gate.as_ref().is_none_or(|gate| gate.is_open());
            let acceptor = (self.acceptor)(&self.identity);
            let router = self.router.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%remote, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let info = ConnectionInfo {
                    remote,
                    client_certificate_sha256: tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| tandem_crypto::sha256_fingerprint(leaf)),
                    devices_allowed,
                };
                let service =
                    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        request.extensions_mut().insert(info.clone());
                        router.clone().oneshot(request)
                    });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(self.tcp);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = self.name,
                "connections still open after the drain timeout; closing them"
            );
        }
    }
}
