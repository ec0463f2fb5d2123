//! `/policies`: Policies & Configurations (both kinds, in priority order), Add, and
//! `/policies/{kind}/{id}` to edit one, through the store functions `/api/v2/policies` and
//! `/api/v2/configurations` call.

use super::view::{
    Choice, Field, Moment, field_problems, message_page, place_problems, refusal, status_of,
};
use crate::console::confirm::{Confirm, Confirmed};
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render_with};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use tandem_store::policies::{self, Policy, PolicyInput, PolicyKind};
use tandem_store::{FieldError, InvalidInput, PageRequest, StoreError};

/// Policies (and, apart, configurations) listed: the store's largest page; a fleet has tens.
const POLICIES_SHOWN_MAX: i64 = tandem_store::common::PAGE_LIMIT_MAX;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list).post(add))
        .route("/policies/{kind}/{id}", get(edit).post(save))
        .route("/policies/{kind}/{id}/remove", post(remove))
}

/// The path segment of a kind (`policy`, `configuration`).
fn kind_of(segment: &str) -> Option<PolicyKind> {
    PolicyKind::ALL
        .iter()
        .copied()
        .find(|kind| kind.noun() == segment)
}

/// A kind as a heading says it.
fn title_of(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Policy => "Policy",
        PolicyKind::Configuration => "Configuration",
    }
}

struct Section {
    kind: &'static str,
    title: &'static str,
    total: i64,
    rows: Vec<PolicyRow>,
    /// More exist than are shown.
    truncated: bool,
}

struct PolicyRow {
    policy: Policy,
    href: String,
    updated: Moment,
}

#[derive(Template)]
#[template(path = "console/admin_policies.html")]
struct PoliciesPage {
    chrome: Chrome,
    sections: Vec<Section>,
    fields: Vec<Field>,
    unplaced: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/admin_policy.html")]
struct PolicyPage {
    chrome: Chrome,
    policy: Policy,
    href: String,
    fields: Vec<Field>,
    unplaced: Vec<String>,
}

/// The Add and Edit form's fields, as the form sends them.
#[derive(Debug, Default, Deserialize)]
struct PolicyForm {
    kind: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    policy_type: Option<String>,
    priority: Option<String>,
    payload: Option<String>,
}

impl PolicyForm {
    fn of(policy: &Policy) -> Self {
        Self {
            kind: Some(policy.kind.noun().to_owned()),
            name: Some(policy.name.clone()),
            policy_type: Some(policy.policy_type.clone()),
            priority: Some(policy.priority.to_string()),
            payload: serde_json::to_string_pretty(&policy.payload).ok(),
        }
    }

    /// The store's input; a priority that is no number or a payload that is no JSON is
    /// refused here, by name, before the store sees the rest.
    fn input(&self) -> Result<PolicyInput, InvalidInput> {
        let mut invalid = InvalidInput::default();
        let priority = match self.priority.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| invalid.push("priority", text, "must be a whole number, e.g. 100"))
                .ok(),
        };
        let payload = match self.payload.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => serde_json::from_str(text)
                .map_err(|error| {
                    invalid.push(
                        "payload",
                        text,
                        format!("is not JSON ({error}); write an object like {{\"minLength\": 6}}"),
                    )
                })
                .ok(),
        };
        if !invalid.fields.is_empty() {
            return Err(invalid);
        }
        Ok(PolicyInput {
            name: self.name.clone(),
            policy_type: self.policy_type.clone(),
            priority,
            payload,
        })
    }

    fn fields(&self, with_kind: bool) -> Vec<Field> {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let mut fields = Vec::new();
        if with_kind {
            let kinds = PolicyKind::ALL
                .iter()
                .map(|kind| Choice::new(kind.noun(), title_of(*kind)))
                .collect();
            fields.push(Field::select("kind", "Kind", text(&self.kind), kinds).required());
        }
        fields.extend([
            Field::text("name", "Name", text(&self.name)).required(),
            Field::text("type", "Type", text(&self.policy_type))
                .required()
                .hint("Upper-case letters, digits and _, e.g. PASSCODE or WIFI."),
            Field::text("priority", "Priority", text(&self.priority))
                .kind("number")
                .hint("0 is applied first and wins conflicts; empty is the middle, 5000."),
            Field::text("payload", "Payload (JSON)", text(&self.payload))
                .kind("textarea")
                .hint("A JSON object, e.g. {\"minLength\": 6}; empty is {}."),
        ]);
        fields
    }
}

