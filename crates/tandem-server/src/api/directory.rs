//! `/api/v2/users` and `/api/v2/labels` (with applying labels to devices).

use super::crud::{self, store_resource};
use crate::auth::Actor;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tandem_store::labels::{self, Label, LabelInput};
use tandem_store::users::{User, UserInput};

store_resource!(Users, tandem_store::users, User, UserInput);
store_resource!(Labels, tandem_store::labels, Label, LabelInput);

pub fn routes() -> Router<AppState> {
    crud::routes("/users", Users)
        .merge(crud::routes("/labels", Labels))
        .route("/labels/{id}/devices", post(apply_label))
        .route("/labels/{id}/devices/{uuid}", delete(remove_label))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyLabel {
    device_uuids: Vec<String>,
}

async fn apply_label(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ApplyLabel>,
) -> ApiResult<Json<Label>> {
    let label = state
        .db
        .write(move |conn| labels::apply(conn, &actor, id, &input.device_uuids))
        .await?;
    Ok(Json(label))
}

async fn remove_label(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath((id, uuid)): ApiPath<(i64, String)>,
) -> ApiResult<Json<Label>> {
    let label = state
        .db
        .write(move |conn| labels::remove(conn, &actor, id, &uuid))
        .await?;
    Ok(Json(label))
}
