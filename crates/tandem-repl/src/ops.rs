//! The operator's replication commands (`tandem ha …`, `tandem failover sync`) as data, so the
//! CLI runs them the same way whether the node is running or not: through the running node's
//! control socket (`control.sock` in the data dir, owner-only), or in the CLI's own process when
//! no node runs. Only one process ever writes a node's databases.
//!
//! Control socket protocol: the client writes one JSON [`Operation`] line; the node answers with
//! JSON [`Event`] lines, zero or more `progress`, then one `done` or `failed`.

use crate::sync::{Progress, SyncOptions};
use crate::{Replication, ReplicationError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use tandem_store::accounts::AccountRealm;
use tandem_store::history::{self, Trigger};
use tandem_store::trust::{self, Endpoint};
use tandem_store::{StoreError, changes};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The control socket's file name in the data dir.
pub const CONTROL_SOCKET: &str = "control.sock";
/// Longest operation line accepted on the control socket.
pub const OPERATION_BYTES_MAX: usize = 64 * 1024;
/// Progress updates queued for one control-socket client; more are dropped (the bar skips a
/// step), never the operation's result.
pub const PROGRESS_EVENTS_QUEUED_MAX: usize = 64;
/// Sync History rows one `history` operation returns at most.
pub const HISTORY_ROWS_MAX: i64 = 1_000;

// One operation is built per command and sent once; boxing the configuration change (the
// largest variant) would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum Operation {
    TrustedHostsList,
    TrustedHostsAdd {
        endpoint: String,
        key: String,
    },
    TrustedHostsRemove {
        endpoint: String,
    },
    TestConnection {
        endpoint: String,
    },
    #[serde(rename_all = "camelCase")]
    Sync {
        endpoint: String,
        force_full: bool,
    },
    History {
        limit: i64,
        /// Newest rows skipped first (a later page); absent from older clients: 0.
        #[serde(default)]
        offset: i64,
    },
    Verify {
        endpoint: String,
    },
    /// `tandem ha status`.
    HaStatus,
    /// `tandem ha configure`.
    HaConfigure {
        change: tandem_ha::config::ConfigChange,
    },
    /// `tandem failover mode primary|secondary [--force]`.
    FailoverMode {
        mode: tandem_ha::Mode,
        /// Carry it out even when it breaks "one Active node" (refused otherwise).
        #[serde(default)]
        force: bool,
    },
    /// `tandem failover client-connection enable|disable`.
    ClientConnection {
        enabled: bool,
    },
    /// `tandem ha switchover`: a planned, zero-loss role swap with this node's Primary.
    Switchover,
    /// `tandem ha test-notification`: the Notification Settings' Test action.
    TestNotification,
    /// `tandem users list [--system-manager]`.
    UsersList {
        realm: AccountRealm,
    },
    /// `tandem users add USER`.
    UsersAdd {
        realm: AccountRealm,
        username: String,
        password: Secret,
    },
    /// `tandem users remove USER`.
    UsersRemove {
        realm: AccountRealm,
        username: String,
    },
    /// `tandem users set-password USER`.
    UsersSetPassword {
        realm: AccountRealm,
        username: String,
        password: Secret,
    },
    /// `tandem backup --to PATH`: an online, verified copy of the fleet (`tandem_store::backup`).
    Backup {
        /// Absolute: the node that writes it may run in another working directory.
        to: String,
        /// Replace an existing backup at `to`.
        #[serde(default)]
        force: bool,
    },
}

/// A password on its way over the control socket (owner-only, like the data dir): serialized
/// as plain text there, but never shown by `Debug`, so no log line can carry it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

impl Operation {
    /// Operations that only a running node can carry out (they change what it serves).
    pub fn needs_running_node(&self) -> bool {
        matches!(
            self,
            Operation::FailoverMode { .. }
                | Operation::ClientConnection { .. }
                | Operation::Switchover
        )
    }
}

/// Where an operation's events go.
pub type Reporter = Arc<dyn Fn(Event) + Send + Sync>;

