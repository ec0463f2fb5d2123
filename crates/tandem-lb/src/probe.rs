//! HTTPS probes of a node's status pages: one short-lived TLS connection per probe, so a probe
//! sees exactly what a new device connection would (a listener that stopped accepting, a TLS
//! identity that changed).

use crate::config::ProbeTls;
use crate::policy::{BallotSeen, Page, ProbeResult};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tandem_crypto::tls::PinnedCertificate;
use tandem_ha::ballot::{BALLOT_HEADER, ProbeBallot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// Bytes of a probe answer read at most: the status pages are one line; anything longer is not
/// a Tandem node and is judged on what was read.
const PROBE_ANSWER_BYTES_MAX: u64 = 8 * 1024;

/// The string a passing page contains (PRODUCT.md section 3).
pub const OK_STRING: &str = "MOBILEIRON-STATUS: OK";

#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error("probe_tls.ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("backend {name}: server_name {server_name:?} is not a valid DNS name or IP address")]
    ServerName { name: String, server_name: String },
}

/// Probes one backend.
#[derive(Clone)]
pub struct Prober {
    connector: TlsConnector,
    address: String,
    server_name: ServerName<'static>,
    timeout: Duration,
}

/// The TLS client configuration every probe shares.
pub fn client_config(tls: &ProbeTls) -> Result<Arc<ClientConfig>, ProbeSetupError> {
    let provider = rustls::crypto::ring::default_provider();
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| ProbeSetupError::Ca {
            path: String::new(),
            message: error.to_string(),
        })?;
    let config = match tls {
        ProbeTls::Ca(path) => {
            let ca_error = |message: String| ProbeSetupError::Ca {
                path: path.display().to_string(),
                message,
            };
            let mut roots = RootCertStore::empty();
            let certificates =
                CertificateDer::pem_file_iter(path).map_err(|error| ca_error(error.to_string()))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|error| ca_error(error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| ca_error(error.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("holds no PEM certificate".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ProbeTls::Pinned(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate::new(
                pins.clone(),
                "probe_tls.pinned_sha256",
            )))
            .with_no_client_auth(),
        ProbeTls::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate::any()))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

impl Prober {
    pub fn new(
        config: Arc<ClientConfig>,
        name: &str,
        address: &str,
        server_name: &str,
        timeout: Duration,
    ) -> Result<Self, ProbeSetupError> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            ProbeSetupError::ServerName {
                name: name.into(),
                server_name: server_name.into(),
            }
        })?;
        Ok(Self {
            connector: TlsConnector::from(config),
            address: address.into(),
            server_name,
            timeout,
        })
    }

    /// Probes `page`; never takes longer than the probe timeout. Returns the page's result and
    /// the ballot the answer's `tandem-ballot` header stated.
    pub async fn probe(&self, page: Page) -> (ProbeResult, BallotSeen) {
        match tokio::time::timeout(self.timeout, self.fetch(page.path())).await {
            Ok(Ok(answer)) => (judge(answer.code, &answer.body), read_ballot(&answer)),
            Ok(Err(error)) => (ProbeResult::Failed(error), BallotSeen::NoAnswer),
            Err(_) => (
                ProbeResult::Failed(format!(
                    "no answer within the probe timeout ({} ms)",
                    self.timeout.as_millis()
                )),
                BallotSeen::NoAnswer,
            ),
        }
    }

    async fn fetch(&self, path: &str) -> Result<Answer, String> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|error| format!("{CONNECT_FAILED}{error}"))?;
        let _ = tcp.set_nodelay(true);
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|error| format!("TLS: {error}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: tandem-lb\r\nUser-Agent: tandem-lb\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|error| format!("send: {error}"))?;
        let mut answer = Vec::new();
        let read = (&mut tls)
            .take(PROBE_ANSWER_BYTES_MAX)
            .read_to_end(&mut answer)
            .await;
        // A server may close without TLS close_notify; what arrived still counts.
        if let Err(error) = read
            && answer.is_empty()
        {
            return Err(format!("read: {error}"));
        }
        parse_answer(&answer)
    }
}

/// The probe's TCP connect failed at once (refused, unreachable): nothing listens there, which
/// a dead process gives and a slow one does not (a slow one times out).
pub fn refused_at_connect(result: &ProbeResult) -> bool {
    matches!(result, ProbeResult::Failed(why) if why.starts_with(CONNECT_FAILED))
}

