//! The syncing side (guide: Run Sync Now, the scheduled sync, `failover sync`): brings this
//! node's replicated database and file store up to a trusted source's.
//!
//! - **Incremental** when this node's position is in the source's history: the entries after it
//!   are applied in one transaction together with the new position, so a sync killed at any
//!   instant leaves the previous state.
//! - **Full** otherwise: the source streams a consistent snapshot page by page; it is written
//!   beside the database, checked against the source's SHA-256, fsynced, and installed by an
//!   atomic rename ([`tandem_store::Database::install_snapshot`]).
//! - **Diverged**: this node holds entries the source does not. A scheduled sync refuses; a
//!   manual one first saves them to `divergence/*.jsonl` under the data dir, then syncs in full.
//!
//! App files the database refers to and this node lacks are fetched by hash after every sync,
//! so a sync killed between the database and the files heals on the next one.

use crate::protocol::{FileRef, Request, Response};
use crate::wire::{Frame, read_any, read_frame, write_frame};
use crate::{REQUEST_TIMEOUT, Replication, ReplicationError, Session};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tandem_store::StoreError;
use tandem_store::changes::{self, ChangeEntry, Position};
use tandem_store::history::{self, Outcome, Trigger};
use tandem_store::trust::Endpoint;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Batches of entries in flight between the network and the writer's transaction.
const APPLY_BATCHES_IN_FLIGHT: usize = 4;
/// Node-local setting: the position of the last completed sync.
pub const LAST_SYNC_SEQ_SETTING: &str = "replication.last_sync_seq";
/// Where diverged entries are saved, under the data dir.
pub const DIVERGENCE_DIR: &str = "divergence";
/// The incoming snapshot, beside the replicated database.
const INCOMING_SUFFIX: &str = ".incoming";
/// Entries read per query while saving diverged entries.
const EXPORT_BATCH_ENTRIES: i64 = 10_000;
/// Largest app file accepted from a source, as for uploads.
const FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// What a sync is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct SyncOptions {
    pub trigger: Trigger,
    /// Full sync even if an incremental one is possible.
    pub force_full: bool,
}

/// Progress, reported as the sync goes (a progress bar on a terminal).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum Progress {
    #[serde(rename_all = "camelCase")]
    Connected {
        source_node: String,
    },
    #[serde(rename_all = "camelCase")]
    Changes {
        entries: i64,
        total_entries: i64,
    },
    #[serde(rename_all = "camelCase")]
    Snapshot {
        bytes: u64,
        total_bytes: u64,
    },
    #[serde(rename_all = "camelCase")]
    Files {
        files: u64,
        total_files: u64,
    },
    Installing,
}

pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// How a sync went, for the summary line and Sync History.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    pub source: String,
    pub source_node: String,
    /// `full`, `incremental` or `none`.
    pub kind: String,
    pub entries: i64,
    pub files: i64,
    pub bytes: i64,
    pub duration_ms: i64,
    pub position_seq: i64,
    /// Why a full sync was chosen; where diverged entries went.
    pub notes: Vec<String>,
    /// The Sync History row.
    pub history_id: i64,
    /// Where this node's diverged changes were saved before a full sync replaced them.
    pub diverged_file: Option<String>,
    /// The source's epoch (its hello): a later promotion of this node must go above it.
    pub source_epoch: i64,
}

