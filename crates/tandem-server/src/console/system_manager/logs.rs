//! `GET /troubleshooting/logs?module=&level=&q=&before=&after=`: Troubleshooting → Logs, the
//! node's module logs (HighAvailability, Notifications, Security…) newest first, with a level
//! and text filter, Older/Newer paging and Refresh. The same query as `GET /api/v1/logs` and
//! `tandem ha logs` (`tandem_store::node_local::log_page`).
//!
//! Heartbeats (guide Table 3, task 5): a Secondary logs every heartbeat to its Primary at INFO,
//! one per Heartbeat Interval (10 s by default: 8,640 lines a day, days of them within the
//! retained log), so the default level, INFO, shows them; only DEBUG lines are hidden by
//! default.

use crate::console::{Chrome, ConsoleSession, render_with, urlencode};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tandem_store::node_local::{LogLevel, LogLine, LogPage, LogRequest};
use tandem_store::{FieldError, StoreError};

/// Lines on one page of the window unless `limit` says: a long screenful.
pub const LOG_WINDOW_LINES: i64 = 100;

#[derive(Template)]
#[template(path = "console/sm_logs.html")]
struct LogsWindow {
    chrome: Chrome,
    modules: Vec<ModuleChoice>,
    levels: Vec<LevelChoice>,
    /// The filter as asked (shown back in the toolbar, also when refused).
    module: String,
    q: String,
    /// Lines per page, when the address set it (kept by Apply).
    limit: Option<String>,
    lines: Vec<Row>,
    older: Option<String>,
    newer: Option<String>,
    /// The first page's address, when this is not it.
    newest: Option<String>,
    /// This filter's newest lines (Refresh).
    refresh: String,
    /// Refused parameters, each shown next to its field.
    problems: Vec<FieldError>,
    /// What to do when there are no lines.
    empty: Empty,
}

struct ModuleChoice {
    name: String,
    selected: bool,
}

struct LevelChoice {
    value: &'static str,
    words: &'static str,
    selected: bool,
}

struct Row {
    at: crate::console::time::Moment,
    level: String,
    level_words: &'static str,
    message: String,
}

/// An empty page's advice, with a link to the window that helps when there is one.
struct Empty {
    text: String,
    link: Option<(&'static str, &'static str)>,
}

impl LogsWindow {
    /// The problem of `field` (`module`, `level`, `q`, `before`, `after`), if it was refused.
    fn problem(&self, field: &str) -> Option<&FieldError> {
        self.problems.iter().find(|problem| problem.field == field)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/troubleshooting/logs", get(show))
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(session): Extension<ConsoleSession>,
    Query(request): Query<LogRequest>,
) -> Response {
    let chrome = Chrome::new(&state, &ha, &session, "/troubleshooting/logs", "Logs");
    let known = crate::security_log::modules(&state.local).await;
    let asked = LogRequest {
        limit: request
            .limit
            .clone()
            .or_else(|| Some(LOG_WINDOW_LINES.to_string())),
        ..request.clone()
    };
    let module = request
        .module
        .clone()
        .filter(|module| !module.trim().is_empty())
        .unwrap_or_else(|| tandem_repl::LOG_MODULE.to_owned());
    let level = request
        .level
        .as_deref()
        .and_then(LogLevel::parse_loose)
        .unwrap_or(LogLevel::Info);
    let mut window = LogsWindow {
        chrome,
        levels: level_choices(level),
        module: module.clone(),
        q: request.q.clone().unwrap_or_default(),
        limit: request
            .limit
            .clone()
            .filter(|limit| !limit.trim().is_empty()),
        lines: Vec::new(),
        older: None,
        newer: None,
        newest: None,
        refresh: href(&module, level, &request, None),
        problems: Vec::new(),
        empty: empty_state(&module, level, request.q.as_deref()),
        modules: module_choices(&known, &module),
    };
    let page = match asked.validated(&known, tandem_repl::LOG_MODULE) {
        Ok(query) => state.local.log_page(query).await,
        Err(error) => Err(error),
    };
    match page {
        Ok(page) => {
            fill(&mut window, page, &request);
            render_with(StatusCode::OK, &window)
        }
        Err(StoreError::Invalid(invalid)) => {
            window.problems = invalid.fields;
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &window)
        }
        Err(error) => {
            window.empty = Empty {
                text: format!("The log cannot be read now: {error}. Try Refresh in a moment."),
                link: None,
            };
            render_with(StatusCode::SERVICE_UNAVAILABLE, &window)
        }
    }
}

/// The page's lines and its links to the pages around it.
fn fill(window: &mut LogsWindow, page: LogPage, request: &LogRequest) {
    let now = time::OffsetDateTime::now_utc();
    let link = |cursor: (&str, i64)| Some(href(&page.module, page.level, request, Some(cursor)));
    window.older = page.before.and_then(|id| link(("before", id)));
    window.newer = page.after.and_then(|id| link(("after", id)));
    window.newest = window.newer.as_ref().map(|_| window.refresh.clone());
    window.lines = page.lines.iter().map(|line| row(line, now)).collect();
}

