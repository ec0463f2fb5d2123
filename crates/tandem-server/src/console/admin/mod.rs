//! The Admin portal's pages (service listener), for admin users: one module per area. Every
//! page reads and writes through the same store functions as `/api/v2`; on a node that is not
//! Active every page is read-only (its write forms disabled, and a change posted anyway refused
//! by `view::writes_need_active`, the API's own check).

mod apps;
mod dashboard;
mod devices;
mod directory;
mod events;
mod policies;
mod view;

use super::{Console, login};
use crate::ha::HaHandle;
use crate::state::AppState;
use axum::routing::{get, post};
use axum::{Extension, Router, middleware};

pub fn router(state: AppState, ha: HaHandle) -> Router {
    let console = (state.clone(), Console::Admin);
    let pages = Router::new()
        .merge(dashboard::routes())
        .merge(devices::routes())
        .merge(directory::routes())
        .merge(apps::routes())
        .merge(policies::routes())
        .merge(events::routes())
        // Inside require_session (added below, so it runs first) and the HA handle.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            view::writes_need_active,
        ))
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
