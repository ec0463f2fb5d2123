//! Account management, one implementation behind three doors: `tandem users …` (the control
//! socket, or in the CLI's process for a stopped node), the admin API (`/api/v2/admin-users`)
//! and the System Manager API (`/api/v1/users`).
//!
//! Accounts live in replicated tables, so a change is an ordinary write on the Active node that
//! reaches the Standby by replication; a node that is not Active refuses it. Each change commits
//! with its audit event (who, from where, which user; never the password). Passwords are
//! checked for strength, then hashed with argon2 on a blocking thread (never on the async
//! runtime or the database writer), one hash at a time.

use serde_json::{Value, json};
use tandem_repl::ops::{Event, FailureKind, Operation};
use tandem_store::accounts::{self, Account, AccountRealm, Audit};
use tandem_store::{Database, StoreError};
use tokio::sync::Semaphore;

/// Password hashes computed at once for account changes: each argon2 hash holds about 19 MiB
/// for tens of milliseconds, and account changes are rare operator actions, so one at a time
/// keeps their memory bounded whatever a script does.
pub const ACCOUNT_HASHES_CONCURRENT_MAX: usize = 1;

static HASHES: Semaphore = Semaphore::const_new(ACCOUNT_HASHES_CONCURRENT_MAX);

/// Why an account change failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot hash the new password: {0}")]
    Hash(String),
    /// The node is not Active; accounts are written on the Active node only.
    #[error("{0}")]
    ReadOnly(String),
}

/// Who asks, from where, and whether this node may write accounts now (`Err`: why not).
pub struct Caller {
    pub actor: String,
    pub source: String,
    pub writable: Result<(), String>,
    /// This node's local store: each change is written to its Security log too.
    pub local: tandem_store::NodeStore,
}

impl Caller {
    fn audit(&self) -> Audit<'_> {
        Audit {
            actor: &self.actor,
            source: &self.source,
        }
    }

    fn check_writable(&self) -> Result<(), AccountError> {
        self.writable.clone().map_err(AccountError::ReadOnly)
    }
}

/// The caller of a request on a listener: its authenticated user, its client address, and
/// whether this node writes accounts now (the API and the System Manager console alike).
pub fn caller(
    state: &crate::state::AppState,
    actor: String,
    connection: Option<&crate::state::ConnectionInfo>,
) -> Caller {
    let status = state.node_status();
    let writable = if status.accepts_writes() {
        Ok(())
    } else {
        Err(read_only_message(
            &state.node_name,
            &status.state.to_string(),
            &state.where_to_go(),
        ))
    };
    Caller {
        actor,
        source: connection
            .map(|info| info.remote.to_string())
            .unwrap_or_else(|| "an unknown address".into()),
        writable,
        local: state.local.clone(),
    }
}

/// The refusal for a node that is not Active, naming where to go instead.
pub fn read_only_message(node_name: &str, state: &str, elsewhere: &str) -> String {
    format!(
        "node {node_name} is {state} and read-only: accounts are replicated from the Active node; \
         change them there{elsewhere}"
    )
}

/// Checks the name and the password's strength, then hashes it off the async runtime.
async fn hash_new_password(username: &str, password: &str) -> Result<String, AccountError> {
    accounts::validate_username(username)?;
    accounts::validate_password(username, password)?;
    let _permit = HASHES
        .acquire()
        .await
        .map_err(|_| AccountError::Hash("the hashing pool is closed".into()))?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || tandem_crypto::hash_password(&password))
        .await
        .map_err(|error| AccountError::Hash(error.to_string()))?
        .map_err(|error| AccountError::Hash(error.to_string()))
}

pub async fn list(db: &Database, realm: AccountRealm) -> Result<Vec<Account>, AccountError> {
    Ok(db.read(move |conn| accounts::list(conn, realm)).await?)
}

pub async fn add(
    db: &Database,
    caller: &Caller,
    realm: AccountRealm,
    username: &str,
    password: &str,
) -> Result<Account, AccountError> {
    caller.check_writable()?;
    let hash = hash_new_password(username, password).await?;
    audited(
        db,
        caller,
        realm,
        username,
        "account added",
        move |conn, name, audit| accounts::add(conn, realm, name, &hash, audit),
    )
    .await
}

pub async fn remove(
    db: &Database,
    caller: &Caller,
    realm: AccountRealm,
    username: &str,
) -> Result<(), AccountError> {
    caller.check_writable()?;
    audited(
        db,
        caller,
        realm,
        username,
        "account removed",
        move |conn, name, audit| accounts::remove(conn, realm, name, audit),
    )
    .await
}

/// Replaces the password. Effective at once: the verified-credential cache is keyed by the
/// stored hash, which changes here.
pub async fn set_password(
    db: &Database,
    caller: &Caller,
    realm: AccountRealm,
    username: &str,
    password: &str,
) -> Result<(), AccountError> {
    caller.check_writable()?;
    let name = username.to_owned();
    let exists = db
        .read(move |conn| accounts::password_hash(conn, realm, &name))
        .await?
        .is_some();
    if !exists {
        return Err(StoreError::not_found(realm.user_noun(), username).into());
    }
    let hash = hash_new_password(username, password).await?;
    audited(
        db,
        caller,
        realm,
        username,
        "account password changed",
        move |conn, name, audit| accounts::set_password_hash(conn, realm, name, &hash, audit),
    )
    .await
}

