//! The live view: every few hundred milliseconds each node's Mode, state and epoch (from its
//! System Manager API), the traffic controller's active backend (its admin `/status`) and the
//! devices' check-ins. On a terminal a block of lines is redrawn in place under the steps; on
//! anything else (a pipe, CI) a timestamped line is printed when something changed, and at
//! least every [`PLAIN_EVERY`].

use crate::devices::{self, SharedStats};
use serde_json::Value;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the view samples and redraws (about 4 times a second).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Each sample's requests may take this long; a node that does not answer in time (a busy
/// debug build) keeps what it last showed, until it answers or refuses connections.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Without a terminal, an unchanged view is printed again this often.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// One node as the view last saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    pub name: String,
    /// `None`: its System Manager did not answer.
    pub mode: Option<String>,
    pub state: Option<String>,
    pub epoch: Option<i64>,
    /// Heartbeats to its Primary that failed in a row (a Secondary's failure detection).
    pub heartbeat_failures: u32,
}

/// The cluster as last sampled.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeView>,
    /// The traffic controller's active backend.
    pub route: Option<String>,
}

impl Snapshot {
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|node| node.name == name)
    }

    pub fn state_of(&self, name: &str) -> Option<&str> {
        self.node(name).and_then(|node| node.state.as_deref())
    }
}

/// Where the demo's lines go, shared by the steps and the live view.
pub struct Screen {
    terminal: bool,
    /// Steps and the live view go to stderr, leaving stdout to the JSON summary.
    steps_to_stderr: bool,
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Lines of the live block now on the terminal (redrawn in place).
    drawn: usize,
    last_plain: Option<(String, Instant)>,
}

impl Screen {
    pub fn new(terminal: bool, steps_to_stderr: bool) -> Self {
        Self {
            terminal,
            steps_to_stderr,
            started: Instant::now(),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stamp(&self) -> String {
        format!("{:6.1}s", self.started.elapsed().as_secs_f64())
    }

    /// A step or an event, printed above the live block.
    pub fn say(&self, line: &str) {
        let mut inner = self.inner();
        let mut text = String::new();
        if self.terminal && inner.drawn > 0 {
            text += &format!("\x1b[{}A\x1b[J", inner.drawn);
            inner.drawn = 0;
        }
        text += &format!("{} {line}\n", self.stamp());
        self.write_step(&text);
    }

    /// Lines printed as they are (a summary, URLs), after clearing the live block.
    pub fn plain(&self, text: &str) {
        self.clear();
        write_out(&format!("{text}\n"));
    }

    /// Removes the live block from the terminal.
    pub fn clear(&self) {
        let mut inner = self.inner();
        if self.terminal && inner.drawn > 0 {
            self.write_step(&format!("\x1b[{}A\x1b[J", inner.drawn));
            inner.drawn = 0;
        }
    }

    fn write_step(&self, text: &str) {
        if self.steps_to_stderr {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(text.as_bytes());
        } else {
            write_out(text);
        }
    }

    /// Shows the live block: redrawn on a terminal, else `summary` when it changed.
    fn show(&self, lines: &[String], summary: &str, key: &str) {
        let mut inner = self.inner();
        if self.terminal {
            let mut text = String::new();
            if inner.drawn > 0 {
                text += &format!("\x1b[{}A\x1b[J", inner.drawn);
            }
            for line in lines {
                text += &format!("{line}\n");
            }
            inner.drawn = lines.len();
            self.write_step(&text);
            return;
        }
        let due = match &inner.last_plain {
            Some((last, at)) => last != key || at.elapsed() >= PLAIN_EVERY,
            None => true,
        };
        if due {
            inner.last_plain = Some((key.to_owned(), Instant::now()));
            self.write_step(&format!("{} | {summary}\n", self.stamp()));
        }
    }
}

fn write_out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Where the view looks: each node's System Manager port, the controller's admin address.
pub struct Sources {
    pub nodes: Vec<(String, u16)>,
    pub lb_admin: String,
    pub user: String,
    pub password: String,
}

/// The sampler: keeps [`Snapshot`] current and draws it, until dropped.
pub struct Live {
    pub snapshot: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Live {
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        screen: Arc<Screen>,
        sources: Sources,
        stats: Arc<Mutex<Option<SharedStats>>>,
    ) -> Result<Self, crate::DemoError> {
        let client = devices::client(None, SAMPLE_TIMEOUT)?;
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (snapshot.clone(), stop.clone());
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stopped.load(Ordering::Acquire) {
                ticker.tick().await;
                let before = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let now = sample(&client, &sources, &before).await;
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = now.clone();
                let fleet = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
                draw(&screen, &now, fleet.as_ref());
            }
        });
        Ok(Self { snapshot, stop })
    }

