//! `GET /security/users`: the System Manager local users (Security → Local Users): list, add,
//! change a password, remove. Through the `accounts` module, as `tandem users … \
//! --system-manager` and `/api/v1/users` do: the same strength rules, the same audit event, and
//! the same refusal on a node that is not Active (accounts replicate from the Active node).

use crate::accounts::{self, AccountError};
use crate::console::session::Flash;
use crate::console::time::Moment;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render, render_with};
use crate::ha::HaHandle;
use crate::state::{AppState, ConnectionInfo};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use tandem_store::StoreError;
use tandem_store::accounts::AccountRealm;

const REALM: AccountRealm = AccountRealm::SystemManager;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security/users", get(show))
        .route("/security/users/add", post(add))
        .route("/security/users/password", post(set_password))
        .route("/security/users/remove", post(remove))
}

#[derive(Template)]
#[template(path = "console/sm_users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    /// Why the list could not be read.
    users_error: Option<String>,
    /// Why the forms are disabled here (a node that is not Active).
    read_only: Option<String>,
    add: PasswordForm,
    change: PasswordForm,
}

struct UserRow {
    username: String,
    created: Moment,
    /// Why this user cannot be removed from here (the last user, or the operator's own).
    keep: Option<&'static str>,
}

/// A form with a user name and a new password typed twice: what was typed (never the
/// passwords) and each refused field's problem.
#[derive(Default)]
struct PasswordForm {
    username: String,
    username_problem: Option<String>,
    password_problem: Option<String>,
    confirm_problem: Option<String>,
}

/// Add and Change Password. No `Debug`: it holds passwords.
#[derive(Deserialize)]
struct PasswordFields {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Deserialize)]
struct RemoveFields {
    username: String,
    #[serde(default)]
    confirmed: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    render(&page(&state, &ha, &session).await)
}

