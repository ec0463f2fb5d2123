//! The System Manager listener (8443): who this node is and its HA state, as a page and as
//! JSON, and the HA Configuration as a JSON API (`/api/v1/ha/…`). The portal pages join here.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ha::{Configured, HaHandle};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Extension, Json, Router, middleware};
use serde_json::{Value, json};
use tandem_ha::config::{ConfigChange, HaConfig};
use tandem_ha::machine::Snapshot;

pub fn router(state: AppState, ha: HaHandle) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/v1/status", get(status))
        .route("/api/v1/ha/status", get(ha_status))
        .route("/api/v1/ha/config", get(ha_config).put(ha_configure))
        .layer(Extension(ha))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_system_manager,
        ))
        .fallback(crate::not_found)
        .with_state(state)
}

/// `GET /api/v1/ha/status`: the HA controller's view (state, epoch, heartbeats, schedule).
async fn ha_status(Extension(ha): Extension<HaHandle>) -> Json<Snapshot> {
    Json(ha.snapshot())
}

/// `GET /api/v1/ha/config`: the HA Configuration window's fields.
async fn ha_config(Extension(ha): Extension<HaHandle>) -> Json<HaConfig> {
    Json(ha.snapshot().config)
}

/// `PUT /api/v1/ha/config`: Save and Apply. The body holds the fields to change (absent ones
/// keep their value); saving re-anchors the schedule at the next StartTime.
async fn ha_configure(
    Extension(ha): Extension<HaHandle>,
    ApiJson(change): ApiJson<ConfigChange>,
) -> ApiResult<Json<Configured>> {
    ha.configure(change).await.map(Json).map_err(|message| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            message,
        )
    })
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

async fn home(State(state): State<AppState>, Extension(ha): Extension<HaHandle>) -> Html<String> {
    let status = state.node_status();
    let snapshot = ha.snapshot();
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
         <dt>Mode</dt><dd>{mode}</dd><dt>Node Status</dt><dd>{state}</dd>\
         <dt>Epoch</dt><dd>{epoch}</dd>{fenced}</dl>\
         <p>The HA Configuration is served as JSON at <code>/api/v1/ha/config</code> (GET, and PUT \
         to Save and Apply) and <code>/api/v1/ha/status</code>; the portal pages are not in this \
         release yet. From a shell: <code>tandem ha status</code>, <code>tandem ha configure</code>.</p>\
         </body></html>",
        name = escape(&state.node_name),
        mode = status.mode,
        state = status.state,
        epoch = snapshot.epoch,
        fenced = snapshot
            .fenced
            .map(|reason| format!("<dt>Fenced</dt><dd>{}</dd>", escape(&reason)))
            .unwrap_or_default(),
    ))
}
