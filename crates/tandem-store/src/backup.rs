//! Backups of a node's fleet (`tandem backup`, `tandem restore`).
//!
//! A backup is a directory (written as `NAME.partial`, fsynced, then renamed to `NAME`):
//!
//! ```text
//! NAME/
//!   replicated.db      the replicated database as of one commit (SQLite's online backup API)
//!   files/<sha256>     every app file that database refers to
//!   manifest.json      written last: format, source node, position, table digests, file list
//! ```
//!
//! A directory rather than an archive: every part is a plain file an operator can inspect
//! (`sqlite3 NAME/replicated.db`), no archive format or dependency is needed, and `tar` ships it
//! whole. The node-local store (`node.db`: this node's identity, HA configuration, Trusted Hosts,
//! logs) is deliberately not in it: a restore makes a new node, with an identity of its own.
//!
//! The copy runs inside one read transaction of a reader connection, so it is the database
//! exactly as of one commit while the writer goes on committing (WAL), and SQLite's backup
//! never restarts under write load.

use crate::changes::{self, TableDigest};
use crate::error::{StoreError, StoreResult};
use crate::{Database, FileStore};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The manifest's `format` value: what marks a directory as a Tandem backup.
pub const BACKUP_FORMAT: &str = "tandem-backup";
/// The layout version; a restore refuses a newer one rather than misread it.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const DATABASE_FILE: &str = "replicated.db";
pub const FILES_DIR: &str = "files";
/// Suffix of a backup being written; a directory with it is incomplete by definition.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Pages one step of SQLite's backup copies (4 MiB at the default 4 KiB page): progress is
/// reported between steps. The steps share one read transaction, so their number changes
/// neither consistency nor what the writer may do.
pub const BACKUP_PAGES_PER_STEP: i32 = 1024;
/// A locked step is retried this many times, [`BACKUP_BUSY_PAUSE`] apart (a second in all),
/// before the backup gives up: only a foreign program could hold the new file's lock.
const BACKUP_BUSY_RETRIES_MAX: u32 = 100;
const BACKUP_BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// Buffer for hashing and copying files: large enough that system calls do not dominate.
const COPY_BUFFER_BYTES: usize = 256 * 1024;

/// What a backup holds, as `manifest.json` says.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub created_at: String,
    pub source_node: String,
    pub schema_version: i64,
    /// The change-log position the copy ends at.
    pub position_seq: i64,
    pub database: FileEntry,
    /// SHA-256 over every table digest (`table rows sha256` lines): equal for two databases
    /// `tandem ha verify` finds identical.
    pub content_sha256: String,
    pub tables: Vec<TableDigest>,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub sha256: String,
    pub size_bytes: u64,
}

/// How far a backup has come, for a progress display.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum BackupProgress {
    #[serde(rename_all = "camelCase")]
    Database {
        pages: u64,
        total_pages: u64,
    },
    #[serde(rename_all = "camelCase")]
    Files {
        files: u64,
        total_files: u64,
    },
    Verifying,
}

/// Where a backup goes and whether it may replace an existing one.
#[derive(Clone, Debug)]
pub struct BackupTarget {
    pub path: PathBuf,
    pub force: bool,
}

/// Writes a backup of `db` and the app files it refers to at `target`, verifies it, and
/// returns its manifest. `db` may be serving: the copy is online.
pub async fn create(
    db: &Database,
    files: &FileStore,
    source_node: &str,
    target: &BackupTarget,
    progress: impl Fn(BackupProgress) + Send + Sync + 'static,
) -> StoreResult<Manifest> {
    check_target(target)?;
    let partial = partial_path(&target.path);
    remove_any(&partial)?;
    std::fs::create_dir_all(partial.join(FILES_DIR)).map_err(|e| StoreError::io(&partial, e))?;
    let progress: std::sync::Arc<dyn Fn(BackupProgress) + Send + Sync> =
        std::sync::Arc::new(progress);
    let result = write_partial(db, files, source_node, &partial, progress).await;
    match result {
        Ok(manifest) => {
            finish(&partial, target)?;
            Ok(manifest)
        }
        Err(error) => {
            // A failed backup must give its space back (a full disk is one way to get here).
            let _ = std::fs::remove_dir_all(&partial);
            Err(error)
        }
    }
}

