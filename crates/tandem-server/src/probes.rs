//! Load-balancer probes. They read the node's state from memory and never touch the database,
//! so they stay fast while the node is saturated with device traffic.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tandem_ha::ProbeAnswer;

fn answer(probe: ProbeAnswer) -> impl IntoResponse {
    let status = if probe.healthy {
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
        probe.body,
    )
}

/// `GET /status/status.html`
pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    answer(tandem_ha::status_probe(state.node_status()))
}

/// `GET /hastatus.html`
pub async fn ha_status(State(state): State<AppState>) -> impl IntoResponse {
    answer(tandem_ha::ha_status_probe(state.node_status()))
}
