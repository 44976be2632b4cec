//! The KSM write endpoints (PROTOCOL.md §5.3–§5.10): updates and transactions, record creation
//! and deletion, folders, and file announcements.
//!
//! Every write needs an editable share: of the record itself, or of the shared folder its tree
//! hangs from. Objects an application cannot see are answered exactly like objects that do not
//! exist.

use std::collections::HashMap;

use coffer_crypto::{decode_lenient, encode_url, is_uid, random_bytes, sha256};
use coffer_proto::ErrorCode;
use coffer_proto::ksm::{
    AddFileRequest, AddFileResponse, CompleteTransactionRequest, CreateFolderRequest,
    CreateSecretRequest, DeleteFolderRequest, DeleteFolderResponse, DeleteResult,
    DeleteSecretRequest, DeleteSecretResponse, UpdateFolderRequest, UpdateSecretRequest,
};
use coffer_store::{
    FileRow, FolderRow, NewAuditEvent, RecordRow, RecordUpdate, ShareKind, StoreError,
    TransactionStart, UploadRow,
};
use serde::de::DeserializeOwned;

use super::{Caller, Reply};
use crate::error::{ApiError, ApiResult};
use crate::owner::vault::{MAX_DATA_BYTES, out_of_sync, record_change_error};
use crate::state::{AppState, now_ms};

/// Path of the KSM upload endpoint (the token follows).
pub const UPLOAD_PATH: &str = "/api/rest/sm/v1/upload/";
/// Status the upload answers with on success (`successStatusCode`).
pub const UPLOAD_SUCCESS: u16 = 204;

fn parse<T: DeserializeOwned>(caller: &Caller, endpoint: &str) -> ApiResult<T> {
    serde_json::from_slice(&caller.payload)
        .map_err(|e| ApiError::bad_request(format!("Invalid {endpoint} payload: {e}")))
}

fn field(name: &str, text: &str, min: usize, max: usize) -> ApiResult<Vec<u8>> {
    let bytes = decode_lenient(text)
        .map_err(|_| ApiError::bad_request(format!("{name} is not valid base64.")))?;
    if bytes.len() < min || bytes.len() > max {
        return Err(ApiError::bad_request(format!(
            "{name} must be between {min} and {max} bytes."
        )));
    }
    Ok(bytes)
}

fn uid(name: &str, value: &str) -> ApiResult<()> {
    if is_uid(value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("{name} is not a UID.")))
    }
}

/// The shares of the calling app, for permission checks.
struct Rights {
    /// Shared folder (root) UID → editable.
    folders: HashMap<String, bool>,
    /// Directly shared record UID → editable.
    records: HashMap<String, bool>,
}

impl Rights {
    async fn load(state: &AppState, caller: &Caller) -> ApiResult<Self> {
        Self::of_app(state, &caller.device.app_uid).await
    }

    async fn of_app(state: &AppState, app_uid: &str) -> ApiResult<Self> {
        let mut folders = HashMap::new();
        let mut records = HashMap::new();
        for share in state.store.shares_of_app(app_uid).await? {
            let map = match share.kind {
                ShareKind::Folder => &mut folders,
                ShareKind::Record => &mut records,
            };
            map.insert(share.target_uid, share.editable);
        }
        Ok(Self { folders, records })
    }

    /// `None` = invisible; `Some(editable)` otherwise.
    fn record(&self, record: &RecordRow) -> Option<bool> {
        let direct = self.records.get(&record.uid).copied();
        let via_folder = self.folders.get(&record.root_folder_uid).copied();
        match (direct, via_folder) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
        }
    }

    fn folder_tree(&self, root_uid: &str) -> Option<bool> {
        self.folders.get(root_uid).copied()
    }
}

fn invisible_record(uid: &str) -> ApiError {
    ApiError::denied(format!(
        "Record {uid} is not shared with this application or does not exist."
    ))
}

fn invisible_folder(uid: &str) -> ApiError {
    ApiError::denied(format!(
        "Folder {uid} is not shared with this application or does not exist."
    ))
}