fn row(line: &LogLine, now: time::OffsetDateTime) -> Row {
    let level = LogLevel::parse(&line.level);
    Row {
        at: crate::console::time::Moment::stored(&line.at, now),
        // An unknown stored level is shown as written, coloured as INFO.
        level: level.map_or("INFO", LogLevel::as_str).to_owned(),
        level_words: level.map_or("Info", level_words),
        message: line.message.clone(),
    }
}

/// The window's address for a filter (its text and page size as `request` gave them), and a
/// page of it.
fn href(
    module: &str,
    level: LogLevel,
    request: &LogRequest,
    cursor: Option<(&str, i64)>,
) -> String {
    let mut href = format!(
        "/troubleshooting/logs?module={}&level={}",
        urlencode(module),
        level.as_str()
    );
    for (name, value) in [("q", &request.q), ("limit", &request.limit)] {
        if let Some(value) = value.as_deref().filter(|value| !value.trim().is_empty()) {
            href.push_str(&format!("&{name}={}", urlencode(value)));
        }
    }
    if let Some((name, id)) = cursor {
        href.push_str(&format!("&{name}={id}"));
    }
    href
}

/// The modules to pick from; one asked for but unknown stays selected, so the refusal beside
/// the field shows what was asked.
fn module_choices(known: &[String], asked: &str) -> Vec<ModuleChoice> {
    let mut choices: Vec<ModuleChoice> = known
        .iter()
        .map(|name| ModuleChoice {
            name: name.clone(),
            selected: name == asked,
        })
        .collect();
    if !known.iter().any(|name| name == asked) {
        choices.push(ModuleChoice {
            name: asked.to_owned(),
            selected: true,
        });
    }
    choices
}

fn level_choices(selected: LogLevel) -> Vec<LevelChoice> {
    LogLevel::ALL
        .iter()
        .map(|level| LevelChoice {
            value: level.as_str(),
            words: match level {
                LogLevel::Debug => "Debug and above (everything)",
                LogLevel::Info => "Info and above",
                LogLevel::Notice => "Notice and above",
                LogLevel::Warn => "Warning and above",
                LogLevel::Error => "Errors only",
            },
            selected: *level == selected,
        })
        .collect()
}

fn level_words(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "Debug",
        LogLevel::Info => "Info",
        LogLevel::Notice => "Notice",
        LogLevel::Warn => "Warning",
        LogLevel::Error => "Error",
    }
}

/// What an empty page tells the operator to do.
fn empty_state(module: &str, level: LogLevel, q: Option<&str>) -> Empty {
    if q.is_some_and(|q| !q.trim().is_empty()) || level.rank() > LogLevel::Info.rank() {
        return Empty {
            text: "No lines match this filter: clear the text or choose a lower level, then Apply."
                .into(),
            link: None,
        };
    }
    match module {
        tandem_repl::LOG_MODULE => Empty {
            text: "No HighAvailability lines yet: enable High Availability and set the Mode. A \
                   Secondary then logs every heartbeat to its Primary here, with each sync and \
                   failover."
                .into(),
            link: Some(("/ha/config", "HA Configuration")),
        },
        crate::notify::NOTIFICATIONS_MODULE => Empty {
            text: "No notifications yet: set the addresses and the relay, then send a Test. \
                   Every notification and e-mail outcome is logged here."
                .into(),
            link: Some(("/ha/notifications", "Notification Settings")),
        },
        crate::security_log::SECURITY_MODULE => Empty {
            text: "No Security lines yet: console logins and failed logins, HA Configuration \
                   changes and account changes are logged here as they happen."
                .into(),
            link: None,
        },
        _ => Empty {
            text: "No lines in this module: choose another module above.".into(),
            link: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_keep_the_filter_and_encode_the_text() {
        let request = LogRequest {
            q: Some("a&b c".into()),
            limit: Some("5".into()),
            ..LogRequest::default()
        };
        assert_eq!(
            href("Security", LogLevel::Warn, &request, Some(("before", 42))),
            "/troubleshooting/logs?module=Security&level=WARN&q=a%26b+c&limit=5&before=42"
        );
        let blank = LogRequest {
            q: Some(" ".into()),
            ..LogRequest::default()
        };
        assert_eq!(
            href("HighAvailability", LogLevel::Info, &blank, None),
            "/troubleshooting/logs?module=HighAvailability&level=INFO"
        );
    }

    #[test]
    fn an_empty_page_says_what_to_do() {
        let filtered = empty_state("Security", LogLevel::Info, Some("x"));
        assert!(filtered.text.contains("clear the text"));
        let ha = empty_state("HighAvailability", LogLevel::Info, None);
        assert_eq!(ha.link, Some(("/ha/config", "HA Configuration")));
    }
}
