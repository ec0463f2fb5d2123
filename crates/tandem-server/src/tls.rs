//! TLS for the HTTPS listeners, from the certificate and device CA in the replicated database.

use rustls::ServerConfig;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tandem_crypto::CertificateAuthority;
use tandem_store::pki::ServerTls;

/// TLS sessions remembered for resumption: a device reconnecting within the cache's reach skips
/// the full handshake. 20,000 entries cost a few megabytes.
pub const TLS_SESSION_CACHE_ENTRIES: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the stored server certificate is not valid PEM")]
    Certificate,
    #[error("the stored server private key is not valid PEM")]
    PrivateKey,
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(String),
}

/// The service listener asks for a client certificate but does not require one: devices
/// present their identity, while browsers, API clients and load-balancer probes do not.
pub fn service_config(
    server: &ServerTls,
    device_ca: &CertificateAuthority,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = device_ca
        .certificate_der()
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    roots
        .add(ca)
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let builder = ServerConfig::builder().with_client_cert_verifier(verifier);
    finish(builder, server)
}

/// The System Manager listener: server authentication only, or, with `client_roots`
/// (`[system_manager] client_ca`), a client certificate signed by one of them required too.
pub fn system_manager_config(
    server: &ServerTls,
    client_roots: Option<&Arc<rustls::RootCertStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let Some(roots) = client_roots else {
        return finish(ServerConfig::builder().with_no_client_auth(), server);
    };
    let verifier = WebPkiClientVerifier::builder(roots.clone())
        .build()
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    finish(
        ServerConfig::builder().with_client_cert_verifier(verifier),
        server,
    )
}

fn finish(
    builder: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>,
    server: &ServerTls,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(server.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(server.private_key_pem.as_bytes())
        .map_err(|_| TlsError::PrivateKey)?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(TLS_SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}
