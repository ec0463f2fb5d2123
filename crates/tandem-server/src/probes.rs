//! Load-balancer probes. They read the node's state from memory and never touch the database,
//! so they stay fast while the node is saturated with device traffic.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tandem_ha::ProbeAnswer;

/// A guide probe's answer, with the node's ballot in the `Tandem-Ballot` header (the body
/// stays the guide's, byte for byte).
fn answer(state: &AppState, probe: ProbeAnswer) -> impl IntoResponse + use<> {
    let mut header = state.ballot_header();
    if state.db.frozen_ms().is_some()
        && let Ok(text) = header.to_str()
        && let Ok(frozen) =
            axum::http::HeaderValue::from_str(&text.replace("state=active", "state=not-available"))
    {
        // As the body says: Not Available until the controller has dealt with the freeze.
        header = frozen;
    }
    (
        [(tandem_ha::ballot::BALLOT_HEADER, header)],
        respond(probe.healthy, probe.body),
    )
}

/// 200 when healthy, else 503, with a plain-text body no cache keeps.
fn respond<B: IntoResponse>(healthy: bool, body: B) -> impl IntoResponse + use<B> {
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// The state the probes report: the node's, except that an Active node that was just frozen
/// (see `tandem_store::freeze`) is Not Available until its HA controller has dealt with it. This
/// is read here, not only from the controller, because a resumed process may answer a probe
/// before the controller has run at all.
fn probed_status(state: &AppState) -> tandem_ha::NodeStatus {
    let status = state.node_status();
    if status.state == tandem_ha::State::Active && state.db.frozen_ms().is_some() {
        tandem_ha::NodeStatus {
            state: tandem_ha::State::NotAvailable,
            ..status
        }
    } else {
        status
    }
}

/// `GET /status/status.html`
pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    answer(&state, tandem_ha::status_probe(probed_status(&state)))
}

/// `GET /hastatus.html`
pub async fn ha_status(State(state): State<AppState>) -> impl IntoResponse {
    answer(&state, tandem_ha::ha_status_probe(probed_status(&state)))
}

/// `GET /status/replication.html` (beyond the guide, beside `/hastatus.html`): whether this node
/// holds its source's recent writes. A monitor can alert on it, and a load balancer can refuse
/// to move traffic to a Standby that is behind; `/hastatus.html` keeps the guide's exact answers.
/// It says only what kind of trouble there is: this listener faces devices, and addresses and
/// errors are for `tandem ha status` and the System Manager.
pub async fn replication(
    State(state): State<AppState>,
    axum::Extension(ha): axum::Extension<crate::ha::HaHandle>,
) -> impl IntoResponse {
    let snapshot = ha.snapshot();
    let follower = ha.follower();
    let behind = crate::control::behind(&follower, snapshot.config.lag_bound);
    let (healthy, body) = replication_answer(
        state.node_status(),
        snapshot.config.replication,
        snapshot.promotion_held.is_some(),
        behind.as_deref().map(behind_kind),
        follower.recent_lag_p99_ms,
    );
    respond(healthy, body)
}

/// What kind of trouble a reason from [`crate::control::behind`] names.
pub fn behind_kind(reason: &str) -> &'static str {
    if reason.starts_with("the replication stream") {
        "stream down"
    } else if reason.starts_with("catching up") {
        "catching up"
    } else if reason.contains("has not answered") {
        "source silent"
    } else {
        "lagging"
    }
}

/// The replication probe's answer: healthy or not, and the line to say.
fn replication_answer(
    status: tandem_ha::NodeStatus,
    mode: tandem_ha::config::ReplicationMode,
    promotion_held: bool,
    behind: Option<&str>,
    lag_p99_ms: Option<i64>,
) -> (bool, String) {
    use tandem_ha::State;
    use tandem_ha::config::ReplicationMode;
    match (status.state, mode) {
        (State::Active, _) => (true, "TANDEM-REPLICATION: OK (Active: the source)\n".into()),
        (State::NotAvailable, _) => (
            false,
            "TANDEM-REPLICATION: NOT AVAILABLE (this node must not serve)\n".into(),
        ),
        (State::Standby, ReplicationMode::Scheduled) => (
            true,
            "TANDEM-REPLICATION: OK (scheduled: as of the last sync, see Sync History)\n".into(),
        ),
        (State::Standby, _) => match (promotion_held, behind) {
            (true, _) => (
                false,
                "TANDEM-REPLICATION: BEHIND (automatic promotion held)\n".into(),
            ),
            (false, Some(kind)) => (false, format!("TANDEM-REPLICATION: BEHIND ({kind})\n")),
            (false, None) => (
                true,
                match lag_p99_ms {
                    Some(lag) => {
                        format!("TANDEM-REPLICATION: OK (in step, recent lag p99 {lag} ms)\n")
                    }
                    None => "TANDEM-REPLICATION: OK (in step)\n".into(),
                },
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_ha::config::ReplicationMode;
    use tandem_ha::{Mode, NodeStatus, State};

    fn standby() -> NodeStatus {
        NodeStatus {
            ha_enabled: true,
            mode: Mode::Secondary,
            state: State::Standby,
        }
    }

    #[test]
    fn a_standby_is_healthy_while_in_step_and_says_why_it_is_not() {
        let continuous = ReplicationMode::Continuous;
        assert_eq!(
            replication_answer(standby(), continuous, false, None, Some(3)),
            (
                true,
                "TANDEM-REPLICATION: OK (in step, recent lag p99 3 ms)\n".into()
            )
        );
        let (healthy, body) =
            replication_answer(standby(), continuous, false, Some("stream down"), None);
        assert!(!healthy);
        assert_eq!(body, "TANDEM-REPLICATION: BEHIND (stream down)\n");
        let synchronous = ReplicationMode::Synchronous;
        let (healthy, body) =
            replication_answer(standby(), synchronous, true, Some("stream down"), None);
        assert!(!healthy && body.contains("(automatic promotion held)"));
        // Never the guide's OK string, so an existing monitor cannot mistake it for a probe.
        assert!(!body.contains("MOBILEIRON-STATUS"));
        let active = NodeStatus {
            state: State::Active,
            ..standby()
        };
        assert!(replication_answer(active, continuous, false, Some("lagging"), None).0);
        let fenced = NodeStatus {
            state: State::NotAvailable,
            ..standby()
        };
        assert!(!replication_answer(fenced, continuous, false, None, None).0);
        let scheduled = ReplicationMode::Scheduled;
        assert!(replication_answer(standby(), scheduled, false, None, None).0);
    }
}
