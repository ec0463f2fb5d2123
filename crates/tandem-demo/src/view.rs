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
/// Each sample's requests may take this long; a node that does not answer in time is shown
/// as not answering (a killed or busy node).
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(400);
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
    pub fn new(terminal: bool) -> Self {
        Self {
            terminal,
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
        write_out(&text);
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
            write_out(&format!("\x1b[{}A\x1b[J", inner.drawn));
            inner.drawn = 0;
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
            write_out(&text);
            return;
        }
        let due = match &inner.last_plain {
            Some((last, at)) => last != key || at.elapsed() >= PLAIN_EVERY,
            None => true,
        };
        if due {
            inner.last_plain = Some((key.to_owned(), Instant::now()));
            write_out(&format!("{} | {summary}\n", self.stamp()));
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
                let now = sample(&client, &sources).await;
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

async fn sample(client: &reqwest::Client, sources: &Sources) -> Snapshot {
    let nodes = sources.nodes.iter().map(|(name, port)| async move {
        let url = format!("https://127.0.0.1:{port}/api/v1/ha/status");
        let answer = client
            .get(&url)
            .basic_auth(&sources.user, Some(&sources.password))
            .send()
            .await;
        let status: Option<Value> = match answer {
            Ok(answer) if answer.status().is_success() => answer.json().await.ok(),
            _ => None,
        };
        NodeView {
            name: name.clone(),
            mode: status.as_ref().and_then(|s| text(&s["config"]["mode"])),
            state: status.as_ref().and_then(|s| text(&s["status"]["state"])),
            epoch: status.as_ref().and_then(|s| s["epoch"].as_i64()),
        }
    });
    let route = async {
        let url = format!("http://{}/status", sources.lb_admin);
        let answer = client.get(&url).send().await.ok()?;
        let status: Value = answer.json().await.ok()?;
        text(&status["active"])
    };
    let (nodes, route) = tokio::join!(futures_join_all(nodes.collect()), route);
    Snapshot { nodes, route }
}

/// Awaits every future in order (the view samples three nodes: no need for a combinator crate).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await);
    }
    outputs
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
        lines.push(format!(
            "  {:<15} {:<10} {:<14} {:<9} {arrow}",
            node.name, mode, state, epoch
        ));
        parts.push(format!("{} {mode}/{state} {epoch}", node.name));
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
