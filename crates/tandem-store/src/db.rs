//! A SQLite database with one writer thread that commits in groups, and a bounded read pool.
//!
//! Durability: the database runs in WAL mode with `synchronous = FULL`, so a commit returns only
//! after the WAL is fsynced. A write is acknowledged to its caller only after the commit that
//! contains it returned; so an acknowledged write survives `kill -9` and power loss.
//!
//! Throughput: an fsync per write would cap the node at a few hundred writes per second. The
//! writer instead takes every job waiting in its queue (up to [`WRITE_BATCH_JOBS_MAX`]), runs each
//! in its own savepoint inside one transaction, commits once, and only then answers them all
//! (group commit). A job that fails rolls back to its savepoint and does not disturb the others.

use crate::error::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tandem_clock::wall_clock_ms;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// Jobs waiting for the writer. When full, callers wait (backpressure) instead of piling up
/// memory; 4096 is several group commits' worth at the batch size below.
pub const WRITE_QUEUE_JOBS_MAX: usize = 4096;
/// Jobs committed together. Bounds the latency a single commit adds to the first job in it, and
/// the work lost to one failed commit (each job is then answered with the error).
pub const WRITE_BATCH_JOBS_MAX: usize = 512;
/// Read connections open at once. Two cores gain nothing from more; WAL lets them all read while
/// the writer commits.
pub const READ_CONNECTIONS_MAX: usize = 8;
/// Bytes of a database file mapped into memory for reading (address space, not RAM).
const MMAP_BYTES_MAX: i64 = 4 << 30;
/// The writer connection's page cache, in KiB (one connection, so 64 MiB is affordable).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// How long a connection waits on a lock held by another process (e.g. an operator's `sqlite3`
/// shell) before failing with "database is locked".
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a database file is, for the checks made when it is opened.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    /// Stored in `PRAGMA application_id`, so a foreign SQLite file is recognised and refused.
    pub application_id: i32,
    /// Shown in errors: "replicated database", "node-local store".
    pub description: &'static str,
    /// Ordered migrations; `PRAGMA user_version` counts those applied.
    pub migrations: &'static [Migration],
    /// Whether writes are recorded in the change log (`changes.rs`): true for the replicated
    /// database, false for the node-local store, which is never replicated.
    pub change_capture: bool,
}

