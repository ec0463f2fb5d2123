//! Tests of the `tandem` binary as an operator runs it: real processes, real ports, real files.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, kill_9};

const PASSWORD: &str = "correct-horse-1";
/// How long a started node may take to answer its first probe before the test gives up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

fn tandem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
}

struct TestNode {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    service_port: u16,
}

impl TestNode {
    fn init() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("node");
        let password_file = temp.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let service_port = free_port();
        let output = tandem()
            .arg("--data-dir")
            .arg(&dir)
            .args(["init", "--name", "node-a"])
            .args(["--service-addr", &format!("127.0.0.1:{service_port}")])
            .args(["--sysmgr-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--ssh-addr", &format!("127.0.0.1:{}", free_port())])
            .arg("--admin-password-file")
            .arg(&password_file)
            .output()
            .unwrap();
        assert!(output.status.success(), "init failed: {output:?}");
        Self {
            _temp: temp,
            dir,
            service_port,
        }
    }

    fn serve(&self) -> Child {
        tandem()
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.service_port)
    }

    fn client(&self) -> reqwest::Client {
        let pem = server_certificate(&self.dir.join("replicated.db"));
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    }

    async fn wait_until_serving(&self, client: &reqwest::Client, child: &mut Child) {
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(self.url("/status/status.html")).send().await
                && response.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the node exited during start-up with {status}: {}",
                    stderr(child)
                );
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "the node did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn stderr(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

