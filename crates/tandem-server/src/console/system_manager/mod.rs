//! The System Manager console's pages (System Manager listener): one module per window.

mod cluster;
mod ha_config;
mod logs;
mod notifications;
mod overview;
mod sync;
mod trusted_hosts;
mod users;

use super::Console;
use crate::control::NodeExecutor;
use crate::ha::HaHandle;
use crate::state::AppState;
use axum::{Extension, Router};
use std::sync::Arc;

/// The operator's commands, carried out in this process (the control socket's executor).
pub type Executor = Arc<NodeExecutor>;

pub fn router(state: AppState, ha: HaHandle, executor: Executor) -> Router {
    let pages = Router::new()
        .merge(overview::routes())
        .merge(ha_config::routes())
        .merge(trusted_hosts::routes())
        .merge(sync::routes())
        .merge(notifications::routes())
        .merge(cluster::routes())
        .merge(logs::routes())
        .merge(users::routes())
        .layer(Extension(ha))
        .layer(Extension(executor))
        .with_state(state.clone());
    super::console_router(state, Console::SystemManager, pages)
}
