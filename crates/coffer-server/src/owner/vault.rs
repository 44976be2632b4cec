//! Folders, records and file attachments of an owner's vault.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Path, State};

use axum::response::Response;
use coffer_crypto::{encode_std, encode_url, random_bytes, sha256};
use coffer_proto::ErrorCode;
use coffer_proto::owner::{
    AttachFileRequest, AttachFileResponse, CreateFolderRequest, CreateRecordRequest,
    DeleteFolderRequest, FileInfo, Folder, HistoryEntry, Record, RemovedResponse,
    RenameFolderRequest, RestoreRequest, RevisionResponse, UidResponse, UpdateRecordRequest,
};
use coffer_store::{FileRow, FolderRow, RecordRow, RecordUpdate, StoreError, UploadRow};

use super::{Body, Owner, check_uid, ciphertext, not_found, owned};
use crate::error::{ApiError, ApiResult};
use crate::files::ReceiveError;
use crate::state::{AppState, now_ms};

/// Largest encrypted record, folder name or file metadata accepted (1 MiB).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

fn conflict(what: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |err| match err {
        StoreError::Conflict => ApiError::new(
            ErrorCode::Conflict,
            format!("A {what} with that UID already exists."),
        ),
        other => other.into(),
    }
}

fn folder_out(row: FolderRow) -> Folder {
    Folder {
        uid: row.uid,
        parent_uid: row.parent_uid,
        key: encode_std(&row.key),
        data: encode_std(&row.data),
        created_at: row.created_at,
    }
}

/// `GET /folders`: roots before their descendants.
pub async fn list_folders(
    State(state): State<AppState>,
    owner: Owner,
) -> ApiResult<Json<Vec<Folder>>> {
    let rows = state.store.folders_of_owner(&owner.uid).await?;
    Ok(Json(rows.into_iter().map(folder_out).collect()))
}

/// `POST /folders`: a shared folder (no parent) or a sub-folder.
pub async fn create_folder(
    State(state): State<AppState>,
    owner: Owner,
    Body(req): Body<CreateFolderRequest>,
) -> ApiResult<Json<UidResponse>> {
    check_uid("uid", &req.uid)?;
    let data = ciphertext("data", &req.data, 32, MAX_DATA_BYTES)?;
    let (parent_uid, root_uid, key) = match coffer_proto::non_empty(&req.parent_uid) {
        None => (None, req.uid.clone(), ciphertext("key", &req.key, 60, 60)?),
        Some(parent) => {
            let parent = owned(
                state.store.folder(parent).await,
                "parent folder",
                |f| &f.owner_uid,
                &owner,
            )?;
            (
                Some(parent.uid),
                parent.root_uid,
                ciphertext("key", &req.key, 64, 64)?,
            )
        }
    };
    let row = FolderRow {
        uid: req.uid.clone(),
        owner_uid: owner.uid.clone(),
        parent_uid,
        root_uid,
        key,
        data,
        created_at: now_ms(),
    };
    state
        .store
        .create_folder(&row)
        .await
        .map_err(conflict("folder"))?;
    owner.audit(&state, "folder.create", &row.uid).await?;
    Ok(Json(UidResponse { uid: row.uid }))
}

fn record_out(row: RecordRow, files: Vec<FileRow>) -> Record {
    Record {
        uid: row.uid,
        folder_uid: row.folder_uid,
        root_folder_uid: row.root_folder_uid,
        key: encode_std(&row.key),
        owner_key: row.owner_key.as_deref().map(encode_std),
        data: encode_std(&row.data),
        revision: row.revision,
        created_at: row.created_at,
        updated_at: row.updated_at,
        files: files
            .into_iter()
            .map(|f| FileInfo {
                uid: f.uid,
                key: encode_std(&f.key),
                data: encode_std(&f.data),
                size: f.size,
                created_at: f.created_at,
            })
            .collect(),
    }
}

