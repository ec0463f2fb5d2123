//! The node's Prometheus metrics (`GET /metrics` on the System Manager listener): the counters
//! the request path, the login check and the HA runtime update (relaxed atomics, nothing else),
//! and the exposition built from them and from the HA controller's snapshot at each scrape.
//! docs/monitoring.md lists every metric; deploy/prometheus/tandem-rules.yml alerts on them.

mod ha;

use crate::ha::HaHandle;
use crate::state::AppState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tandem_metrics::{Exposition, Histogram, Kind, labels};
use tandem_store::accounts::AccountRealm;

/// The HTTPS listeners, as the `listener` label names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Service = 0,
    SystemManager = 1,
}

const LISTENERS: [&str; 2] = ["service", "system_manager"];

/// What a request was for, by its path: few enough classes that every series exists from the
/// start and a scanner's random paths cannot create new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// Device check-ins and enrollment (`/device/v1/…`).
    Device = 0,
    /// The REST APIs (`/api/…`).
    Api = 1,
    /// The load balancer's probes (`/status/…`, `/hastatus.html`).
    Probe = 2,
    /// The consoles' pages and their static files.
    Console = 3,
    /// `/metrics` itself.
    Metrics = 4,
}

const ROUTE_CLASSES: [&str; 5] = ["device", "api", "probe", "console", "metrics"];
/// Status classes 2xx to 5xx (the router answers no 1xx; a 101 would count as 2xx).
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Whether a listener serves a route class at all: only those series are exposed.
fn serves(listener: usize, route: usize) -> bool {
    const SERVICE: [RouteClass; 4] = [
        RouteClass::Device,
        RouteClass::Api,
        RouteClass::Probe,
        RouteClass::Console,
    ];
    const SYSTEM_MANAGER: [RouteClass; 3] =
        [RouteClass::Api, RouteClass::Console, RouteClass::Metrics];
    let served: &[RouteClass] = if listener == Listener::Service as usize {
        &SERVICE
    } else {
        &SYSTEM_MANAGER
    };
    served.iter().any(|class| *class as usize == route)
}

impl RouteClass {
    pub fn of(path: &str) -> Self {
        if path.starts_with("/device/") {
            RouteClass::Device
        } else if path.starts_with("/api/") {
            RouteClass::Api
        } else if path.starts_with("/status/") || path == "/hastatus.html" {
            RouteClass::Probe
        } else if path == "/metrics" {
            RouteClass::Metrics
        } else {
            RouteClass::Console
        }
    }
}

/// Counters of one node's process.
pub struct NodeMetrics {
    requests: [[[AtomicU64; STATUS_CLASSES.len()]; ROUTE_CLASSES.len()]; LISTENERS.len()],
    durations: Vec<Histogram>,
    /// Wrong passwords, by realm (admin, System Manager).
    failed_logins: [AtomicU64; 2],
    /// Logins refused by the back-off before any password check, by realm.
    throttled_logins: [AtomicU64; 2],
    heartbeat_failures: AtomicU64,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            durations: (0..LISTENERS.len() * ROUTE_CLASSES.len())
                .map(|_| Histogram::durations())
                .collect(),
            failed_logins: Default::default(),
            throttled_logins: Default::default(),
            heartbeat_failures: AtomicU64::new(0),
        }
    }
}

fn realm_slot(realm: AccountRealm) -> usize {
    match realm {
        AccountRealm::Admin => 0,
        AccountRealm::SystemManager => 1,
    }
}

const REALMS: [&str; 2] = ["admin", "system_manager"];

impl NodeMetrics {
    /// One answered request: its class, status and time to the response's head.
    pub fn request(&self, listener: Listener, route: RouteClass, status: u16, took: Duration) {
        let status = usize::from(status / 100).clamp(2, 5) - 2;
        // A path of another listener's class (a scanner's `/metrics` on the service listener)
        // is answered by the fallback like any unknown page.
        let route = if serves(listener as usize, route as usize) {
            route
        } else {
            RouteClass::Console
        };
        self.requests[listener as usize][route as usize][status].fetch_add(1, Ordering::Relaxed);
        if let Some(histogram) = self
            .durations
            .get(listener as usize * ROUTE_CLASSES.len() + route as usize)
        {
            histogram.observe(took);
        }
    }

