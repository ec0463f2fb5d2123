//! A `tandem` node as the process-level tests run it: its own data directory and loopback
//! listeners, driven through the real binary (`tests/ha.rs`, `tests/haproxy.rs`, `tests/lb.rs`).

use super::{free_ports, kill_9};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a started node may take to accept connections.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long a test waits for a state it expects: far above Tandem's detection times with
/// [`FAST`], so a slow machine only makes a test slower. Time bounds themselves are checked from
/// the nodes' own log timestamps, never from this deadline.
pub const STATE_DEADLINE: Duration = Duration::from_secs(45);
pub const PASSWORD: &str = "correct-horse-1";
/// Fail Over Controls for the tests: detection within a few seconds.
pub const FAST: &[&str] = &[
    "--heartbeat-interval",
    "1s",
    "--recheck-interval",
    "1s",
    "--heartbeat-failures",
    "3",
];

pub fn tandem() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.env("TANDEM_LOG", "warn");
    command
}

pub struct Node {
    _temp: tempfile::TempDir,
    pub dir: PathBuf,
    pub ssh_port: u16,
    pub service_port: u16,
    pub sysmgr_port: u16,
    /// Of the certificate `init` created (the node serves its Primary's once it has synced).
    pub server_certificate_sha256: String,
    child: Option<Child>,
    /// Extra environment for `serve` (e.g. libfaketime, or a debug build's
    /// `TANDEM_TEST_SOFTWARE_VERSION`).
    pub serve_env: Vec<(String, String)>,
}

impl Node {
    pub fn init(name: &str) -> Self {
        Self::init_in(name, &std::env::temp_dir())
    }

    /// A node whose data directory is under `parent` (e.g. a small file system of its own).
    pub fn init_in(name: &str, parent: &std::path::Path) -> Self {
        let temp = tempfile::tempdir_in(parent).unwrap();
        let dir = temp.path().join(name);
        let password_file = temp.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let [ssh_port, service_port, sysmgr_port] = free_ports::<3>();
        let output = tandem()
            .arg("--data-dir")
            .arg(&dir)
            .args(["init", "--name", name])
            .args(["--service-addr", &format!("127.0.0.1:{service_port}")])
            .args(["--sysmgr-addr", &format!("127.0.0.1:{sysmgr_port}")])
            .args(["--ssh-addr", &format!("127.0.0.1:{ssh_port}")])
            .arg("--admin-password-file")
            .arg(&password_file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "init failed: {}",
            describe(&output)
        );
        let printed = String::from_utf8_lossy(&output.stdout);
        let server_certificate_sha256 = printed
            .lines()
            .find_map(|line| line.trim().strip_prefix("server certificate   SHA-256 "))
            .unwrap_or_else(|| panic!("init printed no certificate fingerprint: {printed}"))
            .to_owned();
        Self {
            _temp: temp,
            dir,
            ssh_port,
            service_port,
            sysmgr_port,
            server_certificate_sha256,
            child: None,
            serve_env: Vec::new(),
        }
    }