/// `GET /records`.
pub async fn list_records(
    State(state): State<AppState>,
    owner: Owner,
) -> ApiResult<Json<Vec<Record>>> {
    let rows = state.store.records_of_owner(&owner.uid).await?;
    let uids: Vec<String> = rows.iter().map(|r| r.uid.clone()).collect();
    let mut files: HashMap<String, Vec<FileRow>> = HashMap::new();
    for file in state.store.files_of_records(&uids).await? {
        files.entry(file.record_uid.clone()).or_default().push(file);
    }
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                let f = files.remove(&r.uid).unwrap_or_default();
                record_out(r, f)
            })
            .collect(),
    ))
}

/// `GET /records/{uid}`.
pub async fn get_record(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
) -> ApiResult<Json<Record>> {
    let row = owner.record(&state, &uid).await?;
    let files = state
        .store
        .files_of_records(std::slice::from_ref(&row.uid))
        .await?;
    Ok(Json(record_out(row, files)))
}

/// `POST /records`.
pub async fn create_record(
    State(state): State<AppState>,
    owner: Owner,
    Body(req): Body<CreateRecordRequest>,
) -> ApiResult<Json<UidResponse>> {
    check_uid("uid", &req.uid)?;
    let key = ciphertext("key", &req.key, 60, 60)?;
    let data = ciphertext("data", &req.data, 29, MAX_DATA_BYTES)?;
    let folder = owner.folder(&state, &req.folder_uid).await?;
    let now = now_ms();
    let row = RecordRow {
        uid: req.uid.clone(),
        owner_uid: owner.uid.clone(),
        root_folder_uid: folder.root_uid,
        folder_uid: folder.uid,
        key,
        owner_key: None,
        data,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .create_record(&row, &format!("owner:{}", owner.uid))
        .await
        .map_err(conflict("record"))?;
    owner.audit(&state, "record.create", &row.uid).await?;
    Ok(Json(UidResponse { uid: row.uid }))
}

/// `POST /records/{uid}/files`: announce an attachment; answers the one-time upload URL.
pub async fn attach_file(
    State(state): State<AppState>,
    owner: Owner,
    Path(record_uid): Path<String>,
    Body(req): Body<AttachFileRequest>,
) -> ApiResult<Json<AttachFileResponse>> {
    check_uid("uid", &req.uid)?;
    let record = owner.record(&state, &record_uid).await?;
    let key = ciphertext("key", &req.key, 60, 60)?;
    let data = ciphertext("data", &req.data, 29, MAX_DATA_BYTES)?;
    let record_data = ciphertext("record_data", &req.record_data, 29, MAX_DATA_BYTES)?;
    let max = state.config.max_file_bytes;
    if req.size < 28 || req.size as u64 > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("Files may be at most {max} bytes encrypted (the server's --max-file-size)."),
        ));
    }
    if req.record_revision != record.revision {
        return Err(out_of_sync(&record.uid));
    }
    let token = encode_url(&random_bytes::<32>());
    let now = now_ms();
    let upload = UploadRow {
        token_hash: sha256(token.as_bytes()).to_vec(),
        file: FileRow {
            uid: req.uid.clone(),
            record_uid: record.uid.clone(),
            key,
            owner_key: None,
            data,
            size: req.size,
            created_at: now,
        },
        record_data,
        record_revision: Some(record.revision),
        actor: format!("owner:{}", owner.uid),
        expires_at: now + state.config.upload_ttl.as_millis() as i64,
    };
    state
        .store
        .create_upload(&upload)
        .await
        .map_err(conflict("file"))?;
    owner.audit(&state, "file.announce", &req.uid).await?;
    Ok(Json(AttachFileResponse {
        upload_url: format!(
            "{}{}/uploads/{token}",
            state.config.public_base_url(),
            coffer_proto::owner::OWNER_PREFIX
        ),
    }))
}

/// Maps the store's refusal of a record change: an open transaction, a stale revision, or
/// `missing` when the record is gone. Shared by the owner API and the KSM write endpoints.
pub fn record_change_error(record_uid: &str, err: StoreError, missing: ApiError) -> ApiError {
    match err {
        StoreError::Precondition("transaction open") => ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "Record {record_uid} has an open transaction: it must be finalized or rolled \
                 back first."
            ),
        ),
        StoreError::Precondition(_) => out_of_sync(record_uid),
        StoreError::NotFound => missing,
        other => other.into(),
    }
}

