//! HTTP Basic authentication against the replicated admin and System Manager users.
//!
//! Argon2id is deliberately slow (tens of milliseconds), too slow to run on every API call. A
//! successful check is remembered for [`AUTH_CACHE_TTL`] under a key derived from the stored hash
//! and the offered password, so a password change takes effect at once (the stored hash changes)
//! and a wrong password is never cached. Failed checks slow their source and user down
//! (`backoff`): an attempt that comes too early is refused with 429 before argon2 runs.

use crate::backoff;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tandem_store::accounts::{self, AccountRealm};

/// How long the answer to a request that ignored its Retry-After is held (at most its
/// Retry-After). Refusals answered at once cost little each, but a flooding machine that never
/// waits sent 11,000 a second from 64 connections and took most of two cores from check-ins and
/// probes (`bench/security.sh`: check-in p99 ×2.7, probe p99 ×3.1). Held, each connection makes
/// one attempt a second, and what it costs is a sleeping task and a connection slot of its own
/// address (`connections_per_address_max`). A client that honours Retry-After is never held.
pub const IGNORED_RETRY_AFTER_HOLD_MAX: Duration = Duration::from_secs(1);

/// How long a verified password is trusted without re-running argon2.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// Verified credentials remembered at once; the cache is cleared when full (a handful of admins
/// and scripts use a node, so this is never reached in normal operation).
pub const AUTH_CACHE_ENTRIES_MAX: usize = 1024;

#[derive(Default)]
pub struct AuthCache {
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// The bounded pool every argon2 check runs on (see `password_checks`).
    pub(crate) checks: crate::password_checks::PasswordChecks,
    /// Failed logins per source and per user (see `backoff`).
    backoff: Mutex<backoff::Backoff>,
}

impl AuthCache {
    fn backoff(&self) -> std::sync::MutexGuard<'_, backoff::Backoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

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

/// What became of one offered credential.
enum Outcome {
    Verified,
    Wrong(Option<backoff::Counts>),
    /// The password pool's queue is full.
    Busy,
    /// Too many recent failures from this source or for this user: refused before argon2.
    Throttled {
        retry_after: Duration,
        by: backoff::RefusedBy,
        log: bool,
    },
}

async fn check(
    state: &AppState,
    realm: AccountRealm,
    user: &str,
    password: &str,
    // `None`: through a known proxy (see `Backoff::admit`).
    source: Option<backoff::SourceKey>,
) -> Outcome {
    let username = user.to_owned();
    let stored = state
        .db
        .read(move |conn| accounts::password_hash(conn, realm, &username))
        .await;
    let hash = match stored {
        Ok(hash) => hash,
        Err(_) => return Outcome::Wrong(None),
    };
    let key = hash.as_ref().map(|hash| cache_key(hash, password));
    let now = Instant::now();
    // Credentials verified within AUTH_CACHE_TTL skip the back-off: only the right password of
    // an existing account is ever cached, so this lets a script or an administrator already at
    // work keep working while someone else floods the same user with wrong passwords. It costs
    // an attacker nothing, as getting in this way needs the password.
    if let Some(key) = &key
        && state.auth_cache.contains(key, now)
    {
        return Outcome::Verified;
    }
    // Only accounts that exist get a user record; invented names count against the source only.
    let account = hash.is_some().then_some((realm, user));
    // Decided before argon2, so a refused attempt costs a hash-map lookup.
    let verdict = state.auth_cache.backoff().admit(now, source, account);
    if let backoff::Verdict::Refuse {
        retry_after,
        by,
        log,
    } = verdict
    {
        state.metrics.login_throttled(realm);
        return Outcome::Throttled {
            retry_after,
            by,
            log,
        };
    }
    // Settles the admitted check if it ends without a verdict (pool full, client gone).
    let mut admitted = Admitted {
        cache: &state.auth_cache,
        source,
        settled: false,
    };
    // No such user: checked all the same, so the answer takes as long as a wrong password's.
    let verified = match state.auth_cache.checks.verify(password, hash).await {
        Ok(verified) => verified,
        Err(crate::password_checks::Busy) => return Outcome::Busy,
    };
    admitted.settled = true;
    if verified {
        if let Some(key) = key {
            state.auth_cache.insert(key, now);
        }
        state.auth_cache.backoff().succeeded(source, realm, user);
        Outcome::Verified
    } else {
        state.metrics.login_failed(realm);
        let counts = state
            .auth_cache
            .backoff()
            .failed(Instant::now(), source, account);
        Outcome::Wrong(Some(counts))
    }
}

/// A check the back-off admitted, until its verdict is recorded.
struct Admitted<'a> {
    cache: &'a AuthCache,
    source: Option<backoff::SourceKey>,
    settled: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.cache.backoff().settled(self.source);
        }
    }
}

