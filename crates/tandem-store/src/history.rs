//! Sync History, in the node-local store: what each sync this node ran did, and how it ended.

use crate::common::now;
use crate::error::StoreResult;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Rows kept; older ones are pruned. An hourly schedule fills this in over a year.
pub const SYNC_HISTORY_RETAINED_MAX: i64 = 10_000;

/// Who started a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// An operator: Run Sync Now, `tandem failover sync`.
    Manual,
    /// The schedule (StartTime / Run Every).
    Scheduled,
    /// Continuous or synchronous replication: one row per stream, from connect to its end.
    Continuous,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
            Trigger::Continuous => "continuous",
        }
    }
}

/// How a finished sync ended, with what it moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `full`, `incremental`, or `none` (nothing to do).
    pub kind: Option<String>,
    /// `succeeded`, `failed` or `refused`.
    pub result: String,
    pub entries: i64,
    pub files: i64,
    pub bytes: i64,
    pub position_seq: Option<i64>,
    /// Why a full sync was chosen, where diverged entries were saved, and the like.
    pub note: Option<String>,
    pub error: Option<String>,
}

/// One row of Sync History.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    pub id: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub source: String,
    pub trigger: String,
    pub kind: Option<String>,
    pub result: String,
    pub entries: i64,
    pub files: i64,
    pub bytes: i64,
    pub position_seq: Option<i64>,
    pub note: Option<String>,
    pub error: Option<String>,
}

/// Records the start of a sync and returns its id. Syncs never overlap, so rows of the same sort
/// still `running` (a sync, or a stream) belong to a process that was killed mid-sync; they are
/// marked `interrupted` first. A stream runs beside manual syncs, so neither marks the other.
pub fn start(conn: &Connection, source: &str, trigger: Trigger) -> StoreResult<i64> {
    let streams = trigger == Trigger::Continuous;
    conn.execute(
        "UPDATE sync_history SET result = 'interrupted', ended_at = ?1,
         error = 'the process stopped before the sync finished'
         WHERE result = 'running' AND (trigger = 'continuous') = ?2",
        params![now(), streams],
    )?;
    conn.execute(
        "INSERT INTO sync_history (started_at, source, trigger, kind, result)
         VALUES (?1, ?2, ?3, ?4, 'running')",
        params![now(), source, trigger.as_str(), streams.then_some("stream")],
    )?;
    let id = conn.last_insert_rowid();
    conn.execute(
        "DELETE FROM sync_history WHERE id <= ?1",
        [id - SYNC_HISTORY_RETAINED_MAX],
    )?;
    Ok(id)
}

/// Records a sync that was due but did not start (one was still running).
pub fn record_skipped(
    conn: &Connection,
    source: &str,
    trigger: Trigger,
    reason: &str,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO sync_history (started_at, ended_at, source, trigger, result, error)
         VALUES (?1, ?1, ?2, ?3, 'skipped', ?4)",
        params![now(), source, trigger.as_str(), reason],
    )?;
    Ok(())
}

/// Records how sync `id` ended.
pub fn finish(conn: &Connection, id: i64, outcome: &Outcome) -> StoreResult<()> {
    conn.execute(
        "UPDATE sync_history SET ended_at = ?2, kind = ?3, result = ?4, entries = ?5, files = ?6,
         bytes = ?7, position_seq = ?8, note = ?9, error = ?10 WHERE id = ?1",
        params![
            id,
            now(),
            outcome.kind,
            outcome.result,
            outcome.entries,
            outcome.files,
            outcome.bytes,
            outcome.position_seq,
            outcome.note,
            outcome.error
        ],
    )?;
    Ok(())
}

/// What a running stream (`Trigger::Continuous`) has applied so far.
pub fn progress(conn: &Connection, id: i64, applied: &Outcome) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE sync_history SET entries = ?2, files = ?3, bytes = ?4, position_seq = ?5
         WHERE id = ?1 AND result = 'running'",
    )?
    .execute(params![
        id,
        applied.entries,
        applied.files,
        applied.bytes,
        applied.position_seq
    ])?;
    Ok(())
}