fn check_target(target: &BackupTarget) -> StoreResult<()> {
    let path = &target.path;
    if path.exists() && !target.force {
        return Err(StoreError::Refused(format!(
            "--to {}: it already exists; choose a new name, or pass --force to replace it",
            path.display()
        )));
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    if !parent.as_os_str().is_empty() && !parent.is_dir() {
        return Err(StoreError::Refused(format!(
            "--to {}: the directory {} does not exist; create it first",
            path.display(),
            parent.display()
        )));
    }
    Ok(())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

fn remove_any(path: &Path) -> StoreResult<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io(path, error))
        }
        _ => Ok(()),
    }
}

async fn write_partial(
    db: &Database,
    files: &FileStore,
    source_node: &str,
    partial: &Path,
    progress: std::sync::Arc<dyn Fn(BackupProgress) + Send + Sync>,
) -> StoreResult<Manifest> {
    let db_copy = partial.join(DATABASE_FILE);
    let (copy_to, report) = (db_copy.clone(), progress.clone());
    let (position_seq, refs) = db
        .read(move |conn| copy_database(conn, &copy_to, &*report))
        .await?;
    let (files, partial, source_node) = (files.clone(), partial.to_owned(), source_node.to_owned());
    blocking(move || {
        copy_files(&files, &refs, &partial.join(FILES_DIR), &*progress)?;
        progress(BackupProgress::Verifying);
        let (schema_version, tables) = check_database(&db_copy, position_seq)?;
        let manifest = Manifest {
            format: BACKUP_FORMAT.into(),
            format_version: BACKUP_FORMAT_VERSION,
            created_at: crate::common::now(),
            source_node,
            schema_version,
            position_seq,
            database: hash_file(&db_copy)?,
            content_sha256: content_sha256(&tables),
            tables,
            files: refs,
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| StoreError::Corrupt(format!("cannot write the manifest: {error}")))?;
        write_synced(&partial.join(MANIFEST_FILE), &text)?;
        sync_path(&partial.join(FILES_DIR))?;
        sync_path(&partial)?;
        Ok(manifest)
    })
    .await
}

async fn blocking<R: Send + 'static>(
    job: impl FnOnce() -> StoreResult<R> + Send + 'static,
) -> StoreResult<R> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|error| StoreError::Corrupt(format!("the backup task failed: {error}")))?
}

