//! Console sessions: a login form sets a random token in a cookie; the node keeps what the token
//! stands for (user, form token, times) in memory.
//!
//! - **Cookie**: `__Host-` prefixed (the browser then insists on Secure, Path=/ and no Domain),
//!   HttpOnly (no page script reads it) and SameSite=Strict (no other site's page sends it).
//!   The two consoles use two names, as a browser sends a host's cookies to every port.
//! - **Form token** (`csrf`): every form carries its session's token and a POST without the right
//!   one is refused, besides the Origin check every write passes (`csrf.rs`).
//! - **Expiry**: [`SESSION_IDLE_MAX`] without a request, or [`SESSION_LIFETIME_MAX`] after login,
//!   whichever comes first; logout ends a session at once, and so do a password change or the
//!   removal of its user (the stored hash is checked on every request).
//! - **Memory only**: a restart logs everyone out. Sessions are this node's own: an operator logs
//!   in on each node, as with the guide's System Manager, and a failover ends no session.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tandem_store::accounts::AccountRealm;

/// A session ends after this long without a request (an unattended browser at 3 a.m.).
pub const SESSION_IDLE_MAX: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login whatever happens, so a stolen cookie dies too.
pub const SESSION_LIFETIME_MAX: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once per console; past it the least recently used ends. A few operators
/// use a node; this bounds what a script logging in in a loop can make the node hold.
pub const SESSIONS_MAX: usize = 1024;

/// One console's sessions.
pub struct Sessions {
    realm: AccountRealm,
    cookie: &'static str,
    by_token: Mutex<HashMap<[u8; 32], Session>>,
}

/// What a session token stands for.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    /// The form token every POST of this session carries (hex).
    pub csrf: String,
    /// SHA-256 of the user's password hash at login: the session ends when it changes.
    pub(crate) password_fingerprint: [u8; 32],
    created: Instant,
    seen: Instant,
    /// A message for the next page shown (after a POST that redirects).
    flash: Option<Flash>,
}

/// A one-time message on the next page: what the last action did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Success,
    Error,
}

impl FlashKind {
    /// The CSS class and ARIA role of the message.
    pub fn class(self) -> &'static str {
        match self {
            FlashKind::Success => "success",
            FlashKind::Error => "error",
        }
    }
}

impl Flash {
    pub fn success(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Success,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }
}

/// SHA-256 of a stored password hash, kept in a session instead of the hash itself.
pub(crate) fn fingerprint(password_hash: &str) -> [u8; 32] {
    Sha256::digest(password_hash.as_bytes()).into()
}

fn key(token: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(token).ok()?;
    // Stored by the token's digest: a token is only ever compared as a map key of its hash,
    // so the lookup time tells nothing about how close a guess came.
    (bytes.len() == 32).then(|| Sha256::digest(&bytes).into())
}

impl Sessions {
    pub fn new(realm: AccountRealm, cookie: &'static str) -> Self {
        Self {
            realm,
            cookie,
            by_token: Mutex::new(HashMap::new()),
        }
    }

    pub fn realm(&self) -> AccountRealm {
        self.realm
    }

    pub fn cookie_name(&self) -> &'static str {
        self.cookie
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_token.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for `user`; returns its token (the cookie's value).
    pub fn start(&self, user: &str, password_fingerprint: [u8; 32], now: Instant) -> String {
        let token = tandem_crypto::random_token();
        let session = Session {
            user: user.to_owned(),
            csrf: hex::encode(tandem_crypto::random_token()),
            password_fingerprint,
            created: now,
            seen: now,
            flash: None,
        };
        let mut sessions = self.sessions();
        sessions.retain(|_, session| session.live(now));
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.seen)
                .map(|(key, _)| *key)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(Sha256::digest(token).into(), session);
        hex::encode(token)
    }

    /// The live session of `token`, marked as seen now, with its flash message taken out.
    pub fn touch(&self, token: &str, now: Instant) -> Option<(Session, Option<Flash>)> {
        let key = key(token)?;
        let mut sessions = self.sessions();
        let session = sessions.get_mut(&key)?;
        if !session.live(now) {
            sessions.remove(&key);
            return None;
        }
        session.seen = now;
        let flash = session.flash.take();
        Some((session.clone(), flash))
    }

    /// Whether `token` names a live session (without using it: its message stays for its
    /// next page).
    pub fn is_live(&self, token: &str, now: Instant) -> bool {
        key(token).is_some_and(|key| {
            self.sessions()
                .get(&key)
                .is_some_and(|session| session.live(now))
        })
    }

