//! `tandem-storebench`: storage-level benchmarks and fixtures for replication.
//!
//! - `fill`: grows a stopped node's replicated database to N devices (through the writer, so
//!   every row is captured and sealed like a real write), for the sync benchmarks.
//! - `touch`: commits N device changes on a stopped node, the load of an incremental sync.
//! - `capture`: the check-in write workload with change capture on and off, same process, same
//!   database, in pairs of runs (on then off, then off then on, ...); prints every throughput,
//!   the ratio of each pair and their median. `--only on|off` runs one side, for profiling it.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rusqlite::params;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tandem_store::{Database, OpenMode, StoreError, changes};

/// Rows written per write job while filling: large enough that commits are rare, small enough
/// that one job's transaction stays far below the WAL's comfort zone.
const FILL_BATCH_ROWS: usize = 20_000;
/// Devices per user in a filled fleet.
const DEVICES_PER_USER: usize = 4;
/// Idle time before each timed run of `capture`: the writer checkpoints the WAL when its queue
/// empties, so one run's WAL is not copied during the next.
const CAPTURE_SETTLE: Duration = Duration::from_secs(1);
/// Writes before each timed run of `capture` that are not counted: the writers and the page
/// cache reach their pace first.
const CAPTURE_WARMUP: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(
    name = "tandem-storebench",
    version,
    about = "Storage benchmarks and fixtures for Tandem replication"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add devices (and their users) to a stopped node until it holds DEVICES.
    Fill {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        devices: usize,
    },
    /// Commit CHANGES check-in updates to random devices of a stopped node, in one transaction.
    Touch {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        changes: usize,
    },
    /// Check-in writes with change capture on and off; prints JSON.
    Capture {
        /// Devices in the scratch database.
        #[arg(long, default_value_t = 100_000)]
        devices: usize,
        /// Seconds per timed run (after a second of warm-up).
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent writers (as concurrent check-ins would be).
        #[arg(long, default_value_t = 32)]
        writers: usize,
        /// Pairs of runs (one on, one off, the order alternating; with `--only`, single runs).
        /// This VM's disk changes speed several-fold from one minute to the next, so the ratio
        /// is taken within each pair and the median reported.
        #[arg(long, default_value_t = 8)]
        pairs: usize,
        /// Run only one side (for profiling it alone): `on` or `off`.
        #[arg(long, value_parser = ["on", "off"])]
        only: Option<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            Command::Fill { data_dir, devices } => {
                let db = open_node_db(&data_dir)?;
                fill(&db, devices).await?;
                db.close().await;
            }
            Command::Touch { data_dir, changes } => {
                let db = open_node_db(&data_dir)?;
                touch(&db, changes).await?;
                db.close().await;
            }
            Command::Capture {
                devices,
                seconds,
                writers,
                pairs,
                only,
            } => {
                let sides = match only.as_deref() {
                    Some("on") => vec![true],
                    Some("off") => vec![false],
                    _ => vec![true, false],
                };
                capture(
                    devices,
                    Duration::from_secs(seconds),
                    writers,
                    pairs,
                    &sides,
                )
                .await?
            }
        }
        Ok(())
    })
}

fn open_node_db(data_dir: &std::path::Path) -> Result<Database> {
    if data_dir.join(tandem_repl::ops::CONTROL_SOCKET).exists() {
        bail!(
            "{} looks like a running node (control.sock exists); stop it first",
            data_dir.display()
        );
    }
    tandem_store::open_replicated(
        &data_dir.join(tandem_node::REPLICATED_DB_FILE),
        OpenMode::Existing,
    )
    .context("cannot open the node's replicated database")
}

async fn count(db: &Database, table: &'static str) -> Result<usize> {
    Ok(db
        .read(move |conn| {
            Ok(
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })?,
            )
        })
        .await? as usize)
}

