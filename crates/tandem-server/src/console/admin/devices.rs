//! `/devices`: the fleet, searched and filtered, a page at a time; `/devices/{id}`: one
//! device, its labels and its commands, and the Lock, Wipe and Retire actions, each confirmed
//! first (a browser dialog, or without JavaScript the page `/devices/{id}/confirm`).

use super::dashboard::EventRow;
use super::view::{
    Choice, Moment, Pager, command_badge, device_badge, given, message_page, offset_of,
    query_string, refusal,
};
use crate::console::chrome::Badge;
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render, urlencode};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use tandem_store::devices::{self, CommandKind, Device, DeviceFilter, DeviceStatus, Platform};
use tandem_store::{PageRequest, StoreError, events, labels};

/// Devices per page: a screenful an operator scans, well under the store's page bound.
const DEVICES_PAGE_SIZE: i64 = 50;
/// Labels offered as a filter: the store's largest page, more labels than a fleet uses.
const LABEL_CHOICES_MAX: i64 = tandem_store::common::PAGE_LIMIT_MAX;
/// Events of one device shown on its page (the Events page has the rest).
const DEVICE_EVENTS_SHOWN: i64 = 10;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{id}", get(detail))
        .route("/devices/{id}/confirm", get(confirm))
        .route("/devices/{id}/actions/{action}", post(act))
        .route("/devices/{id}/labels", post(apply_label))
        .route("/devices/{id}/labels/{label}/remove", post(remove_label))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    query: Option<String>,
    platform: Option<String>,
    status: Option<String>,
    label: Option<String>,
    offset: Option<String>,
}

#[derive(Template)]
#[template(path = "console/admin_devices.html")]
struct DeviceList {
    chrome: Chrome,
    query: String,
    platform: String,
    status: String,
    label: String,
    platforms: Vec<Choice>,
    statuses: Vec<Choice>,
    labels: Vec<Choice>,
    filtered: bool,
    rows: Vec<DeviceRow>,
    pager: Pager,
}

struct DeviceRow {
    href: String,
    identifier: String,
    platform: String,
    model: String,
    user: String,
    badge: Badge,
    last_checkin: Option<Moment>,
}

impl DeviceRow {
    fn of(device: &Device, now: time::OffsetDateTime) -> Self {
        Self {
            href: device_href(&device.uuid),
            identifier: identifier(device),
            platform: device.platform.to_string(),
            model: device.model.clone().unwrap_or_default(),
            user: device.user_principal.clone(),
            badge: device_badge(device.status),
            last_checkin: Moment::stored_optional(device.last_checkin_at.as_deref(), now),
        }
    }
}

/// What identifies a device to a person: its serial, else its IMEI, UDID or UUID.
fn identifier(device: &Device) -> String {
    device
        .serial
        .clone()
        .or_else(|| device.imei.clone())
        .or_else(|| device.udid.clone())
        .unwrap_or_else(|| device.uuid.clone())
}

fn device_href(uuid: &str) -> String {
    format!("/devices/{}", urlencode(uuid))
}

fn filter_choices() -> (Vec<Choice>, Vec<Choice>) {
    let any = || Choice::new("", "Any");
    let platforms = std::iter::once(any())
        .chain(
            Platform::ALL
                .iter()
                .map(|p| Choice::new(p.as_str(), p.as_str())),
        )
        .collect();
    let statuses = std::iter::once(any())
        .chain(
            DeviceStatus::ALL
                .iter()
                .map(|s| Choice::new(s.as_str(), device_badge(*s).words)),
        )
        .collect();
    (platforms, statuses)
}

/// The labels a device list or page offers (the first [`LABEL_CHOICES_MAX`]).
fn label_choices(conn: &rusqlite::Connection) -> tandem_store::StoreResult<Vec<labels::Label>> {
    let request = PageRequest {
        limit: Some(LABEL_CHOICES_MAX),
        ..PageRequest::default()
    };
    Ok(labels::list(conn, &request)?.results)
}

