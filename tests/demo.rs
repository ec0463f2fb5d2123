//! `tandem demo` as a user runs it: the real binary plays a scenario end to end (three nodes,
//! the traffic controller, simulated devices), and must lose no acknowledged write and leave no
//! process behind, also when interrupted.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the processes of a finished or interrupted demo may take to be gone: a short
/// `tandem` command it was running may still be finishing. Far above what it takes.
const GONE_DEADLINE: Duration = Duration::from_secs(30);
/// How long an interrupted demo may take to get to its scenario (a debug build, three nodes).
const STARTED_DEADLINE: Duration = Duration::from_secs(180);

fn demo() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.arg("demo").env_remove("TANDEM_DATA_DIR");
    command
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Processes whose working directory is `dir` (every process the demo starts runs there).
fn processes_in(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if std::fs::read_link(path.join("cwd")).ok().as_deref() == Some(dir.as_path()) {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

fn assert_nothing_left(dir: &Path) {
    let started = Instant::now();
    while !processes_in(dir).is_empty() && started.elapsed() < GONE_DEADLINE {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = processes_in(dir);
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

/// Plays `scenario` in a directory of the test's; checks the summary and that nothing is left.
fn plays(scenario: &str) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("demo");
    let output = demo()
        .args([
            "--scenario",
            scenario,
            "--phase-s",
            "2",
            "--devices",
            "10",
            "--json",
        ])
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // With --json, stdout is the summary alone (the steps and the live view go to stderr).
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
        panic!(
            "stdout is not one JSON summary ({error}): {}",
            describe(&output)
        )
    });
    assert_eq!(summary["lost"], 0, "{summary:#}");
    assert!(summary["acknowledged"].as_u64().unwrap() > 0, "{summary:#}");
    assert_eq!(summary["scenario"], scenario, "{summary:#}");
    assert_nothing_left(&dir);
    eprintln!("{scenario}: {summary}");
}

#[test]
fn the_failover_demo_loses_nothing_and_leaves_nothing_behind() {
    plays("failover");
}

#[test]
fn the_switchover_demo_loses_nothing_and_leaves_nothing_behind() {
    plays("switchover");
}

/// The old Primary returns as the Standby and takes its role back: the most steps, each of
/// which must leave exactly one node Active.
#[test]
fn the_failback_demo_loses_nothing_and_leaves_nothing_behind() {
    plays("failback");
}

#[test]
fn a_dir_that_is_not_empty_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::write(temp.path().join("something"), "kept").unwrap();
    let output = demo().arg("--dir").arg(temp.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--dir") && stderr.contains("not empty"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(temp.path().join("something")).unwrap(),
        "kept"
    );
}

#[test]
fn sigint_in_the_middle_stops_every_process() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("demo");
    let stdout_path = temp.path().join("stdout");
    let mut child = demo()
        .args(["--phase-s", "600", "--devices", "5"])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // In the middle: every node and the controller run, devices check in.
    let started = Instant::now();
    while !std::fs::read_to_string(&stdout_path)
        .unwrap_or_default()
        .contains("check-ins")
    {
        assert!(
            started.elapsed() < STARTED_DEADLINE && child.try_wait().unwrap().is_none(),
            "the demo never got to its devices: {}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(processes_in(&dir).len() >= 4, "{:#?}", processes_in(&dir));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    assert_nothing_left(&dir);
}