    /// Leaves `flash` for the session's next page.
    pub fn flash(&self, token: &str, flash: Flash) {
        if let Some(key) = key(token)
            && let Some(session) = self.sessions().get_mut(&key)
        {
            session.flash = Some(flash);
        }
    }

    /// Ends the session of `token` (logout, or its user's password changed).
    pub fn end(&self, token: &str) {
        if let Some(key) = key(token) {
            self.sessions().remove(&key);
        }
    }

    /// Ends every session of `user` (removed, or its password changed on this node).
    pub fn end_user(&self, user: &str) {
        self.sessions().retain(|_, session| session.user != user);
    }

    /// The session token a request's `Cookie` headers carry for this console.
    pub fn token_of(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value.to_owned())
    }

    /// The `Set-Cookie` value that gives the browser `token`.
    pub fn set_cookie(&self, token: &str) -> String {
        format!(
            "{}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            self.cookie,
            SESSION_LIFETIME_MAX.as_secs()
        )
    }

    /// The `Set-Cookie` value that makes the browser forget the session.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
            self.cookie
        )
    }
}

impl Session {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.seen) < SESSION_IDLE_MAX
            && now.saturating_duration_since(self.created) < SESSION_LIFETIME_MAX
    }
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |differ, (x, y)| differ | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(AccountRealm::SystemManager, "__Host-test")
    }

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle_or_too_old() {
        let sessions = sessions();
        let t0 = Instant::now();
        let token = sessions.start("admin", [0; 32], t0);
        assert!(
            sessions
                .touch(&token, t0 + Duration::from_secs(60))
                .is_some()
        );
        // Used every 20 minutes, it lives until its lifetime ends.
        let mut at = t0;
        while at + Duration::from_secs(20 * 60) < t0 + SESSION_LIFETIME_MAX {
            at += Duration::from_secs(20 * 60);
            assert!(sessions.touch(&token, at).is_some(), "alive at {at:?}");
        }
        assert!(sessions.touch(&token, t0 + SESSION_LIFETIME_MAX).is_none());

        let idle = sessions.start("admin", [0; 32], t0);
        assert!(sessions.touch(&idle, t0 + SESSION_IDLE_MAX).is_none());
        // Once ended it stays ended.
        assert!(sessions.touch(&idle, t0).is_none());
    }

    #[test]
    fn logout_and_user_removal_end_sessions_and_forged_tokens_find_nothing() {
        let sessions = sessions();
        let now = Instant::now();
        let a = sessions.start("alice", [0; 32], now);
        let b = sessions.start("bob", [0; 32], now);
        sessions.end(&a);
        assert!(sessions.touch(&a, now).is_none());
        assert!(sessions.touch(&b, now).is_some());
        sessions.end_user("bob");
        assert!(sessions.touch(&b, now).is_none());
        for forged in ["", "zz", &"0".repeat(64), &format!("{a}00")] {
            assert!(sessions.touch(forged, now).is_none(), "{forged}");
        }
    }

    #[test]
    fn a_flash_message_is_shown_once() {
        let sessions = sessions();
        let now = Instant::now();
        let token = sessions.start("admin", [0; 32], now);
        sessions.flash(&token, Flash::success("saved"));
        let (_, flash) = sessions.touch(&token, now).unwrap();
        assert_eq!(flash, Some(Flash::success("saved")));
        assert_eq!(sessions.touch(&token, now).unwrap().1, None);
    }

    #[test]
    fn the_store_is_bounded_and_drops_the_least_recently_used() {
        let sessions = sessions();
        let t0 = Instant::now();
        let first = sessions.start("first", [0; 32], t0);
        let kept = sessions.start("kept", [0; 32], t0 + Duration::from_millis(1));
        assert!(sessions.touch(&kept, t0 + Duration::from_secs(1)).is_some());
        for i in 0..SESSIONS_MAX {
            sessions.start("flood", [0; 32], t0 + Duration::from_millis(2 + i as u64));
        }
        assert!(sessions.sessions().len() <= SESSIONS_MAX);
        assert!(
            sessions
                .touch(&first, t0 + Duration::from_secs(2))
                .is_none()
        );
    }

    #[test]
    fn the_cookie_is_secure_host_only_and_script_proof() {
        let sessions = sessions();
        let cookie = sessions.set_cookie("abc");
        for part in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!cookie.contains("Domain"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "other=1; __Host-test=abc; x=y".parse().unwrap(),
        );
        assert_eq!(sessions.token_of(&headers).as_deref(), Some("abc"));
        assert!(tokens_equal("abcd", "abcd") && !tokens_equal("abcd", "abce"));
        assert!(!tokens_equal("abc", "abcd"));
    }
}
