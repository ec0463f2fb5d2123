//! Asking the witnesses before an automatic promotion: every witness at once, within one
//! [`WITNESS_TIMEOUT`], over HTTP/1.1 on hyper (plain or through tokio-rustls on ring, the one
//! TLS stack), with the certificate choice of the HA configuration for `https://` witnesses.
//!
//! A witness answers HTTP 200 with JSON `{"reachable": true|false}`. Any witness that still
//! reaches the Primary holds the promotion (only the link between the nodes failed); no answer,
//! a refusal, or a malformed answer holds nothing, and each is logged for what it was.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tandem_ha::config::{ConfigChange, ConfigError, FieldError, HaConfig};
use tandem_ha::witness::{WitnessScheme, WitnessTls, WitnessUrl};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

/// Time every witness together gets to answer; one that has not answered by then counts as
/// unreachable. Short: the promotion waits for it, and a witness on the operator's network
/// answers in milliseconds.
pub const WITNESS_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of a witness's answer body read at most: the answer is a dozen bytes of JSON, and a
/// server that sends more is not a witness.
const WITNESS_ANSWER_BYTES_MAX: usize = 16 * 1024;
/// Bytes of a witness CA file read at most: a bundle of a few hundred CA certificates fits.
const WITNESS_CA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// What one witness said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It still reaches the Primary: the promotion is held.
    Reaches,
    CannotReach,
    /// It answered, but not `200 {"reachable": bool}`.
    Malformed(String),
    /// No answer: connection, TLS or transport failure.
    Failed(String),
}

/// Asks every witness of `config` at once whether it still reaches `primary`; the first that
/// does (its URL), or `None` when none does within [`WITNESS_TIMEOUT`]. Logs every answer.
pub async fn ask_witnesses(config: &HaConfig, primary: &str) -> Option<String> {
    let tls = match config.witness_tls() {
        Some(choice) => match client_config(&choice).await {
            Ok(tls) => Some(tls),
            Err(error) => {
                tracing::warn!(%error, "cannot set up TLS for the https:// witnesses");
                None
            }
        },
        None => None,
    };
    let deadline = tokio::time::Instant::now() + WITNESS_TIMEOUT;
    let mut asks = JoinSet::new();
    for (index, url) in config.witnesses.iter().enumerate() {
        let (url, tls) = (url.clone(), tls.clone());
        asks.spawn(async move { (index, ask_witness(&url, tls).await) });
    }
    let mut answered = vec![false; config.witnesses.len()];
    loop {
        let (index, answer) = match tokio::time::timeout_at(deadline, asks.join_next()).await {
            Ok(Some(Ok(answered))) => answered,
            Ok(Some(Err(error))) => {
                tracing::error!(%error, "a witness question stopped");
                continue;
            }
            Ok(None) => return None,
            Err(_) => break,
        };
        answered[index] = true;
        let witness = &config.witnesses[index];
        match answer {
            // The rest are not needed: dropping the set stops them.
            Answer::Reaches => return Some(witness.to_string()),
            Answer::CannotReach => {
                tracing::info!(%witness, %primary, "witness cannot reach the Primary")
            }
            Answer::Malformed(what) => {
                tracing::warn!(%witness, %what, "witness answered something malformed")
            }
            Answer::Failed(error) => tracing::warn!(%witness, %error, "witness did not answer"),
        }
    }
    for (witness, _) in config
        .witnesses
        .iter()
        .zip(answered)
        .filter(|(_, done)| !done)
    {
        tracing::warn!(%witness, timeout_ms = WITNESS_TIMEOUT.as_millis() as u64,
            "witness did not answer in time");
    }
    None
}

/// How a record request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Every witness recorded it.
    Granted,
    /// A witness refused, failed or did not answer: why.
    Refused(String),
    /// No witness keeps records (every one answered the request with 404 or 405: an HTTP
    /// witness of another kind). Both sides then go by timing alone, as before records.
    Unsupported,
}

