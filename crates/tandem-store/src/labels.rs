//! Labels: named groups of devices, through which policies and configurations are assigned.

use crate::common::{Check, Page, PageRequest, now};
use crate::error::{InvalidInput, StoreError, StoreResult};
use crate::events::{self, Subject};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// Devices one apply call may name, so one request is one bounded transaction.
pub const APPLY_DEVICES_MAX: usize = 1000;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Label {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub device_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelInput {
    pub name: Option<String>,
    pub description: Option<String>,
}

fn validate(input: &LabelInput) -> StoreResult<(String, String)> {
    let mut check = Check::new();
    let name = input.name.clone().unwrap_or_default();
    check.text("name", &name, 128);
    let description = input.description.clone().unwrap_or_default();
    if !description.is_empty() {
        check.text("description", &description, 1024);
    }
    check.finish()?;
    Ok((name, description))
}

const SELECT: &str = "SELECT l.id, l.name, l.description,
        (SELECT count(*) FROM device_labels dl WHERE dl.label_id = l.id), l.created_at, l.updated_at
    FROM labels l";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Label> {
    Ok(Label {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        device_count: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

fn subject(name: &str) -> Subject<'_> {
    Subject {
        kind: "label",
        id: name,
    }
}

pub fn create(conn: &Connection, actor: &str, input: &LabelInput) -> StoreResult<Label> {
    let (name, description) = validate(input)?;
    let at = now();
    conn.execute(
        "INSERT INTO labels (name, description, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![name, description, at],
    )
    .map_err(StoreError::from_sqlite)?;
    let id = conn.last_insert_rowid();
    events::append(
        conn,
        actor,
        "LABEL_CREATED",
        subject(&name),
        &format!("label {name} created"),
    )?;
    get(conn, id)
}

pub fn get(conn: &Connection, id: i64) -> StoreResult<Label> {
    conn.prepare_cached(&format!("{SELECT} WHERE l.id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("label", id))
}

pub fn list(conn: &Connection, request: &PageRequest) -> StoreResult<Page<Label>> {
    let (pattern, limit, offset) = request.validated()?;
    const FILTER: &str = "l.name LIKE ?1 ESCAPE '\\' OR l.description LIKE ?1 ESCAPE '\\'";
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM labels l WHERE {FILTER}"),
        [&pattern],
        |row| row.get(0),
    )?;
    let results = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE {FILTER} ORDER BY l.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit, offset], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

pub fn update(conn: &Connection, actor: &str, id: i64, input: &LabelInput) -> StoreResult<Label> {
    let (name, description) = validate(input)?;
    get(conn, id)?;
    conn.execute(
        "UPDATE labels SET name = ?2, description = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, name, description, now()],
    )
    .map_err(StoreError::from_sqlite)?;
    events::append(
        conn,
        actor,
        "LABEL_UPDATED",
        subject(&name),
        &format!("label {name} updated"),
    )?;
    get(conn, id)
}

pub fn delete(conn: &Connection, actor: &str, id: i64) -> StoreResult<()> {
    let label = get(conn, id)?;
    conn.execute("DELETE FROM labels WHERE id = ?1", [id])?;
    events::append(
        conn,
        actor,
        "LABEL_DELETED",
        subject(&label.name),
        &format!(
            "label {} deleted ({} devices lose it)",
            label.name, label.device_count
        ),
    )?;
    Ok(())
}

/// Applies the label to the devices named by UUID; all or none (an unknown UUID fails the call).
pub fn apply(
    conn: &Connection,
    actor: &str,
    id: i64,
    device_uuids: &[String],
) -> StoreResult<Label> {
    if device_uuids.is_empty() || device_uuids.len() > APPLY_DEVICES_MAX {
        return Err(StoreError::Invalid(InvalidInput::single(
            "deviceUuids",
            &device_uuids.len().to_string(),
            format!("must list between 1 and {APPLY_DEVICES_MAX} device UUIDs"),
        )));
    }
    let label = get(conn, id)?;
    let at = now();
    let mut find = conn.prepare_cached("SELECT id FROM devices WHERE uuid = ?1")?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO device_labels (device_id, label_id, applied_at) VALUES (?1, ?2, ?3)",
    )?;
    for uuid in device_uuids {
        let device_id: i64 = find
            .query_row([uuid], |row| row.get(0))
            .optional()?
            .ok_or_else(|| StoreError::not_found("device", uuid))?;
        insert.execute(params![device_id, id, at])?;
    }
    events::append(
        conn,
        actor,
        "LABEL_APPLIED",
        subject(&label.name),
        &format!(
            "label {} applied to {} device(s)",
            label.name,
            device_uuids.len()
        ),
    )?;
    get(conn, id)
}

pub fn remove(conn: &Connection, actor: &str, id: i64, device_uuid: &str) -> StoreResult<Label> {
    let label = get(conn, id)?;
    let removed = conn.execute(
        "DELETE FROM device_labels
         WHERE label_id = ?1 AND device_id = (SELECT id FROM devices WHERE uuid = ?2)",
        params![id, device_uuid],
    )?;
    if removed == 0 {
        return Err(StoreError::NotFound {
            what: "label on device",
            key: format!("{} on {device_uuid}", label.name),
        });
    }
    events::append(
        conn,
        actor,
        "LABEL_REMOVED",
        subject(&label.name),
        &format!("label {} removed from device {device_uuid}", label.name),
    )?;
    get(conn, id)
}