/// Syncs this node from `endpoint`, recording the attempt in Sync History and the
/// HighAvailability log whatever the outcome.
pub async fn run(
    replication: &Replication,
    endpoint: &Endpoint,
    options: SyncOptions,
    progress: ProgressSink,
) -> Result<SyncSummary, ReplicationError> {
    let started = Instant::now();
    let local = replication.local().database().clone();
    let source = endpoint.to_string();
    let Some(_running) = replication.try_sync_lock() else {
        let reason = "another sync is running on this node; syncs never overlap".to_owned();
        let (source, trigger, note) = (source.clone(), options.trigger, reason.clone());
        local
            .write(move |conn| history::record_skipped(conn, &source, trigger, &note))
            .await?;
        replication
            .log(&format!(
                "{} sync from {endpoint} skipped: {reason}",
                capitalized(options.trigger.as_str())
            ))
            .await;
        return Err(ReplicationError::Busy(reason));
    };
    let history_id = local
        .write(move |conn| history::start(conn, &source, options.trigger))
        .await?;
    replication
        .log(&format!(
            "{} sync from {endpoint} started",
            capitalized(options.trigger.as_str())
        ))
        .await;
    let mut summary = SyncSummary {
        source: endpoint.to_string(),
        history_id,
        ..SyncSummary::default()
    };
    let result = sync(replication, endpoint, options, &progress, &mut summary).await;
    summary.duration_ms = started.elapsed().as_millis() as i64;
    let outcome = Outcome {
        kind: (!summary.kind.is_empty()).then(|| summary.kind.clone()),
        result: match &result {
            Ok(()) => "succeeded",
            Err(ReplicationError::Diverged { .. } | ReplicationError::Incompatible(_)) => "refused",
            Err(_) => "failed",
        }
        .into(),
        entries: summary.entries,
        files: summary.files,
        bytes: summary.bytes,
        position_seq: result.is_ok().then_some(summary.position_seq),
        note: (!summary.notes.is_empty()).then(|| summary.notes.join("; ")),
        error: result.as_ref().err().map(ToString::to_string),
    };
    replication
        .sync_metrics()
        .record(outcome.kind.as_deref(), &outcome.result, started.elapsed());
    let message = match &result {
        Ok(()) if summary.kind == "none" => format!(
            "sync from {endpoint} succeeded: already in step, nothing to copy ({} ms)",
            summary.duration_ms
        ),
        Ok(()) => format!(
            "sync from {endpoint} succeeded: {} sync, {} change(s), {} file(s), {} bytes in {} ms{}",
            summary.kind,
            summary.entries,
            summary.files,
            summary.bytes,
            summary.duration_ms,
            if summary.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", summary.notes.join("; "))
            }
        ),
        Err(error) => format!("sync from {endpoint} {}: {error}", outcome.result),
    };
    replication.log(&message).await;
    let recorded = local
        .write(move |conn| history::finish(conn, history_id, &outcome))
        .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, "cannot record the sync in Sync History");
    }
    result.map(|()| summary)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Counts the bytes a sync receives.
struct Counted<'a, S> {
    inner: &'a mut S,
    bytes: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bytes += read as u64;
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Sends one request and reads its answer within [`REQUEST_TIMEOUT`]; the source's `Error`
/// answer becomes [`ReplicationError::Remote`].
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    endpoint: &Endpoint,
    request: &Request,
) -> Result<Response, ReplicationError> {
    let exchange = async {
        write_frame(stream, request).await?;
        read_frame::<_, Response>(stream).await
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| ReplicationError::Timeout {
            endpoint: endpoint.clone(),
        })??;
    match response {
        Response::Error { message } => Err(ReplicationError::Remote {
            endpoint: endpoint.clone(),
            message,
        }),
        other => Ok(other),
    }
}

async fn next_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    endpoint: &Endpoint,
) -> Result<Frame<Response>, ReplicationError> {
    let frame = tokio::time::timeout(REQUEST_TIMEOUT, read_any::<_, Response>(stream))
        .await
        .map_err(|_| ReplicationError::Timeout {
            endpoint: endpoint.clone(),
        })??;
    match frame {
        Frame::Message(Response::Error { message }) => Err(ReplicationError::Remote {
            endpoint: endpoint.clone(),
            message,
        }),
        other => Ok(other),
    }
}

fn unexpected(endpoint: &Endpoint, what: &str, got: &Frame<Response>) -> ReplicationError {
    let got = match got {
        Frame::Message(message) => format!("{message:?}"),
        Frame::Data(data) => format!("{} bytes of data", data.len()),
    };
    ReplicationError::Protocol(format!("{endpoint} sent {got} where {what} was due"))
}