/// Asks every witness of `config` at once to record `request`, within [`WITNESS_TIMEOUT`]:
/// granted only when every one of them recorded it (a witness that is down could otherwise let
/// the other side record the opposite there).
pub async fn record_at_witnesses(
    config: &HaConfig,
    request: &tandem_ha::record::RecordRequest,
) -> Recorded {
    if config.witnesses.is_empty() {
        return Recorded::Unsupported;
    }
    let tls = match config.witness_tls() {
        Some(choice) => match client_config(&choice).await {
            Ok(tls) => Some(tls),
            Err(error) => return Recorded::Refused(error),
        },
        None => None,
    };
    let body = match serde_json::to_vec(request) {
        Ok(body) => body,
        Err(error) => return Recorded::Refused(error.to_string()),
    };
    let mut asks = JoinSet::new();
    for url in config.witnesses.clone() {
        let (tls, body) = (tls.clone(), body.clone());
        asks.spawn(async move {
            let answer = call(&url, tls, hyper::Method::POST, Some(body)).await;
            (url, answer)
        });
    }
    let deadline = tokio::time::Instant::now() + WITNESS_TIMEOUT;
    let mut refusals = Vec::new();
    let mut unsupported = 0;
    for _ in 0..config.witnesses.len() {
        let (url, answer) = match tokio::time::timeout_at(deadline, asks.join_next()).await {
            Ok(Some(Ok(answered))) => answered,
            Ok(Some(Err(error))) => {
                return Recorded::Refused(format!("a witness question stopped: {error}"));
            }
            Ok(None) => break,
            Err(_) => {
                refusals.push(format!(
                    "not every witness answered within {} ms",
                    WITNESS_TIMEOUT.as_millis()
                ));
                break;
            }
        };
        match answer.map(|(status, body)| {
            (
                status,
                serde_json::from_slice::<tandem_ha::record::RecordAnswer>(&body),
            )
        }) {
            Ok((StatusCode::OK, Ok(answer))) if answer.granted => {}
            Ok((StatusCode::OK, Ok(answer))) => refusals.push(format!("{url}: {}", answer.reason)),
            Ok((StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED, _)) => unsupported += 1,
            Ok((status, _)) => refusals.push(format!("{url}: HTTP {status}")),
            Err(Answer::Failed(reason) | Answer::Malformed(reason)) => {
                refusals.push(format!("{url}: {reason}"))
            }
            Err(other) => refusals.push(format!("{url}: {other:?}")),
        }
    }
    match (refusals.is_empty(), unsupported) {
        (true, 0) => Recorded::Granted,
        (true, count) if count == config.witnesses.len() => Recorded::Unsupported,
        (true, _) => Recorded::Refused(
            "some witnesses keep no records, so the others' record cannot be relied on".into(),
        ),
        (false, _) => Recorded::Refused(refusals.join("; ")),
    }
}

/// One witness question (no timeout of its own: [`ask_witnesses`] bounds them all).
pub async fn ask_witness(url: &WitnessUrl, tls: Option<Arc<ClientConfig>>) -> Answer {
    match call(url, tls, hyper::Method::GET, None).await {
        Ok((status, body)) => judge(status, &body),
        Err(failure) => failure,
    }
}

/// One HTTP/1.1 request to the witness's URL (plain or TLS), its answer's status and body.
async fn call(
    url: &WitnessUrl,
    tls: Option<Arc<ClientConfig>>,
    method: hyper::Method,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), Answer> {
    let address = url.address();
    let tcp = tokio::net::TcpStream::connect((address.host(), address.port()))
        .await
        .map_err(|error| Answer::Failed(format!("connect to {address}: {error}")))?;
    let _ = tcp.set_nodelay(true);
    match url.scheme() {
        WitnessScheme::Http => exchange(tcp, url, method, body).await,
        WitnessScheme::Https => {
            let tls = tls.ok_or_else(|| {
                Answer::Failed("no certificate check is configured for https:// witnesses".into())
            })?;
            let name = ServerName::try_from(address.host().to_owned())
                .map_err(|error| Answer::Failed(format!("TLS name {address}: {error}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|error| Answer::Failed(format!("TLS: {error}")))?;
            exchange(stream, url, method, body).await
        }
    }
}

/// Sends `method` (with a JSON `body`, if any) to the witness's target over `io`.
async fn exchange<S>(
    io: S,
    url: &WitnessUrl,
    method: hyper::Method,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), Answer>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|error| Answer::Failed(format!("HTTP: {error}")))?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url.target())
        .header(hyper::header::HOST, url.authority())
        .header(hyper::header::USER_AGENT, "tandem")
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::CONNECTION, "close");
    if body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|error| Answer::Failed(format!("request: {error}")))?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| Answer::Failed(format!("HTTP: {error}")))?;
        let status = response.status();
        // Chunked or with a length, hyper decodes it; the limit bounds what is kept.
        let body = Limited::new(response.into_body(), WITNESS_ANSWER_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| {
                Answer::Malformed(format!(
                    "reading the answer (at most {WITNESS_ANSWER_BYTES_MAX} bytes): {error}"
                ))
            })?
            .to_bytes();
        Ok::<_, Answer>((status, body))
    };
    tokio::pin!(answer, connection);
    tokio::select! {
        answered = &mut answer => answered,
        ended = &mut connection => match ended {
            Err(error) => Err(Answer::Failed(format!("HTTP: {error}"))),
            Ok(()) => answer.await,
        },
    }
}