fn read_only(what: &str, uid: &str) -> ApiError {
    ApiError::denied(format!(
        "{what} {uid} is shared read-only with this application; the owner must share it as editable."
    ))
}

/// Checks, when an upload announced by a device arrives, that the device still exists and may
/// still change the record: revoking a device or its share also stops its pending uploads.
pub(crate) async fn device_may_still_edit(
    state: &AppState,
    client_id: &str,
    record_uid: &str,
) -> ApiResult<()> {
    let device = match state.store.device(client_id).await {
        Ok(device) => device,
        Err(StoreError::NotFound) => {
            return Err(ApiError::denied(
                "The device that announced this upload has been removed; the upload is refused.",
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let rights = Rights::of_app(state, &device.app_uid).await?;
    editable_record(state, &rights, record_uid)
        .await
        .map(|_| ())
}

/// Loads a record the caller may change.
async fn editable_record(
    state: &AppState,
    rights: &Rights,
    record_uid: &str,
) -> ApiResult<RecordRow> {
    let record = match state.store.record(record_uid).await {
        Ok(record) => record,
        Err(StoreError::NotFound) => return Err(invisible_record(record_uid)),
        Err(err) => return Err(err.into()),
    };
    match rights.record(&record) {
        None => Err(invisible_record(record_uid)),
        Some(false) => Err(read_only("Record", record_uid)),
        Some(true) => Ok(record),
    }
}

/// Loads a folder the caller may change (inside an editable shared folder).
async fn editable_folder(
    state: &AppState,
    rights: &Rights,
    folder_uid: &str,
) -> ApiResult<FolderRow> {
    let folder = match state.store.folder(folder_uid).await {
        Ok(folder) => folder,
        Err(StoreError::NotFound) => return Err(invisible_folder(folder_uid)),
        Err(err) => return Err(err.into()),
    };
    match rights.folder_tree(&folder.root_uid) {
        None => Err(invisible_folder(folder_uid)),
        Some(false) => Err(read_only("Folder", folder_uid)),
        Some(true) => Ok(folder),
    }
}

fn actor(caller: &Caller) -> String {
    format!("client:{}", caller.device.client_id)
}

async fn audit(state: &AppState, caller: &Caller, action: &str, target: &str) -> ApiResult<()> {
    state
        .audit
        .write(NewAuditEvent {
            at: now_ms(),
            owner_uid: Some(caller.owner_uid.clone()),
            actor: actor(caller),
            action: action.to_owned(),
            target: Some(target.to_owned()),
            ip: Some(caller.ip.clone()),
            detail: None,
        })
        .await
        .map_err(Into::into)
}

/// Rolls back transactions nobody completed in time (also run by the janitor).
pub async fn expire_transactions(state: &AppState) -> ApiResult<()> {
    for (record_uid, owner_uid) in state.store.expire_transactions(now_ms()).await? {
        state
            .audit
            .write(NewAuditEvent {
                at: now_ms(),
                owner_uid: Some(owner_uid),
                actor: "system".into(),
                action: "transaction.expire".into(),
                target: Some(record_uid),
                ip: None,
                detail: Some("rolled back: not finalized in time".into()),
            })
            .await?;
    }
    Ok(())
}

/// `update_secret`.
pub async fn update_secret(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: UpdateSecretRequest = parse(caller, "update_secret")?;
    uid("recordUid", &req.record_uid)?;
    let data = field("data", &req.data, 29, MAX_DATA_BYTES)?;
    let transaction = match coffer_proto::non_empty(&req.transaction_type) {
        None => None,
        Some(kind @ ("general" | "rotation")) => Some(TransactionStart {
            kind: kind.to_owned(),
            expires_at: now_ms() + state.config.transaction_ttl.as_millis() as i64,
        }),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "transactionType must be \"general\" or \"rotation\", not {other:?}."
            )));
        }
    };
    let remove_files = req.links2_remove.clone().unwrap_or_default();
    for file in &remove_files {
        uid("links2Remove", file)?;
    }
    expire_transactions(state).await?;
    let rights = Rights::load(state, caller).await?;
    editable_record(state, &rights, &req.record_uid).await?;
    let opened = transaction.is_some();
    let change = state
        .store
        .update_record(&RecordUpdate {
            uid: req.record_uid.clone(),
            expected_revision: req.revision,
            data,
            remove_files,
            transaction,
            actor: actor(caller),
            now: now_ms(),
        })
        .await
        .map_err(|err| {
            record_change_error(&req.record_uid, err, invisible_record(&req.record_uid))
        })?;
    state.files.remove_all(&change.removed_files).await;
    let action = if opened {
        "record.update.transaction"
    } else {
        "record.update"
    };
    audit(state, caller, action, &req.record_uid).await?;
    Ok(Reply::Empty)
}

