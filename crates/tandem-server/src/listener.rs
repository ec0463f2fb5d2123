//! The accept loop shared by both HTTPS listeners: the client networks allowed, a cap on open
//! connections in all and per source address, a TLS handshake deadline, the device gate, the
//! client certificate handed to handlers, deadlines on headers, bodies and idle connections,
//! security headers on every answer, and a graceful drain.

use crate::state::{ConnectionInfo, DeviceGate};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, header};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tandem_node::{ListenerLimits, Network};
use tandem_repl::limit::{LogThrottle, PerAddress};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Open connections per listener. A 100,000-device fleet checks in over short keep-alive
/// connections through a load balancer; beyond this, new connections are closed at once rather
/// than letting the node run out of file descriptors and memory.
pub const CONNECTIONS_MAX: usize = 8192;
/// A client that has not finished its TLS handshake by then is dropped (slowloris guard).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, connections get this long to finish their requests before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2: a PING after this long without a frame from the client. Together with
/// [`H2_KEEP_ALIVE_TIMEOUT`] it finds a client that is gone without closing (a dead NAT entry,
/// a pulled cable), which the idle timeout alone would find only with no request in progress.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// HTTP/2: a client that does not answer the PING within this is gone; its connection is
/// closed. A round trip takes well under a second even on a mobile network.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection told to close because it was idle (HTTP/2: GOAWAY) is dropped if it still
/// holds no request this much later, whatever the client does: closing politely must not let a
/// client keep its place.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one log line per this interval for connections refused by the allow-list or a
/// connection limit, so a scan cannot flood the log (the next line counts those left out).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Headers on every answer of both listeners. HSTS: browsers use HTTPS only for the host
/// (browsers ignore it over a certificate they had to be told to accept, so a self-signed
/// node is not locked out). The rest: no page of a node is framed (clickjacking), sniffed
/// into another type, or kept in a cache (answers carry node state and configuration).
/// `frame-ancestors` is the only CSP directive, so the portal's inline scripts and styles run.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    ),
    (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

pub struct HttpsListener {
    pub name: &'static str,
    pub tcp: TcpListener,
    /// The TLS acceptor, read per connection so a reloaded identity applies to new ones.
    pub acceptor: fn(&crate::state::Identity) -> TlsAcceptor,
    pub identity: Arc<crate::state::Identity>,
    pub router: Router,
    /// `Some` on the service listener, whose device traffic the gate controls.
    pub device_gate: Option<Arc<DeviceGate>>,
    pub limits: Arc<ListenerLimits>,
    /// Client networks allowed to connect (`None`: all); others are closed before TLS.
    pub allowed_networks: Option<Vec<Network>>,
    /// Where this listener's requests are counted, under which `listener` label.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    pub metrics_listener: crate::metrics::Listener,
}

impl HttpsListener {
    /// Serves until `shutdown` turns true, then drains open connections.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let per_address = PerAddress::new(self.limits.connections_per_address_max);
        let refusals = LogThrottle::new(REFUSAL_LOG_INTERVAL);
        let refuse = |remote: SocketAddr, why: &str| {
            if let Some(left_out) = refusals.admit(std::time::Instant::now()) {
                tracing::warn!(listener = self.name, %remote, left_out, "{why}; closing");
            }
        };
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
            let ip = remote.ip();
            if let Some(networks) = &self.allowed_networks
                && !networks.iter().any(|network| network.contains(ip))
            {
                refuse(
                    remote,
                    "connection from outside the allowed client networks",
                );
                continue;
            }
            let exempt = self
                .limits
                .connections_per_address_exempt
                .iter()
                .any(|network| network.contains(ip));
            let slot = if exempt {
                None
            } else {
                match per_address.try_acquire(ip) {
                    Some(slot) => Some(slot),
                    None => {
                        refuse(remote, "connection limit per address reached");
                        continue;
                    }
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                refuse(remote, "connection limit reached");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = Connection {
                remote,
                devices_allowed: self.device_gate.as_ref().is_none_or(|gate| gate.is_open()),
                through_proxy: exempt,
                acceptor: (self.acceptor)(&self.identity),
                router: self.router.clone(),
                limits: self.limits.clone(),
                metrics: (self.metrics.clone(), self.metrics_listener),
            };
            let stop = shutdown.clone();
            tokio::spawn(async move {
                connection.serve(stream, stop).await;
                drop(slot);
                drop(permit);
            });
        }
        drop(self.tcp);
        // Every connection holds a permit until it ends: all of them back means all drained.
        let all = u32::try_from(CONNECTIONS_MAX).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all))
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

/// One accepted connection, before its TLS handshake.
struct Connection {
    remote: SocketAddr,
    devices_allowed: bool,
    /// From a network in `connections_per_address_exempt` (a load balancer).
    through_proxy: bool,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Arc<ListenerLimits>,
    metrics: (Arc<crate::metrics::NodeMetrics>, crate::metrics::Listener),
}

impl Connection {
    async fn serve(self, stream: tokio::net::TcpStream, mut stop: watch::Receiver<bool>) {
        let remote = self.remote;
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.acceptor.accept(stream));
        let tls = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            handshake = handshake => match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            },
        };
        let session = tls.get_ref().1;
        // HTTP/2 over TLS is chosen by ALPN only (RFC 9113 §3.2); a client that offers none
        // speaks HTTP/1.1. Serving each protocol with its own builder, rather than sniffing the
        // first bytes, puts even the first request under the header-read timeout.
        let http2 = session.alpn_protocol() == Some(b"h2".as_slice());
        let info = ConnectionInfo {
            remote,
            client_certificate_sha256: session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| tandem_crypto::sha256_fingerprint(leaf)),
            devices_allowed: self.devices_allowed,
            through_proxy: self.through_proxy,
        };
        let activity = Arc::new(Activity::new());
        let service = RequestService {
            router: self.router,
            info,
            activity: activity.clone(),
            body_read_timeout: self.limits.body_read_timeout,
            metrics: self.metrics,
        };
        let service = hyper::service::service_fn(move |request| service.clone().call(request));
        let io = TokioIo::new(tls);
        let idle_timeout = self.limits.idle_timeout;
        if http2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
            let connection = builder.serve_connection(io, service);
            drive(connection, &activity, idle_timeout, stop, remote).await;
        } else {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(self.limits.header_read_timeout);
            let connection = builder.serve_connection(io, service);
            drive(connection, &activity, idle_timeout, stop, remote).await;
        }
    }
}