fn cache_key(hash: &str, password: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(hash.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .finalize()
        .into()
}

/// `429 Too Many Requests` with `Retry-After` in whole seconds (rounded up).
fn throttled(realm: AccountRealm, retry_after: Duration) -> Response {
    let seconds = retry_after_seconds(retry_after);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!(
            "too many failed {realm} logins recently from this address or for this user; \
             retry in {seconds} s"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Why a login was refused, after its log line was written.
pub(crate) enum LoginRefused {
    /// Wrong user name or password (or no such user).
    Wrong,
    /// Too many recent failures from this source or for this user: retry after this long.
    Throttled(Duration),
    /// The password pool's queue is full: retry in a second.
    Busy,
}

/// Checks a user name and password as `request`'s client offered them: the one login path of
/// HTTP Basic and the consoles' login forms, with the back-off, the bounded password pool and
/// the same log lines. `Ok` once the password is right.
pub(crate) async fn login(
    state: &AppState,
    realm: AccountRealm,
    user: &str,
    password: &str,
    info: Option<&crate::state::ConnectionInfo>,
) -> Result<(), LoginRefused> {
    let remote = info.map(|info| info.remote);
    let through_proxy = info.is_some_and(|info| info.through_proxy);
    let source = remote.map(|remote| remote.to_string()).unwrap_or_default();
    // A request without connection facts (none reach here in a running node) shares one key.
    // Through a known proxy the address is everyone's: no source record (see `Backoff::admit`).
    let source_key = (!through_proxy).then(|| {
        backoff::SourceKey::of(remote.map_or(
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            |remote| remote.ip(),
        ))
    });
    // The name as offered is checked; logs get at most USERNAME_CHARS_MAX characters of it
    // (no account has a longer one), so a megabyte "user name" cannot fill the logs.
    let offered = user;
    let user = logged_name(offered);
    let user = user.as_str();
    // `?user`: escaped, so a user name cannot forge log lines.
    match check(state, realm, offered, password, source_key).await {
        Outcome::Verified => Ok(()),
        Outcome::Wrong(counts) => {
            let (source_failures, user_failures) = counts
                .map(|counts| (counts.source_failures, counts.user_failures))
                .unwrap_or_default();
            tracing::warn!(
                user = ?user,
                %realm,
                %source,
                source_failures,
                user_failures = user_failures.unwrap_or(0),
                "authentication failed"
            );
            crate::security_log::login_failed(&state.local, realm, user, &source, source_failures)
                .await;
            Err(LoginRefused::Wrong)
        }
        Outcome::Throttled {
            retry_after,
            by,
            log,
        } => {
            if log {
                tracing::warn!(
                    user = ?user,
                    %realm,
                    %source,
                    held_by = %by,
                    retry_after_ms = retry_after.as_millis() as u64,
                    "authentication refused: too many recent failures (later refusals in this \
                     window are not logged)"
                );
                crate::security_log::login_throttled(
                    &state.local,
                    realm,
                    user,
                    &source,
                    by,
                    retry_after.as_millis() as u64,
                )
                .await;
            } else {
                // This client was refused in this window already and came back before its
                // Retry-After: it ignores it, as a flood does. Its next refusal waits.
                tokio::time::sleep(retry_after.min(IGNORED_RETRY_AFTER_HOLD_MAX)).await;
            }
            Err(LoginRefused::Throttled(retry_after))
        }
        Outcome::Busy => {
            tracing::warn!(user = ?user, %realm, %source, "authentication refused: too many password checks waiting");
            Err(LoginRefused::Busy)
        }
    }
}

/// A user name as the logs show it: its first `USERNAME_CHARS_MAX` characters, marked when cut.
fn logged_name(user: &str) -> String {
    let mut chars = user.chars();
    let kept: String = chars.by_ref().take(accounts::USERNAME_CHARS_MAX).collect();
    if chars.next().is_some() {
        format!("{kept}… (cut)")
    } else {
        kept
    }
}

/// Whole seconds to tell a client to wait (rounded up, so it never comes back too early).
pub(crate) fn retry_after_seconds(retry_after: Duration) -> u64 {
    retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
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
    let info = request.extensions().get::<crate::state::ConnectionInfo>();
    match login(state, realm, &user, &password, info).await {
        Ok(()) => {}
        Err(LoginRefused::Wrong) => {
            return Err(ApiError::unauthorized(format!(
                "wrong {realm} user name or password"
            )));
        }
        Err(LoginRefused::Throttled(retry_after)) => return Ok(throttled(realm, retry_after)),
        Err(LoginRefused::Busy) => {
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

#[cfg(test)]
mod tests {
    #[test]
    fn logs_get_a_bounded_user_name_cut_on_a_character() {
        assert_eq!(super::logged_name("admin"), "admin");
        let long = "é".repeat(100_000);
        let logged = super::logged_name(&long);
        assert!(logged.ends_with("… (cut)"), "{logged}");
        assert_eq!(
            logged.chars().count(),
            tandem_store::accounts::USERNAME_CHARS_MAX + "… (cut)".chars().count()
        );
    }
}