/// The stale-revision error (message as the protocol observes it).
pub fn out_of_sync(record_uid: &str) -> ApiError {
    ApiError::new(
        ErrorCode::OutOfSync,
        format!(
            "Record {record_uid} is out of sync: it was changed since you read it. Read it again and retry."
        ),
    )
}

fn unusable_upload_link() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "This upload link is unknown, already used or expired; add the file again.",
    )
}

/// Receives an upload body and publishes it: shared by the owner API and the KSM upload.
pub async fn receive_upload<S, E>(state: &AppState, token: &str, body: S) -> ApiResult<UploadRow>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let token_hash = sha256(token.as_bytes());
    let upload = match state.store.upload(&token_hash, now_ms()).await {
        Ok(upload) => upload,
        Err(StoreError::NotFound) => return Err(unusable_upload_link()),
        Err(err) => return Err(err.into()),
    };
    let expected = upload.file.size as u64;
    let incoming = state
        .files
        .receive(body, Some(expected), state.config.max_file_bytes)
        .await
        .map_err(|err| match err {
            ReceiveError::TooLarge(_) => ApiError::new(ErrorCode::TooLarge, err.to_string()),
            ReceiveError::SizeMismatch { .. } | ReceiveError::Client(_) => {
                ApiError::bad_request(err.to_string())
            }
            ReceiveError::Io(io) => ApiError::internal(io),
        })?;
    if let Some(client_id) = upload.actor.strip_prefix("client:")
        && let Err(err) =
            crate::ksm::write::device_may_still_edit(state, client_id, &upload.file.record_uid)
                .await
    {
        state.files.discard(incoming).await;
        return Err(err);
    }
    // Published under its UID only if nothing is there yet: of two requests racing with one
    // token, the second never replaces (nor, on failing, removes) the first one's content.
    match state.files.publish(incoming, &upload.file.uid).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(unusable_upload_link());
        }
        Err(err) => return Err(ApiError::internal(err)),
    }
    match state.store.complete_upload(&token_hash, now_ms()).await {
        Ok(_) => Ok(upload),
        Err(err) => {
            let _ = state.files.remove(&upload.file.uid).await;
            Err(record_change_error(
                &upload.file.record_uid,
                err,
                unusable_upload_link(),
            ))
        }
    }
}

/// `PUT /uploads/{token}`: the encrypted content of an announced file.
pub async fn upload(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: HttpBody,
) -> ApiResult<Json<UidResponse>> {
    let upload = receive_upload(&state, &token, body.into_data_stream()).await?;
    if let Some(owner_uid) = upload.actor.strip_prefix("owner:") {
        let actor = Owner {
            uid: owner_uid.to_owned(),
            ip: None,
        };
        actor.audit(&state, "file.upload", &upload.file.uid).await?;
    }
    Ok(Json(UidResponse {
        uid: upload.file.uid,
    }))
}

/// `GET /files/{uid}/content`: the encrypted content, for the owner.
pub async fn download(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
) -> ApiResult<Response> {
    let file = match state.store.file(&uid).await {
        Ok(file) => file,
        Err(StoreError::NotFound) => return Err(not_found("file")),
        Err(err) => return Err(err.into()),
    };
    owned(
        state.store.record(&file.record_uid).await,
        "file",
        |r| &r.owner_uid,
        &owner,
    )?;
    crate::links::content_response(&state, &file).await
}

/// `PUT /records/{uid}`: edit a record (optimistic: the revision must be current).
pub async fn update_record(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
    Body(req): Body<UpdateRecordRequest>,
) -> ApiResult<Json<RevisionResponse>> {
    let data = ciphertext("data", &req.data, 29, MAX_DATA_BYTES)?;
    owner.record(&state, &uid).await?;
    for file in &req.remove_files {
        check_uid("remove_files", file)?;
    }
    let change = state
        .store
        .update_record(&RecordUpdate {
            uid: uid.clone(),
            expected_revision: req.revision,
            data,
            remove_files: req.remove_files.clone(),
            transaction: None,
            actor: format!("owner:{}", owner.uid),
            now: now_ms(),
        })
        .await
        .map_err(|err| record_change_error(&uid, err, not_found("record")))?;
    state.files.remove_all(&change.removed_files).await;
    owner.audit(&state, "record.update", &uid).await?;
    for file in &change.removed_files {
        owner.audit(&state, "file.remove", file).await?;
    }
    Ok(Json(RevisionResponse {
        revision: change.revision,
    }))
}