/// `finalize_secret_update` (commit = true) and `rollback_secret_update`.
pub async fn complete_transaction(
    state: &AppState,
    caller: &Caller,
    commit: bool,
) -> ApiResult<Reply> {
    let endpoint = if commit {
        "finalize_secret_update"
    } else {
        "rollback_secret_update"
    };
    let req: CompleteTransactionRequest = parse(caller, endpoint)?;
    uid("recordUid", &req.record_uid)?;
    expire_transactions(state).await?;
    let rights = Rights::load(state, caller).await?;
    editable_record(state, &rights, &req.record_uid).await?;
    let no_transaction = || {
        ApiError::bad_request(format!(
            "Record {} has no open transaction (it was completed, or rolled back after it expired).",
            req.record_uid
        ))
    };
    let result = if commit {
        state
            .store
            .finalize_transaction(&req.record_uid, now_ms())
            .await
    } else {
        state
            .store
            .rollback_transaction(&req.record_uid, &actor(caller), now_ms())
            .await
    };
    let change = match result {
        Ok(change) => change,
        Err(StoreError::NotFound) => return Err(no_transaction()),
        Err(err) => return Err(err.into()),
    };
    state.files.remove_all(&change.removed_files).await;
    let action = if commit {
        "transaction.finalize"
    } else {
        "transaction.rollback"
    };
    audit(state, caller, action, &req.record_uid).await?;
    Ok(Reply::Empty)
}

/// `create_secret`.
pub async fn create_secret(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: CreateSecretRequest = parse(caller, "create_secret")?;
    uid("recordUid", &req.record_uid)?;
    uid("folderUid", &req.folder_uid)?;
    let owner_key = field("recordKey", &req.record_key, 125, 125)?;
    let folder_key = field("folderKey", &req.folder_key, 60, 60)?;
    let data = field("data", &req.data, 29, MAX_DATA_BYTES)?;
    let rights = Rights::load(state, caller).await?;
    let root = editable_folder(state, &rights, &req.folder_uid).await?;
    if root.parent_uid.is_some() {
        return Err(ApiError::bad_request(
            "folderUid must be the shared folder; put the sub-folder in subFolderUid.",
        ));
    }
    let location = match coffer_proto::non_empty(&req.sub_folder_uid) {
        None => root.uid.clone(),
        Some(sub) => {
            uid("subFolderUid", sub)?;
            match state.store.folder(sub).await {
                Ok(folder) if folder.root_uid == root.uid => folder.uid,
                Ok(_) | Err(StoreError::NotFound) => {
                    return Err(ApiError::bad_request(format!(
                        "Sub-folder {sub} is not inside shared folder {}.",
                        root.uid
                    )));
                }
                Err(err) => return Err(err.into()),
            }
        }
    };
    let now = now_ms();
    let record = RecordRow {
        uid: req.record_uid.clone(),
        owner_uid: root.owner_uid.clone(),
        root_folder_uid: root.uid.clone(),
        folder_uid: location,
        key: folder_key,
        owner_key: Some(owner_key),
        data,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    match state.store.create_record(&record, &actor(caller)).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::bad_request(format!(
                "UID {} is already used by a record or folder; generate a new UID.",
                req.record_uid
            )));
        }
        Err(err) => return Err(err.into()),
    }
    audit(state, caller, "record.create", &req.record_uid).await?;
    Ok(Reply::Empty)
}

