//! Change capture: every write to the replicated database is recorded, in the same transaction,
//! in an ordered change log that incremental sync replays on a Secondary.
//!
//! Design:
//! - SQLite triggers (generated from each table's columns by [`install_capture_triggers`]) append
//!   one entry per inserted, updated or deleted row: the table, the operation, the row's primary
//!   key and, as JSON, the whole new row for an insert, and for an update the new key and only
//!   the columns whose value changed (a check-in changes 2–4 of the 20 columns of `devices`, so
//!   its entry is a fifth of the row's size; the function `tandem_update_data` compares and
//!   writes them). Triggers see cascaded deletes too, so the log is complete without any
//!   cooperation from the model code.
//! - Just before the writer commits a group, [`seal_pending`] stamps each new entry with the
//!   writer's epoch and a SHA-256 checksum chained over the previous entry's checksum, in one
//!   statement. Two nodes whose logs have the same checksum at the same sequence number hold the
//!   same history. Until then an entry holds [`UNSEALED_CHECKSUM`], as long as a real one, so
//!   the seal overwrites it in place (or NULL, from the triggers of schema versions 2 and 3,
//!   which run only until migration 4 replaces them; `<>` counts NULL as unsealed too).
//! - Entries past [`CHANGE_LOG_RETAINED_MAX`] are pruned; `change_log_base` keeps the sequence and
//!   checksum of the last pruned entry, so the retained chain still verifies from its base.
//!
//! Invariants: sequence numbers are dense (no gaps) from the base; an entry and the change it
//! describes commit together or not at all; entries are written only by the triggers (or, on a
//! node applying a sync, copied verbatim from the source with capture suspended); replicated
//! tables hold no BLOB columns (JSON cannot carry them).

use crate::error::{StoreError, StoreResult};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::cell::Cell;

/// Entries kept. At a few hundred bytes each this bounds the log to a few hundred megabytes; a
/// 100,000-device fleet checking in hourly writes about 100,000 entries an hour, so a Secondary
/// syncing every hour (the guide's advice) is always well within reach of an incremental sync.
pub const CHANGE_LOG_RETAINED_MAX: i64 = 1_000_000;
/// Pruning removes at least this many entries at once, so it runs rarely and in bulk.
const PRUNE_CHUNK_ENTRIES: i64 = 10_000;
/// What an entry's checksum holds from its capture until the seal at commit: as long as a real
/// checksum but never one (not hexadecimal), so sealing overwrites the entry in place instead of
/// growing it. A grown entry can overflow its page, and SQLite's rebalancing of such a page
/// renumbers pages through a scratch number past the end of the file, which then makes every
/// later commit scan the writer's whole page cache (see BENCHMARKS.md).
macro_rules! unsealed_checksum {
    () => {
        "unsealed--------------------------------------------------------"
    };
}
pub const UNSEALED_CHECKSUM: &str = unsealed_checksum!();
/// The SQL condition that an entry is sealed.
macro_rules! sealed {
    () => {
        concat!("checksum <> '", unsealed_checksum!(), "'")
    };
}

/// The checksum "before" the first entry.
pub const GENESIS_CHECKSUM: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// One recorded change, as stored and as sent to a syncing peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEntry {
    pub seq: i64,
    pub epoch: i64,
    pub table_name: String,
    pub op: String,
    pub row_key: String,
    pub row_data: Option<String>,
    pub checksum: String,
}

/// The newest sealed entry: where this node's history stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    pub seq: i64,
    pub checksum: String,
}

thread_local! {
    /// Set while a sync applies a peer's entries: the rows change, but the entries are copied
    /// from the source instead of being captured again.
    static CAPTURE_SUSPENDED: Cell<bool> = const { Cell::new(false) };
    /// The epoch the writer seals its current group with, so an entry is captured with the
    /// epoch it will keep (the seal then changes nothing of its size).
    static CAPTURE_EPOCH: Cell<i64> = const { Cell::new(0) };
}

/// Tells the triggers on this thread (the writer's) which epoch the group being written will
/// be sealed with. The seal stamps the epoch anyway; this only keeps entries from changing size.
pub fn set_capture_epoch(epoch: i64) {
    CAPTURE_EPOCH.with(|current| current.set(epoch));
}

/// Runs `apply` with capture suspended on this thread (the writer's).
pub fn without_capture<R>(apply: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURE_SUSPENDED.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(CAPTURE_SUSPENDED.with(|flag| flag.replace(true)));
    apply()
}

/// Registers the SQL functions of change capture. A connection without them (an operator's
/// `sqlite3` shell) cannot write to captured tables: an unrecorded write would silently fork
/// this node's data from its history.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "tandem_capture_enabled",
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
        |_| Ok(!CAPTURE_SUSPENDED.with(Cell::get)),
    )?;
    conn.create_scalar_function(
        "tandem_capture_epoch",
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
        |_| Ok(CAPTURE_EPOCH.with(Cell::get)),
    )?;
    conn.create_scalar_function(
        "tandem_update_data",
        -1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        update_data,
    )?;
    // Called only by `seal_pending`'s statement (DIRECTONLY: never from a trigger or a view).
    conn.create_scalar_function(
        "tandem_seal_checksum",
        5,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        seal_checksum,
    )
}

/// `tandem_update_data(spec, old1, new1, old2, new2, ...)`: an update's entry data. `spec`
/// names the table's columns separated by commas, the key columns first and each marked with
/// `*`; then come each column's old and new value, in the same order. The result is a JSON
/// object of the key columns and of every other column whose value changed, or of the whole new
/// row when a key changed (the row moved). Values are compared by type and content, so a value that SQL would call
/// equal but that changed type (1 and 1.0) is recorded: a column too many is harmless, one too
/// few would lose a change.
fn update_data(ctx: &rusqlite::functions::Context<'_>) -> rusqlite::Result<String> {
    let error = |message: String| rusqlite::Error::UserFunctionError(message.into());
    let spec = match ctx.len() {
        0 => None,
        _ => ctx.get_raw(0).as_str().ok(),
    }
    .ok_or_else(|| error("tandem_update_data: the first argument must name the columns".into()))?;
    let arity_error = || {
        error(format!(
            "tandem_update_data: the columns {spec:?} need {} arguments, got {}",
            1 + 2 * (spec.split(',').count()),
            ctx.len()
        ))
    };
    if ctx.len().is_multiple_of(2) {
        return Err(arity_error());
    }
    let mut data = String::with_capacity(128);
    data.push('{');
    // The spec lists the keys first, so whether the row moved is known before any other
    // column is written. A moved row is written whole. The names are found by hand rather than
    // with `str::split`, which cost more than everything else here.
    let mut moved = false;
    let mut rest = spec;
    for index in 0..(ctx.len() - 1) / 2 {
        if rest.is_empty() {
            return Err(arity_error());
        }
        let (column, after) = match rest.bytes().position(|byte| byte == b',') {
            Some(comma) => (&rest[..comma], &rest[comma + 1..]),
            None => (rest, ""),
        };
        rest = after;
        let (old, new) = (ctx.get_raw(1 + 2 * index), ctx.get_raw(2 + 2 * index));
        let name = match column.strip_prefix('*') {
            Some(key) => {
                moved |= differs(old, new);
                key
            }
            None if moved || differs(old, new) => column,
            None => continue,
        };
        if data.len() > 1 {
            data.push(',');
        }
        data.push('"');
        data.push_str(name);
        data.push_str("\":");
        push_json_value(&mut data, new)
            .map_err(|reason| error(format!("cannot record column {name}: {reason}")))?;
    }
    if !rest.is_empty() {
        return Err(arity_error());
    }
    data.push('}');
    Ok(data)
}

