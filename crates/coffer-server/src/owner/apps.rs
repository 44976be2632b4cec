//! Applications, shares, client devices and the audit log.

use axum::Json;
use axum::extract::{Path, Query, State};
use coffer_crypto::encode_std;
use coffer_proto::ErrorCode;
use coffer_proto::owner::{
    AddClientRequest, App, AuditEvent, Client, CreateAppRequest, Share, ShareKind, ShareRequest,
    UidResponse,
};
use coffer_store::{AppRow, AuditFilter, DeviceRow, ShareRow, StoreError};
use serde::Deserialize;

use super::{Body, Owner, check_uid, ciphertext, not_found, owned};
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

fn share_out(row: ShareRow) -> Share {
    Share {
        target_uid: row.target_uid,
        kind: match row.kind {
            coffer_store::ShareKind::Folder => ShareKind::Folder,
            coffer_store::ShareKind::Record => ShareKind::Record,
        },
        key: encode_std(&row.key),
        editable: row.editable,
    }
}

/// `GET /apps`.
pub async fn list_apps(State(state): State<AppState>, owner: Owner) -> ApiResult<Json<Vec<App>>> {
    let mut out = Vec::new();
    for row in state.store.apps_of_owner(&owner.uid).await? {
        let shares = state.store.shares_of_app(&row.uid).await?;
        out.push(App {
            uid: row.uid,
            key: encode_std(&row.key),
            data: encode_std(&row.data),
            created_at: row.created_at,
            shares: shares.into_iter().map(share_out).collect(),
        });
    }
    Ok(Json(out))
}

/// `POST /apps`.
pub async fn create_app(
    State(state): State<AppState>,
    owner: Owner,
    Body(req): Body<CreateAppRequest>,
) -> ApiResult<Json<UidResponse>> {
    check_uid("uid", &req.uid)?;
    let row = AppRow {
        uid: req.uid.clone(),
        owner_uid: owner.uid.clone(),
        key: ciphertext("key", &req.key, 60, 60)?,
        data: ciphertext("data", &req.data, 29, 64 * 1024)?,
        created_at: now_ms(),
    };
    state
        .store
        .create_app(&row)
        .await
        .map_err(|err| match err {
            StoreError::Conflict => {
                ApiError::new(ErrorCode::Conflict, "An application with that UID exists.")
            }
            other => other.into(),
        })?;
    owner.audit(&state, "app.create", &row.uid).await?;
    Ok(Json(UidResponse { uid: row.uid }))
}

/// `PUT /apps/{uid}/shares`: share a shared folder or a record, or change the permission.
pub async fn put_share(
    State(state): State<AppState>,
    owner: Owner,
    Path(app_uid): Path<String>,
    Body(req): Body<ShareRequest>,
) -> ApiResult<Json<Share>> {
    let app = owner.app(&state, &app_uid).await?;
    let key = ciphertext("key", &req.key, 60, 60)?;
    let kind = match state.store.folder(&req.target_uid).await {
        Ok(folder) if folder.owner_uid == owner.uid => {
            if folder.parent_uid.is_some() {
                return Err(ApiError::bad_request(
                    "Only shared folders (top-level folders) can be shared with an application; \
                     share the top-level folder or individual records.",
                ));
            }
            coffer_store::ShareKind::Folder
        }
        Ok(_) => return Err(not_found("folder or record")),
        Err(StoreError::NotFound) => {
            owned(
                state.store.record(&req.target_uid).await,
                "folder or record",
                |r| &r.owner_uid,
                &owner,
            )?;
            coffer_store::ShareKind::Record
        }
        Err(err) => return Err(err.into()),
    };
    let row = ShareRow {
        app_uid: app.uid.clone(),
        target_uid: req.target_uid.clone(),
        kind,
        key,
        editable: req.editable,
    };
    state.store.put_share(&row).await?;
    owner
        .audit(
            &state,
            if req.editable {
                "share.editable"
            } else {
                "share.read_only"
            },
            &req.target_uid,
        )
        .await?;
    Ok(Json(share_out(row)))
}

/// Body of `POST /apps/{uid}/shares/remove`.
#[derive(Deserialize)]
pub struct RemoveShare {
    target_uid: String,
}