async fn sync(
    replication: &Replication,
    endpoint: &Endpoint,
    options: SyncOptions,
    progress: &ProgressSink,
    summary: &mut SyncSummary,
) -> Result<(), ReplicationError> {
    let mut since = Instant::now();
    let Session {
        peer,
        local: ours,
        mut connection,
        ..
    } = replication.open_session(endpoint).await?;
    phase_done("session", &mut since);
    summary.source_node = peer.node_name.clone();
    summary.source_epoch = peer.epoch;
    progress(Progress::Connected {
        source_node: peer.node_name.clone(),
    });
    let mut stream = Counted {
        inner: &mut connection.stream,
        bytes: 0,
    };
    let position = Position {
        seq: ours.position_seq,
        checksum: ours.position_checksum.clone(),
    };
    let mut full_reason = options
        .force_full
        .then(|| "a full sync was requested".to_owned());
    if full_reason.is_none() {
        let asked = Request::Changes {
            after_seq: position.seq,
            after_checksum: position.checksum.clone(),
            wait_ms: 0,
        };
        write_frame(&mut stream, &asked).await?;
        match next_frame(&mut stream, endpoint).await? {
            Frame::Message(Response::Changes { entries, more, .. }) => {
                phase_done("first changes", &mut since);
                let total = peer.position_seq - position.seq;
                apply_changes(
                    replication,
                    &mut stream,
                    endpoint,
                    position,
                    entries,
                    more,
                    total,
                    progress,
                    summary,
                )
                .await?;
                phase_done("apply and commit", &mut since);
            }
            Frame::Message(Response::NotInHistory {
                base_seq,
                position_seq,
            }) => {
                full_reason = Some(
                    why_not_incremental(
                        replication,
                        &mut stream,
                        endpoint,
                        &peer.node_name,
                        options,
                        &position,
                        base_seq,
                        position_seq,
                        summary,
                    )
                    .await?,
                );
            }
            other => return Err(unexpected(endpoint, "changes", &other)),
        }
    }
    if let Some(reason) = full_reason {
        summary.notes.insert(0, reason);
        full_sync(replication, &mut stream, endpoint, progress, summary).await?;
    }
    fetch_missing_files(replication, &mut stream, endpoint, progress, summary).await?;
    phase_done("files", &mut since);
    summary.bytes = stream.bytes as i64;
    let seq = summary.position_seq;
    replication
        .local()
        .database()
        .write(move |conn| history::set_setting(conn, LAST_SYNC_SEQ_SETTING, &seq.to_string()))
        .await?;
    phase_done("position recorded", &mut since);
    Ok(())
}

/// Logs how long a phase of a sync took (`TANDEM_LOG=tandem_repl=debug`), so a slow sync can be
/// taken apart without a profiler (BENCHMARKS.md, "Incremental sync").
fn phase_done(phase: &str, since: &mut Instant) {
    tracing::debug!(
        phase,
        elapsed_us = since.elapsed().as_micros() as u64,
        "sync phase"
    );
    *since = Instant::now();
}

