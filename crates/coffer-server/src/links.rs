//! Capability URLs for file downloads: `https://HOST/files/{uid}/{expiry}/{signature}`.
//!
//! The signature is HMAC-SHA-256 under a secret kept in the database (so every instance can
//! check links made by any other). A link needs no KSM headers, as the SDKs fetch it with a
//! plain GET; it expires after the configured time (15 minutes by default).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_crypto::{ct_eq, encode_url, hmac_sha256};
use coffer_proto::ErrorCode;
use tokio_util::io::ReaderStream;

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

fn signature(secret: &[u8], file_uid: &str, expires: i64) -> String {
    encode_url(&hmac_sha256(
        secret,
        format!("coffer-download\n{file_uid}\n{expires}").as_bytes(),
    ))
}

/// A fresh download URL for a complete file.
pub fn download_url(state: &AppState, file_uid: &str) -> String {
    let expires = now_ms() / 1000 + state.config.download_ttl.as_secs() as i64;
    format!(
        "{}/files/{file_uid}/{expires}/{}",
        state.config.public_base_url(),
        signature(&state.link_secret, file_uid, expires)
    )
}

/// A streamed `200` answer with a file's encrypted content.
pub async fn content_response(
    state: &AppState,
    file: &coffer_store::FileRow,
) -> ApiResult<Response> {
    let content = state
        .files
        .open_object(&file.uid)
        .await
        .map_err(|e| ApiError::internal(format!("file {} content missing: {e}", file.uid)))?;
    let mut response = (
        StatusCode::OK,
        Body::from_stream(ReaderStream::new(content)),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size as u64));
    Ok(response)
}

/// `GET /files/{uid}/{expires}/{signature}`: the raw encrypted bytes.
pub async fn download(
    State(state): State<AppState>,
    Path((uid, expires, sig)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let invalid = || {
        ApiError::new(
            ErrorCode::NotFound,
            "This download link is invalid or has expired; fetch the record again for a new one.",
        )
    };
    let expires: i64 = expires.parse().map_err(|_| invalid())?;
    if !ct_eq(
        signature(&state.link_secret, &uid, expires).as_bytes(),
        sig.as_bytes(),
    ) || expires < now_ms() / 1000
    {
        return Err(invalid());
    }
    let file = state.store.file(&uid).await.map_err(|_| invalid())?;
    let mut response = content_response(&state, &file).await?;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
