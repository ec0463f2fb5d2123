//! The source side of a sync: answers a trusted peer's requests from this node's replicated
//! database and file store. Any node can be a source, including one that is itself a sync target
//! (cascading: the DR node syncs from the Secondary), because a target's change log is a verbatim
//! copy of its source's.

use crate::protocol::{FileRef, Request, Response};
use crate::wire::{WireError, read_frame, write_data, write_frame};
use crate::{Replication, ReplicationError};
use sha2::{Digest, Sha256};
use tandem_store::StoreError;
use tandem_store::changes::{self, ChangeEntry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

/// Entries per `Changes` frame. At a few hundred bytes per entry a frame stays around a
/// megabyte, far below the frame limit, and the target applies it in one step.
pub const CHANGES_BATCH_ENTRIES_MAX: i64 = 2_000;
/// Longest a continuous follower's request waits for a new write before an empty answer: well
/// under the follower's request timeout, and short enough that an idle follower knows it is in
/// step as of a second ago at worst (If Behind at Failure reads it) and notices a source that
/// stopped answering within seconds. One small round trip a second costs nothing.
pub const FOLLOW_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes of pages per snapshot data frame.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshot chunks read ahead of the network; bounds the memory a slow peer can pin.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 8;
/// Bytes per file data frame.
pub const FILE_CHUNK_BYTES: usize = 1024 * 1024;

/// What the blocking snapshot reader hands to the network side.
enum SnapshotPiece {
    Begin(Response),
    Pages(Vec<u8>),
    End(String),
}

/// Who the peer of a session is: its name, and the Trusted Hosts entries its key matched.
pub(crate) struct PeerContext {
    /// Why this peer must not replicate with this node (different software or schema
    /// versions): only heartbeats are answered, everything else is refused with the reason.
    pub incompatible: Option<String>,
    pub node_name: String,
    pub endpoints: Vec<String>,
}

/// Answers requests until the peer closes the channel.
pub(crate) async fn serve_requests<S>(
    replication: &Replication,
    stream: &mut S,
    peer: &PeerContext,
) -> Result<(), ReplicationError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let request = match read_frame::<_, Request>(stream).await {
            Ok(request) => request,
            Err(WireError::Closed) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        if let Some(reason) = &peer.incompatible
            && !matches!(request, Request::Heartbeat(_))
        {
            replication
                .log(&format!(
                    "refused a replication request from {}: {reason}",
                    peer.node_name
                ))
                .await;
            write_frame(
                stream,
                &Response::Refused {
                    reason: reason.clone(),
                },
            )
            .await?;
            continue;
        }
        let answered = match request {
            Request::Hello(_) => Err(ReplicationError::Protocol(
                "the peer sent a second hello".into(),
            )),
            Request::Changes {
                after_seq,
                after_checksum,
                wait_ms,
            } => send_changes(replication, stream, after_seq, after_checksum, wait_ms).await,
            Request::ChecksumAt { seq } => {
                let checksum = replication
                    .replicated()
                    .read(move |conn| changes::checksum_at(conn, seq))
                    .await?;
                write_frame(stream, &Response::ChecksumAt { seq, checksum })
                    .await
                    .map_err(Into::into)
            }
            Request::Snapshot => send_snapshot(replication, stream).await,
            Request::File { sha256 } => send_file(replication, stream, &sha256).await,
            Request::Heartbeat(peer) => {
                let ours = replication.ha_view(&peer).await?;
                write_frame(stream, &Response::Heartbeat(ours))
                    .await
                    .map_err(Into::into)
            }
            Request::Switchover { step } => {
                let answer = match replication
                    .switchover_step(step, &peer.node_name, &peer.endpoints)
                    .await
                {
                    Ok(answer) => answer,
                    Err(error) => Response::Refused {
                        reason: error.to_string(),
                    },
                };
                write_frame(stream, &answer).await.map_err(Into::into)
            }
            Request::Digests => {
                let tables = replication
                    .replicated()
                    .read(changes::table_digests)
                    .await?;
                write_frame(stream, &Response::Digests { tables })
                    .await
                    .map_err(Into::into)
            }
        };
        match answered {
            Ok(()) => {}
            // A store error is the source's problem to report; the peer learns why and may go on.
            Err(ReplicationError::Store(error)) => {
                tracing::warn!(%error, "a replication request failed on this node");
                write_frame(
                    stream,
                    &Response::Error {
                        message: error.to_string(),
                    },
                )
                .await?;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn send_changes<S>(
    replication: &Replication,
    stream: &mut S,
    after_seq: i64,
    after_checksum: String,
    wait_ms: u64,
) -> Result<(), ReplicationError>
where
    S: AsyncWrite + Unpin,
{
    let db = replication.replicated();
    // Subscribed before reading, so a commit between the read and the wait is not missed.
    let mut commits = db.commits();
    let wait = std::time::Duration::from_millis(wait_ms).min(FOLLOW_WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    let started = std::time::Instant::now();
    let (known, base, until) = loop {
        let checksum = after_checksum.clone();
        let (known, base, until) = db
            .read(move |conn| {
                let known = changes::checksum_at(conn, after_seq)?.as_deref() == Some(&checksum);
                Ok((known, changes::base(conn)?, changes::position(conn)?))
            })
            .await?;
        if known && !wait.is_zero() {
            // A follower (a long poll) holds every entry up to the one it continues from.
            replication.follower_holds(after_seq);
        }
        if !known || until.seq != after_seq || wait.is_zero() {
            break (known, base, until);
        }
        match tokio::time::timeout_at(deadline, commits.changed()).await {
            Ok(Ok(())) => {}
            // The wait is over (or the database closed): answer that nothing is new.
            Ok(Err(_)) | Err(_) => break (known, base, until),
        }
    };
    if !known {
        return write_frame(
            stream,
            &Response::NotInHistory {
                base_seq: base.seq,
                position_seq: until.seq,
            },
        )
        .await
        .map_err(Into::into);
    }
    // Entries up to the position seen now; later ones wait for the next sync.
    let mut next_after = after_seq;
    loop {
        let limit = CHANGES_BATCH_ENTRIES_MAX.min(until.seq - next_after).max(0);
        let entries: Vec<ChangeEntry> = if limit == 0 {
            Vec::new()
        } else {
            db.read(move |conn| changes::entries_after(conn, next_after, limit))
                .await?
        };
        if let Some(last) = entries.last() {
            next_after = last.seq;
        } else if next_after < until.seq {
            // Pruned between the check and now: the peer must fall back to a full sync.
            return write_frame(
                stream,
                &Response::NotInHistory {
                    base_seq: next_after + 1,
                    position_seq: until.seq,
                },
            )
            .await
            .map_err(Into::into);
        }
        let more = next_after < until.seq && !entries.is_empty();
        let committed_at_ms = entries
            .first()
            .filter(|first| first.seq == after_seq + 1)
            .and_then(|_| db.committed_at_ms(after_seq));
        write_frame(
            stream,
            &Response::Changes {
                entries,
                more,
                committed_at_ms,
            },
        )
        .await?;
        if !more {
            if wait.is_zero() {
                // A sync's request (a follower's long poll would log once a second).
                tracing::debug!(
                    after_seq,
                    until_seq = until.seq,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "sent the changes a sync asked for"
                );
            }
            return Ok(());
        }
    }
}

async fn send_snapshot<S>(replication: &Replication, stream: &mut S) -> Result<(), ReplicationError>
where
    S: AsyncWrite + Unpin,
{
    let (sender, mut receiver) = mpsc::channel::<SnapshotPiece>(SNAPSHOT_CHUNKS_IN_FLIGHT);
    let db = replication.replicated().clone();
    let reader =
        tokio::spawn(async move { db.read(move |conn| read_snapshot(conn, &sender)).await });
    while let Some(piece) = receiver.recv().await {
        match piece {
            SnapshotPiece::Begin(begin) => write_frame(stream, &begin).await?,
            SnapshotPiece::Pages(pages) => write_data(stream, &pages).await?,
            SnapshotPiece::End(sha256) => {
                write_frame(stream, &Response::SnapshotEnd { sha256 }).await?;
            }
        }
    }
    match reader.await {
        Ok(result) => result.map_err(Into::into),
        Err(error) => Err(ReplicationError::Protocol(format!(
            "the snapshot reader failed: {error}"
        ))),
    }
}

/// Reads every page inside one read transaction, so the snapshot is the database exactly as of
/// one commit, while the writer goes on committing.
fn read_snapshot(
    conn: &rusqlite::Connection,
    sender: &mpsc::Sender<SnapshotPiece>,
) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = read_snapshot_in_transaction(conn, sender);
    // Ends the read transaction whatever happened; the pooled connection must not keep it.
    let _ = conn.execute_batch("ROLLBACK");
    result
}

fn read_snapshot_in_transaction(
    conn: &rusqlite::Connection,
    sender: &mpsc::Sender<SnapshotPiece>,
) -> Result<(), StoreError> {
    let position = changes::position(conn)?;
    let page_size: u32 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
    let page_count: i64 = conn.pragma_query_value(None, "page_count", |row| row.get(0))?;
    let page_count = page_count as u64;
    let files = app_file_refs(conn)?;
    let gone = || StoreError::Corrupt("the peer went away during the snapshot".into());
    sender
        .blocking_send(SnapshotPiece::Begin(Response::SnapshotBegin {
            page_size,
            page_count,
            position_seq: position.seq,
            files,
        }))
        .map_err(|_| gone())?;
    let mut hasher = Sha256::new();
    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
    let mut statement = conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
    let mut rows = statement.query([])?;
    let mut expected_page = 1u64;
    while let Some(row) = rows.next()? {
        let pgno = row.get::<_, i64>(0)? as u64;
        let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        if pgno != expected_page || data.len() != page_size as usize {
            return Err(StoreError::Corrupt(format!(
                "the snapshot read page {pgno} ({} bytes) where page {expected_page} of {page_size} bytes was due",
                data.len()
            )));
        }
        expected_page += 1;
        hasher.update(data);
        chunk.extend_from_slice(data);
        if chunk.len() >= SNAPSHOT_CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(SNAPSHOT_CHUNK_BYTES));
            sender
                .blocking_send(SnapshotPiece::Pages(full))
                .map_err(|_| gone())?;
        }
    }
    if expected_page - 1 != page_count {
        return Err(StoreError::Corrupt(format!(
            "the snapshot has {} pages; the database reported {page_count}",
            expected_page - 1
        )));
    }
    if !chunk.is_empty() {
        sender
            .blocking_send(SnapshotPiece::Pages(chunk))
            .map_err(|_| gone())?;
    }
    sender
        .blocking_send(SnapshotPiece::End(hex::encode(hasher.finalize())))
        .map_err(|_| gone())?;
    Ok(())
}

/// Every app file the database refers to: what a snapshot must carry, and what a synced node
/// must hold.
pub(crate) fn app_file_refs(conn: &rusqlite::Connection) -> Result<Vec<FileRef>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT sha256, size_bytes FROM app_files ORDER BY sha256")?
        .query_map([], |row| {
            Ok(FileRef {
                sha256: row.get(0)?,
                size_bytes: row.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

/// True for a SHA-256 in lowercase hex, the only file names a peer may ask for.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

async fn send_file<S>(
    replication: &Replication,
    stream: &mut S,
    sha256: &str,
) -> Result<(), ReplicationError>
where
    S: AsyncWrite + Unpin,
{
    if !is_sha256_hex(sha256) {
        return Err(ReplicationError::Protocol(format!(
            "the peer asked for file {sha256:?}, which is not a SHA-256"
        )));
    }
    let path = replication.files().path_of(sha256);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            return Err(StoreError::io(&path, error).into());
        }
    };
    let size_bytes = file
        .metadata()
        .await
        .map_err(|error| StoreError::io(&path, error))?
        .len() as i64;
    write_frame(
        stream,
        &Response::FileBegin {
            sha256: sha256.to_owned(),
            size_bytes,
        },
    )
    .await?;
    let mut buffer = vec![0u8; FILE_CHUNK_BYTES];
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|error| StoreError::io(&path, error))?;
        if read == 0 {
            break;
        }
        write_data(stream, &buffer[..read]).await?;
    }
    write_frame(stream, &Response::FileEnd).await?;
    Ok(())
}
