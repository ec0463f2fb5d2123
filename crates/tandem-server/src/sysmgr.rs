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

/// `GET /metrics`: Prometheus text exposition of the HA state and replication (System Manager
/// credentials, like every page here; give them to the scraper's `basic_auth`).
async fn metrics(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    use std::fmt::Write;
    let snapshot = ha.snapshot();
    let follower = ha.follower();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut gauge = |name: &str, help: &str, rows: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: String| vec![(String::new(), value)];
    let states = ["Active", "Standby", "Not Available"]
        .iter()
        .map(|name| {
            (
                format!("{{state=\"{name}\"}}"),
                u8::from(snapshot.status.state.to_string() == *name).to_string(),
            )
        })
        .collect::<Vec<_>>();
    gauge(
        "tandem_ha_state",
        "1 for the state this node serves in.",
        &states,
    );
    gauge(
        "tandem_ha_epoch",
        "The epoch this node holds.",
        &one(snapshot.epoch.to_string()),
    );
    gauge(
        "tandem_ha_fenced",
        "1 while this node is fenced (Not Available until an operator acts).",
        &one(u8::from(snapshot.fenced.is_some()).to_string()),
    );
    gauge(
        "tandem_ha_heartbeat_consecutive_failures",
        "Heartbeats to the Primary that failed in a row.",
        &one(snapshot.heartbeat.consecutive_failures.to_string()),
    );
    gauge(
        "tandem_ha_dual_active",
        "1 while this node sees two nodes of the HA group Active at once (directly or by gossip).",
        &one(u8::from(snapshot.dual_active.is_some()).to_string()),
    );
    gauge(
        "tandem_ha_trust_incomplete",
        "Nodes known only through another node's gossip, which this node cannot check itself.",
        &one(snapshot.trust_warnings.len().to_string()),
    );
    let members: Vec<(String, String)> = snapshot
        .cluster
        .iter()
        .map(|member| {
            (
                format!(
                    "{{node=\"{}\",state=\"{}\",source=\"{}\"}}",
                    label_value(&member.node_name),
                    member.state,
                    if member.direct { "direct" } else { "gossip" }
                ),
                member.epoch.to_string(),
            )
        })
        .collect();
    gauge(
        "tandem_ha_cluster_node_epoch",
        "The epoch of every other node this node knows of, with its state and how it is known.",
        &members,
    );
    let head = state.db.head_seq();
    let holds = *ha.standby_holds().borrow();
    gauge(
        "tandem_replication_head_seq",
        "Sequence number of the newest change-log entry on this node.",
        &one(head.to_string()),
    );
    // Only meaningful where a Standby follows this node: an Active node streaming to it.
    if snapshot.status.state == tandem_ha::State::Active
        && snapshot.config.replication != tandem_ha::config::ReplicationMode::Scheduled
    {
        gauge(
            "tandem_replication_standby_behind_entries",
            "Entries the following Standby does not hold yet.",
            &one((head - holds).max(0).to_string()),
        );
    }
    if !follower.source.is_empty() {
        let lag = |value: Option<i64>| (value.unwrap_or(-1) as f64 / 1000.0).to_string();
        gauge(
            "tandem_replication_follower_connected",
            "1 while this Standby's replication stream is open.",
            &one(u8::from(follower.connected).to_string()),
        );
        gauge(
            "tandem_replication_follower_position_seq",
            "Sequence number of the newest entry this Standby holds.",
            &one(follower.position_seq.to_string()),
        );
        gauge(
            "tandem_replication_follower_applied_entries",
            "Entries applied by the stream since the node started (a counter).",
            &one(follower.applied_entries.to_string()),
        );
        gauge(
            "tandem_replication_lag_seconds",
            "Commit on the Primary to commit here: last batch, and p99 and max of recent batches (-0.001: none yet).",
            &[
                ("{window=\"last\"}".into(), lag(follower.last_lag_ms)),
                ("{window=\"p99\"}".into(), lag(follower.recent_lag_p99_ms)),
                ("{window=\"max\"}".into(), lag(follower.recent_lag_max_ms)),
            ],
        );
        gauge(
            "tandem_replication_behind",
            "1 while the stream is down or the last lag exceeds the configured lag bound.",
            &one(
                u8::from(crate::control::behind(&follower, snapshot.config.lag_bound).is_some())
                    .to_string(),
            ),
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

/// A Prometheus label value: backslash, quote and newline escaped (node names are an
/// operator's text).
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