fn server_certificate(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT certificate_pem FROM pki_material WHERE name = 'server_tls'",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

fn run(args: &[&str], data_dir: &Path) -> Output {
    tandem()
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    tandem_crypto::install_crypto_provider();
    let node = TestNode::init();
    let mut child = node.serve();
    let client = node.client();
    node.wait_until_serving(&client, &mut child).await;

    let response = client
        .post(node.url("/api/v2/users"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&serde_json::json!({"principal": "load@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // Writers register devices as fast as they can and remember every acknowledged one.
    const WRITERS: usize = 16;
    const ACKNOWLEDGED_BEFORE_KILL: usize = 400;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, url, acknowledged) = (
            client.clone(),
            node.url("/api/v2/devices"),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for sequence in 0.. {
                let body = serde_json::json!({
                    "platform": "Android",
                    "serial": format!("W{writer}S{sequence}"),
                    "userPrincipal": "load@example.com",
                });
                let sent = client
                    .post(&url)
                    .basic_auth("admin", Some(PASSWORD))
                    .json(&body)
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 201 {
                    return;
                }
                let Ok(device) = response.json::<serde_json::Value>().await else {
                    return;
                };
                let uuid = device["uuid"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push(uuid);
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < ACKNOWLEDGED_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Kill mid-stream: writes are in flight in every writer.
    assert!(kill_9(&mut child));
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= ACKNOWLEDGED_BEFORE_KILL);

    // The database is intact and holds every acknowledged write.
    {
        let conn = rusqlite::Connection::open(node.dir.join("replicated.db")).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let mut find = conn
            .prepare("SELECT count(*) FROM devices WHERE uuid = ?1")
            .unwrap();
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|uuid| find.query_row([uuid], |row| row.get::<_, i64>(0)).unwrap() != 1)
            .collect();
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    }

    // The node restarts on the same data and serves it.
    let mut child = node.serve();
    node.wait_until_serving(&client, &mut child).await;
    let count: serde_json::Value = client
        .get(node.url("/api/v2/devices/count"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(count["count"].as_u64().unwrap() >= acknowledged.len() as u64);
    assert!(kill_9(&mut child));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_cleanly() {
    tandem_crypto::install_crypto_provider();
    let node = TestNode::init();
    let mut child = node.serve();
    let client = node.client();
    node.wait_until_serving(&client, &mut child).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let log = stderr(&mut child);
    assert!(exit.success(), "exit {exit}: {log}");
    assert!(log.contains("stopped cleanly"), "{log}");
}

#[test]
fn init_refuses_to_overwrite_a_node() {
    let node = TestNode::init();
    let output = run(&["init", "--name", "again"], &node.dir);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("already holds a Tandem node"), "{message}");
    assert!(message.contains("refusing to overwrite"), "{message}");
}

#[test]
fn init_prints_a_generated_password_once() {
    let temp = tempfile::tempdir().unwrap();
    let output = run(&["init", "--name", "node-b"], &temp.path().join("n"));
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("password: "), "{text}");
    assert!(text.contains("shown only this once"), "{text}");
    assert!(text.contains("ssh-ed25519 AAAA"), "{text}");
}

#[test]
fn serve_explains_a_missing_or_foreign_data_dir() {
    let temp = tempfile::tempdir().unwrap();
    let missing = run(&["serve"], &temp.path().join("nowhere"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tandem init"));

    std::fs::write(temp.path().join("something.txt"), "x").unwrap();
    let foreign = run(&["serve"], temp.path());
    assert_eq!(foreign.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("is not a Tandem data dir"));
}

#[test]
fn serve_refuses_a_database_it_cannot_open() {
    let node = TestNode::init();
    std::fs::write(node.dir.join("replicated.db"), b"this is not a database").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(node.dir.join(format!("replicated.db{suffix}")));
    }
    let output = run(&["serve"], &node.dir);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("replicated.db"), "{message}");
}

#[test]
fn serve_fails_fast_on_a_busy_port() {
    let node = TestNode::init();
    let _occupied = TcpListener::bind(("127.0.0.1", node.service_port)).unwrap();
    let output = run(&["serve"], &node.dir);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("cannot listen on"), "{message}");
    assert!(message.contains("[listeners] service"), "{message}");
}

#[test]
fn missing_data_dir_option_is_a_usage_error() {
    let output = tandem()
        .env_remove("TANDEM_DATA_DIR")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("TANDEM_DATA_DIR"));
}

/// `tandem ha status | head -1`: the reader closes the pipe early. The command used to panic on
/// the broken pipe (exit 101) about one time in eleven; now the rest of the output is dropped
/// and the command ends as it would have. The pipe is closed before the command writes
/// anything, so every run meets the broken pipe.
#[test]
fn a_closed_stdout_ends_no_command_with_a_panic() {
    let node = TestNode::init();
    for args in [
        vec!["ha", "status"],
        vec!["ha", "status", "--json"],
        vec!["ha", "local-key"],
    ] {
        let mut child = tandem()
            .arg("--data-dir")
            .arg(&node.dir)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// One process at a time writes a node's databases: a second `serve` on a served data
/// directory is refused at once, naming the first one's pid (before, it raced the first for the
/// databases and failed only at its listeners, if they were taken). Commands go through the
/// serving node, and the lock is released by a `kill -9`.
#[tokio::test]
async fn a_second_process_cannot_open_a_node_that_one_serves() {
    tandem_crypto::install_crypto_provider();
    let node = TestNode::init();
    let mut first = node.serve();
    let client = node.client();
    node.wait_until_serving(&client, &mut first).await;
    let second = run(&["serve"], &node.dir);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.id())) && stderr.contains("`tandem serve"),
        "names the holder: {stderr}"
    );
    // A command finds the serving node and runs there.
    let status = run(&["ha", "status", "--json"], &node.dir);
    assert!(status.status.success(), "{status:?}");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("\"running\": true"), "{stdout}");
    kill_9(&mut first);
    // The kernel released the lock with the process: the node opens again.
    let status = run(&["ha", "status", "--json"], &node.dir);
    assert!(status.status.success(), "{status:?}");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("\"running\": false"), "{stdout}");
}

/// A device refused by a node (not Active, or device connections disabled) gets the 503 that
/// says why over HTTP/2 as well: the refusal used to be sent before the request body was read,
/// and the stream then ended in a reset that clients (curl exit 92) report as a stream error.
#[test]
fn refused_device_requests_get_their_503_over_http2() {
    if Command::new("curl").arg("--version").output().is_err() {
        return support::skip_without("curl", "it speaks HTTP/2", "apt-get install curl");
    }
    let mut node = support::node::Node::init("node-a");
    node.serve();
    node.wait_for_state("Active");
    node.ok(&["failover", "client-connection", "disable"]);
    let url = format!("https://127.0.0.1:{}/device/v1/enroll", node.service_port);
    // Each attempt opens its own connection: the refusal is per connection.
    for attempt in 0..10 {
        let output = Command::new("curl")
            .args([
                "-sk",
                "--http2",
                "-o",
                "-",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .args([
                "-H",
                "Content-Type: application/json",
                "-d",
                r#"{"pin":"000000"}"#,
            ])
            .arg(&url)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "attempt {attempt}: curl failed: {output:?}"
        );
        assert!(printed.ends_with("503 2"), "attempt {attempt}: {printed}");
        assert!(
            printed.contains("client-connection enable"),
            "attempt {attempt}: {printed}"
        );
    }
}