/// Copies the database with SQLite's online backup API inside one read transaction of `conn`,
/// and lists the app files that very snapshot refers to.
fn copy_database(
    conn: &Connection,
    dest: &Path,
    progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> StoreResult<(i64, Vec<FileEntry>)> {
    // The read transaction pins one snapshot: the backup's steps all read it, so a commit by
    // the writer neither shows up halfway nor makes the backup start over.
    conn.execute_batch("BEGIN")?;
    let result = copy_in_transaction(conn, dest, progress);
    // Ends the read transaction whatever happened; the pooled connection must not keep it.
    let _ = conn.execute_batch("ROLLBACK");
    result
}

fn copy_in_transaction(
    conn: &Connection,
    dest: &Path,
    progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> StoreResult<(i64, Vec<FileEntry>)> {
    let position = changes::position(conn)?;
    let refs = conn
        .prepare("SELECT sha256, size_bytes FROM app_files ORDER BY sha256")?
        .query_map([], |row| {
            Ok(FileEntry {
                sha256: row.get(0)?,
                size_bytes: row.get::<_, i64>(1)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut copy = Connection::open(dest)?;
    {
        let backup = rusqlite::backup::Backup::new(conn, &mut copy)?;
        let mut busy_retries = 0;
        loop {
            let step = backup.step(BACKUP_PAGES_PER_STEP)?;
            let done = backup.progress();
            progress(BackupProgress::Database {
                pages: (done.pagecount - done.remaining).max(0) as u64,
                total_pages: done.pagecount.max(0) as u64,
            });
            match step {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => busy_retries = 0,
                // The destination is this backup's own new file and the source is read inside
                // the transaction above: nothing should hold a lock for long.
                _ => {
                    busy_retries += 1;
                    if busy_retries > BACKUP_BUSY_RETRIES_MAX {
                        return Err(StoreError::Refused(format!(
                            "the backup copy stayed locked for {BACKUP_BUSY_RETRIES_MAX} tries; \
                             is another program writing {}? Remove it and try again",
                            dest.display()
                        )));
                    }
                    std::thread::sleep(BACKUP_BUSY_PAUSE);
                }
            }
        }
    }
    // One file, no WAL beside it: what a restore copies is complete on its own.
    copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    drop(copy);
    sync_path(dest)?;
    Ok((position.seq, refs))
}

fn copy_files(
    store: &FileStore,
    refs: &[FileEntry],
    dest: &Path,
    progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> StoreResult<()> {
    for (index, entry) in refs.iter().enumerate() {
        let from = store.path_of(&entry.sha256);
        let to = dest.join(&entry.sha256);
        copy_synced(&from, &to)?;
        // The copy, not the original, is what the backup holds: check it.
        let copied = hash_file(&to)?;
        if copied != *entry {
            return Err(StoreError::Corrupt(format!(
                "app file {} copied as {} bytes with SHA-256 {}; the database expects {} bytes",
                from.display(),
                copied.size_bytes,
                copied.sha256,
                entry.size_bytes
            )));
        }
        progress(BackupProgress::Files {
            files: index as u64 + 1,
            total_files: refs.len() as u64,
        });
    }
    Ok(())
}

/// Checks a copied database: SQLite's integrity check, the replicated schema, and the position
/// the copy should end at. Returns its schema version and table digests.
fn check_database(path: &Path, position_seq: i64) -> StoreResult<(i64, Vec<TableDigest>)> {
    // Immutable: reading must not create a WAL or shared-memory file beside the copy.
    let uri = format!("file:{}?immutable=1", path.display());
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&uri, flags)?;
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails SQLite's integrity check: {integrity}",
            path.display()
        )));
    }
    let schema = crate::schema::REPLICATED;
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if application_id != schema.application_id || version > schema.version() {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            expected: "replicated database this release can read",
            reason: format!("application_id {application_id:#x}, schema version {version}"),
        });
    }
    let position = changes::position(&conn)?;
    if position.seq != position_seq {
        return Err(StoreError::Corrupt(format!(
            "{} ends at change {}, where {position_seq} was expected",
            path.display(),
            position.seq
        )));
    }
    Ok((version, changes::table_digests(&conn)?))
}

