//! Policies and configurations: typed JSON payloads with a priority and a version, assigned to
//! devices through labels. They share one table and one API shape; `kind` tells them apart.

use crate::common::{Check, Page, PageRequest, now};
use crate::error::{InvalidInput, StoreError, StoreResult};
use crate::events::{self, Subject};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(PolicyKind {
    Policy => "POLICY",
    Configuration => "CONFIGURATION",
});

impl PolicyKind {
    /// The word used in messages and events.
    pub fn noun(self) -> &'static str {
        match self {
            PolicyKind::Policy => "policy",
            PolicyKind::Configuration => "configuration",
        }
    }
}

/// Largest payload accepted. Device profiles are a few kilobytes; this leaves room for
/// certificates embedded in a Wi-Fi or VPN configuration.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// Priorities run from 0 (applied first, wins conflicts) to this.
pub const PRIORITY_MAX: i64 = 10_000;
/// Labels one assignment call may name.
pub const ASSIGN_LABELS_MAX: usize = 100;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub id: i64,
    pub kind: PolicyKind,
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub priority: i64,
    pub version: i64,
    pub payload: serde_json::Value,
    pub labels: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInput {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub policy_type: Option<String>,
    pub priority: Option<i64>,
    pub payload: Option<serde_json::Value>,
}

/// What a device is told at check-in: enough to notice a change and fetch the payload.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedPolicy {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub priority: i64,
    pub version: i64,
}

fn validate(input: &PolicyInput) -> StoreResult<(String, String, i64, String)> {
    let mut check = Check::new();
    let name = input.name.clone().unwrap_or_default();
    check.text("name", &name, 128);
    let policy_type = input.policy_type.clone().unwrap_or_default();
    check.token(
        "type",
        &policy_type,
        64,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_',
        "upper-case letters, digits and _ (e.g. PASSCODE, WIFI)",
    );
    let priority = input.priority.unwrap_or(PRIORITY_MAX / 2);
    check.range("priority", priority, 0, PRIORITY_MAX);
    let payload = input
        .payload
        .clone()
        .unwrap_or_else(|| serde_json::json!({}));
    let payload_text = payload.to_string();
    if !payload.is_object() {
        check.fail("payload", &payload_text, "must be a JSON object");
    } else if payload_text.len() > PAYLOAD_BYTES_MAX {
        check.fail(
            "payload",
            &payload_text,
            format!("must be at most {PAYLOAD_BYTES_MAX} bytes of JSON"),
        );
    }
    check.finish()?;
    Ok((name, policy_type, priority, payload_text))
}

const SELECT: &str = "SELECT p.id, p.kind, p.name, p.type, p.priority, p.version, p.payload,
        (SELECT json_group_array(l.name) FROM policy_labels pl JOIN labels l ON l.id = pl.label_id
         WHERE pl.policy_id = p.id),
        p.created_at, p.updated_at
    FROM policies p";