/// `POST /apps/{uid}/shares/remove`.
pub async fn remove_share(
    State(state): State<AppState>,
    owner: Owner,
    Path(app_uid): Path<String>,
    Body(req): Body<RemoveShare>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = owner.app(&state, &app_uid).await?;
    match state.store.delete_share(&app.uid, &req.target_uid).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(not_found("share")),
        Err(err) => return Err(err.into()),
    }
    owner.audit(&state, "share.revoke", &req.target_uid).await?;
    Ok(Json(serde_json::json!({})))
}

fn client_out(row: DeviceRow) -> Client {
    Client {
        client_id: row.client_id,
        name: encode_std(&row.name),
        created_at: row.created_at,
        first_access_expires_at: row.first_access_expires_at,
        ip_lock: row.ip_lock,
        bound_at: row.bound_at,
        bound_ip: row.bound_ip,
        last_access_at: row.last_access_at,
    }
}

/// `GET /apps/{uid}/clients`.
pub async fn list_clients(
    State(state): State<AppState>,
    owner: Owner,
    Path(app_uid): Path<String>,
) -> ApiResult<Json<Vec<Client>>> {
    let app = owner.app(&state, &app_uid).await?;
    let rows = state.store.devices_of_app(&app.uid).await?;
    Ok(Json(rows.into_iter().map(client_out).collect()))
}

/// `POST /apps/{uid}/clients`: register a one-time token's client id.
pub async fn add_client(
    State(state): State<AppState>,
    owner: Owner,
    Path(app_uid): Path<String>,
    Body(req): Body<AddClientRequest>,
) -> ApiResult<Json<Client>> {
    let app = owner.app(&state, &app_uid).await?;
    let client_id_bytes = ciphertext("client_id", &req.client_id, 64, 64)?;
    if coffer_crypto::encode_std(&client_id_bytes) != req.client_id {
        return Err(ApiError::bad_request(
            "client_id must be standard padded base64 of 64 bytes.",
        ));
    }
    let now = now_ms();
    if let Some(expires) = req.first_access_expires_at
        && expires <= now
    {
        return Err(ApiError::bad_request(
            "first_access_expires_at is in the past.",
        ));
    }
    let row = DeviceRow {
        client_id: req.client_id.clone(),
        app_uid: app.uid.clone(),
        name: ciphertext("name", &req.name, 28, 4096)?,
        encrypted_app_key: ciphertext("encrypted_app_key", &req.encrypted_app_key, 60, 60)?,
        public_key: None,
        first_access_expires_at: req.first_access_expires_at,
        ip_lock: req.ip_lock,
        bound_at: None,
        bound_ip: None,
        created_at: now,
        last_access_at: None,
    };
    state
        .store
        .create_device(&row)
        .await
        .map_err(|err| match err {
            StoreError::Conflict => {
                ApiError::new(ErrorCode::Conflict, "That client id already exists.")
            }
            other => other.into(),
        })?;
    owner.audit(&state, "client.add", &app.uid).await?;
    Ok(Json(client_out(row)))
}

/// Body of `POST /apps/{uid}/clients/remove`.
#[derive(Deserialize)]
pub struct RemoveClient {
    client_id: String,
}

/// `POST /apps/{uid}/clients/remove`: revoke a device; it is refused from the next request.
pub async fn remove_client(
    State(state): State<AppState>,
    owner: Owner,
    Path(app_uid): Path<String>,
    Body(req): Body<RemoveClient>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = owner.app(&state, &app_uid).await?;
    match state.store.delete_device(&app.uid, &req.client_id).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(not_found("client")),
        Err(err) => return Err(err.into()),
    }
    owner.audit(&state, "client.remove", &app.uid).await?;
    Ok(Json(serde_json::json!({})))
}

/// Query of `GET /audit`.
#[derive(Deserialize, Default)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /audit`: the owner's events, newest first.
pub async fn list_audit(
    State(state): State<AppState>,
    owner: Owner,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<AuditEvent>>> {
    let Query(query) = query
        .map_err(|e| ApiError::bad_request(format!("Invalid audit query: {}", e.body_text())))?;
    let filter = AuditFilter {
        owner_uid: Some(owner.uid.clone()),
        actor: query.actor,
        action_prefix: query.action,
        target: query.target,
        since: query.since,
        before_id: query.before,
        limit: query.limit.unwrap_or(100).min(1000),
    };
    let rows = state.store.list_audit(&filter).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| AuditEvent {
                id: row.id,
                at: row.event.at,
                actor: row.event.actor,
                action: row.event.action,
                target: row.event.target,
                ip: row.event.ip,
                detail: row.event.detail,
            })
            .collect(),
    ))
}
