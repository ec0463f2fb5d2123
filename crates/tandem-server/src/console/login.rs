//! `/login` and `/logout` of both consoles.

use super::session::fingerprint;
use super::{Console, ConsoleForm, ConsoleSession, render_with};
use crate::auth::{self, LoginRefused};
use crate::state::{AppState, ConnectionInfo};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use std::time::Instant;
use tandem_store::accounts;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    product: &'static str,
    node: &'a str,
    realm: String,
    user: String,
    next: String,
    /// Why the last attempt failed, or what happened (logged out, session ended).
    message: Option<(&'static str, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    out: Option<String>,
    expired: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// Where to go after login: a path of this console only (never another site's address).
fn local_path(next: Option<&str>) -> String {
    match next {
        // Printable ASCII only: a browser drops tabs and newlines from a URL, so
        // "/\t/evil.example" would become "//evil.example", another site.
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.bytes().all(|byte| byte.is_ascii_graphic()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn page(state: &AppState, console: Console) -> LoginPage<'_> {
    LoginPage {
        product: console.product(),
        node: &state.node_name,
        realm: console.realm().to_string(),
        user: String::new(),
        next: "/".into(),
        message: None,
    }
}

/// `GET /login`.
pub async fn show(
    State((state, console)): State<(AppState, Console)>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let next = local_path(query.next.as_deref());
    let sessions = console.sessions(&state);
    // Already logged in: straight on.
    if let Some(token) = sessions.token_of(&headers)
        && sessions.is_live(&token, Instant::now())
    {
        return Redirect::to(&next).into_response();
    }
    let message = if query.out.is_some() {
        Some(("success", "You are logged out.".to_owned()))
    } else if query.expired.is_some() {
        Some((
            "error",
            "Your session ended (idle too long, logged out, or the password changed). Log in \
             again; the form you sent was not carried out."
                .to_owned(),
        ))
    } else {
        None
    };
    render_with(
        StatusCode::OK,
        &LoginPage {
            next,
            message,
            ..page(&state, console)
        },
    )
}

/// `POST /login`: the same check as HTTP Basic (back-off, bounded password pool, log lines).
pub async fn submit(
    State((state, console)): State<(AppState, Console)>,
    connection: Option<Extension<ConnectionInfo>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let info = connection.as_ref().map(|Extension(info)| info);
    let realm = console.realm();
    let next = local_path(Some(&form.next));
    let refused = |status: StatusCode, text: String| {
        render_with(
            status,
            &LoginPage {
                user: form.user.clone(),
                next: next.clone(),
                message: Some(("error", text)),
                ..page(&state, console)
            },
        )
    };
    match auth::login(&state, realm, &form.user, &form.password, info).await {
        Ok(()) => {}
        Err(LoginRefused::Wrong) => {
            return refused(
                StatusCode::UNAUTHORIZED,
                format!("Wrong user name or password for the {realm} users."),
            );
        }
        Err(LoginRefused::Throttled(retry_after)) => {
            let seconds = auth::retry_after_seconds(retry_after);
            let mut response = refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins from this address or for this user. Try again in \
                     {seconds} s."
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
        Err(LoginRefused::Busy) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The node is busy checking other passwords. Try again in a second.".into(),
            );
        }
    }
    let user = form.user.clone();
    let hash = state
        .db
        .read(move |conn| accounts::password_hash(conn, realm, &user))
        .await;
    let Ok(Some(hash)) = hash else {
        // Removed between the check and now.
        return refused(
            StatusCode::UNAUTHORIZED,
            format!("Wrong user name or password for the {realm} users."),
        );
    };
    let sessions = console.sessions(&state);
    let token = sessions.start(&form.user, fingerprint(&hash), Instant::now());
    let source = info.map(|info| info.remote.to_string()).unwrap_or_default();
    tracing::info!(user = ?form.user, %realm, %source, "console login");
    crate::security_log::login(&state.local, realm, &form.user, &source).await;
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&sessions.set_cookie(&token)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /logout`.
pub async fn logout(
    State((state, console)): State<(AppState, Console)>,
    Extension(session): Extension<ConsoleSession>,
    connection: Option<Extension<ConnectionInfo>>,
    ConsoleForm(()): ConsoleForm<()>,
) -> Response {
    let sessions = console.sessions(&state);
    sessions.end(&session.token);
    tracing::info!(user = ?session.user(), realm = %console.realm(), "console logout");
    let source = connection
        .map(|Extension(info)| info.remote.to_string())
        .unwrap_or_default();
    crate::security_log::logout(&state.local, console.realm(), session.user(), &source).await;
    let mut response = Redirect::to("/login?out=1").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&sessions.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn after_login_only_a_local_path_is_followed() {
        assert_eq!(local_path(Some("/ha/sync?page=2")), "/ha/sync?page=2");
        for other in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/ /x",
            "ha",
            "",
        ] {
            assert_eq!(local_path(Some(other)), "/", "{other}");
        }
        assert_eq!(local_path(None), "/");
    }
}
