//! `get_secret` and `get_folders` (PROTOCOL.md §5.1, §5.2).

use std::collections::{HashMap, HashSet};

use coffer_crypto::{encode_std, encode_url};
use coffer_proto::ksm::{
    FolderInfo, GetFoldersResponse, GetSecretRequest, GetSecretResponse, SecretFile, SecretFolder,
    SecretRecord,
};
use coffer_store::{FileRow, RecordRow, ShareKind, ShareRow};

use super::{Caller, Reply};
use crate::error::{ApiError, ApiResult};
use crate::links;
use crate::state::AppState;

/// Everything an application can see, loaded with a fixed number of queries.
struct AppView {
    folder_shares: Vec<ShareRow>,
    direct_shares: Vec<ShareRow>,
    /// Records of the shared folders, by root folder UID.
    folder_records: HashMap<String, Vec<RecordRow>>,
    /// Records shared directly, by UID.
    direct_records: HashMap<String, RecordRow>,
    /// Complete files by record UID.
    files: HashMap<String, Vec<FileRow>>,
}

async fn load_view(state: &AppState, app_uid: &str) -> ApiResult<AppView> {
    let contents = state.store.app_contents(app_uid).await?;
    let (folder_shares, direct_shares): (Vec<_>, Vec<_>) = contents
        .shares
        .into_iter()
        .partition(|s| s.kind == ShareKind::Folder);
    let mut folder_records: HashMap<String, Vec<RecordRow>> = HashMap::new();
    for record in contents.folder_records {
        folder_records
            .entry(record.root_folder_uid.clone())
            .or_default()
            .push(record);
    }
    let direct_records: HashMap<String, RecordRow> = contents
        .direct_records
        .into_iter()
        .map(|r| (r.uid.clone(), r))
        .collect();
    let mut files: HashMap<String, Vec<FileRow>> = HashMap::new();
    for file in contents.files {
        files.entry(file.record_uid.clone()).or_default().push(file);
    }
    Ok(AppView {
        folder_shares,
        direct_shares,
        folder_records,
        direct_records,
        files,
    })
}

fn non_empty_set(list: &Option<Vec<String>>) -> Option<HashSet<&str>> {
    list.as_ref()
        .filter(|l| !l.is_empty())
        .map(|l| l.iter().map(String::as_str).collect())
}

fn secret_record(
    state: &AppState,
    record: &RecordRow,
    record_key: &[u8],
    editable: bool,
    inner_folder: Option<String>,
    files: Option<&Vec<FileRow>>,
    links: bool,
) -> SecretRecord {
    let files = files.map(|files| {
        files
            .iter()
            .map(|f| SecretFile {
                file_uid: f.uid.clone(),
                file_key: encode_std(&f.key),
                data: encode_std(&f.data),
                url: links::download_url(state, &f.uid),
                thumbnail_url: None,
            })
            .collect()
    });
    SecretRecord {
        record_uid: record.uid.clone(),
        record_key: encode_std(record_key),
        data: encode_std(&record.data),
        revision: record.revision,
        is_editable: editable,
        files: Some(files.unwrap_or_default()),
        inner_folder_uid: inner_folder,
        folder_uid: None,
        links: links.then(Vec::new),
    }
}

