//! The shipped HAProxy recipe (`deploy/haproxy/haproxy.cfg`, run as is: the test only sets the
//! environment variables the file reads) in front of two real `tandem` processes on loopback:
//! device traffic follows the Secondary once it promotes, never goes back to the old Primary by
//! itself (not even across a reload), and moves back when the operator clears the stick table
//! through the runtime API. HAProxy also terminates TLS in front of `tandem lb`'s witness, for
//! a Secondary whose witness is `https://`.
//!
//! Needs Debian's `haproxy` (on PATH or in /usr/sbin). Without it each test prints why it is
//! skipped, or fails when `TANDEM_REQUIRE_ALL=1` (as under `scripts/test`, which installs it).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::node::{
    FAST, Links, Node, STARTUP_DEADLINE, describe, start_pair, try_https, wait_until,
};
use support::{LinkProxy, free_ports, kill_9};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy/haproxy.cfg");
/// The variables `haproxy.cfg` reads (with `presetenv` defaults for production).
const CONFIG_VARIABLES: &[&str] = &[
    "TANDEM_LB_DEVICE_BIND",
    "TANDEM_PRIMARY",
    "TANDEM_SECONDARY",
    "TANDEM_LB_ADMIN_SOCKET",
    "TANDEM_LB_PEER_ADDR",
    "TANDEM_LB_CHECK_INTER",
    "TANDEM_LB_LOG",
    "TANDEM_LB_UNPRIVILEGED",
];

/// The `haproxy` program: from PATH, or Debian's /usr/sbin/haproxy, which is not on a normal
/// user's PATH. `None` (the caller returns early, and the test passes with the printed reason)
/// when neither runs, unless `TANDEM_REQUIRE_ALL=1`: a silent skip there would hide that the
/// recipe went untested.
fn haproxy() -> Option<PathBuf> {
    let mut failures = Vec::new();
    for candidate in ["haproxy", "/usr/sbin/haproxy"] {
        match Command::new(candidate).arg("-v").output() {
            Ok(output) if output.status.success() => return Some(PathBuf::from(candidate)),
            Ok(output) => failures.push(format!("`{candidate} -v` failed: {}", describe(&output))),
            Err(error) => failures.push(format!("{candidate}: {error}")),
        }
    }
    support::skip_without("haproxy", &failures.join("; "), "apt-get install haproxy");
    None
}

/// HAProxy running `deploy/haproxy/haproxy.cfg` in the foreground, with the test's ports.
struct Haproxy {
    _temp: tempfile::TempDir,
    child: Child,
    device_port: u16,
    socket: PathBuf,
    log: PathBuf,
}

