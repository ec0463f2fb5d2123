//! `/api/v2/devices`: register, list, count, read, update, delete, actions and commands.

use super::PageQuery;
use crate::auth::Actor;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tandem_store::devices::{
    self, CommandKind, Device, DeviceCommand, DeviceUpdate, NewDevice, RegisteredDevice,
};
use tandem_store::{Page, PageRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list).post(register))
        .route("/devices/count", get(count))
        .route("/devices/{uuid}", get(read).put(update).delete(delete))
        .route("/devices/{uuid}/actions/{action}", post(action))
        .route("/devices/{uuid}/commands", get(commands))
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Device>>> {
    let request = PageRequest::from(query);
    Ok(Json(
        state
            .db
            .read(move |conn| devices::list(conn, &request))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountQuery {
    query: Option<String>,
}

async fn count(
    State(state): State<AppState>,
    ApiQuery(CountQuery { query }): ApiQuery<CountQuery>,
) -> ApiResult<Json<Value>> {
    let count = state
        .db
        .read(move |conn| devices::count(conn, query.as_deref()))
        .await?;
    Ok(Json(json!({ "count": count })))
}

async fn register(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(input): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<RegisteredDevice>)> {
    let now = time::OffsetDateTime::now_utc();
    let registered = state
        .db
        .write(move |conn| devices::register(conn, &actor, &input, now))
        .await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn read(
    State(state): State<AppState>,
    ApiPath(uuid): ApiPath<String>,
) -> ApiResult<Json<Device>> {
    Ok(Json(
        state.db.read(move |conn| devices::get(conn, &uuid)).await?,
    ))
}

async fn update(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(uuid): ApiPath<String>,
    ApiJson(input): ApiJson<DeviceUpdate>,
) -> ApiResult<Json<Device>> {
    let device = state
        .db
        .write(move |conn| devices::update(conn, &actor, &uuid, &input))
        .await?;
    Ok(Json(device))
}

async fn delete(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(uuid): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .db
        .write(move |conn| devices::delete(conn, &actor, &uuid))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn action(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath((uuid, action)): ApiPath<(String, String)>,
) -> ApiResult<(StatusCode, Json<DeviceCommand>)> {
    let command = match action.as_str() {
        "retire" => CommandKind::Retire,
        "wipe" => CommandKind::Wipe,
        "lock" => CommandKind::Lock,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown device action {other:?}; use retire, wipe or lock"
            )));
        }
    };
    let queued = state
        .db
        .write(move |conn| devices::queue_action(conn, &actor, &uuid, command))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

async fn commands(
    State(state): State<AppState>,
    ApiPath(uuid): ApiPath<String>,
) -> ApiResult<Json<Vec<DeviceCommand>>> {
    Ok(Json(
        state
            .db
            .read(move |conn| devices::commands(conn, &uuid))
            .await?,
    ))
}
