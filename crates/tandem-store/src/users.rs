//! Device users: the people devices are registered to.

use crate::common::{Check, Page, PageRequest, is_identifier_char, now};
use crate::error::{StoreError, StoreResult};
use crate::events::{self, Subject};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub principal: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub device_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// The fields an administrator sets. `principal` is fixed once created: devices and logs refer
/// to it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserInput {
    pub principal: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

const NAME_CHARS_MAX: usize = 128;

fn validate(input: &UserInput, creating: bool) -> StoreResult<()> {
    let mut check = Check::new();
    match (&input.principal, creating) {
        (Some(principal), true) => check.token(
            "principal",
            principal,
            128,
            is_identifier_char,
            "letters, digits and - _ . @ :",
        ),
        (None, true) => check.fail("principal", "", "is required, e.g. \"jdoe@example.com\""),
        _ => {}
    }
    if let Some(email) = &input.email {
        check.email("email", email);
    }
    check.optional_text("firstName", input.first_name.as_deref(), NAME_CHARS_MAX);
    check.optional_text("lastName", input.last_name.as_deref(), NAME_CHARS_MAX);
    check.finish()
}

const SELECT: &str = "SELECT u.id, u.principal, u.email, u.first_name, u.last_name,
        (SELECT count(*) FROM devices d WHERE d.user_id = u.id), u.created_at, u.updated_at
    FROM users u";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        principal: row.get(1)?,
        email: row.get(2)?,
        first_name: row.get(3)?,
        last_name: row.get(4)?,
        device_count: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

pub fn create(conn: &Connection, actor: &str, input: &UserInput) -> StoreResult<User> {
    validate(input, true)?;
    let principal = input.principal.as_deref().unwrap_or_default();
    let at = now();
    conn.execute(
        "INSERT INTO users (principal, email, first_name, last_name, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![
            principal,
            input.email,
            input.first_name,
            input.last_name,
            at
        ],
    )
    .map_err(StoreError::from_sqlite)?;
    let id = conn.last_insert_rowid();
    events::append(
        conn,
        actor,
        "USER_CREATED",
        Subject {
            kind: "user",
            id: principal,
        },
        &format!("user {principal} created"),
    )?;
    get(conn, id)
}

pub fn get(conn: &Connection, id: i64) -> StoreResult<User> {
    conn.prepare_cached(&format!("{SELECT} WHERE u.id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("user", id))
}

/// The id of the user with `principal`, for registering devices to it.
pub fn id_by_principal(conn: &Connection, principal: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM users WHERE principal = ?1")?
        .query_row([principal], |row| row.get(0))
        .optional()?)
}

pub fn list(conn: &Connection, request: &PageRequest) -> StoreResult<Page<User>> {
    let (pattern, limit, offset) = request.validated()?;
    const FILTER: &str = "u.principal LIKE ?1 ESCAPE '\\' OR u.email LIKE ?1 ESCAPE '\\'
        OR u.first_name LIKE ?1 ESCAPE '\\' OR u.last_name LIKE ?1 ESCAPE '\\'";
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM users u WHERE {FILTER}"),
        [&pattern],
        |row| row.get(0),
    )?;
    let results = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE {FILTER} ORDER BY u.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit, offset], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

/// Replaces the editable fields (absent ones become empty).
pub fn update(conn: &Connection, actor: &str, id: i64, input: &UserInput) -> StoreResult<User> {
    validate(input, false)?;
    let existing = get(conn, id)?;
    if let Some(principal) = &input.principal
        && principal != &existing.principal
    {
        return Err(StoreError::Invalid(crate::error::InvalidInput::single(
            "principal",
            principal,
            "cannot be changed; create a new user instead",
        )));
    }
    conn.execute(
        "UPDATE users SET email = ?2, first_name = ?3, last_name = ?4, updated_at = ?5
         WHERE id = ?1",
        params![id, input.email, input.first_name, input.last_name, now()],
    )?;
    events::append(
        conn,
        actor,
        "USER_UPDATED",
        Subject {
            kind: "user",
            id: &existing.principal,
        },
        &format!("user {} updated", existing.principal),
    )?;
    get(conn, id)
}

/// Deletes a user who has no devices; devices keep their owner for their whole history.
pub fn delete(conn: &Connection, actor: &str, id: i64) -> StoreResult<()> {
    let existing = get(conn, id)?;
    if existing.device_count > 0 {
        return Err(StoreError::Refused(format!(
            "user {} still has {} device(s); delete those devices first",
            existing.principal, existing.device_count
        )));
    }
    conn.execute("DELETE FROM users WHERE id = ?1", [id])?;
    events::append(
        conn,
        actor,
        "USER_DELETED",
        Subject {
            kind: "user",
            id: &existing.principal,
        },
        &format!("user {} deleted", existing.principal),
    )?;
    Ok(())
}