    pub fn now(&self) -> Snapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One sample: every node and the controller asked at once.
async fn sample(client: &reqwest::Client, sources: &Sources, previous: &Snapshot) -> Snapshot {
    let nodes: Vec<_> = sources
        .nodes
        .iter()
        .map(|(name, port)| {
            let url = format!("https://127.0.0.1:{port}/api/v1/ha/status");
            let request = client
                .get(url)
                .basic_auth(&sources.user, Some(&sources.password));
            let before = previous.node(name).cloned().unwrap_or_else(|| NodeView {
                name: name.clone(),
                ..NodeView::default()
            });
            tokio::spawn(sample_node(request, before))
        })
        .collect();
    let route = client.get(format!("http://{}/status", sources.lb_admin));
    let route = tokio::spawn(async move {
        let status: Value = route.send().await.ok()?.json().await.ok()?;
        text(&status["active"])
    });
    let mut snapshot = Snapshot {
        nodes: Vec::with_capacity(nodes.len()),
        route: route.await.ok().flatten(),
    };
    for node in nodes {
        if let Ok(node) = node.await {
            snapshot.nodes.push(node);
        }
    }
    snapshot
}

/// A node's HA status. Refused connections mean it is down; a slow or refused answer (a busy
/// node) keeps what was last seen, so only a dead node is shown as not answering.
async fn sample_node(request: reqwest::RequestBuilder, before: NodeView) -> NodeView {
    let answer = match request.send().await {
        Ok(answer) if answer.status().is_success() => answer.json::<Value>().await.ok(),
        Err(error) if error.is_connect() => {
            return NodeView {
                name: before.name,
                ..NodeView::default()
            };
        }
        _ => None,
    };
    let Some(status) = answer else {
        return before;
    };
    NodeView {
        name: before.name,
        mode: text(&status["status"]["mode"]),
        state: text(&status["status"]["state"]),
        epoch: status["epoch"].as_i64(),
        heartbeat_failures: status["heartbeat"]["consecutiveFailures"]
            .as_u64()
            .and_then(|failures| u32::try_from(failures).ok())
            .unwrap_or(0),
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn draw(screen: &Screen, now: &Snapshot, fleet: Option<&SharedStats>) {
    let mut lines = Vec::new();
    let mut parts = Vec::new();
    for node in &now.nodes {
        let arrow = if now.route.as_deref() == Some(node.name.as_str()) {
            "◀ devices"
        } else {
            ""
        };
        let (mode, state, epoch) = match (&node.mode, &node.state, node.epoch) {
            (Some(mode), Some(state), Some(epoch)) => {
                (title(mode), state.clone(), format!("epoch {epoch}"))
            }
            _ => ("-".into(), "not answering".into(), String::new()),
        };
        // A Standby's failure detection (an Active node goes on counting its lost peer).
        let detection = match node.heartbeat_failures {
            failures if failures > 0 && node.state.as_deref() == Some("Standby") => {
                format!("{failures} heartbeats failed ")
            }
            _ => String::new(),
        };
        lines.push(format!(
            "  {:<15} {:<10} {:<14} {:<9} {detection}{arrow}",
            node.name, mode, state, epoch
        ));
        let detection = if detection.is_empty() {
            detection
        } else {
            format!(", {}", detection.trim_end())
        };
        parts.push(format!("{} {mode}/{state} {epoch}{detection}", node.name));
    }
    let route = now.route.clone().unwrap_or_else(|| "none".into());
    let key = format!("{} -> {route}", parts.join(", "));
    let mut summary = format!("{} | controller -> {route}", parts.join(" | "));
    if let Some(stats) = fleet {
        let mut stats = devices::lock(stats);
        let line = format!(
            "  check-ins {:>3}/s   acknowledged {:>6}   errors {:>4}   longest gap {:.2} s",
            stats.rate(),
            stats.acknowledged,
            stats.errors,
            stats.longest_gap.as_secs_f64()
        );
        summary += &format!(
            " | check-ins {}/s, {} acknowledged, {} errors",
            stats.rate(),
            stats.acknowledged,
            stats.errors
        );
        lines.push(line);
    }
    lines.push(format!("  traffic controller -> {route}"));
    screen.show(&lines, &summary, &key);
}

/// `primary` → `Primary`.
fn title(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().collect::<String>() + chars.as_str()
    })
}