/// Whether two values differ in type or content.
fn differs(old: rusqlite::types::ValueRef<'_>, new: rusqlite::types::ValueRef<'_>) -> bool {
    use rusqlite::types::ValueRef;
    match (old, new) {
        (ValueRef::Null, ValueRef::Null) => false,
        (ValueRef::Integer(old), ValueRef::Integer(new)) => old != new,
        (ValueRef::Real(old), ValueRef::Real(new)) => old.to_bits() != new.to_bits(),
        (ValueRef::Text(old), ValueRef::Text(new)) => old != new,
        (ValueRef::Blob(old), ValueRef::Blob(new)) => old != new,
        _ => true,
    }
}

/// Appends `value` as JSON: the value SQLite's `json_quote` would write, though a real number
/// may be written shorter (`0.1` where SQLite writes `0.10000000000000001`; both read back as
/// the same number). A number with no JSON form (an infinity) is refused: the replica could not
/// read it back.
fn push_json_value(data: &mut String, value: rusqlite::types::ValueRef<'_>) -> Result<(), String> {
    use rusqlite::types::ValueRef;
    use std::fmt::Write as _;
    match value {
        ValueRef::Null => data.push_str("null"),
        // Writing to a String cannot fail.
        ValueRef::Integer(integer) => {
            let _ = write!(data, "{integer}");
        }
        ValueRef::Real(real) => match serde_json::Number::from_f64(real) {
            Some(number) => {
                let _ = write!(data, "{number}");
            }
            None => return Err(format!("{real} has no JSON form")),
        },
        ValueRef::Text(text) => {
            let text =
                std::str::from_utf8(text).map_err(|_| "its text is not valid UTF-8".to_owned())?;
            data.push('"');
            if !text
                .bytes()
                .any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20)
            {
                data.push_str(text);
            } else {
                push_escaped(data, text);
            }
            data.push('"');
        }
        ValueRef::Blob(_) => return Err("JSON cannot hold BLOB values".to_owned()),
    }
    Ok(())
}

fn push_escaped(data: &mut String, text: &str) {
    use std::fmt::Write as _;
    for character in text.chars() {
        match character {
            '"' => data.push_str("\\\""),
            '\\' => data.push_str("\\\\"),
            '\n' => data.push_str("\\n"),
            '\r' => data.push_str("\\r"),
            '\t' => data.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                let _ = write!(data, "\\u{:04x}", control as u32);
            }
            other => data.push(other),
        }
    }
}

/// The chain a running seal extends, one link per row of its `UPDATE`.
struct SealChain {
    previous: Position,
    epoch: i64,
    /// Why the chain broke, if it did.
    broken: Option<String>,
}

thread_local! {
    /// Set by [`seal_pending`] for the one statement that seals; `None` at any other time.
    static SEAL_CHAIN: std::cell::RefCell<Option<SealChain>> = const { std::cell::RefCell::new(None) };
}

/// `tandem_seal_checksum(seq, table_name, op, row_key, row_data)`: the checksum of the next
/// link of the running seal's chain, which it then extends. Refuses a row that does not follow
/// the previous one, so a seal that visited rows out of order fails instead of writing a chain
/// that does not verify.
fn seal_checksum(ctx: &rusqlite::functions::Context<'_>) -> rusqlite::Result<String> {
    let seq: i64 = ctx.get(0)?;
    let text = |index: usize| -> rusqlite::Result<Option<&[u8]>> {
        Ok(match ctx.get_raw(index) {
            rusqlite::types::ValueRef::Null => None,
            value => Some(value.as_bytes()?),
        })
    };
    let field = |index: usize, name: &str| -> rusqlite::Result<&[u8]> {
        text(index)?.ok_or_else(|| {
            rusqlite::Error::UserFunctionError(format!("change {seq} has no {name}").into())
        })
    };
    let (table_name, op, row_key, row_data) = (
        field(1, "table_name")?,
        field(2, "op")?,
        field(3, "row_key")?,
        text(4)?,
    );
    SEAL_CHAIN.with(|chain| {
        let mut chain = chain.borrow_mut();
        let Some(chain) = chain.as_mut() else {
            return Err(rusqlite::Error::UserFunctionError(
                "tandem_seal_checksum called outside a seal".into(),
            ));
        };
        if seq != chain.previous.seq + 1 {
            let broken = format!(
                "change log sequence jumps from {} to {seq}",
                chain.previous.seq
            );
            chain.broken = Some(broken.clone());
            return Err(rusqlite::Error::UserFunctionError(broken.into()));
        }
        let checksum = entry_checksum_bytes(
            chain.previous.checksum.as_bytes(),
            seq,
            chain.epoch,
            table_name,
            op,
            row_key,
            row_data,
        );
        chain.previous = Position {
            seq,
            checksum: checksum.clone(),
        };
        Ok(checksum)
    })
}

/// Migration step: creates the change log and the capture triggers for every table.
pub fn install_change_log(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE change_log (
            seq         INTEGER PRIMARY KEY,
            epoch       INTEGER NOT NULL DEFAULT 0,
            table_name  TEXT NOT NULL,
            op          TEXT NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
            row_key     TEXT NOT NULL,
            row_data    TEXT,
            checksum    TEXT
        );
        CREATE TABLE change_log_base (
            singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
            seq        INTEGER NOT NULL,
            checksum   TEXT NOT NULL
        );
        INSERT INTO change_log_base (singleton, seq, checksum) VALUES (1, 0, '{GENESIS_CHECKSUM}');"
    ))?;
    install_capture_triggers(conn, TriggerForm::Whole)
}

/// Migration step (replicated schema version 3): update entries carry only the changed columns.
pub fn capture_changed_columns(conn: &Connection) -> rusqlite::Result<()> {
    install_capture_triggers(conn, TriggerForm::Changed)
}

/// Migration step (replicated schema version 4): the change log's CHECK on `op` compares with
/// `=` instead of `IN`. SQLite evaluates an `IN` list of three or more values by building a
/// temporary B-tree, and in a trigger it does so for every row: that cost every captured write
/// a B-tree's allocation, zeroing and teardown (about a third of the instructions capture added
/// to a check-in's write, see BENCHMARKS.md).
/// SQLite cannot alter a CHECK, so the table is rebuilt; the capture triggers, which name it,
/// are dropped first and created again after. This copies the whole log once, at the first
/// start of the release that brings it. With a full log of 1,000,000 entries (a few hundred
/// megabytes) that needs about twice the log's size in free disk: the file grows by it (the old
/// table's pages are then free and reused by later writes) and the WAL by as much until the
/// node next closes.
pub fn change_log_check_without_in(conn: &Connection) -> rusqlite::Result<()> {
    let entries: i64 = conn.query_row("SELECT count(*) FROM change_log", [], |row| row.get(0))?;
    if entries > 0 {
        tracing::info!(
            entries,
            "rebuilding the change log for replicated schema version 4; this copies every entry once"
        );
    }
    let triggers: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema
             WHERE type = 'trigger' AND name LIKE 'capture\\_%' ESCAPE '\\'",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for trigger in triggers {
        conn.execute_batch(&format!("DROP TRIGGER \"{trigger}\""))?;
    }
    conn.execute_batch(&format!(
        "{}
        INSERT INTO change_log_rebuilt (seq, epoch, table_name, op, row_key, row_data, checksum)
            SELECT seq, epoch, table_name, op, row_key, row_data, checksum FROM change_log;
        DROP TABLE change_log;
        ALTER TABLE change_log_rebuilt RENAME TO change_log;",
        change_log_table("change_log_rebuilt")
    ))?;
    install_capture_triggers(conn, TriggerForm::ChangedByFunction)?;
    if entries > 0 {
        tracing::info!(
            entries,
            "rebuilt the change log (replicated schema version 4)"
        );
    }
    Ok(())
}

