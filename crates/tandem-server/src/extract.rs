//! Request extractors whose failures are [`ApiError`]s naming the field at fault, instead of
//! axum's plain-text rejections.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON body. Syntax errors are 400; a well-formed body with a wrong or unknown field is 422
/// with the field's path.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let code = if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_request"
                };
                ApiError::new(rejection.status(), code, rejection.body_text())
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Two steps, so the status is right: text that is not JSON is a 400, while JSON of the wrong
    // shape (a missing field, a number where a name belongs) is a 422 naming the field.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let parent = if path == "." { None } else { Some(path) };
        // serde reports a missing field at its parent; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (parent, missing) {
            (Some(parent), Some(missing)) => format!("{parent}.{missing}"),
            (None, Some(missing)) => missing.to_owned(),
            (Some(parent), None) => parent,
            (None, None) => "body".to_owned(),
        };
        ApiError::invalid_field(&field, "", strip_position(&message))
    })
}

/// serde_json appends " at line 1 column 42"; the field path already says where. Rust's
/// integer type names become what an operator would type.
fn strip_position(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(index) => &message[..index],
        None => message,
    };
    ["u8", "u16", "u32", "u64", "i32", "i64"]
        .iter()
        .fold(message.to_owned(), |message, integer| {
            message.replace(
                &format!("expected {integer}"),
                "expected a whole number, e.g. 3",
            )
        })
}

/// Query-string parameters, with the parameter named on failure.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let path = error.path().to_string();
                ApiError::invalid_field(&path, "", error.into_inner().to_string())
            })
    }
}

/// A path parameter, with a 404 that says which id did not parse.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| {
                ApiError::not_found(format!(
                    "no such resource: {} ({})",
                    parts.uri.path(),
                    rejection.body_text()
                ))
            })
    }
}