async fn page(state: &AppState, ha: &HaHandle, session: &ConsoleSession) -> UsersPage {
    let chrome = Chrome::new(state, ha, session, "/security/users", "Local Users");
    let read_only = chrome.read_only.then(|| {
        format!(
            "Node {} is {} and read-only: local users are replicated from the Active node, so \
             add, change and remove them there{}.",
            state.node_name,
            chrome.badge.words,
            state.where_to_go()
        )
    });
    let now = time::OffsetDateTime::now_utc();
    let (users, users_error) = match accounts::list(&state.db, REALM).await {
        Ok(accounts) => {
            let last = accounts.len() <= 1;
            let rows = accounts
                .into_iter()
                .map(|account| UserRow {
                    keep: if last {
                        Some("the last user: nobody could log in without it")
                    } else if account.username == session.user() {
                        Some("you are logged in as this user")
                    } else {
                        None
                    },
                    created: Moment::stored(&account.created_at, now),
                    username: account.username,
                })
                .collect();
            (rows, None)
        }
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    UsersPage {
        chrome,
        users,
        users_error,
        read_only,
        add: PasswordForm::default(),
        change: PasswordForm::default(),
    }
}

/// The account module's caller for this request: the session's user, from its address.
fn caller(
    state: &AppState,
    session: &ConsoleSession,
    connection: &Option<Extension<ConnectionInfo>>,
) -> accounts::Caller {
    accounts::caller(
        state,
        session.user().to_owned(),
        connection.as_ref().map(|info| &info.0),
    )
}

/// Puts each refused field's problem next to its field; anything else is the form's own
/// problem, shown at its first field.
fn refused(form: &mut PasswordForm, error: &AccountError) {
    if let AccountError::Store(StoreError::Invalid(invalid)) = error {
        for field in &invalid.fields {
            // The store never echoes a password ("(hidden)"); a user name it does.
            let problem = if field.field == "password" || field.value.is_empty() {
                field.problem.clone()
            } else {
                format!("{} (you entered “{}”)", field.problem, field.value)
            };
            match field.field.as_str() {
                "password" => form.password_problem = Some(format!("The password {problem}")),
                _ => form.username_problem = Some(problem),
            }
        }
    } else {
        form.username_problem = Some(error.to_string());
    }
}

/// The confirmation's problem, when the two passwords differ.
fn mismatch(fields: &PasswordFields) -> Option<String> {
    (fields.password != fields.confirm)
        .then(|| "The two passwords differ: type the same new password in both fields.".to_owned())
}

/// `POST /security/users/add`.
async fn add(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    connection: Option<Extension<ConnectionInfo>>,
    ConsoleForm(fields): ConsoleForm<PasswordFields>,
) -> Response {
    let username = fields.username.trim().to_owned();
    let mut form = PasswordForm {
        username: username.clone(),
        confirm_problem: mismatch(&fields),
        ..PasswordForm::default()
    };
    if form.confirm_problem.is_none() {
        let caller = caller(&state, &session, &connection);
        match accounts::add(&state.db, &caller, REALM, &username, &fields.password).await {
            Ok(account) => {
                let text = format!(
                    "Added local user {}: they can log in to System Manager on every node of \
                     the group once the change has replicated.",
                    account.username
                );
                return session.redirect(&state, "/security/users", Flash::success(text));
            }
            Err(error) => refused(&mut form, &error),
        }
    }
    let mut page = page(&state, &ha, &session).await;
    page.add = form;
    render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// `POST /security/users/password`: the new password takes effect at once, and the user's
/// console sessions on this node end (other nodes end theirs when the change replicates).
async fn set_password(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    connection: Option<Extension<ConnectionInfo>>,
    ConsoleForm(fields): ConsoleForm<PasswordFields>,
) -> Response {
    let username = fields.username.trim().to_owned();
    let mut form = PasswordForm {
        username: username.clone(),
        confirm_problem: mismatch(&fields),
        ..PasswordForm::default()
    };
    if form.confirm_problem.is_none() {
        let caller = caller(&state, &session, &connection);
        let changed =
            accounts::set_password(&state.db, &caller, REALM, &username, &fields.password).await;
        match changed {
            Ok(()) => {
                state.consoles.system_manager.end_user(&username);
                if username == session.user() {
                    // This session ended too: log in again with the new password.
                    return Redirect::to("/login?next=/security/users").into_response();
                }
                let text = format!(
                    "Changed the password of {username}; their console sessions on this node \
                     have ended."
                );
                return session.redirect(&state, "/security/users", Flash::success(text));
            }
            Err(error) => refused(&mut form, &error),
        }
    }
    let mut page = page(&state, &ha, &session).await;
    page.change = form;
    render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// `POST /security/users/remove`: asks on a page of its own unless confirmed; never removes
/// the operator's own user (they would lock themselves out mid-session).
async fn remove(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    connection: Option<Extension<ConnectionInfo>>,
    ConsoleForm(fields): ConsoleForm<RemoveFields>,
) -> Response {
    let username = fields.username;
    if username == session.user() {
        let flash = Flash::error(format!(
            "{username} was not removed: you are logged in as {username}. Log in as another \
             local user to remove it."
        ));
        return session.redirect(&state, "/security/users", flash);
    }
    if fields.confirmed.as_deref() != Some("yes") {
        return crate::console::confirm::Confirm {
            chrome: Chrome::new(
                &state,
                &ha,
                &session,
                "/security/users",
                "Remove Local User",
            ),
            question: format!("Remove local user {username}?"),
            consequences: vec![format!(
                "{username} will no longer log in to System Manager on any node of the group, \
                 and their console sessions on this node end now."
            )],
            action: "/security/users/remove".into(),
            button: format!("Remove {username}"),
            fields: vec![("username", username)],
            cancel: "/security/users".into(),
        }
        .page();
    }
    let caller = caller(&state, &session, &connection);
    let flash = match accounts::remove(&state.db, &caller, REALM, &username).await {
        Ok(()) => {
            state.consoles.system_manager.end_user(&username);
            Flash::success(format!(
                "Removed local user {username}; their console sessions on this node have ended."
            ))
        }
        Err(error) => Flash::error(format!("{username} was not removed: {error}")),
    };
    session.redirect(&state, "/security/users", flash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weak_password_is_refused_next_to_its_field_without_echoing_it() {
        let error = AccountError::Store(
            tandem_store::accounts::validate_password("alice", "short").unwrap_err(),
        );
        let mut form = PasswordForm::default();
        refused(&mut form, &error);
        let problem = form.password_problem.unwrap();
        assert!(problem.contains("at least"), "{problem}");
        assert!(!problem.contains("short"), "{problem}");
        assert_eq!(form.username_problem, None);
    }

    #[test]
    fn differing_passwords_are_refused_at_the_confirmation() {
        let fields = |confirm: &str| PasswordFields {
            username: "alice".into(),
            password: "long enough words".into(),
            confirm: confirm.into(),
        };
        assert!(mismatch(&fields("other words")).is_some());
        assert_eq!(mismatch(&fields("long enough words")), None);
    }
}
