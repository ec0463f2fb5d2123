//! Admin users (admin portal and REST API) and System Manager local users (port 8443). Both are
//! replicated, so the same credentials work after a failover.

use crate::common::{Check, now};
use crate::error::{StoreError, StoreResult};
use crate::events;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

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

    /// "admin user", "system manager user": what a missing account is called in errors.
    pub fn user_noun(self) -> &'static str {
        match self {
            AccountRealm::Admin => "admin user",
            AccountRealm::SystemManager => "system manager user",
        }
    }
}

/// Shortest password accepted: NIST SP 800-63B's minimum for user-chosen secrets.
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Longest password accepted. Argon2 hashes any length, but every check of it costs time on
/// the password pool; 1 KiB holds any passphrase or generated secret, and a password typed in
/// HTTP Basic authentication fits in the header limits with room to spare.
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest user name: enough for an e-mail address.
pub const USERNAME_CHARS_MAX: usize = 64;
/// Accounts in one realm at most. A node has a handful of operators and scripts; the bound keeps
/// `users list` one screen of JSON and the per-user failure table of the back-off small.
pub const ACCOUNTS_PER_REALM_MAX: i64 = 1000;

/// Passwords too common to accept (top entries of public breach corpora), one a line.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Characters of account names: no `:` (HTTP Basic authentication ends the user name at the
/// first one, so such a user could never log in), no spaces or control characters (they would
/// make log lines and shell use ambiguous).
pub fn is_username_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '@')
}

pub fn validate_username(username: &str) -> StoreResult<()> {
    let mut check = Check::new();
    check.token(
        "username",
        username,
        USERNAME_CHARS_MAX,
        is_username_char,
        "letters, digits and - _ . @ (not ':', which HTTP Basic authentication cannot carry in a \
         user name, nor spaces or control characters)",
    );
    check.finish()
}

/// Whether `password` is on the embedded list of common passwords (case ignored).
pub fn is_common_password(password: &str) -> bool {
    let lowered = password.to_lowercase();
    COMMON_PASSWORDS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .any(|common| common.to_lowercase() == lowered)
}

/// The strength rules for a new password of `username`. Errors name the field `password` and
/// never echo the password itself.
pub fn validate_password(username: &str, password: &str) -> StoreResult<()> {
    let mut check = Check::new();
    let problem = if password.chars().count() < PASSWORD_CHARS_MIN {
        Some(format!("must be at least {PASSWORD_CHARS_MIN} characters"))
    } else if password.len() > PASSWORD_BYTES_MAX {
        Some(format!("must be at most {PASSWORD_BYTES_MAX} bytes"))
    } else if password.trim().is_empty() {
        Some("must not be only white space".to_owned())
    } else if password.chars().any(char::is_control) {
        Some("must not contain control characters (such as a line break)".to_owned())
    } else if password.eq_ignore_ascii_case(username) {
        Some("must not be the user name".to_owned())
    } else if is_common_password(password) {
        Some(
            "is one of the most common passwords, which attackers try first; choose another \
              (a few unrelated words make a strong one)"
                .to_owned(),
        )
    } else {
        None
    };
    if let Some(problem) = problem {
        check.fail("password", "(hidden)", problem);
    }
    check.finish()
}

/// An account as listed: never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub username: String,
    pub created_at: String,
}

/// Who changes an account and from where, for the audit event.
pub struct Audit<'a> {
    /// The authenticated user, or `command line` for the operator at the node's console.
    pub actor: &'a str,
    /// Where the change came from: a client address, or the control socket.
    pub source: &'a str,
}

fn subject(username: &str) -> events::Subject<'_> {
    events::Subject {
        kind: "account",
        id: username,
    }
}

