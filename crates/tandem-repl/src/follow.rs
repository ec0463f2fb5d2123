//! Continuous replication (HA Configuration: Replication = continuous): a Standby keeps one
//! session open to its Primary and applies the Primary's entries as they commit.
//!
//! It is the incremental sync in a loop, on the same protocol, change log, checksums and
//! transaction per batch: the follower asks for the entries after its position with a long
//! poll (`Changes` with `wait_ms`), the source answers as soon as a later write commits, and
//! the batch is applied in one transaction together with the new position, so a follower killed
//! at any instant keeps its previous, consistent state. When its position leaves the source's
//! history (retention, divergence) the follower stops and the caller runs an ordinary sync,
//! which records it in Sync History and refuses a divergence as a scheduled sync does.

use crate::protocol::{Request, Response};
use crate::source::FOLLOW_WAIT_MAX;
use crate::sync::{ProgressSink, SyncSummary, apply_changes};
use crate::wire::{Frame, read_any, write_frame};
use crate::{REQUEST_TIMEOUT, Replication, ReplicationError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tandem_clock::wall_clock_ms;
use tandem_store::changes::Position;
use tandem_store::history;
use tandem_store::trust::Endpoint;
use tokio::sync::watch;

/// How often the follower's position is written to the node-local store (the fork point a later
/// divergence check counts from, and the stream's Sync History row); the replicated database
/// holds the position itself durably.
const POSITION_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What `tandem ha status` and the metrics show of the follower.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FollowStatus {
    pub source: String,
    pub connected: bool,
    /// Wall-clock ms since which the current session has been open.
    pub connected_since_ms: Option<i64>,
    pub position_seq: i64,
    /// Entries applied since the follower started.
    pub applied_entries: u64,
    pub applied_batches: u64,
    /// Commit on the source to commit here, for the oldest entry of the last batch.
    pub last_lag_ms: Option<i64>,
    /// Over the last [`LAG_WINDOW`] batches: median, 99th percentile and largest lag.
    pub recent_lag_p50_ms: Option<i64>,
    pub recent_lag_p99_ms: Option<i64>,
    pub recent_lag_max_ms: Option<i64>,
    pub last_applied_at_ms: Option<i64>,
    /// Wall-clock ms of the source's last answer (a batch, or "nothing new" after a long poll).
    pub last_answer_at_ms: Option<i64>,
    /// The source's last answer said nothing was left to send.
    pub caught_up: bool,
    /// This session has had an answer, and applied it whole (false from the session's start
    /// until then): the node holds what the source had when it asked.
    pub complete: bool,
    /// Wall-clock ms (this node's clock) up to which this node is known to hold every write its
    /// source committed: when the request of the last answer applied whole was sent (early by
    /// the transit, never late). Kept across sessions of one process (the data did not change);
    /// `None` until the first answer after the process started.
    pub in_step_at_ms: Option<i64>,
    /// Request to applied answer, for the last answer that carried entries (`None` after an
    /// empty one, whose time includes the source's wait).
    pub last_round_trip_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// Batches the "recent" lag figures look back over (at 1,000 writes/s, a few seconds).
pub const LAG_WINDOW: usize = 4_096;
/// The recent lag percentiles are recomputed every this many batches (a sort of the window),
/// not on every batch.
const LAG_SUMMARY_EVERY_BATCHES: u64 = 64;

/// Why a follow session ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum FollowEnd {
    /// This node's position is not in the source's history: an ordinary sync must decide (full
    /// sync after retention, refusal on divergence).
    NeedsSync { reason: String },
}

/// Follows `endpoint` until the session fails (an error) or this node's position leaves the
/// source's history. `connected` is told the source's epoch when the session opens; every
/// applied batch updates `status`; `lags` keeps the recent batches' lags. Each session is one
/// row of Sync History (trigger `continuous`), kept up to date while it runs.
pub async fn follow(
    replication: &Replication,
    endpoint: &Endpoint,
    status: &watch::Sender<FollowStatus>,
    lags: &mut std::collections::VecDeque<i64>,
    connected: &(dyn Fn(i64) + Sync),
) -> Result<FollowEnd, ReplicationError> {
    let session = replication.open_session(endpoint).await?;
    // As after a sync: this node holds the source's history, so a promotion goes above its epoch.
    connected(session.peer.epoch);
    let local = replication.local().database().clone();
    let source = endpoint.to_string();
    let row = local
        .write(move |conn| history::start(conn, &source, history::Trigger::Continuous))
        .await?;
    let mut applied = Applied::default();
    let result = stream(
        replication,
        endpoint,
        session,
        status,
        lags,
        row,
        &mut applied,
    )
    .await;
    let (result_text, note, error) = match &result {
        Ok(FollowEnd::NeedsSync { reason }) => (
            "succeeded",
            Some(format!(
                "the stream ended: {reason}; an ordinary sync follows"
            )),
            None,
        ),
        Err(error) => ("failed", None, Some(error.to_string())),
    };
    let outcome = history::Outcome {
        kind: Some("stream".into()),
        result: result_text.into(),
        entries: applied.entries,
        files: applied.files,
        bytes: applied.bytes,
        position_seq: Some(applied.position_seq),
        note,
        error,
    };
    if let Err(error) = local
        .write(move |conn| history::finish(conn, row, &outcome))
        .await
    {
        tracing::warn!(%error, "cannot record the end of a replication stream in Sync History");
    }
    result
}

/// What one stream applied, for its Sync History row.
#[derive(Default)]
struct Applied {
    entries: i64,
    files: i64,
    bytes: i64,
    position_seq: i64,
}

async fn stream(
    replication: &Replication,
    endpoint: &Endpoint,
    session: crate::Session,
    status: &watch::Sender<FollowStatus>,
    lags: &mut std::collections::VecDeque<i64>,
    row: i64,
    applied: &mut Applied,
) -> Result<FollowEnd, ReplicationError> {
    let mut connection = session.connection;
    let mut position = Position {
        seq: session.local.position_seq,
        checksum: session.local.position_checksum.clone(),
    };
    applied.position_seq = position.seq;
    status.send_modify(|status| {
        status.source = endpoint.to_string();
        status.connected = true;
        status.connected_since_ms = Some(wall_clock_ms());
        status.position_seq = position.seq;
        status.last_error = None;
        // Nothing of this session is known yet: a node that restarts with a backlog is not in
        // step until the source says it sent everything.
        status.complete = false;
        status.caught_up = false;
        status.last_lag_ms = None;
        status.last_answer_at_ms = None;
        status.last_round_trip_ms = None;
    });
    replication
        .log(&format!(
            "continuous replication from {endpoint} ({}) connected at position {}",
            session.peer.node_name, position.seq
        ))
        .await;
    let no_progress: ProgressSink = Arc::new(|_| {});
    let mut saved = (Instant::now(), position.seq);
    // The first request does not wait: whether this node is in step is known at once.
    let mut wait_ms = 0;
    loop {
        let asked = Request::Changes {
            after_seq: position.seq,
            after_checksum: position.checksum.clone(),
            wait_ms,
        };
        wait_ms = FOLLOW_WAIT_MAX.as_millis() as u64;
        // The answer holds every entry the source had committed when this request reached it.
        let asked_at_ms = wall_clock_ms();
        write_frame(&mut connection.stream, &asked).await?;
        // The source answers within FOLLOW_WAIT_MAX; REQUEST_TIMEOUT is far above it.
        let frame = tokio::time::timeout(
            REQUEST_TIMEOUT,
            read_any::<_, Response>(&mut connection.stream),
        )
        .await
        .map_err(|_| ReplicationError::Timeout {
            endpoint: endpoint.clone(),
        })??;
        match frame {
            Frame::Message(Response::Changes {
                entries,
                more,
                committed_at_ms,
            }) => {
                if entries.is_empty() && !more {
                    status.send_modify(|status| {
                        let now = wall_clock_ms();
                        status.last_answer_at_ms = Some(now);
                        status.caught_up = true;
                        status.complete = true;
                        // Nothing was committed between the request's arrival and the answer;
                        // when it was asked errs early by the transit, never late.
                        status.in_step_at_ms = Some(asked_at_ms);
                        status.last_round_trip_ms = None;
                    });
                    // An idle stream still records its last batches within a long poll.
                    save_if_due(replication, row, applied, &mut saved).await?;
                    continue;
                }
                // One sync lock with manual and scheduled syncs: they never apply at once.
                let _running = replication.sync_lock().await;
                // Another sync may have moved this node while the lock was free: start over
                // from where the database really is.
                let stored = replication
                    .replicated()
                    .read(tandem_store::changes::position)
                    .await?;
                if stored != position {
                    return Err(ReplicationError::Protocol(format!(
                        "another sync moved this node from position {} to {} meanwhile; the \
                         stream reconnects from there",
                        position.seq, stored.seq
                    )));
                }
                let mut summary = SyncSummary::default();
                position = apply_changes(
                    replication,
                    &mut connection.stream,
                    endpoint,
                    position,
                    entries,
                    more,
                    0,
                    &no_progress,
                    &mut summary,
                )
                .await?;
                let now = wall_clock_ms();
                let lag = committed_at_ms.map(|at| (now - at).max(0));
                if let Some(lag) = lag {
                    if lags.len() == LAG_WINDOW {
                        lags.pop_front();
                    }
                    lags.push_back(lag);
                }
                applied.entries += summary.entries;
                applied.files += summary.files;
                applied.bytes += summary.bytes;
                applied.position_seq = position.seq;
                status.send_modify(|status| {
                    status.position_seq = position.seq;
                    status.applied_entries += summary.entries as u64;
                    status.applied_batches += 1;
                    status.last_lag_ms = lag;
                    status.last_applied_at_ms = Some(now);
                    status.last_answer_at_ms = Some(now);
                    status.caught_up = false;
                    // Every frame of the answer is applied: this node holds what the source had
                    // when the request reached it.
                    status.complete = true;
                    status.in_step_at_ms = Some(asked_at_ms);
                    status.last_round_trip_ms = Some(now - asked_at_ms);
                    if status.applied_batches % LAG_SUMMARY_EVERY_BATCHES == 1 || lags.len() < 64 {
                        let mut sorted: Vec<i64> = lags.iter().copied().collect();
                        sorted.sort_unstable();
                        let quantile = |q: f64| {
                            (!sorted.is_empty())
                                .then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
                        };
                        status.recent_lag_p50_ms = quantile(0.5);
                        status.recent_lag_p99_ms = quantile(0.99);
                        status.recent_lag_max_ms = sorted.last().copied();
                    }
                });
                save_if_due(replication, row, applied, &mut saved).await?;
            }
            Frame::Message(Response::NotInHistory {
                base_seq,
                position_seq,
            }) => {
                return Ok(FollowEnd::NeedsSync {
                    reason: format!(
                        "this node's position {} is not in {endpoint}'s history (it retains \
                         {base_seq}..{position_seq})",
                        position.seq
                    ),
                });
            }
            Frame::Message(Response::Error { message }) => {
                return Err(ReplicationError::Remote {
                    endpoint: endpoint.clone(),
                    message,
                });
            }
            other => {
                let got = match other {
                    Frame::Message(message) => format!("{message:?}"),
                    Frame::Data(data) => format!("{} bytes of data", data.len()),
                };
                return Err(ReplicationError::Protocol(format!(
                    "{endpoint} sent {got} where changes were due"
                )));
            }
        }
    }
}

/// Writes the position and the stream's figures to the node-local store at most every
/// [`POSITION_SAVE_INTERVAL`], and only when batches were applied since: `saved` is when, and
/// at which position, it last did.
async fn save_if_due(
    replication: &Replication,
    row: i64,
    applied: &Applied,
    saved: &mut (Instant, i64),
) -> Result<(), ReplicationError> {
    if saved.0.elapsed() < POSITION_SAVE_INTERVAL || saved.1 == applied.position_seq {
        return Ok(());
    }
    *saved = (Instant::now(), applied.position_seq);
    let seq = applied.position_seq;
    let figures = history::Outcome {
        entries: applied.entries,
        files: applied.files,
        bytes: applied.bytes,
        position_seq: Some(seq),
        ..history::Outcome::default()
    };
    replication
        .local()
        .database()
        .write(move |conn| {
            history::set_setting(conn, crate::sync::LAST_SYNC_SEQ_SETTING, &seq.to_string())?;
            history::progress(conn, row, &figures)
        })
        .await?;
    Ok(())
}
