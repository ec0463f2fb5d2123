//! One set of create/list/read/update/delete handlers for every resource with an integer id
//! (users, labels, apps, policies, configurations). Each resource only says which store
//! functions to call.

use super::PageQuery;
use crate::auth::Actor;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use rusqlite::Connection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tandem_store::{Page, PageRequest, StoreResult};

pub trait Resource: Copy + Send + Sync + 'static {
    type Item: Serialize + Send + 'static;
    type Input: DeserializeOwned + Send + 'static;

    fn list(self, conn: &Connection, request: &PageRequest) -> StoreResult<Page<Self::Item>>;
    fn create(self, conn: &Connection, actor: &str, input: &Self::Input)
    -> StoreResult<Self::Item>;
    fn get(self, conn: &Connection, id: i64) -> StoreResult<Self::Item>;
    fn update(
        self,
        conn: &Connection,
        actor: &str,
        id: i64,
        input: &Self::Input,
    ) -> StoreResult<Self::Item>;
    fn delete(self, conn: &Connection, actor: &str, id: i64) -> StoreResult<()>;
}

/// `GET|POST {base}` and `GET|PUT|DELETE {base}/{id}`.
pub fn routes<R: Resource>(base: &str, resource: R) -> Router<AppState> {
    Router::new()
        .route(
            base,
            get(move |state, query| list(resource, state, query))
                .post(move |state, actor, input| create(resource, state, actor, input)),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |state, id| read(resource, state, id))
                .put(move |state, actor, id, input| update(resource, state, actor, id, input))
                .delete(move |state, actor, id| delete(resource, state, actor, id)),
        )
}

async fn list<R: Resource>(
    resource: R,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<R::Item>>> {
    let request = PageRequest::from(query);
    Ok(Json(
        state
            .db
            .read(move |conn| resource.list(conn, &request))
            .await?,
    ))
}

async fn create<R: Resource>(
    resource: R,
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(input): ApiJson<R::Input>,
) -> ApiResult<(StatusCode, Json<R::Item>)> {
    let item = state
        .db
        .write(move |conn| resource.create(conn, &actor, &input))
        .await?;
    Ok((StatusCode::CREATED, Json(item)))
}

async fn read<R: Resource>(
    resource: R,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<R::Item>> {
    Ok(Json(
        state.db.read(move |conn| resource.get(conn, id)).await?,
    ))
}

async fn update<R: Resource>(
    resource: R,
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<R::Input>,
) -> ApiResult<Json<R::Item>> {
    let item = state
        .db
        .write(move |conn| resource.update(conn, &actor, id, &input))
        .await?;
    Ok(Json(item))
}

async fn delete<R: Resource>(
    resource: R,
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state
        .db
        .write(move |conn| resource.delete(conn, &actor, id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Implements [`Resource`] for a unit struct over a store module with the usual five functions.
macro_rules! store_resource {
    ($name:ident, $module:path, $item:ty, $input:ty) => {
        #[derive(Clone, Copy)]
        pub struct $name;

        impl $crate::api::crud::Resource for $name {
            type Item = $item;
            type Input = $input;

            fn list(
                self,
                conn: &rusqlite::Connection,
                request: &tandem_store::PageRequest,
            ) -> tandem_store::StoreResult<tandem_store::Page<$item>> {
                use $module as module;
                module::list(conn, request)
            }
            fn create(
                self,
                conn: &rusqlite::Connection,
                actor: &str,
                input: &$input,
            ) -> tandem_store::StoreResult<$item> {
                use $module as module;
                module::create(conn, actor, input)
            }
            fn get(self, conn: &rusqlite::Connection, id: i64) -> tandem_store::StoreResult<$item> {
                use $module as module;
                module::get(conn, id)
            }
            fn update(
                self,
                conn: &rusqlite::Connection,
                actor: &str,
                id: i64,
                input: &$input,
            ) -> tandem_store::StoreResult<$item> {
                use $module as module;
                module::update(conn, actor, id, input)
            }
            fn delete(
                self,
                conn: &rusqlite::Connection,
                actor: &str,
                id: i64,
            ) -> tandem_store::StoreResult<()> {
                use $module as module;
                module::delete(conn, actor, id)
            }
        }
    };
}
pub(crate) use store_resource;