/// Applies streamed `Changes` frames in one transaction on the writer.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_changes<S: AsyncRead + AsyncWrite + Unpin>(
    replication: &Replication,
    stream: &mut S,
    endpoint: &Endpoint,
    position: Position,
    first: Vec<ChangeEntry>,
    mut more: bool,
    total_entries: i64,
    progress: &ProgressSink,
    summary: &mut SyncSummary,
) -> Result<Position, ReplicationError> {
    if first.is_empty() && !more {
        summary.kind = "none".into();
        summary.position_seq = position.seq;
        return Ok(position);
    }
    summary.kind = "incremental".into();
    let (batches, receiver) =
        std::sync::mpsc::sync_channel::<Option<Vec<ChangeEntry>>>(APPLY_BATCHES_IN_FLIGHT);
    let start = position.clone();
    let db = replication.replicated().clone();
    let applying = tokio::spawn(async move {
        db.write_replica(move |conn| {
            changes::without_capture(|| {
                let mut position = start;
                let mut applying = std::time::Duration::ZERO;
                loop {
                    match receiver.recv_timeout(REQUEST_TIMEOUT) {
                        Ok(Some(batch)) => {
                            let started = Instant::now();
                            position = changes::apply_entries(conn, &position, &batch)?;
                            applying += started.elapsed();
                        }
                        Ok(None) => {
                            // The commit follows on the writer: "apply and commit" less this.
                            tracing::debug!(
                                phase = "apply (writer, before commit)",
                                elapsed_us = applying.as_micros() as u64,
                                "sync phase"
                            );
                            return Ok(position);
                        }
                        Err(_) => {
                            return Err(StoreError::Corrupt(
                            "the sync stopped before its last change arrived; nothing was applied"
                                .into(),
                        ));
                        }
                    }
                }
            })
        })
        .await
    });
    let mut entries = first.len() as i64;
    let send = |batch| {
        let batches = batches.clone();
        async move {
            tokio::task::spawn_blocking(move || batches.send(batch).is_ok())
                .await
                .unwrap_or(false)
        }
    };
    let mut delivered = send(Some(first)).await;
    progress(Progress::Changes {
        entries,
        total_entries,
    });
    while more && delivered {
        match next_frame(stream, endpoint).await {
            Ok(Frame::Message(Response::Changes {
                entries: batch,
                more: again,
                ..
            })) => {
                entries += batch.len() as i64;
                more = again;
                delivered = send(Some(batch)).await;
                progress(Progress::Changes {
                    entries,
                    total_entries,
                });
            }
            Ok(other) => {
                drop(batches);
                let _ = applying.await;
                return Err(unexpected(endpoint, "changes", &other));
            }
            Err(error) => {
                // Dropping the sender ends the transaction with an error: nothing is applied.
                drop(batches);
                let _ = applying.await;
                return Err(error);
            }
        }
    }
    if delivered {
        send(None).await;
    }
    drop(batches);
    let applied = applying
        .await
        .map_err(|error| ReplicationError::Protocol(format!("the apply task failed: {error}")))??;
    summary.entries = entries;
    summary.position_seq = applied.seq;
    Ok(applied)
}

/// The source does not know this node's position: decide between a fallback to a full sync and
/// a divergence, and save diverged entries when a full sync will replace them.
#[allow(clippy::too_many_arguments)]
async fn why_not_incremental<S: AsyncRead + AsyncWrite + Unpin>(
    replication: &Replication,
    stream: &mut S,
    endpoint: &Endpoint,
    source_node: &str,
    options: SyncOptions,
    position: &Position,
    source_base_seq: i64,
    source_position_seq: i64,
    summary: &mut SyncSummary,
) -> Result<String, ReplicationError> {
    let local_base = replication.replicated().read(changes::base).await?;
    let (init_seq, last_sync_seq) = replication
        .local()
        .database()
        .read(|conn| {
            let number = |key| -> Result<Option<i64>, StoreError> {
                Ok(history::setting(conn, key)?.and_then(|value| value.parse().ok()))
            };
            Ok((
                number(tandem_node::INIT_SEQ_SETTING)?,
                number(LAST_SYNC_SEQ_SETTING)?,
            ))
        })
        .await?;
    let fork_seq = if position.seq < source_base_seq {
        // Older than the source's retained log: no common entry can be compared. What this node
        // wrote since its last sync is all that can be its own.
        last_sync_seq.or(init_seq).unwrap_or(0).min(position.seq)
    } else {
        find_fork(
            replication,
            stream,
            endpoint,
            local_base.seq.max(source_base_seq),
            position.seq.min(source_position_seq),
        )
        .await?
    };
    let local_entries = position.seq - fork_seq;
    let first_sync = last_sync_seq.is_none() && position.seq <= init_seq.unwrap_or(0);
    let mut reason = if position.seq < source_base_seq {
        format!(
            "this node's position {} is older than {source_node}'s retained change log (which starts after {source_base_seq})",
            position.seq
        )
    } else if first_sync {
        // Nothing was written here but what `tandem init` wrote (its own admin user, keys and
        // certificates): a node that never served has nothing of anyone's to save, and its
        // secrets must not be written out to a file.
        return Ok(
            "first sync: this node's own initial data (from `tandem init`) is replaced by the \
             source's; nothing else was written here, so nothing is exported"
                .to_owned(),
        );
    } else {
        format!("this node's history diverged from {source_node}'s after change {fork_seq}")
    };
    // Changes of this node's own that the source may not have are never discarded by the
    // schedule: only an operator's explicit sync saves them and goes on.
    if local_entries > 0 && !first_sync && options.trigger == Trigger::Scheduled {
        return Err(ReplicationError::Diverged {
            source_node: source_node.to_owned(),
            endpoint: endpoint.clone(),
            fork_seq,
            local_entries,
        });
    }
    if local_entries > 0 {
        let saved = export_divergence(replication, endpoint, source_node, fork_seq).await?;
        reason.push_str(&format!(
            "; {local_entries} change(s) of this node after change {fork_seq} saved to {}",
            saved.display()
        ));
        summary.diverged_file = Some(saved.display().to_string());
    }
    Ok(reason)
}