async fn fill(db: &Database, devices: usize) -> Result<()> {
    let started = Instant::now();
    let mut have = count(db, "devices").await?;
    let start_index = have;
    while have < devices {
        let rows = FILL_BATCH_ROWS.min(devices - have);
        let first = have;
        db.write(move |conn| {
            let now = tandem_store::common::now();
            let mut user = conn.prepare_cached(
                "INSERT INTO users (principal, email, first_name, last_name, created_at, updated_at)
                 VALUES (?1, ?1, 'Bench', ?2, ?3, ?3)",
            )?;
            let mut device = conn.prepare_cached(
                "INSERT INTO devices (uuid, udid, serial, imei, platform, os_version, model,
                    manufacturer, status, compliant, owner, user_id, registered_at, enrolled_at,
                    last_checkin_at, ip_address, client_version)
                 VALUES (?1, ?2, ?3, NULL, ?4, '17.5', 'Bench Phone 15', 'Bench Inc.', 'ACTIVE', 1,
                    'COMPANY', ?5, ?6, ?6, ?6, '10.1.2.3', '12.0.1')",
            )?;
            let mut user_id = 0;
            for index in first..first + rows {
                if index % DEVICES_PER_USER == 0 || user_id == 0 {
                    user.execute(params![
                        format!("bench-{index}@example.com"),
                        format!("User {index}"),
                        now
                    ])?;
                    user_id = conn.last_insert_rowid();
                }
                device.execute(params![
                    uuid::Uuid::new_v4().to_string(),
                    format!("UDID-{index:012}"),
                    format!("SN{index:010}"),
                    if index % 2 == 0 { "iOS" } else { "Android" },
                    user_id,
                    now
                ])?;
            }
            Ok::<_, StoreError>(())
        })
        .await?;
        have += rows;
        eprint!(
            "\rfill: {have}/{devices} devices ({:.0}/s)",
            (have - start_index) as f64 / started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    let bytes = std::fs::metadata(db.path())
        .map(|meta| meta.len())
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "devices": have,
            "databaseBytes": bytes,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

async fn touch(db: &Database, changes_wanted: usize) -> Result<()> {
    let devices = count(db, "devices").await?;
    if devices == 0 {
        bail!("the node has no devices; run `fill` first");
    }
    let before = db.read(changes::position).await?;
    db.write(move |conn| {
        let now = tandem_store::common::now();
        let mut update = conn.prepare_cached(
            "UPDATE devices SET last_checkin_at = ?2, ip_address = ?3 WHERE id = ?1",
        )?;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for index in 0..changes_wanted {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = (state >> 33) as usize % devices + 1;
            update.execute(params![
                id as i64,
                now,
                format!("10.9.{}.{}", index / 250 % 250, index % 250)
            ])?;
        }
        Ok::<_, StoreError>(())
    })
    .await?;
    let after = db.read(changes::position).await?;
    println!(
        "{}",
        serde_json::json!({"changes": after.seq - before.seq, "positionSeq": after.seq})
    );
    Ok(())
}

/// One timed run of the check-in update with `writers` concurrent writers; returns writes/s.
async fn run_writes(
    db: &Database,
    devices: usize,
    duration: Duration,
    writers: usize,
    capture: bool,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (db, stop, done) = (db.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut state = writer as u64 + 1;
            while !stop.load(Ordering::Relaxed) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = ((state >> 33) as usize % devices + 1) as i64;
                let written = db
                    .write(move |conn| {
                        let update = || -> Result<(), StoreError> {
                            conn.prepare_cached(
                                "UPDATE devices SET last_checkin_at = ?2, ip_address = ?3,
                                    os_version = coalesce(?4, os_version) WHERE id = ?1",
                            )?
                            .execute(params![
                                id,
                                tandem_store::common::now(),
                                "10.0.0.1",
                                "18.1"
                            ])?;
                            Ok(())
                        };
                        if capture {
                            update()
                        } else {
                            changes::without_capture(update)
                        }
                    })
                    .await;
                if written.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(CAPTURE_WARMUP).await;
    let (started, warm) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed) - warm;
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        let _ = task.await;
    }
    counted as f64 / elapsed
}

async fn capture(
    devices: usize,
    duration: Duration,
    writers: usize,
    pairs: usize,
    sides: &[bool],
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = tandem_store::open_replicated(&dir.path().join("replicated.db"), OpenMode::Create)?;
    fill(&db, devices).await?;
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for index in 0..pairs {
        // Every other pair runs its sides in the other order, so what one run leaves behind
        // (WAL, dirty pages) falls on each side as often.
        let mut order = sides.to_vec();
        if index % 2 == 1 {
            order.reverse();
        }
        let mut pair = [None, None];
        for capture in order {
            tokio::time::sleep(CAPTURE_SETTLE).await;
            let rate = run_writes(&db, devices, duration, writers, capture).await;
            eprintln!(
                "capture {}: {rate:.0} writes/s",
                if capture { "on" } else { "off" }
            );
            if capture { &mut on } else { &mut off }.push(rate);
            pair[usize::from(!capture)] = Some(rate);
        }
        if let [Some(rate_on), Some(rate_off)] = pair {
            ratios.push(rate_on / rate_off);
        }
    }
    // Printed in pair order, beside the rates; the median comes from a sorted copy.
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => None,
        count if count % 2 == 1 => Some(sorted[count / 2]),
        count => Some((sorted[count / 2 - 1] + sorted[count / 2]) / 2.0),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "devices": devices,
            "writers": writers,
            "secondsPerRun": duration.as_secs(),
            "captureOnWritesPerSecond": on,
            "captureOffWritesPerSecond": off,
            "ratioOnToOffPerPair": ratios,
            "ratioOnToOffMedian": median,
        }))?
    );
    db.close().await;
    Ok(())
}
