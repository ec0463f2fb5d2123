//! Replicated settings: named JSON values (e.g. `checkin.interval_seconds`).

use crate::common::{Check, now};
use crate::error::{StoreError, StoreResult};
use crate::events::{self, Subject};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// Largest setting value; settings are knobs, not documents.
pub const SETTING_BYTES_MAX: usize = 16 * 1024;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub key: String,
    pub value: serde_json::Value,
    pub updated_at: String,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Setting> {
    let text: String = row.get(1)?;
    Ok(Setting {
        key: row.get(0)?,
        value: serde_json::from_str(&text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, error.into())
        })?,
        updated_at: row.get(2)?,
    })
}

pub fn validate_key(key: &str) -> StoreResult<()> {
    let mut check = Check::new();
    check.token(
        "key",
        key,
        128,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
        "lower-case letters, digits and . _ -",
    );
    check.finish()
}

pub fn list(conn: &Connection) -> StoreResult<Vec<Setting>> {
    Ok(conn
        .prepare_cached("SELECT key, value, updated_at FROM settings ORDER BY key")?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn get(conn: &Connection, key: &str) -> StoreResult<Setting> {
    validate_key(key)?;
    conn.prepare_cached("SELECT key, value, updated_at FROM settings WHERE key = ?1")?
        .query_row([key], from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("setting", key))
}

pub fn put(
    conn: &Connection,
    actor: &str,
    key: &str,
    value: &serde_json::Value,
) -> StoreResult<Setting> {
    validate_key(key)?;
    let text = value.to_string();
    if text.len() > SETTING_BYTES_MAX {
        let mut check = Check::new();
        check.fail(
            "value",
            &text,
            format!("must be at most {SETTING_BYTES_MAX} bytes of JSON"),
        );
        check.finish()?;
    }
    conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, text, now()],
    )?;
    events::append(
        conn,
        actor,
        "SETTING_CHANGED",
        Subject {
            kind: "setting",
            id: key,
        },
        &format!("setting {key} set"),
    )?;
    get(conn, key)
}

pub fn delete(conn: &Connection, actor: &str, key: &str) -> StoreResult<()> {
    get(conn, key)?;
    conn.execute("DELETE FROM settings WHERE key = ?1", [key])?;
    events::append(
        conn,
        actor,
        "SETTING_DELETED",
        Subject {
            kind: "setting",
            id: key,
        },
        &format!("setting {key} deleted"),
    )?;
    Ok(())
}
