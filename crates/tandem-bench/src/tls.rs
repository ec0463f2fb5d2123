//! TLS for the load generator: the server certificate is pinned (read from the node's replicated
//! database or a PEM file), and each device connection presents that device's identity.

use anyhow::{Context, Result, anyhow, bail};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Accepts exactly one server certificate, whatever name it carries, and still checks the
/// handshake signatures against it (so the server must hold the matching private key).
#[derive(Debug)]
struct PinnedServer {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented a certificate other than the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds client configurations: one shared for anonymous connections (admin API, probes,
/// the reference workload) and one per device connection with its identity.
#[derive(Clone)]
pub struct Tls {
    provider: Arc<CryptoProvider>,
    verifier: Arc<PinnedServer>,
    anonymous: Arc<ClientConfig>,
    /// SHA-256 of the pinned certificate (hex), to tie a fleet file to its server.
    pub server_fingerprint: String,
}

impl Tls {
    pub fn pinned(certificate: CertificateDer<'static>) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_fingerprint = hex::encode(Sha256::digest(certificate.as_ref()));
        let verifier = Arc::new(PinnedServer {
            certificate,
            algorithms: provider.signature_verification_algorithms,
        });
        let anonymous = build_config(&provider, &verifier, None)?;
        Ok(Self {
            provider,
            verifier,
            anonymous,
            server_fingerprint,
        })
    }

    pub fn anonymous(&self) -> Arc<ClientConfig> {
        self.anonymous.clone()
    }

    /// A configuration presenting `identity` as the client certificate. Session resumption is
    /// off (for every configuration): each connection pays a full handshake, as a device
    /// checking in after hours away does.
    pub fn device(&self, identity: Arc<CertifiedKey>) -> Result<Arc<ClientConfig>> {
        build_config(&self.provider, &self.verifier, Some(identity))
    }

    /// Parses a device identity (certificate and PKCS#8 key, PEM) for use as a client certificate.
    pub fn identity(&self, certificate_pem: &str, private_key_pem: &str) -> Result<CertifiedKey> {
        let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("device certificate PEM")?;
        if chain.is_empty() {
            bail!("no certificate in the device certificate PEM");
        }
        let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes())
            .context("device private key PEM")?;
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|error| anyhow!("device private key: {error}"))?;
        Ok(CertifiedKey::new(chain, signing_key))
    }
}

fn build_config(
    provider: &Arc<CryptoProvider>,
    verifier: &Arc<PinnedServer>,
    identity: Option<Arc<CertifiedKey>>,
) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The service certificate as `tandem init` stored it: `pki_material` row `server_tls` of the
/// replicated database in the node's data directory.
pub fn server_certificate_from_data_dir(data_dir: &Path) -> Result<CertificateDer<'static>> {
    let path = data_dir.join("replicated.db");
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    let pem: String = conn
        .query_row(
            "SELECT certificate_pem FROM pki_material WHERE name = 'server_tls'",
            [],
            |row| row.get(0),
        )
        .with_context(|| format!("no server certificate in {}", path.display()))?;
    first_certificate(&pem).with_context(|| format!("server certificate in {}", path.display()))
}

pub fn server_certificate_from_file(path: &Path) -> Result<CertificateDer<'static>> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    first_certificate(&pem).with_context(|| format!("certificate in {}", path.display()))
}

fn first_certificate(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| anyhow!("no PEM certificate found"))?
        .context("invalid PEM certificate")
}