/// Runs a connection to its end: closed gracefully at shutdown or once no request has been in
/// progress for `idle_timeout` (and dropped if it still holds none [`IDLE_CLOSE_GRACE`] later).
async fn drive<C>(
    connection: C,
    activity: &Activity,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    remote: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let (mut stopping, mut idle_closing) = (false, false);
    // Once told to close for idleness: when to look whether it still holds no request.
    let mut grace_ends = Instant::now();
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(idle_timeout), if !idle_closing && !stopping => {
                tracing::debug!(%remote, "closing a connection idle for {} s", idle_timeout.as_secs());
                idle_closing = true;
                grace_ends = Instant::now() + IDLE_CLOSE_GRACE;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(grace_ends), if idle_closing => {
                if !activity.busy() {
                    return;
                }
                // A request that raced the GOAWAY is served to its end.
                grace_ends = Instant::now() + IDLE_CLOSE_GRACE;
            }
        }
    }
}

/// Requests in progress on one connection (a request counts until its answer's body is sent),
/// and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Returns once no request has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let since = *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let busy = self.busy();
            if !busy && since.elapsed() >= limit {
                return;
            }
            // Busy: look again a whole limit later (a request ending meanwhile restarts the
            // count from its end, so this never closes early).
            let wake = if busy { Instant::now() } else { since } + limit;
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in progress; dropped when its answer has been sent (or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut since = self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *since = Instant::now();
        }
    }
}

/// What every request of a connection passes through on its way to the router.
#[derive(Clone)]
struct RequestService {
    router: Router,
    info: ConnectionInfo,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
    metrics: (Arc<crate::metrics::NodeMetrics>, crate::metrics::Listener),
}

impl RequestService {
    async fn call(
        self,
        request: hyper::Request<Incoming>,
    ) -> Result<axum::response::Response, Infallible> {
        let in_flight = self.activity.start();
        let started = std::time::Instant::now();
        let route = crate::metrics::RouteClass::of(request.uri().path());
        let mut request =
            request.map(|body| Body::new(DeadlineBody::new(body, self.body_read_timeout)));
        request.extensions_mut().insert(self.info);
        let response = self.router.oneshot(request).await?;
        let (metrics, listener) = &self.metrics;
        metrics.request(
            *listener,
            route,
            response.status().as_u16(),
            started.elapsed(),
        );
        let mut response = response.map(|body| {
            Body::new(TrackedBody {
                inner: body,
                _in_flight: in_flight,
            })
        });
        let headers = response.headers_mut();
        for (name, value) in SECURITY_HEADERS {
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        Ok(response)
    }
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive in time (at least {} bytes per second after {} s)",
    tandem_node::config::BODY_READ_RATE_MIN_BYTES_PER_S,
    .0.as_secs()
)]
pub(crate) struct BodyTooSlow(Duration);

/// A request body that must be whole by a deadline: `body_read_timeout` from the request's
/// start, extended by every byte received at [`tandem_node::config::BODY_READ_RATE_MIN_BYTES_PER_S`].
/// Past it, reading the body fails, the handler answers with an error, and the connection,
/// whose body was not read to its end, is closed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    let allowance = Duration::from_secs_f64(
                        bytes as f64 / tandem_node::config::BODY_READ_RATE_MIN_BYTES_PER_S as f64,
                    );
                    let extended = this.deadline.deadline() + allowance;
                    this.deadline.as_mut().reset(extended);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|result| result.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow(this.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// An answer's body that keeps its request counted as in progress until it is sent.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection counts as idle only once no request has been in progress for the whole
    /// limit: a request in progress, however long, keeps it, and the count starts again when
    /// the last answer is sent. (Lower bounds only: a slow machine cannot fail it.)
    #[tokio::test]
    async fn a_connection_is_idle_only_a_whole_limit_after_its_last_request() {
        let limit = Duration::from_millis(100);
        let activity = Arc::new(Activity::new());
        let request = activity.start();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(limit).await }
        });
        tokio::time::sleep(limit * 4).await;
        assert!(!idle.is_finished(), "idle while a request was in progress");
        let answered = Instant::now();
        drop(request);
        tokio::time::timeout(Duration::from_secs(30), idle)
            .await
            .expect("idle once the request ended")
            .unwrap();
        assert!(
            answered.elapsed() >= limit,
            "idle before a whole limit passed"
        );
    }
}