fn judge(status: StatusCode, body: &[u8]) -> Answer {
    #[derive(serde::Deserialize)]
    struct Reachable {
        reachable: bool,
    }
    let shown = || {
        let text = String::from_utf8_lossy(body);
        text.chars().take(80).collect::<String>()
    };
    if status != StatusCode::OK {
        return Answer::Malformed(format!("HTTP {status}: {:?}", shown()));
    }
    match serde_json::from_slice::<Reachable>(body) {
        Ok(Reachable { reachable: true }) => Answer::Reaches,
        Ok(Reachable { reachable: false }) => Answer::CannotReach,
        Err(error) => Answer::Malformed(format!(
            "not {{\"reachable\": true|false}}: {error}: {:?}",
            shown()
        )),
    }
}

/// The TLS client configuration for `https://` witnesses.
pub async fn client_config(choice: &WitnessTls) -> Result<Arc<ClientConfig>, String> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?;
    let mut config = match choice {
        WitnessTls::CaFile(path) => builder
            .with_root_certificates(load_ca_file(path).await?)
            .with_no_client_auth(),
        WitnessTls::Pinned(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tandem_crypto::tls::PinnedCertificate::new(
                pins.clone(),
                "witnessPinnedSha256",
            )))
            .with_no_client_auth(),
        WitnessTls::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(
                Arc::new(tandem_crypto::tls::PinnedCertificate::any()),
            )
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificates of a PEM file, bounded by [`WITNESS_CA_FILE_BYTES_MAX`]; the error says
/// what is wrong with the file.
pub(crate) async fn load_ca_file(path: &str) -> Result<RootCertStore, String> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|error| format!("cannot read {path}: {error}"))?;
    if !metadata.is_file() || metadata.len() > WITNESS_CA_FILE_BYTES_MAX {
        return Err(format!(
            "{path} is not a PEM file of CA certificates (a regular file of at most \
             {WITNESS_CA_FILE_BYTES_MAX} bytes)"
        ));
    }
    let pem = tokio::fs::read(path)
        .await
        .map_err(|error| format!("cannot read {path}: {error}"))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|error| format!("{path}: {error}"))?;
        roots
            .add(certificate)
            .map_err(|error| format!("{path}: {error}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(roots)
}

/// What the pure configuration cannot check, checked before a change is saved: that the witness
/// CA file the resulting configuration uses exists and holds certificates. Every problem of the
/// change at once: the configuration's own and this one.
pub async fn check_change(current: &HaConfig, change: &ConfigChange) -> Result<(), ConfigError> {
    let (ca_file, mut problems) = match current.with(change) {
        Ok((next, _)) => {
            let https = next
                .witnesses
                .iter()
                .any(|url| url.scheme() == WitnessScheme::Https);
            (next.witness_ca_file.filter(|_| https), Vec::new())
        }
        Err(error) => {
            let asked = change.witness_ca_file.as_deref().map(str::trim);
            let ca_file = asked
                .filter(|path| path.starts_with('/'))
                .map(str::to_owned);
            (ca_file, error.problems)
        }
    };
    if let Some(path) = ca_file
        && let Err(problem) = load_ca_file(&path).await
    {
        problems.push(FieldError {
            field: "witnessCaFile",
            value: path,
            problem: format!(
                "{problem}; give the PEM file of the CA certificates that signed the \
                 witnesses' certificates, or pin the certificate with --witness-pin"
            ),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}
