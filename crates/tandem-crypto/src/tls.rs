//! Certificate checks for Tandem's HTTPS clients beyond a CA: a server certificate pinned by its
//! SHA-256 fingerprint, or (explicitly, labs only) any certificate. Either way the handshake
//! signature is still checked against the presented certificate, so the server must hold its
//! private key.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts a server certificate whose SHA-256 (lowercase hex) is pinned; with no pins, any
/// certificate (the explicit insecure choice).
#[derive(Debug)]
pub struct PinnedCertificate {
    pins: Vec<String>,
    /// The setting the pins come from, named when a certificate is refused.
    setting: &'static str,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertificate {
    /// Accepts only certificates whose fingerprint is in `pins` (lowercase hex, no colons).
    /// `setting` names where the pins are configured, for the refusal's message.
    pub fn new(pins: Vec<String>, setting: &'static str) -> Self {
        Self {
            pins,
            setting,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    /// Accepts any certificate: only for an operator who chose it explicitly.
    pub fn any() -> Self {
        Self::new(Vec::new(), "the pinned fingerprints")
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let fingerprint = crate::sha256_fingerprint(end_entity.as_ref());
        if self.pins.contains(&fingerprint) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate SHA-256 {fingerprint} is not in {}",
                self.setting
            )))
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
