//! `tandem lb` as an operator runs it: the real binary (no --data-dir) in front of two real
//! `tandem` nodes on loopback, probing them over HTTPS with pinned certificates. Traffic follows
//! the guide's rule, never fails back by itself, moves back on `tandem lb resume`, and the
//! controller's witness keeps a Secondary from promoting when only the nodes' link failed.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use support::node::{
    FAST, Links, Node, STARTUP_DEADLINE, describe, start_pair, tandem, try_https, wait_until,
};
use support::{LinkProxy, free_ports, kill_9};

/// Probe settings for the tests: a dead backend is down after 3 × 400 ms; a TLS handshake on a
/// loaded 2-core machine fits the timeout.
const PROBES: &str = "probe_interval = \"400ms\"\nprobe_timeout = \"350ms\"\nfall = 3\nrise = 2\n";

/// A running `tandem lb`.
struct Lb {
    _temp: tempfile::TempDir,
    child: Child,
    device_port: u16,
    admin: String,
    log: PathBuf,
}

impl Lb {
    /// Starts the controller in front of `backends` (`(name, node, group)` in order).
    fn start(backends: &[(&str, &Node, &str)]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let [device_port, admin_port] = free_ports::<2>();
        let admin = format!("127.0.0.1:{admin_port}");
        let pins: Vec<String> = backends
            .iter()
            .map(|(_, node, _)| format!("{:?}", node.server_certificate_sha256))
            .collect();
        let mut text = format!(
            "listen = \"127.0.0.1:{device_port}\"\nadmin = \"{admin}\"\n{PROBES}\
             [probe_tls]\npinned_sha256 = [{}]\n",
            pins.join(", ")
        );
        for (name, node, group) in backends {
            text += &format!(
                "[[backend]]\nname = \"{name}\"\naddress = \"127.0.0.1:{}\"\ngroup = \"{group}\"\n",
                node.service_port
            );
        }
        let config = temp.path().join("lb.toml");
        std::fs::write(&config, text).unwrap();
        let log = temp.path().join("lb.log");
        let child = tandem()
            .env_remove("TANDEM_DATA_DIR")
            .env("TANDEM_LOG", "info")
            .args(["lb", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "tandem lb did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            _temp: temp,
            child,
            device_port,
            admin,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `tandem lb ARGS --admin ADDR`.
    fn cli(&self, args: &[&str]) -> Output {
        tandem()
            .env_remove("TANDEM_DATA_DIR")
            .arg("lb")
            .args(args)
            .args(["--admin", &self.admin])
            .output()
            .unwrap()
    }

    /// `tandem lb status --json` (exit 0 while a backend takes traffic, 3 otherwise).
    fn status(&self) -> Value {
        let output = self.cli(&["status", "--json"]);
        assert!(
            matches!(output.status.code(), Some(0 | 3)),
            "{}",
            describe(&output)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn active(&self) -> Option<String> {
        self.status()["active"].as_str().map(str::to_owned)
    }

    fn wait_until_active(&self, backend: &str) {
        wait_until(
            || {
                format!(
                    "traffic never went to {backend}: {:#}\n{}",
                    self.status(),
                    self.log()
                )
            },
            || self.active().as_deref() == Some(backend),
        );
    }

    fn backend<'a>(status: &'a Value, name: &str) -> &'a Value {
        status["backends"]
            .as_array()
            .and_then(|backends| backends.iter().find(|backend| backend["name"] == name))
            .unwrap_or_else(|| panic!("no backend {name} in {status:#}"))
    }

    /// The node that answers a new connection through the controller (`/api/v2/ping`).
    fn served_by(&self) -> Option<String> {
        let (_, body) = try_https(self.device_port, reqwest::Method::GET, "/api/v2/ping", None)
            .ok()
            .filter(|(code, _)| *code == 200)?;
        let ping: Value = serde_json::from_str(&body).unwrap();
        ping["node"].as_str().map(str::to_owned)
    }

    /// The witness answer, read as the Secondary reads it (plain HTTP, `{"reachable": bool}`).
    fn witness(&self) -> Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.admin).unwrap();
        write!(
            stream,
            "GET /witness/primary HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        kill_9(&mut self.child);
    }
}

/// Makes `a` the Primary and `b` its Secondary (trusted both ways, fast Fail Over Controls,
/// `secondary_extra` HA options), B reaching A through `link` when given; starts both and syncs B.
fn pair(a: &mut Node, b: &mut Node, link: Option<&LinkProxy>, secondary_extra: &[&str]) {
    let primary_at = link.map_or_else(|| a.endpoint(), |link| format!("127.0.0.1:{}", link.port));
    let links = Links {
        primary_at: &primary_at,
        secondary_at: &b.endpoint(),
    };
    let mut options = FAST.to_vec();
    options.extend_from_slice(secondary_extra);
    start_pair(a, b, &links, &[], &options);
    b.ok(&["failover", "sync", &primary_at]);
}

#[test]
fn traffic_follows_the_promoted_secondary_never_fails_back_and_resumes_by_hand() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    pair(&mut a, &mut b, None, &[]);
    lb.wait_until_active("main-primary");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));
    wait_until(
        || format!("{:#}", lb.status()),
        || {
            let status = lb.status();
            let secondary = Lb::backend(&status, "main-secondary");
            secondary["hastatus"]["state"] == "up" && secondary["status"]["state"] == "down"
        },
    );
    assert_eq!(lb.witness(), serde_json::json!({"reachable": true}));
    let text = String::from_utf8_lossy(&lb.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("Traffic goes to:  main-primary"), "{text}");

    // The Primary dies: traffic moves once the Secondary has promoted itself.
    a.kill_9();
    b.wait_for_state("Active");
    lb.wait_until_active("main-secondary");
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
    let status = lb.status();
    let reason = status["lastSwitch"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("main-primary failed 3 status probes"),
        "{status:#}"
    );
    assert!(reason.contains("connect"), "{status:#}");
    assert_eq!(status["switches"], 1);

    // The old Primary returns, fenced: traffic stays, and a resume to it is refused.
    a.serve();
    a.wait_until_fenced();
    let refused = lb.cli(&["resume", "--to", "main-primary"]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("main-primary cannot take traffic"),
        "{stderr}"
    );
    assert!(
        stderr.contains("traffic stays on main-secondary"),
        "{stderr}"
    );
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));

    // The guide's failback: sync the old Primary, make it Primary. The controller does not move
    // by itself while node-b still answers as Active; the operator resumes.
    a.ok(&["failover", "sync", &b.endpoint()]);
    a.ok(&["failover", "mode", "primary"]);
    wait_until(
        || format!("main-primary never passed its probes: {:#}", lb.status()),
        || Lb::backend(&lb.status(), "main-primary")["status"]["state"] == "up",
    );
    if b.state() == "Active" {
        assert_eq!(lb.active().as_deref(), Some("main-secondary"));
    }
    let resumed = lb.cli(&["resume"]);
    assert!(resumed.status.success(), "{}", describe(&resumed));
    lb.wait_until_active("main-primary");
    b.ok(&["failover", "mode", "secondary"]);
    b.wait_for_state("Standby");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));

    // Metrics count what happened.
    let (code, metrics) = admin_get(&lb.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("tandem_lb_active{backend=\"main-primary\"} 1"),
        "{metrics}"
    );
    let switches: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("tandem_lb_switches_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(switches >= 2, "{metrics}");
    assert!(metrics.contains("tandem_lb_connections_total{backend=\"main-secondary\"}"));
    let log = lb.log();
    assert!(log.contains("traffic switched"), "{log}");
}

