//! `tandem demo`: the seed's topology on loopback (a Primary and a Secondary in data center 1,
//! a DR node in data center 2 following the Secondary, the traffic controller in front), built
//! with the commands an operator types, simulated devices checking in through the controller,
//! and a scenario played live: a failover, a failback, the loss of data center 1, a planned
//! switchover or an upgrade. Then a summary: the outage as devices saw it, the check-ins
//! acknowledged, and proof that none of them is missing on the node that ends Active.
//!
//! Every process it starts is this same binary (`Options::exe`), and none outlives it
//! (`process`).

mod cluster;
mod devices;
mod error;
mod process;
mod scenario;
mod summary;
mod view;

pub use error::{DemoError, DemoResult};
pub use process::EXIT_INTERRUPTED;
pub use scenario::Scenario;
pub use summary::Summary;

use cluster::{ADMIN_USER, Cluster, DR, PASSWORD, PRIMARY, SECONDARY};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most simulated devices: each is a task and a keep-alive connection, and the demo's check of
/// every acknowledged write reads them back in a few pages.
pub const DEVICES_MAX: usize = 1000;
/// Longest accepted `--phase-s`: a demo, not a soak.
pub const PHASE_MAX: Duration = Duration::from_secs(600);
/// Async worker threads: the machine's two cores are the nodes' first.
const WORKER_THREADS: usize = 2;

/// What `tandem demo` was asked for.
pub struct Options {
    /// The `tandem` binary to run (the demo's own).
    pub exe: PathBuf,
    pub scenario: Scenario,
    /// Where to build the cluster (new or empty); a temporary directory otherwise.
    pub dir: Option<PathBuf>,
    /// Leave the cluster running until Ctrl-C, printing its URLs and password.
    pub keep: bool,
    pub devices: usize,
    /// How long devices check in before the scenario and after it.
    pub phase: Duration,
    /// Print the summary as JSON on stdout; the steps and the live view (plain lines) go to
    /// stderr.
    pub json: bool,
    /// Redraw the live view in place (stdout is a terminal).
    pub terminal: bool,
}

fn validate(options: &Options) -> DemoResult<()> {
    if options.devices == 0 || options.devices > DEVICES_MAX {
        return Err(DemoError::Usage(format!(
            "--devices {}: must be from 1 to {DEVICES_MAX}",
            options.devices
        )));
    }
    if options.phase.is_zero() || options.phase > PHASE_MAX {
        return Err(DemoError::Usage(format!(
            "--phase-s {}: must be from 1 to {}",
            options.phase.as_secs(),
            PHASE_MAX.as_secs()
        )));
    }
    Ok(())
}

/// `--dir`: created if missing, refused unless empty.
fn prepare_dir(dir: &Path) -> DemoResult<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DemoError::Usage(format!(
                    "--dir {}: the directory is not empty; give a new or empty directory (the \
                     demo creates three nodes and a traffic controller in it), or leave --dir \
                     out to use a temporary one",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(DemoError::io(format!(
                "--dir {}: cannot create it",
                dir.display()
            ))),
        Err(error) => Err(DemoError::Usage(format!(
            "--dir {}: cannot read it ({error}); give a new or empty directory",
            dir.display()
        ))),
    }
}

