//! Admin users (admin portal and REST API) and System Manager local users (port 8443). Both are
//! replicated, so the same credentials work after a failover.

use crate::common::{Check, is_identifier_char, now};
use crate::error::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

text_enum!(
    /// Which of the two user stores an account lives in.
    AccountRealm {
        Admin => "admin",
        SystemManager => "system manager",
    }
);

impl AccountRealm {
    fn table(self) -> &'static str {
        match self {
            AccountRealm::Admin => "admin_users",
            AccountRealm::SystemManager => "system_manager_users",
        }
    }
}

/// Shortest password accepted: NIST SP 800-63B's minimum for user-chosen secrets.
pub const PASSWORD_CHARS_MIN: usize = 8;

pub fn validate_username(username: &str) -> StoreResult<()> {
    let mut check = Check::new();
    check.token(
        "username",
        username,
        64,
        is_identifier_char,
        "letters, digits and - _ . @ :",
    );
    check.finish()
}

pub fn validate_password(password: &str) -> StoreResult<()> {
    let mut check = Check::new();
    if password.chars().count() < PASSWORD_CHARS_MIN {
        check.fail(
            "password",
            "(hidden)",
            format!("must be at least {PASSWORD_CHARS_MIN} characters"),
        );
    }
    check.finish()
}

/// Stores a new account with an already-hashed password (hashing is slow; it happens before the
/// write, off the writer thread).
pub fn create(
    conn: &Connection,
    realm: AccountRealm,
    username: &str,
    password_hash: &str,
) -> StoreResult<()> {
    validate_username(username)?;
    conn.execute(
        &format!(
            "INSERT INTO {} (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
            realm.table()
        ),
        params![username, password_hash, now()],
    )
    .map_err(StoreError::from_sqlite)?;
    Ok(())
}

/// The stored password hash of `username`, if the account exists.
pub fn password_hash(
    conn: &Connection,
    realm: AccountRealm,
    username: &str,
) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT password_hash FROM {} WHERE username = ?1",
            realm.table()
        ))?
        .query_row([username], |row| row.get(0))
        .optional()?)
}
