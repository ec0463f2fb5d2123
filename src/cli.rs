//! The command line: argument definitions and what each command does.

use crate::output::outln;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The command failed; the message on stderr says why and what to do.
pub const EXIT_FAILURE: u8 = 1;
/// The command line itself was wrong (clap uses 2 for this too).
pub const EXIT_USAGE: u8 = 2;

const EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success
    1  the command failed (the message says why and what to do)
    2  the command line or its options were invalid";

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "High-availability device-management (MDM) server",
    long_about = "Tandem is a device-management server built for high availability: a Primary and a \
Secondary node (and a third in a DR data center) with heartbeats, scheduled or continuous \
replication, configurable Fail Over Controls and epochs that fence a returning old Primary.\n\n\
Start with `tandem init` to create a node, then `tandem serve` to run it.",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    /// The node's data directory.
    #[arg(long, global = true, env = "TANDEM_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log format on stderr: human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new node: configuration, databases, keys, certificates and the first admin.
    #[command(
        long_about = "Create a new node in --data-dir (which must be missing or empty): the \
configuration file tandem.toml, the replicated database, the node-local store, the app file \
store, an ed25519 SSH host key, a server TLS certificate, a device CA, and the first admin user, \
who is also the first System Manager local user.\n\n\
Without --admin-password-file a password is generated and printed once.",
        after_help = EXIT_STATUS_HELP
    )]
    Init(InitArgs),

    /// Run the node: the service listener (devices, admin API, probes) and the System Manager.
    #[command(
        long_about = "Run the node in --data-dir until SIGTERM or Ctrl-C. On shutdown it stops \
accepting connections, lets open requests finish (at most 10 s), and commits every queued \
write before exiting.",
        after_help = EXIT_STATUS_HELP
    )]
    Serve,

    /// High availability: Trusted Hosts, Test Connection, Sync History, verify.
    #[command(subcommand)]
    Ha(crate::ha::HaCommand),

    /// Accounts: admin users and System Manager local users (list, add, remove, set-password).
    #[command(
        subcommand,
        long_about = "Manage the admin users (admin portal and REST API on the service listener) \
and, with --system-manager, the System Manager local users (port 8443). Accounts are replicated: \
change them on the Active node (a Standby refuses with exit 3); they reach the Standby with the \
next sync. Works on a running node (through its control socket) and on a stopped one. \
Passwords are read from a file or standard input, never from the command line."
    )]
    Users(crate::users::UsersCommand),

    /// Failover operations (guide: the `failover` CLI set).
    #[command(subcommand)]
    Failover(FailoverCommand),

    /// Back up this node's fleet (online while it serves): a verified copy to restore from.
    #[command(
        long_about = "Write a consistent copy of the node in --data-dir to --to, a new directory: replicated.db (the fleet, certificates, device CA, accounts; SQLite's online backup as of one commit, while the node goes on taking writes), files/ (the app files it refers to) and manifest.json (written last). The node-local store (identity, HA configuration, Trusted Hosts, logs) is not included: a restore makes a new node. The copy is written under --to.partial, fsynced, checked (SQLite's integrity check and the table digests `tandem ha verify` compares) and renamed; its content digest is printed. A running node writes it itself (through its control socket); a stopped one is copied by this command, holding the data-dir lock. An existing --to is kept unless --force.",
        after_help = EXIT_STATUS_HELP
    )]
    Backup(crate::backup::BackupArgs),

    /// Create a new node from a backup: the fleet's data, a new identity, HA disabled.
    #[command(
        long_about = "Create a new node in --data-dir (which must be missing or empty) from the backup --from: the backup is checked completely first (manifest, sizes, SHA-256, SQLite integrity, table digests). The new node gets a new node id and SSH host key, HA disabled and no Trusted Hosts; it keeps the backup's accounts, device CA and server certificate.",
        after_help = EXIT_STATUS_HELP
    )]
    Restore(crate::backup::RestoreArgs),

    /// Traffic controller: route device traffic to the Active node by the guide's rule.
    #[command(
        long_about = "tandem lb --config FILE runs the traffic controller: it passes device TCP \
connections through (TLS ends on the nodes) to one backend at a time. Traffic stays on that \
backend while its /status/status.html probe passes; when it fails `fall` probes in a row, traffic \
moves to the next backend (its data-center group first) whose /hastatus.html is up and which \
passes /status/status.html, i.e. has promoted itself to Active. It never moves back by itself: \
`tandem lb resume` does (Manual Resume = Yes). Needs no --data-dir.\n\n\
Ballots: nodes state their epoch in a tandem-ballot header on both probes. The controller never \
routes to a node whose claim (its epoch while Active with HA enabled) is below the newest claim \
it has seen, follows the newer Active when two pass, never fails over to a node with HA \
disabled, and raises a DUAL ACTIVE alarm (log, status, tandem_lb_dual_active) while two nodes of \
the HA group pass at once. `tandem lb hold` stops automatic switches for maintenance until \
`tandem lb release`.\n\n\
State file (state_file in lb.toml; default lb-state.json beside the configuration file): the \
active backend, the newest claims seen and the hold, written atomically whenever they change \
and read at start. A corrupt file stops the start with the file's name and the fix.\n\n\
The admin listener (plain HTTP, keep it on a management network) answers GET /status, \
POST /resume[?to=NAME], POST /hold[?reason=TEXT], POST /release, GET /metrics (Prometheus) and \
GET /witness/primary ({\"reachable\": bool, ...}, for the Secondary's --witness: false only once \
the controller itself has marked the active node down and stopped routing to it).",
        after_help = crate::lb::LB_EXIT_STATUS_HELP
    )]
    Lb(crate::lb::LbArgs),

    /// See Tandem fail over: three nodes, the traffic controller and devices on loopback.
    #[command(
        long_about = "tandem demo builds the seed's topology on loopback with this same binary, \
in a temporary directory (or --dir): main-primary and main-secondary in data center 1, dr in \
data center 2 following the Secondary, and `tandem lb` in front. It runs the commands an \
operator would (init, Trusted Hosts, HA Configuration with synchronous replication, the \
controller as witness and 250 ms Fail Over Controls on every node, first syncs), printing each, \
then starts simulated devices that enroll and check in through the controller, and plays a \
scenario:\n\n\
  failover    kill -9 of the Primary: detection, promotion, the traffic switch (default)\n\
  failback    a failover, then the old Primary back as Standby, ha switchover, lb resume\n\
  dc-loss     data center 1 lost; the operator promotes dr (failover mode primary)\n\
  switchover  a planned role swap (ha switchover)\n\
  upgrade     the guide's upgrade procedure with lb hold/release: no failover\n\n\
While it plays, a live view shows each node's Mode, state and epoch, where the controller sends \
devices, check-ins per second and errors (redrawn on a terminal, timestamped lines otherwise). \
The summary gives the outage as devices saw it (the longest time without an acknowledged \
check-in), the check-ins acknowledged (each a durable write storing its number) and the writes \
lost: every acknowledged check-in is looked for on the node that ends Active, and one missing \
fails the demo.\n\n\
Ctrl-C or SIGTERM stops every process the demo started, at any moment. Needs no --data-dir.",
        after_help = crate::demo::DEMO_EXIT_STATUS_HELP
    )]
    Demo(crate::demo::DemoArgs),
}