/// Every account of `realm`, by user name.
pub fn list(conn: &Connection, realm: AccountRealm) -> StoreResult<Vec<Account>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT username, created_at FROM {} ORDER BY username LIMIT ?1",
            realm.table()
        ))?
        .query_map([ACCOUNTS_PER_REALM_MAX], |row| {
            Ok(Account {
                username: row.get(0)?,
                created_at: row.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

fn count(conn: &Connection, realm: AccountRealm) -> StoreResult<i64> {
    Ok(conn.query_row(
        &format!("SELECT count(*) FROM {}", realm.table()),
        [],
        |row| row.get(0),
    )?)
}

/// Adds an account with an already-hashed password and records who did it.
pub fn add(
    conn: &Connection,
    realm: AccountRealm,
    username: &str,
    password_hash: &str,
    audit: &Audit<'_>,
) -> StoreResult<Account> {
    validate_username(username)?;
    if count(conn, realm)? >= ACCOUNTS_PER_REALM_MAX {
        return Err(StoreError::Refused(format!(
            "{realm} users are limited to {ACCOUNTS_PER_REALM_MAX}; remove unused ones first"
        )));
    }
    create(conn, realm, username, password_hash).map_err(|error| match error {
        StoreError::Conflict { .. } => StoreError::Conflict {
            what: format!("{realm} user"),
            field: "username".into(),
            detail: format!(
                "{username:?} exists; change its password with `tandem users set-password`"
            ),
        },
        other => other,
    })?;
    events::append(
        conn,
        audit.actor,
        "ACCOUNT_ADDED",
        subject(username),
        &format!("{realm} user {username} added from {}", audit.source),
    )?;
    list(conn, realm)?
        .into_iter()
        .find(|account| account.username == username)
        .ok_or_else(|| StoreError::not_found("account", username))
}

/// Removes an account. The last one of a realm is kept: without it nobody could log in there.
pub fn remove(
    conn: &Connection,
    realm: AccountRealm,
    username: &str,
    audit: &Audit<'_>,
) -> StoreResult<()> {
    if password_hash(conn, realm, username)?.is_none() {
        return Err(StoreError::not_found(realm.user_noun(), username));
    }
    if count(conn, realm)? <= 1 {
        return Err(StoreError::Refused(format!(
            "{username} is the last {realm} user; nobody could log in without it. Add another \
             {realm} user first, or change this one's password instead"
        )));
    }
    conn.execute(
        &format!("DELETE FROM {} WHERE username = ?1", realm.table()),
        [username],
    )?;
    events::append(
        conn,
        audit.actor,
        "ACCOUNT_REMOVED",
        subject(username),
        &format!("{realm} user {username} removed from {}", audit.source),
    )
}

/// Replaces an account's password hash (already hashed) and records who did it.
pub fn set_password_hash(
    conn: &Connection,
    realm: AccountRealm,
    username: &str,
    password_hash: &str,
    audit: &Audit<'_>,
) -> StoreResult<()> {
    let changed = conn.execute(
        &format!(
            "UPDATE {} SET password_hash = ?2 WHERE username = ?1",
            realm.table()
        ),
        params![username, password_hash],
    )?;
    if changed == 0 {
        return Err(StoreError::not_found(realm.user_noun(), username));
    }
    events::append(
        conn,
        audit.actor,
        "ACCOUNT_PASSWORD_CHANGED",
        subject(username),
        &format!(
            "password of {realm} user {username} changed from {}",
            audit.source
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(username: &str, password: &str) -> String {
        validate_password(username, password)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn weak_passwords_are_refused_naming_the_field_and_never_echoing_it() {
        for (password, expected) in [
            ("short1!", "at least 8"),
            ("        ", "white space"),
            ("password", "most common"),
            ("PassWord123", "most common"),
            ("12345678", "most common"),
            ("operator7", "the user name"),
            ("line\nbreak-pw", "control characters"),
        ] {
            let message = problem("Operator7", password);
            assert!(message.contains("password"), "{message}");
            assert!(message.contains(expected), "{password:?}: {message}");
            // ("password" is also the field's name.)
            let echoed = format!("\"{password}\"");
            assert!(
                password == "password" || !message.contains(&echoed),
                "echoed: {message}"
            );
            assert!(message.contains("(hidden)"), "{message}");
        }
        let long = "x".repeat(PASSWORD_BYTES_MAX + 1);
        assert!(problem("a", &long).contains("at most"));
        assert!(validate_password("operator7", "correct-horse-1").is_ok());
        assert!(is_common_password("QWERTY123"));
        assert!(!is_common_password(
            "# Passwords refused for every Tandem account"
        ));
    }

    fn accounts_in_memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        let table = |name: &str| {
            format!(
                "CREATE TABLE {name} (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE,
                     password_hash TEXT NOT NULL, created_at TEXT NOT NULL);"
            )
        };
        conn.execute_batch(&format!(
            "{}{}CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
                 kind TEXT NOT NULL, subject_type TEXT NOT NULL, subject_id TEXT NOT NULL,
                 message TEXT NOT NULL);",
            table("admin_users"),
            table("system_manager_users")
        ))
        .unwrap();
        conn
    }

    #[test]
    fn changes_are_audited_the_last_user_stays_and_realms_are_apart() {
        let conn = accounts_in_memory();
        let audit = Audit {
            actor: "alice",
            source: "192.0.2.7:5555",
        };
        let realm = AccountRealm::Admin;
        add(&conn, realm, "alice", "hash-a", &audit).unwrap();
        let error = remove(&conn, realm, "alice", &audit)
            .unwrap_err()
            .to_string();
        assert!(error.contains("last admin user"), "{error}");
        let error = add(&conn, realm, "alice", "hash-b", &audit)
            .unwrap_err()
            .to_string();
        assert!(error.contains("exists"), "{error}");
        add(&conn, realm, "bob", "hash-b", &audit).unwrap();
        set_password_hash(&conn, realm, "bob", "hash-c", &audit).unwrap();
        assert_eq!(
            password_hash(&conn, realm, "bob").unwrap().unwrap(),
            "hash-c"
        );
        remove(&conn, realm, "alice", &audit).unwrap();
        let names: Vec<String> = list(&conn, realm)
            .unwrap()
            .into_iter()
            .map(|account| account.username)
            .collect();
        assert_eq!(names, ["bob"]);
        // The other realm is untouched, and a missing user is named.
        assert!(list(&conn, AccountRealm::SystemManager).unwrap().is_empty());
        let error = set_password_hash(&conn, AccountRealm::SystemManager, "bob", "h", &audit)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("system manager user bob was not found"),
            "{error}"
        );
        let kinds: Vec<(String, String, String)> = conn
            .prepare("SELECT actor, kind, message FROM events ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let kinds: Vec<&str> = kinds
            .iter()
            .inspect(|(actor, _, message)| {
                assert_eq!(actor, "alice");
                assert!(message.contains("from 192.0.2.7:5555"), "{message}");
                assert!(!message.contains("hash-"), "{message}");
            })
            .map(|(_, kind, _)| kind.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "ACCOUNT_ADDED",
                "ACCOUNT_ADDED",
                "ACCOUNT_PASSWORD_CHANGED",
                "ACCOUNT_REMOVED"
            ]
        );
    }

    #[test]
    fn user_names_with_a_colon_or_control_characters_are_refused() {
        for bad in [
            "ad:min",
            "ad min",
            "ad\u{7}min",
            "",
            &"a".repeat(USERNAME_CHARS_MAX + 1),
        ] {
            let message = validate_username(bad).unwrap_err().to_string();
            assert!(message.contains("username"), "{message}");
        }
        assert!(validate_username("ops.team-1@example.com").is_ok());
    }
}
