//! The KSM API: `POST /api/rest/sm/v1/{endpoint}` (PROTOCOL.md §2, §5).
//!
//! Each request: recover the transmission key (ECIES with the server key), open the body,
//! identify the device by `clientId`, verify its signature, apply the device rules (binding,
//! expiry, IP lock), run the endpoint, encrypt the answer with the same transmission key.

mod auth;
mod read;
pub(crate) mod write;

pub use write::expire_transactions;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_crypto::{SymmetricKey, gcm_seal};
use coffer_proto::ErrorCode;
use coffer_store::NewAuditEvent;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

pub use auth::Caller;

/// What an endpoint answers: an encrypted JSON object or an empty body.
pub enum Reply {
    /// `GCM(TK, json)`.
    Json(Vec<u8>),
    /// 0 bytes.
    Empty,
}

impl Reply {
    /// Serialises a value as the encrypted JSON reply.
    pub fn json<T: Serialize>(value: &T) -> ApiResult<Self> {
        serde_json::to_vec(value)
            .map(Reply::Json)
            .map_err(ApiError::internal)
    }
}

/// The single entry point of the KSM API.
pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match axum::body::to_bytes(body, state.config.max_request_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "The request body is larger than this server accepts ({} bytes) or was cut off.",
                    state.config.max_request_bytes
                ),
            )
            .into_response();
        }
    };
    if !coffer_proto::ksm::ENDPOINTS.contains(&endpoint.as_str()) {
        return ApiError::new(
            ErrorCode::NotFound,
            format!("Unknown endpoint {endpoint:?}: this server speaks KSM protocol v1."),
        )
        .into_response();
    }
    let ip = peer.ip().to_string();
    let caller = match auth::authenticate(&state, &endpoint, &headers, &body, &ip).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let throttle_key = format!("ksm:{}:{endpoint}", caller.device.client_id);
    if let Err(err) =
        crate::throttle::check(&state, state.config.client_rate_limit, &throttle_key).await
    {
        return err.into_response();
    }
    let result = dispatch(&state, &endpoint, &caller).await;
    match result {
        Ok(reply) => {
            state.audit.queue(NewAuditEvent {
                at: now_ms(),
                owner_uid: Some(caller.owner_uid.clone()),
                actor: format!("client:{}", caller.device.client_id),
                action: format!("ksm.{endpoint}"),
                target: Some(caller.device.app_uid.clone()),
                ip: Some(ip),
                detail: None,
            });
            encrypt_reply(&caller.transmission_key, reply)
        }
        Err(err) => err.into_response(),
    }
}

async fn dispatch(state: &AppState, endpoint: &str, caller: &Caller) -> ApiResult<Reply> {
    match endpoint {
        "get_secret" => read::get_secret(state, caller).await,
        "get_folders" => read::get_folders(state, caller).await,
        "update_secret" => write::update_secret(state, caller).await,
        "finalize_secret_update" => write::complete_transaction(state, caller, true).await,
        "rollback_secret_update" => write::complete_transaction(state, caller, false).await,
        "create_secret" => write::create_secret(state, caller).await,
        "delete_secret" => write::delete_secret(state, caller).await,
        "create_folder" => write::create_folder(state, caller).await,
        "update_folder" => write::update_folder(state, caller).await,
        "delete_folder" => write::delete_folder(state, caller).await,
        "add_file" => write::add_file(state, caller).await,
        other => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("Unknown endpoint {other:?}."),
        )),
    }
}

fn encrypt_reply(key: &SymmetricKey, reply: Reply) -> Response {
    let body = match reply {
        Reply::Json(json) => gcm_seal(key, &json),
        Reply::Empty => Vec::new(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `POST /api/rest/sm/v1/upload/{token}`: the multipart upload that follows `add_file`
/// (PROTOCOL.md §5.10). The token in the URL is the capability; no KSM headers are sent.
pub async fn upload(
    State(state): State<AppState>,
    Path(token): Path<String>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let result: ApiResult<()> = async {
        let mut multipart = multipart.map_err(|e| {
            ApiError::bad_request(format!(
                "The upload must be multipart/form-data: {}",
                e.body_text()
            ))
        })?;
        loop {
            let field = multipart
                .next_field()
                .await
                .map_err(|e| ApiError::bad_request(format!("Malformed multipart upload: {e}")))?
                .ok_or_else(|| ApiError::bad_request("The upload has no part named \"file\"."))?;
            if field.name() == Some("file") {
                let upload =
                    crate::owner::vault::receive_upload(&state, &token, Box::pin(field)).await?;
                let owner_uid = state.store.record(&upload.file.record_uid).await?.owner_uid;
                state
                    .audit
                    .write(NewAuditEvent {
                        at: now_ms(),
                        owner_uid: Some(owner_uid),
                        actor: upload.actor.clone(),
                        action: "file.upload".into(),
                        target: Some(upload.file.uid.clone()),
                        ip: None,
                        detail: None,
                    })
                    .await?;
                return Ok(());
            }
        }
    }
    .await;
    match result {
        Ok(()) => StatusCode::from_u16(write::UPLOAD_SUCCESS)
            .unwrap_or(StatusCode::NO_CONTENT)
            .into_response(),
        Err(err) => err.into_response(),
    }
}
