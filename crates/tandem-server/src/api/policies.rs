//! `/api/v2/policies` and `/api/v2/configurations`: the same shape, told apart by kind, each
//! assignable to labels.

use super::crud::{self, Resource};
use crate::auth::Actor;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use rusqlite::Connection;
use serde::Deserialize;
use tandem_store::policies::{self, Policy, PolicyInput, PolicyKind};
use tandem_store::{Page, PageRequest, StoreResult};

#[derive(Clone, Copy)]
struct Policies(PolicyKind);

impl Resource for Policies {
    type Item = Policy;
    type Input = PolicyInput;

    fn list(self, conn: &Connection, request: &PageRequest) -> StoreResult<Page<Policy>> {
        policies::list(conn, self.0, request)
    }
    fn create(self, conn: &Connection, actor: &str, input: &PolicyInput) -> StoreResult<Policy> {
        policies::create(conn, actor, self.0, input)
    }
    fn get(self, conn: &Connection, id: i64) -> StoreResult<Policy> {
        policies::get(conn, self.0, id)
    }
    fn update(
        self,
        conn: &Connection,
        actor: &str,
        id: i64,
        input: &PolicyInput,
    ) -> StoreResult<Policy> {
        policies::update(conn, actor, self.0, id, input)
    }
    fn delete(self, conn: &Connection, actor: &str, id: i64) -> StoreResult<()> {
        policies::delete(conn, actor, self.0, id)
    }
}

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for (base, kind) in [
        ("/policies", PolicyKind::Policy),
        ("/configurations", PolicyKind::Configuration),
    ] {
        router = router
            .merge(crud::routes(base, Policies(kind)))
            .route(
                &format!("{base}/{{id}}/labels"),
                post(move |state, actor, id, input| assign(kind, state, actor, id, input)),
            )
            .route(
                &format!("{base}/{{id}}/labels/{{label_id}}"),
                delete(move |state, actor, ids| unassign(kind, state, actor, ids)),
            );
    }
    router
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AssignLabels {
    label_ids: Vec<i64>,
}

async fn assign(
    kind: PolicyKind,
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<AssignLabels>,
) -> ApiResult<Json<Policy>> {
    let policy = state
        .db
        .write(move |conn| policies::assign_labels(conn, &actor, kind, id, &input.label_ids))
        .await?;
    Ok(Json(policy))
}

async fn unassign(
    kind: PolicyKind,
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath((id, label_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Policy>> {
    let policy = state
        .db
        .write(move |conn| policies::unassign_label(conn, &actor, kind, id, label_id))
        .await?;
    Ok(Json(policy))
}
