//! `GET /`: the Admin portal's dashboard.

use crate::console::{Chrome, ConsoleSession, render};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

#[derive(Template)]
#[template(path = "console/admin_dashboard.html")]
struct Dashboard {
    chrome: Chrome,
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(show))
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    render(&Dashboard {
        chrome: Chrome::new(&state, &ha, &session, "/", "Dashboard"),
    })
}
