//! One error type for every HTTP answer that is not a success, mapped once to a status code and
//! a JSON body: `{"error": {"status", "code", "message", "fields"?}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tandem_store::{FieldError, StoreError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// One invalid field, when the problem is found while parsing (before the store sees it).
    pub fn invalid_field(field: &str, value: &str, problem: impl Into<String>) -> Self {
        StoreError::Invalid(tandem_store::InvalidInput::single(field, value, problem)).into()
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 503 with `Retry-After: 1`: a bounded queue is full (e.g. password checks under a flood).
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::Invalid(invalid) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_input",
                message,
                fields: invalid.fields,
            },
            StoreError::NotFound { .. } => ApiError::not_found(message),
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Refused(_) => ApiError::new(StatusCode::CONFLICT, "refused", message),
            StoreError::Denied(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            StoreError::WriterStopped => ApiError::unavailable("unavailable", message),
            StoreError::WritesClosed(_) => ApiError::unavailable("read_only", message),
            _ => {
                tracing::error!(error = %message, "request failed inside the node");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the node could not complete the request: {message}"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
                fields: &self.fields,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.code == "busy" {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Tandem\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
