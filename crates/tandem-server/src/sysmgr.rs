//! The System Manager listener (8443). For now: who this node is and its HA state, as a page
//! and as JSON. The HA Configuration window, Trusted Hosts and Sync History join here.

use crate::auth;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde_json::{Value, json};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/v1/status", get(status))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_system_manager,
        ))
        .fallback(crate::not_found)
        .with_state(state)
}

async fn status(State(state): State<AppState>) -> Json<Value> {
    let status = state.node_status();
    Json(json!({
        "node": state.node_name,
        "version": env!("CARGO_PKG_VERSION"),
        "haEnabled": status.ha_enabled,
        "mode": status.mode,
        "state": status.state,
        "clientConnections": if state.device_gate.is_open() { "enabled" } else { "disabled" },
    }))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home(State(state): State<AppState>) -> Html<String> {
    let status = state.node_status();
    let ha = if status.ha_enabled {
        "enabled"
    } else {
        "disabled"
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Tandem System Manager — {name}</title></head><body>\
         <h1>Tandem System Manager</h1>\
         <dl><dt>Node</dt><dd>{name}</dd><dt>High Availability</dt><dd>{ha}</dd>\
         <dt>Mode</dt><dd>{mode}</dd><dt>Node Status</dt><dd>{state}</dd></dl>\
         <p>HA Configuration, Trusted Hosts and Sync History are not available in this release yet.</p>\
         </body></html>",
        name = escape(&state.node_name),
        mode = status.mode,
        state = status.state,
    ))
}
