//! `GET /`: the Overview, what an operator checks first: this node's mode and state, its
//! epoch, whether it is fenced and why, and where to go next.

use crate::console::{Chrome, ConsoleSession, render};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

#[derive(Template)]
#[template(path = "console/sm_overview.html")]
struct Overview {
    chrome: Chrome,
    ha_enabled: bool,
    mode: String,
    epoch: i64,
    fenced: Option<String>,
    client_connections: bool,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(show))
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    let status = state.node_status();
    let snapshot = ha.snapshot();
    render(&Overview {
        chrome: Chrome::new(&state, &ha, &session, "/", "Overview"),
        ha_enabled: status.ha_enabled,
        mode: status.mode.to_string(),
        epoch: snapshot.epoch,
        fenced: snapshot.fenced,
        client_connections: state.device_gate.is_open(),
    })
}
