//! The store's error type. Every variant says what failed and, where there is one, the fix.

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// One problem with one input field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's name as the API spells it (`serial`, `userPrincipal`).
    pub field: String,
    /// The offending value, shortened so an error never echoes a huge payload.
    pub value: String,
    /// What is wrong and what would be accepted.
    pub problem: String,
}

/// Bad input: every problem found, not just the first, so a caller fixes them in one go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InvalidInput {
    pub fields: Vec<FieldError>,
}

impl InvalidInput {
    pub fn single(field: &str, value: &str, problem: impl Into<String>) -> Self {
        let mut invalid = Self::default();
        invalid.push(field, value, problem);
        invalid
    }

    pub fn push(&mut self, field: &str, value: &str, problem: impl Into<String>) {
        /// Longest value echoed back in an error.
        const ECHO_CHARS_MAX: usize = 80;
        let mut shown: String = value.chars().take(ECHO_CHARS_MAX).collect();
        if value.chars().count() > ECHO_CHARS_MAX {
            shown.push('…');
        }
        self.fields.push(FieldError {
            field: field.to_owned(),
            value: shown,
            problem: problem.into(),
        });
    }

    /// `Ok(())` when nothing was found, so validators end with `invalid.into_result()`.
    pub fn into_result(self) -> Result<(), StoreError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(self))
        }
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.fields.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", error.field, error.problem)?;
            if !error.value.is_empty() {
                write!(f, " (got {:?})", error.value)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid input: {0}")]
    Invalid(InvalidInput),
    #[error("{what} {key} was not found")]
    NotFound { what: &'static str, key: String },
    #[error("a {what} with this {field} already exists ({detail})")]
    Conflict {
        what: String,
        field: String,
        detail: String,
    },
    /// The caller is not who it must be (an unknown or revoked device identity, a used PIN).
    #[error("{0}")]
    Denied(String),
    /// The request is well-formed but the stored state forbids it (retiring a retired device).
    #[error("{0}")]
    Refused(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the write was rolled back because the transaction could not commit: {0}")]
    NotCommitted(String),
    #[error("the database writer has stopped; see the node log and restart the node")]
    WriterStopped,
    /// Ordinary writes are closed on this node (it is not Active); the reason says where to go.
    #[error("{0}")]
    WritesClosed(String),
    #[error("{path}: {source}{hint}", hint = disk_full_hint(.source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} has schema version {found}, but this Tandem supports up to {supported}; \
         run the Tandem release that wrote it, or restore a backup"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path} is not a Tandem {expected}: {reason}")]
    Foreign {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
    #[error(
        "cannot open the {what} at {path}: {reason}. Restore it from a backup; a Secondary can \
         instead be synced again from its Primary"
    )]
    Open {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Pki(#[from] tandem_crypto::PkiError),
}

/// What an operator does about ENOSPC or EDQUOT, which otherwise read as obscure OS errors.
fn disk_full_hint(source: &std::io::Error) -> &'static str {
    match source.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ": the file system is full; free space (or grow it) and try again"
        }
        _ => "",
    }
}

impl StoreError {
    pub fn not_found(what: &'static str, key: impl fmt::Display) -> Self {
        StoreError::NotFound {
            what,
            key: key.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Turns SQLite's `UNIQUE constraint failed: users.principal` into a conflict that names the
    /// field, so every insert gets a precise message without a racy check-then-insert.
    pub(crate) fn from_sqlite(error: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(code, Some(message)) = &error
            && code.code == rusqlite::ErrorCode::ConstraintViolation
            && let Some(columns) = message.strip_prefix("UNIQUE constraint failed: ")
        {
            let (table, field) = columns
                .split(", ")
                .map(|column| column.split_once('.').unwrap_or(("record", column)))
                .fold((String::new(), Vec::new()), |(_, mut fields), (t, c)| {
                    fields.push(camel_case(c));
                    (t.to_owned(), fields)
                });
            return StoreError::Conflict {
                what: singular(&table),
                field: field.join(" and "),
                detail: "choose another value, or update the existing one".into(),
            };
        }
        StoreError::Sqlite(error)
    }
}

fn singular(table: &str) -> String {
    table.strip_suffix('s').unwrap_or(table).replace('_', " ")
}

/// `bundle_id` → `bundleId`, matching the API's JSON names.
pub(crate) fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A peer address that does not parse is bad input in the `host` field.
impl From<tandem_ha::address::AddressError> for StoreError {
    fn from(error: tandem_ha::address::AddressError) -> Self {
        StoreError::Invalid(InvalidInput::single("host", &error.value, error.problem))
    }
}
