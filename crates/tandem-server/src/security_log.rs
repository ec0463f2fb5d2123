//! The `Security` module of the node-local log (Troubleshooting → Logs): console logins and
//! failed logins with the user and the source address, logouts, HA configuration changes made
//! through System Manager (who, from where, which fields) and account changes (who, from where,
//! which account). It says the same as the process log's (tracing) line beside each call, so
//! an operator reading the console sees what a log shipper sees.
//!
//! **Bounded under a flood**: a failed login writes a line only when the process log writes
//! one. Attempts refused by the back-off (`backoff.rs`) are logged once per window, and those
//! refused because the password pool is full are not written here at all (a load signal, which
//! the process log carries), so a password flood adds a handful of lines, not one per attempt.
//!
//! User names are written quoted and escaped (`{:?}`), so a user name cannot forge a line.

use std::fmt::Display;
use tandem_store::NodeStore;
use tandem_store::accounts::AccountRealm;
use tandem_store::node_local::LogLevel;

/// The module's name in the log.
pub const SECURITY_MODULE: &str = "Security";

/// The modules every node's log can hold, in the order the Logs window offers them.
pub const KNOWN_MODULES: [&str; 3] = [
    tandem_repl::LOG_MODULE,
    crate::notify::NOTIFICATIONS_MODULE,
    SECURITY_MODULE,
];

/// The modules a reader may ask for: the known ones, then any other the log holds (from an
/// older or newer version), so nothing written is out of reach.
pub fn modules_with(present: Vec<String>) -> Vec<String> {
    let mut modules: Vec<String> = KNOWN_MODULES.iter().map(|m| (*m).to_owned()).collect();
    for module in present {
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    modules
}

/// [`modules_with`] the modules `local`'s log holds (the known ones only if it cannot be read).
pub async fn modules(local: &NodeStore) -> Vec<String> {
    modules_with(local.log_modules().await.unwrap_or_default())
}

/// Writes one line; a failure to write never fails the action logged (it is in the process
/// log too).
pub async fn record(local: &NodeStore, level: LogLevel, message: &str) {
    if let Err(error) = local.log(SECURITY_MODULE, level.as_str(), message).await {
        tracing::warn!(%error, message, "cannot write the Security log");
    }
}

/// "from 192.0.2.7:50123", or nothing when the source is not known.
fn from(source: &str) -> String {
    if source.is_empty() {
        String::new()
    } else {
        format!(" from {source}")
    }
}

/// A console login (the form; HTTP Basic calls are not logins to log one by one).
pub async fn login(local: &NodeStore, realm: AccountRealm, user: &str, source: &str) {
    let message = format!("console login: {realm} user {user:?}{}", from(source));
    record(local, LogLevel::Info, &message).await;
}

pub async fn logout(local: &NodeStore, realm: AccountRealm, user: &str, source: &str) {
    let message = format!("console logout: {realm} user {user:?}{}", from(source));
    record(local, LogLevel::Info, &message).await;
}

/// A wrong user name or password (console form or HTTP Basic), with the failures counted so
/// far from its source.
pub async fn login_failed(
    local: &NodeStore,
    realm: AccountRealm,
    user: &str,
    source: &str,
    source_failures: u32,
) {
    let message = format!(
        "login failed: wrong password or no such user for {realm} user {user:?}{} \
         ({source_failures} recent failure(s) from this address)",
        from(source)
    );
    record(local, LogLevel::Warn, &message).await;
}

/// The first refusal of a back-off window (later ones in the window are not logged).
pub async fn login_throttled(
    local: &NodeStore,
    realm: AccountRealm,
    user: &str,
    source: &str,
    held_by: impl Display,
    retry_after_ms: u64,
) {
    let message = format!(
        "login refused without a password check: too many recent failures ({held_by}) for \
         {realm} user {user:?}{}; retry allowed in {retry_after_ms} ms; later refusals in this \
         window are not logged",
        from(source)
    );
    record(local, LogLevel::Warn, &message).await;
}

/// Save and Apply of the HA Configuration through System Manager (API or console): who, from
/// where, which fields (never their values); `refused`: why it was not saved.
pub async fn ha_configured(
    local: &NodeStore,
    user: &str,
    source: &str,
    fields: &[String],
    refused: Option<&str>,
) {
    let fields = if fields.is_empty() {
        "no fields".to_owned()
    } else {
        fields.join(", ")
    };
    match refused {
        None => {
            let message = format!(
                "HA configuration changed through System Manager by user {user:?}{}: {fields}",
                from(source)
            );
            record(local, LogLevel::Info, &message).await;
        }
        Some(reason) => {
            let message = format!(
                "HA configuration change refused (user {user:?}{}, fields {fields}): {reason}",
                from(source)
            );
            record(local, LogLevel::Warn, &message).await;
        }
    }
}

/// An account change ("account added", "account removed", "account password changed").
pub async fn account_changed(
    local: &NodeStore,
    what: &str,
    realm: AccountRealm,
    user: &str,
    actor: &str,
    source: &str,
) {
    let message = format!("{what}: {realm} user {user:?} by {actor:?}{}", from(source));
    record(local, LogLevel::Info, &message).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_modules_come_first_and_others_present_are_kept() {
        let modules = modules_with(vec!["Security".into(), "Upgrade".into()]);
        assert_eq!(
            modules,
            ["HighAvailability", "Notifications", "Security", "Upgrade"]
        );
    }

    #[test]
    fn a_user_name_cannot_forge_a_line() {
        let user = "eve\nconsole login: system manager user \"admin\"";
        let shown = format!("{user:?}");
        assert!(!shown.contains('\n'));
        assert!(shown.contains("\\n"));
    }
}