/// Marks the stream rows a stopped process left running as interrupted (at start: this process
/// runs no stream yet).
pub fn interrupt_streams(conn: &Connection) -> StoreResult<()> {
    conn.execute(
        "UPDATE sync_history SET result = 'interrupted', ended_at = ?1,
         error = 'the process stopped while the stream ran'
         WHERE result = 'running' AND trigger = 'continuous'",
        [now()],
    )?;
    Ok(())
}

/// Ends every running stream row: the node stopped following (a promotion, a new
/// configuration) while the stream was open. What it applied stays as last recorded.
pub fn end_streams(conn: &Connection, note: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE sync_history SET result = 'succeeded', ended_at = ?1, note = ?2
         WHERE result = 'running' AND trigger = 'continuous'",
        params![now(), note],
    )?;
    Ok(())
}

/// The newest `limit` rows, newest first.
/// When the newest successful sync (scheduled or manual; streams are measured by their lag)
/// ended, in Unix seconds: what the "last successful sync" alert watches.
pub fn last_succeeded_at(conn: &Connection) -> StoreResult<Option<i64>> {
    let ended: Option<String> = conn
        .prepare_cached(
            "SELECT ended_at FROM sync_history
             WHERE result = 'succeeded' AND trigger != 'continuous' AND ended_at IS NOT NULL
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([], |row| row.get(0))
        .optional()?;
    ended
        .map(|at| crate::common::parse_timestamp(&at).map(|at| at.unix_timestamp()))
        .transpose()
}

pub fn recent(conn: &Connection, limit: i64) -> StoreResult<Vec<SyncRecord>> {
    page(conn, limit, 0)
}

/// `limit` rows, newest first, after skipping the `offset` newest (a page of Sync History).
pub fn page(conn: &Connection, limit: i64, offset: i64) -> StoreResult<Vec<SyncRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, started_at, ended_at, source, trigger, kind, result, entries, files, bytes,
                    position_seq, note, error
             FROM sync_history ORDER BY id DESC LIMIT ?1 OFFSET ?2",
        )?
        .query_map([limit, offset.max(0)], |row| {
            Ok(SyncRecord {
                id: row.get(0)?,
                started_at: row.get(1)?,
                ended_at: row.get(2)?,
                source: row.get(3)?,
                trigger: row.get(4)?,
                kind: row.get(5)?,
                result: row.get(6)?,
                entries: row.get(7)?,
                files: row.get(8)?,
                bytes: row.get(9)?,
                position_seq: row.get(10)?,
                note: row.get(11)?,
                error: row.get(12)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// A node-local setting.
pub fn setting(conn: &Connection, key: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM local_settings WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

/// Sets a node-local setting.
pub fn set_setting(conn: &Connection, key: &str, value: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO local_settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![key, value, now()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::OpenMode;
    use crate::node_local::NodeStore;

    #[test]
    fn a_killed_sync_is_marked_interrupted_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(&dir.path().join("node.db"), OpenMode::Create).unwrap();
        let db = store.database();
        let first = db
            .write_blocking(|conn| start(conn, "peer:2222", Trigger::Manual))
            .unwrap();
        let second = db
            .write_blocking(|conn| start(conn, "peer:2222", Trigger::Scheduled))
            .unwrap();
        let outcome = Outcome {
            kind: Some("incremental".into()),
            result: "succeeded".into(),
            entries: 12,
            ..Outcome::default()
        };
        db.write_blocking(move |conn| finish(conn, second, &outcome))
            .unwrap();
        let rows = db.read_blocking(|conn| recent(conn, 10)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].id, rows[0].result.as_str()), (second, "succeeded"));
        assert_eq!(rows[0].entries, 12);
        assert_eq!(
            (rows[1].id, rows[1].result.as_str()),
            (first, "interrupted")
        );
        db.write_blocking(|conn| set_setting(conn, "k", "v1"))
            .unwrap();
        db.write_blocking(|conn| set_setting(conn, "k", "v2"))
            .unwrap();
        let value = db.read_blocking(|conn| setting(conn, "k")).unwrap();
        assert_eq!(value.as_deref(), Some("v2"));
    }

    #[test]
    fn streams_and_skipped_syncs_have_rows_beside_ordinary_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(&dir.path().join("node.db"), OpenMode::Create).unwrap();
        let db = store.database();
        let stream = db
            .write_blocking(|conn| start(conn, "peer:2222", Trigger::Continuous))
            .unwrap();
        let applied = Outcome {
            entries: 40,
            files: 1,
            bytes: 9_000,
            position_seq: Some(140),
            ..Outcome::default()
        };
        db.write_blocking(move |conn| progress(conn, stream, &applied))
            .unwrap();
        // A manual sync while the stream runs leaves the stream's row running, and the other way
        // round; a sync that meets a running one is recorded as skipped.
        let manual = db
            .write_blocking(|conn| start(conn, "peer:2222", Trigger::Manual))
            .unwrap();
        db.write_blocking(|conn| record_skipped(conn, "peer:2222", Trigger::Scheduled, "busy"))
            .unwrap();
        let rows = db.read_blocking(|conn| recent(conn, 10)).unwrap();
        let result = |id: i64| {
            let row = rows.iter().find(|row| row.id == id).unwrap();
            (row.trigger.clone(), row.kind.clone(), row.result.clone())
        };
        assert_eq!(
            result(stream),
            ("continuous".into(), Some("stream".into()), "running".into())
        );
        assert_eq!(result(manual), ("manual".into(), None, "running".into()));
        assert_eq!(
            (rows[0].trigger.as_str(), rows[0].result.as_str()),
            ("scheduled", "skipped")
        );
        let again = db
            .write_blocking(|conn| start(conn, "peer:2222", Trigger::Continuous))
            .unwrap();
        db.write_blocking(|conn| end_streams(conn, "this node was promoted"))
            .unwrap();
        let rows = db.read_blocking(|conn| recent(conn, 10)).unwrap();
        let row = |id: i64| rows.iter().find(|row| row.id == id).unwrap().clone();
        // The earlier stream belonged to a process that stopped; its figures stay.
        assert_eq!(row(stream).result, "interrupted");
        assert_eq!(
            (row(stream).entries, row(stream).files, row(stream).bytes),
            (40, 1, 9_000)
        );
        assert_eq!(row(stream).position_seq, Some(140));
        assert_eq!(row(again).result, "succeeded");
        assert_eq!(row(again).note.as_deref(), Some("this node was promoted"));
        assert_eq!(row(manual).result, "running");
        // A process that starts finds no stream of its own running.
        let left = db
            .write_blocking(|conn| start(conn, "peer:2222", Trigger::Continuous))
            .unwrap();
        db.write_blocking(interrupt_streams).unwrap();
        let rows = db.read_blocking(|conn| recent(conn, 10)).unwrap();
        let left = rows.iter().find(|row| row.id == left).unwrap();
        assert_eq!(left.result, "interrupted");
        assert_eq!(
            rows.iter().find(|row| row.id == manual).unwrap().result,
            "running"
        );
    }

    #[test]
    fn pages_of_history_are_newest_first_without_gaps_or_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(&dir.path().join("node.db"), OpenMode::Create).unwrap();
        let db = store.database();
        for _ in 0..5 {
            db.write_blocking(|conn| record_skipped(conn, "peer:2222", Trigger::Manual, "busy"))
                .unwrap();
        }
        let ids = |offset: i64| {
            db.read_blocking(move |conn| page(conn, 2, offset))
                .unwrap()
                .iter()
                .map(|row| row.id)
                .collect::<Vec<_>>()
        };
        assert_eq!([ids(0), ids(2), ids(4)].concat(), [5, 4, 3, 2, 1]);
        assert!(ids(5).is_empty());
        assert_eq!(ids(-3), ids(0), "a negative offset reads the first page");
    }
}