/// Carries out control-socket operations. The server implements it (HA operations need its
/// controller) and hands the replication ones to [`execute`].
pub trait Executor: Send + Sync + 'static {
    fn execute(
        &self,
        operation: Operation,
        report: Reporter,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// Why an operation failed, for the CLI's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// Bad input: exit 2.
    Usage,
    /// The peer or the rules refused (divergence, version mismatch, tables differ): exit 3.
    Refused,
    /// Anything else: exit 1.
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    Progress { progress: serde_json::Value },
    Done { result: serde_json::Value },
    Failed { kind: FailureKind, message: String },
}

fn classify(error: &ReplicationError) -> FailureKind {
    match error {
        ReplicationError::Store(StoreError::Invalid(_) | StoreError::NotFound { .. })
        | ReplicationError::NotTrusted { .. } => FailureKind::Usage,
        ReplicationError::Diverged { .. }
        | ReplicationError::Incompatible(_)
        | ReplicationError::Busy(_)
        | ReplicationError::Refused(_) => FailureKind::Refused,
        _ => FailureKind::Failed,
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub identical: bool,
    pub peer_node: String,
    pub tables: usize,
    pub differing: Vec<TableDifference>,
    pub local_position_seq: i64,
    pub peer_position_seq: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableDifference {
    pub table: String,
    pub local_rows: Option<i64>,
    pub peer_rows: Option<i64>,
}

/// Runs `operation` on this node, reporting progress through `events` and ending with a `done`
/// or `failed` event.
pub async fn execute(
    replication: &Replication,
    operation: Operation,
    events: impl Fn(Event) + Send + Sync + 'static,
) {
    let events = Arc::new(events);
    if let Operation::Backup { to, force } = operation {
        let target = tandem_store::backup::BackupTarget {
            path: to.into(),
            force,
        };
        let result = backup(replication, &target, events.clone()).await;
        events(match result {
            Ok(result) => Event::Done { result },
            Err(error) => Event::Failed {
                kind: classify(&error),
                message: error.to_string(),
            },
        });
        return;
    }
    let progress_events = events.clone();
    let progress: crate::sync::ProgressSink = Arc::new(move |progress: Progress| {
        progress_events(Event::Progress {
            progress: serde_json::to_value(progress).unwrap_or_default(),
        });
    });
    let result = run(replication, operation, progress).await;
    events(match result {
        Ok(result) => Event::Done { result },
        Err(error) => Event::Failed {
            kind: classify(&error),
            message: error.to_string(),
        },
    });
}

fn json<T: Serialize>(value: T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

async fn run(
    replication: &Replication,
    operation: Operation,
    progress: crate::sync::ProgressSink,
) -> Result<serde_json::Value, ReplicationError> {
    let local = replication.local().database().clone();
    match operation {
        Operation::TrustedHostsList => Ok(json(local.read(trust::list).await?)),
        Operation::TrustedHostsAdd { endpoint, key } => {
            let endpoint = Endpoint::parse(&endpoint)?;
            let logged = endpoint.clone();
            let host = local
                .write(move |conn| trust::add(conn, &endpoint, &key))
                .await?;
            replication
                .log(&format!(
                    "added trusted host {logged} with key {}",
                    host.fingerprint
                ))
                .await;
            Ok(json(host))
        }
        Operation::TrustedHostsRemove { endpoint } => {
            let endpoint = Endpoint::parse(&endpoint)?;
            let logged = endpoint.clone();
            local
                .write(move |conn| trust::remove(conn, &endpoint))
                .await?;
            replication
                .log(&format!("removed trusted host {logged}"))
                .await;
            Ok(serde_json::json!({ "removed": logged.to_string() }))
        }
        Operation::TestConnection { endpoint } => {
            let endpoint = Endpoint::parse(&endpoint)?;
            match replication.test_connection(&endpoint).await {
                Ok(report) => Ok(json(report)),
                Err(error) => {
                    replication
                        .log(&format!("Test Connection to {endpoint} failed: {error}"))
                        .await;
                    Err(error)
                }
            }
        }
        Operation::Sync {
            endpoint,
            force_full,
        } => {
            let endpoint = Endpoint::parse(&endpoint)?;
            if let Some(view) = replication.ha_link_view()
                && view.ha_enabled
                && view.state == tandem_ha::State::Active
            {
                return Err(ReplicationError::Refused(format!(
                    "this node is Active in epoch {} and serves devices; a sync would replace its \
                     data under them. Make it a Standby first (`tandem failover mode secondary`), \
                     or disable HA on it",
                    view.epoch
                )));
            }
            let options = SyncOptions {
                trigger: Trigger::Manual,
                force_full,
            };
            let summary = crate::sync::run(replication, &endpoint, options, progress).await?;
            Ok(json(summary))
        }
        Operation::History { limit, offset } => {
            let limit = limit.clamp(1, HISTORY_ROWS_MAX);
            Ok(json(
                local
                    .read(move |conn| history::page(conn, limit, offset))
                    .await?,
            ))
        }
        Operation::HaStatus
        | Operation::HaConfigure { .. }
        | Operation::FailoverMode { .. }
        | Operation::Switchover
        | Operation::TestNotification
        | Operation::ClientConnection { .. } => Err(ReplicationError::Refused(
            "this operation is carried out by the HA controller, not by replication".into(),
        )),
        Operation::Backup { .. } => Err(ReplicationError::Refused(
            "a backup is carried out by `execute`, which reports its own progress".into(),
        )),
        Operation::UsersList { .. }
        | Operation::UsersAdd { .. }
        | Operation::UsersRemove { .. }
        | Operation::UsersSetPassword { .. } => Err(ReplicationError::Refused(
            "account operations are carried out by the server, not by replication".into(),
        )),
        Operation::Verify { endpoint } => {
            let endpoint = Endpoint::parse(&endpoint)?;
            let report = verify(replication, &endpoint).await?;
            if report.identical {
                Ok(json(report))
            } else {
                let names: Vec<&str> = report
                    .differing
                    .iter()
                    .map(|table| table.table.as_str())
                    .collect();
                Err(ReplicationError::Refused(format!(
                    "{} and this node differ in {} table(s): {} (positions: here {}, there {})",
                    report.peer_node,
                    names.len(),
                    names.join(", "),
                    report.local_position_seq,
                    report.peer_position_seq
                )))
            }
        }
    }
}

/// What `tandem backup` wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    pub path: String,
    pub source_node: String,
    pub created_at: String,
    pub position_seq: i64,
    pub content_sha256: String,
    pub database_bytes: u64,
    pub tables: usize,
    pub files: usize,
    pub files_bytes: u64,
}

/// Writes and verifies a backup of this node (online when it serves), logging where it went.
async fn backup(
    replication: &Replication,
    target: &tandem_store::backup::BackupTarget,
    events: Arc<impl Fn(Event) + Send + Sync + 'static>,
) -> Result<serde_json::Value, ReplicationError> {
    let progress = move |progress: tandem_store::backup::BackupProgress| {
        events(Event::Progress {
            progress: json(progress),
        });
    };
    let manifest = tandem_store::backup::create(
        replication.replicated(),
        replication.files(),
        replication.node_name(),
        target,
        progress,
    )
    .await?;
    let report = BackupReport {
        path: target.path.display().to_string(),
        source_node: manifest.source_node,
        created_at: manifest.created_at,
        position_seq: manifest.position_seq,
        content_sha256: manifest.content_sha256,
        database_bytes: manifest.database.size_bytes,
        tables: manifest.tables.len(),
        files: manifest.files.len(),
        files_bytes: manifest.files.iter().map(|file| file.size_bytes).sum(),
    };
    replication
        .log(&format!(
            "backup written to {} (position {}, content SHA-256 {})",
            report.path, report.position_seq, report.content_sha256
        ))
        .await;
    Ok(json(report))
}

/// Compares every replicated table's row count and digest with the peer's.
pub async fn verify(
    replication: &Replication,
    endpoint: &Endpoint,
) -> Result<VerifyReport, ReplicationError> {
    let mut session = replication.open_session(endpoint).await?;
    let answer = crate::sync::request(
        &mut session.connection.stream,
        endpoint,
        &crate::protocol::Request::Digests,
    )
    .await?;
    let crate::protocol::Response::Digests { tables: theirs } = answer else {
        return Err(ReplicationError::Protocol(format!(
            "{endpoint} answered a digest request with {answer:?}"
        )));
    };
    let (ours, position) = replication
        .replicated()
        .read(|conn| Ok((changes::table_digests(conn)?, changes::position(conn)?)))
        .await?;
    let mut names: Vec<&str> = ours
        .iter()
        .chain(theirs.iter())
        .map(|digest| digest.table.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut differing = Vec::new();
    for name in &names {
        let local = ours.iter().find(|digest| digest.table == *name);
        let peer = theirs.iter().find(|digest| digest.table == *name);
        if local != peer {
            differing.push(TableDifference {
                table: (*name).to_owned(),
                local_rows: local.map(|digest| digest.rows),
                peer_rows: peer.map(|digest| digest.rows),
            });
        }
    }
    let report = VerifyReport {
        identical: differing.is_empty(),
        peer_node: session.peer.node_name.clone(),
        tables: names.len(),
        differing,
        local_position_seq: position.seq,
        peer_position_seq: session.peer.position_seq,
    };
    replication
        .log(&format!(
            "verify against {endpoint} ({}): {}",
            report.peer_node,
            if report.identical {
                "identical".to_owned()
            } else {
                format!("{} table(s) differ", report.differing.len())
            }
        ))
        .await;
    Ok(report)
}

/// Serves the control socket until `shutdown` completes. Access is limited by the socket file's
/// permissions (owner only), like the data dir itself.
#[cfg(unix)]
pub async fn serve_control(
    executor: Arc<dyn Executor>,
    listener: tokio::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((socket, _)) = accepted else { continue };
        let executor = executor.clone();
        tokio::spawn(async move {
            let (reader, mut writer) = socket.into_split();
            let mut reader = BufReader::new(reader).take(OPERATION_BYTES_MAX as u64);
            let mut line = String::new();
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            // Progress is lossy (a full queue drops an update); the final event is not.
            let (progress, mut updates) =
                tokio::sync::mpsc::channel::<Event>(PROGRESS_EVENTS_QUEUED_MAX);
            let (finished, outcome) = tokio::sync::oneshot::channel::<Event>();
            let finished = std::sync::Mutex::new(Some(finished));
            let report = move |event: Event| match event {
                Event::Progress { .. } => {
                    let _ = progress.try_send(event);
                }
                last => {
                    let sender = finished
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                    if let Some(sender) = sender {
                        let _ = sender.send(last);
                    }
                }
            };
            let report: Reporter = Arc::new(report);
            match serde_json::from_str::<Operation>(&line) {
                Ok(operation) => {
                    tokio::spawn(executor.execute(operation, report));
                }
                Err(error) => report(Event::Failed {
                    kind: FailureKind::Usage,
                    message: format!("the control request is not a valid operation: {error}"),
                }),
            }
            let mut outcome = std::pin::pin!(outcome);
            let last = loop {
                tokio::select! {
                    Some(update) = updates.recv() => {
                        if write_event(&mut writer, &update).await.is_err() {
                            // The CLI went away (Ctrl-C); the operation finishes on its own.
                            return;
                        }
                    }
                    last = &mut outcome => break last,
                }
            };
            // Progress reported before the end goes out first, then the end.
            while let Ok(update) = updates.try_recv() {
                let _ = write_event(&mut writer, &update).await;
            }
            if let Ok(last) = last {
                let _ = write_event(&mut writer, &last).await;
            }
        });
    }
}

async fn write_event(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    event: &Event,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(event).map_err(std::io::Error::other)?;
    line.push('\n');
    writer.write_all(line.as_bytes()).await
}

/// Binds the control socket in `data_dir`, replacing a stale one left by a killed node.
#[cfg(unix)]
pub fn bind_control(data_dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(CONTROL_SOCKET);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "{} is answered by a running node; is this node already running?",
                path.display()
            ),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Sends `operation` to the node running in `data_dir`. `Ok(None)`: no node runs there.
#[cfg(unix)]
pub async fn call_running(
    data_dir: &Path,
    operation: &Operation,
    mut on_event: impl FnMut(Event),
) -> std::io::Result<Option<()>> {
    let path = data_dir.join(CONTROL_SOCKET);
    let socket = match tokio::net::UnixStream::connect(&path).await {
        Ok(socket) => socket,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    let (reader, mut writer) = socket.into_split();
    let mut line = serde_json::to_string(operation).map_err(std::io::Error::other)?;
    line.push('\n');
    writer.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        let event: Event = serde_json::from_str(&line).map_err(std::io::Error::other)?;
        let last = !matches!(event, Event::Progress { .. });
        on_event(event);
        if last {
            return Ok(Some(()));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the node closed the control socket before answering",
    ))
}
