//! `GET /ha/sync`: Run Sync Now, Last Sync Status and Sync History (guide: Step 5, Table 3
//! task 2). A Secondary syncs from its Primary; the sync runs in a task of its own (an initial
//! full sync takes minutes) through the control socket's `Operation::Sync`, the code path of
//! `tandem failover sync`, and Refresh shows it finish.

use super::Executor;
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render, run_operation};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tandem_ha::{Mode, State as NodeState};
use tandem_repl::ops::{Event, Operation};
use tandem_store::history::SyncRecord;
use time::OffsetDateTime;

/// Sync History rows on one page: a day of hourly syncs, one screen at 1280 px.
pub const HISTORY_PAGE_ROWS: i64 = 20;
/// How long Run Sync Now waits for the sync's answer before it reports "started": refusals
/// (a sync already running, an untrusted or unreachable Primary, diverged history) come back
/// within it and are shown at once; a sync that moves data takes longer and the page's Refresh
/// shows it finish.
pub const SYNC_ANSWER_WAIT: Duration = Duration::from_secs(3);
/// The deepest page asked for: Sync History keeps at most this many pages' worth of rows.
const HISTORY_PAGES_MAX: i64 =
    tandem_store::history::SYNC_HISTORY_RETAINED_MAX / HISTORY_PAGE_ROWS + 1;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ha/sync", get(show))
        .route("/ha/sync/run", post(run))
}

use crate::console::time::Moment;

#[derive(Template)]
#[template(path = "console/sm_sync.html")]
struct SyncPage {
    chrome: Chrome,
    /// The Primary to sync from, or why Run Sync Now is not offered here.
    source: Result<String, String>,
    running: bool,
    last: Option<HistoryRow>,
    /// When the schedule runs the next sync.
    next_sync: Option<String>,
    rows: Vec<HistoryRow>,
    /// Why Sync History could not be read.
    history_error: Option<String>,
    page: i64,
    older: bool,
}

/// One Sync History row as shown.
struct HistoryRow {
    started: Moment,
    ended: Option<Moment>,
    duration: String,
    kind: String,
    trigger: String,
    result: String,
    result_class: &'static str,
    entries: i64,
    files: i64,
    bytes: i64,
    peer: String,
    /// The error, or the note (why full, where diverged entries went).
    detail: Option<String>,
}

impl HistoryRow {
    fn of(record: &SyncRecord, now: OffsetDateTime) -> Self {
        let started = Moment::stored(&record.started_at, now);
        let ended = record.ended_at.as_deref().map(|at| Moment::stored(at, now));
        let duration = match (
            tandem_store::common::parse_timestamp(&record.started_at),
            record
                .ended_at
                .as_deref()
                .map(tandem_store::common::parse_timestamp),
        ) {
            (Ok(start), Some(Ok(end))) => {
                format!("{:.1} s", (end - start).as_seconds_f64().max(0.0))
            }
            _ => "-".into(),
        };
        Self {
            started,
            ended,
            duration,
            kind: record.kind.clone().unwrap_or_else(|| "-".into()),
            trigger: record.trigger.clone(),
            result_class: result_class(&record.result),
            result: record.result.clone(),
            entries: record.entries,
            files: record.files,
            bytes: record.bytes,
            peer: record.source.clone(),
            detail: record.error.clone().or_else(|| record.note.clone()),
        }
    }
}

/// The badge of a sync's result: green done, blue running, amber skipped, red otherwise.
fn result_class(result: &str) -> &'static str {
    match result {
        "succeeded" => "ok",
        "running" => "standby",
        "skipped" => "warn",
        _ => "bad",
    }
}

