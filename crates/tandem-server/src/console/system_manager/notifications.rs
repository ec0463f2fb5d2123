//! `GET/POST /ha/notifications` and `POST /ha/notifications/test`: Notification Settings
//! (guide: Step 6; Table 3, task 4): who is e-mailed, on what, through which relay, and
//! **Test**, which sends one e-mail now and shows the relay's answer.
//!
//! The fields are part of the HA configuration and are saved exactly as the HA Configuration
//! window saves (`ha_config::save_and_apply`: only the fields changed since the page loaded, the
//! API's decoding and validation, each refused value next to its field).

use super::ha_config::{
    Applies, FieldSpec, GroupSpec, GroupView, Input, Operator, Problem, Saved, field_views,
    loaded_values, save_and_apply, saved_message,
};
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render_with};
use crate::ha::{HaHandle, wall_clock_ms};
use crate::state::{AppState, ConnectionInfo};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use std::collections::HashMap;
use tandem_repl::ops::{Event, FailureKind};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ha/notifications", get(show).post(save))
        .route("/ha/notifications/test", post(test))
}

const NOTIFICATION_GROUPS: &[GroupSpec] = &[
    GroupSpec {
        legend: "Notification Settings",
        fields: &[
            FieldSpec {
                name: "notifyEmail",
                label: "E-mail addresses",
                hint: "One address per line, e.g. ops@example.com.",
                input: Input::Lines,
                applies: Applies::Always,
            },
            FieldSpec {
                name: "notifyOnSyncCompletion",
                label: "Notify On: Sync Completion",
                hint: "An e-mail after every sync this node runs.",
                input: Input::Check,
                applies: Applies::Always,
            },
            FieldSpec {
                name: "notifyOnFailure",
                label: "Notify On: Failure / this server becomes primary",
                hint: "An e-mail when a failure is detected or this node takes over.",
                input: Input::Check,
                applies: Applies::Always,
            },
        ],
    },
    GroupSpec {
        legend: "SMTP Relay",
        fields: &[
            FieldSpec {
                name: "smtpRelay",
                label: "SMTP relay",
                hint: "HOST[:PORT] of the relay that carries the e-mail; empty: notifications \
                       are only written to the Notifications log.",
                input: Input::Text,
                applies: Applies::Always,
            },
            FieldSpec {
                name: "smtpSecurity",
                label: "SMTP security",
                hint: "How the connection to the relay is protected.",
                input: Input::Choice(&[
                    ("starttls", "STARTTLS"),
                    ("tls", "TLS (SMTPS)"),
                    ("none", "None (trusted network only)"),
                ]),
                applies: Applies::Always,
            },
            FieldSpec {
                name: "smtpFrom",
                label: "Sender",
                hint: "The From address; empty: tandem@localhost.",
                input: Input::Text,
                applies: Applies::Always,
            },
            FieldSpec {
                name: "smtpCaFile",
                label: "CA file",
                hint: "Absolute path of a PEM file of the CA that signed the relay's \
                       certificate; empty: the public roots.",
                input: Input::Text,
                applies: Applies::Always,
            },
        ],
    },
];

#[derive(Template)]
#[template(path = "console/sm_notifications.html")]
struct NotificationsPage {
    chrome: Chrome,
    groups: Vec<GroupView>,
    problems: usize,
    refusal: Option<String>,
    failure: Option<String>,
    /// Test is possible: at least one address and a relay are saved.
    testable: bool,
}

async fn page(
    state: &AppState,
    ha: &HaHandle,
    session: &ConsoleSession,
    form: Option<&HashMap<String, String>>,
    (status, problems, failure): (StatusCode, Vec<Problem>, Option<String>),
) -> Response {
    let config = ha.snapshot().config;
    let stored = loaded_values(&config);
    render_with(
        status,
        &NotificationsPage {
            chrome: Chrome::new(
                state,
                ha,
                session,
                "/ha/notifications",
                "Notification Settings",
            ),
            groups: field_views(NOTIFICATION_GROUPS, &stored, form, &problems),
            problems: problems.len(),
            refusal: None,
            failure,
            testable: !config.notify_email.is_empty() && config.smtp_relay.is_some(),
        },
    )
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    page(
        &state,
        &ha,
        &session,
        None,
        (StatusCode::OK, Vec::new(), None),
    )
    .await
}

