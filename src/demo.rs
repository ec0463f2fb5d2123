//! `tandem demo`: parses its arguments and hands off to the tandem-demo crate.

use anyhow::{Context, Result};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

pub const DEMO_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success: the scenario played and every acknowledged write is on the node that ended
       Active (with --keep: stopped by Ctrl-C or SIGTERM after that)
    1  the demo failed: a step failed, a process did not start, or an acknowledged write is
       missing (the message says which and why)
    2  invalid command line (e.g. --dir not empty)
  130  interrupted by Ctrl-C or SIGTERM before the end; every process it started was stopped";

/// How long devices check in before the scenario, and after it, by default.
const PHASE_DEFAULT_S: u64 = 5;
/// Simulated devices by default: a modest load (40 check-ins/s).
const DEVICES_DEFAULT: usize = 20;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ScenarioArg {
    Failover,
    Failback,
    DcLoss,
    Switchover,
    Upgrade,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// What to play once the cluster is healthy and devices check in.
    #[arg(long, value_enum, default_value = "failover")]
    scenario: ScenarioArg,

    /// Build the cluster here (a new or empty directory, kept afterwards) instead of in a
    /// temporary directory (removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Leave the cluster running after the scenario, print the portal URLs and the password,
    /// and wait for Ctrl-C.
    #[arg(long)]
    keep: bool,

    /// Simulated devices (1 to 1000), each checking in every 500 ms.
    #[arg(long, value_name = "N", default_value_t = DEVICES_DEFAULT)]
    devices: usize,

    /// Seconds devices check in before the scenario, and again after it (1 to 600).
    #[arg(long, value_name = "S", default_value_t = PHASE_DEFAULT_S)]
    phase_s: u64,

    /// Print the summary as one JSON object on stdout; the steps and the live view (plain
    /// lines) go to stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the tandem binary itself")?;
    let scenario = match args.scenario {
        ScenarioArg::Failover => tandem_demo::Scenario::Failover,
        ScenarioArg::Failback => tandem_demo::Scenario::Failback,
        ScenarioArg::DcLoss => tandem_demo::Scenario::DcLoss,
        ScenarioArg::Switchover => tandem_demo::Scenario::Switchover,
        ScenarioArg::Upgrade => tandem_demo::Scenario::Upgrade,
    };
    let options = tandem_demo::Options {
        exe,
        scenario,
        dir: args.dir,
        keep: args.keep,
        devices: args.devices,
        phase: std::time::Duration::from_secs(args.phase_s),
        json: args.json,
        terminal: !args.json && std::io::stdout().is_terminal(),
    };
    match tandem_demo::run(options) {
        Ok(summary) if summary.lost == 0 => Ok(ExitCode::SUCCESS),
        Ok(summary) => {
            eprintln!(
                "tandem demo: error: {} acknowledged write(s) missing on {}, the node that ended Active",
                summary.lost, summary.active
            );
            Ok(ExitCode::from(crate::cli::EXIT_FAILURE))
        }
        Err(tandem_demo::DemoError::Usage(message)) => {
            eprintln!("tandem demo: error: {message}");
            Ok(ExitCode::from(crate::cli::EXIT_USAGE))
        }
        Err(error) => {
            eprintln!("tandem demo: error: {error}");
            Ok(ExitCode::from(crate::cli::EXIT_FAILURE))
        }
    }
}