    pub fn login_failed(&self, realm: AccountRealm) {
        self.failed_logins[realm_slot(realm)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn login_throttled(&self, realm: AccountRealm) {
        self.throttled_logins[realm_slot(realm)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn heartbeat_failed(&self) {
        self.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn render_requests(&self, out: &mut Exposition) {
        let mut rows = Vec::new();
        for (index, (listener, routes)) in LISTENERS.iter().zip(&self.requests).enumerate() {
            for (class, (route, statuses)) in ROUTE_CLASSES.iter().zip(routes).enumerate() {
                if !serves(index, class) {
                    continue;
                }
                for (status, count) in STATUS_CLASSES.iter().zip(statuses) {
                    let pairs = [
                        ("listener", *listener),
                        ("route", *route),
                        ("status", *status),
                    ];
                    rows.push((labels(&pairs), count.load(Ordering::Relaxed).to_string()));
                }
            }
        }
        out.family(
            "tandem_http_requests_total",
            Kind::Counter,
            "HTTP requests answered, by listener, route class and status class.",
            rows,
        );
        let mut histograms = Vec::new();
        for (index, histogram) in self.durations.iter().enumerate() {
            let (listener, route) = (index / ROUTE_CLASSES.len(), index % ROUTE_CLASSES.len());
            if !serves(listener, route) {
                continue;
            }
            let (listener, route) = (LISTENERS[listener], ROUTE_CLASSES[route]);
            histograms.push((
                vec![
                    ("listener", listener.to_owned()),
                    ("route", route.to_owned()),
                ],
                histogram,
            ));
        }
        out.histograms(
            "tandem_http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by listener and route class.",
            histograms,
        );
    }

    fn render_logins(&self, out: &mut Exposition) {
        let mut rows = Vec::new();
        for (index, realm) in REALMS.iter().enumerate() {
            for (reason, counters) in [
                ("wrong_password", &self.failed_logins),
                ("throttled", &self.throttled_logins),
            ] {
                rows.push((
                    labels(&[("realm", *realm), ("reason", reason)]),
                    counters[index].load(Ordering::Relaxed).to_string(),
                ));
            }
        }
        out.family(
            "tandem_login_failures_total",
            Kind::Counter,
            "Logins refused (admin API and portal, System Manager), by realm and reason: a wrong \
             password or unknown user, or refused by the back-off before any check.",
            rows,
        );
    }
}

/// The whole exposition of this node.
pub async fn render(
    state: &AppState,
    ha: &HaHandle,
    replication: &tandem_repl::Replication,
) -> String {
    let mut out = Exposition::new();
    ha::render(&mut out, state, ha);
    render_sync(&mut out, replication).await;
    state.metrics.render_requests(&mut out);
    state.metrics.render_logins(&mut out);
    out.single(
        "tandem_ha_heartbeat_failures_total",
        Kind::Counter,
        "Heartbeats to the Primary that failed (no answer in time, refused, or no session).",
        state.metrics.heartbeat_failures.load(Ordering::Relaxed),
    );
    render_database_sizes(&mut out, state);
    out.finish()
}

async fn render_sync(out: &mut Exposition, replication: &tandem_repl::Replication) {
    let metrics = replication.sync_metrics();
    out.family(
        "tandem_sync_runs_total",
        Kind::Counter,
        "Syncs this node ran (scheduled and manual) since it started, by kind and result.",
        metrics.runs().into_iter().map(|(kind, result, count)| {
            (
                labels(&[("kind", kind), ("result", result)]),
                count.to_string(),
            )
        }),
    );
    out.histograms(
        "tandem_sync_duration_seconds",
        "How long the syncs this node ran took, start to end, whatever their result.",
        [(Vec::new(), metrics.duration())],
    );
    let last = replication
        .local()
        .database()
        .read(tandem_store::history::last_succeeded_at)
        .await
        .ok()
        .flatten();
    if let Some(at) = last {
        out.single(
            "tandem_sync_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the newest successful sync (scheduled or manual) ended, in Unix seconds; \
             absent while Sync History holds none.",
            at,
        );
    }
}

fn render_database_sizes(out: &mut Exposition, state: &AppState) {
    let mut rows = Vec::new();
    for (database, path) in [
        ("replicated", state.db.path().to_owned()),
        ("node", state.local.database().path().to_owned()),
    ] {
        let size = |path: &std::path::Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        rows.push((
            labels(&[("database", database), ("file", "main")]),
            size(&path).to_string(),
        ));
        rows.push((
            labels(&[("database", database), ("file", "wal")]),
            size(std::path::Path::new(&wal)).to_string(),
        ));
    }
    out.family(
        "tandem_database_size_bytes",
        Kind::Gauge,
        "Size of the SQLite files on disk: the main file and its write-ahead log.",
        rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &NodeMetrics) -> String {
        let mut out = Exposition::new();
        metrics.render_requests(&mut out);
        metrics.render_logins(&mut out);
        out.finish()
    }

    #[test]
    fn requests_count_by_listener_route_and_status_class_and_unknown_paths_are_console() {
        let metrics = NodeMetrics::default();
        let took = Duration::from_millis(3);
        let device = RouteClass::of("/device/v1/checkin");
        metrics.request(Listener::Service, device, 200, took);
        metrics.request(
            Listener::Service,
            RouteClass::of("/api/v2/labels"),
            503,
            took,
        );
        // The service listener has no /metrics: a scanner's request counts as console.
        metrics.request(Listener::Service, RouteClass::of("/metrics"), 404, took);
        metrics.login_failed(AccountRealm::SystemManager);
        let text = rendered(&metrics);
        for line in [
            "tandem_http_requests_total{listener=\"service\",route=\"device\",status=\"2xx\"} 1",
            "tandem_http_requests_total{listener=\"service\",route=\"api\",status=\"5xx\"} 1",
            "tandem_http_requests_total{listener=\"service\",route=\"console\",status=\"4xx\"} 1",
            "tandem_http_request_duration_seconds_count{listener=\"service\",route=\"device\"} 1",
            "tandem_login_failures_total{realm=\"system_manager\",reason=\"wrong_password\"} 1",
        ] {
            assert!(text.lines().any(|got| got == line), "no {line} in\n{text}");
        }
        assert!(
            !text.contains("listener=\"service\",route=\"metrics\""),
            "{text}"
        );
        assert!(
            !text.contains("listener=\"system_manager\",route=\"device\""),
            "{text}"
        );
    }
}
