//! One keep-alive HTTP/1.1 connection over TLS (hyper's client connection API directly, no
//! pool), and the failures the load generator counts by kind.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// TCP connect plus TLS handshake plus HTTP setup. Generous next to a healthy handshake (about a
/// millisecond) so that only a stuck server counts as a timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request until its whole answer is read. Above the server's own limits (10 s TLS, 30 s
/// header read), so a request that times out here marks a server that stopped answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer body read; a check-in answer is a few hundred bytes, an enrollment a few KiB.
pub const RESPONSE_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Why an operation failed; `kind` groups failures for the error table.
#[derive(Debug)]
pub enum Failure {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Http(hyper::Error),
    ConnectTimeout,
    RequestTimeout,
    Status(StatusCode, Bytes),
    Body(String),
}

impl Failure {
    /// A short, bounded label: the error table never grows with distinct messages.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(error) => format!("connect: {:?}", error.kind()),
            Failure::Tls(error) => format!("tls: {:?}", error.kind()),
            Failure::Http(error) => {
                let what = if error.is_canceled() {
                    "canceled"
                } else if error.is_closed() {
                    "closed"
                } else if error.is_incomplete_message() {
                    "incomplete message"
                } else if error.is_parse() {
                    "parse"
                } else if error.is_timeout() {
                    "timeout"
                } else {
                    "other"
                };
                format!("http: {what}")
            }
            Failure::ConnectTimeout => "timeout: connect".into(),
            Failure::RequestTimeout => "timeout: request".into(),
            Failure::Status(status, _) => format!("status {}", status.as_u16()),
            Failure::Body(_) => "unexpected body".into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(error) => write!(f, "TCP connect failed: {error}"),
            Failure::Tls(error) => write!(f, "TLS handshake failed: {error}"),
            Failure::Http(error) => write!(f, "HTTP failed: {error}"),
            Failure::ConnectTimeout => write!(f, "connect timed out after {CONNECT_TIMEOUT:?}"),
            Failure::RequestTimeout => write!(f, "request timed out after {REQUEST_TIMEOUT:?}"),
            Failure::Status(status, body) => {
                let shown = &body[..body.len().min(300)];
                write!(f, "HTTP {status}: {}", String::from_utf8_lossy(shown))
            }
            Failure::Body(message) => write!(f, "unexpected answer: {message}"),
        }
    }
}

/// The address and TLS identity of the server every connection goes to.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Sent as SNI and `Host`; the pinned certificate is accepted whatever names it carries.
    pub server_name: ServerName<'static>,
    pub host_header: HeaderValue,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Self {
        let server_name = ServerName::IpAddress(addr.ip().into());
        // A socket address is digits, dots, colons and brackets: always a valid header value.
        #[allow(clippy::expect_used)]
        let host_header =
            HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header");
        Self {
            addr,
            server_name,
            host_header,
        }
    }
}

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    /// Opens TCP, completes the TLS handshake with `config` and sets up HTTP/1.1.
    pub async fn open(target: &Target, config: Arc<ClientConfig>) -> Result<Self, Failure> {
        let opening = async {
            let tcp = TcpStream::connect(target.addr)
                .await
                .map_err(Failure::Connect)?;
            let _ = tcp.set_nodelay(true);
            let tls = TlsConnector::from(config)
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(Failure::Tls)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(Failure::Http)?;
            // Drives the connection; it ends when the sender is dropped or the server closes.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Self {
                sender,
                host: target.host_header.clone(),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, opening)
            .await
            .map_err(|_| Failure::ConnectTimeout)?
    }

    /// Sends one request and reads the whole answer; a non-2xx status is a [`Failure::Status`].
    /// `close` asks the server to close the connection after answering.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        authorization: Option<&HeaderValue>,
        close: bool,
    ) -> Result<Bytes, Failure> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if close {
            request = request.header(CONNECTION, HeaderValue::from_static("close"));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| Failure::Body(format!("cannot build the request: {error}")))?;
        let exchange = async {
            self.sender.ready().await.map_err(Failure::Http)?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(Failure::Http)?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BODY_BYTES_MAX)
                .collect()
                .await
                .map_err(|error| match error.downcast::<hyper::Error>() {
                    Ok(error) => Failure::Http(*error),
                    Err(error) => Failure::Body(error.to_string()),
                })?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(Failure::Status(status, body))
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| Failure::RequestTimeout)?
    }

    /// Whether the connection can carry another request (the server may have closed it).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}
