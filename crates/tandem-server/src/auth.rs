//! HTTP Basic authentication against the replicated admin and System Manager users.
//!
//! Argon2id is deliberately slow (tens of milliseconds), too slow to run on every API call. A
//! successful check is remembered for [`AUTH_CACHE_TTL`] under a key derived from the stored hash
//! and the offered password, so a password change takes effect at once (the stored hash changes)
//! and a wrong password is never cached.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tandem_store::accounts::{self, AccountRealm};

/// How long a verified password is trusted without re-running argon2.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// Verified credentials remembered at once; the cache is cleared when full (a handful of admins
/// and scripts use a node, so this is never reached in normal operation).
pub const AUTH_CACHE_ENTRIES_MAX: usize = 1024;

#[derive(Default)]
pub struct AuthCache {
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// The bounded pool every argon2 check runs on (see `password_checks`).
    checks: crate::password_checks::PasswordChecks,
}

impl AuthCache {
    fn contains(&self, key: &[u8; 32], now: Instant) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < AUTH_CACHE_TTL)
    }

    fn insert(&self, key: [u8; 32], now: Instant) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= AUTH_CACHE_ENTRIES_MAX {
            verified.clear();
        }
        verified.insert(key, now);
    }
}

/// The authenticated administrator, recorded as the actor of every change they make.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn verify(
    state: &AppState,
    realm: AccountRealm,
    user: &str,
    password: &str,
) -> Result<bool, crate::password_checks::Busy> {
    let username = user.to_owned();
    let stored = state
        .db
        .read(move |conn| accounts::password_hash(conn, realm, &username))
        .await;
    let hash = match stored {
        Ok(Some(hash)) => hash,
        // No such user: checked all the same, so the answer takes as long as a wrong password's.
        Ok(None) => return state.auth_cache.checks.verify(password, None).await,
        Err(_) => return Ok(false),
    };
    let key: [u8; 32] = Sha256::new()
        .chain_update(hash.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .finalize()
        .into();
    let now = Instant::now();
    if state.auth_cache.contains(&key, now) {
        return Ok(true);
    }
    let verified = state.auth_cache.checks.verify(password, Some(hash)).await?;
    if verified {
        state.auth_cache.insert(key, now);
    }
    Ok(verified)
}

async fn authenticate(
    state: &AppState,
    realm: AccountRealm,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some((user, password)) = basic_credentials(&request) else {
        return Err(ApiError::unauthorized(format!(
            "this API needs HTTP Basic authentication with a user from the {realm} users"
        )));
    };
    let source = request
        .extensions()
        .get::<crate::state::ConnectionInfo>()
        .map(|info| info.remote.to_string())
        .unwrap_or_default();
    match verify(state, realm, &user, &password).await {
        Ok(true) => {}
        // `?user`: escaped, so a user name cannot forge log lines.
        Ok(false) => {
            tracing::warn!(user = ?user, %realm, %source, "authentication failed");
            return Err(ApiError::unauthorized(format!(
                "wrong {realm} user name or password"
            )));
        }
        Err(crate::password_checks::Busy) => {
            tracing::warn!(user = ?user, %realm, %source, "authentication refused: too many password checks waiting");
            return Err(ApiError::busy(
                "too many password checks are waiting; retry in a second",
            ));
        }
    }
    request.extensions_mut().insert(Actor(user));
    Ok(next.run(request).await)
}

/// Admin API: Basic auth as an admin user.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authenticate(&state, AccountRealm::Admin, request, next).await
}

/// System Manager: Basic auth as a System Manager local user.
pub async fn require_system_manager(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authenticate(&state, AccountRealm::SystemManager, request, next).await
}

/// Admin writes are served only by the Active node; a Standby answers reads so an operator can
/// compare it with the Primary (guide, Table 3 task 3).
pub async fn writes_need_active(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let read_only = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let status = state.node_status();
    if !read_only && !status.accepts_writes() {
        return Err(ApiError::unavailable(
            "read_only",
            format!(
                "node {} is {} and read-only; make changes on the Active node{}",
                state.node_name,
                status.state,
                state.where_to_go()
            ),
        ));
    }
    Ok(next.run(request).await)
}
