//! Device endpoints (`/device/v1`, JSON): enrollment with a registration PIN, check-in
//! authenticated by the identity certificate issued at enrollment, command results, and
//! fetching an assigned policy's payload.

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::{AppState, ConnectionInfo};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use tandem_store::devices::{
    self, CheckIn, CheckInReply, CommandResult, Device, DeviceCommand, Enrollment,
};
use tandem_store::policies::{self, Policy};

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/enroll", post(enroll))
        .route("/checkin", post(check_in))
        .route("/commands/{id}/result", post(command_result))
        .route("/policies/{id}", get(policy))
        .layer(middleware::from_fn_with_state(state, devices_admitted))
}

/// How much of a refused device request's body is read before the refusal is sent. Over HTTP/2
/// an answer sent while the client is still sending ends the stream with a reset, which clients
/// (curl, Apple's) report as a stream error instead of the 503 that says where to go; device
/// bodies are small JSON documents, so reading this much first costs nothing, and a larger body
/// still gets the reset instead of tying the connection up.
const REFUSED_BODY_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// Device traffic is served only by an Active node, and only on connections accepted while the
/// device gate was open.
async fn devices_admitted(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match refusal(&state, &connection) {
        None => Ok(next.run(request).await),
        Some(refused) => {
            // The outcome of the read does not matter: the refusal is the answer either way.
            let _ = axum::body::to_bytes(request.into_body(), REFUSED_BODY_DRAIN_BYTES_MAX).await;
            Err(refused)
        }
    }
}

/// Why this node does not serve a device request on this connection, if it does not.
fn refusal(state: &AppState, connection: &ConnectionInfo) -> Option<ApiError> {
    let status = state.node_status();
    if !status.accepts_writes() {
        return Some(ApiError::unavailable(
            "not_active",
            format!(
                "node {} is {}; devices are served by the Active node{}",
                state.node_name,
                status.state,
                state.where_to_go()
            ),
        ));
    }
    if !connection.devices_allowed {
        return Some(ApiError::unavailable(
            "client_connections_disabled",
            format!(
                "new device connections are disabled on node {} \
                 (`tandem failover client-connection enable` reopens them)",
                state.node_name
            ),
        ));
    }
    None
}

fn device_fingerprint(connection: &ConnectionInfo) -> ApiResult<String> {
    connection.client_certificate_sha256.clone().ok_or_else(|| {
        ApiError::unauthorized(
            "present the device identity certificate issued at enrollment as the TLS client certificate",
        )
    })
}

/// The identity handed to a device once, over TLS, at enrollment.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedIdentity {
    certificate_pem: String,
    private_key_pem: String,
    ca_certificate_pem: String,
    not_after: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Enrolled {
    device: Device,
    identity: IssuedIdentity,
}

async fn enroll(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    ApiJson(input): ApiJson<Enrollment>,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
    devices::validate_enrollment(&input)?;
    let now = time::OffsetDateTime::now_utc();
    let pin = input.pin.clone();
    let uuid = state
        .db
        .read(move |conn| devices::pending_enrollment(conn, &pin, now))
        .await?;
    // Key generation and signing cost a fraction of a millisecond: keep them off the reactor
    // and out of the writer's transaction.
    let issuer = state.clone();
    let identity = tokio::task::spawn_blocking(move || {
        issuer
            .identity
            .device_ca()
            .issue_device_identity(&uuid, now)
    })
    .await
    .map_err(|error| ApiError::bad_request(format!("identity issuance failed: {error}")))?
    .map_err(tandem_store::StoreError::from)?;
    let ip = connection.remote.ip().to_string();
    let issued = identity.clone();
    let device = state
        .db
        .write(move |conn| devices::complete_enrollment(conn, &input, &issued, &ip, now))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            device,
            identity: IssuedIdentity {
                certificate_pem: identity.issued.certificate_pem,
                private_key_pem: identity.issued.private_key_pem,
                ca_certificate_pem: state.identity.device_ca().certificate_pem().to_owned(),
                not_after: tandem_store::common::timestamp(identity.not_after),
            },
        }),
    ))
}

async fn check_in(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    ApiJson(input): ApiJson<CheckIn>,
) -> ApiResult<Json<CheckInReply>> {
    let fingerprint = device_fingerprint(&connection)?;
    devices::validate_checkin(&input)?;
    let ip = connection.remote.ip().to_string();
    let reply = state
        .db
        .write(move |conn| devices::check_in(conn, &fingerprint, &input, &ip))
        .await?;
    Ok(Json(reply))
}

async fn command_result(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<CommandResult>,
) -> ApiResult<Json<DeviceCommand>> {
    let fingerprint = device_fingerprint(&connection)?;
    let command = state
        .db
        .write(move |conn| devices::record_command_result(conn, &fingerprint, id, &input))
        .await?;
    Ok(Json(command))
}

async fn policy(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Policy>> {
    let fingerprint = device_fingerprint(&connection)?;
    let policy = state
        .db
        .read(move |conn| {
            let device = devices::authenticate(conn, &fingerprint)?;
            policies::for_device(conn, device.id, id)
        })
        .await?;
    Ok(Json(policy))
}
