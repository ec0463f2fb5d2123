//! `/events`: the audit log, newest first, a page at a time, filtered by kind and searched,
//! through the store function `/api/v2/events` calls.

use super::dashboard::EventRow;
use super::view::{Choice, Pager, given, message_page, offset_of, query_string, refusal};
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleSession, render};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tandem_store::{PageRequest, StoreError, events};

/// Events per page: a screenful, well under the store's page bound.
const EVENTS_PAGE_SIZE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(list))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    kind: Option<String>,
    query: Option<String>,
    offset: Option<String>,
}

#[derive(Template)]
#[template(path = "console/admin_events.html")]
struct EventsPage {
    chrome: Chrome,
    kind: String,
    query: String,
    kinds: Vec<Choice>,
    filtered: bool,
    events: Vec<EventRow>,
    pager: Pager,
}

async fn list(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Query(query): Query<ListQuery>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/events", "Events");
    let kind = given(query.kind).unwrap_or_default();
    let text = given(query.query).unwrap_or_default();
    let offset = offset_of(query.offset.as_deref());
    let request = PageRequest {
        query: Some(text.clone()),
        limit: Some(EVENTS_PAGE_SIZE),
        offset: Some(offset),
    };
    let wanted = (!kind.is_empty()).then(|| kind.clone());
    let read = state
        .db
        .read(move |conn| {
            let page = events::list_of_kind(conn, &request, wanted.as_deref())?;
            Ok((page, events::kinds(conn)?))
        })
        .await;
    let (page, kinds) = match read {
        Ok(read) => read,
        Err(error) => {
            let status = match error {
                StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return message_page(status, chrome, Flash::error(refusal(error)), "/events");
        }
    };
    let base = format!(
        "/events{}",
        query_string(&[("kind", &kind), ("query", &text)])
    );
    let pager = Pager::new(
        &base,
        offset,
        page.results.len(),
        page.total_count,
        EVENTS_PAGE_SIZE,
    );
    let now = time::OffsetDateTime::now_utc();
    render(&EventsPage {
        chrome,
        filtered: !kind.is_empty() || !text.is_empty(),
        kinds: std::iter::once(Choice::new("", "Any"))
            .chain(kinds.into_iter().map(|kind| Choice::new(&kind, &kind)))
            .collect(),
        kind,
        query: text,
        events: page
            .results
            .into_iter()
            .map(|event| EventRow::of(event, now))
            .collect(),
        pager,
    })
}
