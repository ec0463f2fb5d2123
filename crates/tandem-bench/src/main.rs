//! `tandem-loadgen`: enrolls a device fleet on a Tandem node, then drives check-ins over
//! keep-alive HTTPS while probing the status page, and reports throughput and latency next to a
//! reference measured in the same run (the status page under the same harness).
//!
//! Lab tool: it trusts exactly the node's own server certificate (pinned from the data directory
//! or a PEM file) and needs the admin password only when it has devices to enroll.

mod cpu;
mod enroll;
mod fleet;
mod flood;
mod histogram;
mod http;
mod load;
mod memory;
mod report;
mod tls;

use anyhow::{Context, Result, bail};
use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use hyper::header::HeaderValue;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// More errors than this fraction of all requests fails the run (exit status 1).
pub const ERROR_FRACTION_MAX: f64 = 0.001;
/// Largest accepted `--connections`: each is a task and a socket on both sides, and the server
/// closes connections beyond its own cap (8192).
const CONNECTIONS_MAX: usize = 4096;
/// Largest accepted `--devices`: identities are kept in memory (about 1 KiB each).
const DEVICES_MAX: usize = 1_000_000;
/// Largest accepted `--enroll-concurrency`.
const ENROLL_CONCURRENCY_MAX: usize = 1024;
/// Smallest accepted `--probe-interval`: faster probing would itself be load.
const PROBE_INTERVAL_MIN: Duration = Duration::from_millis(1);
/// Longest accepted `--duration`, `--warmup` and `--settle`.
const PHASE_DURATION_MAX: Duration = Duration::from_secs(3600);
/// Settle time after each phase when `--password-flood` is given and `--settle` is not: long
/// enough for the server to finish the checks still queued when the flood stops (a full queue
/// waited 1.3–1.5 s in BENCHMARKS.md's runs) and give back what they held, short next to a
/// 30 s phase.
const FLOOD_SETTLE_DEFAULT: Duration = Duration::from_secs(5);

/// Exit status when the run worked but missed the error budget.
const EXIT_TOO_MANY_ERRORS: u8 = 1;
/// Exit status when the run could not be carried out (bad arguments, server unreachable…).
const EXIT_FAILURE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "tandem-loadgen",
    version,
    about = "Enroll a device fleet on a Tandem node, then drive check-ins over keep-alive HTTPS",
    after_help = "EXIT STATUS:\n    0  success\n    1  more than 0.1 % of the requests failed\n    \
                  2  the run could not be carried out"
)]
struct Args {
    /// The node's service listener.
    #[arg(long, default_value = "127.0.0.1:4443")]
    target: SocketAddr,

    /// The node's data directory: the server certificate to pin is read from its replicated
    /// database.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "server_certificate"
    )]
    data_dir: Option<PathBuf>,

    /// PEM file with the server certificate to pin, instead of --data-dir.
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    server_certificate: Option<PathBuf>,

    /// Admin user for creating users and registering devices.
    #[arg(long, default_value = "admin")]
    admin_user: String,

    /// File whose first line is the admin password (needed only when devices must be enrolled).
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,

    /// Devices in the fleet.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,

    /// Enrollments in flight at once (each on its own keep-alive connection).
    #[arg(long, default_value_t = 32)]
    enroll_concurrency: usize,

    /// Save enrolled identities here (JSON lines) and reuse them on later runs against the same
    /// node; only the missing devices are enrolled.
    #[arg(long, value_name = "PATH")]
    fleet_file: Option<PathBuf>,

    /// Concurrent connections (workers) in the load phases.
    #[arg(long, default_value_t = 32)]
    connections: usize,

    /// Requests sent on each connection before it is closed and the worker connects as the next
    /// device.
    #[arg(long, default_value_t = 10)]
    requests_per_connection: u32,

    /// Measured time of each load phase, e.g. 30s, 2m, 500ms.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,

    /// Unmeasured load before each phase's measurement starts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,

    /// Offer this many check-ins per second in total (open loop, latency counted from when each
    /// request was due) instead of sending as fast as answers come (closed loop).
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,

    /// Status-page probe period during the load phases.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    probe_interval: Duration,

    /// JSON body of each check-in.
    #[arg(long, default_value = r#"{"osVersion":"18.1"}"#)]
    checkin_body: String,

    /// Skip the reference phase (the status page under the same harness).
    #[arg(long)]
    no_reference: bool,

    /// The server's process id, to report its CPU use per thread and its memory (VmRSS at the
    /// start of each phase, sampled every 100 ms, at the end and after --settle; VmHWM).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

    /// During each load phase (warm-up included), also flood the admin API from this many
    /// connections: `GET /api/v2/ping` with a wrong password for --flood-user, as fast as
    /// answers come, ignoring Retry-After. Answers are reported by status.
    #[arg(long, value_name = "CONNECTIONS")]
    password_flood: Option<usize>,

    /// The user the flood guesses passwords for (an existing one costs a real password check).
    #[arg(long, value_name = "NAME", default_value = "admin")]
    flood_user: String,

    /// Idle time after each phase before the server's memory is read the last time; default
    /// 5s with --password-flood, else 0.
    #[arg(long, value_parser = parse_duration)]
    settle: Option<Duration>,

    /// Print the results as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,

    /// Also write the results as one JSON object to this file (the table still goes to stdout).
    #[arg(long, value_name = "PATH")]
    json_file: Option<PathBuf>,
}

