//! `/api/v2/ping`, `/api/v2/settings` and `/api/v2/events`.

use super::PageQuery;
use crate::auth::Actor;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tandem_store::events::{self, Event};
use tandem_store::settings::{self, Setting};
use tandem_store::{Page, PageRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(list_settings))
        .route(
            "/settings/{key}",
            get(read_setting).put(put_setting).delete(delete_setting),
        )
        .route("/events", get(list_events))
}

pub async fn ping(State(state): State<AppState>) -> Json<Value> {
    let status = state.node_status();
    Json(json!({
        "status": "OK",
        "node": state.node_name,
        "version": env!("CARGO_PKG_VERSION"),
        "mode": status.mode,
        "state": status.state,
    }))
}

async fn list_settings(State(state): State<AppState>) -> ApiResult<Json<Vec<Setting>>> {
    Ok(Json(state.db.read(settings::list).await?))
}

async fn read_setting(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Json<Setting>> {
    Ok(Json(
        state.db.read(move |conn| settings::get(conn, &key)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingValue {
    value: Value,
}

async fn put_setting(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(key): ApiPath<String>,
    ApiJson(input): ApiJson<SettingValue>,
) -> ApiResult<Json<Setting>> {
    let setting = state
        .db
        .write(move |conn| settings::put(conn, &actor, &key, &input.value))
        .await?;
    Ok(Json(setting))
}

async fn delete_setting(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .db
        .write(move |conn| settings::delete(conn, &actor, &key))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Event>>> {
    let request = PageRequest::from(query);
    Ok(Json(
        state
            .db
            .read(move |conn| events::list(conn, &request))
            .await?,
    ))
}
