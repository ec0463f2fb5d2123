//! Probes over real TLS on loopback: a server with a certificate issued by a test CA answers the
//! status page; the probe passes with that CA or that certificate's pin, and fails, naming why,
//! with another CA, another pin, another name, or an answer without the OK string. The ballot
//! header comes back with the answer, and its absence is recorded, not an error.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use std::sync::Arc;
use std::time::Duration;
use tandem_lb::config::ProbeTls;
use tandem_lb::policy::{BallotSeen, Page, ProbeResult};
use tandem_lb::probe::{Prober, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    server_der: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

fn new_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.clone().self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["mdm.example.test".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_der: server.der().clone(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    }
}

/// A one-page HTTPS server answering every request with `answer`; returns its address.
async fn serve(pki: &Pki, answer: &'static str) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.server_der.clone()], pki.server_key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = tls.read(&mut request).await;
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    address
}

const OK: &str =
    "HTTP/1.1 200 OK\r\nContent-Length: 22\r\nConnection: close\r\n\r\nMOBILEIRON-STATUS: OK\n";

async fn probe_with_ballot(
    tls: &ProbeTls,
    address: &str,
    server_name: &str,
) -> (ProbeResult, BallotSeen) {
    let config = client_config(tls).unwrap();
    Prober::new(config, "node", address, server_name, Duration::from_secs(5))
        .unwrap()
        .probe(Page::Status)
        .await
}

async fn probe(tls: &ProbeTls, address: &str, server_name: &str) -> ProbeResult {
    probe_with_ballot(tls, address, server_name).await.0
}

#[tokio::test]
async fn the_ballot_header_comes_back_with_the_answer_and_its_absence_is_recorded() {
    let pki = new_pki();
    let with_ballot = serve(
        &pki,
        "HTTP/1.1 200 OK\r\nTandem-Ballot: epoch=2; node-id=b-1; state=active; ha=enabled; \
         newest-epoch=2; newest-node-id=b-1\r\nConnection: close\r\n\r\nMOBILEIRON-STATUS: OK\n",
    )
    .await;
    let (result, ballot) = probe_with_ballot(&ProbeTls::Insecure, &with_ballot, "x").await;
    assert!(matches!(result, ProbeResult::Ok(_)), "{result:?}");
    let BallotSeen::Stated(ballot) = ballot else {
        panic!("{ballot:?}");
    };
    assert_eq!(
        ballot.claim(),
        Some(&tandem_ha::ballot::Ballot::new(2, "b-1"))
    );

    let old = serve(&pki, OK).await;
    let (result, ballot) = probe_with_ballot(&ProbeTls::Insecure, &old, "x").await;
    assert!(matches!(result, ProbeResult::Ok(_)), "{result:?}");
    assert!(
        matches!(&ballot, BallotSeen::Unusable(why) if why.contains("no tandem-ballot header")),
        "{ballot:?}"
    );
}

#[tokio::test]
async fn a_probe_verifies_the_ca_or_the_pin_and_names_what_failed() {
    let pki = new_pki();
    let good = serve(&pki, OK).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let pin = tandem_crypto::sha256_fingerprint(pki.server_der.as_ref());

    let with_ca = ProbeTls::Ca(ca_file.clone());
    assert_eq!(
        probe(&with_ca, &good, "mdm.example.test").await,
        ProbeResult::Ok("MOBILEIRON-STATUS: OK".into())
    );
    // The CA checks the name too.
    let wrong_name = probe(&with_ca, &good, "other.example.test").await;
    assert!(
        matches!(&wrong_name, ProbeResult::Failed(why) if why.starts_with("TLS:")),
        "{wrong_name:?}"
    );
    // Another CA does not vouch for this server.
    let other = new_pki();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let untrusted = probe(&ProbeTls::Ca(other_ca), &good, "mdm.example.test").await;
    assert!(
        matches!(&untrusted, ProbeResult::Failed(why) if why.starts_with("TLS:")),
        "{untrusted:?}"
    );

    // A pin matches whatever the name.
    let pinned = ProbeTls::Pinned(vec![pin]);
    assert!(matches!(
        probe(&pinned, &good, "127.0.0.1").await,
        ProbeResult::Ok(_)
    ));
    let wrong_pin = ProbeTls::Pinned(vec!["00".repeat(32)]);
    let refused = probe(&wrong_pin, &good, "127.0.0.1").await;
    assert!(
        matches!(&refused, ProbeResult::Failed(why) if why.contains("is not in probe_tls.pinned_sha256")),
        "{refused:?}"
    );
    assert!(matches!(
        probe(&ProbeTls::Insecure, &good, "127.0.0.1").await,
        ProbeResult::Ok(_)
    ));

    // A 200 without the OK string, and a 503, fail with what they said.
    let other_page = serve(
        &pki,
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<html>It works!</html>",
    )
    .await;
    let lacks = probe(&pinned, &other_page, "x").await;
    assert!(
        matches!(&lacks, ProbeResult::Failed(why) if why.contains("lacks")),
        "{lacks:?}"
    );
    let standby = serve(
        &pki,
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nMOBILEIRON-STATUS: NOT OK\n",
    )
    .await;
    assert_eq!(
        probe(&pinned, &standby, "x").await,
        ProbeResult::Failed("503 MOBILEIRON-STATUS: NOT OK".into())
    );
    // Nothing listening: the connect error.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let refused = probe(&pinned, &closed, "x").await;
    assert!(
        matches!(&refused, ProbeResult::Failed(why) if why.starts_with("connect:")),
        "{refused:?}"
    );
}

#[test]
fn a_ca_file_without_certificates_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let error = client_config(&ProbeTls::Ca(empty))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("empty.pem"), "{error}");
    assert!(error.contains("holds no PEM certificate"), "{error}");
}