/// Parses `250ms`, `30s`, `2m`, `1h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

fn validate(args: &Args) -> Result<()> {
    let in_range = |name: &str, value: usize, max: usize| {
        if value == 0 || value > max {
            bail!("--{name} must be between 1 and {max}, not {value}");
        }
        Ok(())
    };
    in_range("devices", args.devices, DEVICES_MAX)?;
    in_range("connections", args.connections, CONNECTIONS_MAX)?;
    in_range(
        "enroll-concurrency",
        args.enroll_concurrency,
        ENROLL_CONCURRENCY_MAX,
    )?;
    if args.requests_per_connection == 0 {
        bail!("--requests-per-connection must be at least 1");
    }
    if args.duration.is_zero() || args.duration > PHASE_DURATION_MAX {
        bail!("--duration must be above 0 and at most {PHASE_DURATION_MAX:?}");
    }
    if args.warmup > PHASE_DURATION_MAX {
        bail!("--warmup must be at most {PHASE_DURATION_MAX:?}");
    }
    if args
        .settle
        .is_some_and(|settle| settle > PHASE_DURATION_MAX)
    {
        bail!("--settle must be at most {PHASE_DURATION_MAX:?}");
    }
    if let Some(connections) = args.password_flood {
        in_range("password-flood", connections, CONNECTIONS_MAX)?;
    }
    // HTTP Basic cannot carry a user name with a colon, nor a header a control character.
    if args.flood_user.is_empty() || args.flood_user.contains(':') {
        bail!("--flood-user must be a user name without ':'");
    }
    if args.flood_user.chars().any(char::is_control) {
        bail!("--flood-user must not contain control characters");
    }
    if args.probe_interval < PROBE_INTERVAL_MIN {
        bail!("--probe-interval must be at least {PROBE_INTERVAL_MIN:?}");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of requests per second");
    }
    serde_json::from_str::<serde_json::Value>(&args.checkin_body)
        .context("--checkin-body is not JSON")?;
    Ok(())
}