/// The last sequence number at which both histories agree, by binary search over checksums
/// (chained checksums agree at `n` exactly when the histories agree up to `n`).
async fn find_fork<S: AsyncRead + AsyncWrite + Unpin>(
    replication: &Replication,
    stream: &mut S,
    endpoint: &Endpoint,
    low: i64,
    high: i64,
) -> Result<i64, ReplicationError> {
    let agrees = async |stream: &mut S, seq: i64| -> Result<bool, ReplicationError> {
        let theirs = match request(stream, endpoint, &Request::ChecksumAt { seq }).await? {
            Response::ChecksumAt { checksum, .. } => checksum,
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "{endpoint} answered a checksum request with {other:?}"
                )));
            }
        };
        let ours = replication
            .replicated()
            .read(move |conn| changes::checksum_at(conn, seq))
            .await?;
        Ok(ours.is_some() && ours == theirs)
    };
    if high < low || !agrees(stream, low).await? {
        // Not even the oldest common retained entry agrees: all of this node's retained
        // history counts as its own.
        return Ok(replication.replicated().read(changes::base).await?.seq);
    }
    let (mut agreeing, mut differing) = (low, high + 1);
    while differing - agreeing > 1 {
        let middle = agreeing + (differing - agreeing) / 2;
        if agrees(stream, middle).await? {
            agreeing = middle;
        } else {
            differing = middle;
        }
    }
    Ok(agreeing)
}

/// Saves this node's entries after `fork_seq` to a JSON-lines file under the data dir, fsynced,
/// before anything replaces them. Returns the file's path.
async fn export_divergence(
    replication: &Replication,
    endpoint: &Endpoint,
    source_node: &str,
    fork_seq: i64,
) -> Result<PathBuf, ReplicationError> {
    let dir = replication.data_dir().join(DIVERGENCE_DIR);
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "now".into());
    let path = dir.join(format!("{stamp}-after-{fork_seq}.jsonl"));
    let header = serde_json::json!({
        "kind": "tandem-divergence",
        "node": replication.node_name(),
        "source": endpoint.to_string(),
        "sourceNode": source_node,
        "forkSeq": fork_seq,
        "exportedAt": tandem_store::common::now(),
        "about": "changes this node committed that its sync source does not have; each line after this one is a change-log entry (table, op, row key, row data)",
    });
    let db = replication.replicated().clone();
    let written = path.clone();
    let count = tokio::task::spawn_blocking(move || -> Result<i64, StoreError> {
        std::fs::create_dir_all(&dir).map_err(|error| StoreError::io(&dir, error))?;
        let io = |error| StoreError::io(&written, error);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&written).map_err(io)?);
        writeln!(file, "{header}").map_err(io)?;
        let mut after = fork_seq;
        let mut count = 0;
        loop {
            let batch =
                db.read_blocking(|conn| changes::entries_after(conn, after, EXPORT_BATCH_ENTRIES))?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            for entry in &batch {
                let line = serde_json::to_string(entry)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                writeln!(file, "{line}").map_err(io)?;
                count += 1;
            }
        }
        let file = file.into_inner().map_err(|error| io(error.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| StoreError::io(&dir, error))?;
        Ok(count)
    })
    .await
    .map_err(|error| ReplicationError::Protocol(format!("the export task failed: {error}")))??;
    replication
        .log(&format!(
            "saved {count} change(s) this node made after change {fork_seq}, which {source_node} does not have, to {}",
            path.display()
        ))
        .await;
    tracing::warn!(count, fork_seq, path = %path.display(), "saved diverged changes before a full sync");
    Ok(path)
}