fn json_column(row: &Row<'_>, index: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, error.into())
    })
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Policy> {
    let labels = json_column(row, 7)?;
    Ok(Policy {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        policy_type: row.get(3)?,
        priority: row.get(4)?,
        version: row.get(5)?,
        payload: json_column(row, 6)?,
        labels: labels
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

fn subject(kind: PolicyKind, name: &str) -> Subject<'_> {
    Subject {
        kind: kind.noun(),
        id: name,
    }
}

pub fn create(
    conn: &Connection,
    actor: &str,
    kind: PolicyKind,
    input: &PolicyInput,
) -> StoreResult<Policy> {
    let (name, policy_type, priority, payload) = validate(input)?;
    let at = now();
    conn.execute(
        "INSERT INTO policies (kind, name, type, priority, version, payload, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6)",
        params![kind, name, policy_type, priority, payload, at],
    )
    .map_err(StoreError::from_sqlite)?;
    let id = conn.last_insert_rowid();
    events::append(
        conn,
        actor,
        &format!("{kind}_CREATED"),
        subject(kind, &name),
        &format!("{} {name} created", kind.noun()),
    )?;
    get(conn, kind, id)
}

pub fn get(conn: &Connection, kind: PolicyKind, id: i64) -> StoreResult<Policy> {
    conn.prepare_cached(&format!("{SELECT} WHERE p.id = ?1 AND p.kind = ?2"))?
        .query_row(params![id, kind], from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(kind.noun(), id))
}

pub fn list(
    conn: &Connection,
    kind: PolicyKind,
    request: &PageRequest,
) -> StoreResult<Page<Policy>> {
    let (pattern, limit, offset) = request.validated()?;
    const FILTER: &str =
        "p.kind = ?4 AND (p.name LIKE ?1 ESCAPE '\\' OR p.type LIKE ?1 ESCAPE '\\')";
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM policies p WHERE {FILTER}"),
        params![pattern, 0, 0, kind],
        |row| row.get(0),
    )?;
    let results = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE {FILTER} ORDER BY p.priority, p.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit, offset, kind], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

/// Replaces name, type, priority and payload; the version goes up by one so devices refetch.
pub fn update(
    conn: &Connection,
    actor: &str,
    kind: PolicyKind,
    id: i64,
    input: &PolicyInput,
) -> StoreResult<Policy> {
    let (name, policy_type, priority, payload) = validate(input)?;
    get(conn, kind, id)?;
    conn.execute(
        "UPDATE policies SET name = ?2, type = ?3, priority = ?4, payload = ?5,
            version = version + 1, updated_at = ?6
         WHERE id = ?1",
        params![id, name, policy_type, priority, payload, now()],
    )
    .map_err(StoreError::from_sqlite)?;
    events::append(
        conn,
        actor,
        &format!("{kind}_UPDATED"),
        subject(kind, &name),
        &format!("{} {name} updated", kind.noun()),
    )?;
    get(conn, kind, id)
}

pub fn delete(conn: &Connection, actor: &str, kind: PolicyKind, id: i64) -> StoreResult<()> {
    let existing = get(conn, kind, id)?;
    conn.execute("DELETE FROM policies WHERE id = ?1", [id])?;
    events::append(
        conn,
        actor,
        &format!("{kind}_DELETED"),
        subject(kind, &existing.name),
        &format!("{} {} deleted", kind.noun(), existing.name),
    )?;
    Ok(())
}

/// Assigns the policy to every device carrying any of `label_ids`.
pub fn assign_labels(
    conn: &Connection,
    actor: &str,
    kind: PolicyKind,
    id: i64,
    label_ids: &[i64],
) -> StoreResult<Policy> {
    if label_ids.is_empty() || label_ids.len() > ASSIGN_LABELS_MAX {
        return Err(StoreError::Invalid(InvalidInput::single(
            "labelIds",
            &label_ids.len().to_string(),
            format!("must list between 1 and {ASSIGN_LABELS_MAX} label ids"),
        )));
    }
    let policy = get(conn, kind, id)?;
    for label_id in label_ids {
        crate::labels::get(conn, *label_id)?;
        conn.execute(
            "INSERT OR IGNORE INTO policy_labels (policy_id, label_id) VALUES (?1, ?2)",
            params![id, label_id],
        )?;
    }
    events::append(
        conn,
        actor,
        &format!("{kind}_ASSIGNED"),
        subject(kind, &policy.name),
        &format!(
            "{} {} assigned to labels {label_ids:?}",
            kind.noun(),
            policy.name
        ),
    )?;
    get(conn, kind, id)
}

pub fn unassign_label(
    conn: &Connection,
    actor: &str,
    kind: PolicyKind,
    id: i64,
    label_id: i64,
) -> StoreResult<Policy> {
    let policy = get(conn, kind, id)?;
    let removed = conn.execute(
        "DELETE FROM policy_labels WHERE policy_id = ?1 AND label_id = ?2",
        params![id, label_id],
    )?;
    if removed == 0 {
        return Err(StoreError::NotFound {
            what: "label assignment",
            key: format!("{} {id} → label {label_id}", kind.noun()),
        });
    }
    events::append(
        conn,
        actor,
        &format!("{kind}_UNASSIGNED"),
        subject(kind, &policy.name),
        &format!(
            "{} {} removed from label {label_id}",
            kind.noun(),
            policy.name
        ),
    )?;
    get(conn, kind, id)
}

/// Policies of `kind` a device receives through its labels, in the order it applies them.
pub fn assigned_to_device(
    conn: &Connection,
    device_id: i64,
    kind: PolicyKind,
) -> StoreResult<Vec<AssignedPolicy>> {
    Ok(conn
        .prepare_cached(
            "SELECT DISTINCT p.id, p.name, p.type, p.priority, p.version FROM policies p
             JOIN policy_labels pl ON pl.policy_id = p.id
             JOIN device_labels dl ON dl.label_id = pl.label_id
             WHERE dl.device_id = ?1 AND p.kind = ?2
             ORDER BY p.priority, p.id",
        )?
        .query_map(params![device_id, kind], |row| {
            Ok(AssignedPolicy {
                id: row.get(0)?,
                name: row.get(1)?,
                policy_type: row.get(2)?,
                priority: row.get(3)?,
                version: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// The full policy, if it is assigned to the device; a device cannot read others' payloads.
pub fn for_device(conn: &Connection, device_id: i64, id: i64) -> StoreResult<Policy> {
    let assigned: Option<PolicyKind> = conn
        .prepare_cached(
            "SELECT p.kind FROM policies p
             JOIN policy_labels pl ON pl.policy_id = p.id
             JOIN device_labels dl ON dl.label_id = pl.label_id
             WHERE dl.device_id = ?1 AND p.id = ?2 LIMIT 1",
        )?
        .query_row(params![device_id, id], |row| row.get(0))
        .optional()?;
    match assigned {
        Some(kind) => get(conn, kind, id),
        None => Err(StoreError::not_found(
            "assigned policy or configuration",
            id,
        )),
    }
}