/// How [`Prober::probe`] names a failed TCP connect.
const CONNECT_FAILED: &str = "connect: ";

/// An HTTP answer to a probe: what the policy needs of it.
#[derive(Debug)]
struct Answer {
    code: u16,
    /// The `tandem-ballot` header's value, when there is one.
    ballot: Option<String>,
    body: String,
}

/// The ballot of an answer. A missing or unparsable header is recorded with the reason (an
/// older or non-Tandem backend), never an error: such a backend keeps the rule without ballots.
fn read_ballot(answer: &Answer) -> BallotSeen {
    match &answer.ballot {
        None => BallotSeen::Unusable(format!(
            "no {BALLOT_HEADER} header (an older or non-Tandem server)"
        )),
        Some(value) => match ProbeBallot::parse(value) {
            Ok(ballot) => BallotSeen::Stated(ballot),
            Err(error) => BallotSeen::Unusable(format!("{BALLOT_HEADER} {value:?}: {error}")),
        },
    }
}

fn parse_answer(answer: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "not an HTTP answer".to_owned())?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {:?}", first_line(head)))?;
    let ballot = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(BALLOT_HEADER)
            .then(|| value.trim().to_owned())
    });
    Ok(Answer {
        code,
        ballot,
        body: body.to_owned(),
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

/// A page passes on HTTP 200 with the OK string in the body; the detail is what an operator
/// needs to see.
fn judge(code: u16, body: &str) -> ProbeResult {
    let line = first_line(body);
    if code == 200 && body.contains(OK_STRING) {
        ProbeResult::Ok(line.to_owned())
    } else if code == 200 {
        ProbeResult::Failed(format!("200 but the body lacks {OK_STRING}: {line:?}"))
    } else {
        ProbeResult::Failed(format!("{code} {line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(answer: &[u8]) -> ProbeResult {
        let answer = parse_answer(answer).unwrap();
        judge(answer.code, &answer.body)
    }

    #[test]
    fn a_page_passes_only_on_200_with_the_ok_string() {
        assert_eq!(
            judged(b"HTTP/1.1 200 OK\r\ncontent-length: 22\r\n\r\nMOBILEIRON-STATUS: OK\n"),
            ProbeResult::Ok("MOBILEIRON-STATUS: OK".into())
        );
        assert_eq!(
            judged(
                b"HTTP/1.1 503 Service Unavailable\r\n\r\nMOBILEIRON-STATUS: NOT OK (Standby)\n"
            ),
            ProbeResult::Failed("503 MOBILEIRON-STATUS: NOT OK (Standby)".into())
        );
        assert!(
            matches!(judged(b"HTTP/1.1 200 OK\r\n\r\n<html>It works!</html>"), ProbeResult::Failed(why) if why.contains("lacks"))
        );
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
    }

    #[test]
    fn the_ballot_header_is_read_with_the_one_parser_and_its_absence_recorded() {
        let answer = parse_answer(
            b"HTTP/1.1 200 OK\r\nTandem-Ballot: epoch=3; node-id=a-1; state=active; ha=enabled; \
              newest-epoch=4; newest-node-id=b-2\r\n\r\nMOBILEIRON-STATUS: OK\n",
        )
        .unwrap();
        let BallotSeen::Stated(ballot) = read_ballot(&answer) else {
            panic!("{answer:?}");
        };
        assert_eq!(ballot.own, tandem_ha::ballot::Ballot::new(3, "a-1"));
        assert_eq!(
            ballot.newest,
            Some(tandem_ha::ballot::Ballot::new(4, "b-2"))
        );

        let old = parse_answer(b"HTTP/1.1 200 OK\r\n\r\nMOBILEIRON-STATUS: OK\n").unwrap();
        assert!(
            matches!(read_ballot(&old), BallotSeen::Unusable(why) if why.contains("no tandem-ballot header"))
        );
        let starting = parse_answer(
            b"HTTP/1.1 503 x\r\ntandem-ballot: state=not-available\r\n\r\nTANDEM-STATUS\n",
        )
        .unwrap();
        assert!(
            matches!(read_ballot(&starting), BallotSeen::Unusable(why) if why.contains("`epoch` is missing")),
            "{:?}",
            read_ballot(&starting)
        );
    }
}
