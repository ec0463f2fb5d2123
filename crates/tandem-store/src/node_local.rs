//! The node-local store: this node's identity, local settings and module log. Never replicated.

use crate::common::{Check, now};
use crate::db::{Database, OpenMode};
use crate::error::{StoreError, StoreResult};
use crate::schema::NODE_LOCAL;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

crate::text_enum!(
    /// How serious a log line is, least first (syslog's order: a notification is a NOTICE).
    LogLevel {
        Debug => "DEBUG",
        Info => "INFO",
        Notice => "NOTICE",
        Warn => "WARN",
        Error => "ERROR",
    }
);

impl LogLevel {
    /// Its place in the order: a filter at `level` keeps the lines whose rank is at least its.
    pub fn rank(self) -> i64 {
        Self::ALL
            .iter()
            .position(|level| *level == self)
            .unwrap_or(0) as i64
    }

    /// A level as an operator types it, in any case ("warn", "Warn", "WARN"; "warning" too).
    pub fn parse_loose(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "WARNING" => Some(Self::Warn),
            upper => Self::parse(upper),
        }
    }
}

/// The rank of a stored level in SQL, as [`LogLevel::rank`] (a line of an unknown level counts
/// as INFO, so it is never hidden by the default filter).
macro_rules! level_rank_sql {
    () => {
        "(CASE level WHEN 'DEBUG' THEN 0 WHEN 'INFO' THEN 1 WHEN 'NOTICE' THEN 2 \
         WHEN 'WARN' THEN 3 WHEN 'ERROR' THEN 4 ELSE 1 END)"
    };
}
#[cfg(test)]
const LEVEL_RANK_SQL: &str = level_rank_sql!();

/// Most lines one page of a log holds: a screenful many times over, and at about 150 bytes a
/// line a 150 kB answer, so no request makes the node serialise the whole retained log.
pub const LOG_PAGE_LINES_MAX: i64 = 1000;
/// Lines of a page when the caller does not say.
pub const LOG_PAGE_LINES_DEFAULT: i64 = 100;
/// Longest text filter: a phrase or an address, not a document.
pub const LOG_FILTER_CHARS_MAX: usize = 200;
/// Longest module name accepted as input (the known ones are a word each).
const LOG_MODULE_CHARS_MAX: usize = 64;

/// A request for a page of a module's log, as text, as a query string, a form or a command line
/// gives it; [`LogRequest::validated`] checks it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRequest {
    pub module: Option<String>,
    /// The least serious level shown (DEBUG, INFO, NOTICE, WARN, ERROR).
    pub level: Option<String>,
    /// Only lines whose message contains this text (any case).
    pub q: Option<String>,
    /// Lines older than this line id (the next page, newest first).
    pub before: Option<String>,
    /// Lines newer than this line id (the previous page, or following the log).
    pub after: Option<String>,
    pub limit: Option<String>,
}

/// Which way a page reaches from its line id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCursor {
    /// The newest lines.
    Newest,
    /// The lines just older than this id.
    Before(i64),
    /// The lines just newer than this id.
    After(i64),
}

/// A checked [`LogRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogQuery {
    pub module: String,
    pub level: LogLevel,
    pub text: Option<String>,
    pub cursor: LogCursor,
    pub limit: i64,
}

/// A page of a module's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub module: String,
    pub level: LogLevel,
    /// Newest first.
    pub lines: Vec<LogLine>,
    /// The `before` of the next older page, when older lines match.
    pub before: Option<i64>,
    /// The `after` of the next newer page, when newer lines match.
    pub after: Option<i64>,
    /// The newest line id of the whole log when the page was read: following from here misses
    /// nothing and skips the lines already looked at.
    pub newest_id: i64,
}

