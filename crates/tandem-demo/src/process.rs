//! Every process the demo starts, and the promise that none outlives it: long-running ones
//! (`tandem serve`, `tandem lb`) are registered here, each in a process group of its own (a
//! Ctrl-C at the terminal reaches only the demo, which then stops them in order), and killed by
//! [`Guard`]'s `Drop` on every way out of the demo (success, error, panic) or by the signal
//! handler on SIGINT and SIGTERM.

use crate::error::{DemoError, DemoResult};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The running children: `(name, child)`.
static CHILDREN: Mutex<Vec<(String, Child)>> = Mutex::new(Vec::new());
/// The temporary directory to remove when a signal ends the demo (its `TempDir` cannot be
/// dropped from the signal task).
static TEMPORARY_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Set once the demo stops everything: no process may start after that.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Set while `--keep` waits for Ctrl-C: the signal is then the expected end (exit 0).
static KEEPING: AtomicBool = AtomicBool::new(false);

/// Exit status when a signal interrupted the demo (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

fn children() -> std::sync::MutexGuard<'static, Vec<(String, Child)>> {
    // A panic while the list was held leaves it usable: every entry is still a child to stop.
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops every registered process when dropped.
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        stop_all();
    }
}

/// `kill -9` and reap every registered process.
pub fn stop_all() {
    STOPPING.store(true, Ordering::Release);
    for (_, mut child) in children().drain(..) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Removes `dir` if a signal ends the demo.
pub fn remove_on_signal(dir: &Path) {
    *TEMPORARY_DIR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(dir.to_owned());
}

pub fn set_keeping(keeping: bool) {
    KEEPING.store(keeping, Ordering::Release);
}

/// On SIGINT or SIGTERM: stop every process, remove the temporary directory, exit (0 while
/// `--keep` waited for exactly this, [`EXIT_INTERRUPTED`] otherwise).
pub fn handle_signals(runtime: &tokio::runtime::Runtime) -> DemoResult<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let _entered = runtime.enter();
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DemoError::io("SIGINT handler"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(DemoError::io("SIGTERM handler"))?;
    runtime.spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        stop_all();
        let dir = TEMPORARY_DIR
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        let keeping = KEEPING.load(Ordering::Acquire);
        if keeping {
            println!("\nstopped every process the demo started");
            std::process::exit(0);
        }
        eprintln!("\ntandem demo: {name}: stopped every process the demo started");
        std::process::exit(EXIT_INTERRUPTED);
    });
    Ok(())
}

/// How `tandem` commands are run: this same binary, from the demo's directory, so the printed
/// commands (`tandem --data-dir main-primary ...`) are exactly the ones run.
#[derive(Clone)]
pub struct Tandem {
    pub exe: PathBuf,
    pub root: PathBuf,
}

impl Tandem {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .current_dir(&self.root)
            .env("TANDEM_LOG", "warn")
            .env_remove("TANDEM_DATA_DIR")
            .stdin(Stdio::null());
        command
    }

    /// Runs a short command to its end.
    pub fn output(&self, args: &[&str]) -> DemoResult<Output> {
        self.command(args).output().map_err(DemoError::io(format!(
            "cannot run tandem {}",
            args.join(" ")
        )))
    }

    /// Runs a short command; its stdout, or an error with its stderr.
    pub fn ok(&self, args: &[&str]) -> DemoResult<String> {
        let output = self.output(args)?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(DemoError::Failed(format!(
            "`tandem {}` failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        )))
    }

    /// Starts a long-running command in a process group of its own, stderr appended to `log`
    /// (relative to the demo's directory), and registers it under `name`.
    pub fn spawn(&self, name: &str, args: &[&str], log: &str) -> DemoResult<u32> {
        let log_path = self.root.join(log);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(DemoError::io(format!("cannot open {}", log_path.display())))?;
        let mut command = self.command(args);
        command
            .env("TANDEM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .process_group(0);
        let mut registry = children();
        if STOPPING.load(Ordering::Acquire) {
            return Err(DemoError::Failed(format!(
                "not starting {name}: the demo is stopping"
            )));
        }
        let child = command.spawn().map_err(DemoError::io(format!(
            "cannot start tandem {}",
            args.join(" ")
        )))?;
        let pid = child.id();
        registry.push((name.to_owned(), child));
        drop(registry);
        self.write_pids();
        Ok(pid)
    }

    /// `kill -9` of the process registered as `name`; its pid, if it ran.
    pub fn kill_9(&self, name: &str) -> Option<u32> {
        let mut registry = children();
        let index = registry.iter().position(|(known, _)| known == name)?;
        let (_, mut child) = registry.remove(index);
        drop(registry);
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        self.write_pids();
        Some(pid)
    }

    /// SIGTERM to the process registered as `name` (a clean stop: a node commits its queued
    /// writes), then waits for it; `kill -9` if it has not stopped within [`STOP_DEADLINE`].
    pub fn stop(&self, name: &str) -> Option<u32> {
        /// A node stops in at most 10 s (open requests finish) plus its writer's flush.
        const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);
        /// Pause between two checks that it has exited.
        const POLL: std::time::Duration = std::time::Duration::from_millis(20);
        let pid = self.running(name).ok()?;
        // Without libc (no `unsafe` here): the kill(1) every Linux has.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = std::time::Instant::now();
        while self.running(name).is_ok() && started.elapsed() < STOP_DEADLINE {
            std::thread::sleep(POLL);
        }
        self.kill_9(name)
    }

    /// The pid of the running process registered as `name`, or why it is not running.
    pub fn running(&self, name: &str) -> Result<u32, String> {
        let mut registry = children();
        let Some((_, child)) = registry.iter_mut().find(|(known, _)| known == name) else {
            return Err(format!("{name} is not running"));
        };
        match child.try_wait() {
            Ok(None) => Ok(child.id()),
            Ok(Some(status)) => Err(format!("{name} exited ({status})")),
            Err(error) => Err(format!("{name}: {error}")),
        }
    }

    /// `demo.pids` in the demo's directory: `name pid` per running process, for whoever wants
    /// to check that nothing is left behind.
    fn write_pids(&self) {
        let text: String = children()
            .iter()
            .map(|(name, child)| format!("{name} {}\n", child.id()))
            .collect();
        let _ = std::fs::write(self.root.join("demo.pids"), text);
    }
}
