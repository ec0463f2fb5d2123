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

use super::Console;
use crate::ha::HaHandle;
use crate::state::AppState;
use axum::{Extension, Router, middleware};

pub fn router(state: AppState, ha: HaHandle) -> Router {
    let pages = Router::new()
        .merge(dashboard::routes())
        .merge(devices::routes())
        .merge(directory::routes())
        .merge(apps::routes())
        .merge(policies::routes())
        .merge(events::routes())
        // Inside require_session (added by console_router, so it runs first) and the HA handle.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            view::writes_need_active,
        ))
        .layer(Extension(ha))
        .with_state(state.clone());
    super::console_router(state, Console::Admin, pages)
}