/// `get_secret`.
pub async fn get_secret(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let request: GetSecretRequest = serde_json::from_slice(&caller.payload)
        .map_err(|e| ApiError::bad_request(format!("Invalid get_secret payload: {e}")))?;
    let app = &caller.app;
    let view = load_view(state, &app.uid).await?;
    let wanted_records = non_empty_set(&request.requested_records);
    let wanted_folders = non_empty_set(&request.requested_folders);
    let links = request.request_links == Some(true);
    let record_wanted = |uid: &str| wanted_records.as_ref().is_none_or(|w| w.contains(uid));

    let mut returned: HashSet<String> = HashSet::new();
    let mut records = Vec::new();
    if wanted_folders.is_none() {
        for share in &view.direct_shares {
            let Some(record) = view.direct_records.get(&share.target_uid) else {
                continue;
            };
            if !record_wanted(&record.uid) {
                continue;
            }
            returned.insert(record.uid.clone());
            records.push(secret_record(
                state,
                record,
                &share.key,
                share.editable,
                None,
                view.files.get(&record.uid),
                links,
            ));
        }
    }
    let mut folders = Vec::new();
    for share in &view.folder_shares {
        let root = &share.target_uid;
        let folder_listed = wanted_folders
            .as_ref()
            .is_some_and(|w| w.contains(root.as_str()));
        let mut folder_records = Vec::new();
        for record in view.folder_records.get(root).into_iter().flatten() {
            let inner = (record.folder_uid != *root).then(|| record.folder_uid.clone());
            let location_wanted = wanted_folders.as_ref().is_none_or(|w| {
                w.contains(root.as_str()) || inner.as_deref().is_some_and(|inner| w.contains(inner))
            });
            if !location_wanted || !record_wanted(&record.uid) {
                continue;
            }
            returned.insert(record.uid.clone());
            folder_records.push(secret_record(
                state,
                record,
                &record.key,
                share.editable,
                inner,
                view.files.get(&record.uid),
                links,
            ));
        }
        let unfiltered = wanted_records.is_none() && wanted_folders.is_none();
        let whole_folder = folder_listed && wanted_records.is_none();
        if unfiltered || whole_folder || !folder_records.is_empty() {
            folders.push(SecretFolder {
                folder_uid: root.clone(),
                folder_key: encode_std(&share.key),
                records: folder_records,
                data: None,
                parent: None,
                is_editable: share.editable,
            });
        }
    }
    let warnings: Vec<String> = wanted_records
        .iter()
        .flatten()
        .filter(|uid| !returned.contains(**uid))
        .map(|uid| format!("Record {uid} is not shared with this application or does not exist."))
        .collect();

    let mut response = GetSecretResponse {
        app_data: Some(encode_url(&app.data)),
        records: Some(records),
        folders: Some(folders),
        expires_on: 0,
        warnings: (!warnings.is_empty()).then_some(warnings),
        ..Default::default()
    };
    if caller.binding {
        let owner = state.store.owner(&app.owner_uid).await?;
        response.encrypted_app_key = Some(encode_std(&caller.device.encrypted_app_key));
        response.app_owner_public_key = Some(encode_std(&owner.public_key));
    }
    Reply::json(&response)
}

/// `get_folders`: every shared folder of the app and all sub-folders, roots first.
pub async fn get_folders(state: &AppState, caller: &Caller) -> ApiResult<Reply> {
    let shares = state.store.shares_of_app(&caller.device.app_uid).await?;
    let folder_keys: HashMap<String, Vec<u8>> = shares
        .into_iter()
        .filter(|s| s.kind == ShareKind::Folder)
        .map(|s| (s.target_uid, s.key))
        .collect();
    let roots: Vec<String> = folder_keys.keys().cloned().collect();
    let folders = state
        .store
        .folders_in_roots(&roots)
        .await?
        .into_iter()
        .filter_map(|folder| {
            let (key, parent) = match &folder.parent_uid {
                None => (folder_keys.get(&folder.uid)?.clone(), None),
                Some(parent) => (folder.key.clone(), Some(parent.clone())),
            };
            Some(FolderInfo {
                folder_uid: folder.uid,
                folder_key: encode_std(&key),
                data: encode_std(&folder.data),
                parent,
            })
        })
        .collect();
    let mut response = GetFoldersResponse {
        folders,
        ..Default::default()
    };
    if caller.binding {
        let owner = state.store.owner(&caller.app.owner_uid).await?;
        response.encrypted_app_key = Some(encode_std(&caller.device.encrypted_app_key));
        response.app_owner_public_key = Some(encode_std(&owner.public_key));
    }
    Reply::json(&response)
}