/// One schema step: SQL, or code for steps that depend on the schema as it stands (such as
/// generating the change-capture triggers from the tables' columns).
#[derive(Clone, Copy, Debug)]
pub enum Migration {
    Sql(&'static str),
    Code(fn(&Connection) -> rusqlite::Result<()>),
}

impl Schema {
    pub fn version(&self) -> i64 {
        self.migrations.len() as i64
    }
}

/// How the writer answers a job: committed, not committed (the reason), or refused because
/// writes are closed on this node.
#[derive(Clone)]
enum Commit {
    Done,
    Failed(Arc<str>),
    Closed(Arc<str>),
}

type Completion = Box<dyn FnOnce(Commit) + Send>;
/// A queued write. The writer calls it with the connection, or with `None` when it cannot start
/// a transaction, in which case the job does not run and is only answered.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;

/// What the writer thread receives: a job (an ordinary write, or a replication write that the
/// write gate does not stop), a change of the write gate, the request to install a snapshot in
/// place of the database, or the request to stop after everything before it.
enum Message {
    Job(Job),
    ReplicaJob(Job),
    Gate {
        closed: Option<Arc<str>>,
        reply: oneshot::Sender<()>,
    },
    Install {
        incoming: PathBuf,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    Stop(oneshot::Sender<()>),
}

/// The read connections, and the gate that keeps them off the file while a snapshot replaces
/// it: a read holds the gate shared, an installation holds it exclusively.
#[derive(Default)]
struct Readers {
    gate: RwLock<()>,
    pool: Mutex<Vec<Connection>>,
}

struct Shared {
    path: PathBuf,
    writer: mpsc::Sender<Message>,
    readers: Arc<Readers>,
    read_permits: Arc<Semaphore>,
    /// The epoch the writer stamps on change-log entries (`None` without change capture).
    epoch: Option<Arc<AtomicI64>>,
    /// Counts commits (and snapshot installations): what a replication source waits on to push
    /// new entries to a following Secondary as soon as they are durable.
    commits: Arc<watch::Sender<u64>>,
    /// `(newest sealed seq, wall-clock ms)` of recent commits with change capture, oldest first:
    /// how a source tells a following Secondary when the entries it sends were committed, so
    /// replication lag is measured from the write, not from the send.
    commit_times: Arc<Mutex<std::collections::VecDeque<(i64, i64)>>>,
    /// The newest sealed sequence number after the last commit (change capture only).
    head_seq: Arc<AtomicI64>,
    /// Synchronous replication: successful writes return only once a Standby confirmed them.
    ack_gate: Mutex<Option<AckGate>>,
    /// Changes whenever the gate is replaced, so writes waiting under the old rule re-check
    /// (a demoted node's waiting writes must not wait for ever).
    ack_gate_changes: watch::Sender<u64>,
    /// Whether this process was frozen long enough for a peer to take over (see `freeze`).
    freeze: Arc<crate::freeze::FreezeMark>,
}

/// Synchronous replication's rule for [`Database::write`]: a write that committed is answered
/// only once `acked` (the position a Standby holds durably) reaches the position after it.
#[derive(Clone)]
pub struct AckGate {
    pub acked: watch::Receiver<i64>,
    /// `None`: wait as long as it takes. `Some(limit)`: after waiting `limit`, answer without the
    /// confirmation and set `degraded`; writes then do not wait until the Standby has caught up.
    pub wait_max: Option<std::time::Duration>,
    /// While confirmations are not awaited (a Standby lost with the `continuous` policy): the
    /// head when that began, and the gate is back once `acked` reaches it (under a steady load
    /// the head keeps moving, so "caught up with the head" would never hold). 0: not degraded.
    /// The HA runtime raises and clears the alarm from it.
    pub degraded: Arc<AtomicI64>,
    /// The fallback must first be recorded by a witness (`tandem_ha::record`): writes never
    /// stop waiting on their own; the HA runtime sets `degraded` once the record is made.
    pub record_required: bool,
}

impl AckGate {
    /// Clears a degradation the Standby has caught up with; true while still degraded.
    pub fn still_degraded(&self) -> bool {
        let target = self.degraded.load(Ordering::Acquire);
        if target > 0 && *self.acked.borrow() >= target {
            // Only this target is cleared: a newer degradation is kept.
            let _ = self
                .degraded
                .compare_exchange(target, 0, Ordering::AcqRel, Ordering::Acquire);
        }
        self.degraded.load(Ordering::Acquire) > 0
    }
}

/// Recent commits whose time is kept (see `Shared::commit_times`): at 1,000 commits/s that is
/// four seconds, longer than a continuous follower is ever behind while it keeps up.
const COMMIT_TIMES_RETAINED_MAX: usize = 4_096;

/// A handle to one database file; cheap to clone. The writer thread stops when [`Self::close`]
/// is called or when the last handle is dropped.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

/// How to open a database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file; fail if one exists (so `tandem init` never overwrites a node).
    Create,
    /// Open an existing file; fail if it is missing.
    Existing,
}

impl Database {
    pub fn open(path: &Path, schema: Schema, mode: OpenMode) -> StoreResult<Self> {
        match (mode, path.exists()) {
            (OpenMode::Create, true) => {
                return Err(StoreError::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "already exists; refusing to overwrite it",
                    ),
                ));
            }
            (OpenMode::Existing, false) => {
                return Err(StoreError::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file"),
                ));
            }
            _ => {}
        }
        make_private(path)?;
        let opened = open_connection(path, OpenFlags::default())
            .and_then(|mut conn| migrate(&mut conn, path, schema).map(|()| conn));
        let conn = opened.map_err(|error| match error {
            StoreError::Sqlite(error) => StoreError::Open {
                path: path.to_owned(),
                what: schema.description,
                reason: error.to_string(),
            },
            other => other,
        })?;
        let epoch = if schema.change_capture {
            crate::changes::register_functions(&conn)?;
            let latest = crate::changes::latest_epoch(&conn)?;
            Some(Arc::new(AtomicI64::new(latest.max(1))))
        } else {
            None
        };
        let (sender, receiver) = mpsc::channel::<Message>(WRITE_QUEUE_JOBS_MAX);
        let readers = Arc::new(Readers::default());
        let commits = Arc::new(watch::Sender::new(0));
        let commit_times = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let head_seq = Arc::new(AtomicI64::new(if schema.change_capture {
            crate::changes::position(&conn)?.seq
        } else {
            0
        }));
        let writer = Writer {
            path: path.to_owned(),
            schema,
            readers: readers.clone(),
            epoch: epoch.clone(),
            wal_frames: Arc::new(AtomicI64::new(0)),
            commits: commits.clone(),
            commit_times: commit_times.clone(),
            head_seq: head_seq.clone(),
        };
        let mut conn = conn;
        writer.watch_wal(&mut conn)?;
        std::thread::Builder::new()
            .name(format!("writer:{}", file_name(path)))
            .spawn(move || writer.run(conn, receiver))
            .map_err(|error| StoreError::io(path, error))?;
        Ok(Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                writer: sender,
                readers,
                read_permits: Arc::new(Semaphore::new(READ_CONNECTIONS_MAX)),
                epoch,
                commits,
                commit_times,
                head_seq,
                ack_gate: Mutex::new(None),
                ack_gate_changes: watch::Sender::new(0),
                freeze: Arc::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The epoch stamped on new change-log entries (0 for a database without change capture).
    pub fn epoch(&self) -> i64 {
        self.shared
            .epoch
            .as_ref()
            .map_or(0, |epoch| epoch.load(Ordering::Acquire))
    }

    /// Sets the epoch for entries committed from now on. The HA controller raises it when this
    /// node is promoted, after recording the new epoch durably.
    pub fn set_epoch(&self, epoch: i64) {
        if let Some(current) = &self.shared.epoch {
            current.store(epoch, Ordering::Release);
        }
    }

    /// Changes with every commit that wrote something, and with every snapshot installation:
    /// subscribe, then read, then wait for a change to learn of later writes without polling.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.shared.commits.subscribe()
    }

    /// Wall-clock ms of the commit that sealed the first entry after `after_seq`, when it is
    /// recent enough to be known (change capture only).
    pub fn committed_at_ms(&self, after_seq: i64) -> Option<i64> {
        lock(&self.shared.commit_times)
            .iter()
            .find(|(seq, _)| *seq > after_seq)
            .map(|(_, at)| *at)
    }

    /// Runs `job` in the writer's transaction and returns its result once it is durable (and,
    /// with an [`AckGate`], once a Standby holds it too).
    pub async fn write<R, F>(&self, job: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (job, answer) = wrap_job(job);
        self.shared
            .writer
            .send(Message::Job(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        let result = answer.await.map_err(|_| StoreError::WriterStopped)?;
        if result.is_ok() {
            self.await_ack().await?;
            if let Some(gap_ms) = self.frozen_ms() {
                return Err(StoreError::WritesClosed(format!(
                    "this write was committed on this node, but the node was frozen for {gap_ms} \
                     ms before it could be acknowledged, long enough for another node to have \
                     taken over; it is not acknowledged (it is kept here, and saved to the \
                     divergence export if the Active node lacks it); check before retrying"
                )));
            }
        }
        result
    }

    /// Watches for freezes of this process of at least `threshold` (`None`: not at all, e.g.
    /// HA disabled): while one is not dealt with, writes are not acknowledged.
    pub fn set_freeze_threshold(&self, threshold: Option<std::time::Duration>) {
        self.shared.freeze.set_threshold(threshold);
    }

    /// The gap (ms) of a freeze of this process not dealt with yet, or of one in progress.
    pub fn frozen_ms(&self) -> Option<u64> {
        self.shared.freeze.frozen_ms()
    }

    /// How many freezes of this process were marked so far.
    pub fn freeze_generation(&self) -> u64 {
        self.shared.freeze.generation()
    }

    /// The freezes up to `generation` were dealt with (the HA controller checked its peers, or
    /// is not Active); a later one stays marked.
    pub fn clear_frozen_through(&self, generation: u64) {
        self.shared.freeze.clear_through(generation);
    }

    /// Synchronous replication: installs (or removes) the rule that writes wait for a Standby.
    pub fn set_ack_gate(&self, gate: Option<AckGate>) {
        *lock(&self.shared.ack_gate) = gate;
        self.shared
            .ack_gate_changes
            .send_modify(|count| *count += 1);
    }

    /// The newest sealed sequence number (change capture only).
    pub fn head_seq(&self) -> i64 {
        self.shared.head_seq.load(Ordering::Acquire)
    }

    async fn await_ack(&self) -> StoreResult<()> {
        // Every write before this answer is at or below the head now.
        let head = self.head_seq();
        let mut waited = false;
        loop {
            let mut changes = self.shared.ack_gate_changes.subscribe();
            let Some(mut gate) = lock(&self.shared.ack_gate).clone() else {
                if waited {
                    // The node stopped being Active while this write waited: it is committed
                    // here, but no Standby confirmed it, so it must not be acknowledged.
                    return Err(StoreError::WritesClosed(
                        "this write was committed on this node but no Standby confirmed it \
                         before the node stopped being Active; it is kept here (and saved to the \
                         divergence export if the new Active node lacks it); check before \
                         retrying"
                            .into(),
                    ));
                }
                return Ok(());
            };
            if gate.still_degraded() {
                return Ok(());
            }
            waited = true;
            let confirmed = gate.acked.wait_for(|acked| *acked >= head);
            let wait_max = if gate.record_required {
                None
            } else {
                gate.wait_max
            };
            let gave_up = async move {
                match wait_max {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = confirmed => return Ok(()),
                // The rule changed (a role or configuration change): apply the new one.
                _ = changes.changed() => continue,
                () = gave_up => {
                    if let Some(gap_ms) = self.frozen_ms() {
                        // The wait ran out while the process was frozen: that says nothing
                        // of the Standby, and another node may have taken over meanwhile.
                        return Err(StoreError::WritesClosed(format!(
                            "this write was committed on this node but not confirmed by its \
                             Standby before the node was frozen for {gap_ms} ms; it is not \
                             acknowledged (it is kept here, and saved to the divergence export \
                             if the Active node lacks it); check before retrying"
                        )));
                    }
                    let _ = gate.degraded.compare_exchange(0, head, Ordering::AcqRel, Ordering::Acquire);
                    tracing::error!(
                        head,
                        "no Standby confirmed a write in time: acknowledging writes without it \
                         (continuous replication) until it has caught up"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// [`Self::write`] for replication: a sync applies the source's changes even while ordinary
    /// writes are closed (a Standby).
    pub async fn write_replica<R, F>(&self, job: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (job, answer) = wrap_job(job);
        self.shared
            .writer
            .send(Message::ReplicaJob(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Closes ordinary writes (`Some(reason)`: refused with [`StoreError::WritesClosed`]) or
    /// opens them (`None`). The change is ordered with the writes: it returns once every write
    /// queued before it has committed, and no write queued after it commits while closed. So
    /// after `close` returns, the database's position is final until it is opened again (the HA
    /// controller's fence, and a switchover's last sync point).
    pub async fn set_write_gate(&self, closed: Option<String>) -> StoreResult<()> {
        let (reply, done) = oneshot::channel();
        self.shared
            .writer
            .send(Message::Gate {
                closed: closed.map(Arc::from),
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)
    }

    /// [`Self::write`] for callers outside an async runtime (the CLI's `init`).
    pub fn write_blocking<R, F>(&self, job: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (job, answer) = wrap_job(job);
        self.shared
            .writer
            .blocking_send(Message::Job(job))
            .map_err(|_| StoreError::WriterStopped)?;
        answer
            .blocking_recv()
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// Runs `query` on a pooled read-only connection on a blocking thread.
    pub async fn read<R, F>(&self, query: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let permit = self
            .shared
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = this.read_blocking(query);
            drop(permit);
            result
        })
        .await
        .map_err(|error| StoreError::Corrupt(format!("a read task failed: {error}")))?
    }

    /// A read on the calling thread. Async code uses [`Self::read`], which also bounds how many
    /// run at once.
    pub fn read_blocking<R>(
        &self,
        query: impl FnOnce(&Connection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let _gate = self
            .shared
            .readers
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pooled = lock(&self.shared.readers.pool).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                open_connection(&self.shared.path, flags)?
            }
        };
        let result = query(&conn);
        let mut readers = lock(&self.shared.readers.pool);
        if readers.len() < READ_CONNECTIONS_MAX {
            readers.push(conn);
        }
        result
    }

    /// Replaces the database with the complete database file `incoming` (a full sync's snapshot),
    /// atomically: after every write queued before this call has committed, the writer waits for
    /// running reads, closes every connection, checkpoints the WAL away, renames `incoming` over
    /// the file, syncs the directory and reopens. A crash before the rename leaves the old
    /// database, after it the new one; never a mix. `incoming` must be in the same directory and
    /// already durable (fsynced), and must not have a WAL of its own.
    pub async fn install_snapshot(&self, incoming: PathBuf) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .writer
            .send(Message::Install { incoming, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Commits every write queued before this call, then stops the writer and closes its
    /// connection. Later writes through any handle fail with [`StoreError::WriterStopped`].
    pub async fn close(&self) {
        let (sender, stopped) = oneshot::channel();
        if self.shared.writer.send(Message::Stop(sender)).await.is_ok() {
            let _ = stopped.await;
        }
        lock(&self.shared.readers.pool).clear();
    }

    /// [`Self::close`] for callers outside an async runtime.
    pub fn close_blocking(&self) {
        let (sender, stopped) = oneshot::channel();
        if self
            .shared
            .writer
            .blocking_send(Message::Stop(sender))
            .is_ok()
        {
            let _ = stopped.blocking_recv();
        }
        lock(&self.shared.readers.pool).clear();
    }
}

/// A poisoned lock only means another thread panicked while holding it; the pool inside stays
/// valid (a `Vec` of connections), so recover the guard instead of spreading the panic.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn wrap_job<R, F>(job: F) -> (Job, oneshot::Receiver<StoreResult<R>>)
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    let job: Job = Box::new(move |conn: Option<&Connection>| {
        let result = conn.map(job);
        let succeeded = matches!(result, Some(Ok(_)));
        let completion: Completion = Box::new(move |commit: Commit| {
            let answer = match (result, commit) {
                (_, Commit::Closed(reason)) => Err(StoreError::WritesClosed(reason.to_string())),
                (None, Commit::Failed(reason)) => Err(StoreError::NotCommitted(reason.to_string())),
                (None, Commit::Done) => Err(StoreError::WriterStopped),
                (Some(Err(error)), _) => Err(error),
                (Some(Ok(_)), Commit::Failed(reason)) => {
                    Err(StoreError::NotCommitted(reason.to_string()))
                }
                (Some(Ok(value)), Commit::Done) => Ok(value),
            };
            // The caller may have gone away (client disconnected); the write stands regardless.
            let _ = sender.send(answer);
        });
        (succeeded, completion)
    });
    (job, receiver)
}

/// Database, WAL and shared-memory files are readable by the node's user only: they hold the
/// device CA's private key and the password hashes. SQLite gives the WAL and shared-memory
/// files the database file's mode, so the database file is created 0600 before SQLite opens it,
/// and files left more open by an older build are tightened.
fn make_private(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| StoreError::io(path, error))?;
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|error| StoreError::io(&file, error))?;
            tracing::info!(file = %file.display(), "made the database file readable by its owner only (0600)");
        }
    }
    Ok(())
}

fn open_connection(path: &Path, flags: OpenFlags) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(|error| StoreError::Foreign {
        path: path.to_owned(),
        expected: "database",
        reason: error.to_string(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Read pages through a memory map of the file instead of a pread per page: a large fleet's
    // database lives in the OS page cache anyway, and a process that just opened it (the CLI
    // running a sync) would otherwise pay thousands of syscalls to walk its indexes.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES_MAX)?;
    // Query-planner stability: without it SQLite re-prepares a cached statement whenever a bound
    // value might change the plan (LIKE prefixes, STAT4), which cost the writer most of its time
    // under check-in load (see BENCHMARKS.md). Plans here come from indexes, not from values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "{} refused WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The writer's page cache: SQLite's default (2 MiB) cannot even hold the interior pages
        // of a large fleet's tables, so every write re-read them from the OS.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path, schema: Schema) -> StoreResult<()> {
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    let is_new = application_id == 0 && version == 0 && tables == 0;
    if !is_new && application_id != schema.application_id {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            expected: schema.description,
            reason: format!(
                "its application_id is {application_id:#x}, expected {:#x}",
                schema.application_id
            ),
        });
    }
    if version > schema.version() {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            supported: schema.version(),
        });
    }
    for (index, migration) in schema.migrations.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(step) => step(&tx)?,
        }
        tx.pragma_update(None, "application_id", schema.application_id)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = index + 1, "applied schema migration");
    }
    Ok(())
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    schema: Schema,
    readers: Arc<Readers>,
    epoch: Option<Arc<AtomicI64>>,
    /// Frames in the WAL after the last commit, as SQLite's WAL hook reports them.
    wal_frames: Arc<AtomicI64>,
    commits: Arc<watch::Sender<u64>>,
    commit_times: Arc<Mutex<std::collections::VecDeque<(i64, i64)>>>,
    head_seq: Arc<AtomicI64>,
}

/// The writer checkpoints the WAL when its queue is empty and the WAL holds this many frames
/// (SQLite's own automatic threshold), after answering the commit's jobs: a write never waits
/// for a checkpoint of earlier writes (an incremental sync's apply included).
const WAL_CHECKPOINT_IDLE_FRAMES: i64 = 1_000;
/// Under unbroken load the queue is never empty; past this many frames (64 MiB of 4 KiB pages)
/// the writer checkpoints anyway, so the WAL stays bounded.
const WAL_CHECKPOINT_FORCE_FRAMES: i64 = 16_000;

impl Writer {
    /// Replaces SQLite's automatic checkpoint (which runs inside `COMMIT`, before the commit's
    /// jobs are answered) with a count the writer acts on after answering them.
    fn watch_wal(&self, conn: &mut Connection) -> StoreResult<()> {
        let frames = self.wal_frames.clone();
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                frames.store(i64::from(pages), Ordering::Release);
                Ok(())
            },
        ))?;
        Ok(())
    }

    fn checkpoint_if_due(&self, conn: &Connection, idle: bool) {
        let frames = self.wal_frames.load(Ordering::Acquire);
        if frames >= WAL_CHECKPOINT_FORCE_FRAMES || (idle && frames >= WAL_CHECKPOINT_IDLE_FRAMES) {
            // PASSIVE: copies what no reader still needs and never blocks readers. What remains
            // is copied by a later checkpoint; the next commit after a complete one restarts
            // the WAL from its beginning.
            tracing::debug!(frames, idle, "checkpointing the WAL");
            if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(%error, "WAL checkpoint failed; it is retried after a later commit");
            }
            self.wal_frames.store(0, Ordering::Release);
        }
    }

    fn run(self, conn: Connection, mut receiver: mpsc::Receiver<Message>) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut conn = Some(conn);
            let mut batch: Vec<Job> = Vec::with_capacity(WRITE_BATCH_JOBS_MAX);
            let mut stop = None;
            // Why ordinary writes are refused, while they are (a Standby, a fenced node).
            let mut closed: Option<Arc<str>> = None;
            while let Some(first) = receiver.blocking_recv() {
                let mut next = Some(first);
                // Replicated entries arrive sealed: the head is read back after such a commit.
                let mut replica_in_batch = false;
                let mut install = None;
                let mut gate = None;
                while let Some(message) = next.take() {
                    match message {
                        Message::Job(job) => match &closed {
                            None => batch.push(job),
                            Some(reason) => {
                                let (_, completion) = job(None);
                                completion(Commit::Closed(reason.clone()));
                            }
                        },
                        Message::ReplicaJob(job) => {
                            replica_in_batch = true;
                            batch.push(job);
                        }
                        Message::Gate { closed, reply } => {
                            gate = Some((closed, reply));
                            break;
                        }
                        Message::Install { incoming, reply } => {
                            install = Some((incoming, reply));
                            break;
                        }
                        Message::Stop(ack) => {
                            stop = Some(ack);
                            break;
                        }
                    }
                    if batch.len() < WRITE_BATCH_JOBS_MAX {
                        next = receiver.try_recv().ok();
                    }
                }
                let epoch = self
                    .epoch
                    .as_ref()
                    .map(|epoch| epoch.load(Ordering::Acquire));
                match &conn {
                    Some(open) => {
                        if !batch.is_empty() {
                            // Runs after the commit and before any job is answered, so a write
                            // that waits for a Standby (synchronous replication) sees its own
                            // entries in the head.
                            let committed = |sealed: Option<i64>| {
                                let sealed = match sealed {
                                    None if replica_in_batch && epoch.is_some() => {
                                        crate::changes::position(open).ok().map(|head| head.seq)
                                    }
                                    sealed => sealed,
                                };
                                if let Some(seq) = sealed {
                                    self.head_seq.store(seq, Ordering::Release);
                                    let mut times = lock(&self.commit_times);
                                    if times.len() == COMMIT_TIMES_RETAINED_MAX {
                                        times.pop_front();
                                    }
                                    times.push_back((seq, wall_clock_ms()));
                                }
                            };
                            if commit_batch(open, batch.drain(..), epoch, committed) {
                                self.commits.send_modify(|count| *count += 1);
                            }
                        }
                        self.checkpoint_if_due(open, receiver.is_empty());
                    }
                    None => refuse_batch(
                        batch.drain(..),
                        "the database is closed after a failed snapshot installation; restart the node",
                    ),
                }
                if let Some((next_closed, reply)) = gate {
                    closed = next_closed;
                    let _ = reply.send(());
                }
                if let Some((incoming, reply)) = install {
                    let result = self.install(&mut conn, &incoming);
                    if result.is_ok() {
                        self.commits.send_modify(|count| *count += 1);
                    }
                    if let Err(error) = &result {
                        tracing::error!(%error, incoming = %incoming.display(), "snapshot installation failed");
                    }
                    let _ = reply.send(result);
                }
                if stop.is_some() {
                    break;
                }
            }
            receiver.close();
            drop(conn);
            if let Some(ack) = stop {
                let _ = ack.send(());
            }
        }));
        if outcome.is_err() {
            // A panic in a write job is a bug that may have left the transaction in an unknown
            // state; stopping the process is safer than serving on with a dead writer.
            eprintln!("tandem: the database writer panicked; stopping the process");
            std::process::abort();
        }
    }

    /// See [`Database::install_snapshot`]. On an error before the rename the old connection is
    /// kept (or reopened); after it, the new file is the database and is opened.
    fn install(&self, conn: &mut Option<Connection>, incoming: &Path) -> StoreResult<()> {
        let same_dir = incoming.parent() == self.path.parent();
        if !same_dir || wal_path(incoming).exists() {
            return Err(StoreError::Corrupt(format!(
                "{} cannot be installed: a snapshot must sit beside {} and have no WAL",
                incoming.display(),
                self.path.display()
            )));
        }
        let _gate = self
            .readers
            .gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lock(&self.readers.pool).clear();
        if let Some(open) = conn.take() {
            // TRUNCATE leaves an empty WAL, and closing the last connection removes it, so no
            // frame of the old database can ever be replayed onto the new one.
            let checkpoint = open
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(StoreError::from_sqlite);
            let closed = open
                .close()
                .map_err(|(_, error)| StoreError::from_sqlite(error));
            if let Err(error) = checkpoint.and(closed) {
                *conn = Some(self.reopen()?);
                return Err(error);
            }
        }
        let wal_bytes = std::fs::metadata(wal_path(&self.path)).map_or(0, |meta| meta.len());
        if wal_bytes > 0 {
            *conn = Some(self.reopen()?);
            return Err(StoreError::Corrupt(format!(
                "{} still has a {wal_bytes}-byte WAL (another process has the database open?); \
                 the snapshot was not installed",
                self.path.display()
            )));
        }
        std::fs::rename(incoming, &self.path).map_err(|error| StoreError::io(incoming, error))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|error| StoreError::io(dir, error))?;
        }
        let reopened = self.reopen()?;
        if let Some(epoch) = &self.epoch {
            let latest = crate::changes::latest_epoch(&reopened)?;
            epoch.store(latest.max(1), Ordering::Release);
            let head = crate::changes::position(&reopened)?.seq;
            self.head_seq.store(head, Ordering::Release);
        }
        *conn = Some(reopened);
        Ok(())
    }

    fn reopen(&self) -> StoreResult<Connection> {
        let mut conn = open_connection(&self.path, OpenFlags::default())?;
        migrate(&mut conn, &self.path, self.schema)?;
        self.watch_wal(&mut conn)?;
        if self.schema.change_capture {
            crate::changes::register_functions(&conn)?;
        }
        Ok(conn)
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn refuse_batch(jobs: impl Iterator<Item = Job>, reason: &str) {
    let reason: Arc<str> = reason.into();
    for job in jobs {
        let (_, completion) = job(None);
        completion(Commit::Failed(reason.clone()));
    }
}

/// Runs `jobs` in one transaction and commits once. With change capture (`epoch` is `Some`), the
/// entries the jobs produced are sealed just before the commit, inside the same transaction.
/// After a commit and before answering the jobs it calls `committed` with the newest sequence
/// number change capture sealed (if any). Returns whether it committed.
fn commit_batch(
    conn: &Connection,
    jobs: impl Iterator<Item = Job>,
    epoch: Option<i64>,
    committed: impl FnOnce(Option<i64>),
) -> bool {
    let mut completions: Vec<Completion> = Vec::new();
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        let reason: Arc<str> = format!("could not begin a transaction: {error}").into();
        for job in jobs {
            let (_, completion) = job(None);
            completion(Commit::Failed(reason.clone()));
        }
        return false;
    }
    if let Some(epoch) = epoch {
        crate::changes::set_capture_epoch(epoch);
    }
    let mut jobs = jobs.peekable();
    while let Some(job) = jobs.next() {
        if completions.is_empty() && jobs.peek().is_none() {
            // A job alone in its transaction needs no savepoint: the transaction is one. Inside
            // a savepoint SQLite copies every page the job changes into a sub-journal, which
            // spills to a temporary file past 64 KiB: for a sync's apply (one job, a page per
            // change on a large table) that copy grew with the database (BENCHMARKS.md,
            // "Incremental sync").
            let (succeeded, completion) = job(Some(conn));
            if !succeeded {
                let _ = conn.execute_batch("ROLLBACK");
                completion(Commit::Failed(
                    "the write failed; nothing was committed".into(),
                ));
                return false;
            }
            completions.push(completion);
            break;
        }
        let savepoint = conn.execute_batch("SAVEPOINT job");
        let (succeeded, completion) = job(Some(conn));
        let ended = match (savepoint.is_ok(), succeeded) {
            (true, true) => conn.execute_batch("RELEASE job"),
            (true, false) => conn.execute_batch("ROLLBACK TO job; RELEASE job"),
            (false, _) => Ok(()),
        };
        if let Err(error) = ended {
            tracing::error!(%error, "could not end a write job's savepoint");
        }
        completions.push(completion);
    }
    let sealed = match epoch {
        Some(epoch) => crate::changes::seal_pending(conn, epoch).map_err(|error| error.to_string()),
        None => Ok(None),
    };
    let mut newest = None;
    let commit = match sealed.and_then(|sealed| {
        newest = sealed;
        conn.execute_batch("COMMIT")
            .map_err(|error| error.to_string())
    }) {
        Ok(()) => Commit::Done,
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(%error, "group commit failed; every write in it was rolled back");
            Commit::Failed(Arc::from(error))
        }
    };
    let done = matches!(commit, Commit::Done);
    if done {
        committed(newest);
    }
    for completion in completions {
        completion(commit.clone());
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_SCHEMA: Schema = Schema {
        application_id: 0x7465_7374,
        description: "test database",
        migrations: &[Migration::Sql(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
        )],
        change_capture: false,
    };

    fn insert(db: &Database, name: &str) -> impl Future<Output = StoreResult<i64>> + use<> {
        let (db, name) = (db.clone(), name.to_owned());
        async move {
            db.write(move |conn| {
                conn.execute("INSERT INTO items (name) VALUES (?1)", [&name])
                    .map_err(StoreError::from_sqlite)?;
                Ok(conn.last_insert_rowid())
            })
            .await
        }
    }

    /// A replicated database (change capture on) and a label write on it.
    fn replicated(dir: &Path) -> Database {
        crate::open_replicated(&dir.join("replicated.db"), OpenMode::Create).unwrap()
    }

    async fn label(db: &Database, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        db.write(move |conn| {
            let input = crate::labels::LabelInput {
                name: Some(name),
                description: None,
            };
            crate::labels::create(conn, "test", &input).map(|_| ())
        })
        .await
    }

    fn gate(acked: &watch::Receiver<i64>, wait_max: Option<std::time::Duration>) -> AckGate {
        AckGate {
            acked: acked.clone(),
            wait_max,
            degraded: Arc::new(AtomicI64::new(0)),
            record_required: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_under_an_ack_gate_is_answered_once_the_standby_holds_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let db = replicated(dir.path());
        let mut commits = db.commits();
        label(&db, "before-the-gate").await.unwrap();
        // The writer announces a commit once it has answered its jobs: wait for it.
        tokio::time::timeout(std::time::Duration::from_secs(10), commits.changed())
            .await
            .expect("a commit is announced")
            .unwrap();
        let (acked, receiver) = watch::channel(db.head_seq());
        db.set_ack_gate(Some(gate(&receiver, None)));
        let write = tokio::spawn({
            let db = db.clone();
            async move { label(&db, "confirmed").await }
        });
        // Committed (the head moves past what the Standby holds), but not answered. Waits for
        // the commit rather than for a fixed time, which a loaded machine can overrun.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while db.head_seq() <= *acked.borrow() {
            assert!(
                std::time::Instant::now() < deadline,
                "the waiting write never committed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!write.is_finished());
        let head = db.head_seq();
        acked.send_replace(head - 1);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!write.is_finished(), "one entry short is not enough");
        acked.send_replace(head);
        write.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gate_with_a_limit_degrades_then_recovers_once_the_standby_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = replicated(dir.path());
        let (acked, receiver) = watch::channel(db.head_seq());
        let limited = gate(&receiver, Some(std::time::Duration::from_millis(100)));
        let degraded = limited.degraded.clone();
        db.set_ack_gate(Some(limited.clone()));
        // Nobody confirms: answered after the limit, degraded at that head.
        label(&db, "unconfirmed").await.unwrap();
        let lost_at = degraded.load(Ordering::Acquire);
        assert_eq!(lost_at, db.head_seq());
        // While degraded, writes do not wait, even under a gate without a limit that shares
        // the degraded state (it would wait for ever otherwise).
        db.set_ack_gate(Some(AckGate {
            wait_max: None,
            ..limited.clone()
        }));
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            label(&db, "without-the-standby"),
        )
        .await
        .expect("a degraded gate does not wait")
        .unwrap();
        assert!(limited.still_degraded());
        // The Standby reaches the head it was lost at: synchronous again.
        acked.send_replace(lost_at);
        assert!(!limited.still_degraded());
        assert_eq!(degraded.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waiting_when_the_gate_is_removed_is_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let db = replicated(dir.path());
        let (_acked, receiver) = watch::channel(db.head_seq());
        db.set_ack_gate(Some(gate(&receiver, None)));
        let write = tokio::spawn({
            let db = db.clone();
            async move { label(&db, "waiting").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The node stops being Active: the waiting write gets an error, not an acknowledgement.
        db.set_ack_gate(None);
        match write.await.unwrap() {
            Err(StoreError::WritesClosed(reason)) => {
                assert!(reason.contains("no Standby confirmed it"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Without a gate, writes are answered at once.
        label(&db, "no-gate").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_write_gate_refuses_ordinary_writes_but_not_replication() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            Database::open(&dir.path().join("gate.db"), TEST_SCHEMA, OpenMode::Create).unwrap();
        // Queued before the gate closes: committed, and answered before the gate returns.
        // (join! polls in order, so the insert is queued first.)
        let (before, gate) = tokio::join!(
            insert(&db, "before"),
            db.set_write_gate(Some("node-b is Standby; devices go to node-a".into()))
        );
        gate.unwrap();
        assert_eq!(before.unwrap(), 1);
        match insert(&db, "refused").await {
            Err(StoreError::WritesClosed(reason)) => assert!(reason.contains("node-a"), "{reason}"),
            other => panic!("expected the gate to refuse the write, got {other:?}"),
        }
        db.write_replica(|conn| {
            conn.execute("INSERT INTO items (name) VALUES ('from-sync')", [])?;
            Ok(())
        })
        .await
        .unwrap();
        db.set_write_gate(None).await.unwrap();
        insert(&db, "after").await.unwrap();
        let names: Vec<String> = db
            .read(|conn| {
                let mut statement = conn.prepare("SELECT name FROM items ORDER BY id")?;
                let names = statement
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(names)
            })
            .await
            .unwrap();
        assert_eq!(names, ["before", "from-sync", "after"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_replaces_the_database_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            Database::open(&dir.path().join("live.db"), TEST_SCHEMA, OpenMode::Create).unwrap();
        insert(&db, "old").await.unwrap();
        // The snapshot: another database of the same schema, closed (so it has no WAL).
        let other =
            Database::open(&dir.path().join("other.db"), TEST_SCHEMA, OpenMode::Create).unwrap();
        insert(&other, "new-1").await.unwrap();
        insert(&other, "new-2").await.unwrap();
        other.close().await;
        let names = |db: &Database| {
            let db = db.clone();
            async move {
                db.read(|conn| {
                    let mut statement = conn.prepare("SELECT name FROM items ORDER BY id")?;
                    let names = statement.query_map([], |row| row.get::<_, String>(0))?;
                    Ok(names.collect::<Result<Vec<_>, _>>()?)
                })
                .await
            }
        };
        assert_eq!(names(&db).await.unwrap(), ["old"]);
        db.install_snapshot(dir.path().join("other.db"))
            .await
            .unwrap();
        assert!(!dir.path().join("other.db").exists());
        assert_eq!(names(&db).await.unwrap(), ["new-1", "new-2"]);
        insert(&db, "after").await.unwrap();
        assert_eq!(names(&db).await.unwrap(), ["new-1", "new-2", "after"]);
        // A snapshot elsewhere is refused and the database stays as it was.
        let elsewhere = tempfile::tempdir().unwrap();
        let error = db
            .install_snapshot(elsewhere.path().join("x.db"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("must sit beside"), "{error}");
        assert_eq!(names(&db).await.unwrap(), ["new-1", "new-2", "after"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_checkpoints_the_wal_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let db = Database::open(&path, TEST_SCHEMA, OpenMode::Create).unwrap();
        // One commit per write, each two pages (table and index): without checkpoints the WAL
        // would grow to 5,000 frames (about 20 MB).
        for index in 0..2_500 {
            insert(&db, &format!("item-{index}")).await.unwrap();
        }
        let wal_bytes = std::fs::metadata(wal_path(&path)).unwrap().len();
        let bound = 2 * WAL_CHECKPOINT_IDLE_FRAMES as u64 * (4096 + 24);
        assert!(
            wal_bytes <= bound,
            "the WAL is {wal_bytes} bytes, over {bound}"
        );
    }

    #[tokio::test]
    async fn cached_statements_are_not_re_prepared_when_bound_values_change() {
        // A GLOB pattern bound to a parameter may change SQLite's plan, so without query-planner
        // stability every new value re-prepares the cached statement (the check-in hot spot).
        let dir = tempfile::tempdir().unwrap();
        let db =
            Database::open(&dir.path().join("test.db"), TEST_SCHEMA, OpenMode::Create).unwrap();
        insert(&db, "alpha").await.unwrap();
        let re_prepared = db
            .write(|conn| {
                let mut statement = conn
                    .prepare_cached("SELECT count(*) FROM items WHERE name GLOB ?1")
                    .map_err(StoreError::from_sqlite)?;
                for pattern in ["a*", "b*", "al*", "alpha", "*"] {
                    let _: i64 = statement
                        .query_row([pattern], |row| row.get(0))
                        .map_err(StoreError::from_sqlite)?;
                }
                Ok(statement.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .await
            .unwrap();
        assert_eq!(re_prepared, 0);
    }

    #[tokio::test]
    async fn a_job_alone_in_its_transaction_that_fails_leaves_nothing_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            Database::open(&dir.path().join("test.db"), TEST_SCHEMA, OpenMode::Create).unwrap();
        insert(&db, "taken").await.unwrap();
        // Awaited one by one, so each job is alone in its transaction (no savepoint): the
        // failing one's first row must go with the transaction.
        let failed = db
            .write(|conn| {
                conn.execute("INSERT INTO items (name) VALUES ('first')", [])?;
                conn.execute("INSERT INTO items (name) VALUES ('taken')", [])
                    .map_err(StoreError::from_sqlite)?;
                Ok(())
            })
            .await;
        assert!(
            matches!(failed, Err(StoreError::Conflict { .. })),
            "{failed:?}"
        );
        insert(&db, "after").await.unwrap();
        let names: Vec<String> = db
            .read(|conn| {
                Ok(conn
                    .prepare("SELECT name FROM items ORDER BY id")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(names, ["taken", "after"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_job_rolls_back_alone_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let db = Database::open(&path, TEST_SCHEMA, OpenMode::Create).unwrap();
        insert(&db, "taken").await.unwrap();
        // Queue many writes at once so they share group commits; every tenth one fails after
        // writing a row, which its savepoint must undo.
        let mut tasks = Vec::new();
        for index in 0..200 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO items (name) VALUES (?1)",
                        [format!("item-{index}")],
                    )?;
                    if index % 10 == 0 {
                        conn.execute("INSERT INTO items (name) VALUES ('taken')", [])
                            .map_err(StoreError::from_sqlite)?;
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => {}
                Err(StoreError::Conflict { field, .. }) => {
                    assert_eq!(field, "name");
                    failed += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!(failed, 20);
        db.close().await;
        assert!(matches!(
            insert(&db, "late").await,
            Err(StoreError::WriterStopped)
        ));

        let reopened = Database::open(&path, TEST_SCHEMA, OpenMode::Existing).unwrap();
        let (count, failed_rows): (i64, i64) = reopened
            .read_blocking(|conn| {
                Ok(conn.query_row(
                    "SELECT count(*), sum(name IN ('item-0', 'item-10', 'item-190')) FROM items",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!(
            count,
            1 + 180,
            "the 180 good writes and the first row survive"
        );
        assert_eq!(failed_rows, 0, "a failed job's own rows are rolled back");
    }

    #[test]
    fn refuses_foreign_and_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        Database::open(&path, TEST_SCHEMA, OpenMode::Create)
            .unwrap()
            .close_blocking();
        let other = Schema {
            application_id: 0x0bad_0bad,
            ..TEST_SCHEMA
        };
        let foreign = Database::open(&path, other, OpenMode::Existing)
            .err()
            .unwrap();
        assert!(
            foreign
                .to_string()
                .contains("is not a Tandem test database"),
            "{foreign}"
        );

        let older = Schema {
            migrations: &[],
            ..TEST_SCHEMA
        };
        let newer = Database::open(&path, older, OpenMode::Existing)
            .err()
            .unwrap();
        assert!(matches!(
            newer,
            StoreError::SchemaTooNew {
                found: 1,
                supported: 0,
                ..
            }
        ));

        let exists = Database::open(&path, TEST_SCHEMA, OpenMode::Create)
            .err()
            .unwrap();
        assert!(
            exists.to_string().contains("refusing to overwrite"),
            "{exists}"
        );
    }
}
