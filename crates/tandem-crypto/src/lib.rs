//! Keys, certificates and password hashes for Tandem nodes.
//!
//! Everything here is plain data in, plain data (PEM, OpenSSH text, PHC strings) out, so the
//! callers decide where material is stored: the device CA and the server certificate live in the
//! replicated database (a promoted Secondary must present the same certificate and keep issuing
//! device identities), while the SSH host key stays on the node.

mod password;
mod pki;
mod ssh;
pub mod tls;

pub use password::{PasswordError, hash_password, random_secret, random_token, verify_password};
pub use pki::{
    CertificateAuthority, DeviceIdentity, IssuedCertificate, PkiError, ServerCertificate,
    first_certificate_der, sha256_fingerprint,
};
pub use ssh::{SshError, SshHostKey, TrustedKey};

/// Installs ring as the process-wide rustls crypto provider.
///
/// Tandem uses exactly one TLS stack (rustls on ring); reqwest and tokio-rustls panic when no
/// provider is installed, so every binary and test calls this once at start. Calling it again is
/// harmless: a second install only reports that one is already set.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
