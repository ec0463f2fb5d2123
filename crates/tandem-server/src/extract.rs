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
        check_json_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if too_slow(&rejection) {
                    return ApiError::new(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!("{}; send the whole body at once", rejection.body_text()),
                    );
                }
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

/// Whether the body was cut off by the listener's body deadline (a client trickling it).
fn too_slow(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<crate::listener::BodyTooSlow>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Wrong fields reported in one answer at most; a body has a few dozen fields.
const FIELD_ERRORS_MAX: usize = 32;

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Two steps, so the status is right: text that is not JSON is a 400, while JSON of the wrong
    // shape (a missing field, a number where a name belongs) is a 422 naming the field.
    let mut value = strict_value(bytes)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))?;
    // serde stops at the first wrong field. To list every one at once, the top-level field at
    // fault is set aside and the rest parsed again, until the rest parses or nothing is left to
    // set aside.
    let mut invalid = tandem_store::InvalidInput::default();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) if invalid.fields.is_empty() => return Ok(parsed),
            Ok(_) => break,
            Err(error) => error,
        };
        let (field, shown, problem) = describe(&error, &value);
        if invalid.fields.iter().any(|known| known.field == field) {
            // The field set aside was required: its absence is the same problem again.
            break;
        }
        invalid.push(&field, &shown, problem);
        let top = match error.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let set_aside = match (top, value.as_object_mut()) {
            (Some(key), Some(object)) => object.remove(&key).is_some(),
            _ => false,
        };
        if !set_aside || invalid.fields.len() >= FIELD_ERRORS_MAX {
            break;
        }
    }
    Err(tandem_store::StoreError::Invalid(invalid).into())
}

/// The field's path, the value given there (hidden for secrets), and what is wrong.
fn describe(
    error: &serde_path_to_error::Error<serde_json::Error>,
    value: &serde_json::Value,
) -> (String, String, String) {
    let path = error.path().to_string();
    let message = error.inner().to_string();
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
    let pointer: String = error
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => {
                format!("/{}", key.replace('~', "~0").replace('/', "~1"))
            }
            serde_path_to_error::Segment::Seq { index } => format!("/{index}"),
            _ => String::new(),
        })
        .collect();
    // Never echoed: a password field's value, an unknown field's (a misspelt `pasword` is one)
    // and a whole body's: they may hold a secret the caller would not want in a script's log.
    let secret = field.to_ascii_lowercase().contains("password")
        || field == "body"
        || message.starts_with("unknown field");
    let shown = match value.pointer(&pointer) {
        _ if missing.is_some() => String::new(),
        _ if secret => "(hidden)".to_owned(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    // serde's type and value messages quote the value; the others (an unknown or missing
    // field) name fields only.
    let quotes_the_value =
        message.starts_with("invalid type") || message.starts_with("invalid value");
    let problem = if secret && quotes_the_value {
        // serde's message quotes the value ("invalid type: integer `7`"): keep only what is
        // expected.
        match message.split_once(", expected ") {
            Some((_, expected)) => format!("wrong type; expected {expected}"),
            None => "not a valid value".to_owned(),
        }
    } else {
        message
    };
    (field, shown, strip_position(&problem))
}

/// A body is JSON only when it says so: `application/json`, any case, with or without
/// parameters such as `charset`. A near miss (`application/jsonx`, `text/json`) is refused
/// rather than guessed at, naming what was sent.
pub fn check_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let sent = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let essence = sent
        .as_deref()
        .map(|value| value.split(';').next().unwrap_or("").trim());
    if essence.is_some_and(|essence| essence.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    let what = match &sent {
        Some(sent) => format!("Content-Type {sent:?} is not JSON"),
        None => "the request has no Content-Type".to_owned(),
    };
    Err(ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("{what}; send the body as JSON with Content-Type: application/json"),
    ))
}

/// Parses JSON text, refusing an object that gives the same key twice: serde_json would keep
/// the last silently, so `{"mode":"secondary","mode":"primary"}` would mean whatever the
/// parser happened to choose, and a proxy or log reader might see the other value.
fn strict_value(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a [`serde_json::Value`] like its own `Deserialize`, except for duplicate keys.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = serde_json::Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(value)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object; give each field once"
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_at_any_depth_is_refused_and_distinct_keys_parse_as_serde_json_does() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"outer":{"b":true,"b":false}}"#,
            r#"[{"c":null},{"d":1,"d":1}]"#,
        ] {
            let error = strict_value(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("appears twice"), "{text}: {error}");
        }
        let text = r#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":18446744073709551615}}"#;
        assert_eq!(
            strict_value(text.as_bytes()).unwrap(),
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert!(strict_value(b"{} trailing").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Change {
        run_every: Option<u32>,
        mode: Option<bool>,
        name: String,
        password: Option<String>,
        list: Option<Vec<u8>>,
    }

    #[test]
    fn every_wrong_field_is_listed_at_once_with_its_value_and_secrets_stay_hidden() {
        let body = br#"{"runEvery":"ten","mode":3,"name":"ok","password":7,"list":[1,"x"]}"#;
        let error = parse_json::<Change>(body).unwrap_err();
        assert_eq!(error.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<(&str, &str)> = error
            .fields
            .iter()
            .map(|field| (field.field.as_str(), field.value.as_str()))
            .collect();
        assert_eq!(
            fields,
            // serde_json's objects are sorted by key.
            [
                ("list[1]", "x"),
                ("mode", "3"),
                ("password", "(hidden)"),
                ("runEvery", "ten"),
            ],
            "{error:?}"
        );
        assert!(!format!("{error:?}").contains('7'), "{error:?}");
        // A misspelt password field or a whole body is not echoed either.
        let error = parse_json::<Change>(br#"{"name":"x","pasword":"S3cret-value"}"#).unwrap_err();
        assert!(!format!("{error:?}").contains("S3cret"), "{error:?}");
        assert!(
            error.fields[0].problem.contains("unknown field"),
            "{error:?}"
        );
        let error = parse_json::<Change>(br#"["x","S3cret-value"]"#).unwrap_err();
        assert!(!format!("{error:?}").contains("S3cret"), "{error:?}");
        // A required field: reported once, even though setting it aside leaves it missing.
        let error = parse_json::<Change>(br#"{"name":5}"#).unwrap_err();
        assert_eq!(error.fields.len(), 1, "{error:?}");
        assert_eq!(error.fields[0].field, "name");
        let error = parse_json::<Change>(br#"{"mode":true}"#).unwrap_err();
        assert_eq!(error.fields[0].field, "name");
        assert!(parse_json::<Change>(br#"{"name":"x","list":[1]}"#).is_ok());
    }
}
