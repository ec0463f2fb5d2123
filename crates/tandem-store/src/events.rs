//! The append-only audit log: who did what to which record, kept up to a retention bound.

use crate::common::{Page, PageRequest, now};
use crate::error::StoreResult;
use rusqlite::{Connection, Row, params};
use serde::Serialize;

/// Events kept. Older ones are pruned: at roughly 200 bytes a row this bounds the log to about
/// 200 MB, several months of a 100,000-device fleet's administration.
pub const EVENTS_RETAINED_MAX: i64 = 1_000_000;
/// Pruning runs on every this-many-th event, so its cost is spread thin and bounded.
const PRUNE_EVERY_EVENTS: i64 = 1024;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub subject_type: String,
    pub subject_id: String,
    pub message: String,
}

/// What an event is about.
pub struct Subject<'a> {
    pub kind: &'static str,
    pub id: &'a str,
}

/// Appends an event in the caller's transaction, so the event exists exactly when the change does.
pub fn append(
    conn: &Connection,
    actor: &str,
    kind: &str,
    subject: Subject<'_>,
    message: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO events (at, actor, kind, subject_type, subject_id, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now(),
        actor,
        kind,
        subject.kind,
        subject.id,
        message
    ])?;
    let id = conn.last_insert_rowid();
    if id % PRUNE_EVERY_EVENTS == 0 {
        conn.prepare_cached("DELETE FROM events WHERE id <= ?1")?
            .execute([id - EVENTS_RETAINED_MAX])?;
    }
    Ok(())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        kind: row.get(3)?,
        subject_type: row.get(4)?,
        subject_id: row.get(5)?,
        message: row.get(6)?,
    })
}

/// Newest first; `query` matches the kind, subject or message.
pub fn list(conn: &Connection, request: &PageRequest) -> StoreResult<Page<Event>> {
    let (pattern, limit, offset) = request.validated()?;
    const FILTER: &str = "kind LIKE ?1 ESCAPE '\\' OR subject_id LIKE ?1 ESCAPE '\\'
                          OR message LIKE ?1 ESCAPE '\\'";
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM events WHERE {FILTER}"),
        [&pattern],
        |row| row.get(0),
    )?;
    let results = conn
        .prepare_cached(&format!(
            "SELECT id, at, actor, kind, subject_type, subject_id, message FROM events
             WHERE {FILTER} ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit, offset], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

/// Newest first, of one `kind` only when given (the Admin portal's filter); `query` as in
/// [`list`].
pub fn list_of_kind(
    conn: &Connection,
    request: &PageRequest,
    kind: Option<&str>,
) -> StoreResult<Page<Event>> {
    let Some(kind) = kind else {
        return list(conn, request);
    };
    let (pattern, limit, offset) = request.validated()?;
    const FILTER: &str = "kind = ?4 AND (subject_id LIKE ?1 ESCAPE '\\'
                          OR message LIKE ?1 ESCAPE '\\')";
    let total: i64 = conn
        .prepare_cached(&format!(
            // Parameters 2 and 3 (limit and offset) are bound but unused here: one numbering
            // for both statements.
            "SELECT count(*) FROM events WHERE {FILTER}"
        ))?
        .query_row(params![pattern, limit, offset, kind], |row| row.get(0))?;
    let results = conn
        .prepare_cached(&format!(
            "SELECT id, at, actor, kind, subject_type, subject_id, message FROM events
             WHERE {FILTER} ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit, offset, kind], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

/// Kinds of event offered as a filter; more kinds than any release writes.
pub const EVENT_KINDS_MAX: i64 = 200;

/// The kinds of event the log holds, in alphabetical order (read from the kind index).
pub fn kinds(conn: &Connection) -> StoreResult<Vec<String>> {
    Ok(conn
        .prepare_cached("SELECT DISTINCT kind FROM events ORDER BY kind LIMIT ?1")?
        .query_map([EVENT_KINDS_MAX], |row| row.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}
