//! The node-local store: this node's identity, local settings and module log. Never replicated.

use crate::common::now;
use crate::db::{Database, OpenMode};
use crate::error::{StoreError, StoreResult};
use crate::schema::NODE_LOCAL;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

/// Log lines kept per node; older ones are pruned. At about 150 bytes each, 15 MB: days of
/// heartbeats every 10 seconds.
pub const LOCAL_LOG_RETAINED_MAX: i64 = 100_000;
const PRUNE_EVERY_LINES: i64 = 512;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeIdentity {
    pub node_id: String,
    pub node_name: String,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub id: i64,
    pub at: String,
    pub module: String,
    pub level: String,
    pub message: String,
}

#[derive(Clone)]
pub struct NodeStore {
    db: Database,
}

impl NodeStore {
    pub fn open(path: &Path, mode: OpenMode) -> StoreResult<Self> {
        Ok(Self {
            db: Database::open(path, NODE_LOCAL, mode)?,
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn set_identity_blocking(&self, identity: NodeIdentity) -> StoreResult<()> {
        self.db.write_blocking(move |conn| {
            conn.execute(
                "INSERT INTO node_identity (singleton, node_id, node_name, created_at)
                 VALUES (1, ?1, ?2, ?3)",
                params![identity.node_id, identity.node_name, identity.created_at],
            )
            .map_err(StoreError::from_sqlite)?;
            Ok(())
        })
    }

    pub fn identity_blocking(&self) -> StoreResult<NodeIdentity> {
        self.db.read_blocking(|conn| {
            conn.query_row(
                "SELECT node_id, node_name, created_at FROM node_identity WHERE singleton = 1",
                [],
                |row| {
                    Ok(NodeIdentity {
                        node_id: row.get(0)?,
                        node_name: row.get(1)?,
                        created_at: row.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::Corrupt("the node-local store has no node identity".into()))
        })
    }

    /// Appends a line to a module's log (e.g. `HighAvailability`).
    pub async fn log(&self, module: &str, level: &str, message: &str) -> StoreResult<()> {
        let (module, level, message) = (module.to_owned(), level.to_owned(), message.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO local_log (at, module, level, message) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![now(), module, level, message])?;
                let id = conn.last_insert_rowid();
                if id % PRUNE_EVERY_LINES == 0 {
                    conn.execute(
                        "DELETE FROM local_log WHERE id <= ?1",
                        [id - LOCAL_LOG_RETAINED_MAX],
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// The newest `limit` lines of a module's log, oldest first.
    pub async fn recent_log(&self, module: &str, limit: i64) -> StoreResult<Vec<LogLine>> {
        let module = module.to_owned();
        self.db
            .read(move |conn| {
                let mut lines = conn
                    .prepare_cached(
                        "SELECT id, at, module, level, message FROM local_log WHERE module = ?1
                         ORDER BY id DESC LIMIT ?2",
                    )?
                    .query_map(params![module, limit], |row| {
                        Ok(LogLine {
                            id: row.get(0)?,
                            at: row.get(1)?,
                            module: row.get(2)?,
                            level: row.get(3)?,
                            message: row.get(4)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                lines.reverse();
                Ok(lines)
            })
            .await
    }
}
