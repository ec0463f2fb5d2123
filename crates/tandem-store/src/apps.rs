//! Apps in the catalogue: metadata in the replicated database, the app file (an IPA, APK…) in
//! the content-addressed file store, referenced by its SHA-256.

use crate::common::{Check, Page, PageRequest, now};
use crate::devices::Platform;
use crate::error::{StoreError, StoreResult};
use crate::events::{self, Subject};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

text_enum!(AppSource {
    InHouse => "IN_HOUSE",
    Public => "PUBLIC",
});

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFile {
    pub sha256: String,
    pub size_bytes: i64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub id: i64,
    pub platform: Platform,
    pub bundle_id: String,
    pub name: String,
    pub version: String,
    pub source: AppSource,
    pub file: Option<AppFile>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppInput {
    pub platform: Option<Platform>,
    pub bundle_id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub source: Option<AppSource>,
}

/// A bundle id is reverse-DNS: at least two dot-separated parts of letters, digits, - and _.
fn bundle_id_is_valid(bundle_id: &str) -> bool {
    let parts: Vec<&str> = bundle_id.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

struct ValidApp {
    platform: Platform,
    bundle_id: String,
    name: String,
    version: String,
    source: AppSource,
}

fn validate(input: &AppInput) -> StoreResult<ValidApp> {
    let mut check = Check::new();
    if input.platform.is_none() {
        check.fail(
            "platform",
            "",
            format!("is required: one of {}", Platform::expected()),
        );
    }
    let bundle_id = input.bundle_id.clone().unwrap_or_default();
    check.text("bundleId", &bundle_id, 255);
    if !bundle_id.trim().is_empty() && !bundle_id_is_valid(&bundle_id) {
        check.fail(
            "bundleId",
            &bundle_id,
            "must be reverse-DNS like com.example.app (letters, digits, - and _ between dots)",
        );
    }
    let name = input.name.clone().unwrap_or_default();
    check.text("name", &name, 200);
    let version = input.version.clone().unwrap_or_default();
    check.token(
        "version",
        &version,
        64,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'),
        "letters, digits and . - _ +",
    );
    check.finish()?;
    Ok(ValidApp {
        platform: input.platform.unwrap_or(Platform::Ios),
        bundle_id,
        name,
        version,
        source: input.source.unwrap_or(AppSource::InHouse),
    })
}

/// Checks an app's fields as [`create`] would, without writing: lets a caller refuse bad
/// fields before receiving a large app file.
pub fn validate_input(input: &AppInput) -> StoreResult<()> {
    validate(input).map(|_| ())
}

const SELECT: &str = "SELECT a.id, a.platform, a.bundle_id, a.name, a.version, a.source,
        a.file_sha256, f.size_bytes, a.created_at, a.updated_at
    FROM apps a LEFT JOIN app_files f ON f.sha256 = a.file_sha256";

fn from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    let sha256: Option<String> = row.get(6)?;
    let size_bytes: Option<i64> = row.get(7)?;
    Ok(App {
        id: row.get(0)?,
        platform: row.get(1)?,
        bundle_id: row.get(2)?,
        name: row.get(3)?,
        version: row.get(4)?,
        source: row.get(5)?,
        file: sha256
            .zip(size_bytes)
            .map(|(sha256, size_bytes)| AppFile { sha256, size_bytes }),
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

fn subject(bundle_id: &str) -> Subject<'_> {
    Subject {
        kind: "app",
        id: bundle_id,
    }
}

pub fn create(conn: &Connection, actor: &str, input: &AppInput) -> StoreResult<App> {
    let app = validate(input)?;
    let at = now();
    conn.execute(
        "INSERT INTO apps (platform, bundle_id, name, version, source, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            app.platform,
            app.bundle_id,
            app.name,
            app.version,
            app.source,
            at
        ],
    )
    .map_err(StoreError::from_sqlite)?;
    let id = conn.last_insert_rowid();
    events::append(
        conn,
        actor,
        "APP_CREATED",
        subject(&app.bundle_id),
        &format!(
            "{} app {} {} added",
            app.platform, app.bundle_id, app.version
        ),
    )?;
    get(conn, id)
}

pub fn get(conn: &Connection, id: i64) -> StoreResult<App> {
    conn.prepare_cached(&format!("{SELECT} WHERE a.id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found("app", id))
}

pub fn list(conn: &Connection, request: &PageRequest) -> StoreResult<Page<App>> {
    let (pattern, limit, offset) = request.validated()?;
    const FILTER: &str = "a.bundle_id LIKE ?1 ESCAPE '\\' OR a.name LIKE ?1 ESCAPE '\\'";
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM apps a WHERE {FILTER}"),
        [&pattern],
        |row| row.get(0),
    )?;
    let results = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE {FILTER} ORDER BY a.id LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![pattern, limit, offset], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(total, offset, results))
}

pub fn update(conn: &Connection, actor: &str, id: i64, input: &AppInput) -> StoreResult<App> {
    let app = validate(input)?;
    get(conn, id)?;
    conn.execute(
        "UPDATE apps SET platform = ?2, bundle_id = ?3, name = ?4, version = ?5, source = ?6,
            updated_at = ?7
         WHERE id = ?1",
        params![
            id,
            app.platform,
            app.bundle_id,
            app.name,
            app.version,
            app.source,
            now()
        ],
    )
    .map_err(StoreError::from_sqlite)?;
    events::append(
        conn,
        actor,
        "APP_UPDATED",
        subject(&app.bundle_id),
        &format!("app {} {} updated", app.bundle_id, app.version),
    )?;
    get(conn, id)
}

pub fn delete(conn: &Connection, actor: &str, id: i64) -> StoreResult<()> {
    let app = get(conn, id)?;
    conn.execute("DELETE FROM apps WHERE id = ?1", [id])?;
    events::append(
        conn,
        actor,
        "APP_DELETED",
        subject(&app.bundle_id),
        &format!("app {} {} deleted", app.bundle_id, app.version),
    )?;
    Ok(())
}

/// Points the app at a file already written to the file store.
pub fn attach_file(
    conn: &Connection,
    actor: &str,
    id: i64,
    sha256: &str,
    size_bytes: i64,
) -> StoreResult<App> {
    let app = get(conn, id)?;
    conn.execute(
        "INSERT OR IGNORE INTO app_files (sha256, size_bytes, created_at) VALUES (?1, ?2, ?3)",
        params![sha256, size_bytes, now()],
    )?;
    conn.execute(
        "UPDATE apps SET file_sha256 = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, sha256, now()],
    )?;
    events::append(
        conn,
        actor,
        "APP_FILE_UPLOADED",
        subject(&app.bundle_id),
        &format!(
            "app {} {}: file {sha256} ({size_bytes} bytes)",
            app.bundle_id, app.version
        ),
    )?;
    get(conn, id)
}
