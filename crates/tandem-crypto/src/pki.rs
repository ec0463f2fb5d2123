//! The device CA, device identity certificates and the server TLS certificate.
//!
//! All keys are ECDSA P-256: fast to generate and verify on the hot enrollment and handshake
//! paths, and accepted by every device platform Tandem targets.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// Validity of the device CA. Long, because rotating it means re-enrolling every device.
pub const DEVICE_CA_VALIDITY: Duration = Duration::days(20 * 365);
/// Validity of a device identity: EPMM-like two years, renewed by re-enrollment.
pub const DEVICE_IDENTITY_VALIDITY: Duration = Duration::days(2 * 365);
/// Validity of the generated server certificate; operators usually replace it with their own.
pub const SERVER_CERTIFICATE_VALIDITY: Duration = Duration::days(5 * 365);
/// Certificates start this long before "now" so a device whose clock runs a little behind the
/// server's does not reject a certificate that is not yet valid for it.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("could not generate a key pair: {0}")]
    KeyGeneration(rcgen::Error),
    #[error("could not build the certificate for {subject}: {source}")]
    Certificate {
        subject: String,
        source: rcgen::Error,
    },
    #[error("the stored {what} private key is not a valid PEM key: {source}")]
    StoredKey {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("the stored {what} is not valid PEM")]
    StoredPem { what: &'static str },
}

/// Lower-case hex SHA-256 of a DER certificate: how Tandem names a device identity.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A certificate with its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub sha256_fingerprint: String,
}

/// A device identity: the certificate a device presents on every check-in.
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    pub issued: IssuedCertificate,
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// The device CA, rebuilt from its stored common name and key whenever it signs.
pub struct CertificateAuthority {
    common_name: String,
    key: KeyPair,
    certificate_pem: String,
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Tandem");
    name.push(DnType::CommonName, common_name);
    name
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    // A positive DER INTEGER: clear the top bit so no leading zero byte is needed.
    bytes[0] &= 0x7f;
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate().map_err(PkiError::KeyGeneration)
}

impl CertificateAuthority {
    /// Creates a new CA named `common_name`, valid from `now`.
    pub fn generate(common_name: &str, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = new_key()?;
        let mut params = ca_params(common_name);
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + DEVICE_CA_VALIDITY;
        params.serial_number = Some(random_serial().0);
        let certificate = params
            .self_signed(&key)
            .map_err(|source| PkiError::Certificate {
                subject: common_name.to_owned(),
                source,
            })?;
        Ok(Self {
            common_name: common_name.to_owned(),
            key,
            certificate_pem: certificate.pem(),
        })
    }

    /// Rebuilds the CA from what [`Self::generate`] produced and the database stored.
    pub fn from_stored(
        common_name: &str,
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(private_key_pem).map_err(|source| PkiError::StoredKey {
            what: "device CA",
            source,
        })?;
        Ok(Self {
            common_name: common_name.to_owned(),
            key,
            certificate_pem: certificate_pem.to_owned(),
        })
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a client-authentication identity whose subject is the device's UUID.
    pub fn issue_device_identity(
        &self,
        device_uuid: &str,
        now: OffsetDateTime,
    ) -> Result<DeviceIdentity, PkiError> {
        let key = new_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(device_uuid);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        let not_before = now - CLOCK_SKEW_ALLOWANCE;
        let not_after = now + DEVICE_IDENTITY_VALIDITY;
        params.not_before = not_before;
        params.not_after = not_after;
        let issuer = Issuer::new(ca_params(&self.common_name), &self.key);
        let certificate =
            params
                .signed_by(&key, &issuer)
                .map_err(|source| PkiError::Certificate {
                    subject: device_uuid.to_owned(),
                    source,
                })?;
        Ok(DeviceIdentity {
            issued: IssuedCertificate {
                sha256_fingerprint: sha256_fingerprint(certificate.der()),
                certificate_pem: certificate.pem(),
                private_key_pem: key.serialize_pem(),
            },
            serial_hex,
            not_before,
            not_after,
        })
    }

    /// The CA certificate in DER, for a TLS client-certificate verifier.
    pub fn certificate_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        first_certificate_der(&self.certificate_pem, "device CA certificate")
    }
}

/// Parses the first certificate of a PEM bundle.
pub fn first_certificate_der(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::StoredPem { what })
}

/// The certificate the service and System Manager listeners present.
pub struct ServerCertificate;

impl ServerCertificate {
    /// A self-signed certificate for `names` (host names or IP addresses). Self-signed keeps the
    /// pair free of any outside CA; load balancers and the CLI pin it, as they would EPMM's.
    pub fn generate(names: &[String], now: OffsetDateTime) -> Result<IssuedCertificate, PkiError> {
        let key = new_key()?;
        let subject = names.first().cloned().unwrap_or_else(|| "tandem".into());
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&subject);
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|source| PkiError::Certificate {
                        subject: name.clone(),
                        source,
                    }),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial().0);
        params.not_before = now - CLOCK_SKEW_ALLOWANCE;
        params.not_after = now + SERVER_CERTIFICATE_VALIDITY;
        let certificate = params
            .self_signed(&key)
            .map_err(|source| PkiError::Certificate { subject, source })?;
        Ok(IssuedCertificate {
            sha256_fingerprint: sha256_fingerprint(certificate.der()),
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_identity_chains_to_the_ca_after_a_reload() {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate("Tandem Device CA test", now).unwrap();
        let reloaded = CertificateAuthority::from_stored(
            ca.common_name(),
            ca.certificate_pem(),
            &ca.private_key_pem(),
        )
        .unwrap();
        let identity = reloaded.issue_device_identity("device-1", now).unwrap();
        assert_eq!(identity.serial_hex.len(), 32);
        assert!(identity.not_after > now);

        // Verify the chain with the same verifier the service listener uses.
        crate::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.certificate_der().unwrap()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
            .build()
            .unwrap();
        let leaf =
            first_certificate_der(&identity.issued.certificate_pem, "device identity").unwrap();
        assert_eq!(
            sha256_fingerprint(&leaf),
            identity.issued.sha256_fingerprint
        );
        verifier
            .verify_client_cert(&leaf, &[], rustls_pki_types::UnixTime::now())
            .expect("a device identity verifies against its CA");

        // A certificate from another CA must not verify.
        let stranger = CertificateAuthority::generate("Other CA", now).unwrap();
        let foreign = stranger.issue_device_identity("device-2", now).unwrap();
        let foreign_leaf =
            first_certificate_der(&foreign.issued.certificate_pem, "device identity").unwrap();
        assert!(
            verifier
                .verify_client_cert(&foreign_leaf, &[], rustls_pki_types::UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn server_certificate_covers_names_and_addresses() {
        let names = vec!["node-a.example".to_string(), "127.0.0.1".to_string()];
        let issued = ServerCertificate::generate(&names, OffsetDateTime::now_utc()).unwrap();
        assert!(issued.certificate_pem.contains("BEGIN CERTIFICATE"));
        assert!(issued.private_key_pem.contains("PRIVATE KEY"));
        assert_eq!(issued.sha256_fingerprint.len(), 64);
    }
}