/// The change log's definition (schema version 4 on).
fn change_log_table(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (
            seq         INTEGER PRIMARY KEY,
            epoch       INTEGER NOT NULL DEFAULT 0,
            table_name  TEXT NOT NULL,
            op          TEXT NOT NULL CHECK (op = 'INSERT' OR op = 'UPDATE' OR op = 'DELETE'),
            row_key     TEXT NOT NULL,
            row_data    TEXT,
            checksum    TEXT
        );"
    )
}

/// The capture triggers as each schema version created them. A released form never changes:
/// a migration creates what it created when it was released.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TriggerForm {
    /// An update's entry holds the whole new row; an entry is captured without an epoch or a
    /// checksum, which the seal adds (schema version 2).
    Whole,
    /// An update's entry holds the new key and the columns whose value changed, compared and
    /// written in SQL (schema version 3).
    Changed,
    /// The same columns, compared and written by [`update_data`]: one function call instead of
    /// a comparison, a `json_quote` and a concatenation per column, which cost a check-in's
    /// entry most of what its trigger costs. An entry is captured with its epoch and
    /// [`UNSEALED_CHECKSUM`], so the seal does not change its size (schema version 4).
    ChangedByFunction,
}

/// Arguments a SQL function may take (SQLite's SQLITE_MAX_FUNCTION_ARG as bundled): a table with
/// more columns than fit, two per column, records its updates with the SQL form instead.
const FUNCTION_ARGS_MAX: usize = 1_000;

fn is_captured(table: &str) -> bool {
    !table.starts_with("sqlite_") && !table.starts_with("change_log")
}

/// (Re)creates the capture triggers of every table from its current columns, in `form`. A
/// migration that adds a table or a column calls this again with the current form; one that
/// changes the form adds a `TriggerForm`, so earlier migrations keep creating theirs.
fn install_capture_triggers(conn: &Connection, form: TriggerForm) -> rusqlite::Result<()> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables.iter().filter(|table| is_captured(table)) {
        let columns: Vec<(String, i64)> = conn
            .prepare("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut keys: Vec<&(String, i64)> = columns.iter().filter(|(_, pk)| *pk > 0).collect();
        keys.sort_by_key(|(_, pk)| *pk);
        let key_names: Vec<String> = keys.iter().map(|(name, _)| name.clone()).collect();
        if key_names.is_empty() {
            // Replaying a change finds its row by key; a table without one cannot replicate.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(format!(
                    "replicated table {table} has no declared primary key"
                )),
            ));
        }
        let json_key = |row: &str| {
            let parts: Vec<String> = key_names.iter().map(|k| format!("{row}.\"{k}\"")).collect();
            format!("json_array({})", parts.join(", "))
        };
        let json_row = {
            let parts: Vec<String> = columns
                .iter()
                .map(|(name, _)| format!("'{name}', NEW.\"{name}\""))
                .collect();
            format!("json_object({})", parts.join(", "))
        };
        // The key always; every other column only when it changed (`IS NOT` compares NULLs
        // too, with the column's collation: no replicated column declares one, so equal means
        // byte-equal). Built as text: json_quote gives each value the JSON form json_object
        // would, and column names are plain identifiers.
        let json_changes = {
            let mut parts: Vec<String> = key_names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    let comma = if index == 0 { "" } else { "," };
                    format!("'{comma}\"{name}\":' || json_quote(NEW.\"{name}\")")
                })
                .collect();
            parts.extend(columns.iter().filter(|(_, pk)| *pk == 0).map(|(name, _)| {
                format!(
                    "CASE WHEN NEW.\"{name}\" IS NOT OLD.\"{name}\" THEN ',\"{name}\":' || \
                             json_quote(NEW.\"{name}\") ELSE '' END"
                )
            }));
            format!("'{{' || {} || '}}'", parts.join(" || "))
        };
        // A key that changes moves the row: that entry carries the whole row, as an insert
        // does, so replaying it never collides with a row that took the old key meanwhile.
        let key_changed: Vec<String> = key_names
            .iter()
            .map(|name| format!("NEW.\"{name}\" IS NOT OLD.\"{name}\""))
            .collect();
        let by_sql = format!(
            "CASE WHEN {} THEN {json_row} ELSE {json_changes} END",
            key_changed.join(" OR ")
        );
        let update_data = match form {
            TriggerForm::Whole => json_row.clone(),
            TriggerForm::Changed => by_sql,
            TriggerForm::ChangedByFunction if 1 + 2 * columns.len() > FUNCTION_ARGS_MAX => by_sql,
            TriggerForm::ChangedByFunction => {
                if let Some((name, _)) = columns
                    .iter()
                    .find(|(name, _)| !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                        Some(format!(
                            "replicated column {table}.{name} is not a plain identifier"
                        )),
                    ));
                }
                // Keys first (in key order), then the other columns in table order.
                let ordered = key_names.iter().map(|name| (name, true)).chain(
                    columns
                        .iter()
                        .filter(|(_, pk)| *pk == 0)
                        .map(|(name, _)| (name, false)),
                );
                let (spec, values): (Vec<String>, Vec<String>) = ordered
                    .map(|(name, is_key)| {
                        (
                            format!("{}{name}", if is_key { "*" } else { "" }),
                            format!("OLD.\"{name}\", NEW.\"{name}\""),
                        )
                    })
                    .unzip();
                format!(
                    "tandem_update_data('{}', {})",
                    spec.join(","),
                    values.join(", ")
                )
            }
        };
        for (op, event, key, data) in [
            ("INSERT", "AFTER INSERT", json_key("NEW"), json_row.clone()),
            ("UPDATE", "AFTER UPDATE", json_key("OLD"), update_data),
            ("DELETE", "AFTER DELETE", json_key("OLD"), "NULL".to_owned()),
        ] {
            let name = format!("capture_{table}_{}", op.to_lowercase());
            let insert = match form {
                TriggerForm::Whole | TriggerForm::Changed => format!(
                    "INSERT INTO change_log (table_name, op, row_key, row_data)
                     VALUES ('{table}', '{op}', {key}, {data});"
                ),
                TriggerForm::ChangedByFunction => format!(
                    "INSERT INTO change_log (epoch, table_name, op, row_key, row_data, checksum)
                     VALUES (tandem_capture_epoch(), '{table}', '{op}', {key}, {data},
                         '{UNSEALED_CHECKSUM}');"
                ),
            };
            conn.execute_batch(&format!(
                "DROP TRIGGER IF EXISTS \"{name}\";
                 CREATE TRIGGER \"{name}\" {event} ON \"{table}\" WHEN tandem_capture_enabled()
                 BEGIN
                     {insert}
                 END;"
            ))?;
        }
    }
    Ok(())
}

/// The chained checksum of one entry: SHA-256 over the previous checksum and every field, each
/// length-prefixed so no two different entries hash the same bytes.
pub fn entry_checksum(
    previous: &str,
    seq: i64,
    epoch: i64,
    table_name: &str,
    op: &str,
    row_key: &str,
    row_data: Option<&str>,
) -> String {
    entry_checksum_bytes(
        previous.as_bytes(),
        seq,
        epoch,
        table_name.as_bytes(),
        op.as_bytes(),
        row_key.as_bytes(),
        row_data.map(str::as_bytes),
    )
}

fn entry_checksum_bytes(
    previous: &[u8],
    seq: i64,
    epoch: i64,
    table_name: &[u8],
    op: &[u8],
    row_key: &[u8],
    row_data: Option<&[u8]>,
) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(previous);
    field(&seq.to_le_bytes());
    field(&epoch.to_le_bytes());
    field(table_name);
    field(op);
    field(row_key);
    match row_data {
        Some(data) => field(data),
        None => field(b"\xff"),
    }
    // By hand: `hex::encode` collects an iterator of chars, which cost the seal about as much
    // as the hash itself.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in hasher.finalize() {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// The position after `entry`, if it is the link that follows `previous` in a chain; otherwise