impl Haproxy {
    fn start(program: &Path, primary: &Node, secondary: &Node) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let socket = temp.path().join("admin.sock");
        let log = temp.path().join("haproxy.log");
        let [device_port, peer_port] = free_ports::<2>();
        let log_file = std::fs::File::create(&log).unwrap();
        // Master-worker in the foreground, as Debian's systemd unit runs it (`-Ws`), so that
        // a reload is what `systemctl reload haproxy` does: SIGUSR2 to the master.
        let child = Command::new(program)
            .args(["-W", "-db", "-f", CONFIG])
            .env("TANDEM_LB_DEVICE_BIND", format!("127.0.0.1:{device_port}"))
            .env(
                "TANDEM_PRIMARY",
                format!("127.0.0.1:{}", primary.service_port),
            )
            .env(
                "TANDEM_SECONDARY",
                format!("127.0.0.1:{}", secondary.service_port),
            )
            .env("TANDEM_LB_ADMIN_SOCKET", &socket)
            .env("TANDEM_LB_PEER_ADDR", format!("127.0.0.1:{peer_port}"))
            // Quicker checks than production's 2 s keep the test short; the logic is the same.
            .env("TANDEM_LB_CHECK_INTER", "300ms")
            // Connection and check logs land next to HAProxy's own messages, for diagnosis.
            .env("TANDEM_LB_LOG", "stdout")
            // No chroot nor user switch: the test may run as any user.
            .env("TANDEM_LB_UNPRIVILEGED", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start haproxy");
        let mut haproxy = Self {
            _temp: temp,
            child,
            device_port,
            socket,
            log,
        };
        let started = Instant::now();
        while !(haproxy.socket.exists()
            && std::net::TcpStream::connect(("127.0.0.1", device_port)).is_ok())
        {
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                panic!("haproxy exited with {status}: {}", haproxy.log());
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "haproxy did not start: {}",
                haproxy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        haproxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One runtime-API command on the admin socket, as `socat stdio SOCKET` would send it.
    fn api(&self, command: &str) -> String {
        runtime_api(&self.socket, command)
    }

    /// The worker process that answers the runtime API.
    fn worker_pid(&self) -> String {
        let info = self.api("show info");
        info.lines()
            .find_map(|line| line.strip_prefix("Pid: "))
            .unwrap_or_else(|| panic!("no Pid in `show info`: {info}"))
            .to_owned()
    }

    /// Reloads the configuration as `systemctl reload haproxy` does and waits until the new
    /// worker answers and holds the stick table the old one handed over (through the local
    /// peer in `haproxy.cfg`). Returns what the new worker's table pins traffic to.
    fn reload(&self) -> Option<String> {
        // HAProxy hands its table over on reload only once its own startup resync is finished
        // (the peers section's flags 0x1 and 0x2), a few seconds after start.
        wait_until(
            || {
                format!(
                    "the peers section never finished its startup resync:\n{}",
                    self.log()
                )
            },
            || {
                let peers = self.api("show peers");
                peers
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("flags=0x"))
                    .and_then(|flags| u32::from_str_radix(flags, 16).ok())
                    .is_some_and(|flags| flags & 0x3 == 0x3)
            },
        );
        let before = self.pinned();
        let old_worker = self.worker_pid();
        let signal = Command::new("kill")
            .args(["-USR2", &self.child.id().to_string()])
            .output()
            .unwrap();
        assert!(signal.status.success(), "{}", describe(&signal));
        wait_until(
            || format!("no new worker after the reload:\n{}", self.log()),
            || self.worker_pid() != old_worker,
        );
        // The old worker teaches the new one right after it stops listening; no traffic is sent
        // before that, since a connection in between would be routed by an empty table.
        if before.is_some() {
            wait_until(
                || format!("the stick table was not handed over:\n{}", self.log()),
                || self.pinned().is_some(),
            );
        }
        self.pinned()
    }

    /// Whether HAProxy currently considers `backend/server` up (its checks pass).
    fn is_up(&self, backend: &str, server: &str) -> bool {
        let state = self.api(&format!("show servers state {backend}"));
        // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state …; 2 is running.
        state.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&backend)
                && fields.get(3) == Some(&server)
                && fields.get(5) == Some(&"2")
        })
    }

    fn wait_for(&self, backend: &str, server: &str, up: bool) {
        let word = if up { "up" } else { "down" };
        wait_until(
            || {
                format!(
                    "haproxy never saw {backend}/{server} {word}:\n{}",
                    self.log()
                )
            },
            || self.is_up(backend, server) == up,
        );
    }

    /// The server the stick table pins device traffic to, if any.
    fn pinned(&self) -> Option<String> {
        let table = self.api("show table tandem_nodes");
        table
            .split_whitespace()
            .find_map(|field| field.strip_prefix("server_key="))
            .map(str::to_owned)
    }

    /// The node that answers a new connection through HAProxy (its name, from `/api/v2/ping`).
    /// `None` when the connection was not passed to a node.
    fn served_by(&self) -> Option<String> {
        let (_, body) = try_https(self.device_port, reqwest::Method::GET, "/api/v2/ping", None)
            .ok()
            .filter(|(code, _)| *code == 200)?;
        let ping: Value = serde_json::from_str(&body).unwrap();
        ping["node"].as_str().map(str::to_owned)
    }

    fn wait_until_served_by(&self, node: &str) {
        wait_until(
            || format!("traffic never reached {node}:\n{}", self.log()),
            || self.served_by().as_deref() == Some(node),
        );
    }

    /// Checks several fresh connections in a row: every one lands on `node`.
    fn assert_served_by(&self, node: &str) {
        for attempt in 0..5 {
            assert_eq!(
                self.served_by().as_deref(),
                Some(node),
                "connection {attempt}; pinned to {:?}:\n{}",
                self.pinned(),
                self.log()
            );
        }
    }

    /// Creates a label through HAProxy: 201 means the node behind it is Active.
    fn write_label(&self, name: &str) {
        let (code, body) = try_https(
            self.device_port,
            reqwest::Method::POST,
            "/api/v2/labels",
            Some(serde_json::json!({ "name": name })),
        )
        .unwrap_or_else(|error| panic!("{error}:\n{}", self.log()));
        assert_eq!(code, 201, "{body}");
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        kill_9(&mut self.child);
    }
}