#[derive(Subcommand, Debug)]
enum FailoverCommand {
    /// Run Sync Now: bring this node up to date from a trusted source.
    #[command(
        long_about = "Sync this node's replicated database and app files from the trusted host HOST[:PORT] now (the guide's Run Sync Now). Only the changes since the last sync are copied when possible, everything otherwise; a sync killed at any instant leaves the previous data intact.\n\n\
If this node holds changes the source does not (a former Primary that kept writing), they are first saved to divergence/*.jsonl under the data dir and recorded in Sync History, then the node is synced in full. Works on any node, including one that is itself a source (cascading).",
        after_help = crate::ha::HA_EXIT_STATUS_HELP
    )]
    Sync(crate::ha::SyncArgs),

    /// Change this node's Mode: `primary` promotes it; `secondary` makes it a Standby.
    #[command(
        long_about = "failover mode primary: make this node the Active Primary, exactly as an \
automatic failover does — it takes a new epoch above every epoch it has seen (so a returning old \
Primary is fenced) and opens device endpoints and admin writes. Repeatable: on an Active node it \
changes nothing. Refused while another node of the HA group is Active (seen directly or through \
another node recently): two Active nodes would take writes one of them later loses to a \
divergence export. For a failback with nothing lost, make this node the Active node's Standby and \
run `tandem ha switchover` here; --force promotes anyway. With HA disabled it only sets the mode \
(no epoch is taken: the node is outside the HA group).\n\n\
failover mode secondary: make this node a Secondary in Standby that heartbeats and syncs from its \
configured Primary (set with `tandem ha configure --primary`). The sync schedule is not \
re-anchored. Refused on the only Active node of the HA group (the fleet would have none); \
--force does it anyway. Use it for upgrades, troubleshooting and a fenced node's return.",
        after_help = crate::ha::FAILOVER_EXIT_STATUS_HELP
    )]
    Mode(ModeArgs),

    /// Refuse (disable) or accept (enable) new device connections; open ones finish.
    #[command(
        long_about = "disable: the running node refuses new device connections with 503 and a \
message saying so, while connections already open finish their requests (for maintenance). \
enable: accept them again. Probes and the admin API are not affected.",
        after_help = crate::ha::FAILOVER_EXIT_STATUS_HELP
    )]
    ClientConnection(ClientConnectionArgs),
}

#[derive(Args, Debug)]
struct ModeArgs {
    #[arg(value_enum)]
    mode: crate::ha::ModeArg,
    /// Carry it out even when it would break "one Active node" (refused otherwise, with why
    /// and what to do instead): `primary` while another node is Active, `secondary` on the
    /// only Active node.
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Switch {
    Enable,
    Disable,
}

#[derive(Args, Debug)]
struct ClientConnectionArgs {
    #[arg(value_enum)]
    action: Switch,
}

/// The three listener addresses a new node is created with (`init`, `restore`).
#[derive(Args, Debug)]
pub struct ListenerArgs {
    /// Service listener: devices, admin portal and API, load-balancer probes (production: 443).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4443")]
    pub service_addr: String,