/// the checksum it should have had.
fn next_link(previous: &Position, entry: &ChangeEntry) -> Result<Position, String> {
    let expected = entry_checksum(
        &previous.checksum,
        entry.seq,
        entry.epoch,
        &entry.table_name,
        &entry.op,
        &entry.row_key,
        entry.row_data.as_deref(),
    );
    if entry.seq == previous.seq + 1 && entry.checksum == expected {
        Ok(Position {
            seq: entry.seq,
            checksum: expected,
        })
    } else {
        Err(expected)
    }
}

/// The newest sealed entry, or the base when the log is empty.
pub fn position(conn: &Connection) -> StoreResult<Position> {
    let newest = conn
        .prepare_cached(concat!(
            "SELECT seq, checksum FROM change_log WHERE ",
            sealed!(),
            " ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row([], |row| {
            Ok(Position {
                seq: row.get(0)?,
                checksum: row.get(1)?,
            })
        })
        .optional()?;
    match newest {
        Some(position) => Ok(position),
        None => base(conn),
    }
}

/// The sequence and checksum just before the oldest retained entry.
pub fn base(conn: &Connection) -> StoreResult<Position> {
    Ok(conn
        .prepare_cached("SELECT seq, checksum FROM change_log_base WHERE singleton = 1")?
        .query_row([], |row| {
            Ok(Position {
                seq: row.get(0)?,
                checksum: row.get(1)?,
            })
        })?)
}

/// The epoch of the newest sealed entry, which a restarted writer resumes with. Epochs never
/// decrease along a history (a writer stamps its own, and a promotion raises it), so the newest
/// entry's is the highest; reading it is one index lookup, not a scan of the log.
pub fn latest_epoch(conn: &Connection) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT epoch FROM change_log WHERE ",
            sealed!(),
            " ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Stamps the entries captured in this transaction with `epoch` and their chained checksums,
/// then prunes past the retention bound. Called by the writer just before it commits. Returns
/// the newest sequence number it sealed, if any.
///
/// One `UPDATE` seals them all: SQLite walks the new entries in sequence order (a range scan of
/// the rowid; `tandem_seal_checksum` fails the seal on any other order) and chains each to the
/// one before, so no entry is read back into Rust or written by a statement of its own.
pub fn seal_pending(conn: &Connection, epoch: i64) -> StoreResult<Option<i64>> {
    /// Clears the chain however the seal ends, so no later statement can extend it.
    struct Sealing;
    impl Drop for Sealing {
        fn drop(&mut self) {
            SEAL_CHAIN.with(|chain| chain.borrow_mut().take());
        }
    }
    let previous = position(conn)?;
    let after_seq = previous.seq;
    let _sealing = Sealing;
    SEAL_CHAIN.with(|chain| {
        *chain.borrow_mut() = Some(SealChain {
            previous,
            epoch,
            broken: None,
        })
    });
    let sealed = conn
        .prepare_cached(
            "UPDATE change_log SET epoch = ?1,
                checksum = tandem_seal_checksum(seq, table_name, op, row_key, row_data)
             WHERE seq > ?2",
        )
        .and_then(|mut seal| seal.execute(params![epoch, after_seq]));
    let chain = SEAL_CHAIN.with(|chain| chain.borrow_mut().take());
    if let Some(broken) = chain.as_ref().and_then(|chain| chain.broken.clone()) {
        return Err(StoreError::Corrupt(broken));
    }
    let sealed = sealed?;
    if sealed == 0 {
        return Ok(None);
    }
    let newest = chain.map_or(after_seq, |chain| chain.previous.seq);
    if newest != after_seq + sealed as i64 {
        return Err(StoreError::Corrupt(format!(
            "sealing {sealed} change log entries after {after_seq} ended at {newest}"
        )));
    }
    prune(conn, newest, CHANGE_LOG_RETAINED_MAX, PRUNE_CHUNK_ENTRIES)?;
    Ok(Some(newest))
}

fn prune(conn: &Connection, newest_seq: i64, retained: i64, chunk: i64) -> StoreResult<()> {
    let base = base(conn)?;
    if newest_seq - base.seq < retained + chunk {
        return Ok(());
    }
    let last_pruned = newest_seq - retained;
    let checksum: String = conn.query_row(
        "SELECT checksum FROM change_log WHERE seq = ?1",
        [last_pruned],
        |row| row.get(0),
    )?;
    conn.execute("DELETE FROM change_log WHERE seq <= ?1", [last_pruned])?;
    conn.execute(
        "UPDATE change_log_base SET seq = ?1, checksum = ?2 WHERE singleton = 1",
        params![last_pruned, checksum],
    )?;
    tracing::info!(last_pruned, "pruned the change log to its retention bound");
    Ok(())
}

