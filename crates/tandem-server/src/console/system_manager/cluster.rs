//! `GET /ha/cluster`: every node this node knows of, directly or by gossip, with its mode,
//! state, ballot and when it was last seen; the trusted addresses that did not answer; the
//! newest claim to serve; and the alarms of the one-Active rules (dual Active, incomplete
//! trust, each with its fix). The same view as `tandem ha status`'s cluster lines.

use super::overview::{relative, utc_time};
use crate::console::chrome::Badge;
use crate::console::{Chrome, ConsoleSession, render};
use crate::ha::{HaHandle, wall_clock_ms};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tandem_ha::cluster::{Member, Source};

pub fn routes() -> Router<AppState> {
    Router::new().route("/ha/cluster", get(show))
}

/// One known node as a row.
struct NodeRow {
    name: String,
    address: String,
    mode: String,
    badge: Badge,
    epoch: i64,
    /// "direct" or "through node-b".
    known: String,
    reach: String,
    seen: String,
}

impl NodeRow {
    fn of(member: &Member, now_ms: i64) -> Self {
        Self {
            name: member.node_name.clone(),
            address: member.address.clone().unwrap_or_else(|| "-".into()),
            mode: if member.ha_enabled {
                member.mode.to_string()
            } else {
                format!("{} (HA disabled)", member.mode)
            },
            badge: Badge::of_state(&member.state.to_string(), false),
            epoch: member.epoch,
            known: match &member.source {
                Source::Direct => "direct".into(),
                Source::Gossip { via } => format!("through {via}"),
            },
            reach: match (member.reachable, &member.unreachable_reason) {
                (Some(true), _) => "reachable".into(),
                (Some(false), Some(reason)) => format!("unreachable: {reason}"),
                (Some(false), None) => "unreachable".into(),
                (None, _) => "not checked by this node".into(),
            },
            seen: relative(member.seen_at_ms, now_ms),
        }
    }
}

/// Text with `commands` in backticks, as pieces: `(text, is_code)`.
fn pieces(text: &str) -> Vec<(String, bool)> {
    text.split('`')
        .enumerate()
        .filter(|(_, piece)| !piece.is_empty())
        .map(|(index, piece)| (piece.to_owned(), index % 2 == 1))
        .collect()
}

#[derive(Template)]
#[template(path = "console/sm_cluster.html")]
struct ClusterPage {
    chrome: Chrome,
    this_node: NodeRow,
    nodes: Vec<NodeRow>,
    silent: Vec<(String, String)>,
    newest_claim: Option<String>,
    dual_active: Option<String>,
    trust_warnings: Vec<Vec<(String, bool)>>,
    checking_peers: bool,
    updated: String,
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    let snapshot = ha.snapshot();
    let now_ms = wall_clock_ms();
    let this_node = NodeRow {
        name: format!("{} (this node)", state.node_name),
        address: "-".into(),
        mode: snapshot.status.mode.to_string(),
        badge: Badge::of_state(
            &snapshot.status.state.to_string(),
            snapshot.fenced.is_some(),
        ),
        epoch: snapshot.epoch,
        known: "-".into(),
        reach: "-".into(),
        seen: "now".into(),
    };
    render(&ClusterPage {
        chrome: Chrome::new(&state, &ha, &session, "/ha/cluster", "Cluster"),
        this_node,
        nodes: snapshot
            .cluster
            .iter()
            .map(|member| NodeRow::of(member, now_ms))
            .collect(),
        silent: snapshot
            .silent_peers
            .iter()
            .map(|peer| (peer.address.clone(), peer.reason.clone()))
            .collect(),
        newest_claim: snapshot
            .newest_claim
            .as_ref()
            .map(|claim| format!("epoch {} of {}", claim.ballot.epoch, claim.node_name)),
        dual_active: snapshot.dual_active.clone(),
        trust_warnings: snapshot
            .trust_warnings
            .iter()
            .map(|warning| pieces(warning))
            .collect(),
        checking_peers: snapshot.checking_peers,
        updated: utc_time(now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_backticks_become_code_pieces() {
        assert_eq!(
            pieces("Add it with `tandem ha trusted-hosts add a:22 --key KEY` here."),
            vec![
                ("Add it with ".to_owned(), false),
                (
                    "tandem ha trusted-hosts add a:22 --key KEY".to_owned(),
                    true
                ),
                (" here.".to_owned(), false),
            ]
        );
        assert_eq!(pieces("plain"), vec![("plain".to_owned(), false)]);
    }
}
