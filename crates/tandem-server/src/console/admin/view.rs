//! What the Admin portal's pages share: times in words, states as badges, paging links, form
//! fields with their refused values, the store's refusals as messages, and the read-only guard.

use crate::console::chrome::Badge;
use crate::console::session::Flash;
use crate::console::{Chrome, ConsoleSession, render_with};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tandem_store::devices::{CommandStatus, DeviceStatus};
use tandem_store::{FieldError, StoreError};

pub use crate::console::time::Moment;

/// A device's status in colour and words.
pub fn device_badge(status: DeviceStatus) -> Badge {
    let (words, class) = match status {
        DeviceStatus::Active => ("Active", "ok"),
        DeviceStatus::Pending => ("Pending enrollment", "standby"),
        DeviceStatus::Lost => ("Lost", "warn"),
        DeviceStatus::RetirePending => ("Retire pending", "warn"),
        DeviceStatus::WipePending => ("Wipe pending", "warn"),
        DeviceStatus::Retired => ("Retired", "unavailable"),
        DeviceStatus::Wiped => ("Wiped", "bad"),
    };
    Badge {
        words: words.into(),
        class,
    }
}

/// A command's status in colour and words: queued until the device checks in, sent then,
/// acknowledged (or an error) when it answers.
pub fn command_badge(status: CommandStatus) -> Badge {
    let (words, class) = match status {
        CommandStatus::Pending => ("Queued", "standby"),
        CommandStatus::Sent => ("Sent", "warn"),
        CommandStatus::Acknowledged => ("Acknowledged", "ok"),
        CommandStatus::Error => ("Error", "bad"),
    };
    Badge {
        words: words.into(),
        class,
    }
}

/// Where a paged list stands, and the links to its neighbours (the page's other query
/// parameters kept).
pub struct Pager {
    pub first: i64,
    pub last: i64,
    pub total: i64,
    pub newer: Option<String>,
    pub older: Option<String>,
}

impl Pager {
    /// `base` is the list's path with its other parameters and no `offset`
    /// (e.g. `/devices?platform=iOS`).
    pub fn new(base: &str, offset: i64, shown: usize, total: i64, page_size: i64) -> Self {
        let joiner = if base.contains('?') { '&' } else { '?' };
        let link = |offset: i64| format!("{base}{joiner}offset={offset}");
        let shown = shown as i64;
        Self {
            first: if shown == 0 { 0 } else { offset + 1 },
            last: offset + shown,
            total,
            newer: (offset > 0).then(|| link((offset - page_size).max(0))),
            older: (offset + shown < total).then(|| link(offset + shown)),
        }
    }
}

/// `?name=value&…` of the non-empty pairs, URL-encoded.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs.iter().filter(|(_, value)| !value.is_empty()) {
        encoded.append_pair(name, value);
    }
    let text = encoded.finish();
    if text.is_empty() {
        text
    } else {
        format!("?{text}")
    }
}

/// A page offset as sent in a link: anything but a non-negative number is the first page.
pub fn offset_of(text: Option<&str>) -> i64 {
    text.and_then(|text| text.parse::<i64>().ok())
        .filter(|offset| *offset >= 0)
        .unwrap_or(0)
}

/// Text from a form or query: `None` when blank.
pub fn given(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// One choice of a `<select>`.
pub struct Choice {
    pub value: String,
    pub words: String,
}

impl Choice {
    pub fn new(value: impl Into<String>, words: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            words: words.into(),
        }
    }
}

/// One form field as `admin_field.html` draws it: its label, its value, a hint, and when the
/// node refused it, the problem (the refused value, what is wrong and the fix).
pub struct Field {
    /// The API's name of the field: the form field's name, and its id after `f-`.
    pub name: &'static str,
    pub label: &'static str,
    /// `text`, `number`, `email`, `select`, `textarea` or `file`.
    pub kind: &'static str,
    pub value: String,
    pub choices: Vec<Choice>,
    pub hint: &'static str,
    pub required: bool,
    pub problem: Option<String>,
}

impl Field {
    pub fn text(name: &'static str, label: &'static str, value: impl Into<String>) -> Self {
        Self {
            name,
            label,
            kind: "text",
            value: value.into(),
            choices: Vec::new(),
            hint: "",
            required: false,
            problem: None,
        }
    }

    pub fn select(
        name: &'static str,
        label: &'static str,
        value: impl Into<String>,
        choices: Vec<Choice>,
    ) -> Self {
        Self {
            kind: "select",
            choices,
            ..Self::text(name, label, value)
        }
    }

    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = hint;
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The ids the input names in `aria-describedby`: its hint and its problem.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if !self.hint.is_empty() {
            ids.push(format!("f-{}-hint", self.name));
        }
        if self.problem.is_some() {
            ids.push(format!("f-{}-problem", self.name));
        }
        ids.join(" ")
    }
}