/// Up to `limit` sealed entries after `after_seq`, oldest first.
pub fn entries_after(
    conn: &Connection,
    after_seq: i64,
    limit: i64,
) -> StoreResult<Vec<ChangeEntry>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT seq, epoch, table_name, op, row_key, row_data, checksum FROM change_log
                 WHERE seq > ?1 AND ",
            sealed!(),
            " ORDER BY seq LIMIT ?2"
        ))?
        .query_map(params![after_seq, limit], |row| {
            Ok(ChangeEntry {
                seq: row.get(0)?,
                epoch: row.get(1)?,
                table_name: row.get(2)?,
                op: row.get(3)?,
                row_key: row.get(4)?,
                row_data: row.get(5)?,
                checksum: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// The checksum of the history at `seq`: the entry's, or the base's when `seq` is the base.
/// `None` when this node's retained history does not reach `seq`.
pub fn checksum_at(conn: &Connection, seq: i64) -> StoreResult<Option<String>> {
    let base = base(conn)?;
    if seq == base.seq {
        return Ok(Some(base.checksum));
    }
    Ok(conn
        .prepare_cached(concat!(
            "SELECT checksum FROM change_log WHERE seq = ?1 AND ",
            sealed!()
        ))?
        .query_row([seq], |row| row.get(0))
        .optional()?)
}

/// Statements kept prepared on a connection that applies changes: three per replicated table,
/// with room to spare, so applying a batch never re-parses SQL.
pub const APPLY_STATEMENTS_CACHED_MAX: usize = 128;

struct TableShape {
    columns: Vec<String>,
    keys: Vec<String>,
}

fn table_shape(conn: &Connection, table: &str) -> StoreResult<TableShape> {
    let mut columns = Vec::new();
    let mut keys: Vec<(i64, String)> = Vec::new();
    let mut statement =
        conn.prepare_cached("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?;
    let mut rows = statement.query([table])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let pk: i64 = row.get(1)?;
        if pk > 0 {
            keys.push((pk, name.clone()));
        }
        columns.push(name);
    }
    if columns.is_empty() || !is_captured(table) {
        return Err(StoreError::Corrupt(format!(
            "a change names table {table:?}, which this database does not replicate"
        )));
    }
    keys.sort();
    Ok(TableShape {
        columns,
        keys: keys.into_iter().map(|(_, name)| name).collect(),
    })
}

fn sql_value(value: &serde_json::Value) -> StoreResult<rusqlite::types::Value> {
    use rusqlite::types::Value;
    Ok(match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Integer(i64::from(*flag)),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(integer) => Value::Integer(integer),
            None => Value::Real(number.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(text) => Value::Text(text.clone()),
        other => {
            return Err(StoreError::Corrupt(format!(
                "a change carries a nested JSON value, not a column value: {other}"
            )));
        }
    })
}

fn key_values(row_key: &str) -> StoreResult<Vec<rusqlite::types::Value>> {
    let parsed: Vec<serde_json::Value> = serde_json::from_str(row_key).map_err(|error| {
        StoreError::Corrupt(format!(
            "a change's row key {row_key:?} is not a JSON array: {error}"
        ))
    })?;
    parsed.iter().map(sql_value).collect()
}

/// Applies a source's entries, which must continue this node's history at `previous`, and
/// copies them verbatim into the change log, so this node's history becomes the source's.
/// Every entry's checksum is recomputed; a broken chain fails the whole call (and, since it runs
/// inside the writer's transaction, changes nothing). Must run on the writer with capture
/// suspended ([`without_capture`]). Applying is idempotent per entry: inserts (and updates that
/// move a row to a new key) set the whole row, other updates set their columns, and an update
/// or delete of a missing row does nothing.
pub fn apply_entries(
    conn: &Connection,
    previous: &Position,
    entries: &[ChangeEntry],
) -> StoreResult<Position> {
    let mut position = previous.clone();
    for entry in entries {
        position = next_link(&position, entry)
            .map_err(|expected| StoreError::Corrupt(format!(
                "change {} does not continue this node's history at {} (its checksum {} should be {expected})",
                entry.seq, position.seq, entry.checksum
            )))?;
    }
    replay_rows(conn, entries)?;
    // Verbatim copy: this node's history becomes the source's, checksums included.
    let mut copy = conn.prepare_cached(
        "INSERT INTO change_log (seq, epoch, table_name, op, row_key, row_data, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for entry in entries {
        copy.execute(params![
            entry.seq,
            entry.epoch,
            entry.table_name,
            entry.op,
            entry.row_key,
            entry.row_data,
            entry.checksum
        ])?;
    }
    prune(
        conn,
        position.seq,
        CHANGE_LOG_RETAINED_MAX,
        PRUNE_CHUNK_ENTRIES,
    )?;
    Ok(position)
}

/// Replays entries' row changes only (no chain check, no copy into the change log). Each
/// entry sets a row to its recorded state or removes it, so replaying a batch twice, or a
/// prefix and then the whole batch, ends in the same rows as replaying it once.
pub fn replay_rows(conn: &Connection, entries: &[ChangeEntry]) -> StoreResult<()> {
    conn.set_prepared_statement_cache_capacity(APPLY_STATEMENTS_CACHED_MAX);
    // Checked at commit: entries replay row by row what the source did statement by statement.
    conn.pragma_update(None, "defer_foreign_keys", "ON")?;
    let mut shapes: std::collections::HashMap<String, TableShape> = Default::default();
    for entry in entries {
        if !shapes.contains_key(&entry.table_name) {
            let shape = table_shape(conn, &entry.table_name)?;
            shapes.insert(entry.table_name.clone(), shape);
        }
        apply_one(conn, &shapes[&entry.table_name], entry)?;
    }
    Ok(())
}

/// `"k1" = ?1 AND "k2" = ?2 …`: the row's primary key as the first parameters.
fn key_condition(shape: &TableShape) -> String {
    let parts: Vec<String> = shape
        .keys
        .iter()
        .enumerate()
        .map(|(index, name)| format!("\"{name}\" = ?{}", index + 1))
        .collect();
    parts.join(" AND ")
}

fn quoted(names: &[String]) -> Vec<String> {
    names.iter().map(|name| format!("\"{name}\"")).collect()
}

fn delete_row(
    conn: &Connection,
    table: &str,
    shape: &TableShape,
    key: &[rusqlite::types::Value],
) -> StoreResult<()> {
    if key.len() != shape.keys.len() {
        return Err(StoreError::Corrupt(format!(
            "a change to {table} has a {}-part key; the table's key has {} parts",
            key.len(),
            shape.keys.len()
        )));
    }
    conn.prepare_cached(&format!(
        "DELETE FROM \"{table}\" WHERE {}",
        key_condition(shape)
    ))?
    .execute(rusqlite::params_from_iter(key))?;
    Ok(())
}

fn apply_one(conn: &Connection, shape: &TableShape, entry: &ChangeEntry) -> StoreResult<()> {
    let table = entry.table_name.as_str();
    let old_key = key_values(&entry.row_key)?;
    let data = match (entry.op.as_str(), &entry.row_data) {
        ("DELETE", _) => return delete_row(conn, table, shape, &old_key),
        ("INSERT" | "UPDATE", Some(data)) => data,
        (op, _) => {
            return Err(StoreError::Corrupt(format!(
                "change {} is an {op:?} on {table} without a row",
                entry.seq
            )));
        }
    };
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(data).map_err(|error| {
            StoreError::Corrupt(format!(
                "change {}'s row is not a JSON object: {error}",
                entry.seq
            ))
        })?;
    let whole = row.len() == shape.columns.len();
    let known = row.keys().all(|column| shape.columns.contains(column))
        && shape.keys.iter().all(|key| row.contains_key(key));
    // An insert carries the whole row; an update the key and the changed columns.
    if !known || (entry.op == "INSERT" && !whole) {
        return Err(StoreError::Corrupt(format!(
            "change {} carries columns {:?}; {table} has {:?} (do both nodes run the same schema?)",
            entry.seq,
            row.keys().collect::<Vec<_>>(),
            shape.columns
        )));
    }
    if !whole {
        return update_columns(conn, shape, table, &old_key, &row);
    }
    let new_key: Vec<rusqlite::types::Value> = shape
        .keys
        .iter()
        .map(|key| sql_value(&row[key]))
        .collect::<StoreResult<_>>()?;
    if entry.op == "UPDATE" && new_key != old_key {
        delete_row(conn, table, shape, &old_key)?;
    }
    let values: Vec<rusqlite::types::Value> = shape
        .columns
        .iter()
        .map(|column| sql_value(&row[column]))
        .collect::<StoreResult<_>>()?;
    let key_condition = key_condition(shape);
    let current: Option<Vec<rusqlite::types::Value>> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM \"{table}\" WHERE {}",
            quoted(&shape.columns).join(", "),
            key_condition
        ))?
        .query_row(rusqlite::params_from_iter(&new_key), |row| {
            (0..shape.columns.len())
                .map(|index| row.get(index))
                .collect()
        })
        .optional()?;
    match current {
        None => {
            let placeholders: Vec<String> = (1..=values.len())
                .map(|index| format!("?{index}"))
                .collect();
            conn.prepare_cached(&format!(
                "INSERT INTO \"{table}\" ({}) VALUES ({})",
                quoted(&shape.columns).join(", "),
                placeholders.join(", ")
            ))?
            .execute(rusqlite::params_from_iter(values))?;
        }
        Some(current) => {
            // Only the columns that differ are written: an index is maintained only when its
            // column changed, so the cost of applying a change follows the change, not the size
            // of the table (a check-in touches two columns, not every index of `devices`).
            // Replaying an entry twice writes nothing, which also keeps append-only tables
            // (events) replayable.
            write_changed(
                conn,
                shape,
                table,
                &new_key,
                &shape.columns,
                &current,
                &values,
            )?;
        }
    }
    Ok(())
}

/// An update that carries only the changed columns: those that still differ are written to the
/// row the entry's old key names. No such row means this batch is being replayed and a later
/// entry of it deleted the row (applying a batch twice is harmless); in a history applied in
/// order the row is always there, as the chain checksums guarantee.
fn update_columns(
    conn: &Connection,
    shape: &TableShape,
    table: &str,
    old_key: &[rusqlite::types::Value],
    row: &serde_json::Map<String, serde_json::Value>,
) -> StoreResult<()> {
    let columns: Vec<String> = shape
        .columns
        .iter()
        .filter(|column| row.contains_key(*column))
        .cloned()
        .collect();
    let values: Vec<rusqlite::types::Value> = columns
        .iter()
        .map(|column| sql_value(&row[column]))
        .collect::<StoreResult<_>>()?;
    let key_condition = key_condition(shape);
    let current: Option<Vec<rusqlite::types::Value>> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM \"{table}\" WHERE {key_condition}",
            quoted(&columns).join(", "),
        ))?
        .query_row(rusqlite::params_from_iter(old_key), |found| {
            (0..columns.len()).map(|index| found.get(index)).collect()
        })
        .optional()?;
    let Some(current) = current else {
        return Ok(());
    };
    write_changed(conn, shape, table, old_key, &columns, &current, &values)
}