async fn list(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Query(query): Query<ListQuery>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/devices", "Devices");
    let text = given(query.query).unwrap_or_default();
    let filter = DeviceFilter {
        platform: query.platform.as_deref().and_then(Platform::parse),
        status: query.status.as_deref().and_then(DeviceStatus::parse),
        label: given(query.label),
    };
    let offset = offset_of(query.offset.as_deref());
    let request = PageRequest {
        query: Some(text.clone()),
        limit: Some(DEVICES_PAGE_SIZE),
        offset: Some(offset),
    };
    let wanted = filter.clone();
    let read = state
        .db
        .read(move |conn| {
            let page = devices::list_filtered(conn, &request, &wanted)?;
            Ok((page, label_choices(conn)?))
        })
        .await;
    let (page, labels) = match read {
        Ok(read) => read,
        // A search too long for the store, or a store that cannot be read.
        Err(error) => return unknown_device(chrome, error),
    };
    let platform = filter.platform.map(|p| p.as_str()).unwrap_or_default();
    let status = filter.status.map(|s| s.as_str()).unwrap_or_default();
    let label = filter.label.clone().unwrap_or_default();
    let base = format!(
        "/devices{}",
        query_string(&[
            ("query", &text),
            ("platform", platform),
            ("status", status),
            ("label", &label),
        ])
    );
    let pager = Pager::new(
        &base,
        offset,
        page.results.len(),
        page.total_count,
        DEVICES_PAGE_SIZE,
    );
    let now = time::OffsetDateTime::now_utc();
    let rows = page.results.iter().map(|d| DeviceRow::of(d, now)).collect();
    let (platforms, statuses) = filter_choices();
    let labels = std::iter::once(Choice::new("", "Any"))
        .chain(labels.into_iter().map(|l| Choice::new(&l.name, &l.name)))
        .collect();
    render(&DeviceList {
        chrome,
        filtered: !text.is_empty() || filter != DeviceFilter::default(),
        query: text,
        platform: platform.to_owned(),
        status: status.to_owned(),
        label,
        platforms,
        statuses,
        labels,
        rows,
        pager,
    })
}

#[derive(Template)]
#[template(path = "console/admin_device.html")]
struct DeviceDetail {
    chrome: Chrome,
    device: Device,
    badge: Badge,
    href: String,
    registered: Moment,
    enrolled: Option<Moment>,
    last_checkin: Option<Moment>,
    commands: Vec<CommandRow>,
    events: Vec<EventRow>,
    actions: Vec<Action>,
    /// The device's labels (value: the label's id), each with a Remove button.
    applied: Vec<Choice>,
    /// Labels it does not carry yet, offered by Apply Label.
    applicable: Vec<Choice>,
}

struct CommandRow {
    id: i64,
    command: String,
    badge: Badge,
    queued_by: String,
    queued: Moment,
    sent: Option<Moment>,
    completed: Option<Moment>,
    result: String,
}

impl CommandRow {
    fn of(command: devices::DeviceCommand, now: time::OffsetDateTime) -> Self {
        Self {
            id: command.id,
            command: command.command.to_string(),
            badge: command_badge(command.status),
            queued_by: command.queued_by,
            queued: Moment::stored(&command.queued_at, now),
            sent: Moment::stored_optional(command.sent_at.as_deref(), now),
            completed: Moment::stored_optional(command.completed_at.as_deref(), now),
            result: command.result.unwrap_or_default(),
        }
    }
}

/// Lock, Wipe or Retire: what the button says and what the confirmation warns of.
struct Action {
    /// The path segment (`lock`), as `POST /api/v2/devices/{id}/actions/{action}` names it.
    name: &'static str,
    kind: CommandKind,
    label: &'static str,
    warning: &'static str,
    danger: bool,
}

const ACTIONS: [(&str, CommandKind, &str, &str, bool); 3] = [
    (
        "lock",
        CommandKind::Lock,
        "Lock",
        "The device locks its screen at its next check-in; its user unlocks it with the passcode.",
        false,
    ),
    (
        "wipe",
        CommandKind::Wipe,
        "Wipe",
        "The device erases all its data and returns to factory settings at its next check-in. \
         This cannot be undone.",
        true,
    ),
    (
        "retire",
        CommandKind::Retire,
        "Retire",
        "The device removes its company apps, policies and configurations at its next check-in \
         and is no longer managed. Its user keeps personal data.",
        true,
    ),
];

fn action(name: &str) -> Option<Action> {
    ACTIONS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(name, kind, label, warning, danger)| Action {
            name,
            kind,
            label,
            warning,
            danger,
        })
}

async fn detail(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path(uuid): Path<String>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/devices", "Device");
    let read = state
        .db
        .read(move |conn| {
            let device = devices::get(conn, &uuid)?;
            let commands = devices::commands(conn, &uuid)?;
            let request = PageRequest {
                query: Some(uuid.clone()),
                limit: Some(DEVICE_EVENTS_SHOWN),
                offset: None,
            };
            let events = events::list(conn, &request)?;
            Ok((device, commands, events, label_choices(conn)?))
        })
        .await;
    let (device, commands, events, labels) = match read {
        Ok(read) => read,
        Err(error) => return unknown_device(chrome, error),
    };
    let now = time::OffsetDateTime::now_utc();
    let commands = commands
        .into_iter()
        .map(|c| CommandRow::of(c, now))
        .collect();
    let (applied, applicable) = labels
        .iter()
        .map(|label| Choice::new(label.id.to_string(), &label.name))
        .partition(|choice| device.labels.contains(&choice.words));
    render(&DeviceDetail {
        chrome: Chrome {
            title: format!("Device {}", identifier(&device)),
            ..chrome
        },
        badge: device_badge(device.status),
        href: device_href(&device.uuid),
        registered: Moment::stored(&device.registered_at, now),
        enrolled: Moment::stored_optional(device.enrolled_at.as_deref(), now),
        last_checkin: Moment::stored_optional(device.last_checkin_at.as_deref(), now),
        commands,
        events: events
            .results
            .into_iter()
            .map(|event| EventRow::of(event, now))
            .collect(),
        applied,
        applicable,
        actions: ["lock", "wipe", "retire"]
            .into_iter()
            .filter_map(action)
            .collect(),
        device,
    })
}

