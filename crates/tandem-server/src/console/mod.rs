//! The browser consoles, server-rendered HTML that works without JavaScript:
//!
//! - **System Manager** on the System Manager listener (guide: 8443), for System Manager local
//!   users: the HA windows of the guide (HA Configuration, Manage Trusted Hosts, Run Sync Now,
//!   Sync History, Notification Settings), Troubleshooting → Logs, the cluster view and the
//!   local users.
//! - **Admin portal** on the service listener (guide: 443), for admin users: devices, users,
//!   labels, apps, policies and events. On a node that is not Active every page is read-only.
//!
//! Both log in with a form and a session cookie (`session`), carry a form token on every form
//! (`form`), and share one layout (`chrome`), one stylesheet and one small script
//! (`static/`). The JSON APIs beside them keep HTTP Basic for scripts; a page never does what
//! the API would refuse, as both call the same functions.

pub mod admin;
pub mod chrome;
pub mod confirm;
pub mod form;
pub mod login;
pub mod session;
pub mod system_manager;
pub mod time;

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use session::{Flash, Session, Sessions};
use std::time::Instant;
use tandem_repl::ops::{Event, Operation};
use tandem_store::accounts::{self, AccountRealm};

pub use chrome::Chrome;
pub use form::ConsoleForm;

/// Which console a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    SystemManager,
    Admin,
}

impl Console {
    pub fn realm(self) -> AccountRealm {
        match self {
            Console::SystemManager => AccountRealm::SystemManager,
            Console::Admin => AccountRealm::Admin,
        }
    }

    /// The product name in the title bar.
    pub fn product(self) -> &'static str {
        match self {
            Console::SystemManager => "System Manager",
            Console::Admin => "Admin Portal",
        }
    }

    pub fn sessions(self, state: &AppState) -> &Sessions {
        match self {
            Console::SystemManager => &state.consoles.system_manager,
            Console::Admin => &state.consoles.admin,
        }
    }
}

/// Both consoles' sessions (in `Shared`).
pub struct Consoles {
    pub system_manager: Sessions,
    pub admin: Sessions,
}

impl Default for Consoles {
    fn default() -> Self {
        Self {
            system_manager: Sessions::new(AccountRealm::SystemManager, "__Host-tandem-sm"),
            admin: Sessions::new(AccountRealm::Admin, "__Host-tandem-admin"),
        }
    }
}

/// The logged-in session of a console request (an extension set by [`require_session`]).
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    pub console: Console,
    pub token: String,
    pub session: Session,
    /// The message the previous action left for this page.
    pub flash: Option<Flash>,
}

impl ConsoleSession {
    pub fn user(&self) -> &str {
        &self.session.user
    }

    /// Leaves `flash` for the next page and sends the browser there (Post/Redirect/Get, so a
    /// reload never repeats an action).
    pub fn redirect(&self, state: &AppState, to: &str, flash: Flash) -> Response {
        self.console.sessions(state).flash(&self.token, flash);
        Redirect::to(to).into_response()
    }
}

/// The Content-Security-Policy of every console page: nothing but this listener's own
/// stylesheet, script and forms (no inline script, so an injected tag runs nothing).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
    script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Adds the console's Content-Security-Policy and Referrer-Policy to every response.
pub async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A console's whole router: its `pages` (with their state and layers) served to a live session
/// only, beside `/logout`; `/login` and `/static/…` open to all; the pages' headers on every
/// answer.
fn console_router(state: AppState, console: Console, pages: axum::Router) -> axum::Router {
    use axum::routing::{get, post};
    let session = (state, console);
    let private = pages
        .merge(
            axum::Router::new()
                .route("/logout", post(login::logout))
                .with_state(session.clone()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            session.clone(),
            require_session,
        ));
    axum::Router::new()
        .route(
            "/login",
            get(login::show)
                .post(login::submit)
                .layer(axum::extract::DefaultBodyLimit::max(form::FORM_BYTES_MAX)),
        )
        .with_state(session)
        .route("/static/{name}", get(static_file))
        .merge(private)
        // Every console's posts come from its own pages, the login form's included (a login
        // forged by another site would put the victim in the attacker's account).
        .layer(axum::middleware::from_fn(crate::csrf::same_origin_writes))
        .layer(axum::middleware::from_fn(page_headers))
}

/// Serves a console page only to a live session; sends anyone else to the login page (back to
/// the page they asked for once logged in).
pub async fn require_session(
    State((state, console)): State<(AppState, Console)>,
    mut request: Request,
    next: Next,
) -> Response {
    let sessions = console.sessions(&state);
    let live = match sessions.token_of(request.headers()) {
        Some(token) => match sessions.touch(&token, Instant::now()) {
            Some((session, flash)) => {
                // A password changed or a user removed since login ends the session, on any node
                // the change replicated to.
                if still_valid(&state, console.realm(), &session).await {
                    Some(ConsoleSession {
                        console,
                        token,
                        session,
                        flash,
                    })
                } else {
                    sessions.end(&token);
                    None
                }
            }
            None => None,
        },
        None => None,
    };
    let Some(live) = live else {
        let asked = request
            .uri()
            .path_and_query()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let target = if request.method() == axum::http::Method::GET {
            format!("/login?next={}", urlencode(&asked))
        } else {
            // A form posted after the session ended: its action is not repeated after login.
            "/login?expired=1".to_owned()
        };
        return Redirect::to(&target).into_response();
    };
    request
        .extensions_mut()
        .insert(crate::auth::Actor(live.session.user.clone()));
    request.extensions_mut().insert(live);
    next.run(request).await
}

async fn still_valid(state: &AppState, realm: AccountRealm, session: &Session) -> bool {
    let user = session.user.clone();
    match state
        .db
        .read(move |conn| accounts::password_hash(conn, realm, &user))
        .await
    {
        Ok(Some(hash)) => session::fingerprint(&hash) == session.password_fingerprint,
        Ok(None) => false,
        // The store cannot be read: keep the session, the page will show the store's error.
        Err(_) => true,
    }
}

/// `text` safe inside HTML text and attribute values (for the few pages written without a
/// template; templates escape on their own).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A rendered template as a response; a template that fails to render (a bug) is logged and
/// answered with a plain 500.
pub fn render(template: &impl askama::Template) -> Response {
    render_with(StatusCode::OK, template)
}

pub fn render_with(status: StatusCode, template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render; the node's log has the reason",
            )
                .into_response()
        }
    }
}

/// Runs one operator operation of the control socket's set in this process (as `tandem ha …`
/// would through the socket) and returns its final event.
pub async fn run_operation(
    executor: &dyn tandem_repl::ops::Executor,
    operation: Operation,
) -> Event {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    executor
        .execute(
            operation,
            std::sync::Arc::new(move |event| {
                if !matches!(event, Event::Progress { .. }) {
                    let _ = sender.send(event);
                }
            }),
        )
        .await;
    receiver.recv().await.unwrap_or(Event::Failed {
        kind: tandem_repl::ops::FailureKind::Failed,
        message: "the operation ended without a result".into(),
    })
}

/// `GET /static/…`: the stylesheet and the script, compiled into the binary.
pub async fn static_file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "console.css" => (
            include_str!("../../static/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("../../static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "sm_ha_config.js" => (
            include_str!("../../static/sm_ha_config.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
