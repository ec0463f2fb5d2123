//! The seed's topology on loopback, built with the same commands an operator types (README:
//! Configure, Replicate, High availability, Traffic controller): `main-primary` and
//! `main-secondary` in data center 1, `dr` in data center 2 following the Secondary, and
//! `tandem lb` in front.

use crate::error::{DemoError, DemoResult};
use crate::process::Tandem;
use crate::view::Screen;
use serde_json::Value;
use std::time::{Duration, Instant};

pub const PRIMARY: &str = "main-primary";
pub const SECONDARY: &str = "main-secondary";
pub const DR: &str = "dr";
/// The traffic controller's name among the demo's processes.
pub const LB: &str = "lb";
/// The admin user `init` creates on each node (admin API, portals, System Manager).
pub const ADMIN_USER: &str = "admin";
/// Every node's admin password: a demo on loopback, printed with `--keep`.
pub const PASSWORD: &str = "tandem-demo-2026";
/// The file `init --admin-password-file` reads it from, in the demo's directory.
const PASSWORD_FILE: &str = "admin-password";

/// Fail Over Controls on every node: heartbeats and re-checks every 250 ms, 3 failures, so a
/// dead Primary is detected in under a second (the issue measured 0.8–1.0 s client-visible
/// outage at this setting, and no false alarm under load).
pub const FAIL_OVER_CONTROLS: &[&str] = &[
    "--heartbeat-interval",
    "250ms",
    "--recheck-interval",
    "250ms",
    "--heartbeat-failures",
    "3",
];
/// Synchronous replication's wait for a lost Standby before going on without it (with the
/// controller's witness record). Above the longest failure detection of the controls above
/// (`ha configure` computes 2.5 s), so a Standby that was in step when the Primary died
/// promotes itself (If Behind at Failure = standby), and short, because a newly promoted node
/// may wait this long for its own lost Standby before its first writes.
pub const SYNCHRONOUS_TIMEOUT: &str = "3s";
/// The traffic controller's probes, as fast as the Fail Over Controls: a dead backend is down
/// after 3 × 250 ms.
const PROBES: &str = "probe_interval = \"250ms\"\nprobe_timeout = \"250ms\"\nfall = 3\nrise = 2\n";
/// How long a started process may take to listen (a debug build on a busy machine is slow).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the demo waits for a state it expects (a role, a route, a stream) before failing:
/// far above what each takes, so a slow machine only makes the demo slower.
pub const STATE_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between two checks of a state being waited for.
const POLL_PAUSE: Duration = Duration::from_millis(100);
/// Ports come from below the kernel's ephemeral range (32768–60999 on Linux): a port the
/// kernel hands out could be given to an outgoing connection before a node listens on it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// One node: its name (also its data directory, relative to the demo's) and listeners.
pub struct Node {
    pub name: &'static str,
    pub service_port: u16,
    pub sysmgr_port: u16,
    pub ssh_port: u16,
    pub certificate_sha256: String,
}

impl Node {
    pub fn ssh(&self) -> String {
        format!("127.0.0.1:{}", self.ssh_port)
    }
}

pub struct Cluster {
    pub tandem: Tandem,
    pub nodes: Vec<Node>,
    pub device_port: u16,
    pub lb_admin: String,
}

/// `count` loopback ports nothing listens on, from a random place in [`PORTS`].
fn free_ports(count: usize) -> DemoResult<Vec<u16>> {
    use std::hash::{BuildHasher, RandomState};
    let span = u32::from(PORTS.end - PORTS.start);
    // RandomState is seeded per process: a random start without another dependency.
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    let ports: Vec<u16> = (0..span)
        .map(|step| PORTS.start + ((start + step) % span) as u16)
        .filter(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .take(count)
        .collect();
    if ports.len() < count {
        return Err(DemoError::Failed(format!(
            "fewer than {count} free loopback ports in {PORTS:?}"
        )));
    }
    Ok(ports)
}

/// Polls `condition` until it holds; fails after `deadline` with `what()`.
pub fn wait_until(
    deadline: Duration,
    what: impl Fn() -> String,
    mut condition: impl FnMut() -> bool,
) -> DemoResult<()> {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > deadline {
            return Err(DemoError::Failed(format!(
                "{} (waited {} s)",
                what(),
                deadline.as_secs()
            )));
        }
        std::thread::sleep(POLL_PAUSE);
    }
    Ok(())
}

/// Runs the `init` commands at once (each generates keys and hashes a password); each one's
/// stdout.
fn init_all(tandem: &Tandem, commands: &[Vec<String>]) -> Vec<DemoResult<String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = commands
            .iter()
            .map(|command| {
                scope.spawn(move || {
                    let args: Vec<&str> = command.iter().map(String::as_str).collect();
                    tandem.ok(&args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(DemoError::Failed("init panicked".into())))
            })
            .collect()
    })
}