/// One digest over every table's digest: a single value to print and compare.
pub fn content_sha256(tables: &[TableDigest]) -> String {
    let mut hasher = Sha256::new();
    for table in tables {
        hasher.update(format!("{} {} {}\n", table.table, table.rows, table.sha256).as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn hash_file(path: &Path) -> StoreResult<FileEntry> {
    let io = |error| StoreError::io(path, error);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut size_bytes = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(io)?;
        if read == 0 {
            break;
        }
        size_bytes += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok(FileEntry {
        sha256: hex::encode(hasher.finalize()),
        size_bytes,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let io = |error| StoreError::io(path, error);
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Flushes a file, or a directory's entries, to disk.
fn sync_path(path: &Path) -> StoreResult<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|error| StoreError::io(path, error))
}

/// Copies `from` to `to` and flushes the copy.
fn copy_synced(from: &Path, to: &Path) -> StoreResult<()> {
    std::fs::copy(from, to).map_err(|error| StoreError::io(from, error))?;
    sync_path(to)
}

/// Puts the verified `partial` backup in place: replaces an existing one only with `--force`.
fn finish(partial: &Path, target: &BackupTarget) -> StoreResult<()> {
    if target.force {
        remove_any(&target.path)?;
    }
    std::fs::rename(partial, &target.path).map_err(|error| StoreError::io(&target.path, error))?;
    let parent = match target.path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_path(parent)
}

/// Checks a backup completely before anything uses it: the manifest, the database's size,
/// SHA-256, integrity, schema, position and table digests, and every app file. The error names
/// the file at fault and what to do.
pub fn verify(backup: &Path) -> StoreResult<Manifest> {
    let manifest = read_manifest(backup)?;
    let damaged = |what: String| {
        StoreError::Corrupt(format!(
            "the backup {} is damaged: {what}; copy it again from where it was kept, or take a \
             new one with `tandem backup`",
            backup.display()
        ))
    };
    let db_path = backup.join(DATABASE_FILE);
    if !db_path.is_file() {
        return Err(damaged(format!("{} is missing", db_path.display())));
    }
    let found = hash_file(&db_path)?;
    if found != manifest.database {
        return Err(damaged(format!(
            "{} has {} bytes (SHA-256 {}), the manifest says {} bytes (SHA-256 {})",
            db_path.display(),
            found.size_bytes,
            found.sha256,
            manifest.database.size_bytes,
            manifest.database.sha256
        )));
    }
    let (_, tables) =
        check_database(&db_path, manifest.position_seq).map_err(|e| damaged(e.to_string()))?;
    if tables != manifest.tables || content_sha256(&tables) != manifest.content_sha256 {
        return Err(damaged(format!(
            "the tables of {} do not match the manifest's digests",
            db_path.display()
        )));
    }
    for entry in &manifest.files {
        let path = backup.join(FILES_DIR).join(&entry.sha256);
        let found = hash_file(&path).map_err(|e| damaged(e.to_string()))?;
        if found != *entry {
            return Err(damaged(format!(
                "app file {} has {} bytes (SHA-256 {}), the manifest says {} bytes",
                path.display(),
                found.size_bytes,
                found.sha256,
                entry.size_bytes
            )));
        }
    }
    Ok(manifest)
}

fn read_manifest(backup: &Path) -> StoreResult<Manifest> {
    let foreign = |reason: String| StoreError::Foreign {
        path: backup.to_owned(),
        expected: "backup (the directory `tandem backup --to` wrote)",
        reason,
    };
    if !backup.is_dir() {
        return Err(if backup.exists() {
            foreign(
                "it is a file, not a backup directory; unpack it first if it is an archive".into(),
            )
        } else {
            StoreError::NotFound {
                what: "backup",
                key: backup.display().to_string(),
            }
        });
    }
    let path = backup.join(MANIFEST_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let hint = if partial_name(backup) {
                "; it is an unfinished backup (the backup was interrupted): take a new one"
            } else {
                ""
            };
            return Err(foreign(format!("it has no {MANIFEST_FILE}{hint}")));
        }
        Err(error) => return Err(StoreError::io(&path, error)),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|error| foreign(format!("{} cannot be read: {error}", path.display())))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(foreign(format!(
            "{} has format {:?}, not {BACKUP_FORMAT:?}",
            path.display(),
            manifest.format
        )));
    }
    if manifest.format_version > BACKUP_FORMAT_VERSION {
        return Err(foreign(format!(
            "it has backup format version {}, newer than this release's {BACKUP_FORMAT_VERSION}; \
             restore it with the Tandem release that wrote it",
            manifest.format_version
        )));
    }
    Ok(manifest)
}

fn partial_name(path: &Path) -> bool {
    path.as_os_str()
        .to_string_lossy()
        .trim_end_matches('/')
        .ends_with(PARTIAL_SUFFIX)
}

/// Copies a verified backup's database and app files into a new node's `db_path` and file
/// store. The caller checked the backup with [`verify`] first.
pub fn install(
    backup: &Path,
    manifest: &Manifest,
    db_path: &Path,
    files: &FileStore,
) -> StoreResult<()> {
    let from = backup.join(DATABASE_FILE);
    copy_synced(&from, db_path)?;
    for entry in &manifest.files {
        let from = backup.join(FILES_DIR).join(&entry.sha256);
        let to = files.path_of(&entry.sha256);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::io(dir, error))?;
        }
        copy_synced(&from, &to)?;
    }
    Ok(())
}
