//! `tandem ha …` and `tandem failover …`: HA and replication commands. Each runs through the
//! node's control socket when the node is running (so its one writer stays the only writer),
//! and in this process when it is not (where that makes sense: a stopped node has no state to
//! switch).

use crate::output::outln;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use tandem_repl::ops::{Event, FailureKind, Operation};

/// The peer or the rules refused: divergence, different versions, tables that differ.
pub const EXIT_REFUSED: u8 = 3;

pub const HA_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success (verify: the nodes are identical)
    1  the command failed (unreachable peer, I/O error; the message says why)
    2  invalid command line or input (bad HOST:PORT or key, host not trusted)
    3  refused: diverged history, different software or schema versions, or (verify) tables differ";

pub const FAILOVER_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success
    1  the command failed (no node runs in --data-dir; the message says why)
    2  invalid command line
    3  refused by the HA controller (e.g. `mode secondary` without a configured Primary)";

// Parsed once per process from the command line; boxing `Configure` would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum HaCommand {
    /// Print this node's public SSH key, to add to its peers' Trusted Hosts.
    #[command(after_help = HA_EXIT_STATUS_HELP)]
    LocalKey,

    /// Manage Trusted Hosts: the peers that may open this node's replication channel.
    #[command(subcommand)]
    TrustedHosts(TrustedHostsCommand),

    /// Test Connection: authenticate both ways with a trusted host and compare versions.
    #[command(
        long_about = "Connect to a trusted host's replication listener, check that it presents \
the host key trusted for it, authenticate with this node's key, and exchange software and \
schema versions. Prints `Test was successful`, or the precise reason: unreachable, key refused \
by the peer, host-key mismatch (both fingerprints shown), or version mismatch.",
        after_help = HA_EXIT_STATUS_HELP
    )]
    TestConnection(EndpointArgs),

    /// Sync History: the syncs this node ran, newest first.
    #[command(after_help = HA_EXIT_STATUS_HELP)]
    History(HistoryArgs),

    /// Compare every replicated table's row count and content digest with a peer's.
    #[command(
        long_about = "Compare per-table row counts and content digests of the replicated \
database with a trusted peer. Prints `identical` and exits 0, or names the tables that differ \
and exits 3.",
        after_help = HA_EXIT_STATUS_HELP
    )]
    Verify(EndpointArgs),

    /// HA status: mode, state, epoch, heartbeats, schedule, last sync.
    #[command(
        long_about = "Show this node's HA status: High Availability on or off, Mode (Primary or \
Secondary), state (Active, Standby or Not Available) and epoch; for a Secondary its Primary, the \
last heartbeat and consecutive failures, the clock offset to the Primary (a warning past 2 s), and \
the next scheduled sync; the last sync; and why the node is fenced, if it is. Works whether the \
node runs or not (a stopped node shows its stored configuration).",
        after_help = HA_EXIT_STATUS_HELP
    )]
    Status(JsonArgs),

    /// HA Configuration: enable HA, set Mode, Primary, schedule and Fail Over Controls.
    #[command(
        long_about = "Change this node's HA configuration (the guide's HA Configuration window; \
Save and Apply). Only the options given change. Saving re-anchors the sync schedule: the next \
scheduled sync runs at the next StartTime (GMT) at or after now, then every Run Every — so \
StartTime 13:00 saved at 14:00 first syncs at 13:00 tomorrow. Changes apply at once on a running \
node (no restart); on a stopped node they apply when it starts.\n\n\
Durations are written 250ms, 10s, 5m, 2h or 1d.",
        after_help = HA_EXIT_STATUS_HELP
    )]
    Configure(ConfigureArgs),

    /// Planned, zero-loss role swap: this Standby becomes the Active Primary, its Primary its Standby.
    #[command(
        long_about = "Run on the Standby Secondary. In order: the Primary refuses new device \
connections and closes writes (every write it acknowledged is before that point); this node syncs \
to the Primary's final position and checks it holds exactly that history; it takes a new epoch \
and becomes the Active Primary; the old Primary becomes its Standby Secondary. If anything fails \
before the promotion, the Primary gets its writes back and serves on. Use it for planned \
maintenance and the guide's upgrade procedure. Devices see 503 for the duration of the final \
sync (usually well under a second).",
        after_help = HA_EXIT_STATUS_HELP
    )]
    Switchover(JsonArgs),

    /// Notification Settings, Test: send a test e-mail to the notification addresses now.
    #[command(
        long_about = "Send a test e-mail to every notification address (`--notify-email`) \
through the configured SMTP relay (`--smtp-relay`, `--smtp-security`, `--smtp-from`), at once \
and once, and report the relay's answer: `Test e-mail sent to …`, or the precise reason it was \
not (no address, no relay, relay unreachable, TLS refused, recipient rejected). Works whether \
the node runs or not.",
        after_help = HA_EXIT_STATUS_HELP
    )]
    TestNotification(JsonArgs),

    /// Troubleshooting → Logs: print a module's log (HighAvailability, Notifications, Security).
    #[command(
        long_about = "Print the newest lines of one of this node's module logs, oldest first as \
`tail` does: the UTC time, the level, the module and the message, one line each (control \
characters in a message are escaped, so one line is one log line).\n\n\
Modules: HighAvailability (every heartbeat a Secondary sends its Primary, peer checks, syncs, \
failovers, fencing), Notifications (each notification and what became of its e-mail) and \
Security (console logins and failed logins with the user and source address, logouts, HA \
Configuration changes and account changes). Levels, least serious first: debug, info, notice, \
warn, error; --level shows that level and the more serious ones.\n\n\
With --follow, keeps printing new lines as the node writes them (it looks every second) until \
Ctrl-C, or until the reader of the output goes away (`| head`); either ends it with status 0. \
With --json, each line is one JSON object (id, at, module, level, message) on a line of its own \
(JSON Lines), as GET /api/v1/logs returns them.\n\n\
Works whether the node runs or not: it reads node.db in the data directory read-only, and never \
holds up the running node.\n\n\
EXAMPLES:\n    tandem ha logs --follow\n    tandem ha logs --module Security --level warn --limit 50\n    \
tandem ha logs --contains heartbeat --json | jq .message",
        after_help = LOGS_EXIT_STATUS_HELP
    )]
    Logs(LogsArgs),
}