fn runtime_api(socket: &Path, command: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|error| panic!("runtime API at {}: {error}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Without the interactive prompt HAProxy answers one command and closes the connection.
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Node A (Primary) and node B (its Secondary), each reaching the other only through a link
/// proxy the test can cut: `(a, b, link to A, link to B)`. HA is on, B is Standby and synced.
fn pair() -> (Node, Node, LinkProxy, LinkProxy) {
    let mut a = Node::init("node-a");
    let mut b = Node::init("node-b");
    let to_a = LinkProxy::start(a.ssh_port);
    let to_b = LinkProxy::start(b.ssh_port);
    let primary = address(&to_a);
    let links = Links {
        primary_at: &primary,
        secondary_at: &address(&to_b),
    };
    start_pair(&mut a, &mut b, &links, &[], FAST);
    b.ok(&["failover", "sync", &primary]);
    (a, b, to_a, to_b)
}

fn address(link: &LinkProxy) -> String {
    format!("127.0.0.1:{}", link.port)
}

/// The start every scenario shares: traffic on the Primary, then the Primary is killed and the
/// traffic follows the Secondary once it has promoted itself.
fn fail_over(a: &mut Node, b: &Node, haproxy: &Haproxy) {
    // HAProxy starts with every server up until its first check says otherwise: waiting for the
    // Standby to be marked down means the checks have run.
    haproxy.wait_for("tandem_nodes", "secondary", false);
    assert!(haproxy.is_up("tandem_nodes", "primary"));
    haproxy.assert_served_by("node-a");
    haproxy.write_label("written-through-haproxy-on-a");
    assert_eq!(haproxy.pinned().as_deref(), Some("primary"));
    // The Standby gets no device traffic, but the watch shows it ready to take over.
    assert!(haproxy.is_up("tandem_ha_watch", "secondary"));

    a.kill_9();
    b.wait_for_state("Active");
    haproxy.wait_until_served_by("node-b");
    haproxy.write_label("written-through-haproxy-on-b");
    assert_eq!(haproxy.pinned().as_deref(), Some("secondary"));
    assert!(b.has_label("written-through-haproxy-on-b"));
}

#[test]
fn the_shipped_configuration_is_valid_as_is() {
    let Some(program) = haproxy() else {
        return;
    };
    let mut check = Command::new(program);
    check.args(["-c", "-f", CONFIG]);
    // The file's own defaults (production addresses, chroot and user), not a test's.
    for variable in CONFIG_VARIABLES {
        check.env_remove(variable);
    }
    let output = check.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // HAProxy accepts some mistakes with a warning only: the recipe must have none.
    assert!(!text.contains("WARNING"), "{text}");
    assert!(!text.contains("ALERT"), "{text}");
}

#[test]
fn a_primary_that_returns_active_behind_a_partition_gets_no_traffic_back() {
    let Some(program) = haproxy() else {
        return;
    };
    let (mut a, b, to_a, to_b) = pair();
    let haproxy = Haproxy::start(&program, &a, &b);
    fail_over(&mut a, &b, &haproxy);

    // A restarts while the link between the nodes is cut: it cannot learn of B's epoch 2, so it
    // serves as Active in its old epoch 1 and passes /status/status.html like B. An HAProxy that
    // failed back here would split the fleet across two diverging databases.
    to_a.cut();
    to_b.cut();
    a.serve();
    a.wait_for_state("Active");
    assert_eq!(a.status()["controller"]["epoch"], 1);
    haproxy.wait_for("tandem_nodes", "primary", true);
    haproxy.assert_served_by("node-b");
    haproxy.write_label("written-during-the-partition");
    assert!(b.has_label("written-during-the-partition"));
    assert!(!a.has_label("written-during-the-partition"));
    assert_eq!(haproxy.pinned().as_deref(), Some("secondary"));

    // A reload (a configuration change) keeps the pin: without the local peer, the new worker
    // would start with an empty table and send the next device to the stale Primary.
    assert_eq!(haproxy.reload().as_deref(), Some("secondary"));
    haproxy.wait_for("tandem_nodes", "primary", true);
    haproxy.assert_served_by("node-b");

    // The link returns: B's heartbeats carry epoch 2, A fences itself and fails its check.
    to_a.restore();
    to_b.restore();
    a.wait_until_fenced();
    haproxy.wait_for("tandem_nodes", "primary", false);
    haproxy.wait_for("tandem_ha_watch", "primary", false);
    haproxy.assert_served_by("node-b");
}

#[test]
fn after_the_failback_traffic_stays_on_the_secondary_until_the_operator_resumes() {
    let Some(program) = haproxy() else {
        return;
    };
    let (mut a, b, to_a, to_b) = pair();
    let haproxy = Haproxy::start(&program, &a, &b);
    fail_over(&mut a, &b, &haproxy);

    // The old Primary comes back fenced (Not Available): its check fails, nothing moves.
    a.serve();
    a.wait_until_fenced();
    assert!(!haproxy.is_up("tandem_nodes", "primary"));
    haproxy.assert_served_by("node-b");

    // The guide's failback: sync A from the Active node, then make it Primary (epoch 3). B's
    // heartbeats are held back meanwhile: they would fence B within a second, after which HAProxy
    // moves the traffic because B fails its check. Held, both nodes pass — the case in which only
    // the stick table keeps traffic where it is.
    a.ok(&["failover", "sync", &address(&to_b)]);
    assert!(a.has_label("written-through-haproxy-on-b"));
    to_a.cut();
    // Forced: with B Active and its link held back, Tandem refuses to make A Active beside it;
    // this test wants exactly that both-pass case.
    let promoted = a.ok(&["failover", "mode", "primary", "--force"]);
    assert!(promoted.contains("epoch 3"), "{promoted}");
    haproxy.wait_for("tandem_nodes", "primary", true);
    assert!(haproxy.is_up("tandem_nodes", "secondary"));
    haproxy.assert_served_by("node-b");
    assert_eq!(haproxy.pinned().as_deref(), Some("secondary"));

    // The manual resume, exactly as docs/traffic.md gives it: traffic goes to the Primary at once.
    let answer = haproxy.api("clear table tandem_nodes");
    assert!(answer.trim().is_empty(), "{answer}");
    haproxy.assert_served_by("node-a");
    haproxy.write_label("written-through-haproxy-after-resume");
    assert!(a.has_label("written-through-haproxy-after-resume"));
    assert_eq!(haproxy.pinned().as_deref(), Some("primary"));

    // B goes back to Standby; the traffic stays on A.
    to_a.restore();
    b.ok(&["failover", "mode", "secondary"]);
    b.wait_for_state("Standby");
    haproxy.wait_for("tandem_nodes", "secondary", false);
    haproxy.wait_for("tandem_ha_watch", "secondary", true);
    haproxy.assert_served_by("node-a");
}

/// Debian's HAProxy terminating TLS in front of `tandem lb`'s admin listener: an `https://`
/// witness, as an operator would put one on the network. Its certificate is a fresh
/// self-signed one; nodes pin it.
struct HttpsWitness {
    _temp: tempfile::TempDir,
    child: Child,
    url: String,
    pin: String,
}

impl HttpsWitness {
    fn start(program: &Path, lb_admin: &str) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let issued = tandem_crypto::ServerCertificate::generate(
            &["127.0.0.1".to_owned()],
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let pem = temp.path().join("witness.pem");
        std::fs::write(
            &pem,
            format!("{}{}", issued.certificate_pem, issued.private_key_pem),
        )
        .unwrap();
        let [port] = free_ports::<1>();
        let config = temp.path().join("witness.cfg");
        std::fs::write(
            &config,
            format!(
                "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  \
                 timeout server 5s\nfrontend witness\n  bind 127.0.0.1:{port} ssl crt {}\n  \
                 default_backend controller\nbackend controller\n  server lb {lb_admin}\n",
                pem.display()
            ),
        )
        .unwrap();
        let child = Command::new(program)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "the TLS witness did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            _temp: temp,
            child,
            url: format!("https://127.0.0.1:{port}/witness/primary"),
            pin: issued.sha256_fingerprint,
        }
    }
}

impl Drop for HttpsWitness {
    fn drop(&mut self) {
        kill_9(&mut self.child);
    }
}

/// An `https://` witness during a cut link between the nodes, under load: the Secondary asks it
/// (pinned certificate), it still reaches the Primary, so the Secondary stays Standby; once the
/// link returns nothing is lost and traffic never moved.
#[test]
fn an_https_witness_keeps_the_secondary_standby_when_only_the_link_between_the_nodes_failed() {
    let Some(program) = haproxy() else {
        return;
    };
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let link = LinkProxy::start(a.ssh_port);
    let lb =
        support::lb::Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    let witness = HttpsWitness::start(&program, &lb.admin);
    let primary_at = address(&link);
    let links = Links {
        primary_at: &primary_at,
        secondary_at: &b.endpoint(),
    };
    let mut secondary = vec![
        "--replication",
        "continuous",
        "--witness",
        &witness.url,
        "--witness-pin",
        &witness.pin,
    ];
    secondary.extend_from_slice(FAST);
    start_pair(
        &mut a,
        &mut b,
        &links,
        &["--replication", "continuous"],
        &secondary,
    );
    wait_until(
        || format!("{:#}", b.status()),
        || b.status()["follower"]["connected"] == true,
    );
    lb.wait_until_active("main-primary");
    let workload = support::load::Writers::start(lb.device_port, 3, "https-witness");
    workload.wait_for_more(30, "at the start");
    link.cut();
    wait_until(
        || format!("the Secondary never asked its witness: {:?}", b.ha_log()),
        || {
            b.ha_log().iter().any(|(_, _, message)| {
                message.contains("only the link between this node and the Primary failed")
            })
        },
    );
    assert_eq!(b.state(), "Standby");
    assert_eq!(a.state(), "Active");
    link.restore();
    let acknowledged = workload.stop();
    assert_eq!(lb.status()["switches"], 0, "{:#}", lb.status());
    let lost = support::check::missing(&acknowledged, &a.labels());
    assert!(lost.is_empty(), "{lost:?}");
}
