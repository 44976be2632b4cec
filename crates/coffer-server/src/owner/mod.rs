//! The owner API (`/api/owner/v1/…`): accounts, folders, records, files, applications,
//! shares, client devices and audit events. Every key and secret value is ciphertext made on
//! the owner's machine; the server checks ownership, shapes and sizes, never content.

mod account;
mod apps;
pub(crate) mod vault;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use coffer_crypto::{decode_lenient, is_uid, sha256};
use coffer_proto::ErrorCode;
use coffer_store::{NewAuditEvent, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

/// The owner API routes (mounted under `/api/owner/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/info", get(account::info))
        .route("/register", post(account::register))
        .route("/prelogin", post(account::prelogin))
        .route("/login", post(account::login))
        .route("/logout", post(account::logout))
        .route("/account", get(account::account))
        .route(
            "/folders",
            get(vault::list_folders).post(vault::create_folder),
        )
        .route(
            "/records",
            get(vault::list_records).post(vault::create_record),
        )
        .route(
            "/records/{uid}",
            get(vault::get_record).put(vault::update_record),
        )
        .route("/records/{uid}/delete", post(vault::delete_record))
        .route("/records/{uid}/history", get(vault::record_history))
        .route("/records/{uid}/restore", post(vault::restore_record))
        .route("/folders/{uid}/rename", post(vault::rename_folder))
        .route("/folders/{uid}/delete", post(vault::delete_folder))
        .route("/records/{uid}/files", post(vault::attach_file))
        .route("/uploads/{token}", put(vault::upload))
        .route("/files/{uid}/content", get(vault::download))
        .route("/apps", get(apps::list_apps).post(apps::create_app))
        .route("/apps/{uid}/shares", put(apps::put_share))
        .route("/apps/{uid}/shares/remove", post(apps::remove_share))
        .route(
            "/apps/{uid}/clients",
            get(apps::list_clients).post(apps::add_client),
        )
        .route("/apps/{uid}/clients/remove", post(apps::remove_client))
        .route("/audit", get(apps::list_audit))
}

/// An authenticated owner (from `Authorization: Bearer <session token>`).
pub struct Owner {
    /// Owner UID.
    pub uid: String,
    /// Source address, for the audit trail.
    pub ip: Option<String>,
}

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let unauthorized = || {
            ApiError::new(
                ErrorCode::Unauthorized,
                "Not logged in or the session expired: run `coffer vault login`.",
            )
        };
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        let owner = match state
            .store
            .session_owner(&sha256(token.trim().as_bytes()), now_ms())
            .await
        {
            Ok(uid) => uid,
            Err(StoreError::NotFound) => return Err(unauthorized()),
            Err(err) => return Err(err.into()),
        };
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(Owner { uid: owner, ip })
    }
}

impl Owner {
    /// A record of this owner (`not_found` for other owners' records, as for missing ones).
    pub async fn record(&self, state: &AppState, uid: &str) -> ApiResult<coffer_store::RecordRow> {
        owned(
            state.store.record(uid).await,
            "record",
            |r| &r.owner_uid,
            self,
        )
    }

    /// A folder of this owner.
    pub async fn folder(&self, state: &AppState, uid: &str) -> ApiResult<coffer_store::FolderRow> {
        owned(
            state.store.folder(uid).await,
            "folder",
            |f| &f.owner_uid,
            self,
        )
    }

    /// An application of this owner.
    pub async fn app(&self, state: &AppState, uid: &str) -> ApiResult<coffer_store::AppRow> {
        owned(
            state.store.app(uid).await,
            "application",
            |a| &a.owner_uid,
            self,
        )
    }

    /// Writes an audit event for an action of this owner.
    pub async fn audit(&self, state: &AppState, action: &str, target: &str) -> ApiResult<()> {
        state
            .audit
            .write(NewAuditEvent {
                at: now_ms(),
                owner_uid: Some(self.uid.clone()),
                actor: format!("owner:{}", self.uid),
                action: action.to_owned(),
                target: Some(target.to_owned()),
                ip: self.ip.clone(),
                detail: None,
            })
            .await
            .map_err(Into::into)
    }
}

/// Checks a client-made UID.
pub fn check_uid(field: &str, uid: &str) -> ApiResult<()> {
    if is_uid(uid) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be a UID: 22 characters of URL-safe base64."
        )))
    }
}

/// Decodes a base64 ciphertext field, bounded in size.
pub fn ciphertext(field: &str, text: &str, min: usize, max: usize) -> ApiResult<Vec<u8>> {
    let bytes = decode_lenient(text)
        .map_err(|_| ApiError::bad_request(format!("{field} is not valid base64.")))?;
    if bytes.len() < min || bytes.len() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be between {min} and {max} bytes of ciphertext."
        )));
    }
    Ok(bytes)
}

/// `not_found` for objects the owner does not own (the same answer as for missing ones).
pub fn not_found(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("No such {what} in your vault."),
    )
}

/// Maps a store lookup to "not found in your vault" unless the row belongs to `owner`.
pub fn owned<T>(
    result: Result<T, StoreError>,
    what: &str,
    owner_of: impl Fn(&T) -> &str,
    owner: &Owner,
) -> ApiResult<T> {
    match result {
        Ok(row) if owner_of(&row) == owner.uid => Ok(row),
        Ok(_) | Err(StoreError::NotFound) => Err(not_found(what)),
        Err(err) => Err(err.into()),
    }
}

/// A JSON body whose rejections use the protocol's error body.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> ApiResult<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "Invalid request body: {}",
                rejection.body_text()
            ))),
        }
    }
}