fn result(uid: &str, folder: bool, error: Option<String>) -> DeleteResult {
    DeleteResult {
        record_uid: (!folder).then(|| uid.to_owned()),
        folder_uid: folder.then(|| uid.to_owned()),
        response_code: if error.is_none() { "ok" } else { "error" }.to_owned(),
        error_message: error,
    }
}

/// `delete_secret`: one result per UID; individual failures never fail the call.
pub async fn delete_secret(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: DeleteSecretRequest = parse(caller, "delete_secret")?;
    let rights = Rights::load(state, caller).await?;
    let mut records = Vec::with_capacity(req.record_uids.len());
    for record_uid in &req.record_uids {
        let outcome = async {
            uid("recordUid", record_uid)?;
            editable_record(state, &rights, record_uid).await?;
            let removed = match state.store.delete_record(record_uid).await {
                Ok(removed) => removed,
                Err(StoreError::NotFound) => return Err(invisible_record(record_uid)),
                Err(err) => return Err(ApiError::from(err)),
            };
            state.files.remove_all(&removed.files).await;
            audit(state, caller, "record.delete", record_uid).await
        }
        .await;
        records.push(result(record_uid, false, outcome.err().map(|e| e.message)));
    }
    Reply::json(&DeleteSecretResponse { records })
}

/// `create_folder`.
pub async fn create_folder(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: CreateFolderRequest = parse(caller, "create_folder")?;
    uid("folderUid", &req.folder_uid)?;
    uid("sharedFolderUid", &req.shared_folder_uid)?;
    let key = field("sharedFolderKey", &req.shared_folder_key, 64, 64)?;
    let data = field("data", &req.data, 32, MAX_DATA_BYTES)?;
    let rights = Rights::load(state, caller).await?;
    let root = editable_folder(state, &rights, &req.shared_folder_uid).await?;
    if root.parent_uid.is_some() {
        return Err(ApiError::bad_request(
            "sharedFolderUid must be a shared folder; put the parent sub-folder in parentUid.",
        ));
    }
    let parent = match coffer_proto::non_empty(&req.parent_uid) {
        None => root.uid.clone(),
        Some(parent) => {
            uid("parentUid", parent)?;
            match state.store.folder(parent).await {
                Ok(folder) if folder.root_uid == root.uid => folder.uid,
                Ok(_) | Err(StoreError::NotFound) => {
                    return Err(ApiError::bad_request(format!(
                        "Parent folder {parent} is not inside shared folder {}.",
                        root.uid
                    )));
                }
                Err(err) => return Err(err.into()),
            }
        }
    };
    let folder = FolderRow {
        uid: req.folder_uid.clone(),
        owner_uid: root.owner_uid.clone(),
        parent_uid: Some(parent),
        root_uid: root.uid.clone(),
        key,
        data,
        created_at: now_ms(),
    };
    match state.store.create_folder(&folder).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::bad_request(format!(
                "UID {} is already used by a folder or record; generate a new UID.",
                req.folder_uid
            )));
        }
        Err(err) => return Err(err.into()),
    }
    audit(state, caller, "folder.create", &req.folder_uid).await?;
    Ok(Reply::Empty)
}

/// `update_folder` (rename).
pub async fn update_folder(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: UpdateFolderRequest = parse(caller, "update_folder")?;
    uid("folderUid", &req.folder_uid)?;
    let data = field("data", &req.data, 32, MAX_DATA_BYTES)?;
    let rights = Rights::load(state, caller).await?;
    editable_folder(state, &rights, &req.folder_uid).await?;
    state.store.update_folder(&req.folder_uid, &data).await?;
    audit(state, caller, "folder.rename", &req.folder_uid).await?;
    Ok(Reply::Empty)
}