#[derive(Deserialize)]
struct PageQuery {
    /// Text, so a page number that is not one shows the first page instead of an error.
    #[serde(default)]
    page: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<Executor>,
    Extension(session): Extension<ConsoleSession>,
    Query(query): Query<PageQuery>,
) -> Response {
    let page = query
        .page
        .and_then(|page| page.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, HISTORY_PAGES_MAX);
    let now = OffsetDateTime::now_utc();
    let snapshot = ha.snapshot();
    let running = snapshot.sync_running || executor.replication.sync_running();
    let (rows, older, history_error) = match history(&executor, page).await {
        Ok((records, older)) => (
            records.iter().map(|r| HistoryRow::of(r, now)).collect(),
            older,
            None,
        ),
        Err(error) => (Vec::new(), false, Some(error)),
    };
    let last = last_sync(&executor)
        .await
        .map(|record| HistoryRow::of(&record, now));
    let next_sync = snapshot.next_sync_ms.and_then(|at_ms| {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).ok()?;
        let until = (at - now).whole_seconds();
        let stored = tandem_store::common::timestamp(at);
        Some(format!(
            "{} (in {})",
            Moment::stored(&stored, now).utc,
            crate::console::time::span(until.max(0))
        ))
    });
    render(&SyncPage {
        chrome: Chrome::new(&state, &ha, &session, "/ha/sync", "Sync"),
        source: sync_source(&snapshot),
        running,
        last,
        next_sync,
        rows,
        history_error,
        page,
        older,
    })
}

/// Page `page` of Sync History through `Operation::History` (`tandem ha history`), newest
/// first, and whether older rows follow.
async fn history(executor: &Executor, page: i64) -> Result<(Vec<SyncRecord>, bool), String> {
    let operation = Operation::History {
        limit: HISTORY_PAGE_ROWS + 1,
        offset: (page - 1) * HISTORY_PAGE_ROWS,
    };
    let mut records = records(run_operation(&**executor, operation).await)?;
    let older = records.len() as i64 > HISTORY_PAGE_ROWS;
    records.truncate(HISTORY_PAGE_ROWS as usize);
    Ok((records, older))
}

/// The last sync as `tandem ha status` shows it (its `lastSync`).
async fn last_sync(executor: &Executor) -> Option<SyncRecord> {
    match run_operation(&**executor, Operation::HaStatus).await {
        Event::Done { result } => record(&result["lastSync"]),
        _ => None,
    }
}

fn records(event: Event) -> Result<Vec<SyncRecord>, String> {
    match event {
        Event::Done { result } => Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(record)
            .collect()),
        Event::Failed { message, .. } => Err(message),
        Event::Progress { .. } => Err("Sync History ended without a result".into()),
    }
}

/// A Sync History row from the operations' JSON (`SyncRecord` as serialized).
fn record(value: &Value) -> Option<SyncRecord> {
    let text = |name: &str| value[name].as_str().map(str::to_owned);
    let number = |name: &str| value[name].as_i64().unwrap_or_default();
    Some(SyncRecord {
        id: value["id"].as_i64()?,
        started_at: text("startedAt")?,
        ended_at: text("endedAt"),
        source: text("source").unwrap_or_default(),
        trigger: text("trigger").unwrap_or_default(),
        kind: text("kind"),
        result: text("result").unwrap_or_default(),
        entries: number("entries"),
        files: number("files"),
        bytes: number("bytes"),
        position_seq: value["positionSeq"].as_i64(),
        note: text("note"),
        error: text("error"),
    })
}

/// The Primary a Run Sync Now here syncs from, or why this node does not run one.
fn sync_source(snapshot: &tandem_ha::machine::Snapshot) -> Result<String, String> {
    let status = snapshot.status;
    if !status.ha_enabled {
        return Err(
            "High Availability is disabled on this node (standalone), so it has no \
                    Primary to sync from. Enable HA with Mode Secondary on HA Configuration; \
                    for a one-off copy, run `tandem failover sync HOST:PORT` on this node."
                .into(),
        );
    }
    if status.mode == Mode::Primary {
        return Err(
            "This node is the Primary: a sync runs on the Secondary, which copies from \
                    its Primary. Run Sync Now on the Secondary's System Manager (Maintenance → \
                    Sync)."
                .into(),
        );
    }
    if status.state == NodeState::Active {
        return Err(format!(
            "This Secondary is Active in epoch {} and serves devices; a sync would replace its \
             data under them. Make it a Standby first (`tandem failover mode secondary`).",
            snapshot.epoch
        ));
    }
    snapshot.config.primary_text().ok_or_else(|| {
        "No Primary is configured: choose the Primary on HA Configuration first.".to_owned()
    })
}

