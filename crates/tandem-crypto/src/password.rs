//! Argon2id password hashes in PHC string form, and random secrets.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::RngExt;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Hashes `password` with argon2id and a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hash(error.to_string()))
}

/// Checks `password` against a PHC hash made by [`hash_password`]. A malformed stored hash counts
/// as a mismatch: it can never authenticate anyone.
pub fn verify_password(password: &str, phc_hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc_hash)
        .is_ok()
}

/// Alphabet for generated secrets: no look-alike characters (0/O, 1/l/I), so a password printed
/// once on a terminal can be typed back without guessing.
const SECRET_ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

/// A random secret of `length` characters from an unambiguous alphabet.
pub fn random_secret(length: usize) -> String {
    let mut rng = rand::rng();
    (0..length)
        .map(|_| SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())] as char)
        .collect()
}

/// 32 random bytes from the thread's CSPRNG (session and form tokens).
pub fn random_token() -> [u8; 32] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn secrets_are_random_and_unambiguous() {
        let a = random_secret(20);
        let b = random_secret(20);
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
    }
}