#[test]
fn the_controllers_witness_keeps_the_secondary_standby_when_only_the_link_failed() {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    // B reaches A only through a link the test can cut; the controller reaches both directly.
    let link = LinkProxy::start(a.ssh_port);
    let lb = Lb::start(&[("main-primary", &a, "main"), ("main-secondary", &b, "main")]);
    let witness = format!("http://{}/witness/primary", lb.admin);
    pair(&mut a, &mut b, Some(&link), &["--witness", &witness]);
    lb.wait_until_active("main-primary");

    link.cut();
    let only_the_link = |b: &Node| {
        b.ha_log().iter().any(|(_, _, message)| {
            message.contains("only the link between this node and the Primary failed")
        })
    };
    wait_until(|| format!("{:?}", b.ha_log()), || only_the_link(&b));
    assert_eq!(b.state(), "Standby");
    assert_eq!(a.state(), "Active");
    assert_eq!(lb.served_by().as_deref(), Some("node-a"));

    // Now the Primary really dies: the witness no longer reaches it, B promotes, traffic follows.
    a.kill_9();
    b.wait_for_state("Active");
    lb.wait_until_active("main-secondary");
    assert_eq!(lb.served_by().as_deref(), Some("node-b"));
}

fn admin_get(admin: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

#[test]
fn the_command_line_names_bad_input_and_needs_no_data_directory() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("lb.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:9443\"\nadmin = \"127.0.0.1:9444\"\nfall = 0\n\
         [probe_tls]\ninsecure = true\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        tandem()
            .env_remove("TANDEM_DATA_DIR")
            .args(args)
            .output()
            .unwrap()
    };
    let bad = run(&["lb", "--config", config.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("fall = 0: must be between 1 and 100"),
        "{}",
        describe(&bad)
    );
    let missing = run(&["lb"]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--config FILE"));
    let [port] = free_ports::<1>();
    let unreachable = run(&["lb", "status", "--admin", &format!("127.0.0.1:{port}")]);
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        describe(&unreachable)
    );
    assert!(
        String::from_utf8_lossy(&unreachable.stderr)
            .contains("cannot reach the traffic controller"),
        "{}",
        describe(&unreachable)
    );
}
