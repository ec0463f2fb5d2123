//! The admin REST API (`/api/v2`, EPMM-V2-like): HTTP Basic as an admin user, JSON in and out.

mod apps;
mod crud;
mod devices;
mod directory;
mod misc;
mod policies;

use crate::auth;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use serde::Deserialize;
use tandem_store::PageRequest;

pub use apps::APP_FILE_BYTES_MAX;

/// Largest JSON body the admin API accepts; app files have their own route and limit.
pub const JSON_BODY_BYTES_MAX: usize = 1024 * 1024;

/// `?query=&limit=&offset=` on list routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub query: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl From<PageQuery> for PageRequest {
    fn from(query: PageQuery) -> Self {
        PageRequest {
            query: query.query,
            limit: query.limit,
            offset: query.offset,
        }
    }
}

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ping", axum::routing::get(misc::ping))
        .merge(devices::routes())
        .merge(directory::routes())
        .merge(apps::routes())
        .merge(policies::routes())
        .merge(misc::routes())
        .nest(
            "/admin-users",
            crate::accounts::routes(tandem_store::accounts::AccountRealm::Admin),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::writes_need_active,
        ))
        .layer(middleware::from_fn_with_state(state, auth::require_admin))
        .layer(middleware::from_fn(crate::csrf::same_origin_writes))
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
}