impl LogRequest {
    /// Checks every parameter at once, each problem naming the parameter, its value and what
    /// would be accepted. `modules`: the modules a caller may ask for (the known ones and those
    /// present); `default_module` when none is given.
    pub fn validated(&self, modules: &[String], default_module: &str) -> StoreResult<LogQuery> {
        let mut check = Check::new();
        let module = blank_to_none(&self.module)
            .unwrap_or(default_module)
            .to_owned();
        if module.chars().count() > LOG_MODULE_CHARS_MAX || !modules.contains(&module) {
            check.fail(
                "module",
                &module,
                format!("no such module; the modules are {}", modules.join(", ")),
            );
        }
        let level = match blank_to_none(&self.level) {
            None => LogLevel::Info,
            Some(text) => LogLevel::parse_loose(text).unwrap_or_else(|| {
                check.fail(
                    "level",
                    text,
                    format!("no such level; use one of {}", LogLevel::expected()),
                );
                LogLevel::Info
            }),
        };
        let text = blank_to_none(&self.q).map(str::to_owned);
        if let Some(text) = &text {
            if text.chars().count() > LOG_FILTER_CHARS_MAX {
                check.fail(
                    "q",
                    text,
                    format!("must be at most {LOG_FILTER_CHARS_MAX} characters"),
                );
            } else if text.chars().any(char::is_control) {
                check.fail("q", text, "must not contain control characters");
            }
        }
        let before = line_id(&mut check, "before", &self.before);
        let after = line_id(&mut check, "after", &self.after);
        let cursor = match (before, after) {
            (Some(_), Some(_)) => {
                check.fail(
                    "after",
                    self.after.as_deref().unwrap_or_default(),
                    "give either before (older lines) or after (newer lines), not both",
                );
                LogCursor::Newest
            }
            (Some(id), None) => LogCursor::Before(id),
            (None, Some(id)) => LogCursor::After(id),
            (None, None) => LogCursor::Newest,
        };
        let limit = page_limit(&mut check, &self.limit);
        check.finish()?;
        Ok(LogQuery {
            module,
            level,
            text,
            cursor,
            limit,
        })
    }
}

/// The `limit` parameter: lines of a page, 1 to [`LOG_PAGE_LINES_MAX`].
fn page_limit(check: &mut Check, value: &Option<String>) -> i64 {
    let Some(text) = blank_to_none(value) else {
        return LOG_PAGE_LINES_DEFAULT;
    };
    match text.parse::<i64>() {
        Ok(limit) => {
            check.range("limit", limit, 1, LOG_PAGE_LINES_MAX);
            limit
        }
        Err(_) => {
            check.fail(
                "limit",
                text,
                format!("must be a whole number from 1 to {LOG_PAGE_LINES_MAX}"),
            );
            LOG_PAGE_LINES_DEFAULT
        }
    }
}

