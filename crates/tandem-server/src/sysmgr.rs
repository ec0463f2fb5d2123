//! The System Manager listener (8443): the JSON API for scripts (HTTP Basic as a System Manager
//! local user): who this node is and its HA state, the HA Configuration (`/api/v1/ha/…`), the
//! local users (`/api/v1/users`, see `accounts`), the module logs (`/api/v1/logs`) and
//! `/metrics`; beside it the System Manager
//! console's pages (`console::system_manager`, a login session).

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::ha::{ConfigureError, Configured, HaHandle};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router, middleware};
use serde_json::{Value, json};
use tandem_ha::config::{ConfigChange, HaConfig};
use tandem_ha::machine::Snapshot;

pub fn router(
    state: AppState,
    ha: HaHandle,
    executor: crate::console::system_manager::Executor,
) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/ha/status", get(ha_status))
        .route("/api/v1/ha/config", get(ha_config).put(ha_configure))
        .route(
            "/api/v1/ha/notifications/test",
            axum::routing::post(test_notification),
        )
        .route("/api/v1/logs", get(logs))
        .route("/metrics", get(metrics))
        .nest(
            "/api/v1/users",
            crate::accounts::routes(tandem_store::accounts::AccountRealm::SystemManager),
        )
        .layer(Extension(ha.clone()))
        .layer(Extension(executor.clone()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_system_manager,
        ))
        .layer(middleware::from_fn(crate::csrf::same_origin_writes))
        .with_state(state.clone());
    // The console applies the same cross-site guard to its own posts.
    Router::new()
        .merge(api)
        .merge(crate::console::system_manager::router(state, ha, executor))
        .fallback(crate::not_found)
}

/// `GET /metrics`: Prometheus text exposition of the node (System Manager credentials; see
/// `crate::metrics` and docs/monitoring.md).
async fn metrics(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<crate::console::system_manager::Executor>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let text = crate::metrics::render(&state, &ha, &executor.replication).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

/// A page of a module's log, with the modules there are (for a picker).
#[derive(serde::Serialize)]
struct LogsAnswer {
    #[serde(flatten)]
    page: tandem_store::node_local::LogPage,
    modules: Vec<String>,
}

/// `GET /api/v1/logs?module=&level=&q=&before=&after=&limit=`: Troubleshooting → Logs for
/// scripts. A page of a module's log (HighAvailability unless `module` says), at `level` (INFO
/// unless it says) or more serious, newest first; `before` in the answer asks for the next
/// older page, `after` for the next newer one. Bad parameters: 422 naming each, with its value
/// and what is accepted (an unknown module lists the modules).
async fn logs(
    State(state): State<AppState>,
    ApiQuery(request): ApiQuery<tandem_store::node_local::LogRequest>,
) -> ApiResult<Json<LogsAnswer>> {
    let modules = crate::security_log::modules(&state.local).await;
    let query = request.validated(&modules, tandem_repl::LOG_MODULE)?;
    let page = state.local.log_page(query).await?;
    Ok(Json(LogsAnswer { page, modules }))
}

/// `GET /api/v1/ha/status`: the HA controller's view (state, epoch, heartbeats, schedule).
async fn ha_status(Extension(ha): Extension<HaHandle>) -> Json<Snapshot> {
    Json(ha.snapshot())
}

/// `GET /api/v1/ha/config`: the HA Configuration window's fields.
async fn ha_config(Extension(ha): Extension<HaHandle>) -> Json<HaConfig> {
    Json(ha.snapshot().config)
}

/// `PUT /api/v1/ha/config`: Save and Apply. The body holds the fields to change (absent ones
/// keep their value); saving re-anchors the schedule at the next StartTime.
async fn ha_configure(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(auth::Actor(user)): Extension<auth::Actor>,
    connection: Option<Extension<crate::state::ConnectionInfo>>,
    ApiJson(change): ApiJson<ConfigChange>,
) -> ApiResult<Json<Configured>> {
    let source = connection
        .map(|Extension(info)| info.remote.to_string())
        .unwrap_or_default();
    configure_as(&state, &ha, &user, &source, change)
        .await
        .map(Json)
        .map_err(configure_error)
}

/// Save and Apply on behalf of a System Manager user (the API or the console): carried out, then
/// recorded with who, from where and which fields in the process log and the Security log, the
/// first questions after a surprising failover.
pub(crate) async fn configure_as(
    state: &AppState,
    ha: &HaHandle,
    user: &str,
    source: &str,
    change: ConfigChange,
) -> Result<Configured, ConfigureError> {
    let changed = changed_fields(&change);
    let outcome = crate::control::checked_configure(ha, change).await;
    match &outcome {
        Ok(_) => {
            tracing::info!(user = ?user, %source, fields = ?changed, "HA configuration changed through System Manager");
            crate::security_log::ha_configured(&state.local, user, source, &changed, None).await;
        }
        Err(error) => {
            tracing::warn!(user = ?user, %source, fields = ?changed, %error, "HA configuration change refused");
            let reason = error.to_string();
            crate::security_log::ha_configured(&state.local, user, source, &changed, Some(&reason))
                .await;
        }
    }
    outcome
}

/// The API names of the settings a change sets (for the log: never their values, which may
/// name relays and addresses an operator would rather not see in every log shipper).
pub(crate) fn changed_fields(change: &ConfigChange) -> Vec<String> {
    match serde_json::to_value(change) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, _)| name)
            .collect(),
        _ => Vec::new(),
    }
}

/// A refused Save and Apply as the admin API answers bad input: 422 with every problem in
/// `fields`, or 409 for a valid change refused to keep one Active node.
fn configure_error(error: ConfigureError) -> ApiError {
    let refusal = error.is_refusal();
    let message = error.to_string();
    match error {
        ConfigureError::Invalid(invalid) => ApiError {
            status: if refusal {
                axum::http::StatusCode::CONFLICT
            } else {
                axum::http::StatusCode::UNPROCESSABLE_ENTITY
            },
            code: if refusal { "refused" } else { "invalid_input" },
            message,
            fields: invalid
                .problems
                .into_iter()
                .map(|problem| tandem_store::FieldError {
                    field: problem.field.to_owned(),
                    value: problem.value,
                    problem: problem.problem,
                })
                .collect(),
        },
        ConfigureError::Stopped => ApiError::unavailable("unavailable", message),
    }
}

/// `POST /api/v1/ha/notifications/test`: Notification Settings, Test. 200 with the addresses
/// and relay once the relay took the e-mail; 422 when no address or relay is set; 502 with the
/// relay's answer when it did not take it.
async fn test_notification(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
) -> ApiResult<Json<Value>> {
    use tandem_repl::ops::{Event, FailureKind};
    let snapshot = ha.snapshot();
    match crate::control::test_notification_running(&state.local, &snapshot, &state.node_name).await
    {
        Event::Done { result } => Ok(Json(result)),
        Event::Failed {
            kind: FailureKind::Usage,
            message,
        } => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            message,
        )),
        Event::Failed { message, .. } => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "smtp_relay_failed",
            message,
        )),
        // `test_notification` answers Done or Failed only.
        Event::Progress { .. } => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the test ended without a result",
        )),
    }
}

async fn status(State(state): State<AppState>) -> Json<Value> {
    let status = state.node_status();
    Json(json!({
        "node": state.node_name,
        "version": env!("CARGO_PKG_VERSION"),
        "haEnabled": status.ha_enabled,
        "mode": status.mode,
        "state": status.state,
        "clientConnections": if state.device_gate.is_open() { "enabled" } else { "disabled" },
    }))
}
