//! `tandem lb`: run the traffic controller, show its status, resume traffic, hold and release
//! the maintenance hold.

use crate::output::{out, outln};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

pub const LB_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success (status: a backend takes traffic)
    1  the command failed: cannot bind, cannot reach the admin listener, the state file is
       unreadable or corrupt at start, or a hold, release or resume could not be written to it
       (the message says why, names the file and the fix)
    2  invalid command line or configuration file, or an invalid hold --reason (the message names
       the field, the value and the fix)
    3  status: no backend can take traffic now; resume: refused (the message says why)";

/// Exit code: no backend can take traffic (status), or the resume was refused.
const EXIT_REFUSED: u8 = 3;
/// The admin address of the configuration example, used when neither --admin nor --config is
/// given.
const ADMIN_DEFAULT: &str = "127.0.0.1:9444";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LbArgs {
    /// Run the traffic controller with this configuration file (TOML). Its memory (the active
    /// backend, the newest ballots seen, the maintenance hold) is kept in `state_file`, by
    /// default lb-state.json in the configuration file's directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<LbCommand>,
}

#[derive(Subcommand, Debug)]
enum LbCommand {
    /// Each backend's probe state, which one takes traffic and since when, why it last moved.
    #[command(after_help = LB_EXIT_STATUS_HELP)]
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the admin listener's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move traffic back to the first (or the named) backend that passes its status probe.
    #[command(
        long_about = "Manual Resume: move new device connections to the first backend, in \
configuration order, whose /status/status.html passes — or to --to NAME. Refused (exit 3, with \
the reason) when that backend does not pass its status probe; traffic then stays where it is. \
Connections already open finish where they are.",
        after_help = LB_EXIT_STATUS_HELP
    )]
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        /// The backend to move traffic to (its name in the configuration).
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Maintenance hold: no automatic switch until `tandem lb release` (the guide's upgrade step
    /// "disable the load balancer from failing over").
    #[command(
        long_about = "Maintenance hold (the guide's upgrade procedure: disable the load balancer from failing over). While held, traffic stays on the backend it is on, whatever the probes say: no failover, no move to a newer Active node. New connections are still refused while that backend is marked down or holds a stale ballot, since forwarding them would gain nothing. `tandem lb resume` still moves traffic by hand (the hold remains). The hold is kept in the state file, so it survives a restart of the controller; `tandem lb status` and the tandem_lb_held metric show it until `tandem lb release`. Holding again replaces the reason.",
        after_help = LB_EXIT_STATUS_HELP
    )]
    Hold {
        #[command(flatten)]
        admin: AdminArgs,
        /// Why, shown in `tandem lb status` and the log (one line, at most 200 characters).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End the maintenance hold: the rule applies again at once (traffic may move now).
    #[command(
        long_about = "End the maintenance hold set by `tandem lb hold`. The rule applies again at once: if the active backend is down, or another backend holds a newer ballot, traffic moves now. Releasing when nothing is held changes nothing and succeeds.",
        after_help = LB_EXIT_STATUS_HELP
    )]
    Release {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct AdminArgs {
    /// The controller's admin listener [default: the `admin` of --config, else 127.0.0.1:9444].
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Read the admin address from this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "admin")]
    config: Option<PathBuf>,
}

pub fn run(args: LbArgs) -> Result<ExitCode> {
    match (args.command, args.config) {
        (Some(LbCommand::Status { admin, json }), _) => status(admin, json),
        (Some(LbCommand::Resume { admin, to, json }), _) => resume(admin, to, json),
        (
            Some(LbCommand::Hold {
                admin,
                reason,
                json,
            }),
            _,
        ) => {
            let path = match &reason {
                Some(reason) => format!("/hold?reason={}", form_encode(reason)),
                None => "/hold".into(),
            };
            operate(admin, &path, "hold", json)
        }
        (Some(LbCommand::Release { admin, json }), _) => {
            operate(admin, "/release", "release", json)
        }
        (None, Some(config)) => serve(config),
        (None, None) => {
            eprintln!(
                "tandem: error: tandem lb needs --config FILE to run the controller, or a \
                 subcommand (status, resume, hold, release); see tandem lb --help"
            );
            Ok(ExitCode::from(crate::cli::EXIT_USAGE))
        }
    }
}