fn blank_to_none(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// A line id parameter: a whole number of at least 0.
fn line_id(check: &mut Check, field: &str, value: &Option<String>) -> Option<i64> {
    let text = blank_to_none(value)?;
    match text.parse::<i64>() {
        Ok(id) if id >= 0 => Some(id),
        _ => {
            check.fail(
                field,
                text,
                "must be a line id (a whole number, as the previous page gave it)",
            );
            None
        }
    }
}

/// Which lines of the log a query keeps: ?1 the module, ?2 the least level's rank, ?3 the text
/// filter's `LIKE` pattern (or NULL).
const LOG_FILTER_SQL: &str = concat!(
    "module = ?1 AND ",
    level_rank_sql!(),
    " >= ?2 AND (?3 IS NULL OR message LIKE ?3 ESCAPE '\\')"
);

/// A page's query from a cursor (?4 the line id it reaches from, ?5 the lines to read) and the
/// value of ?4. It walks the `(module, id)` index in id order and stops after ?5 lines that
/// match: no sort, and no more of the log read than the page needs when the filter matches
/// often (a rare level or text reads further, at most the module's retained lines).
fn page_sql(cursor: LogCursor) -> (String, i64) {
    let (order, bound, from) = match cursor {
        LogCursor::Newest => ("DESC", "<", i64::MAX),
        LogCursor::Before(id) => ("DESC", "<", id),
        LogCursor::After(id) => ("ASC", ">", id),
    };
    let sql = format!(
        "SELECT id, at, module, level, message FROM local_log WHERE {LOG_FILTER_SQL} \
         AND id {bound} ?4 ORDER BY id {order} LIMIT ?5"
    );
    (sql, from)
}

/// The lines of `query.module` at `query.level` or above (containing `query.text`), as many as
/// `query.limit`, from `query.cursor`. Reads in one transaction, so `newest_id` and the lines
/// are of the same moment.
pub fn log_page(conn: &Connection, query: &LogQuery) -> StoreResult<LogPage> {
    let tx = conn.unchecked_transaction()?;
    let pattern = query.text.as_deref().map(|text| {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let filter = LOG_FILTER_SQL;
    let (sql, from) = page_sql(query.cursor);
    let rank = query.level.rank();
    // One more than asked: whether there is a next page in this direction.
    let mut lines = tx
        .prepare_cached(&sql)?
        .query_map(
            params![query.module, rank, pattern, from, query.limit + 1],
            |row| {
                Ok(LogLine {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    module: row.get(2)?,
                    level: row.get(3)?,
                    message: row.get(4)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let more = lines.len() as i64 > query.limit;
    lines.truncate(query.limit as usize);
    if matches!(query.cursor, LogCursor::After(_)) {
        lines.reverse();
    }
    let exists = |bound: &str, id: i64| -> StoreResult<bool> {
        let sql =
            format!("SELECT EXISTS (SELECT 1 FROM local_log WHERE {filter} AND id {bound} ?4)");
        Ok(tx
            .prepare_cached(&sql)?
            .query_row(params![query.module, rank, pattern, id], |row| row.get(0))?)
    };
    let (newest, oldest) = (lines.first().map(|l| l.id), lines.last().map(|l| l.id));
    let (before, after) = match query.cursor {
        LogCursor::Newest => (oldest.filter(|_| more), None),
        LogCursor::Before(id) => {
            // Newer than the newest line shown, or (an empty page) than the lines below `id`.
            let from = newest.unwrap_or(id.saturating_sub(1));
            (oldest.filter(|_| more), exists(">", from)?.then_some(from))
        }
        LogCursor::After(id) => {
            let from = oldest.unwrap_or(id.saturating_add(1));
            (exists("<", from)?.then_some(from), newest.filter(|_| more))
        }
    };
    let newest_id: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM local_log", [], |row| {
        row.get(0)
    })?;
    tx.finish()?;
    Ok(LogPage {
        module: query.module.clone(),
        level: query.level,
        lines,
        before,
        after,
        newest_id,
    })
}

/// The modules with lines in the log, by name. Walks the `(module, id)` index from one module
/// to the next, so it costs a lookup per module, not a scan of the log.
pub fn log_modules(conn: &Connection) -> StoreResult<Vec<String>> {
    Ok(conn
        .prepare_cached(
            "WITH RECURSIVE modules(name) AS (
                 SELECT min(module) FROM local_log
                 UNION ALL
                 SELECT (SELECT min(module) FROM local_log WHERE module > modules.name)
                 FROM modules WHERE modules.name IS NOT NULL
             )
             SELECT name FROM modules WHERE name IS NOT NULL",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// A read-only connection to a node's `node.db`, for reading its log from another process (the
/// CLI) whether the node runs or not: the store is in WAL mode, so this reader never blocks the
/// node's writer, nor it this reader.
pub fn open_read_only(path: &Path) -> StoreResult<Connection> {
    let open_error = |reason: String| StoreError::Open {
        path: path.to_owned(),
        what: NODE_LOCAL.description,
        reason,
    };
    if !path.exists() {
        return Err(open_error("no such database file".into()));
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| open_error(error.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    if application_id != NODE_LOCAL.application_id {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            expected: NODE_LOCAL.description,
            reason: format!(
                "its application_id is {application_id:#x}, expected {:#x}",
                NODE_LOCAL.application_id
            ),
        });
    }
    Ok(conn)
}

impl NodeStore {
    /// A page of a module's log (see [`log_page`]).
    pub async fn log_page(&self, query: LogQuery) -> StoreResult<LogPage> {
        self.db.read(move |conn| log_page(conn, &query)).await
    }

    /// The modules with lines in the log (see [`log_modules`]).
    pub async fn log_modules(&self) -> StoreResult<Vec<String>> {
        self.db.read(log_modules).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(lines: &[(&str, &str, &str)]) -> (tempfile::TempDir, NodeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(&dir.path().join("node.db"), OpenMode::Create).unwrap();
        let lines: Vec<(String, String, String)> = lines
            .iter()
            .map(|(m, l, t)| (m.to_string(), l.to_string(), t.to_string()))
            .collect();
        store
            .database()
            .write_blocking(move |conn| {
                for (module, level, message) in &lines {
                    conn.execute(
                        "INSERT INTO local_log (at, module, level, message) VALUES (?1, ?2, ?3, ?4)",
                        params![now(), module, level, message],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    fn page(store: &NodeStore, request: LogRequest) -> LogPage {
        let modules = vec!["HighAvailability".to_owned(), "Security".to_owned()];
        let query = request.validated(&modules, "HighAvailability").unwrap();
        store
            .database()
            .read_blocking(move |conn| log_page(conn, &query))
            .unwrap()
    }

    fn messages(page: &LogPage) -> Vec<&str> {
        page.lines
            .iter()
            .map(|line| line.message.as_str())
            .collect()
    }

    fn request(pairs: &[(&str, &str)]) -> LogRequest {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        LogRequest {
            module: get("module"),
            level: get("level"),
            q: get("q"),
            before: get("before"),
            after: get("after"),
            limit: get("limit"),
        }
    }

    #[test]
    fn levels_order_as_syslog_and_the_sql_rank_agrees() {
        let conn = Connection::open_in_memory().unwrap();
        for level in LogLevel::ALL {
            let rank: i64 = conn
                .query_row(
                    &format!("SELECT {LEVEL_RANK_SQL} FROM (SELECT ?1 AS level)"),
                    [level.as_str()],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(rank, level.rank(), "{level}");
        }
        assert!(LogLevel::Debug.rank() < LogLevel::Info.rank());
        assert!(LogLevel::Notice.rank() < LogLevel::Warn.rank());
        assert_eq!(LogLevel::parse_loose(" warning "), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse_loose("error"), Some(LogLevel::Error));
    }

    #[test]
    fn pages_go_older_and_newer_by_line_id_with_the_level_and_text_filters() {
        let mut lines = Vec::new();
        for n in 0..7 {
            lines.push(("HighAvailability", "INFO", format!("heartbeat {n}")));
            lines.push(("Security", "WARN", format!("login failed {n}")));
        }
        lines.push(("HighAvailability", "DEBUG", "debug detail".into()));
        lines.push((
            "HighAvailability",
            "ERROR",
            "failure detected: 50% of_it".into(),
        ));
        let borrowed: Vec<(&str, &str, &str)> =
            lines.iter().map(|(m, l, t)| (*m, *l, t.as_str())).collect();
        let (_dir, store) = store_with(&borrowed);

        // Newest first, DEBUG hidden at the default level (INFO), other modules never shown.
        let first = page(&store, request(&[("limit", "3")]));
        assert_eq!(
            messages(&first),
            ["failure detected: 50% of_it", "heartbeat 6", "heartbeat 5"]
        );
        assert_eq!(first.after, None);
        let before = first.before.unwrap().to_string();
        let second = page(&store, request(&[("limit", "3"), ("before", &before)]));
        assert_eq!(
            messages(&second),
            ["heartbeat 4", "heartbeat 3", "heartbeat 2"]
        );
        // Back to newer: the page before it again.
        let after = second.after.unwrap().to_string();
        let back = page(&store, request(&[("limit", "3"), ("after", &after)]));
        assert_eq!(messages(&back), messages(&first));
        assert_eq!(back.after, None, "nothing newer than the newest page");
        // The last page has nothing older.
        let last = page(&store, request(&[("limit", "5"), ("before", &before)]));
        assert_eq!(last.lines.len(), 5);
        assert_eq!(last.before, None);
        // Following: everything after a line id, oldest window first.
        let follow = page(&store, request(&[("after", "0"), ("limit", "2")]));
        assert_eq!(messages(&follow), ["heartbeat 1", "heartbeat 0"]);
        assert!(follow.after.is_some() && follow.before.is_none());
        assert_eq!(follow.newest_id, 16);

        let debug = page(&store, request(&[("level", "debug")]));
        assert_eq!(debug.lines.len(), 9);
        let errors = page(&store, request(&[("level", "ERROR")]));
        assert_eq!(messages(&errors), ["failure detected: 50% of_it"]);
        // The text filter matches literally (% and _ are not wildcards) and in any case.
        let text = page(&store, request(&[("q", "50% OF_")]));
        assert_eq!(text.lines.len(), 1);
        assert!(page(&store, request(&[("q", "5_%")])).lines.is_empty());
        let security = page(
            &store,
            request(&[("module", "Security"), ("q", "failed 3")]),
        );
        assert_eq!(messages(&security), ["login failed 3"]);

        let modules = store.database().read_blocking(log_modules).unwrap();
        assert_eq!(modules, ["HighAvailability", "Security"]);
    }

    #[test]
    fn every_bad_parameter_is_named_with_its_value_and_the_fix() {
        let modules = vec!["HighAvailability".to_owned(), "Notifications".to_owned()];
        let bad = request(&[
            ("module", "Nope"),
            ("level", "LOUD"),
            ("before", "x1"),
            ("limit", "5000"),
            ("q", &"a".repeat(LOG_FILTER_CHARS_MAX + 1)),
        ]);
        let Err(StoreError::Invalid(invalid)) = bad.validated(&modules, "HighAvailability") else {
            panic!("accepted")
        };
        let fields: Vec<&str> = invalid.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["module", "level", "q", "before", "limit"]);
        assert!(
            invalid.fields[0]
                .problem
                .contains("HighAvailability, Notifications")
        );
        assert_eq!(invalid.fields[0].value, "Nope");
        assert!(
            invalid.fields[1]
                .problem
                .contains("DEBUG, INFO, NOTICE, WARN, ERROR")
        );
        let both = request(&[("before", "5"), ("after", "2")]);
        assert!(both.validated(&modules, "HighAvailability").is_err());
        // Blank parameters are absent ones (an empty form field).
        let blank = request(&[("module", ""), ("level", " "), ("q", ""), ("before", "")]);
        let query = blank.validated(&modules, "HighAvailability").unwrap();
        assert_eq!(query.module, "HighAvailability");
        assert_eq!(query.level, LogLevel::Info);
        assert_eq!(query.cursor, LogCursor::Newest);
        assert_eq!(query.limit, LOG_PAGE_LINES_DEFAULT);
    }

    #[test]
    fn a_page_walks_the_module_index_newest_first_without_sorting() {
        let (_dir, store) = store_with(&[]);
        for cursor in [LogCursor::Newest, LogCursor::Before(5), LogCursor::After(5)] {
            let (sql, _) = page_sql(cursor);
            let plan: Vec<String> = store
                .database()
                .read_blocking(move |conn| {
                    Ok(conn
                        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                        .query_map(params!["m", 1, None::<String>, 5, 10], |row| row.get(3))?
                        .collect::<Result<Vec<String>, _>>()?)
                })
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.contains("USING INDEX local_log_module (module=? AND id"),
                "{cursor:?}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{cursor:?}: {plan}");
        }
    }

    #[test]
    fn the_read_only_connection_refuses_a_foreign_file() {
        let (dir, _store) = store_with(&[("Security", "INFO", "x")]);
        let conn = open_read_only(&dir.path().join("node.db")).unwrap();
        assert_eq!(log_modules(&conn).unwrap(), ["Security"]);
        let foreign = dir.path().join("other.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(
            open_read_only(&foreign),
            Err(StoreError::Foreign { .. })
        ));
        assert!(open_read_only(&dir.path().join("missing.db")).is_err());
    }
}
