//! The node's ed25519 SSH host key: it authenticates this node to its replication peers, and its
//! public half is what an operator pastes into the peer's Trusted Hosts.

use russh::keys::{Algorithm, PrivateKey, ssh_key::LineEnding};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("could not generate an SSH key: {0}")]
    Generate(String),
    #[error("the SSH host key is not a valid OpenSSH private key: {0}")]
    Decode(String),
    /// A peer's key pasted into Trusted Hosts that does not parse.
    #[error("this is not an OpenSSH public key: {0}")]
    PublicKey(String),
}

pub struct SshHostKey {
    key: PrivateKey,
}

impl SshHostKey {
    pub fn generate() -> Result<Self, SshError> {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .map_err(|error| SshError::Generate(error.to_string()))?;
        Ok(Self { key })
    }

    pub fn from_openssh(text: &str) -> Result<Self, SshError> {
        let key = russh::keys::decode_secret_key(text, None)
            .map_err(|error| SshError::Decode(error.to_string()))?;
        Ok(Self { key })
    }

    /// The private key in OpenSSH format, for a file readable only by the node's user.
    pub fn private_openssh(&self) -> Result<String, SshError> {
        self.key
            .to_openssh(LineEnding::LF)
            .map(|text| text.to_string())
            .map_err(|error| SshError::Generate(error.to_string()))
    }

    /// The public key in the one-line OpenSSH format (`ssh-ed25519 AAAA… comment`).
    pub fn public_openssh(&self, comment: &str) -> Result<String, SshError> {
        let mut public = self.key.public_key().clone();
        public.set_comment(comment);
        public
            .to_openssh()
            .map_err(|error| SshError::Generate(error.to_string()))
    }

    /// `SHA256:…` as OpenSSH prints it, so operators can compare with `ssh-keygen -lf`.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string()
    }

    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_round_trips_through_openssh_text() {
        let key = SshHostKey::generate().unwrap();
        let text = key.private_openssh().unwrap();
        let again = SshHostKey::from_openssh(&text).unwrap();
        assert_eq!(key.fingerprint(), again.fingerprint());
        let public = again.public_openssh("node-a").unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        assert!(public.ends_with(" node-a"), "{public}");
        assert!(key.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn trusted_keys_compare_without_their_comments() {
        let key = SshHostKey::generate().unwrap();
        let a = TrustedKey::parse(&key.public_openssh("node-a").unwrap()).unwrap();
        let b =
            TrustedKey::parse(&format!("  {}  ", key.public_openssh("other").unwrap())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.fingerprint, key.fingerprint());
        assert!(!a.openssh.contains("node-a"));
        let error = TrustedKey::parse("ssh-ed25519 notbase64")
            .unwrap_err()
            .to_string();
        assert!(error.contains("tandem ha local-key"), "{error}");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let error = SshHostKey::from_openssh("not a key").err().unwrap();
        assert!(
            error
                .to_string()
                .contains("not a valid OpenSSH private key")
        );
    }
}

/// A public key an operator pasted into Trusted Hosts, normalised for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// `ssh-ed25519 AAAA…` without the comment: two pastes of the same key compare equal.
    pub openssh: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl TrustedKey {
    pub fn parse(text: &str) -> Result<Self, SshError> {
        let mut key = russh::keys::PublicKey::from_openssh(text.trim()).map_err(|error| {
            SshError::PublicKey(format!(
                "{error}; paste the one-line key `tandem ha local-key` prints on the peer \
                 (it starts with ssh-ed25519)"
            ))
        })?;
        key.set_comment("");
        Ok(Self::from_public(&key))
    }

    pub fn from_public(key: &russh::keys::PublicKey) -> Self {
        let mut key = key.clone();
        key.set_comment("");
        Self {
            openssh: key.to_openssh().unwrap_or_default().trim().to_owned(),
            fingerprint: key.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
        }
    }
}