/// A page's status: 200, or 422 when it shows refused values.
pub fn status_of(problems: &[FieldError]) -> StatusCode {
    if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// Puts each refused field's problem next to its field; returns the problems no field of
/// the form shows (to be shown above it).
pub fn place_problems(fields: &mut [Field], problems: &[FieldError]) -> Vec<String> {
    let mut unplaced = Vec::new();
    for problem in problems {
        let words = describe(problem);
        match fields.iter_mut().find(|field| field.name == problem.field) {
            Some(field) => {
                field.problem = Some(match field.problem.take() {
                    Some(before) => format!("{before} {words}"),
                    None => words,
                });
            }
            None => unplaced.push(format!("{}: {words}", problem.field)),
        }
    }
    unplaced
}

/// "“x1” was refused: must be … ." — the value, the problem and the fix, as the API's 422
/// `fields` give them.
fn describe(problem: &FieldError) -> String {
    if problem.value.is_empty() {
        format!("This field {}.", problem.problem)
    } else {
        format!("“{}” was refused: {}.", problem.value, problem.problem)
    }
}

/// The refused fields of a store error (empty when the error is not about input).
pub fn field_problems(error: &StoreError) -> &[FieldError] {
    match error {
        StoreError::Invalid(invalid) => &invalid.fields,
        _ => &[],
    }
}

/// A store error as a message for an operator, as the API words it.
pub fn refusal(error: StoreError) -> String {
    crate::error::ApiError::from(error).message
}

#[derive(Template)]
#[template(path = "console/admin_message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub back: String,
}

/// A page that only says what went wrong (the store could not be read, an unknown device),
/// with a way back.
pub fn message_page(
    status: StatusCode,
    mut chrome: Chrome,
    flash: Flash,
    back: impl Into<String>,
) -> Response {
    chrome.flash = Some(flash);
    render_with(
        status,
        &MessagePage {
            chrome,
            back: back.into(),
        },
    )
}

/// Refuses every change posted to a node that is not Active, through the API's own check
/// (`auth::writes_need_active`, so the words are the API's), as a page that names the Active
/// node; nothing is changed. Logout is not behind it.
pub async fn writes_need_active(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let session = request.extensions().get::<ConsoleSession>().cloned();
    let ha = request.extensions().get::<HaHandle>().cloned();
    match crate::auth::writes_need_active(State(state.clone()), request, next).await {
        Ok(response) => response,
        Err(refused) => match (session, ha) {
            (Some(session), Some(ha)) => message_page(
                refused.status,
                Chrome::new(&state, &ha, &session, "", "Refused"),
                Flash::error(format!("Nothing was changed: {}.", refused.message)),
                "/",
            ),
            // Reached without a session (routing puts this guard behind require_session).
            _ => axum::response::IntoResponse::into_response(refused),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pager_links_to_its_neighbours_within_the_list() {
        let middle = Pager::new("/devices?platform=iOS", 50, 50, 120, 50);
        assert_eq!((middle.first, middle.last, middle.total), (51, 100, 120));
        assert_eq!(
            middle.newer.as_deref(),
            Some("/devices?platform=iOS&offset=0")
        );
        assert_eq!(
            middle.older.as_deref(),
            Some("/devices?platform=iOS&offset=100")
        );
        let only = Pager::new("/events", 0, 3, 3, 50);
        assert!(only.newer.is_none() && only.older.is_none());
        assert_eq!(Pager::new("/events", 0, 0, 0, 50).first, 0);
        assert_eq!(offset_of(Some("-5")), 0);
        assert_eq!(offset_of(Some("x")), 0);
        assert_eq!(offset_of(Some("150")), 150);
        assert_eq!(
            query_string(&[("query", "a b&c"), ("platform", "")]),
            "?query=a+b%26c"
        );
        assert_eq!(query_string(&[("query", "")]), "");
    }

    #[test]
    fn refused_values_land_next_to_their_field_and_the_rest_above() {
        let mut fields = vec![Field::text("name", "Name", "")];
        let problems = vec![
            FieldError {
                field: "name".into(),
                value: String::new(),
                problem: "must not be empty".into(),
            },
            FieldError {
                field: "limit".into(),
                value: "500".into(),
                problem: "must be between 1 and 200".into(),
            },
        ];
        let unplaced = place_problems(&mut fields, &problems);
        assert_eq!(
            fields[0].problem.as_deref(),
            Some("This field must not be empty.")
        );
        assert_eq!(fields[0].described_by(), "f-name-problem");
        assert_eq!(
            unplaced,
            vec!["limit: “500” was refused: must be between 1 and 200."]
        );
    }
}