fn admin_authorization(args: &Args) -> Result<HeaderValue> {
    let Some(path) = &args.admin_password_file else {
        bail!("devices must be enrolled: pass --admin-password-file");
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--admin-password-file: cannot read {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default();
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", args.admin_user));
    HeaderValue::from_str(&format!("Basic {credentials}"))
        .context("the admin user name or password cannot be sent in a header")
}

/// A tag unique to this run for serial numbers: seconds since the epoch, in hex.
fn run_tag() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    format!("{seconds:X}")
}

async fn run(args: Args) -> Result<bool> {
    let certificate = match (&args.data_dir, &args.server_certificate) {
        (_, Some(path)) => tls::server_certificate_from_file(path)?,
        (Some(dir), None) => tls::server_certificate_from_data_dir(dir)?,
        (None, None) => bail!("pass --data-dir or --server-certificate"),
    };
    let tls = tls::Tls::pinned(certificate)?;
    let target = http::Target::new(args.target);

    // Phase 1: the fleet.
    let mut records = match &args.fleet_file {
        Some(path) => fleet::load(path, &tls.server_fingerprint)?,
        None => Vec::new(),
    };
    records.truncate(args.devices);
    let mut enrollment = None;
    if records.len() < args.devices {
        if !records.is_empty() {
            eprintln!(
                "enroll: {} devices from the fleet file; enrolling {} more",
                records.len(),
                args.devices - records.len()
            );
        }
        let writer = match &args.fleet_file {
            Some(path) => Some(fleet::Writer::open(path, &tls.server_fingerprint)?),
            None => None,
        };
        let options = enroll::Options {
            first: records.len(),
            end: args.devices,
            concurrency: args.enroll_concurrency,
            authorization: admin_authorization(&args)?,
            run_tag: run_tag(),
        };
        let (enrolled, report) = enroll::run(target.clone(), tls.clone(), options, writer).await?;
        eprintln!(
            "enroll: {} devices in {:.1} s ({:.0}/s)",
            report.devices, report.seconds, report.devices_per_second
        );
        records.extend(enrolled);
        enrollment = Some(report);
    } else {
        eprintln!("enroll: all {} devices from the fleet file", records.len());
    }
    let parsing = std::time::Instant::now();
    let fleet = {
        let tls = tls.clone();
        tokio::task::spawn_blocking(move || fleet::parse(&tls, &records)).await??
    };
    eprintln!(
        "fleet: {} identities loaded in {:.1} s",
        fleet.len(),
        parsing.elapsed().as_secs_f64()
    );

    let alongside = load::Alongside {
        server_pid: args.server_pid,
        flood: args.password_flood.map(|connections| flood::Options {
            connections,
            user: args.flood_user.clone(),
        }),
        settle: settle(&args),
    };
    let flood_note = alongside
        .flood
        .as_ref()
        .map(|flood| {
            format!(
                ", beside a wrong-password flood as {:?} from {} connections",
                flood.user, flood.connections
            )
        })
        .unwrap_or_default();
    let options = load::Options {
        connections: args.connections,
        requests_per_connection: args.requests_per_connection,
        warmup: args.warmup,
        duration: args.duration,
        rate: args.rate,
        probe_interval: args.probe_interval,
    };

    // Phase 4 first: the reference, so both phases see the same machine state.
    let reference = if args.no_reference {
        None
    } else {
        eprintln!(
            "reference: GET {} for {:?} (+{:?} warm-up), {} connections x {} requests{flood_note}",
            load::STATUS_PATH,
            args.duration,
            args.warmup,
            args.connections,
            args.requests_per_connection
        );
        Some(
            load::run(
                target.clone(),
                tls.clone(),
                load::Workload::Reference,
                load::Options {
                    // The reference is the ceiling: always closed loop.
                    rate: None,
                    ..options
                },
                &alongside,
            )
            .await,
        )
    };

    // Phases 2 and 3: check-ins, with the probe.
    eprintln!(
        "check-in: POST {} for {:?} (+{:?} warm-up), {} connections x {} requests{}{flood_note}",
        load::CHECKIN_PATH,
        args.duration,
        args.warmup,
        args.connections,
        args.requests_per_connection,
        args.rate
            .map(|rate| format!(", offered {rate:.0}/s"))
            .unwrap_or_default()
    );
    let fleet = Arc::new(fleet);
    let checkin = load::run(
        target,
        tls,
        load::Workload::CheckIn {
            fleet,
            body: Bytes::from(args.checkin_body.clone()),
        },
        options,
        &alongside,
    )
    .await;

    let settings = args_summary(&args);
    let report = report::Report::new(&settings, enrollment.as_ref(), reference.as_ref(), &checkin);
    if let Some(path) = &args.json_file {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("--json-file: cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.passed_error_budget())
}

/// `--settle`, or its default: only a flood needs time to see the memory return.
fn settle(args: &Args) -> Duration {
    args.settle.unwrap_or(if args.password_flood.is_some() {
        FLOOD_SETTLE_DEFAULT
    } else {
        Duration::ZERO
    })
}

fn args_summary(args: &Args) -> report::RunSettings {
    report::RunSettings {
        target: args.target.to_string(),
        devices: args.devices,
        connections: args.connections,
        requests_per_connection: args.requests_per_connection,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        rate: args.rate,
        probe_interval_ms: args.probe_interval.as_secs_f64() * 1000.0,
        checkin_body: args.checkin_body.clone(),
        password_flood_connections: args.password_flood,
        flood_user: args.flood_user.clone(),
        settle_s: settle(args).as_secs_f64(),
    }
}

fn main() -> ExitCode {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if let Err(error) = validate(&args) {
        eprintln!("tandem-loadgen: error: {error:#}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tandem-loadgen: error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "tandem-loadgen: more than {:.1} % of the requests failed",
                ERROR_FRACTION_MAX * 100.0
            );
            ExitCode::from(EXIT_TOO_MANY_ERRORS)
        }
        Err(error) => {
            eprintln!("tandem-loadgen: error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