async fn full_sync<S: AsyncRead + AsyncWrite + Unpin>(
    replication: &Replication,
    stream: &mut S,
    endpoint: &Endpoint,
    progress: &ProgressSink,
    summary: &mut SyncSummary,
) -> Result<(), ReplicationError> {
    summary.kind = "full".into();
    let db_path = replication.replicated().path().to_owned();
    let incoming = incoming_path(&db_path);
    // A snapshot left by a killed sync is incomplete by definition.
    let _ = tokio::fs::remove_file(&incoming).await;
    write_frame(stream, &Request::Snapshot).await?;
    let (page_size, page_count, position_seq, files) = match next_frame(stream, endpoint).await? {
        Frame::Message(Response::SnapshotBegin {
            page_size,
            page_count,
            position_seq,
            files,
        }) => (page_size, page_count, position_seq, files),
        other => return Err(unexpected(endpoint, "a snapshot", &other)),
    };
    let total_bytes = u64::from(page_size) * page_count;
    let installed = async {
        receive_snapshot(stream, endpoint, &incoming, total_bytes, progress).await?;
        // Files first: once the snapshot is installed, the database may refer to them.
        fetch_files(replication, stream, endpoint, &files, progress, summary).await?;
        check_snapshot(&incoming, position_seq).await?;
        progress(Progress::Installing);
        replication
            .replicated()
            .install_snapshot(incoming.clone())
            .await
            .map_err(ReplicationError::from)
    }
    .await;
    if installed.is_err() {
        // A snapshot that was not installed is useless, and may be as large as the database:
        // give its space back now (a full disk is one way to get here).
        let _ = tokio::fs::remove_file(&incoming).await;
    }
    installed?;
    summary.position_seq = position_seq;
    Ok(())
}

fn incoming_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(INCOMING_SUFFIX);
    PathBuf::from(name)
}

async fn receive_snapshot<S: AsyncRead + Unpin>(
    stream: &mut S,
    endpoint: &Endpoint,
    incoming: &Path,
    total_bytes: u64,
    progress: &ProgressSink,
) -> Result<(), ReplicationError> {
    let io = |error| ReplicationError::Store(StoreError::io(incoming, error));
    let mut file = tokio::fs::File::create(incoming).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut reported = 0u64;
    let expected = loop {
        match next_frame(stream, endpoint).await? {
            Frame::Data(pages) => {
                bytes += pages.len() as u64;
                if bytes > total_bytes {
                    return Err(ReplicationError::Protocol(format!(
                        "{endpoint} sent more than the {total_bytes} bytes it announced"
                    )));
                }
                hasher.update(&pages);
                file.write_all(&pages).await.map_err(io)?;
                if bytes - reported >= total_bytes / 100 {
                    reported = bytes;
                    progress(Progress::Snapshot { bytes, total_bytes });
                }
            }
            Frame::Message(Response::SnapshotEnd { sha256 }) => break sha256,
            other => return Err(unexpected(endpoint, "snapshot pages", &other)),
        }
    };
    progress(Progress::Snapshot { bytes, total_bytes });
    let actual = hex::encode(hasher.finalize());
    if bytes != total_bytes || actual != expected {
        return Err(ReplicationError::Protocol(format!(
            "the snapshot from {endpoint} arrived damaged: {bytes} of {total_bytes} bytes, SHA-256 {actual}, expected {expected}"
        )));
    }
    file.sync_all().await.map_err(io)?;
    Ok(())
}