#[derive(Deserialize)]
struct RunFields {
    /// `incremental` (only the changes since the last sync) or `full` (force full).
    #[serde(default)]
    kind: String,
}

/// `POST /ha/sync/run`: Run Sync Now, from this Secondary's Primary, in a task of its own.
async fn run(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<Executor>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(fields): ConsoleForm<RunFields>,
) -> Response {
    let snapshot = ha.snapshot();
    let endpoint = match sync_source(&snapshot) {
        Ok(endpoint) => endpoint,
        Err(why) => {
            let flash = Flash::error(format!("Run Sync Now was not started: {why}"));
            return session.redirect(&state, "/ha/sync", flash);
        }
    };
    if snapshot.sync_running || executor.replication.sync_running() {
        let flash = Flash::error(
            "Run Sync Now was not started: a sync is already running on this node, and syncs \
             never overlap. Refresh to see it finish, then run it again if needed.",
        );
        return session.redirect(&state, "/ha/sync", flash);
    }
    let force_full = fields.kind == "full";
    let (answer, answered) = tokio::sync::oneshot::channel();
    let task_executor = executor.clone();
    let operation = Operation::Sync {
        endpoint: endpoint.clone(),
        force_full,
    };
    tracing::info!(user = %session.user(), %endpoint, force_full, "Run Sync Now from the console");
    tokio::spawn(async move {
        let _ = answer.send(run_operation(&*task_executor, operation).await);
    });
    let kind = if force_full { "full" } else { "incremental" };
    let flash = match tokio::time::timeout(SYNC_ANSWER_WAIT, answered).await {
        Ok(Ok(Event::Done { result })) => Flash::success(finished(&result)),
        Ok(Ok(Event::Failed { message, .. })) => {
            Flash::error(format!("The sync from {endpoint} failed: {message}"))
        }
        _ => Flash::success(format!(
            "Sync started: a {kind} sync from {endpoint} is running. It can take minutes; \
             Refresh to see it finish in Sync History."
        )),
    };
    session.redirect(&state, "/ha/sync", flash)
}

/// What a sync that finished at once did, as `tandem failover sync` prints it.
fn finished(result: &Value) -> String {
    let text = |name: &str| match &result[name] {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    format!(
        "Sync from {} ({}) succeeded: {} sync, {} entries, {} files, {} bytes in {:.1} s.",
        text("source"),
        text("sourceNode"),
        text("kind"),
        text("entries"),
        text("files"),
        text("bytes"),
        result["durationMs"].as_f64().unwrap_or(0.0) / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_row_round_trips_from_the_operation_json() {
        let stored = SyncRecord {
            id: 7,
            started_at: "2026-12-03T16:49:00.000Z".into(),
            ended_at: Some("2026-12-03T16:49:02.300Z".into()),
            source: "10.0.0.1:2222".into(),
            trigger: "manual".into(),
            kind: Some("full".into()),
            result: "succeeded".into(),
            entries: 120,
            files: 2,
            bytes: 4096,
            position_seq: Some(120),
            note: Some("first sync".into()),
            error: None,
        };
        let parsed = record(&serde_json::to_value(&stored).unwrap()).unwrap();
        assert_eq!(parsed, stored);
        let now = tandem_store::common::parse_timestamp("2026-12-03T16:50:00.000Z").unwrap();
        let row = HistoryRow::of(&parsed, now);
        assert_eq!(row.duration, "2.3 s");
        assert_eq!(row.result_class, "ok");
        assert_eq!(row.detail.as_deref(), Some("first sync"));
    }

    #[test]
    fn results_read_in_colour_green_done_blue_running_amber_skipped_red_otherwise() {
        assert_eq!(result_class("succeeded"), "ok");
        assert_eq!(result_class("running"), "standby");
        assert_eq!(result_class("skipped"), "warn");
        for bad in ["failed", "refused", "interrupted"] {
            assert_eq!(result_class(bad), "bad");
        }
    }
}
