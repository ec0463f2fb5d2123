//! `GET /`: the Admin portal's dashboard: how many devices, by platform and by status, the
//! newest events, and this node's HA state (the number an operator compares between the
//! Primary and the Standby, guide Table 3 task 3).

use super::view::{Moment, device_badge, message_page, query_string, refusal};
use crate::console::chrome::Badge;
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleSession, render};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tandem_store::{PageRequest, devices, events};

/// Events the dashboard shows; the Events page has the rest.
const RECENT_EVENTS_SHOWN: i64 = 10;

#[derive(Template)]
#[template(path = "console/admin_dashboard.html")]
struct Dashboard {
    chrome: Chrome,
    total: i64,
    platforms: Vec<Tallied>,
    statuses: Vec<Tallied>,
    mode: String,
    epoch: i64,
    events: Vec<EventRow>,
}

/// One platform or status and how many devices have it, linked to the list of them.
struct Tallied {
    words: String,
    badge: Badge,
    count: i64,
    href: String,
}

pub struct EventRow {
    pub at: Moment,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub message: String,
}

impl EventRow {
    pub fn of(event: events::Event, now: time::OffsetDateTime) -> Self {
        Self {
            at: Moment::stored(&event.at, now),
            subject: format!("{} {}", event.subject_type, event.subject_id),
            kind: event.kind,
            actor: event.actor,
            message: event.message,
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(show))
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/", "Dashboard");
    let read = state
        .db
        .read(|conn| {
            let recent = PageRequest {
                limit: Some(RECENT_EVENTS_SHOWN),
                ..PageRequest::default()
            };
            Ok((devices::tally(conn)?, events::list(conn, &recent)?))
        })
        .await;
    let (tally, recent) = match read {
        Ok(read) => read,
        Err(error) => {
            return message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                chrome,
                Flash::error(refusal(error)),
                "/",
            );
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let platforms = tally
        .by_platform
        .iter()
        .map(|(platform, count)| Tallied {
            words: platform.to_string(),
            badge: device_badge(devices::DeviceStatus::Active),
            count: *count,
            href: format!(
                "/devices{}",
                query_string(&[("platform", platform.as_str())])
            ),
        })
        .collect();
    let statuses = tally
        .by_status
        .iter()
        .map(|(status, count)| Tallied {
            words: status.to_string(),
            badge: device_badge(*status),
            count: *count,
            href: format!("/devices{}", query_string(&[("status", status.as_str())])),
        })
        .collect();
    render(&Dashboard {
        chrome,
        total: tally.total,
        platforms,
        statuses,
        mode: state.node_status().mode.to_string(),
        epoch: ha.snapshot().epoch,
        events: recent
            .results
            .into_iter()
            .map(|event| EventRow::of(event, now))
            .collect(),
    })
}