/// One account change and its audit event in one write, then its log line (who, from where;
/// never a password).
async fn audited<T: Send + 'static>(
    db: &Database,
    caller: &Caller,
    realm: AccountRealm,
    username: &str,
    what: &'static str,
    change: impl FnOnce(&rusqlite::Connection, &str, &Audit) -> tandem_store::StoreResult<T>
    + Send
    + 'static,
) -> Result<T, AccountError> {
    let (name, actor, source) = (
        username.to_owned(),
        caller.actor.clone(),
        caller.source.clone(),
    );
    let done = db
        .write(move |conn| {
            let audit = Audit {
                actor: &actor,
                source: &source,
            };
            change(conn, &name, &audit)
        })
        .await?;
    let audit = caller.audit();
    tracing::info!(user = ?username, %realm, actor = ?audit.actor, source = %audit.source, "{what}");
    crate::security_log::account_changed(
        &caller.local,
        what,
        realm,
        username,
        audit.actor,
        audit.source,
    )
    .await;
    Ok(done)
}

fn kind_of(error: &AccountError) -> FailureKind {
    match error {
        AccountError::Store(StoreError::Invalid(_) | StoreError::NotFound { .. }) => {
            FailureKind::Usage
        }
        AccountError::Store(
            StoreError::Refused(_) | StoreError::Conflict { .. } | StoreError::WritesClosed(_),
        )
        | AccountError::ReadOnly(_) => FailureKind::Refused,
        _ => FailureKind::Failed,
    }
}

/// Carries out a `tandem users …` operation (`None`: it is not one).
pub async fn execute(db: &Database, caller: &Caller, operation: &Operation) -> Option<Event> {
    let result: Result<Value, AccountError> = match operation {
        Operation::UsersList { realm } => list(db, *realm)
            .await
            .map(|accounts| json!({ "realm": realm, "users": accounts })),
        Operation::UsersAdd {
            realm,
            username,
            password,
        } => add(db, caller, *realm, username, &password.0)
            .await
            .map(|account| json!({ "realm": realm, "added": account })),
        Operation::UsersRemove { realm, username } => remove(db, caller, *realm, username)
            .await
            .map(|()| json!({ "realm": realm, "removed": username })),
        Operation::UsersSetPassword {
            realm,
            username,
            password,
        } => set_password(db, caller, *realm, username, &password.0)
            .await
            .map(|()| json!({ "realm": realm, "passwordChanged": username })),
        _ => return None,
    };
    Some(match result {
        Ok(result) => Event::Done { result },
        Err(error) => Event::Failed {
            kind: kind_of(&error),
            message: error.to_string(),
        },
    })
}

impl From<AccountError> for crate::error::ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Store(store) => store.into(),
            AccountError::ReadOnly(message) => Self::unavailable("read_only", message),
            AccountError::Hash(message) => Self::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                message,
            ),
        }
    }
}

/// The HTTP routes for one realm: `GET /` (list), `POST /` (add), `DELETE /{username}`,
/// `PUT /{username}/password`. Mounted at `/api/v2/admin-users` (admins) and `/api/v1/users`
/// (System Manager local users), behind that listener's authentication.
pub fn routes(realm: AccountRealm) -> axum::Router<crate::state::AppState> {
    use axum::routing::{delete, get, put};
    axum::Router::new()
        .route("/", get(http::list).post(http::add))
        .route("/{username}", delete(http::remove))
        .route("/{username}/password", put(http::set_password))
        .layer(axum::Extension(realm))
}

mod http {
    use super::AccountRealm;
    use crate::auth::Actor;
    use crate::error::ApiResult;
    use crate::extract::{ApiJson, ApiPath};
    use crate::state::{AppState, ConnectionInfo};
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::{Extension, Json};
    use serde::Deserialize;
    use serde_json::{Value, json};

    /// `POST` body. No `Debug`: it holds a password.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct NewAccount {
        username: String,
        password: String,
    }

    /// `PUT …/password` body.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct NewPassword {
        password: String,
    }

    pub async fn list(
        State(state): State<AppState>,
        Extension(realm): Extension<AccountRealm>,
    ) -> ApiResult<Json<Value>> {
        let users = super::list(&state.db, realm).await?;
        Ok(Json(json!({ "realm": realm, "users": users })))
    }

    pub async fn add(
        State(state): State<AppState>,
        Extension(realm): Extension<AccountRealm>,
        Extension(Actor(actor)): Extension<Actor>,
        connection: Option<Extension<ConnectionInfo>>,
        ApiJson(body): ApiJson<NewAccount>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        let caller = super::caller(&state, actor, connection.as_ref().map(|c| &c.0));
        let account = super::add(&state.db, &caller, realm, &body.username, &body.password).await?;
        Ok((StatusCode::CREATED, Json(json!(account))))
    }

    pub async fn remove(
        State(state): State<AppState>,
        Extension(realm): Extension<AccountRealm>,
        Extension(Actor(actor)): Extension<Actor>,
        connection: Option<Extension<ConnectionInfo>>,
        ApiPath(username): ApiPath<String>,
    ) -> ApiResult<StatusCode> {
        let caller = super::caller(&state, actor, connection.as_ref().map(|c| &c.0));
        super::remove(&state.db, &caller, realm, &username).await?;
        Ok(StatusCode::NO_CONTENT)
    }

    pub async fn set_password(
        State(state): State<AppState>,
        Extension(realm): Extension<AccountRealm>,
        Extension(Actor(actor)): Extension<Actor>,
        connection: Option<Extension<ConnectionInfo>>,
        ApiPath(username): ApiPath<String>,
        ApiJson(body): ApiJson<NewPassword>,
    ) -> ApiResult<StatusCode> {
        let caller = super::caller(&state, actor, connection.as_ref().map(|c| &c.0));
        super::set_password(&state.db, &caller, realm, &username, &body.password).await?;
        Ok(StatusCode::NO_CONTENT)
    }
}
