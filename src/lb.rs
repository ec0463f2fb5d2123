//! `tandem lb`: run the traffic controller, show its status, resume traffic.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

pub const LB_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success (status: a backend takes traffic)
    1  the command failed (cannot bind, cannot reach the admin listener; the message says why)
    2  invalid command line or configuration file (the message names the field and the fix)
    3  status: no backend can take traffic now; resume: refused (the message says why)";

/// Exit code: no backend can take traffic (status), or the resume was refused.
const EXIT_REFUSED: u8 = 3;
/// The admin address of the configuration example, used when neither --admin nor --config is
/// given.
const ADMIN_DEFAULT: &str = "127.0.0.1:9444";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LbArgs {
    /// Run the traffic controller with this configuration file (TOML).
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
        (None, Some(config)) => serve(config),
        (None, None) => {
            eprintln!(
                "tandem: error: tandem lb needs --config FILE to run the controller, or a \
                 subcommand (status, resume); see tandem lb --help"
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
        println!("{status:#}");
    } else {
        print!("{}", render_status(addr, &status));
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
        "{:<18} {:<6} {:<22} {:<7} {:<9} {:<5} {}\n",
        "BACKEND", "GROUP", "ADDRESS", "STATUS", "HASTATUS", "OPEN", "LAST STATUS PROBE"
    );
    for backend in status["backends"].as_array().into_iter().flatten() {
        let marker = if backend["active"].as_bool() == Some(true) {
            "*"
        } else {
            " "
        };
        out += &format!(
            "{marker}{:<17} {:<6} {:<22} {:<7} {:<9} {:<5} {}\n",
            text(&backend["name"]),
            text(&backend["group"]),
            text(&backend["address"]),
            text(&backend["status"]["state"]),
            text(&backend["hastatus"]["state"]),
            backend["openConnections"].to_string(),
            text(&backend["status"]["lastDetail"])
        );
    }
    out
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
        println!("{answer:#}");
    }
    if code == 200 {
        if !json {
            println!("{}", text(&answer["message"]));
        }
        Ok(ExitCode::SUCCESS)
    } else {
        if !json {
            eprintln!("tandem: resume refused: {}", text(&answer["error"]));
        }
        Ok(ExitCode::from(EXIT_REFUSED))
    }
}

/// Percent-encodes a backend name for the query string (names are validated to letters,
/// digits and `-_.`, but a mistyped --to must still reach the controller intact to be refused
/// with its name).
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