async fn policies_page(
    state: &AppState,
    chrome: Chrome,
    form: &PolicyForm,
    problems: &[FieldError],
) -> Response {
    let read = state
        .db
        .read(|conn| {
            let request = PageRequest {
                limit: Some(POLICIES_SHOWN_MAX),
                ..PageRequest::default()
            };
            Ok((
                policies::list(conn, PolicyKind::Policy, &request)?,
                policies::list(conn, PolicyKind::Configuration, &request)?,
            ))
        })
        .await;
    let (policy_page, configuration_page) = match read {
        Ok(read) => read,
        Err(error) => {
            let flash = Flash::error(refusal(error));
            return message_page(StatusCode::SERVICE_UNAVAILABLE, chrome, flash, "/policies");
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let section = |kind: PolicyKind, page: tandem_store::Page<Policy>| Section {
        kind: kind.noun(),
        title: match kind {
            PolicyKind::Policy => "Policies",
            PolicyKind::Configuration => "Configurations",
        },
        total: page.total_count,
        truncated: page.has_more,
        rows: page
            .results
            .into_iter()
            .map(|policy| PolicyRow {
                href: policy_href(kind, policy.id),
                updated: Moment::stored(&policy.updated_at, now),
                policy,
            })
            .collect(),
    };
    let sections = vec![
        section(PolicyKind::Policy, policy_page),
        section(PolicyKind::Configuration, configuration_page),
    ];
    let mut fields = form.fields(true);
    let unplaced = place_problems(&mut fields, problems);
    render_with(
        status_of(problems),
        &PoliciesPage {
            chrome,
            sections,
            fields,
            unplaced,
        },
    )
}

async fn list(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    let chrome = Chrome::new(
        &state,
        &ha,
        &session,
        "/policies",
        "Policies & Configurations",
    );
    let form = PolicyForm {
        kind: Some(PolicyKind::Policy.noun().to_owned()),
        ..PolicyForm::default()
    };
    policies_page(&state, chrome, &form, &[]).await
}

async fn add(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(form): ConsoleForm<PolicyForm>,
) -> Response {
    let kind = form.kind.as_deref().and_then(kind_of);
    let added = match (kind, form.input()) {
        (None, _) => Err(StoreError::Invalid(InvalidInput::single(
            "kind",
            form.kind.as_deref().unwrap_or_default(),
            "must be policy or configuration",
        ))),
        (_, Err(invalid)) => Err(StoreError::Invalid(invalid)),
        (Some(kind), Ok(input)) => {
            let actor = session.user().to_owned();
            state
                .db
                .write(move |conn| policies::create(conn, &actor, kind, &input))
                .await
        }
    };
    match added {
        Ok(policy) => session.redirect(
            &state,
            "/policies",
            Flash::success(format!("{} {} added.", title_of(policy.kind), policy.name)),
        ),
        Err(error @ StoreError::Invalid(_)) => {
            let chrome = Chrome::new(
                &state,
                &ha,
                &session,
                "/policies",
                "Policies & Configurations",
            );
            policies_page(&state, chrome, &form, field_problems(&error)).await
        }
        Err(error) => session.redirect(
            &state,
            "/policies",
            Flash::error(format!("Nothing was added: {}", refusal(error))),
        ),
    }
}

async fn policy_page(
    state: &AppState,
    chrome: Chrome,
    (kind, id): (PolicyKind, i64),
    form: Option<&PolicyForm>,
    problems: &[FieldError],
) -> Response {
    let policy = match state
        .db
        .read(move |conn| policies::get(conn, kind, id))
        .await
    {
        Ok(policy) => policy,
        Err(error) => {
            let status = match error {
                StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return message_page(status, chrome, Flash::error(refusal(error)), "/policies");
        }
    };
    let mut fields = match form {
        Some(form) => form.fields(false),
        None => PolicyForm::of(&policy).fields(false),
    };
    let unplaced = place_problems(&mut fields, problems);
    render_with(
        status_of(problems),
        &PolicyPage {
            chrome: Chrome {
                title: format!("{} {}", title_of(kind), policy.name),
                ..chrome
            },
            href: policy_href(kind, id),
            policy,
            fields,
            unplaced,
        },
    )
}

/// The kind and id of a policy's path.
fn target(kind: &str, id: &str) -> Option<(PolicyKind, i64)> {
    Some((kind_of(kind)?, id.parse::<i64>().ok()?))
}

fn no_such(chrome: Chrome, kind: &str, id: &str) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        chrome,
        Flash::error(format!(
            "no policy or configuration at /policies/{kind}/{id}"
        )),
        "/policies",
    )
}

async fn edit(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let chrome = Chrome::new(
        &state,
        &ha,
        &session,
        "/policies",
        "Policies & Configurations",
    );
    match target(&kind, &id) {
        Some(target) => policy_page(&state, chrome, target, None, &[]).await,
        None => no_such(chrome, &kind, &id),
    }
}

async fn save(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path((kind, id)): Path<(String, String)>,
    ConsoleForm(form): ConsoleForm<PolicyForm>,
) -> Response {
    let chrome = || {
        Chrome::new(
            &state,
            &ha,
            &session,
            "/policies",
            "Policies & Configurations",
        )
    };
    let Some((kind, id)) = target(&kind, &id) else {
        return no_such(chrome(), &kind, &id);
    };
    let saved = match form.input() {
        Err(invalid) => Err(StoreError::Invalid(invalid)),
        Ok(input) => {
            let actor = session.user().to_owned();
            state
                .db
                .write(move |conn| policies::update(conn, &actor, kind, id, &input))
                .await
        }
    };
    let href = format!("/policies/{}/{id}", kind.noun());
    match saved {
        Ok(policy) => session.redirect(
            &state,
            &href,
            Flash::success(format!(
                "{} {} saved (version {}).",
                title_of(kind),
                policy.name,
                policy.version
            )),
        ),
        Err(error @ StoreError::Invalid(_)) => {
            let problems = field_problems(&error);
            policy_page(&state, chrome(), (kind, id), Some(&form), problems).await
        }
        Err(error) => session.redirect(
            &state,
            &href,
            Flash::error(format!("Nothing was saved: {}", refusal(error))),
        ),
    }
}

/// A policy's or configuration's own page.
fn policy_href(kind: PolicyKind, id: i64) -> String {
    format!("/policies/{}/{id}", kind.noun())
}

async fn remove(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Path((kind, id)): Path<(String, String)>,
    ConsoleForm(confirmed): ConsoleForm<Confirmed>,
) -> Response {
    let chrome = Chrome::new(
        &state,
        &ha,
        &session,
        "/policies",
        "Policies & Configurations",
    );
    let Some((kind, id)) = target(&kind, &id) else {
        return no_such(chrome, &kind, &id);
    };
    if !confirmed.yes() {
        let Ok(policy) = state
            .db
            .read(move |conn| policies::get(conn, kind, id))
            .await
        else {
            return session.redirect(&state, "/policies", Flash::error("No such policy."));
        };
        return Confirm {
            question: format!("Remove {}?", policy.name),
            consequences: vec!["Devices stop receiving it at their next check-in.".into()],
            action: format!("{}/remove", policy_href(kind, id)),
            fields: Vec::new(),
            button: format!("Remove {}", policy.name),
            cancel: policy_href(kind, id),
            chrome,
        }
        .page();
    }
    let actor = session.user().to_owned();
    let removed = state
        .db
        .write(move |conn| {
            let policy = policies::get(conn, kind, id)?;
            policies::delete(conn, &actor, kind, id)?;
            Ok(policy.name)
        })
        .await;
    let flash = match removed {
        Ok(name) => Flash::success(format!("{} {name} removed.", title_of(kind))),
        Err(error) => Flash::error(format!("Nothing was removed: {}", refusal(error))),
    };
    session.redirect(&state, "/policies", flash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priority_or_payload_the_store_cannot_read_is_refused_by_name() {
        let form = PolicyForm {
            priority: Some("high".into()),
            payload: Some("{minLength: 6}".into()),
            ..PolicyForm::default()
        };
        let invalid = form.input().unwrap_err();
        let fields: Vec<_> = invalid.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["priority", "payload"]);
        let good = PolicyForm {
            priority: Some(" 7 ".into()),
            payload: Some("{\"minLength\": 6}".into()),
            ..PolicyForm::default()
        };
        let input = good.input().unwrap();
        assert_eq!(input.priority, Some(7));
        assert_eq!(input.payload, Some(serde_json::json!({"minLength": 6})));
        assert_eq!(kind_of("configuration"), Some(PolicyKind::Configuration));
        assert_eq!(kind_of("POLICY"), None);
    }
}