/// An unknown device, a refused search or a store that cannot be read, as a page with the
/// reason.
fn unknown_device(chrome: Chrome, error: StoreError) -> Response {
    let status = match error {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    message_page(status, chrome, Flash::error(refusal(error)), "/devices")
}

#[derive(Deserialize)]
struct ConfirmQuery {
    action: Option<String>,
}

#[derive(Template)]
#[template(path = "console/admin_device_confirm.html")]
struct Confirm {
    chrome: Chrome,
    device: Device,
    identifier: String,
    href: String,
    action: Action,
}

/// `GET /devices/{id}/confirm?action=wipe`: the confirmation without JavaScript.
async fn confirm(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path(uuid): Path<String>,
    Query(query): Query<ConfirmQuery>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/devices", "Confirm");
    let Some(action) = query.action.as_deref().and_then(action) else {
        return message_page(
            StatusCode::NOT_FOUND,
            chrome,
            Flash::error(format!(
                "unknown device action {:?}; use retire, wipe or lock",
                query.action.unwrap_or_default()
            )),
            device_href(&uuid),
        );
    };
    let device = match state.db.read(move |conn| devices::get(conn, &uuid)).await {
        Ok(device) => device,
        Err(error) => return unknown_device(chrome, error),
    };
    let identifier = identifier(&device);
    render(&Confirm {
        chrome: Chrome {
            title: format!("{} device {identifier}?", action.label),
            ..chrome
        },
        href: device_href(&device.uuid),
        identifier,
        device,
        action,
    })
}

/// `POST /devices/{id}/actions/{action}`: queues the command as the API does
/// (`devices::queue_action`), then back to the device with what happened. Unconfirmed (no
/// dialog ran), it goes to the device's own confirmation page first (`console::confirm`).
async fn act(
    State(state): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
    Path((uuid, name)): Path<(String, String)>,
    ConsoleForm(confirmed): ConsoleForm<crate::console::confirm::Confirmed>,
) -> Response {
    let back = device_href(&uuid);
    let Some(action) = action(&name) else {
        let text = format!("unknown device action {name:?}; use retire, wipe or lock");
        return session.redirect(&state, &back, Flash::error(text));
    };
    if !confirmed.yes() {
        let to = format!("{back}/confirm{}", query_string(&[("action", action.name)]));
        return Redirect::to(&to).into_response();
    }
    let actor = session.user().to_owned();
    let kind = action.kind;
    let target = uuid.clone();
    let queued = state
        .db
        .write(move |conn| devices::queue_action(conn, &actor, &target, kind))
        .await;
    match queued {
        Ok(command) => session.redirect(
            &state,
            &back,
            Flash::success(format!(
                "{} queued for device {uuid} (command {}): it is sent at the device's next \
                 check-in.",
                action.label, command.id
            )),
        ),
        Err(error @ StoreError::NotFound { .. }) => {
            session.redirect(&state, "/devices", Flash::error(refusal(error)))
        }
        Err(error) => session.redirect(
            &state,
            &back,
            Flash::error(format!("{} refused: {}", action.label, refusal(error))),
        ),
    }
}

#[derive(Deserialize)]
struct ApplyForm {
    label: i64,
}

/// `POST /devices/{id}/labels`: applies a label to this device, as
/// `POST /api/v2/labels/{id}/devices` does.
async fn apply_label(
    State(state): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
    Path(uuid): Path<String>,
    ConsoleForm(form): ConsoleForm<ApplyForm>,
) -> Response {
    let actor = session.user().to_owned();
    let target = vec![uuid.clone()];
    let applied = state
        .db
        .write(move |conn| labels::apply(conn, &actor, form.label, &target))
        .await;
    let flash = match applied {
        Ok(label) => Flash::success(format!("Label {} applied.", label.name)),
        Err(error) => Flash::error(format!("The label was not applied: {}", refusal(error))),
    };
    session.redirect(&state, &device_href(&uuid), flash)
}

/// `POST /devices/{id}/labels/{label}/remove`: as `DELETE /api/v2/labels/{id}/devices/{uuid}`.
async fn remove_label(
    State(state): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
    Path((uuid, label)): Path<(String, i64)>,
    ConsoleForm(()): ConsoleForm<()>,
) -> Response {
    let actor = session.user().to_owned();
    let target = uuid.clone();
    let removed = state
        .db
        .write(move |conn| labels::remove(conn, &actor, label, &target))
        .await;
    let flash = match removed {
        Ok(label) => Flash::success(format!("Label {} removed from this device.", label.name)),
        Err(error) => Flash::error(format!("The label was not removed: {}", refusal(error))),
    };
    session.redirect(&state, &device_href(&uuid), flash)
}