pub const LOGS_EXIT_STATUS_HELP: &str = "\
EXIT STATUS:
    0  success (also when --follow ends by Ctrl-C or a closed pipe)
    1  the log cannot be read (no node in --data-dir; the message says why)
    2  invalid option (an unknown module or level, a --limit out of range; the message names it \
and the accepted values)";

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The module to print: HighAvailability, Notifications or Security (any other module
    /// the log holds is accepted too).
    #[arg(long, value_name = "MODULE", default_value = tandem_repl::LOG_MODULE)]
    module: String,
    /// The least serious level printed: debug, info, notice, warn or error.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    level: String,
    /// Only lines whose message contains TEXT (any case).
    #[arg(long, value_name = "TEXT")]
    contains: Option<String>,
    /// How many of the newest lines to print first (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: i64,
    /// Keep printing new lines as they are written, until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print each line as a JSON object on a line of its own (JSON Lines).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ModeArg {
    Primary,
    Secondary,
}

impl From<ModeArg> for tandem_ha::Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Primary => tandem_ha::Mode::Primary,
            ModeArg::Secondary => tandem_ha::Mode::Secondary,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NodeStatusArg {
    Standby,
    Active,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ReplicationArg {
    Scheduled,
    Continuous,
    Synchronous,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StandbyLostArg {
    Block,
    Continuous,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OnBehindArg {
    /// Hold the automatic promotion and notify; an operator decides.
    Standby,
    /// Promote anyway; the writes this node lacks stay on the old Primary.
    Promote,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OnFailureArg {
    /// Promote to Primary.
    Promote,
    /// Keep in Standby.
    Standby,
}

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    /// High Availability: Enable.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// High Availability: Disable (the node serves as a standalone Active server).
    #[arg(long)]
    disable: bool,
    /// Mode: the role this node has in the pair.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Node Status (Secondary mode only): standby, or active to promote it.
    #[arg(long, value_enum)]
    node_status: Option<NodeStatusArg>,
    /// The Primary's replication address (a Trusted Host), for a Secondary. "" clears it.
    #[arg(long, value_name = "HOST[:PORT]")]
    primary: Option<String>,
    /// Replication: scheduled (the guide's StartTime / Run Every), continuous (a stream kept
    /// open; each write reaches the Standby as it commits, and the schedule is not used), or
    /// synchronous (as continuous, and the Primary acknowledges a write only once the Standby
    /// holds it). Set the same on both nodes.
    #[arg(long, value_enum)]
    replication: Option<ReplicationArg>,
    /// Synchronous replication, when the Standby stops confirming writes: continuous (the
    /// default: after --synchronous-timeout, acknowledge without it and raise an alarm) or block
    /// (writes wait for it; nothing acknowledged can be lost, and a node left alone after a
    /// failover takes no writes until a Standby follows it).
    #[arg(long, value_enum, value_name = "POLICY")]
    if_standby_lost: Option<StandbyLostArg>,
    /// Synchronous replication with --if-standby-lost continuous: how long a write waits for the
    /// Standby before the Primary falls back [default: 5s].
    #[arg(long, value_name = "DURATION")]
    synchronous_timeout: Option<tandem_ha::config::Span>,
    /// Continuous or synchronous replication: a Standby whose lag exceeds this (or whose stream
    /// is down) reports itself behind in `ha status`, `/status/replication.html` and the
    /// metrics [default: 5s].
    #[arg(long, value_name = "DURATION")]
    lag_bound: Option<tandem_ha::config::Span>,
    /// If Behind at Failure (continuous or synchronous replication): when the Primary fails
    /// while this Standby may lack writes it acknowledged, standby (the default) holds the
    /// automatic promotion and notifies, so no failover silently discards them (promote by hand
    /// with `tandem failover mode primary`); promote takes over anyway. "May lack": continuous,
    /// already behind by more than --lag-bound when the Primary last answered; synchronous with
    /// --if-standby-lost continuous, out of step for --synchronous-timeout or longer.
    #[arg(long, value_enum, value_name = "POLICY")]
    if_behind: Option<OnBehindArg>,
    /// StartTime (GMT), HH:MM: when the first scheduled sync runs.
    #[arg(long, value_name = "HH:MM")]
    start_time: Option<tandem_ha::config::StartTime>,
    /// Run Every: the time between scheduled syncs (minutes, hours or days; advised: 60m or more).
    #[arg(long, value_name = "DURATION")]
    run_every: Option<tandem_ha::config::Span>,
    /// Heartbeat Interval: how often the Secondary checks its Primary.
    #[arg(long, value_name = "DURATION")]
    heartbeat_interval: Option<tandem_ha::config::Span>,
    /// Consecutive heartbeat failures before failover.
    #[arg(long, value_name = "N")]
    heartbeat_failures: Option<u32>,
    /// Re-check interval: the wait before the next attempt after a failed heartbeat.
    #[arg(long, value_name = "DURATION")]
    recheck_interval: Option<tandem_ha::config::Span>,
    /// If Failure Detected: promote (Promote to Primary) or standby (Keep in Standby).
    #[arg(long, value_enum)]
    on_failure: Option<OnFailureArg>,
    /// A witness URL consulted before promoting (repeatable; replaces the list).
    #[arg(long, value_name = "URL")]
    witness: Vec<String>,
    /// Remove every witness.
    #[arg(long, conflicts_with = "witness")]
    no_witnesses: bool,
    /// https:// witnesses: a PEM file of the CA certificates that signed their certificates
    /// (absolute path; the name is checked against the URL's host). "" clears it. One of
    /// --witness-ca-file, --witness-pin and --witness-insecure, as `tandem lb`'s [probe_tls].
    #[arg(long, value_name = "FILE")]
    witness_ca_file: Option<String>,
    /// https:// witnesses: the SHA-256 fingerprint of a witness's certificate (repeatable;
    /// replaces the list; colons allowed). "" clears the list.
    #[arg(long, value_name = "SHA256")]
    witness_pin: Vec<String>,
    /// https:// witnesses: accept any certificate (labs only: the answer could come from
    /// anyone on the path). `--witness-insecure false` turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    witness_insecure: Option<bool>,
    /// Notification e-mail address (repeatable; replaces the list).
    #[arg(long, value_name = "ADDR")]
    notify_email: Vec<String>,
    /// Notify On: Sync Completion.
    #[arg(long, value_name = "BOOL")]
    notify_on_sync_completion: Option<bool>,
    /// Notify On: Failure / this server becomes primary.
    #[arg(long, value_name = "BOOL")]
    notify_on_failure: Option<bool>,
    /// The SMTP relay notification e-mail goes through, HOST[:PORT] (port 25 if omitted; 465
    /// with --smtp-security tls).
    /// "" clears it: notifications are then only recorded in the Notifications log.
    #[arg(long, value_name = "HOST[:PORT]")]
    smtp_relay: Option<String>,
    /// How the connection to the relay is protected: starttls (the default; the relay must
    /// offer it), tls (SMTPS, usually port 465) or none (a relay on a trusted network only).
    #[arg(long, value_enum, value_name = "SECURITY")]
    smtp_security: Option<SmtpSecurityArg>,
    /// The notification e-mail's sender [default: tandem@localhost]. "" restores the default.
    #[arg(long, value_name = "ADDR")]
    smtp_from: Option<String>,
    /// A PEM file of CA certificates for a relay with a private CA (absolute path). ""
    /// returns to the public roots.
    #[arg(long, value_name = "FILE")]
    smtp_ca_file: Option<String>,
    /// Carry out a role change even when the running node refuses it because it would break
    /// "one Active node": entering Active while another node is Active (promote a DR node while
    /// the main data center still serves), or leaving Active while no other node is. Without
    /// it the refusal says why and what to do instead.
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SmtpSecurityArg {
    Starttls,
    Tls,
    None,
}

impl ConfigureArgs {
    fn change(self) -> (tandem_ha::config::ConfigChange, bool) {
        use tandem_ha::config::{ConfigChange, NodeStatusSetting, OnFailure};
        let change = ConfigChange {
            enabled: match (self.enable, self.disable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            mode: self.mode.map(Into::into),
            node_status: self.node_status.map(|status| match status {
                NodeStatusArg::Standby => NodeStatusSetting::Standby,
                NodeStatusArg::Active => NodeStatusSetting::Active,
            }),
            primary: self.primary,
            replication: self.replication.map(|mode| match mode {
                ReplicationArg::Scheduled => tandem_ha::config::ReplicationMode::Scheduled,
                ReplicationArg::Continuous => tandem_ha::config::ReplicationMode::Continuous,
                ReplicationArg::Synchronous => tandem_ha::config::ReplicationMode::Synchronous,
            }),
            on_standby_lost: self.if_standby_lost.map(|policy| match policy {
                StandbyLostArg::Block => tandem_ha::config::OnStandbyLost::Block,
                StandbyLostArg::Continuous => tandem_ha::config::OnStandbyLost::Continuous,
            }),
            synchronous_timeout: self.synchronous_timeout,
            lag_bound: self.lag_bound,
            on_behind: self.if_behind.map(|policy| match policy {
                OnBehindArg::Standby => tandem_ha::config::OnBehind::Standby,
                OnBehindArg::Promote => tandem_ha::config::OnBehind::Promote,
            }),
            start_time: self.start_time,
            run_every: self.run_every,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_failures: self.heartbeat_failures,
            recheck_interval: self.recheck_interval,
            on_failure: self.on_failure.map(|choice| match choice {
                OnFailureArg::Promote => OnFailure::Promote,
                OnFailureArg::Standby => OnFailure::Standby,
            }),
            witnesses: if self.no_witnesses {
                Some(Vec::new())
            } else {
                (!self.witness.is_empty()).then_some(self.witness)
            },
            witness_ca_file: self.witness_ca_file,
            witness_pinned_sha256: (!self.witness_pin.is_empty()).then(|| {
                self.witness_pin
                    .into_iter()
                    .filter(|pin| !pin.trim().is_empty())
                    .collect()
            }),
            witness_insecure: self.witness_insecure,
            notify_email: (!self.notify_email.is_empty()).then_some(self.notify_email),
            notify_on_sync_completion: self.notify_on_sync_completion,
            notify_on_failure: self.notify_on_failure,
            smtp_relay: self.smtp_relay,
            smtp_security: self.smtp_security.map(|security| match security {
                SmtpSecurityArg::Starttls => tandem_ha::config::SmtpSecurity::Starttls,
                SmtpSecurityArg::Tls => tandem_ha::config::SmtpSecurity::Tls,
                SmtpSecurityArg::None => tandem_ha::config::SmtpSecurity::None,
            }),
            smtp_from: self.smtp_from,
            smtp_ca_file: self.smtp_ca_file,
            force: self.force,
        };
        (change, self.json)
    }
}

#[derive(Subcommand, Debug)]
pub enum TrustedHostsCommand {
    /// List the trusted hosts and their key fingerprints.
    List(JsonArgs),
    /// Trust a peer: the replication address it is reached at, and the key it presents.
    #[command(
        long_about = "Add (or replace) a trusted host: HOST[:PORT] is the peer's replication \
listener (port 22 if omitted) and KEY its public key, as `tandem ha local-key` prints it on the \
peer. Both directions of a pair must trust each other."
    )]
    Add(AddArgs),
    /// Stop trusting a peer.
    Remove(EndpointOnly),
}

#[derive(Args, Debug)]
pub struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EndpointOnly {
    /// The peer's replication address, HOST[:PORT].
    #[arg(value_name = "HOST[:PORT]")]
    endpoint: String,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The peer's replication address, HOST[:PORT] (port 22 if omitted).
    #[arg(value_name = "HOST[:PORT]")]
    endpoint: String,
    /// The peer's public key, e.g. 'ssh-ed25519 AAAA… node-b'.
    #[arg(long, value_name = "KEY")]
    key: String,
}

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// The peer's replication address, HOST[:PORT].
    #[arg(value_name = "HOST[:PORT]")]
    endpoint: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How many syncs to show (at most 1000).
    #[arg(long, default_value_t = 20)]
    limit: i64,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The source's replication address, HOST[:PORT].
    #[arg(value_name = "HOST[:PORT]")]
    endpoint: String,
    /// Copy everything even if only the changes are needed.
    #[arg(long)]
    full: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_ha(data_dir: &Path, command: HaCommand) -> Result<ExitCode> {
    let (operation, json) = match command {
        HaCommand::LocalKey => return local_key(data_dir),
        HaCommand::Logs(args) => return logs(data_dir, args),
        HaCommand::TrustedHosts(TrustedHostsCommand::List(args)) => {
            (Operation::TrustedHostsList, args.json)
        }
        HaCommand::TrustedHosts(TrustedHostsCommand::Add(args)) => (
            Operation::TrustedHostsAdd {
                endpoint: args.endpoint,
                key: args.key,
            },
            false,
        ),
        HaCommand::TrustedHosts(TrustedHostsCommand::Remove(args)) => (
            Operation::TrustedHostsRemove {
                endpoint: args.endpoint,
            },
            false,
        ),
        HaCommand::TestConnection(args) => (
            Operation::TestConnection {
                endpoint: args.endpoint,
            },
            args.json,
        ),
        HaCommand::History(args) => (
            Operation::History {
                limit: args.limit,
                offset: 0,
            },
            args.json,
        ),
        HaCommand::Verify(args) => (
            Operation::Verify {
                endpoint: args.endpoint,
            },
            args.json,
        ),
        HaCommand::Status(args) => (Operation::HaStatus, args.json),
        HaCommand::Switchover(args) => (Operation::Switchover, args.json),
        HaCommand::TestNotification(args) => (Operation::TestNotification, args.json),
        HaCommand::Configure(args) => {
            let (change, json) = args.change();
            (Operation::HaConfigure { change }, json)
        }
    };
    perform(data_dir, operation, json)
}

/// `tandem failover mode primary|secondary [--force]`.
pub fn run_failover_mode(
    data_dir: &Path,
    mode: ModeArg,
    force: bool,
    json: bool,
) -> Result<ExitCode> {
    perform(
        data_dir,
        Operation::FailoverMode {
            mode: mode.into(),
            force,
        },
        json,
    )
}

/// `tandem failover client-connection enable|disable`.
pub fn run_client_connection(data_dir: &Path, enabled: bool) -> Result<ExitCode> {
    perform(data_dir, Operation::ClientConnection { enabled }, false)
}

pub fn run_sync(data_dir: &Path, args: SyncArgs) -> Result<ExitCode> {
    let operation = Operation::Sync {
        endpoint: args.endpoint,
        force_full: args.full,
    };
    perform(data_dir, operation, args.json)
}

fn local_key(data_dir: &Path) -> Result<ExitCode> {
    let config_path = data_dir.join(tandem_node::CONFIG_FILE);
    let config = tandem_node::NodeConfig::load(&config_path)
        .with_context(|| format!("cannot read the node in {}", data_dir.display()))?;
    let key_path = data_dir.join(tandem_node::SSH_HOST_KEY_FILE);
    let text = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read {}", key_path.display()))?;
    let key = tandem_crypto::SshHostKey::from_openssh(&text)?;
    outln!("{}", key.public_openssh(&config.node.name)?);
    Ok(ExitCode::SUCCESS)
}

/// How often `tandem ha logs --follow` looks for new lines: about as often as the fastest
/// heartbeat a test configures, and a read of an index's tail each time costs nothing.
const LOG_FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// `tandem ha logs`: reads `node.db` read-only, whether the node runs or not.
fn logs(data_dir: &Path, args: LogsArgs) -> Result<ExitCode> {
    use tandem_store::node_local::{self, LogRequest};
    if !data_dir.join(tandem_node::CONFIG_FILE).exists() {
        anyhow::bail!(
            "no node in {}: it has no {}; give the node's directory with --data-dir (or \
             TANDEM_DATA_DIR)",
            data_dir.display(),
            tandem_node::CONFIG_FILE
        );
    }
    let path = data_dir.join(tandem_node::NODE_DB_FILE);
    let conn = node_local::open_read_only(&path)
        .with_context(|| format!("cannot read the log of the node in {}", data_dir.display()))?;
    let modules = tandem_server::security_log::modules_with(node_local::log_modules(&conn)?);
    let request = LogRequest {
        module: Some(args.module),
        level: Some(args.level),
        q: args.contains,
        limit: Some(args.limit.to_string()),
        ..LogRequest::default()
    };
    let mut query = match request.validated(&modules, tandem_repl::LOG_MODULE) {
        Ok(query) => query,
        Err(tandem_store::StoreError::Invalid(invalid)) => {
            for problem in invalid.fields {
                let option = if problem.field == "q" {
                    "contains"
                } else {
                    &problem.field
                };
                eprintln!(
                    "tandem: error: --{option} {:?}: {}",
                    problem.value, problem.problem
                );
            }
            return Ok(ExitCode::from(crate::cli::EXIT_USAGE));
        }
        Err(error) => return Err(error.into()),
    };
    let page = node_local::log_page(&conn, &query)?;
    print_log_lines(page.lines.iter().rev(), args.json);
    if page.lines.is_empty() && !args.json {
        // On stderr: a script reading stdout sees no line, an operator sees why.
        eprintln!(
            "tandem: no {} lines at {} or above yet{}",
            query.module,
            query.level,
            if args.follow {
                "; waiting for new ones"
            } else {
                ""
            }
        );
    }
    if !args.follow || crate::output::closed() {
        return Ok(ExitCode::SUCCESS);
    }
    // From the newest line there was: nothing printed twice, nothing written since missed.
    let cursor = page
        .newest_id
        .max(page.lines.first().map_or(0, |line| line.id));
    query.limit = node_local::LOG_PAGE_LINES_MAX;
    follow_log(
        |query| node_local::log_page(&conn, query),
        query,
        cursor,
        args.json,
    )
}

/// Prints the lines written after line `cursor` as they come (`read` reads a page), until
/// Ctrl-C or the reader of the output goes away.
fn follow_log(
    read: impl Fn(
        &tandem_store::node_local::LogQuery,
    ) -> tandem_store::StoreResult<tandem_store::node_local::LogPage>,
    mut query: tandem_store::node_local::LogQuery,
    mut cursor: i64,
    json: bool,
) -> Result<ExitCode> {
    use tandem_store::node_local::LogCursor;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // One listener for the whole run, so a Ctrl-C between two looks is not missed.
        let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
        loop {
            tokio::select! {
                _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
                () = tokio::time::sleep(LOG_FOLLOW_INTERVAL) => {}
            }
            loop {
                query.cursor = LogCursor::After(cursor);
                let page = read(&query)?;
                print_log_lines(page.lines.iter().rev(), json);
                match page.after {
                    // More than a page arrived: read on at once from the newest printed.
                    Some(newest_printed) => cursor = newest_printed,
                    // Every line up to the log's newest was read (same snapshot): none of
                    // those skipped matches.
                    None => {
                        cursor = cursor.max(page.newest_id);
                        break;
                    }
                }
            }
            if crate::output::closed() {
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}

fn print_log_lines<'a>(
    lines: impl Iterator<Item = &'a tandem_store::node_local::LogLine>,
    json: bool,
) {
    for line in lines {
        if json {
            outln!("{}", serde_json::to_string(line).unwrap_or_default());
        } else {
            let message: String = line
                .message
                .chars()
                .flat_map(|ch| {
                    let escaped: Vec<char> = if ch.is_control() {
                        ch.escape_default().collect()
                    } else {
                        vec![ch]
                    };
                    escaped
                })
                .collect();
            outln!(
                "{} {:<6} {} {}",
                line.at.get(..19).unwrap_or(&line.at).replacen('T', " ", 1),
                line.level,
                line.module,
                message
            );
        }
    }
}

/// Runs `operation` on the running node, or here if none runs, and prints its outcome.
pub(crate) fn perform(data_dir: &Path, operation: Operation, json: bool) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Shared with the operation's event callback, which may run on another thread.
    let display = std::sync::Arc::new(std::sync::Mutex::new(Display::new(&operation, json)));
    let outcome = runtime.block_on(async {
        let mut last = None;
        let answered = tandem_repl::ops::call_running(data_dir, &operation, |event| {
            lock(&display).progress(&event);
            last = Some(event);
        })
        .await
        .with_context(|| format!("cannot talk to the node running in {}", data_dir.display()))?;
        if answered.is_none() {
            let node = match open_node_or_wait_for_serving(data_dir).await? {
                Opened::Here(node) => node,
                Opened::Serving => {
                    tandem_repl::ops::call_running(data_dir, &operation, |event| {
                        lock(&display).progress(&event);
                        last = Some(event);
                    })
                    .await
                    .with_context(|| {
                        format!("cannot talk to the node running in {}", data_dir.display())
                    })?;
                    return anyhow::Ok(last);
                }
            };
            let replication = tandem_repl::Replication::new(&node);
            let outcome = std::sync::Arc::new(std::sync::Mutex::new(None));
            let (shown, kept) = (display.clone(), outcome.clone());
            tandem_server::control::execute_offline(
                &replication,
                &node.config.node.id,
                operation.clone(),
                std::sync::Arc::new(move |event| {
                    lock(&shown).progress(&event);
                    if !matches!(event, Event::Progress { .. }) {
                        *lock(&kept) = Some(event);
                    }
                }),
            )
            .await;
            node.replicated.close().await;
            node.local.database().close().await;
            last = lock(&outcome).take();
        }
        anyhow::Ok(last)
    })?;
    lock(&display).finish();
    match outcome {
        Some(Event::Done { result }) => {
            print_result(&operation, &result, json);
            Ok(ExitCode::SUCCESS)
        }
        Some(Event::Failed { kind, message }) => {
            eprintln!("tandem: error: {message}");
            Ok(ExitCode::from(match kind {
                FailureKind::Usage => crate::cli::EXIT_USAGE,
                FailureKind::Refused => EXIT_REFUSED,
                FailureKind::Failed => crate::cli::EXIT_FAILURE,
            }))
        }
        _ => anyhow::bail!("the operation ended without a result"),
    }
}

/// A poisoned lock only means a display callback panicked; the display state is still usable.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a command waits for a node that holds its data directory (it is starting, or
/// another command runs) to answer on its control socket: a node binds it within a second of
/// taking the lock.
const SERVING_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// Pause between two looks at the control socket while waiting.
const SERVING_WAIT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

enum Opened {
    /// No process had the node open: the operation runs in this process.
    Here(Box<tandem_node::Node>),
    /// A serving node answers on its control socket now.
    Serving,
}

/// Opens the node for an operation run here, or, when another process holds the data
/// directory (a `tandem serve` starting up binds its control socket a moment after taking the
/// lock), waits for that node's control socket.
async fn open_node_or_wait_for_serving(data_dir: &Path) -> Result<Opened> {
    let started = std::time::Instant::now();
    let socket = data_dir.join(tandem_repl::ops::CONTROL_SOCKET);
    loop {
        match tandem_node::Node::open(data_dir) {
            Ok(node) => return Ok(Opened::Here(Box::new(node))),
            Err(tandem_node::NodeError::Locked(message)) => {
                if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                    return Ok(Opened::Serving);
                }
                if started.elapsed() >= SERVING_WAIT_MAX {
                    anyhow::bail!(message);
                }
                tokio::time::sleep(SERVING_WAIT_PAUSE).await;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("cannot open the node in {}", data_dir.display())));
            }
        }
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct Display {
    enabled: bool,
    drawn: bool,
}

impl Display {
    fn new(operation: &Operation, json: bool) -> Self {
        Self {
            enabled: matches!(operation, Operation::Sync { .. } | Operation::Backup { .. })
                && !json
                && std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn progress(&mut self, event: &Event) {
        let Event::Progress { progress } = event else {
            return;
        };
        if !self.enabled {
            return;
        }
        let number = |key: &str| {
            progress
                .get(key)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        let (label, done, total, unit) = match progress.get("phase").and_then(|v| v.as_str()) {
            Some("connected") => {
                let source = progress
                    .get("sourceNode")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?");
                eprint!("\rconnected to {source}{:40}", "");
                self.drawn = true;
                return;
            }
            Some("snapshot") => ("full sync", number("bytes"), number("totalBytes"), "MB"),
            Some("changes") => ("changes", number("entries"), number("totalEntries"), ""),
            Some("files") => ("app files", number("files"), number("totalFiles"), ""),
            Some("database") => ("database", number("pages"), number("totalPages"), "pages"),
            Some("installing") => {
                eprint!("\rinstalling the snapshot{:40}", "");
                self.drawn = true;
                return;
            }
            _ => return,
        };
        const WIDTH: usize = 30;
        let fraction = if total > 0.0 {
            (done / total).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let filled = (fraction * WIDTH as f64) as usize;
        let scale = if unit == "MB" { 1_000_000.0 } else { 1.0 };
        eprint!(
            "\r{label:>10} [{}{}] {:>3.0}% {:.0}/{:.0}{}{}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            fraction * 100.0,
            done / scale,
            total / scale,
            if unit.is_empty() { "" } else { " " },
            unit
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

fn text(value: &serde_json::Value, key: &str) -> String {
    match value.get(key) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_result(operation: &Operation, result: &serde_json::Value, json: bool) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
        return;
    }
    match operation {
        Operation::TrustedHostsList => {
            let hosts = result.as_array().cloned().unwrap_or_default();
            if hosts.is_empty() {
                outln!(
                    "No trusted hosts. Add one with `tandem ha trusted-hosts add HOST[:PORT] --key KEY`."
                );
            }
            for host in hosts {
                outln!(
                    "{}:{}  {}  (added {})",
                    text(&host, "host"),
                    text(&host, "port"),
                    text(&host, "fingerprint"),
                    text(&host, "addedAt")
                );
            }
        }
        Operation::TrustedHostsAdd { .. } => outln!(
            "Trusted {}:{} with key {}",
            text(result, "host"),
            text(result, "port"),
            text(result, "fingerprint")
        ),
        Operation::TrustedHostsRemove { .. } => {
            outln!("Removed {} from Trusted Hosts", text(result, "removed"));
        }
        Operation::TestConnection { .. } => {
            let peer = &result["peer"];
            outln!("Test was successful");
            outln!(
                "  peer {} (Tandem {}, schema {}), epoch {}, position {}",
                text(peer, "nodeName"),
                text(peer, "softwareVersion"),
                text(peer, "schemaVersion"),
                text(peer, "epoch"),
                text(peer, "positionSeq")
            );
            outln!("  clock offset {} ms", text(result, "clockOffsetMs"));
        }
        Operation::Sync { .. } if result["kind"] == "none" => {
            let files = result["files"].as_i64().unwrap_or(0);
            outln!(
                "{} ({}) has no new changes{}: this node is up to date at position {}",
                text(result, "source"),
                text(result, "sourceNode"),
                if files > 0 {
                    // Left by an earlier sync that could not store them (e.g. a full disk).
                    format!("; fetched {files} missing app file(s)")
                } else {
                    String::new()
                },
                text(result, "positionSeq")
            );
        }
        Operation::Sync { .. } => {
            outln!(
                "Sync from {} ({}) succeeded: {} sync, {} change(s), {} file(s), {} bytes in {:.1} s; position {}",
                text(result, "source"),
                text(result, "sourceNode"),
                text(result, "kind"),
                text(result, "entries"),
                text(result, "files"),
                text(result, "bytes"),
                result["durationMs"].as_f64().unwrap_or(0.0) / 1000.0,
                text(result, "positionSeq"),
            );
            for note in result["notes"].as_array().into_iter().flatten() {
                outln!("  note: {}", note.as_str().unwrap_or_default());
            }
        }
        Operation::History { .. } => {
            let rows = result.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                outln!("No syncs yet.");
                return;
            }
            outln!(
                "{:>5}  {:<24}  {:<24}  {:<10}  {:<11}  {:<11}  {:>8}  {:>6}  {:>12}  ERROR / NOTE",
                "ID",
                "STARTED",
                "SOURCE",
                "TRIGGER",
                "KIND",
                "RESULT",
                "ENTRIES",
                "FILES",
                "BYTES"
            );
            for row in rows {
                let detail = match (text(&row, "error"), text(&row, "note")) {
                    (error, _) if error != "-" => error,
                    (_, note) => note,
                };
                outln!(
                    "{:>5}  {:<24}  {:<24}  {:<10}  {:<11}  {:<11}  {:>8}  {:>6}  {:>12}  {}",
                    text(&row, "id"),
                    text(&row, "startedAt"),
                    text(&row, "source"),
                    text(&row, "trigger"),
                    text(&row, "kind"),
                    text(&row, "result"),
                    text(&row, "entries"),
                    text(&row, "files"),
                    text(&row, "bytes"),
                    detail
                );
            }
        }
        Operation::HaStatus => print_status(result),
        Operation::UsersList { .. }
        | Operation::UsersAdd { .. }
        | Operation::UsersRemove { .. }
        | Operation::UsersSetPassword { .. } => crate::users::print_result(operation, result),
        Operation::Backup { .. } => crate::backup::print_result(result),
        Operation::HaConfigure { .. } => {
            for warning in result["warnings"].as_array().into_iter().flatten() {
                eprintln!(
                    "tandem: warning: {}: {}",
                    text(warning, "field"),
                    text(warning, "message")
                );
            }
            match result["snapshot"].as_object() {
                Some(_) => {
                    outln!("HA configuration saved and applied.");
                    print_controller(&result["snapshot"]);
                }
                None => {
                    outln!(
                        "HA configuration saved; the node is not running, it applies when it starts."
                    );
                    print_config(&result["config"], None);
                }
            }
        }
        Operation::FailoverMode { .. } => {
            let status = &result["status"];
            if status["haEnabled"].as_bool() == Some(false) {
                // Out of the HA group the mode is only a setting: the node serves standalone.
                outln!(
                    "Mode set to {}; HA is disabled, so this node serves standalone (Active, epoch {}) and the mode applies once HA is enabled.",
                    text(status, "mode"),
                    text(result, "epoch")
                );
            } else {
                outln!(
                    "This node is now {} in {} mode, epoch {}.",
                    text(status, "state"),
                    text(status, "mode"),
                    text(result, "epoch")
                );
            }
        }
        Operation::ClientConnection { .. } => outln!("{}", text(result, "message")),
        Operation::TestNotification => outln!(
            "Test e-mail sent to {} through {}",
            result["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|to| to.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            text(result, "relay")
        ),
        Operation::Switchover => {
            outln!("{}", text(result, "message"));
            if let Some(warning) = result["warning"].as_str() {
                eprintln!("tandem: warning: {warning}");
            }
        }
        Operation::Verify { .. } => {
            outln!("identical");
            outln!(
                "  {} table(s) match {}; positions: here {}, there {}",
                text(result, "tables"),
                text(result, "peerNode"),
                text(result, "localPositionSeq"),
                text(result, "peerPositionSeq")
            );
        }
    }
}

/// What an operator does with a fenced (Not Available) node.
const FENCED_ADVICE: &str = "  This node does not serve. To return it to service with nothing \
lost: make it the Active node's Standby (`tandem ha configure --mode secondary --primary \
<Active node>`, or `tandem failover mode secondary` if its Primary is set); it syncs (writes \
only this node has are saved under divergence/). To give it the Primary role back, run \
`tandem ha switchover` here once it is in step.";

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time.
fn at(value: &serde_json::Value) -> String {
    value
        .as_i64()
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

fn print_controller(snapshot: &serde_json::Value) {
    let status = &snapshot["status"];
    outln!(
        "State: {}   Epoch: {}",
        text(status, "state"),
        text(snapshot, "epoch")
    );
    if let Some(reason) = snapshot["fenced"].as_str() {
        outln!("Fenced: {reason}");
        match snapshot["fencedFix"].as_str() {
            Some(fix) => outln!(
                "  This node does not serve. To return it to service with nothing lost, make \
                 it the Active node's Standby: {fix}; it syncs (writes only this node has are \
                 saved under divergence/). To give it the Primary role back, run `tandem ha \
                 switchover` here once it is in step."
            ),
            None => outln!("{FENCED_ADVICE}"),
        }
    }
    if snapshot["checkingPeers"] == true {
        outln!("Checking the trusted peers before serving…");
    }
    print_config(&snapshot["config"], Some(snapshot));
    print_controls_mismatch(snapshot);
}

/// Each node keeps its own Fail Over Controls and witnesses across a failover (they apply while
/// it is a Secondary): says so when the peer's, as its heartbeats told, differ from this node's.
fn print_controls_mismatch(snapshot: &serde_json::Value) {
    let config = &snapshot["config"];
    let peer = &snapshot["peer"];
    let theirs = &peer["failOverControls"];
    if !theirs.is_object() {
        return;
    }
    let ours = serde_json::json!({
        "heartbeatInterval": config["heartbeatInterval"],
        "heartbeatFailures": config["heartbeatFailures"],
        "recheckInterval": config["recheckInterval"],
        "witnesses": config["witnesses"].as_array().map_or(0, Vec::len),
    });
    if &ours == theirs {
        return;
    }
    let describe = |controls: &serde_json::Value| {
        format!(
            "heartbeat every {} × {}, re-check every {}, {} witness(es)",
            text(controls, "heartbeatInterval"),
            text(controls, "heartbeatFailures"),
            text(controls, "recheckInterval"),
            text(controls, "witnesses")
        )
    };
    outln!(
        "WARNING: Fail Over Controls differ from {}'s: here {}; there {}. Each node keeps its own \
         across a failover (they apply while it is a Secondary); to match, run here `tandem ha \
         configure --heartbeat-interval {} --heartbeat-failures {} --recheck-interval {}` (and \
         the same --witness URLs).",
        text(peer, "nodeName"),
        describe(&ours),
        describe(theirs),
        text(theirs, "heartbeatInterval"),
        text(theirs, "heartbeatFailures"),
        text(theirs, "recheckInterval")
    );
}

/// The HA Configuration fields; with the controller's snapshot, also its live heartbeat and
/// schedule facts.
fn print_config(config: &serde_json::Value, snapshot: Option<&serde_json::Value>) {
    outln!(
        "High Availability: {}   Mode: {}",
        if config["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        },
        text(config, "mode")
    );
    let none = serde_json::Value::Null;
    let snapshot = snapshot.unwrap_or(&none);
    if config["mode"] == "Secondary" {
        let heartbeat = &snapshot["heartbeat"];
        outln!(
            "Node Status setting: {}   Primary: {}",
            text(config, "nodeStatus"),
            text(config, "primary")
        );
        outln!(
            "Fail Over Controls: heartbeat every {}, {} consecutive failures before failover, \
             re-check every {}; If Failure Detected: {}",
            text(config, "heartbeatInterval"),
            text(config, "heartbeatFailures"),
            text(config, "recheckInterval"),
            if config["onFailure"] == "standby" {
                "Keep in Standby"
            } else {
                "Promote to Primary"
            }
        );
        outln!(
            "Last heartbeat answered: {}   consecutive failures: {}{}",
            at(&heartbeat["lastOkMs"]),
            text(heartbeat, "consecutiveFailures"),
            match heartbeat["lastError"].as_str() {
                Some(error) => format!(" (last error: {error})"),
                None => String::new(),
            }
        );
        if heartbeat["failureDetected"] == true {
            outln!("Failure detected: the Primary missed its heartbeats");
        }
        if let Some(why) = snapshot["promotionHeld"].as_str() {
            outln!(
                "AUTOMATIC PROMOTION HELD (If Behind at Failure = standby): {why}. If the Primary \
                 does not return, promote this node with `tandem failover mode primary`."
            );
        }
        let if_behind = match config["onBehind"].as_str() {
            Some("promote") => "promote anyway",
            _ => "hold the promotion",
        };
        if config["replication"] == "continuous" {
            outln!(
                "Replication: continuous (the schedule is not used); lag bound {}; if behind at \
                 failure: {if_behind}",
                text(config, "lagBound")
            );
        } else if config["replication"] == "synchronous" {
            outln!(
                "Replication: synchronous (the schedule is not used); if the Standby is lost: {}; \
                 if behind at failure: {}",
                if config["onStandbyLost"] == "continuous" {
                    format!("continuous after {}", text(config, "synchronousTimeout"))
                } else {
                    "block writes".to_owned()
                },
                if config["onStandbyLost"] == "continuous" {
                    if_behind
                } else {
                    "promote (nothing acknowledged can be missing)"
                }
            );
        } else {
            outln!(
                "Replication: scheduled: StartTime {} GMT, Run Every {}; next sync {}",
                text(config, "startTime"),
                text(config, "runEvery"),
                at(&snapshot["nextSyncMs"])
            );
        }
    }
    if config["mode"] == "Primary" && config["replication"] == "synchronous" {
        outln!(
            "Replication: synchronous: a write is acknowledged once the Standby holds it; if the \
             Standby is lost: {}",
            if config["onStandbyLost"] == "continuous" {
                format!(
                    "continue without it after {} (alarm)",
                    text(config, "synchronousTimeout")
                )
            } else {
                "writes wait for it".to_owned()
            }
        );
    }
    if let Some(witnesses) = config["witnesses"]
        .as_array()
        .filter(|list| !list.is_empty())
    {
        let list: Vec<&str> = witnesses.iter().filter_map(|w| w.as_str()).collect();
        outln!("Witnesses: {}", list.join(", "));
        if let Some(ca_file) = config["witnessCaFile"].as_str() {
            outln!("Witness certificates: signed by the CA in {ca_file}");
        } else if let Some(pins) = config["witnessPinnedSha256"]
            .as_array()
            .filter(|pins| !pins.is_empty())
        {
            let pins: Vec<&str> = pins.iter().filter_map(|pin| pin.as_str()).collect();
            outln!("Witness certificates: pinned SHA-256 {}", pins.join(", "));
        } else if config["witnessInsecure"] == true {
            outln!("Witness certificates: NOT CHECKED (--witness-insecure)");
        }
    }
    if let Some(addresses) = config["notifyEmail"]
        .as_array()
        .filter(|list| !list.is_empty())
    {
        let list: Vec<&str> = addresses.iter().filter_map(|a| a.as_str()).collect();
        let mut on = Vec::new();
        if config["notifyOnSyncCompletion"] == true {
            on.push("Sync Completion");
        }
        if config["notifyOnFailure"] == true {
            on.push("Failure / this server becomes primary");
        }
        outln!(
            "Notifications: {} on {}; {}",
            list.join(", "),
            if on.is_empty() {
                "nothing".to_owned()
            } else {
                on.join(", ")
            },
            match config["smtpRelay"].as_str() {
                Some(relay) => format!(
                    "e-mailed through {relay} ({})",
                    text(config, "smtpSecurity")
                ),
                None => "no SMTP relay: logged only".to_owned(),
            }
        );
    }
    if let Some(skew) = snapshot["clockSkewMs"].as_i64() {
        let warning = if snapshot["clockSkewWarning"] == true {
            "  WARNING: over 2 s; both servers need the same time (NTP)"
        } else {
            ""
        };
        outln!("Clock offset to peer: {skew} ms{warning}");
    }
    if let Some(peer) = snapshot["peer"].as_object() {
        outln!(
            "Peer: {} ({} {}, epoch {}), last seen {}",
            peer.get("nodeName").and_then(|v| v.as_str()).unwrap_or("-"),
            peer.get("mode").and_then(|v| v.as_str()).unwrap_or("-"),
            peer.get("state").and_then(|v| v.as_str()).unwrap_or("-"),
            peer.get("epoch")
                .map(ToString::to_string)
                .unwrap_or_default(),
            at(&snapshot["peerSeenMs"])
        );
    }
    print_cluster(snapshot);
}

/// The cluster view: every other node known, directly or by gossip, and the alarms on it.
fn print_cluster(snapshot: &serde_json::Value) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0);
    let members = snapshot["cluster"].as_array().cloned().unwrap_or_default();
    let silent = snapshot["silentPeers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !members.is_empty() || !silent.is_empty() {
        outln!("Cluster (every other node this node knows of):");
    }
    for member in &members {
        let ago = member["seenAtMs"]
            .as_i64()
            .map(|seen| format!("{:.1} s ago", (now_ms - seen).max(0) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let how = match member["source"]["via"].as_str() {
            Some(via) => format!("through {via}"),
            None => "direct".into(),
        };
        let reach = match member["reachable"].as_bool() {
            Some(true) => "reachable".to_owned(),
            Some(false) => format!(
                "UNREACHABLE ({})",
                member["unreachableReason"].as_str().unwrap_or("-")
            ),
            None => "not checked by this node".into(),
        };
        outln!(
            "  {} {}: {}{} {}, epoch {}; seen {ago}, {how}; {reach}",
            text(member, "nodeName"),
            text(member, "address"),
            if member["haEnabled"] == false {
                "HA disabled, "
            } else {
                ""
            },
            text(member, "mode"),
            text(member, "state"),
            text(member, "epoch"),
        );
    }
    for peer in &silent {
        outln!(
            "  {}: NO ANSWER ({})",
            text(peer, "address"),
            text(peer, "reason")
        );
    }
    if let Some(claim) = snapshot["newestClaim"].as_object() {
        outln!(
            "Newest claim to serve: epoch {} of {}",
            claim
                .get("epoch")
                .map(ToString::to_string)
                .unwrap_or_default(),
            claim
                .get("nodeName")
                .and_then(|v| v.as_str())
                .unwrap_or("-")
        );
    }
    if let Some(who) = snapshot["dualActive"].as_str() {
        outln!("DUAL ACTIVE: two nodes of the HA group are Active at once: {who}");
    }
    for warning in snapshot["trustWarnings"].as_array().into_iter().flatten() {
        if let Some(warning) = warning.as_str() {
            outln!("TRUST INCOMPLETE: {warning}");
        }
    }
}

fn print_status(result: &serde_json::Value) {
    outln!(
        "Node {} (Tandem {}): {}",
        text(result, "node"),
        text(result, "version"),
        if result["running"] == true {
            "running"
        } else {
            "not running (stored configuration)"
        }
    );
    match result["controller"].as_object() {
        Some(_) => print_controller(&result["controller"]),
        None => {
            outln!("Epoch: {}", text(result, "epoch"));
            if let Some(reason) = result["fenced"].as_str() {
                outln!("Fenced: {reason}");
                outln!("{FENCED_ADVICE}");
            }
            print_config(&result["config"], None);
        }
    }
    if let Some(source) = result["replication"].as_str() {
        outln!("Replication: OK ({source})");
    }
    if let Some(follower) = result["follower"].as_object() {
        let field = |name: &str| follower.get(name).cloned().unwrap_or_default();
        let lag = |name: &str| match field(name).as_i64() {
            Some(ms) => format!("{ms} ms"),
            None => "-".into(),
        };
        outln!(
            "Continuous replication from {}: {}, position {}, {} entries applied; lag: last {}, \
             recent p99 {}, max {}{}",
            field("source").as_str().unwrap_or("-"),
            if field("connected") == true {
                format!("connected since {}", at(&field("connectedSinceMs")))
            } else {
                "DISCONNECTED".into()
            },
            field("positionSeq"),
            field("appliedEntries"),
            lag("lastLagMs"),
            lag("recentLagP99Ms"),
            lag("recentLagMaxMs"),
            match field("lastError").as_str() {
                Some(error) if field("connected") != true => format!(" (last error: {error})"),
                _ => String::new(),
            }
        );
        if let Some(why) = result["behind"].as_str() {
            outln!("BEHIND: {why}");
        }
    }
    if let Some(position) = result["position"].as_object() {
        let field = |name: &str| {
            position
                .get(name)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        outln!(
            "Change log position: {}; a continuous or synchronous Standby holds up to {}",
            field("headSeq"),
            field("standbyHoldsSeq")
        );
    }
    if let Some(gate) = result["clientConnections"].as_str() {
        outln!("Client connections: {gate}");
    }
    match result["lastSync"].as_object() {
        Some(sync) => outln!(
            "Last sync: {} from {}: {} {}",
            sync.get("startedAt")
                .and_then(|v| v.as_str())
                .unwrap_or("-"),
            sync.get("source").and_then(|v| v.as_str()).unwrap_or("-"),
            sync.get("kind").and_then(|v| v.as_str()).unwrap_or("-"),
            sync.get("result").and_then(|v| v.as_str()).unwrap_or("-"),
        ),
        None => outln!("Last sync: none"),
    }
}
