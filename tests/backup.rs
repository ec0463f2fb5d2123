//! `tandem backup` and `tandem restore` with real nodes: an online backup under write load, a
//! restored node that `tandem ha verify` finds identical to its source, and the refusals.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::Instant;
use support::load::Writers;
use support::node::{Node, describe, https};

/// Label writers during the online backup: enough to keep the writer committing throughout.
const WRITERS: usize = 4;
/// Writes acknowledged before the backup starts, and again while it runs and after it.
const WRITES_PER_PHASE: usize = 100;

fn backup(node: &Node, to: &Path) -> Value {
    let to = to.to_str().unwrap();
    serde_json::from_str(&node.ok(&["backup", "--to", to, "--json"])).unwrap()
}

/// Adds an app with a file, so the backup carries `files/` too.
fn add_app_file(node: &Node) -> Vec<u8> {
    let (code, body) = https(
        node.service_port,
        reqwest::Method::POST,
        "/api/v2/apps",
        Some(serde_json::json!({
            "platform": "iOS",
            "bundleId": "com.example.backup",
            "name": "Backup App",
            "version": "1.0",
        })),
    );
    assert_eq!(code, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (code, answer) = support::node::raw(
        node.service_port,
        reqwest::Method::PUT,
        &format!("/api/v2/apps/{id}/file"),
        bytes.clone(),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&answer));
    bytes
}

#[test]
fn a_backup_taken_under_write_load_restores_every_write_acknowledged_before_it_began() {
    let mut source = Node::init("source");
    source.serve();
    let writers = Writers::start(source.service_port, WRITERS, "load");
    writers.wait_for_more(WRITES_PER_PHASE, "before the backup");
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("under-load");
    let began = Instant::now();
    let report = backup(&source, &path);
    writers.wait_for_more(WRITES_PER_PHASE, "after the backup");
    let acknowledged = writers.stop();
    assert!(path.join("manifest.json").is_file(), "{report:#}");
    assert!(!temp.path().join("under-load.partial").exists());

    let mut restored = Node::restore("restored", &path);
    restored.serve();
    let labels = restored.labels();
    let before: Vec<&String> = acknowledged
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(name, _)| name)
        .collect();
    assert!(before.len() >= WRITES_PER_PHASE);
    let missing: Vec<&&String> = before
        .iter()
        .filter(|name| !labels.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} writes acknowledged before the backup began are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // The writer went on committing while the backup ran: the source holds writes the backup
    // does not.
    assert!(source.labels().len() > labels.len());
    let status = restored.status();
    assert_eq!(status["config"]["enabled"], false, "{status:#}");
    let hosts = restored.ok(&["ha", "trusted-hosts", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&hosts).unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn a_restored_node_is_identical_to_its_source_for_ha_verify_and_has_an_identity_of_its_own() {
    let mut source = Node::init("source");
    source.serve();
    let writers = Writers::start(source.service_port, WRITERS, "quiet");
    writers.wait_for_more(WRITES_PER_PHASE, "before the backup");
    writers.stop();
    let file = add_app_file(&source);
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("quiet");
    let report = backup(&source, &path);
    assert_eq!(report["files"], 1, "{report:#}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap()).unwrap();
    let sha256 = manifest["files"][0]["sha256"].as_str().unwrap();
    assert_eq!(
        std::fs::read(path.join("files").join(sha256)).unwrap(),
        file
    );

    let mut restored = Node::restore("restored", &path);
    restored.serve();
    restored.trust(&source);
    source.trust(&restored);
    let verified = restored.cli(&["ha", "verify", &source.endpoint(), "--json"]);
    assert!(verified.status.success(), "{}", describe(&verified));
    let verified: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["identical"], true, "{verified:#}");
    assert_eq!(
        verified["localPositionSeq"], report["positionSeq"],
        "{verified:#}"
    );
    // Same fleet, new node: its own SSH identity and node id.
    assert_ne!(
        restored.ok(&["ha", "local-key"]).split_whitespace().nth(1),
        source.ok(&["ha", "local-key"]).split_whitespace().nth(1)
    );
    // Accounts come from the backup: the source's admin password works on the restored node.
    let (code, body) = restored.get("/api/v2/labels?limit=1");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_stopped_node_is_backed_up_in_process_and_an_existing_backup_is_kept_without_force() {
    let source = Node::init("source");
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("offline");
    let first = backup(&source, &path);
    assert!(
        first["contentSha256"].as_str().unwrap().len() == 64,
        "{first:#}"
    );
    let again = source.cli(&["backup", "--to", path.to_str().unwrap()]);
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(
        message.contains("already exists") && message.contains("--force"),
        "{message}"
    );
    let forced = source.ok(&["backup", "--to", path.to_str().unwrap(), "--force"]);
    assert!(
        forced.contains(first["contentSha256"].as_str().unwrap()),
        "{forced}"
    );
}

fn restore_fails(backup: &Path, dir: &Path) -> String {
    let output = support::node::tandem()
        .arg("--data-dir")
        .arg(dir)
        .args(["restore", "--name", "refused", "--from"])
        .arg(backup)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_truncated_or_foreign_backup_and_a_non_empty_directory_are_refused() {
    let source = Node::init("source");
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("backup");
    backup(&source, &path);
    let fresh = temp.path().join("fresh");

    let non_empty = temp.path().join("non-empty");
    std::fs::create_dir(&non_empty).unwrap();
    std::fs::write(non_empty.join("notes.txt"), "keep me").unwrap();
    let message = restore_fails(&path, &non_empty);
    assert!(message.contains("is not empty"), "{message}");
    assert!(non_empty.join("notes.txt").is_file());

    let foreign = temp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    let message = restore_fails(&foreign, &fresh);
    assert!(
        message.contains("is not a Tandem backup") && message.contains("manifest.json"),
        "{message}"
    );

    let database = path.join("replicated.db");
    let length = std::fs::metadata(&database).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&database)
        .unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);
    let message = restore_fails(&path, &fresh);
    assert!(
        message.contains("is damaged")
            && message.contains(database.to_str().unwrap())
            && message.contains("tandem backup"),
        "{message}"
    );
    assert!(!fresh.exists(), "a refused restore leaves nothing behind");
}
