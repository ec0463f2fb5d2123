//! `tandem lb` as the process-level tests run it: the real binary (no `--data-dir`) in front of
//! real nodes, probing them over HTTPS with the certificates they were created with.

use super::node::{Node, STARTUP_DEADLINE, describe, tandem, try_https, wait_until};
use super::{free_ports, kill_9};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Probe settings for the tests: a dead backend is down after 3 × 400 ms; a TLS handshake on a
/// loaded 2-core machine fits the timeout.
const PROBES: &str = "probe_interval = \"400ms\"\nprobe_timeout = \"350ms\"\nfall = 3\nrise = 2\n";

/// A running `tandem lb`.
pub struct Lb {
    temp: tempfile::TempDir,
    child: Child,
    pub device_port: u16,
    pub admin: String,
    config: PathBuf,
    log: PathBuf,
}

/// Starts `tandem lb --config CONFIG` (stderr appended to `log`) and waits for its admin port.
fn spawn(config: &std::path::Path, log: &std::path::Path, admin: &str) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = tandem()
        .env_remove("TANDEM_DATA_DIR")
        .env("TANDEM_LOG", "info")
        .args(["lb", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(
            started.elapsed() < STARTUP_DEADLINE,
            "tandem lb did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Lb {
    /// Starts the controller in front of `backends` (`(name, node, group)` in order).
    pub fn start(backends: &[(&str, &Node, &str)]) -> Self {
        let ports: Vec<u16> = backends
            .iter()
            .map(|(_, node, _)| node.service_port)
            .collect();
        Self::start_through(backends, &ports)
    }

    /// As [`Self::start`], reaching each backend at the loopback port given for it (a link
    /// proxy the test can cut, in front of the node's service port).
    pub fn start_through(backends: &[(&str, &Node, &str)], ports: &[u16]) -> Self {
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
        for ((name, _, group), port) in backends.iter().zip(ports) {
            text += &format!(
                "[[backend]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\ngroup = \"{group}\"\n"
            );
        }
        let config = temp.path().join("lb.toml");
        std::fs::write(&config, text).unwrap();
        let log = temp.path().join("lb.log");
        let child = spawn(&config, &log, &admin);
        Self {
            temp,
            child,
            config,
            device_port,
            admin,
            log,
        }
    }

    /// `kill -9` of the controller, then a new one with the same configuration (same ports).
    pub fn kill_9_and_restart(&mut self, down_for: Duration) {
        self.kill_9();
        std::thread::sleep(down_for);
        self.restart();
    }

    /// `kill -9` of the controller (its state file stays, as after a crash).
    pub fn kill_9(&mut self) {
        kill_9(&mut self.child);
    }

    /// Starts the controller again with the same configuration, ports and state file.
    pub fn restart(&mut self) {
        self.child = spawn(&self.config, &self.log, &self.admin);
    }

    /// The state file: the default one, beside the configuration.
    pub fn state_file(&self) -> PathBuf {
        self.temp.path().join("lb-state.json")
    }

    /// The value of an unlabelled metric in `GET /metrics`.
    pub fn metric(&self, name: &str) -> String {
        let (code, metrics) = admin_get(&self.admin, "/metrics");
        assert_eq!(code, 200, "{metrics}");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `tandem lb ARGS --admin ADDR`.
    pub fn cli(&self, args: &[&str]) -> Output {
        tandem()
            .env_remove("TANDEM_DATA_DIR")
            .arg("lb")
            .args(args)
            .args(["--admin", &self.admin])
            .output()
            .unwrap()
    }

    /// `tandem lb status --json` (exit 0 while a backend takes traffic, 3 otherwise).
    pub fn status(&self) -> Value {
        let output = self.cli(&["status", "--json"]);
        assert!(
            matches!(output.status.code(), Some(0 | 3)),
            "{}",
            describe(&output)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub fn active(&self) -> Option<String> {
        self.status()["active"].as_str().map(str::to_owned)
    }

    pub fn wait_until_active(&self, backend: &str) {
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

    pub fn backend<'a>(status: &'a Value, name: &str) -> &'a Value {
        status["backends"]
            .as_array()
            .and_then(|backends| backends.iter().find(|backend| backend["name"] == name))
            .unwrap_or_else(|| panic!("no backend {name} in {status:#}"))
    }

    /// The node that answers a new connection through the controller (`/api/v2/ping`).
    pub fn served_by(&self) -> Option<String> {
        let (_, body) = try_https(self.device_port, reqwest::Method::GET, "/api/v2/ping", None)
            .ok()
            .filter(|(code, _)| *code == 200)?;
        let ping: Value = serde_json::from_str(&body).unwrap();
        ping["node"].as_str().map(str::to_owned)
    }

    /// The witness answer, read as the Secondary reads it (plain HTTP, `{"reachable": bool}`).
    pub fn witness(&self) -> Value {
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

/// `(status code, body)` of a plain-HTTP GET on the admin listener.
pub fn admin_get(admin: &str, path: &str) -> (u16, String) {
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