    /// System Manager listener (production: 8443).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub sysmgr_addr: String,

    /// Replication listener, SSH, for trusted hosts only (production: 22).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2222")]
    pub ssh_addr: String,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// The node's name, shown in portals, logs and peers' Trusted Hosts (letters, digits, - _ .).
    #[arg(long)]
    name: String,

    #[command(flatten)]
    listeners: ListenerArgs,

    /// Name of the first admin user and System Manager local user (letters, digits, - _ . @;
    /// no ':', which HTTP Basic authentication cannot carry).
    #[arg(long, value_name = "USER", default_value = "admin")]
    admin_user: String,

    /// File holding the first user's password (first line; at least 8 characters, not a common
    /// password nor the user name). Without it, one is generated.
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,

    /// Another name for the server certificate, such as the host name devices use. Repeatable.
    #[arg(long, value_name = "NAME")]
    tls_name: Vec<String>,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    crate::logging::init(cli.log_format);
    let data_dir = match (cli.data_dir, &cli.command) {
        (Some(dir), _) => dir,
        // The traffic controller runs beside the nodes, not in one, and the demo makes its
        // own: they need no data directory.
        (None, Command::Lb(_) | Command::Demo(_)) => PathBuf::new(),
        (None, _) => {
            eprintln!(
                "tandem: error: no data directory: pass --data-dir DIR or set TANDEM_DATA_DIR"
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    match cli.command {
        Command::Lb(args) => crate::lb::run(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Init(args) => init(data_dir, args),
        Command::Serve => serve(data_dir),
        Command::Ha(command) => crate::ha::run_ha(&data_dir, command),
        Command::Users(command) => crate::users::run(&data_dir, command),
        Command::Backup(args) => crate::backup::run_backup(&data_dir, args),
        Command::Restore(args) => crate::backup::run_restore(data_dir, args),
        Command::Failover(FailoverCommand::Sync(args)) => crate::ha::run_sync(&data_dir, args),
        Command::Failover(FailoverCommand::Mode(args)) => {
            crate::ha::run_failover_mode(&data_dir, args.mode, args.force, args.json)
        }
        Command::Failover(FailoverCommand::ClientConnection(args)) => {
            crate::ha::run_client_connection(&data_dir, matches!(args.action, Switch::Enable))
        }
    }
}

fn init(data_dir: PathBuf, args: InitArgs) -> Result<ExitCode> {
    let admin_password = match &args.admin_password_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("--admin-password-file: cannot read {}", path.display())
            })?;
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
    };
    let options = tandem_node::InitOptions {
        data_dir,
        name: args.name.clone(),
        service_addr: args.listeners.service_addr,
        system_manager_addr: args.listeners.sysmgr_addr,
        replication_addr: args.listeners.ssh_addr,
        admin_user: args.admin_user,
        admin_password,
        tls_names: args.tls_name,
    };
    let report = match tandem_node::init(&options) {
        Ok(report) => report,
        Err(tandem_node::NodeError::Usage(message)) => {
            eprintln!("tandem: error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(error) => return Err(error.into()),
    };
    let dir = report.data_dir.display();
    outln!(
        "Created node {:?} in {dir} (node id {})",
        args.name,
        report.node_id
    );
    outln!(
        "  service listener     https://{}",
        report.listeners.service
    );
    outln!(
        "  System Manager       https://{}",
        report.listeners.system_manager
    );
    outln!("  replication (SSH)    {}", report.listeners.replication);
    outln!(
        "  server certificate   SHA-256 {}",
        report.server_certificate_sha256
    );
    outln!("  SSH host key         {}", report.ssh_fingerprint);
    outln!("  SSH public key       {}", report.ssh_public_key);
    match &report.generated_password {
        Some(password) => {
            outln!(
                "Admin user {:?} (admin API, admin portal and System Manager), password: {password}",
                report.admin_user
            );
            outln!("  The password is shown only this once; store it now.");
        }
        None => outln!(
            "Admin user {:?} (admin API, admin portal and System Manager) uses the password from the file.",
            report.admin_user
        ),
    }
    outln!("Start the node with: tandem serve --data-dir {dir}");
    Ok(ExitCode::SUCCESS)
}

fn serve(data_dir: PathBuf) -> Result<ExitCode> {
    let node = match tandem_node::Node::open(&data_dir) {
        Ok(node) => node,
        Err(tandem_node::NodeError::Usage(message)) => {
            eprintln!("tandem: error: {message}");
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot open the node in {}", data_dir.display()));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server =
            tandem_server::Server::bind(node, tandem_server::ServeOptions::default()).await?;
        tracing::info!(
            service = %server.service_addr(),
            system_manager = %server.system_manager_addr(),
            "listening"
        );
        server.run(shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on Ctrl-C or SIGTERM, whichever comes first.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received Ctrl-C"),
        _ = terminate => tracing::info!("received SIGTERM"),
    }
}
