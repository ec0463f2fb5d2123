//! `/api/v2/apps`: the app catalogue, with the app file uploaded and downloaded as raw bytes
//! (`PUT /api/v2/apps/{id}/file`, e.g. `curl --data-binary @app.ipa`).

use super::crud::{self, store_resource};
use crate::auth::Actor;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use tandem_store::apps::{self, App, AppInput};

store_resource!(Apps, tandem_store::apps, App, AppInput);

/// Largest app file accepted. Enterprise IPAs and APKs run to a few hundred megabytes.
pub const APP_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    crud::routes("/apps", Apps).route("/apps/{id}/file", put(upload).get(download))
}

async fn upload(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiPath(id): ApiPath<i64>,
    body: Body,
) -> ApiResult<Json<App>> {
    // Check the app exists before accepting possibly hundreds of megabytes.
    state.db.read(move |conn| apps::get(conn, id)).await?;
    let mut writer = state.files.begin(APP_FILE_BYTES_MAX).await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::bad_request(format!("the upload was interrupted: {error}"))
        })?;
        if let Ok(chunk) = frame.into_data() {
            writer.write(&chunk).await?;
        }
    }
    let stored = writer.finish().await?;
    if stored.size_bytes == 0 {
        return Err(ApiError::invalid_field(
            "file",
            "",
            "must not be empty; send the app file as the request body",
        ));
    }
    let app = state
        .db
        .write(move |conn| {
            apps::attach_file(conn, &actor, id, &stored.sha256, stored.size_bytes as i64)
        })
        .await?;
    Ok(Json(app))
}

async fn download(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> ApiResult<Response> {
    let app = state.db.read(move |conn| apps::get(conn, id)).await?;
    let Some(file) = app.file else {
        return Err(ApiError::not_found(format!(
            "app {id} has no file yet; upload one with PUT /api/v2/apps/{id}/file"
        )));
    };
    let path = state.files.path_of(&file.sha256);
    let handle = tokio::fs::File::open(&path)
        .await
        .map_err(|error| ApiError::from(tandem_store::StoreError::io(&path, error)))?;
    let stream = tokio_util::io::ReaderStream::new(handle);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, file.size_bytes.to_string()),
            (header::ETAG, format!("\"{}\"", file.sha256)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