/// Checks an incoming snapshot before it replaces the database: it is a replicated database of
/// this schema, and its history ends where the source said.
async fn check_snapshot(incoming: &Path, position_seq: i64) -> Result<(), ReplicationError> {
    let path = incoming.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        // Immutable: reading must not create a WAL or shared-memory file beside the snapshot.
        let uri = format!("file:{}?immutable=1", path.display());
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = rusqlite::Connection::open_with_flags(&uri, flags)?;
        let schema = tandem_store::schema::REPLICATED;
        let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if application_id != schema.application_id || version != schema.version() {
            return Err(StoreError::Corrupt(format!(
                "the snapshot is not a replicated database of schema {} (application_id {application_id:#x}, version {version})",
                schema.version()
            )));
        }
        let position = changes::position(&conn)?;
        if position.seq != position_seq {
            return Err(StoreError::Corrupt(format!(
                "the snapshot's history ends at {}, the source announced {position_seq}",
                position.seq
            )));
        }
        Ok(())
    })
    .await
    .map_err(|error| ReplicationError::Protocol(format!("the snapshot check failed: {error}")))?
    .map_err(Into::into)
}

/// Fetches the files the database refers to that this node lacks.
async fn fetch_missing_files<S: AsyncRead + AsyncWrite + Unpin>(
    replication: &Replication,
    stream: &mut S,
    endpoint: &Endpoint,
    progress: &ProgressSink,
    summary: &mut SyncSummary,
) -> Result<(), ReplicationError> {
    let referenced = replication
        .replicated()
        .read(crate::source::app_file_refs)
        .await?;
    fetch_files(
        replication,
        stream,
        endpoint,
        &referenced,
        progress,
        summary,
    )
    .await
}

async fn fetch_files<S: AsyncRead + AsyncWrite + Unpin>(
    replication: &Replication,
    stream: &mut S,
    endpoint: &Endpoint,
    files: &[FileRef],
    progress: &ProgressSink,
    summary: &mut SyncSummary,
) -> Result<(), ReplicationError> {
    let missing: Vec<&FileRef> = files
        .iter()
        .filter(|file| !replication.files().contains(&file.sha256))
        .collect();
    let total_files = missing.len() as u64;
    for (index, file) in missing.into_iter().enumerate() {
        if !crate::source::is_sha256_hex(&file.sha256) {
            return Err(ReplicationError::Protocol(format!(
                "{endpoint} listed file {:?}, which is not a SHA-256",
                file.sha256
            )));
        }
        write_frame(
            stream,
            &Request::File {
                sha256: file.sha256.clone(),
            },
        )
        .await?;
        match next_frame(stream, endpoint).await? {
            Frame::Message(Response::FileBegin { .. }) => {}
            other => return Err(unexpected(endpoint, "a file", &other)),
        }
        let mut writer = replication.files().begin(FILE_BYTES_MAX).await?;
        loop {
            match next_frame(stream, endpoint).await? {
                Frame::Data(chunk) => writer.write(&chunk).await?,
                Frame::Message(Response::FileEnd) => break,
                other => return Err(unexpected(endpoint, "file data", &other)),
            }
        }
        let stored = writer.finish().await?;
        if stored.sha256 != file.sha256 {
            // What arrived is stored under its own hash, harmless and unreferenced.
            return Err(ReplicationError::Protocol(format!(
                "file {} from {endpoint} arrived with SHA-256 {}",
                file.sha256, stored.sha256
            )));
        }
        summary.files += 1;
        progress(Progress::Files {
            files: index as u64 + 1,
            total_files,
        });
    }
    Ok(())
}
