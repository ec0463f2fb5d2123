//! Form posts of the consoles: the body read within a bound, the session's form token checked,
//! then the fields decoded.

use super::ConsoleSession;
use super::session::tokens_equal;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::de::DeserializeOwned;

/// Largest form body a console page posts (files have their own route and limit).
pub const FORM_BYTES_MAX: usize = 64 * 1024;

/// The field every console form carries: its session's form token.
pub const CSRF_FIELD: &str = "csrf";

/// A console form's fields (`T`, decoded from `application/x-www-form-urlencoded`), posted with
/// the right form token of the logged-in session.
pub struct ConsoleForm<T>(pub T);

/// Why a form post was refused.
#[derive(Debug)]
pub enum FormRejection {
    /// The form token is missing or not this session's.
    Token,
    TooLarge,
    /// A field that does not decode: the decoder's words name it.
    Invalid(String),
    /// Reached without a session (a routing mistake: forms live behind `require_session`).
    NoSession,
}

impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            FormRejection::Token | FormRejection::NoSession => (
                StatusCode::FORBIDDEN,
                "This form is stale or was not sent from this console (its form token is \
                 missing or belongs to another session). Nothing was changed. Go back, reload \
                 the page and submit it again."
                    .to_owned(),
            ),
            FormRejection::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The form is larger than {FORM_BYTES_MAX} bytes. Nothing was changed; send \
                     less text."
                ),
            ),
            FormRejection::Invalid(problem) => (
                StatusCode::BAD_REQUEST,
                format!("The form could not be read: {problem}. Nothing was changed."),
            ),
        };
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Refused</title>\
             <link rel=\"stylesheet\" href=\"/static/console.css\"></head><body><main \
             class=\"narrow\"><h1>Refused</h1><p class=\"flash error\" role=\"alert\">{}</p>\
             <p><a href=\"/\">Back to the console</a></p></main></body></html>",
            super::escape(&message)
        );
        (status, Html(page)).into_response()
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ConsoleForm<T> {
    type Rejection = FormRejection;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let Some(session) = request.extensions().get::<ConsoleSession>().cloned() else {
            return Err(FormRejection::NoSession);
        };
        let body = axum::body::to_bytes(request.into_body(), FORM_BYTES_MAX)
            .await
            .map_err(|_| FormRejection::TooLarge)?;
        let (token, fields) = split_token(&body);
        if !token.is_some_and(|token| tokens_equal(&token, &session.session.csrf)) {
            return Err(FormRejection::Token);
        }
        serde_urlencoded::from_str(&fields)
            .map(ConsoleForm)
            .map_err(|error| FormRejection::Invalid(error.to_string()))
    }
}

/// The form token and the other fields, re-encoded without it.
fn split_token(body: &[u8]) -> (Option<String>, String) {
    let mut token = None;
    let mut fields = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(body) {
        if name == CSRF_FIELD {
            token = Some(value.into_owned());
        } else {
            fields.append_pair(&name, &value);
        }
    }
    (token, fields.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_and_the_other_fields_kept() {
        let (token, fields) = split_token(b"a=1&csrf=abc&b=x+y%26z");
        assert_eq!(token.as_deref(), Some("abc"));
        assert_eq!(fields, "a=1&b=x+y%26z");
        assert_eq!(split_token(b"a=1").0, None);
    }
}