impl Cluster {
    /// `tandem init` of the three nodes (at once), and the controller's `lb.toml`.
    pub fn create(tandem: Tandem, screen: &Screen) -> DemoResult<Self> {
        std::fs::write(tandem.root.join(PASSWORD_FILE), format!("{PASSWORD}\n"))
            .map_err(DemoError::io("cannot write the password file"))?;
        let names = [PRIMARY, SECONDARY, DR];
        // Three listeners per node, then the controller's device and admin ports.
        let ports = free_ports(names.len() * 3 + 2)?;
        let commands: Vec<Vec<String>> = names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let address = |offset: usize| format!("127.0.0.1:{}", ports[index * 3 + offset]);
                vec![
                    "--data-dir".into(),
                    (*name).into(),
                    "init".into(),
                    "--name".into(),
                    (*name).into(),
                    "--service-addr".into(),
                    address(0),
                    "--sysmgr-addr".into(),
                    address(1),
                    "--ssh-addr".into(),
                    address(2),
                    "--admin-password-file".into(),
                    PASSWORD_FILE.into(),
                ]
            })
            .collect();
        for command in &commands {
            screen.say(&format!("$ tandem {}", command.join(" ")));
        }
        let mut nodes = Vec::new();
        for (index, printed) in init_all(&tandem, &commands).into_iter().enumerate() {
            let printed = printed?;
            let certificate_sha256 = printed
                .lines()
                .find_map(|line| line.trim().strip_prefix("server certificate   SHA-256 "))
                .ok_or_else(|| {
                    DemoError::Failed(format!(
                        "init printed no certificate fingerprint: {printed}"
                    ))
                })?
                .to_owned();
            nodes.push(Node {
                name: names[index],
                service_port: ports[index * 3],
                sysmgr_port: ports[index * 3 + 1],
                ssh_port: ports[index * 3 + 2],
                certificate_sha256,
            });
        }
        let cluster = Self {
            tandem,
            nodes,
            device_port: ports[names.len() * 3],
            lb_admin: format!("127.0.0.1:{}", ports[names.len() * 3 + 1]),
        };
        cluster.write_lb_config()?;
        Ok(cluster)
    }

    fn write_lb_config(&self) -> DemoResult<()> {
        let pins: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("{:?}", node.certificate_sha256))
            .collect();
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\nadmin = \"{}\"\n{PROBES}[probe_tls]\npinned_sha256 = [{}]\n",
            self.device_port,
            self.lb_admin,
            pins.join(", ")
        );
        for node in &self.nodes {
            let group = if node.name == DR { "dr" } else { "main" };
            text += &format!(
                "[[backend]]\nname = \"{}\"\naddress = \"127.0.0.1:{}\"\ngroup = \"{group}\"\n",
                node.name, node.service_port
            );
        }
        std::fs::write(self.tandem.root.join("lb.toml"), text)
            .map_err(DemoError::io("cannot write lb.toml"))
    }

    pub fn node(&self, name: &str) -> DemoResult<&Node> {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .ok_or_else(|| DemoError::Failed(format!("no node {name}")))
    }

    /// `tandem --data-dir NODE ARGS`, printed, then run; its stdout.
    pub fn run(&self, screen: &Screen, node: &str, args: &[&str]) -> DemoResult<String> {
        let mut full = vec!["--data-dir", node];
        full.extend_from_slice(args);
        screen.say(&format!("$ tandem {}", shell_words(&shortened(&full))));
        self.tandem.ok(&full)
    }

    /// `tandem --data-dir NODE ARGS`, not printed (the demo's own checks).
    pub fn quiet(&self, node: &str, args: &[&str]) -> DemoResult<String> {
        let mut full = vec!["--data-dir", node];
        full.extend_from_slice(args);
        self.tandem.ok(&full)
    }

    /// `tandem lb ARGS --admin ADDR`, printed, then run.
    pub fn lb(&self, screen: &Screen, args: &[&str]) -> DemoResult<String> {
        let mut full = vec!["lb"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--admin", &self.lb_admin]);
        screen.say(&format!("$ tandem {}", shell_words(&full)));
        self.tandem.ok(&full)
    }

    /// `tandem lb --config lb.toml`, in the background; waits for its admin port.
    pub fn start_lb(&self, screen: &Screen) -> DemoResult<()> {
        screen.say("$ tandem lb --config lb.toml &");
        self.tandem
            .spawn(LB, &["lb", "--config", "lb.toml"], "lb.log")?;
        self.wait_listening(LB, &self.lb_admin.clone(), None)
    }

    /// `tandem --data-dir NODE serve`, in the background; waits until it accepts connections.
    pub fn serve(&self, screen: &Screen, name: &str) -> DemoResult<()> {
        screen.say(&format!("$ tandem --data-dir {name} serve &"));
        self.tandem
            .spawn(name, &["--data-dir", name, "serve"], &format!("{name}.log"))?;
        let address = format!("127.0.0.1:{}", self.node(name)?.service_port);
        self.wait_listening(name, &address, Some(name))
    }

    fn wait_listening(&self, name: &str, address: &str, data_dir: Option<&str>) -> DemoResult<()> {
        let started = Instant::now();
        loop {
            let socket =
                data_dir.is_none_or(|dir| self.tandem.root.join(dir).join("control.sock").exists());
            if socket && std::net::TcpStream::connect(address).is_ok() {
                return Ok(());
            }
            if let Err(why) = self.tandem.running(name) {
                return Err(DemoError::Failed(format!(
                    "{why}; its log:\n{}",
                    self.log_tail(name)
                )));
            }
            if started.elapsed() > STARTUP_DEADLINE {
                return Err(DemoError::Failed(format!(
                    "{name} did not listen on {address} within {} s; its log:\n{}",
                    STARTUP_DEADLINE.as_secs(),
                    self.log_tail(name)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of a process's log, for an error message.
    pub fn log_tail(&self, name: &str) -> String {
        /// Enough to show why a process stopped.
        const LINES: usize = 20;
        let text = std::fs::read_to_string(self.tandem.root.join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LINES)..].join("\n")
    }

    /// Trusted Hosts: `a` trusts `b`'s SSH key (`ha local-key` on b, `trusted-hosts add` on a).
    pub fn trust(&self, screen: &Screen, a: &str, b: &str) -> DemoResult<()> {
        let key = self.run(screen, b, &["ha", "local-key"])?;
        let address = self.node(b)?.ssh();
        self.run(
            screen,
            a,
            &["ha", "trusted-hosts", "add", &address, "--key", key.trim()],
        )?;
        Ok(())
    }

    /// `tandem ha status --json` of a node (through its control socket).
    pub fn ha_status(&self, node: &str) -> DemoResult<Value> {
        let text = self.quiet(node, &["ha", "status", "--json"])?;
        serde_json::from_str(&text)
            .map_err(|error| DemoError::Failed(format!("ha status of {node}: {error}")))
    }

    /// Waits until `node`'s HA controller reports `state` (Active, Standby…).
    pub fn wait_for_state(&self, node: &str, state: &str) -> DemoResult<()> {
        let state_now = || {
            self.ha_status(node)
                .map(|status| status["controller"]["status"]["state"].clone())
                .unwrap_or(Value::Null)
        };
        wait_until(
            STATE_DEADLINE,
            || format!("{node} never became {state} (it is {})", state_now()),
            || state_now() == state,
        )
    }

    /// Waits until `node`'s replication stream from its source is connected and in step.
    pub fn wait_in_step(&self, node: &str) -> DemoResult<()> {
        let status = || self.ha_status(node).unwrap_or(Value::Null);
        wait_until(
            STATE_DEADLINE,
            || format!("{node} never followed its source in step: {:#}", status()),
            || {
                let status = status();
                status["follower"]["connected"] == true && status["behind"].is_null()
            },
        )
    }

    /// Waits until the traffic controller routes devices to `backend`.
    pub fn wait_for_route(&self, backend: &str) -> DemoResult<()> {
        wait_until(
            STATE_DEADLINE,
            || format!("the traffic controller never routed to {backend}"),
            || self.route().as_deref() == Some(backend),
        )
    }

    /// The controller's active backend (its admin `GET /status`).
    pub fn route(&self) -> Option<String> {
        let status = self.lb_status().ok()?;
        status["active"].as_str().map(str::to_owned)
    }

    pub fn lb_status(&self) -> DemoResult<Value> {
        let text = self
            .tandem
            .ok(&["lb", "status", "--json", "--admin", &self.lb_admin]);
        // Exit 3 (no backend can take traffic) still prints the status.
        let text = match text {
            Ok(text) => text,
            Err(_) => {
                let output =
                    self.tandem
                        .output(&["lb", "status", "--json", "--admin", &self.lb_admin])?;
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
        };
        serde_json::from_str(&text)
            .map_err(|error| DemoError::Failed(format!("lb status: {error}: {text}")))
    }
}

/// Arguments for display: an SSH public key is shown by its start only.
fn shortened<'a>(args: &[&'a str]) -> Vec<std::borrow::Cow<'a, str>> {
    /// Longer arguments (keys) are cut to this many characters and an ellipsis.
    const SHOWN_CHARS: usize = 24;
    args.iter()
        .map(|arg| {
            if arg.chars().count() > SHOWN_CHARS * 2 {
                std::borrow::Cow::Owned(arg.chars().take(SHOWN_CHARS).collect::<String>() + "…")
            } else {
                std::borrow::Cow::Borrowed(*arg)
            }
        })
        .collect()
}

/// Arguments as a shell would need them quoted (keys contain spaces).
pub fn shell_words<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|arg| {
            let arg = arg.as_ref();
            if arg.is_empty()
                || arg.contains(|c: char| c.is_whitespace() || "'\"$&;|<>*?".contains(c))
            {
                format!("'{}'", arg.replace('\'', "'\\''"))
            } else {
                arg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
