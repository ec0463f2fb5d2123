//! `GET /`: the Overview, what an operator checks first: this node's mode, state and epoch,
//! whether it is fenced and why, the node it pairs with, the last and next sync, the alarms
//! that need a person, and where to go next.

use super::ha_config::{Fact, Live, last_sync_fact};
use crate::console::chrome::Badge;
use crate::console::{Chrome, ConsoleSession, render};
use crate::ha::{HaHandle, wall_clock_ms};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tandem_ha::Mode;
use tandem_ha::machine::Snapshot;

pub(super) use crate::console::time::{relative_ms as relative, utc_ms as utc_time};

/// An alarm on the Overview, with the window that deals with it.
struct Alarm {
    text: String,
    href: &'static str,
    link: &'static str,
}

#[derive(Template)]
#[template(path = "console/sm_overview.html")]
struct Overview {
    chrome: Chrome,
    fenced: Option<String>,
    alarms: Vec<Alarm>,
    facts: Vec<Fact>,
    updated: String,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(show))
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    let snapshot = ha.snapshot();
    let live = Live::read(&state, &ha).await;
    let now_ms = wall_clock_ms();
    render(&Overview {
        chrome: Chrome::new(&state, &ha, &session, "/", "Overview"),
        fenced: snapshot.fenced.clone(),
        alarms: alarms(&snapshot, &live),
        facts: facts(&snapshot, &live, state.device_gate.is_open(), now_ms),
        updated: utc_time(now_ms),
    })
}

fn facts(snapshot: &Snapshot, live: &Live, client_connections: bool, now_ms: i64) -> Vec<Fact> {
    let status = &snapshot.status;
    let mut facts = vec![
        Fact::text(
            "High Availability",
            if status.ha_enabled {
                "Enabled"
            } else {
                "Disabled (standalone)"
            },
        ),
        Fact::text("Mode", status.mode.to_string()),
        Fact {
            term: "State",
            detail: String::new(),
            badge: Some(Badge::of_state(
                &status.state.to_string(),
                snapshot.fenced.is_some(),
            )),
        },
        Fact::text("Epoch", snapshot.epoch.to_string()),
    ];
    if status.ha_enabled {
        facts.push(peer_fact(snapshot, now_ms));
        facts.push(last_sync_fact(live.last_sync.as_ref()));
        if let Some(next) = snapshot.next_sync_ms {
            facts.push(Fact::text(
                "Next sync",
                format!("{} ({})", utc_time(next), relative(next, now_ms)),
            ));
        }
    }
    facts.push(Fact::text(
        "Client connections",
        if client_connections {
            "Enabled"
        } else {
            "Disabled: devices are refused (`tandem failover client-connection enable`)"
        },
    ));
    facts
}

/// The node this one pairs with: a Secondary's Primary, or the Secondary a Primary heard from.
fn peer_fact(snapshot: &Snapshot, now_ms: i64) -> Fact {
    let term = match snapshot.config.mode {
        Mode::Primary => "Secondary",
        Mode::Secondary => "Primary",
    };
    match &snapshot.peer {
        Some(peer) => Fact::state(
            term,
            &peer.state.to_string(),
            format!(
                "{} ({}, epoch {}), last seen {}",
                peer.node_name,
                peer.mode,
                peer.epoch,
                snapshot
                    .peer_seen_ms
                    .map(|seen| relative(seen, now_ms))
                    .unwrap_or_else(|| "-".into())
            ),
        ),
        None => Fact::text(
            term,
            match (snapshot.config.mode, snapshot.config.primary_text()) {
                (Mode::Secondary, Some(primary)) => format!("{primary}: not heard from yet"),
                (Mode::Secondary, None) => "none set: HA Configuration → Primary".into(),
                (Mode::Primary, _) => "none has contacted this node yet".into(),
            },
        ),
    }
}

fn alarms(snapshot: &Snapshot, live: &Live) -> Vec<Alarm> {
    let mut alarms = Vec::new();
    if let Some(who) = &snapshot.dual_active {
        alarms.push(Alarm {
            text: format!("Dual Active: two nodes of the HA group are Active at once: {who}"),
            href: "/ha/cluster",
            link: "Cluster",
        });
    }
    for warning in &snapshot.trust_warnings {
        alarms.push(Alarm {
            text: format!("Trust incomplete: {warning}"),
            href: "/ha/trusted-hosts",
            link: "Manage Trusted Hosts",
        });
    }
    if let Some(why) = crate::control::behind(&live.follower, snapshot.config.lag_bound) {
        alarms.push(Alarm {
            text: format!("Behind: {why}"),
            href: "/ha/config",
            link: "Node Status",
        });
    }
    if let Some(why) = &snapshot.promotion_held {
        alarms.push(Alarm {
            text: format!("Automatic promotion held: {why}"),
            href: "/ha/config",
            link: "Node Status",
        });
    }
    if snapshot.heartbeat.failure_detected {
        alarms.push(Alarm {
            text: "Failure detected: the Primary missed its heartbeats".into(),
            href: "/ha/config",
            link: "Node Status",
        });
    }
    alarms
}