/// Runs the demo. Prints as it goes; returns the summary (whose `lost` must be 0).
pub fn run(options: Options) -> DemoResult<Summary> {
    validate(&options)?;
    let temporary;
    let root = match &options.dir {
        Some(dir) => {
            prepare_dir(dir)?;
            std::path::absolute(dir).map_err(DemoError::io(format!("--dir {}", dir.display())))?
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("tandem-demo-")
                .tempdir()
                .map_err(DemoError::io("cannot create a temporary directory"))?;
            process::remove_on_signal(temporary.path());
            temporary.path().to_owned()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .map_err(DemoError::io("cannot start the async runtime"))?;
    process::handle_signals(&runtime)?;
    // From here every process started is stopped on every way out.
    let _guard = process::Guard;
    let screen = Arc::new(view::Screen::new(options.terminal, options.json));
    let tandem = process::Tandem {
        exe: options.exe.clone(),
        root: root.clone(),
    };
    screen.say(&format!(
        "tandem demo --scenario {}: three nodes and a traffic controller in {}",
        options.scenario.name(),
        root.display()
    ));
    let cluster = Cluster::create(tandem, &screen)?;
    setup(&cluster, &screen)?;
    let summary = play(&options, &runtime, &cluster, &screen)?;
    if options.keep {
        keep(&cluster, &screen, &root);
    }
    Ok(summary)
}

/// Trusted Hosts, HA Configuration, first syncs, every process started and healthy.
fn setup(cluster: &Cluster, screen: &view::Screen) -> DemoResult<()> {
    cluster.start_lb(screen)?;
    for (a, b) in [(PRIMARY, SECONDARY), (SECONDARY, DR), (PRIMARY, DR)] {
        cluster.trust(screen, a, b)?;
        cluster.trust(screen, b, a)?;
    }
    let witness = format!("http://{}/witness/primary", cluster.lb_admin);
    let options = scenario::pair_options(&witness);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let mut primary = vec!["ha", "configure", "--enable", "--mode", "primary"];
    primary.extend_from_slice(&options);
    cluster.run(screen, PRIMARY, &primary)?;
    cluster.serve(screen, PRIMARY)?;
    cluster.wait_for_state(PRIMARY, "Active")?;

    let primary_at = cluster.node(PRIMARY)?.ssh();
    cluster.run(screen, SECONDARY, &["failover", "sync", &primary_at])?;
    let mut secondary = vec!["ha", "configure", "--enable", "--mode", "secondary"];
    secondary.extend_from_slice(&["--primary", &primary_at]);
    secondary.extend_from_slice(&options);
    cluster.run(screen, SECONDARY, &secondary)?;
    cluster.serve(screen, SECONDARY)?;
    cluster.wait_for_state(SECONDARY, "Standby")?;
    cluster.wait_in_step(SECONDARY)?;

    // The DR node follows the Secondary (cascading), continuously, on Keep in Standby: the
    // guide brings a DR server online by hand.
    let secondary_at = cluster.node(SECONDARY)?.ssh();
    cluster.run(screen, DR, &["failover", "sync", &secondary_at])?;
    let mut dr = vec!["ha", "configure", "--enable", "--mode", "secondary"];
    dr.extend_from_slice(&["--primary", &secondary_at, "--replication", "continuous"]);
    dr.extend_from_slice(&["--on-failure", "standby"]);
    dr.extend_from_slice(cluster::FAIL_OVER_CONTROLS);
    cluster.run(screen, DR, &dr)?;
    cluster.serve(screen, DR)?;
    cluster.wait_for_state(DR, "Standby")?;
    cluster.wait_in_step(DR)?;
    cluster.wait_for_route(PRIMARY)?;
    screen.say(&format!(
        "  → healthy: {PRIMARY} Active, {SECONDARY} and {DR} Standby and in step, devices routed to {PRIMARY}"
    ));
    Ok(())
}

/// Devices enrolled and checking in, the live view, the scenario, the checks.
fn play(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    screen: &Arc<view::Screen>,
) -> DemoResult<Summary> {
    let target = devices::Target {
        port: cluster.device_port,
        user: ADMIN_USER.into(),
        password: PASSWORD.into(),
    };
    let stats_slot = Arc::new(Mutex::new(None));
    let sources = view::Sources {
        nodes: cluster
            .nodes
            .iter()
            .map(|node| (node.name.to_owned(), node.sysmgr_port))
            .collect(),
        lb_admin: cluster.lb_admin.clone(),
        user: ADMIN_USER.into(),
        password: PASSWORD.into(),
    };
    screen.say(&format!(
        "{} simulated devices: registered for user {} through the admin API, enrolled and checking in every {} ms through the traffic controller (127.0.0.1:{})",
        options.devices,
        devices::DEMO_USER,
        devices::CHECKIN_INTERVAL.as_millis(),
        cluster.device_port
    ));
    let enrolled = runtime.block_on(devices::enroll(&target, options.devices))?;
    let live = view::Live::start(runtime, screen.clone(), sources, stats_slot.clone())?;
    let fleet = devices::Fleet::start(runtime, cluster.device_port, &enrolled)?;
    *stats_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(fleet.stats.clone());
    scenario::settle(options.phase);
    let play = scenario::Play {
        cluster,
        screen,
        live: &live,
        witness: format!("http://{}/witness/primary", cluster.lb_admin),
    };
    let active = play.run(options.scenario)?;
    scenario::settle(options.phase);
    let stats = fleet.stats.clone();
    fleet.stop(runtime);
    drop(live);
    screen.clear();
    let port = cluster.node(active)?.service_port;
    let stored = runtime.block_on(devices::stored_versions(&target, port))?;
    let lb_status = cluster.lb_status().unwrap_or_default();
    let exports = if options.scenario == Scenario::DcLoss {
        main_data_center_returns(cluster, screen)?
    } else {
        Vec::new()
    };
    let summary = Summary::new(
        options.scenario,
        active,
        &devices::lock(&stats),
        &enrolled,
        &stored,
        &exports,
        &lb_status,
    );
    if options.json {
        screen.plain(&summary.json().to_string());
    } else {
        screen.plain(&summary.text());
    }
    Ok(summary)
}

/// After the loss of data center 1: before its nodes serve again, each syncs from the DR node
/// (offline, as the guide's failback begins), which saves what only it held to its
/// `divergence/` export. Returns the exports' text.
fn main_data_center_returns(cluster: &Cluster, screen: &view::Screen) -> DemoResult<Vec<String>> {
    screen.say("data center 1 returns: each of its nodes syncs from dr before it serves again");
    let dr_at = cluster.node(DR)?.ssh();
    let mut exports = Vec::new();
    for node in [PRIMARY, SECONDARY] {
        cluster.run(screen, node, &["failover", "sync", &dr_at])?;
        let dir = cluster.tandem.root.join(node).join("divergence");
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            exports.push(
                std::fs::read_to_string(file.path()).map_err(DemoError::io(format!(
                    "cannot read {}",
                    file.path().display()
                )))?,
            );
        }
    }
    Ok(exports)
}

/// `--keep`: prints where everything is and waits for Ctrl-C (the signal handler then stops
/// every process and exits 0).
fn keep(cluster: &Cluster, screen: &view::Screen, root: &Path) {
    process::set_keeping(true);
    let mut text = String::from("\nThe cluster keeps running; Ctrl-C stops every process.\n");
    for node in &cluster.nodes {
        text += &format!(
            "  {:<15} Admin portal https://127.0.0.1:{}/   System Manager https://127.0.0.1:{}/\n",
            node.name, node.service_port, node.sysmgr_port
        );
    }
    text += &format!(
        "  traffic controller   devices 127.0.0.1:{}   admin http://{}/status\n",
        cluster.device_port, cluster.lb_admin
    );
    text += &format!("  log in as {ADMIN_USER} with password {PASSWORD}\n");
    text += &format!(
        "  data, logs and lb.toml in {} (commands: cd there, then e.g. tandem --data-dir {PRIMARY} ha status)",
        root.display()
    );
    screen.plain(&text);
    loop {
        std::thread::park();
    }
}