    /// A new node restored from `backup` (`tandem restore`), on listeners of its own.
    pub fn restore(name: &str, backup: &std::path::Path) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(name);
        let [ssh_port, service_port, sysmgr_port] = free_ports::<3>();
        let output = tandem()
            .arg("--data-dir")
            .arg(&dir)
            .args(["restore", "--name", name, "--from"])
            .arg(backup)
            .args(["--service-addr", &format!("127.0.0.1:{service_port}")])
            .args(["--sysmgr-addr", &format!("127.0.0.1:{sysmgr_port}")])
            .args(["--ssh-addr", &format!("127.0.0.1:{ssh_port}")])
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "restore failed: {}",
            describe(&output)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        Self {
            _temp: temp,
            dir,
            ssh_port,
            service_port,
            sysmgr_port,
            server_certificate_sha256: report["serverCertificateSha256"]
                .as_str()
                .unwrap()
                .to_owned(),
            child: None,
            serve_env: Vec::new(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.ssh_port)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        tandem()
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "`tandem {}` failed: {}",
            args.join(" "),
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn trust(&self, other: &Node) {
        let key = other.ok(&["ha", "local-key"]);
        self.ok(&[
            "ha",
            "trusted-hosts",
            "add",
            &other.endpoint(),
            "--key",
            key.trim(),
        ]);
    }

    /// Trusts `other` reached at `address` (a link proxy, so the test can cut the network).
    pub fn trust_at(&self, other: &Node, address: &str) {
        let key = other.ok(&["ha", "local-key"]);
        self.ok(&["ha", "trusted-hosts", "add", address, "--key", key.trim()]);
    }

    /// The names of every label this node holds (all pages of the admin API).
    pub fn labels(&self) -> std::collections::HashSet<String> {
        let mut names = std::collections::HashSet::new();
        let mut offset = 0;
        loop {
            let (code, body) = self.get(&format!("/api/v2/labels?limit=200&offset={offset}"));
            assert_eq!(code, 200, "{body}");
            let page: Value = serde_json::from_str(&body).unwrap();
            let results = page["results"].as_array().cloned().unwrap_or_default();
            names.extend(
                results
                    .iter()
                    .filter_map(|label| label["name"].as_str().map(str::to_owned)),
            );
            if page["hasMore"] != true {
                return names;
            }
            offset += results.len();
        }
    }

    /// Whether this node holds a label named `name` (asked directly, not through a balancer).
    pub fn has_label(&self, name: &str) -> bool {
        let (code, body) = self.get(&format!("/api/v2/labels?query={name}"));
        assert_eq!(code, 200, "{body}");
        body.contains(name)
    }

    /// Starts the node (with `serve_env`) and waits until it accepts connections.
    pub fn serve(&mut self) {
        // Beside the data dir, kept across restarts, shown when the node fails to start.
        let stderr_path = self.dir.with_extension("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let child = tandem()
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .envs(self.serve_env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while !(self.dir.join("control.sock").exists()
            && std::net::TcpStream::connect(("127.0.0.1", self.service_port)).is_ok())
        {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            assert!(
                exited.is_none() && started.elapsed() < STARTUP_DEADLINE,
                "the node did not start ({exited:?}); its stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the running process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the node runs");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_9(&mut child);
        }
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["ha", "status", "--json"])).unwrap()
    }

    /// Sync History, newest first (`tandem ha history --json`).
    pub fn history(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["ha", "history", "--json"])).unwrap()
    }

    /// Restarts the node as if it ran another release (the guide's upgrade window): its peers
    /// of this build see other software and schema versions. Debug builds only honour it.
    pub fn restart_as_another_version(&mut self) {
        self.kill_9();
        self.serve_env = vec![(
            "TANDEM_TEST_SOFTWARE_VERSION".into(),
            "9.9.9-upgraded".into(),
        )];
        self.serve();
    }

    pub fn state(&self) -> String {
        self.status()["controller"]["status"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn wait_for_state(&self, state: &str) {
        let started = Instant::now();
        while self.state() != state {
            assert!(
                started.elapsed() < STATE_DEADLINE,
                "{} never became {state}; status: {:#}",
                self.dir.display(),
                self.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the controller has finished asking its peers and is fenced: a restarted
    /// node reports Not Available while it still checks, before the fencing decision.
    pub fn wait_until_fenced(&self) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status();
            if status["controller"]["fenced"].is_string() {
                return status;
            }
            assert!(
                started.elapsed() < STATE_DEADLINE,
                "{} was never fenced; status: {status:#}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `(status code, body)` of a GET on the service listener.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(reqwest::Method::GET, path, None)
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        https(self.service_port, method, path, body)
    }

    /// The HighAvailability log, oldest first: `(at, level, message)`.
    pub fn ha_log(&self) -> Vec<(String, String, String)> {
        self.log("HighAvailability")
    }

    /// One module of the node-local log, oldest first: `(at, level, message)`.
    pub fn log(&self, module: &str) -> Vec<(String, String, String)> {
        let conn = rusqlite::Connection::open_with_flags(
            self.dir.join("node.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut statement = conn
            .prepare("SELECT at, level, message FROM local_log WHERE module = ?1 ORDER BY id")
            .unwrap();
        statement
            .query_map([module], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

/// `(status code, body)` of a request, as admin, to a TLS listener on loopback `port`.
pub fn https(port: u16, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
    try_https(port, method, path, body).unwrap_or_else(|error| panic!("port {port}: {error}"))
}

/// As [`https`], to a node's service listener or a load balancer's device port that passes the
/// TLS stream through to one. Every call opens a new connection, so through a load balancer each
/// call is a fresh routing decision. `Err` when no TLS session could be had, e.g. the load
/// balancer had no backend to pass the connection to.
pub fn try_https(
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, String), String> {
    try_https_within(port, method, path, body, Duration::from_secs(10))
}

/// [`try_https`] with the client giving up after `timeout`.
pub fn try_https_within(
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let body = body.map_or(Body::Empty, Body::Json);
    let (status, bytes) = send(port, method, path, body, timeout)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// `(status code, body)` of a request as admin with a raw body (an app file upload), answering
/// the raw body.
pub fn raw(port: u16, method: reqwest::Method, path: &str, bytes: Vec<u8>) -> (u16, Vec<u8>) {
    send(
        port,
        method,
        path,
        Body::Raw(bytes),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|error| panic!("{path}: {error}"))
}

enum Body {
    Empty,
    Json(Value),
    Raw(Vec<u8>),
}

fn send(
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: Body,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let mut call = Call::new(port, method, path).timeout(timeout);
    call.body = body;
    call.send().map(|reply| (reply.status, reply.body))
}

/// One HTTPS request to a node's listener on a connection of its own, as admin unless told
/// otherwise, marked as a script's (`X-Tandem-Client`) so the cross-site guard lets its writes
/// through. The node's certificate is not checked: a promoted Secondary serves the Primary's,
/// and the tests tell nodes apart by what they answer.
pub struct Call {
    port: u16,
    method: reqwest::Method,
    path: String,
    from: Option<std::net::IpAddr>,
    credentials: Option<(String, String)>,
    headers: Vec<(String, String)>,
    body: Body,
    identity: Option<String>,
    timeout: Duration,
}

/// What a [`Call`] got back.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Call {
    pub fn new(port: u16, method: reqwest::Method, path: &str) -> Self {
        Self {
            port,
            method,
            path: path.to_owned(),
            from: None,
            credentials: Some(("admin".into(), PASSWORD.into())),
            headers: vec![("X-Tandem-Client".into(), "tests".into())],
            body: Body::Empty,
            identity: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// From this loopback address (127.0.0.0/8), for tests of per-address limits.
    pub fn from(mut self, address: std::net::IpAddr) -> Self {
        self.from = Some(address);
        self
    }

    /// As this user (`None`: no credentials).
    pub fn user(mut self, credentials: Option<(&str, &str)>) -> Self {
        self.credentials = credentials.map(|(user, password)| (user.into(), password.into()));
        self
    }

    /// Exactly these headers instead of the script's mark.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Self {
        self.headers = headers
            .iter()
            .map(|(name, value)| ((*name).into(), (*value).into()))
            .collect();
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    /// A body sent as it is, with whatever content type the headers say.
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(body.into());
        self
    }

    /// A client certificate and key (PEM, concatenated).
    pub fn identity(mut self, pem: &str) -> Self {
        self.identity = Some(pem.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends it and reads the whole answer; `Err` when no answer came (refused, closed, timed
    /// out).
    pub fn send(self) -> Result<Reply, String> {
        tandem_crypto::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut client = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                // A test sees each answer as sent: a console's 303 to its login page is the
                // answer under test, not a page to follow.
                .redirect(reqwest::redirect::Policy::none())
                .local_address(self.from)
                .timeout(self.timeout);
            if let Some(pem) = &self.identity {
                client = client.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
            }
            let mut request = client.build().unwrap().request(
                self.method,
                format!("https://127.0.0.1:{}{}", self.port, self.path),
            );
            if let Some((user, password)) = &self.credentials {
                request = request.basic_auth(user, Some(password));
            }
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            request = match self.body {
                Body::Empty => request,
                Body::Json(body) => request.json(&body),
                Body::Raw(bytes) => request.body(bytes),
            };
            let response = request.send().await.map_err(|error| format!("{error:?}"))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|error| error.to_string())?;
            Ok(Reply {
                status,
                headers,
                body: body.to_vec(),
            })
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}

pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Polls `condition` until it holds; panics with `what` (evaluated then) after the deadline.
pub fn wait_until(what: impl Fn() -> String, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < STATE_DEADLINE, "{}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where each node of a pair reaches the other: directly, or through link proxies the test can
/// cut (`primary_at` is how B reaches A, `secondary_at` how A reaches B).
pub struct Links<'a> {
    pub primary_at: &'a str,
    pub secondary_at: &'a str,
}

/// Makes `a` the Primary (with `primary_options`) and `b` its Secondary (with
/// `secondary_options`), trusted both ways as `links` says; starts both and waits until A is
/// Active and B Standby. Callers add what their scenario needs (a first sync, a follower).
pub fn start_pair(
    a: &mut Node,
    b: &mut Node,
    links: &Links,
    primary_options: &[&str],
    secondary_options: &[&str],
) {
    a.trust_at(b, links.secondary_at);
    b.trust_at(a, links.primary_at);
    let mut primary = vec!["ha", "configure", "--enable", "--mode", "primary"];
    primary.extend_from_slice(primary_options);
    a.ok(&primary);
    configure_secondary(b, links.primary_at, secondary_options);
    a.serve();
    a.wait_for_state("Active");
    b.serve();
    b.wait_for_state("Standby");
}

/// `tandem ha configure`: `node` an HA Secondary of `primary` (HOST:PORT, possibly a link
/// proxy), with `options`.
pub fn configure_secondary(node: &Node, primary: &str, options: &[&str]) {
    let mut args = vec![
        "ha",
        "configure",
        "--enable",
        "--mode",
        "secondary",
        "--primary",
        primary,
    ];
    args.extend_from_slice(options);
    node.ok(&args);
}

/// Main Primary A, main Secondary B (continuous, following A), DR Secondary C following B on
/// Keep in Standby; every node trusts its neighbours, and A and C each other when `a_trusts_c`.
pub fn three_servers(a_trusts_c: bool) -> (Node, Node, Node) {
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    let mut secondary = vec!["--replication", "continuous"];
    secondary.extend_from_slice(FAST);
    let mut primary = vec!["--replication", "continuous"];
    primary.extend_from_slice(FAST);
    start_pair(&mut a, &mut b, &links, &primary, &secondary);
    wait_until(
        || format!("{:#}", b.status()),
        || b.status()["follower"]["connected"] == true,
    );
    let mut c = Node::init("node-c");
    b.trust(&c);
    c.trust(&b);
    if a_trusts_c {
        a.trust(&c);
        c.trust(&a);
    }
    let mut dr = vec!["--replication", "continuous", "--on-failure", "standby"];
    dr.extend_from_slice(FAST);
    configure_secondary(&c, &b.endpoint(), &dr);
    c.serve();
    c.wait_for_state("Standby");
    wait_until(
        || format!("{:#}", c.status()),
        || c.status()["follower"]["connected"] == true,
    );
    (a, b, c)
}