/// `delete_folder`: sub-folders only (a shared folder belongs to its owner); non-empty ones
/// need `forceDeletion`, which removes their sub-folders and records too.
pub async fn delete_folder(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: DeleteFolderRequest = parse(caller, "delete_folder")?;
    let force = req.force_deletion == Some(true);
    let rights = Rights::load(state, caller).await?;
    let mut folders = Vec::with_capacity(req.folder_uids.len());
    for folder_uid in &req.folder_uids {
        let outcome = async {
            uid("folderUid", folder_uid)?;
            let folder = editable_folder(state, &rights, folder_uid).await?;
            if folder.parent_uid.is_none() {
                return Err(ApiError::denied(format!(
                    "Folder {folder_uid} is a shared folder; only its owner can delete it."
                )));
            }
            // Emptiness is judged in the deleting transaction: a record created meanwhile is
            // never taken along by a delete without force.
            let removed = match state.store.delete_folder_tree(folder_uid, force).await {
                Ok(removed) => removed,
                Err(StoreError::Precondition("folder not empty")) => {
                    return Err(ApiError::bad_request(format!(
                        "Folder {folder_uid} is not empty; delete its contents first or use force deletion."
                    )));
                }
                Err(StoreError::NotFound) => return Err(invisible_folder(folder_uid)),
                Err(err) => return Err(ApiError::from(err)),
            };
            state.files.remove_all(&removed.files).await;
            audit(state, caller, "folder.delete", folder_uid).await
        }
        .await;
        folders.push(result(folder_uid, true, outcome.err().map(|e| e.message)));
    }
    Reply::json(&DeleteFolderResponse { folders })
}

/// `add_file`: announce an attachment and hand out a single-use upload URL.
pub async fn add_file(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let req: AddFileRequest = parse(caller, "add_file")?;
    uid("fileRecordUid", &req.file_record_uid)?;
    uid("ownerRecordUid", &req.owner_record_uid)?;
    let owner_key = field("fileRecordKey", &req.file_record_key, 125, 125)?;
    let data = field("fileRecordData", &req.file_record_data, 29, MAX_DATA_BYTES)?;
    let record_data = field(
        "ownerRecordData",
        &req.owner_record_data,
        29,
        MAX_DATA_BYTES,
    )?;
    let link_key = field("linkKey", &req.link_key, 60, 60)?;
    let max = state.config.max_file_bytes;
    if req.file_size < 28 || req.file_size as u64 > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "Files may be at most {max} bytes (encrypted); this one is {}.",
                req.file_size
            ),
        ));
    }
    let rights = Rights::load(state, caller).await?;
    let record = editable_record(state, &rights, &req.owner_record_uid).await?;
    match state.store.transaction(&record.uid).await {
        Ok(_) => {
            return Err(ApiError::bad_request(format!(
                "Record {} has an open transaction; finalize or roll it back before adding files.",
                record.uid
            )));
        }
        Err(StoreError::NotFound) => {}
        Err(err) => return Err(err.into()),
    }
    if let Some(revision) = req.owner_record_revision
        && revision != record.revision
    {
        return Err(out_of_sync(&record.uid));
    }
    let token = encode_url(&random_bytes::<32>());
    let now = now_ms();
    let upload = UploadRow {
        token_hash: sha256(token.as_bytes()).to_vec(),
        file: FileRow {
            uid: req.file_record_uid.clone(),
            record_uid: record.uid.clone(),
            key: link_key,
            owner_key: Some(owner_key),
            data,
            size: req.file_size,
            created_at: now,
        },
        record_data,
        // The revision the record had when the file was announced, also for SDKs that do not
        // send one: a save between announcement and upload makes the upload stale, so the
        // upload's record data never overwrites that save.
        record_revision: Some(record.revision),
        actor: actor(caller),
        expires_at: now + state.config.upload_ttl.as_millis() as i64,
    };
    match state.store.create_upload(&upload).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::bad_request(format!(
                "A file with UID {} already exists; generate a new UID.",
                req.file_record_uid
            )));
        }
        Err(err) => return Err(err.into()),
    }
    audit(state, caller, "file.announce", &req.file_record_uid).await?;
    let parameters = serde_json::json!({ "fileUid": req.file_record_uid }).to_string();
    Reply::json(&AddFileResponse {
        url: format!("{}{UPLOAD_PATH}{token}", state.config.public_base_url()),
        parameters,
        success_status_code: UPLOAD_SUCCESS,
    })
}
