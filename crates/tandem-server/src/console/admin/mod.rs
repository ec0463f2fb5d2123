//! The Admin portal's pages (service listener), for admin users: one module per area.

mod dashboard;

use super::{Console, login};
use crate::ha::HaHandle;
use crate::state::AppState;
use axum::routing::{get, post};
use axum::{Extension, Router, middleware};

pub fn router(state: AppState, ha: HaHandle) -> Router {
    let console = (state.clone(), Console::Admin);
    let pages = Router::new()
        .merge(dashboard::routes())
        .layer(Extension(ha))
        .with_state(state)
        .merge(
            Router::new()
                .route("/logout", post(login::logout))
                .with_state(console.clone()),
        )
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            super::require_session,
        ));
    Router::new()
        .route("/login", get(login::show).post(login::submit))
        .with_state(console)
        .route("/static/{name}", get(super::static_file))
        .merge(pages)
        .layer(middleware::from_fn(super::page_headers))
}