/// `POST /records/{uid}/delete`.
pub async fn delete_record(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
) -> ApiResult<Json<RemovedResponse>> {
    owner.record(&state, &uid).await?;
    let removed = state
        .store
        .delete_record(&uid)
        .await
        .map_err(|err| match err {
            StoreError::NotFound => not_found("record"),
            other => other.into(),
        })?;
    state.files.remove_all(&removed.files).await;
    owner.audit(&state, "record.delete", &uid).await?;
    Ok(Json(removed_out(removed)))
}

fn removed_out(removed: coffer_store::Removed) -> RemovedResponse {
    RemovedResponse {
        records: removed.records,
        folders: removed.folders,
        files: removed.files,
    }
}

/// `GET /records/{uid}/history`: every revision, newest first.
pub async fn record_history(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
) -> ApiResult<Json<Vec<HistoryEntry>>> {
    owner.record(&state, &uid).await?;
    let rows = state.store.record_history(&uid).await?;
    Ok(Json(
        rows.into_iter()
            .map(|h| HistoryEntry {
                revision: h.revision,
                data: encode_std(&h.data),
                actor: h.actor,
                at: h.at,
            })
            .collect(),
    ))
}

/// `POST /records/{uid}/restore`: an old revision's data becomes the newest revision.
pub async fn restore_record(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
    Body(req): Body<RestoreRequest>,
) -> ApiResult<Json<RevisionResponse>> {
    owner.record(&state, &uid).await?;
    let history = state.store.record_history(&uid).await?;
    let old = history
        .into_iter()
        .find(|h| h.revision == req.revision)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("Record {uid} has no revision {}.", req.revision),
            )
        })?;
    let change = state
        .store
        .update_record(&RecordUpdate {
            uid: uid.clone(),
            expected_revision: req.expected_revision,
            data: old.data,
            remove_files: vec![],
            transaction: None,
            actor: format!("owner:{}", owner.uid),
            now: now_ms(),
        })
        .await
        .map_err(|err| record_change_error(&uid, err, not_found("record")))?;
    owner.audit(&state, "record.restore", &uid).await?;
    Ok(Json(RevisionResponse {
        revision: change.revision,
    }))
}

/// `POST /folders/{uid}/rename`.
pub async fn rename_folder(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
    Body(req): Body<RenameFolderRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let data = ciphertext("data", &req.data, 32, MAX_DATA_BYTES)?;
    owner.folder(&state, &uid).await?;
    state.store.update_folder(&uid, &data).await?;
    owner.audit(&state, "folder.rename", &uid).await?;
    Ok(Json(serde_json::json!({})))
}

/// `POST /folders/{uid}/delete`: refuses a non-empty folder unless `force`.
pub async fn delete_folder(
    State(state): State<AppState>,
    owner: Owner,
    Path(uid): Path<String>,
    Body(req): Body<DeleteFolderRequest>,
) -> ApiResult<Json<RemovedResponse>> {
    owner.folder(&state, &uid).await?;
    let removed = match state.store.delete_folder_tree(&uid, req.force).await {
        Ok(removed) => removed,
        Err(StoreError::Precondition("folder not empty")) => {
            return Err(ApiError::bad_request(format!(
                "Folder {uid} is not empty; delete what is in it first, or use --force to delete \
                 it with all its sub-folders and records."
            )));
        }
        Err(err) => return Err(err.into()),
    };
    state.files.remove_all(&removed.files).await;
    owner.audit(&state, "folder.delete", &uid).await?;
    Ok(Json(removed_out(removed)))
}