/// Writes those of `columns` whose `values` differ from the row's `current` ones, to the row
/// `key` names.
fn write_changed(
    conn: &Connection,
    shape: &TableShape,
    table: &str,
    key: &[rusqlite::types::Value],
    columns: &[String],
    current: &[rusqlite::types::Value],
    values: &[rusqlite::types::Value],
) -> StoreResult<()> {
    let changed: Vec<usize> = (0..columns.len())
        .filter(|&index| current[index] != values[index])
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let sets: Vec<String> = changed
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            format!(
                "\"{}\" = ?{}",
                columns[index],
                shape.keys.len() + position + 1
            )
        })
        .collect();
    let parameters = key
        .iter()
        .cloned()
        .chain(changed.iter().map(|&index| values[index].clone()));
    conn.prepare_cached(&format!(
        "UPDATE \"{table}\" SET {} WHERE {}",
        sets.join(", "),
        key_condition(shape)
    ))?
    .execute(rusqlite::params_from_iter(parameters))?;
    Ok(())
}

/// Row count and content digest of one replicated table (`tandem ha verify`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableDigest {
    pub table: String,
    pub rows: i64,
    pub sha256: String,
}

/// Digests of every replicated table (the change log excluded: its retention base may differ
/// between nodes holding the same data), each over its rows in key order as JSON.
pub fn table_digests(conn: &Connection) -> StoreResult<Vec<TableDigest>> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut digests = Vec::new();
    for table in tables.iter().filter(|table| is_captured(table)) {
        let shape = table_shape(conn, table)?;
        let row_json: Vec<String> = shape
            .columns
            .iter()
            .map(|name| format!("'{name}', \"{name}\""))
            .collect();
        let order = if shape.keys.is_empty() {
            "rowid".to_owned()
        } else {
            quoted(&shape.keys).join(", ")
        };
        let mut statement = conn.prepare(&format!(
            "SELECT json_object({}) FROM \"{table}\" ORDER BY {order}",
            row_json.join(", ")
        ))?;
        let mut rows = statement.query([])?;
        let mut hasher = Sha256::new();
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let text: String = row.get(0)?;
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
            count += 1;
        }
        digests.push(TableDigest {
            table: table.clone(),
            rows: count,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    Ok(digests)
}

/// Recomputes the whole retained chain from its base; the first broken link is an error.
pub fn verify_chain(conn: &Connection) -> StoreResult<Position> {
    /// Entries read per query while verifying, to bound memory on a full log.
    const VERIFY_BATCH_ENTRIES: i64 = 10_000;
    let mut previous = base(conn)?;
    loop {
        let batch = entries_after(conn, previous.seq, VERIFY_BATCH_ENTRIES)?;
        if batch.is_empty() {
            return Ok(previous);
        }
        for entry in &batch {
            previous = next_link(&previous, entry).map_err(|expected| {
                StoreError::Corrupt(format!(
                    "change log entry {} does not follow from entry {} (checksum {} expected {expected})",
                    entry.seq, previous.seq, entry.checksum
                ))
            })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Database, OpenMode};
    use crate::users::{self, UserInput};

    fn user(principal: &str) -> UserInput {
        UserInput {
            principal: Some(principal.into()),
            email: None,
            first_name: None,
            last_name: None,
        }
    }

    fn open(dir: &tempfile::TempDir) -> Database {
        crate::open_replicated(&dir.path().join("r.db"), OpenMode::Create).unwrap()
    }

    /// A new database whose history holds one user, a@example.com.
    async fn open_with_one_user(dir: &tempfile::TempDir) -> Database {
        let db = open(dir);
        db.write(|conn| users::create(conn, "admin", &user("a@example.com")))
            .await
            .unwrap();
        db
    }

    /// An in-memory database holding `table` (its SQL) and captured in `form`, for looking at
    /// what the triggers record without a writer.
    fn captured_in_memory(table: &str, form: TriggerForm) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        conn.execute_batch(table).unwrap();
        install_change_log(&conn).unwrap();
        install_capture_triggers(&conn, form).unwrap();
        conn
    }

    /// A tiny deterministic generator: each failing case is replayed from its seed.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % bound.max(1)
        }
    }

    /// Random inserts, updates and deletes on a fresh database; returns its change log.
    fn random_history(
        seed: u64,
        operations: usize,
    ) -> (Database, tempfile::TempDir, Vec<ChangeEntry>) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_replicated(&dir.path().join("source.db"), OpenMode::Create).unwrap();
        let mut random = Lcg(seed);
        let mut users_alive: Vec<i64> = Vec::new();
        let mut labels_alive: Vec<i64> = Vec::new();
        for step in 0..operations {
            let choice = random.below(6);
            let pick_user = (!users_alive.is_empty()).then(|| random.below(users_alive.len()));
            let pick_label = (!labels_alive.is_empty()).then(|| random.below(labels_alive.len()));
            match (choice, pick_user, pick_label) {
                (0 | 1, _, _) | (2 | 3, None, _) => {
                    let id = db
                        .write_blocking(move |conn| {
                            users::create(conn, "admin", &user(&format!("u{step}@example.com")))
                        })
                        .unwrap()
                        .id;
                    users_alive.push(id);
                }
                (2, Some(index), _) => {
                    let id = users_alive[index];
                    db.write_blocking(move |conn| {
                        let mut input = user(&users::get(conn, id)?.principal);
                        input.last_name = Some(format!("step {step}"));
                        users::update(conn, "admin", id, &input)
                    })
                    .unwrap();
                }
                (3, Some(index), _) => {
                    let id = users_alive.swap_remove(index);
                    db.write_blocking(move |conn| users::delete(conn, "admin", id))
                        .unwrap();
                }
                (4.., _, None) | (4, _, _) => {
                    let input = crate::labels::LabelInput {
                        name: Some(format!("label-{step}")),
                        description: None,
                    };
                    let id = db
                        .write_blocking(move |conn| crate::labels::create(conn, "admin", &input))
                        .unwrap()
                        .id;
                    labels_alive.push(id);
                }
                (_, _, Some(index)) => {
                    let id = labels_alive.swap_remove(index);
                    db.write_blocking(move |conn| crate::labels::delete(conn, "admin", id))
                        .unwrap();
                }
            }
        }
        let entries = db
            .read_blocking(|conn| entries_after(conn, 0, i64::MAX))
            .unwrap();
        (db, dir, entries)
    }

    fn replayed(
        dir: &tempfile::TempDir,
        name: &str,
        batches: &[&[ChangeEntry]],
    ) -> Vec<TableDigest> {
        let db = crate::open_replicated(&dir.path().join(name), OpenMode::Create).unwrap();
        for batch in batches {
            let batch = batch.to_vec();
            db.write_blocking(move |conn| without_capture(|| replay_rows(conn, &batch)))
                .unwrap();
        }
        let digests = db.read_blocking(table_digests).unwrap();
        db.close_blocking();
        digests
    }

    #[test]
    fn replaying_a_batch_twice_or_a_prefix_then_the_rest_gives_the_same_database() {
        /// Histories tried; each has a different seed, length and split point.
        const CASES: u64 = 24;
        for case in 0..CASES {
            let seed = 0x7a4d_0000 + case;
            let mut random = Lcg(seed);
            let operations = 5 + random.below(60);
            let (source, dir, entries) = random_history(seed, operations);
            let expected = source.read_blocking(table_digests).unwrap();
            source.close_blocking();
            let split = random.below(entries.len() + 1);
            let (prefix, rest) = entries.split_at(split);
            let all = entries.as_slice();
            let context = format!(
                "seed {seed:#x}, {} entries, split at {split}",
                entries.len()
            );
            assert_eq!(
                replayed(&dir, "once.db", &[all]),
                expected,
                "once: {context}"
            );
            assert_eq!(
                replayed(&dir, "twice.db", &[all, all]),
                expected,
                "twice: {context}"
            );
            assert_eq!(
                replayed(&dir, "split.db", &[prefix, rest]),
                expected,
                "split: {context}"
            );
            assert_eq!(
                replayed(&dir, "prefix-again.db", &[prefix, prefix, all]),
                expected,
                "prefix, prefix, all: {context}"
            );
        }
    }

    /// The oldest entry of `op` on `table`.
    fn first_entry(db: &Database, table: &'static str, op: &'static str) -> ChangeEntry {
        db.read_blocking(|conn| entries_after(conn, 0, i64::MAX))
            .unwrap()
            .into_iter()
            .find(|entry| entry.table_name == table && entry.op == op)
            .unwrap_or_else(|| panic!("no {op} on {table}"))
    }

    #[test]
    fn an_update_records_the_key_and_only_the_columns_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let mut input = user("a@example.com");
        input.last_name = Some("Lovelace".into());
        let created = input.clone();
        let id = db
            .write_blocking(move |conn| users::create(conn, "admin", &created))
            .unwrap()
            .id;
        // The last name is cleared: a change to NULL is a change too.
        input.last_name = None;
        db.write_blocking(move |conn| users::update(conn, "admin", id, &input))
            .unwrap();
        let update = first_entry(&db, "users", "UPDATE");
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(update.row_data.as_deref().unwrap()).unwrap();
        // `updated_at` too, unless both writes fell in the same millisecond.
        let mut columns: Vec<&str> = row
            .keys()
            .map(String::as_str)
            .filter(|column| *column != "updated_at")
            .collect();
        columns.sort_unstable();
        assert_eq!(columns, ["id", "last_name"], "{row:?}");
        assert_eq!(row["id"], id);
        assert!(row["last_name"].is_null());
        // An insert still carries the whole row.
        let insert = first_entry(&db, "users", "INSERT");
        assert!(
            insert
                .row_data
                .as_deref()
                .unwrap()
                .contains("\"principal\":\"a@example.com\"")
        );
        db.close_blocking();
    }

    #[test]
    fn an_update_that_moves_a_row_to_a_new_key_records_the_whole_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_replicated(&dir.path().join("source.db"), OpenMode::Create).unwrap();
        let first = crate::labels::LabelInput {
            name: Some("first".into()),
            description: None,
        };
        let id = db
            .write_blocking(move |conn| crate::labels::create(conn, "admin", &first))
            .unwrap()
            .id;
        // The row moves to a new key, then a new row takes the old one.
        db.write_blocking(move |conn| {
            conn.execute("UPDATE labels SET id = 999 WHERE id = ?1", [id])?;
            conn.execute(
                "INSERT INTO labels (id, name, created_at, updated_at)
                 VALUES (?1, 'second', '2026-12-01', '2026-12-01')",
                [id],
            )?;
            Ok(())
        })
        .unwrap();
        let moved = first_entry(&db, "labels", "UPDATE");
        assert!(
            moved
                .row_data
                .as_deref()
                .unwrap()
                .contains("\"name\":\"first\""),
            "the whole row: {moved:?}"
        );
        let expected = db.read_blocking(table_digests).unwrap();
        let entries = db
            .read_blocking(|conn| entries_after(conn, 0, i64::MAX))
            .unwrap();
        db.close_blocking();
        // Applied once, or in two parts split anywhere (as two syncs would), it gives the same
        // database. (Twice in a row it cannot: the second insert of "first" under the old key
        // meets the moved row's unique name, with whole rows as with changed columns.)
        for split in 0..=entries.len() {
            let (prefix, rest) = entries.split_at(split);
            let name = format!("split-{split}.db");
            assert_eq!(replayed(&dir, &name, &[prefix, rest]), expected, "{split}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_are_captured_sealed_and_chained() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_with_one_user(&dir).await;
        db.set_epoch(7);
        let created = db
            .write(|conn| users::create(conn, "admin", &user("b@example.com")))
            .await
            .unwrap();
        // A job that fails after writing leaves no entry behind.
        let failed = db
            .write(|conn| {
                users::create(conn, "admin", &user("c@example.com"))?;
                users::create(conn, "admin", &user("a@example.com"))
            })
            .await;
        assert!(failed.is_err());
        db.write(move |conn| users::delete(conn, "admin", created.id))
            .await
            .unwrap();

        let entries = db.read(|conn| entries_after(conn, 0, 100)).await.unwrap();
        let summary: Vec<(i64, &str, &str)> = entries
            .iter()
            .map(|entry| (entry.epoch, entry.table_name.as_str(), entry.op.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, "users", "INSERT"),
                (1, "events", "INSERT"),
                (7, "users", "INSERT"),
                (7, "events", "INSERT"),
                (7, "users", "DELETE"),
                (7, "events", "INSERT"),
            ]
        );
        assert_eq!(entries[4].row_key, format!("[{}]", created.id));
        assert_eq!(entries[4].row_data, None);
        let row: serde_json::Value =
            serde_json::from_str(entries[2].row_data.as_deref().unwrap()).unwrap();
        assert_eq!(row["principal"], "b@example.com");
        let head = db.read(verify_chain).await.unwrap();
        assert_eq!(head.seq, 6);
        assert_eq!(head, db.read(position).await.unwrap());

        // Tampering with any entry breaks the chain at that entry.
        db.close().await;
        let raw = rusqlite::Connection::open(dir.path().join("r.db")).unwrap();
        let error = {
            raw.execute(
                "UPDATE change_log SET row_data = replace(row_data, 'b@', 'x@') WHERE seq = 3",
                [],
            )
            .unwrap();
            verify_chain(&raw).unwrap_err().to_string()
        };
        assert!(error.contains("entry 3 does not follow"), "{error}");
    }

    #[tokio::test]
    async fn a_connection_without_tandem_cannot_write_unrecorded_changes() {
        let dir = tempfile::tempdir().unwrap();
        // Kept open while another connection tries to write, as a running node would be.
        let _db = open_with_one_user(&dir).await;
        let raw = rusqlite::Connection::open(dir.path().join("r.db")).unwrap();
        let error = raw
            .execute("UPDATE users SET email = 'x@example.com'", [])
            .unwrap_err()
            .to_string();
        assert!(error.contains("tandem_capture_enabled"), "{error}");
    }

    #[tokio::test]
    async fn capture_can_be_suspended_for_applying_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.write(|conn| {
            without_capture(|| {
                conn.execute(
                    "INSERT INTO settings (key, value, updated_at) VALUES ('a', '1', 'now')",
                    [],
                )
            })?;
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES ('b', '2', 'now')",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let entries = db.read(|conn| entries_after(conn, 0, 10)).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].row_key, "[\"b\"]");
    }

    #[tokio::test]
    async fn pruning_keeps_the_chain_verifiable_from_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        for index in 0..30 {
            db.write(move |conn| {
                crate::settings::put(
                    conn,
                    "admin",
                    &format!("k{index}"),
                    &serde_json::json!(index),
                )
            })
            .await
            .unwrap();
        }
        let head = db
            .write(|conn| {
                let head = position(conn)?;
                prune(conn, head.seq, 10, 5)?;
                Ok(head)
            })
            .await
            .unwrap();
        let (base, verified) = db
            .read(|conn| Ok((base(conn)?, verify_chain(conn)?)))
            .await
            .unwrap();
        assert_eq!(base.seq, head.seq - 10);
        assert_eq!(verified, head);
        let retained = db.read(|conn| entries_after(conn, 0, 100)).await.unwrap();
        assert_eq!(retained.len(), 10);
    }

    #[test]
    fn the_update_function_records_what_the_sql_form_records() {
        // The same updates captured by the SQL form (schema version 3) and by the function
        // (version 4 on): every entry names the same columns with the same values.
        let capture = |updates: TriggerForm| -> Vec<(String, serde_json::Value)> {
            let conn = captured_in_memory(
                "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT, count INTEGER,
                    ratio REAL, note TEXT)",
                updates,
            );
            conn.execute("INSERT INTO things VALUES (1, 'a', 1, 0.5, NULL)", [])
                .unwrap();
            for update in [
                "UPDATE things SET name = 'quote \" back\\slash' WHERE id = 1",
                "UPDATE things SET note = 'line\nbreak\ttab\u{1}bell Zoë ✓' WHERE id = 1",
                "UPDATE things SET count = -9223372036854775808, ratio = 2.5 WHERE id = 1",
                "UPDATE things SET ratio = -0.75, note = NULL WHERE id = 1",
                "UPDATE things SET name = name WHERE id = 1",
                "UPDATE things SET id = 2, name = 'moved' WHERE id = 1",
            ] {
                conn.execute(update, []).unwrap();
            }
            conn.prepare(
                "SELECT row_key, row_data FROM change_log WHERE op = 'UPDATE' ORDER BY seq",
            )
            .unwrap()
            .query_map([], |row| {
                let data: String = row.get(1)?;
                Ok((row.get(0)?, serde_json::from_str(&data).unwrap()))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let by_function = capture(TriggerForm::ChangedByFunction);
        assert_eq!(by_function, capture(TriggerForm::Changed));
        assert_eq!(by_function[1].1["note"], "line\nbreak\ttab\u{1}bell Zoë ✓");
        // An update that changes nothing records the key alone; a moved row, the whole row.
        assert_eq!(by_function[4].1, serde_json::json!({"id": 1}));
        assert_eq!(by_function[5].0, "[1]");
        assert_eq!(
            by_function[5].1,
            serde_json::json!({"id": 2, "name": "moved", "count": i64::MIN, "ratio": -0.75,
                "note": null})
        );
    }

    #[test]
    fn a_value_that_changes_type_is_recorded_even_when_sql_calls_it_equal() {
        let conn = captured_in_memory(
            "CREATE TABLE loose (id INTEGER PRIMARY KEY, value)",
            TriggerForm::ChangedByFunction,
        );
        conn.execute("INSERT INTO loose VALUES (1, 1)", []).unwrap();
        conn.execute("UPDATE loose SET value = 1.0 WHERE id = 1", [])
            .unwrap();
        let data: String = conn
            .query_row(
                "SELECT row_data FROM change_log WHERE op = 'UPDATE'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(data, r#"{"id":1,"value":1.0}"#);
        // A BLOB has no JSON form: the write fails rather than go unrecorded.
        let error = conn
            .execute("UPDATE loose SET value = x'00' WHERE id = 1", [])
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot record column value"), "{error}");
    }

    #[tokio::test]
    async fn a_gap_in_the_new_entries_fails_the_commit_instead_of_sealing_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_with_one_user(&dir).await;
        let before = db.read(position).await.unwrap();
        let gap = before.seq + 1;
        let error = db
            .write(move |conn| {
                users::create(conn, "admin", &user("b@example.com"))?;
                conn.execute("DELETE FROM change_log WHERE seq = ?1", [gap])
                    .map_err(StoreError::from_sqlite)?;
                Ok(())
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("sequence jumps"), "{error}");
        // Nothing of the failed group committed, and the next write chains on.
        assert_eq!(db.read(position).await.unwrap(), before);
        db.write(|conn| users::create(conn, "admin", &user("c@example.com")))
            .await
            .unwrap();
        let head = db.read(verify_chain).await.unwrap();
        assert_eq!(head, db.read(position).await.unwrap());
        assert!(head.seq > before.seq);
    }

    #[tokio::test]
    async fn schema_version_4_rebuilds_the_change_log_and_keeps_its_history() {
        for released in [2, 3] {
            upgrade_to_version_4_from(released).await;
        }
    }

    /// A database written by the triggers of schema version `released` (inserts and an update,
    /// sealed by the current writer), then opened at the current version.
    async fn upgrade_to_version_4_from(released: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let old = crate::db::Schema {
            migrations: &crate::schema::REPLICATED.migrations[..released],
            ..crate::schema::REPLICATED
        };
        let db = Database::open(&path, old, OpenMode::Create).unwrap();
        // The released triggers, as released: no epoch, no placeholder.
        let trigger: String = db
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT sql FROM sqlite_schema WHERE name = 'capture_users_update'",
                    [],
                    |row| row.get(0),
                )?)
            })
            .await
            .unwrap();
        assert!(
            trigger.contains("INSERT INTO change_log (table_name, op, row_key, row_data)")
                && !trigger.contains("tandem_capture_epoch")
                && !trigger.contains(UNSEALED_CHECKSUM),
            "{trigger}"
        );
        let mut ids = Vec::new();
        for principal in ["a@example.com", "b@example.com"] {
            let created = db
                .write(move |conn| users::create(conn, "admin", &user(principal)))
                .await
                .unwrap();
            ids.push(created.id);
        }
        let mut renamed = user("a@example.com");
        renamed.last_name = Some("Lovelace".into());
        let id = ids[0];
        db.write(move |conn| users::update(conn, "admin", id, &renamed))
            .await
            .unwrap();
        let history = db.read(|conn| entries_after(conn, 0, 100)).await.unwrap();
        assert!(history.iter().any(|entry| entry.op == "UPDATE"));
        assert_eq!(
            db.read(verify_chain).await.unwrap().seq,
            history.last().unwrap().seq
        );
        db.close().await;

        let db = crate::open_replicated(&path, OpenMode::Existing).unwrap();
        let (definition, migrated) = db
            .read(|conn| {
                let definition: String = conn.query_row(
                    "SELECT sql FROM sqlite_schema WHERE name = 'change_log'",
                    [],
                    |row| row.get(0),
                )?;
                Ok((definition, entries_after(conn, 0, 100)?))
            })
            .await
            .unwrap();
        assert!(definition.contains("op = 'INSERT' OR"), "{definition}");
        assert_eq!(migrated, history);
        db.write(|conn| users::create(conn, "admin", &user("c@example.com")))
            .await
            .unwrap();
        let head = db.read(verify_chain).await.unwrap();
        assert!(head.seq > history.last().unwrap().seq);
    }

    #[test]
    fn a_checksum_is_the_same_text_as_in_every_released_history() {
        // Computed outside Tandem (Python's hashlib over the same length-prefixed fields): the
        // chain must never change form, or no node could prove it holds its peer's history.
        assert_eq!(
            entry_checksum(
                GENESIS_CHECKSUM,
                1,
                7,
                "users",
                "INSERT",
                "[1]",
                Some(r#"{"id":1}"#)
            ),
            "f0c234f927b5f0b5922806e1fbf4b5540d18bea245f5c5a2160efacf5249302d"
        );
        assert_eq!(
            entry_checksum(GENESIS_CHECKSUM, 2, 7, "users", "DELETE", "[1]", None),
            "4e68161abc95e44f8113a54bdbca713a18b5b4eb0f753076fe8cea1006c30466"
        );
    }
}
