//! `GET/POST /ha/config`: the HA Configuration window (guide: Step 6, Table 4), a plain form
//! that works without JavaScript, with this node's live status beside it: **HA Status** on a
//! Primary (the Secondary following it), **Node Status** on a Secondary (its Primary, the
//! heartbeat, the schedule).
//!
//! The form machinery here is shared with Notification Settings (`notifications.rs`): every
//! field carries the value it was loaded with (`was_<field>`), and Save and Apply sends only the
//! fields whose value the operator changed, so a page left open never puts back what another
//! operator (or a failover: Node Status) changed meanwhile. Each changed value is decoded by the
//! API's own `ConfigChange` and saved through `sysmgr::configure_as`, as `PUT /api/v1/ha/config`
//! is (`form.rs`); the live sections are `status.rs`.

mod form;
mod status;

pub(super) use form::*;
pub(super) use status::*;

use crate::console::time::utc_ms as utc_time;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render_with};
use crate::ha::HaHandle;
use crate::ha::wall_clock_ms;
use crate::state::{AppState, ConnectionInfo};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ha/config", get(show).post(save))
}

#[derive(Template)]
#[template(path = "console/sm_ha_config.html")]
struct HaConfigPage {
    chrome: Chrome,
    groups: Vec<GroupView>,
    /// Not saved: how many problems the form shows.
    problems: usize,
    refusal: Option<String>,
    failure: Option<String>,
    status: StatusSection,
    updated: String,
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    page(&state, &ha, &session, None, Refusal::default()).await
}

/// Why a form is shown again instead of saved.
#[derive(Default)]
struct Refusal {
    status: Option<StatusCode>,
    problems: Vec<Problem>,
    refusal: Option<String>,
    failure: Option<String>,
}

async fn page(
    state: &AppState,
    ha: &HaHandle,
    session: &ConsoleSession,
    form: Option<&HashMap<String, String>>,
    refusal: Refusal,
) -> Response {
    let snapshot = ha.snapshot();
    let live = Live::read(state, ha).await;
    let now_ms = wall_clock_ms();
    let stored = loaded_values(&snapshot.config);
    render_with(
        refusal.status.unwrap_or(StatusCode::OK),
        &HaConfigPage {
            chrome: Chrome::new(state, ha, session, "/ha/config", "HA Configuration"),
            groups: field_views(HA_GROUPS, &stored, form, &refusal.problems),
            problems: refusal.problems.len(),
            refusal: refusal.refusal,
            failure: refusal.failure,
            status: status_section(&snapshot, &live, now_ms),
            updated: utc_time(now_ms),
        },
    )
}

/// `POST /ha/config`: Save and Apply, or "Show fields for this mode" (re-shows the form for the
/// chosen Mode and replication without saving, for browsers without the page's script).
async fn save(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    connection: Option<Extension<ConnectionInfo>>,
    ConsoleForm(form): ConsoleForm<HashMap<String, String>>,
) -> Response {
    if form.get("action").is_some_and(|action| action == "show") {
        return page(&state, &ha, &session, Some(&form), Refusal::default()).await;
    }
    let before = ha.snapshot();
    let operator = Operator::of(&session, connection);
    match save_and_apply(&state, &ha, &operator, HA_GROUPS, &form).await {
        Saved::Nothing => session.redirect(
            &state,
            "/ha/config",
            crate::console::session::Flash::success("Nothing changed; nothing to save."),
        ),
        Saved::Applied {
            changed,
            configured,
        } => session.redirect(
            &state,
            "/ha/config",
            crate::console::session::Flash::success(saved_message(
                (&changed, HA_GROUPS),
                &configured,
                &before,
                wall_clock_ms(),
            )),
        ),
        Saved::Refused {
            status,
            problems,
            refusal,
            failure,
        } => {
            let refusal = Refusal {
                status: Some(status),
                problems,
                refusal,
                failure,
            };
            page(&state, &ha, &session, Some(&form), refusal).await
        }
    }
}
