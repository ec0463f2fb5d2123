//! Cross-site request forgery guard for the admin API and System Manager.
//!
//! Both authenticate with HTTP Basic, which a browser remembers and sends on its own: a page on
//! another site could make an administrator's browser POST `…/actions/wipe`. A browser sends a
//! cross-site request without a preflight only with a "simple" content type (a form, plain text)
//! and no custom header, and always names the page's origin in `Origin`. So a state-changing
//! request is served only when it
//! - carries `Content-Type: application/json`, or the header [`CLIENT_HEADER`] (any value), which
//!   no page can add to a cross-site request without the CORS preflight Tandem never grants, or
//! - comes from a page of this very listener (`Origin` equal to `https://` + its `Host`),
//!
//! and never when its `Origin` names another site. Scripts (curl, the CLI, monitoring) add the
//! header; the portal's pages send JSON from their own origin. The guard runs before the
//! password check, so a forged request costs no argon2 time.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// The header a script adds to a state-changing request without a JSON body (an app upload, a
/// device action): `X-Tandem-Client: <anything>`, e.g. the script's name.
pub const CLIENT_HEADER: &str = "x-tandem-client";

pub async fn same_origin_writes(request: Request, next: Next) -> Result<Response, ApiError> {
    // Nested routers see the path without their prefix; the message names the one requested.
    let uri = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().clone(), |original| original.0.clone());
    if let Err(problem) = check(request.method(), &uri, request.headers()) {
        tracing::warn!(
            method = %request.method(),
            path = ?uri.path(),
            origin = ?request.headers().get(header::ORIGIN),
            source = %crate::state::source_of(&request),
            "refused a state-changing request that could come from another site: {problem}"
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_refused",
            format!(
                "{problem}; a script adds the header `X-Tandem-Client: <its name>` (e.g. curl -H \
                 'X-Tandem-Client: curl') or sends JSON, and a browser page must come from this \
                 listener"
            ),
        ));
    }
    Ok(next.run(request).await)
}

fn check(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Result<(), String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).map(|value| value.as_bytes());
    let host = headers
        .get(header::HOST)
        .map(|value| value.as_bytes().to_vec())
        // HTTP/2 carries the host in the `:authority` pseudo-header, which hyper puts in the URI.
        .or_else(|| {
            uri.authority()
                .map(|authority| authority.as_str().as_bytes().to_vec())
        });
    let same_origin = match (origin, &host) {
        (Some(origin), Some(host)) => origin
            .strip_prefix(b"https://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host)),
        _ => false,
    };
    if let Some(origin) = origin
        && !same_origin
    {
        return Err(format!(
            "the request came from the page of another site (Origin {:?})",
            String::from_utf8_lossy(origin)
        ));
    }
    let json = crate::extract::check_json_content_type(headers).is_ok();
    let marked = headers
        .get(CLIENT_HEADER)
        .is_some_and(|value| !value.is_empty());
    if json || marked || same_origin {
        Ok(())
    } else {
        Err(format!(
            "refused {method} {}: it has neither a JSON Content-Type nor an `X-Tandem-Client` \
             header, as a form on another site's page would",
            uri.path()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    axum::http::HeaderName::from_static(name),
                    axum::http::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    fn allowed(method: Method, pairs: &[(&'static str, &'static str)]) -> bool {
        check(
            &method,
            &"/api/v2/devices/x/actions/wipe".parse().unwrap(),
            &headers(pairs),
        )
        .is_ok()
    }

    #[test]
    fn reads_pass_and_a_bare_post_as_a_browser_form_would_send_it_is_refused() {
        assert!(allowed(Method::GET, &[]));
        assert!(allowed(Method::GET, &[("origin", "https://evil.example")]));
        assert!(!allowed(Method::POST, &[]));
        assert!(!allowed(
            Method::POST,
            &[("content-type", "application/x-www-form-urlencoded")]
        ));
        assert!(!allowed(Method::POST, &[("content-type", "text/plain")]));
        assert!(!allowed(Method::DELETE, &[]));
    }

    #[test]
    fn json_the_client_header_or_this_listeners_own_origin_let_a_write_through() {
        assert!(allowed(
            Method::POST,
            &[("content-type", "application/json")]
        ));
        assert!(allowed(Method::PUT, &[("x-tandem-client", "curl")]));
        assert!(allowed(
            Method::POST,
            &[("origin", "https://node-a:8443"), ("host", "node-a:8443")]
        ));
    }

    #[test]
    fn another_sites_origin_is_refused_whatever_else_the_request_carries() {
        for origin in ["https://evil.example", "null", "http://node-a:8443"] {
            let refused = check(
                &Method::POST,
                &"/".parse().unwrap(),
                &[
                    (header::ORIGIN, origin.parse().unwrap()),
                    (header::HOST, "node-a:8443".parse().unwrap()),
                    (header::CONTENT_TYPE, "application/json".parse().unwrap()),
                    (CLIENT_HEADER.parse().unwrap(), "x".parse().unwrap()),
                ]
                .into_iter()
                .collect(),
            );
            assert!(refused.is_err(), "{origin}");
        }
    }
}