/// `POST /ha/notifications`: Save and Apply of the notification fields.
async fn save(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    connection: Option<Extension<ConnectionInfo>>,
    ConsoleForm(form): ConsoleForm<HashMap<String, String>>,
) -> Response {
    let before = ha.snapshot();
    let operator = Operator::of(&session, connection);
    let flash = match save_and_apply(&state, &ha, &operator, NOTIFICATION_GROUPS, &form).await {
        Saved::Nothing => Flash::success("Nothing changed; nothing to save."),
        Saved::Applied {
            changed,
            configured,
        } => Flash::success(saved_message(
            (&changed, NOTIFICATION_GROUPS),
            &configured,
            &before,
            wall_clock_ms(),
        )),
        Saved::Refused {
            status,
            problems,
            refusal,
            failure,
        } => {
            // Notification fields change no role, so a refusal is never the one-Active kind;
            // shown as a failure if it ever were.
            let failure = failure.or(refusal);
            return page(
                &state,
                &ha,
                &session,
                Some(&form),
                (status, problems, failure),
            )
            .await;
        }
    };
    session.redirect(&state, "/ha/notifications", flash)
}

/// The Test form carries nothing but its token.
#[derive(Deserialize)]
struct TestForm {}

/// `POST /ha/notifications/test`: one e-mail through the saved settings, now; the result (the
/// addresses and the relay that took it, or the relay's error) as the page's message.
async fn test(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(TestForm {}): ConsoleForm<TestForm>,
) -> Response {
    let snapshot = ha.snapshot();
    let event =
        crate::control::test_notification_running(&state.local, &snapshot, &state.node_name).await;
    session.redirect(&state, "/ha/notifications", test_flash(&event))
}

/// What Test reports: the relay's acceptance with the addresses, or why no e-mail went out.
fn test_flash(event: &Event) -> Flash {
    match event {
        Event::Done { result } => {
            let to = result["to"]
                .as_array()
                .map(|addresses| {
                    addresses
                        .iter()
                        .filter_map(|address| address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            Flash::success(format!(
                "Test e-mail sent to {to} through {}: the relay accepted it. If it does not \
                 arrive, the relay's own log says where it went.",
                result["relay"].as_str().unwrap_or("the relay")
            ))
        }
        Event::Failed {
            kind: FailureKind::Usage,
            message,
        } => Flash::error(format!(
            "Test not sent: {message}. Save at least one address and an SMTP relay first."
        )),
        Event::Failed { message, .. } => Flash::error(format!(
            "Test e-mail not sent: the relay did not take it: {message}"
        )),
        Event::Progress { .. } => Flash::error("The test ended without a result."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_results_name_the_addresses_and_relay_or_the_relays_error() {
        let sent = test_flash(&Event::Done {
            result: json!({ "to": ["a@example.com", "b@example.com"], "relay": "smtp:25" }),
        });
        assert_eq!(sent.kind, crate::console::session::FlashKind::Success);
        assert!(
            sent.text
                .contains("a@example.com, b@example.com through smtp:25")
        );
        let failed = test_flash(&Event::Failed {
            kind: FailureKind::Failed,
            message: "connection refused".into(),
        });
        assert_eq!(failed.kind, crate::console::session::FlashKind::Error);
        assert!(failed.text.contains("connection refused"));
    }

    #[test]
    fn every_notification_field_of_the_api_is_on_the_page() {
        let config = serde_json::to_value(tandem_ha::config::HaConfig::default()).unwrap();
        let on_page: Vec<_> = NOTIFICATION_GROUPS
            .iter()
            .chain(super::super::ha_config::HA_GROUPS)
            .flat_map(|group| group.fields.iter().map(|field| field.name))
            .collect();
        for field in config.as_object().unwrap().keys() {
            assert!(on_page.contains(&field.as_str()), "{field} is on no page");
        }
    }
}
