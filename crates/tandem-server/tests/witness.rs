//! Witness questions against real witnesses on loopback: HTTPS with a certificate a test CA
//! signed (checked by the CA file, by its pinned SHA-256, or explicitly not at all), plain
//! HTTP, chunked and sized answers, malformed answers, and a witness that never answers.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use tandem_ha::config::{ConfigChange, HaConfig};
use tandem_ha::witness::{WitnessTls, WitnessUrl};
use tandem_server::witness::{Answer, ask_witness, ask_witnesses, check_change, client_config};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const REACHES: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: 18\r\n\r\n{\"reachable\":true}";
const CANNOT_REACH_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                      b\r\n{\"reachable\r\n9\r\n\": false}\r\n0\r\n\r\n";

/// A CA, and a server certificate for 127.0.0.1 it signed.
struct Pki {
    ca_pem: String,
    server: ServerConfig,
    server_sha256: String,
}

fn pki() -> Pki {
    tandem_crypto::install_crypto_provider();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server,
        server_sha256: tandem_crypto::sha256_fingerprint(leaf.der()),
    }
}

/// A witness on loopback that answers every request with `answer` (raw HTTP bytes), over TLS
/// when `tls` is given; with `answer` empty it accepts and never answers.
async fn witness(tls: Option<ServerConfig>, answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            answer_once(stream, answer).await;
                        }
                    }
                    None => answer_once(tcp, answer).await,
                }
            });
        }
    });
    address
}

async fn answer_once<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => request.extend_from_slice(&buffer[..read]),
        }
    }
    assert!(request.starts_with(b"GET /witness/primary HTTP/1.1\r\n"));
    if answer.is_empty() {
        // Holds the connection open without a word, as a hung witness does.
        std::future::pending::<()>().await;
    }
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
}

fn url(scheme: &str, address: SocketAddr) -> WitnessUrl {
    WitnessUrl::parse(&format!("{scheme}://{address}/witness/primary")).unwrap()
}

async fn ask_with(choice: WitnessTls, address: SocketAddr) -> Answer {
    let tls = client_config(&choice).await.unwrap();
    ask_witness(&url("https", address), Some(tls)).await
}

#[tokio::test]
async fn an_https_witness_is_asked_with_the_ca_file_the_pin_or_explicitly_unchecked() {
    let pki = pki();
    let address = witness(Some(pki.server.clone()), REACHES).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let ca_file = ca_file.display().to_string();

    assert_eq!(
        ask_with(WitnessTls::CaFile(ca_file), address).await,
        Answer::Reaches
    );
    let pinned = WitnessTls::Pinned(vec![pki.server_sha256.clone()]);
    assert_eq!(ask_with(pinned, address).await, Answer::Reaches);
    assert_eq!(
        ask_with(WitnessTls::Insecure, address).await,
        Answer::Reaches
    );
}

#[tokio::test]
async fn a_wrong_pin_or_another_ca_is_refused_and_holds_nothing() {
    let pki = pki();
    let address = witness(Some(pki.server.clone()), REACHES).await;
    let wrong = WitnessTls::Pinned(vec!["00".repeat(32)]);
    match ask_with(wrong, address).await {
        Answer::Failed(why) => assert!(why.contains("is not in witnessPinnedSha256"), "{why}"),
        other => panic!("a wrong pin was accepted: {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let another = self::pki();
    std::fs::write(&other_ca, another.ca_pem).unwrap();
    let answer = ask_with(WitnessTls::CaFile(other_ca.display().to_string()), address).await;
    assert!(
        matches!(answer, Answer::Failed(ref why) if why.contains("TLS")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn chunked_sized_and_malformed_answers_are_told_apart() {
    let pki = pki();
    let chunked = witness(Some(pki.server.clone()), CANNOT_REACH_CHUNKED).await;
    assert_eq!(
        ask_with(WitnessTls::Insecure, chunked).await,
        Answer::CannotReach
    );
    let plain = witness(None, REACHES).await;
    assert_eq!(
        ask_witness(&url("http", plain), None).await,
        Answer::Reaches
    );
    for (raw, why) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nreachable"[..],
            "not {\"reachable\"",
        ),
        (
            &b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"[..],
            "HTTP 503",
        ),
        (&b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..], "HTTP"),
    ] {
        let address = witness(None, raw).await;
        match ask_witness(&url("http", address), None).await {
            Answer::Malformed(what) | Answer::Failed(what) => {
                assert!(what.contains(why), "{what}")
            }
            other => panic!("{raw:?} was taken as {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_answer_longer_than_the_bound_is_malformed() {
    let mut raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        raw.extend_from_slice(b"400\r\n");
        raw.extend_from_slice(&[b' '; 0x400]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let address = witness(None, raw.leak()).await;
    let answer = ask_witness(&url("http", address), None).await;
    assert!(
        matches!(answer, Answer::Malformed(ref what) if what.contains("at most")),
        "{answer:?}"
    );
}

fn config(witnesses: &[WitnessUrl], pin: &str) -> HaConfig {
    HaConfig::default()
        .with(&ConfigChange {
            witnesses: Some(witnesses.iter().map(ToString::to_string).collect()),
            witness_pinned_sha256: Some(vec![pin.to_owned()]),
            ..Default::default()
        })
        .unwrap()
        .0
}

#[tokio::test]
async fn every_witness_is_asked_at_once_and_one_that_reaches_holds_the_promotion() {
    let pki = pki();
    let hung = url("http", witness(None, b"").await);
    let cannot = url(
        "https",
        witness(Some(pki.server.clone()), CANNOT_REACH_CHUNKED).await,
    );
    let reaches = url("https", witness(Some(pki.server.clone()), REACHES).await);
    // The hung witness comes first: asked one after another, it would use up the timeout.
    let all = config(
        &[hung.clone(), cannot.clone(), reaches.clone()],
        &pki.server_sha256,
    );
    assert_eq!(
        ask_witnesses(&all, "10.0.0.1:22").await,
        Some(reaches.to_string())
    );
    // Without it, nobody reaches the Primary: the hung witness counts as unreachable.
    let none = config(&[hung, cannot], &pki.server_sha256);
    assert_eq!(ask_witnesses(&none, "10.0.0.1:22").await, None);
}

#[tokio::test]
async fn a_witness_ca_file_is_checked_before_the_configuration_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let https = Some(vec!["https://127.0.0.1:9444/witness/primary".to_owned()]);
    let missing = dir.path().join("missing.pem").display().to_string();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, pki().ca_pem).unwrap();
    let current = HaConfig::default();
    for (path, why) in [
        (missing, "cannot read"),
        (empty.display().to_string(), "holds no PEM certificate"),
    ] {
        let error = check_change(
            &current,
            &ConfigChange {
                witnesses: https.clone(),
                witness_ca_file: Some(path.clone()),
                heartbeat_failures: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        // Reported together with the configuration's own problems.
        assert_eq!(
            error.fields(),
            ["heartbeatFailures", "witnessCaFile"],
            "{error}"
        );
        assert!(error.problems[1].problem.contains(why), "{error}");
        assert_eq!(error.problems[1].value, path);
    }
    check_change(
        &current,
        &ConfigChange {
            witnesses: https,
            witness_ca_file: Some(good.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}