fn load(path: &std::path::Path) -> Result<Result<tandem_lb::LbConfig, ExitCode>> {
    match tandem_lb::LbConfig::load(path) {
        Ok(config) => Ok(Ok(config)),
        Err(error @ tandem_lb::config::ConfigError::Invalid { .. }) => {
            eprintln!("tandem: error: {error}");
            Ok(Err(ExitCode::from(crate::cli::EXIT_USAGE)))
        }
        Err(error) => Err(error.into()),
    }
}

fn serve(path: PathBuf) -> Result<ExitCode> {
    let config = match load(&path)? {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let lb = tandem_lb::Lb::bind(config).await?;
        tracing::info!(
            listen = ?lb.listen_addrs(),
            admin = ?lb.admin_addr(),
            "traffic controller listening"
        );
        lb.run(crate::cli::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn admin_addr(args: AdminArgs) -> Result<Result<SocketAddr, ExitCode>> {
    if let Some(addr) = args.admin {
        return Ok(Ok(addr));
    }
    if let Some(path) = args.config {
        return Ok(load(&path)?.map(|config| config.admin));
    }
    // The constant parses: it is a literal IPv4 address and port.
    Ok(Ok(ADMIN_DEFAULT
        .parse()
        .context("the default admin address")?))
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, Value)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (code, body) = runtime.block_on(tandem_lb::client::request(addr, method, path))?;
    let value = serde_json::from_str(&body).with_context(|| {
        format!("{addr} answered {code} with a body that is not JSON: {body:?}")
    })?;
    Ok((code, value))
}

fn status(admin: AdminArgs, json: bool) -> Result<ExitCode> {
    let addr = match admin_addr(admin)? {
        Ok(addr) => addr,
        Err(code) => return Ok(code),
    };
    let (_, status) = request(addr, "GET", "/status")?;
    let serving = status["canTakeTraffic"].as_bool().unwrap_or(false);
    if json {
        outln!("{status:#}");
    } else {
        out!("{}", render_status(addr, &status));
    }
    Ok(if serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

fn render_status(addr: SocketAddr, status: &Value) -> String {
    let mut out = format!("Traffic controller (admin {addr})\n");
    match status["active"].as_str() {
        Some(active) => {
            let health = if status["canTakeTraffic"].as_bool() == Some(true) {
                "passes its status probe"
            } else {
                "is DOWN"
            };
            out += &format!(
                "Traffic goes to:  {active} (since {}), which {health}\n",
                text(&status["activeSince"])
            );
        }
        None => out += "Traffic goes to:  nowhere: no backend passes its status probe\n",
    }
    if let Some(waiting) = status["waiting"].as_str() {
        out += &format!("Waiting:          {waiting}\n");
    }
    let hold = &status["hold"];
    if hold.is_object() {
        out += &format!(
            "HELD:             since {} ({}): no automatic switch until `tandem lb release`\n",
            text(&hold["since"]),
            text(&hold["reason"])
        );
    }
    let dual = &status["dualActive"];
    if dual.is_object() {
        out += &format!(
            "DUAL ACTIVE:      since {}: {}\n",
            text(&dual["since"]),
            text(&dual["detail"])
        );
    }
    let newest = &status["highestClaim"];
    if newest.is_object() {
        out += &format!(
            "Newest claim:     epoch {} of node {}   (state file {})\n",
            newest["epoch"],
            text(&newest["nodeId"]),
            text(&status["stateFile"])
        );
    }
    let switch = &status["lastSwitch"];
    if switch.is_object() {
        out += &format!(
            "Last switch:      {} {} -> {}: {}\n",
            text(&switch["at"]),
            switch["from"].as_str().unwrap_or("(start)"),
            text(&switch["to"]),
            text(&switch["reason"])
        );
    }
    out += &format!(
        "Switches:         {}   probes every {}, timeout {}, fall {}, rise {}\n\n",
        status["switches"],
        text(&status["probeInterval"]),
        text(&status["probeTimeout"]),
        status["fall"],
        status["rise"]
    );
    out += &format!(
        "{:<18} {:<6} {:<22} {:<7} {:<9} {:<5} {:<14} {}\n",
        "BACKEND", "GROUP", "ADDRESS", "STATUS", "HASTATUS", "OPEN", "CLAIM", "LAST STATUS PROBE"
    );
    for backend in status["backends"].as_array().into_iter().flatten() {
        let marker = if backend["active"].as_bool() == Some(true) {
            "*"
        } else {
            " "
        };
        out += &format!(
            "{marker}{:<17} {:<6} {:<22} {:<7} {:<9} {:<5} {:<14} {}\n",
            text(&backend["name"]),
            text(&backend["group"]),
            text(&backend["address"]),
            text(&backend["status"]["state"]),
            text(&backend["hastatus"]["state"]),
            backend["openConnections"].to_string(),
            claim_column(backend),
            text(&backend["status"]["lastDetail"])
        );
    }
    out
}

/// `epoch N` of the backend's claim, marked when stale; why it claims nothing otherwise.
fn claim_column(backend: &Value) -> String {
    let claim = &backend["claim"];
    if claim.is_object() {
        let stale = if backend["claimStale"].as_bool() == Some(true) {
            " STALE"
        } else {
            ""
        };
        format!("epoch {}{stale}", claim["epoch"])
    } else if backend["haDisabled"].as_bool() == Some(true) {
        "HA disabled".into()
    } else if backend["ballot"]
        .as_str()
        .is_some_and(|ballot| ballot.starts_with("epoch="))
    {
        "none".into()
    } else {
        "no ballot".into()
    }
}

/// `tandem lb hold|release`: POST `path`; exit 0 when done, 2 on bad input, 1 otherwise.
fn operate(admin: AdminArgs, path: &str, what: &str, json: bool) -> Result<ExitCode> {
    let addr = match admin_addr(admin)? {
        Ok(addr) => addr,
        Err(code) => return Ok(code),
    };
    let (code, answer) = request(addr, "POST", path)?;
    if json {
        outln!("{answer:#}");
    }
    match code {
        200 => {
            if !json {
                outln!("{}", text(&answer["message"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        400 => {
            if !json {
                eprintln!("tandem: error: {what}: {}", text(&answer["error"]));
            }
            Ok(ExitCode::from(crate::cli::EXIT_USAGE))
        }
        _ => {
            if !json {
                eprintln!("tandem: error: {what}: {}", text(&answer["error"]));
            }
            Ok(ExitCode::from(crate::cli::EXIT_FAILURE))
        }
    }
}

fn resume(admin: AdminArgs, to: Option<String>, json: bool) -> Result<ExitCode> {
    let addr = match admin_addr(admin)? {
        Ok(addr) => addr,
        Err(code) => return Ok(code),
    };
    let path = match &to {
        Some(name) => format!("/resume?to={}", form_encode(name)),
        None => "/resume".into(),
    };
    let (code, answer) = request(addr, "POST", &path)?;
    if json {
        outln!("{answer:#}");
    }
    if code == 200 {
        if !json {
            outln!("{}", text(&answer["message"]));
        }
        Ok(ExitCode::SUCCESS)
    } else if code == 500 {
        if !json {
            eprintln!("tandem: error: resume: {}", text(&answer["error"]));
        }
        Ok(ExitCode::from(crate::cli::EXIT_FAILURE))
    } else {
        if !json {
            eprintln!("tandem: resume refused: {}", text(&answer["error"]));
        }
        Ok(ExitCode::from(EXIT_REFUSED))
    }
}

/// Encodes a backend name for the query string (names are validated to letters, digits and
/// `-_.`, but a mistyped --to must still reach the controller intact to be refused with its
/// name).
fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
