//! KSM protocol payloads (PROTOCOL.md §5).
//!
//! Requests are lenient: every optional field may be absent, `null` or (strings) `""`, and
//! unknown fields are ignored, because the official SDKs differ (§2.4). Responses are strict
//! about what the SDKs require: `records`, `folders` and `expiresOn` are always present.

use serde::{Deserialize, Serialize};

/// The endpoints of the KSM API, in the order of PROTOCOL.md §2.1.
pub const ENDPOINTS: [&str; 11] = [
    "get_secret",
    "get_folders",
    "update_secret",
    "finalize_secret_update",
    "rollback_secret_update",
    "create_secret",
    "delete_secret",
    "create_folder",
    "update_folder",
    "delete_folder",
    "add_file",
];

/// Path prefix of the KSM API.
pub const API_PREFIX: &str = "/api/rest/sm/v1/";

/// Fields every request payload carries (PROTOCOL.md §5.0.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseRequest {
    /// SDK identity, e.g. `mp17.3.0`.
    #[serde(default)]
    pub client_version: Option<String>,
    /// B64 HMAC client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The device public key, while binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// `get_secret` and `get_folders` request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetSecretRequest {
    /// SDK identity.
    pub client_version: String,
    /// B64 client id.
    pub client_id: String,
    /// B64 device public key (binding only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Record UID filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_records: Option<Vec<String>>,
    /// Folder UID filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_folders: Option<Vec<String>>,
    /// Ask for `links`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_links: Option<bool>,
}

/// `get_secret` response (decrypted).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetSecretResponse {
    /// B64URL of GCM(appKey, app data JSON).
    pub app_data: Option<String>,
    /// B64 of GCM(clientKey, appKey), binding responses only.
    pub encrypted_app_key: Option<String>,
    /// B64 of the owner's public key, binding responses only.
    pub app_owner_public_key: Option<String>,
    /// Records shared directly with the application.
    pub records: Option<Vec<SecretRecord>>,
    /// Shared folders shared with the application.
    pub folders: Option<Vec<SecretFolder>>,
    /// Device expiry in ms since the epoch, 0 = none.
    #[serde(default)]
    pub expires_on: i64,
    /// One string per requested record that is not visible.
    pub warnings: Option<Vec<String>>,
    /// Unused extension object.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

/// A record in a `get_secret` response.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRecord {
    /// Record UID.
    pub record_uid: String,
    /// B64 of the record key wrapped by the app key (direct) or shared-folder key.
    pub record_key: String,
    /// B64 of GCM(recordKey, record JSON).
    pub data: String,
    /// Revision.
    pub revision: i64,
    /// Whether the application may change it.
    pub is_editable: bool,
    /// File attachments.
    pub files: Option<Vec<SecretFile>>,
    /// Sub-folder that directly contains the record (inside a shared folder).
    #[serde(default)]
    pub inner_folder_uid: Option<String>,
    /// Always `null` from Coffer (the real server sends `null`).
    #[serde(default)]
    pub folder_uid: Option<String>,
    /// Record links, only with `requestLinks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<RecordLink>>,
}

/// A file attachment in a `get_secret` response.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretFile {
    /// File UID.
    pub file_uid: String,
    /// B64 of GCM(recordKey, fileKey).
    pub file_key: String,
    /// B64 of GCM(fileKey, metadata JSON).
    pub data: String,
    /// Capability URL of the encrypted content.
    pub url: String,
    /// Capability URL of the encrypted thumbnail.
    pub thumbnail_url: Option<String>,
}

/// A record link (PROTOCOL.md §6.7).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecordLink {
    /// Linked record.
    pub record_uid: String,
    /// B64 data.
    pub data: Option<String>,
    /// Link path.
    pub path: Option<String>,
}

/// A shared folder in a `get_secret` response.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretFolder {
    /// Shared folder UID.
    pub folder_uid: String,
    /// B64 of GCM(appKey, sharedFolderKey).
    pub folder_key: String,
    /// Every record of the folder's sub-tree.
    pub records: Vec<SecretRecord>,
    /// Always `null` (ignored by the SDKs).
    #[serde(default)]
    pub data: Option<String>,
    /// Always `null` for shared folders.
    #[serde(default)]
    pub parent: Option<String>,
    /// Whether the share is editable.
    #[serde(default)]
    pub is_editable: bool,
}

/// `get_folders` response.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetFoldersResponse {
    /// Shared folders and all their sub-folders, each root before its descendants.
    pub folders: Vec<FolderInfo>,
    /// B64 of GCM(clientKey, appKey) when this call completed a binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_app_key: Option<String>,
    /// The owner's public key when this call completed a binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_owner_public_key: Option<String>,
}

/// A folder in a `get_folders` response.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FolderInfo {
    /// Folder UID.
    pub folder_uid: String,
    /// Shared folder: GCM(appKey, key); sub-folder: CBC(root key, key). B64.
    pub folder_key: String,
    /// B64 of CBC(own key, `{"name": …}`).
    pub data: String,
    /// Parent UID, `null` for shared folders.
    pub parent: Option<String>,
}

/// `update_secret` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSecretRequest {
    /// Record UID.
    pub record_uid: String,
    /// GCM(recordKey, record JSON), B64 or B64URL.
    pub data: String,
    /// The revision the client last saw.
    pub revision: i64,
    /// `general`, `rotation` or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_type: Option<String>,
    /// File UIDs to detach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links2_remove: Option<Vec<String>>,
}

/// `finalize_secret_update` / `rollback_secret_update` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteTransactionRequest {
    /// Record UID.
    pub record_uid: String,
}

/// `create_secret` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSecretRequest {
    /// New record UID.
    pub record_uid: String,
    /// B64 of ECIES(appOwnerPublicKey, recordKey): the owner's copy.
    pub record_key: String,
    /// Root shared folder UID.
    pub folder_uid: String,
    /// B64 of GCM(sharedFolderKey, recordKey).
    pub folder_key: String,
    /// GCM(recordKey, record JSON).
    pub data: String,
    /// Sub-folder inside the shared folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_folder_uid: Option<String>,
}

/// `delete_secret` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteSecretRequest {
    /// Records to delete.
    pub record_uids: Vec<String>,
}

/// One item of a `delete_secret` / `delete_folder` answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResult {
    /// Record UID (`delete_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_uid: Option<String>,
    /// Folder UID (`delete_folder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_uid: Option<String>,
    /// `ok` on success.
    pub response_code: String,
    /// Why it failed.
    pub error_message: Option<String>,
}

/// `delete_secret` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeleteSecretResponse {
    /// One entry per requested UID.
    pub records: Vec<DeleteResult>,
}

/// `create_folder` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateFolderRequest {
    /// New folder UID.
    pub folder_uid: String,
    /// Root shared folder.
    pub shared_folder_uid: String,
    /// CBC(sharedFolderKey, new folder key).
    pub shared_folder_key: String,
    /// CBC(new folder key, `{"name": …}`).
    pub data: String,
    /// Parent sub-folder, or none for directly under the shared folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,
}

/// `update_folder` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateFolderRequest {
    /// Folder UID.
    pub folder_uid: String,
    /// CBC(folder key, `{"name": …}`).
    pub data: String,
}

/// `delete_folder` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFolderRequest {
    /// Folders to delete.
    pub folder_uids: Vec<String>,
    /// Delete non-empty folders with their contents.
    #[serde(default)]
    pub force_deletion: Option<bool>,
}

/// `delete_folder` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeleteFolderResponse {
    /// One entry per requested UID.
    pub folders: Vec<DeleteResult>,
}

/// `add_file` request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddFileRequest {
    /// New file UID.
    pub file_record_uid: String,
    /// ECIES(appOwnerPublicKey, fileKey).
    pub file_record_key: String,
    /// GCM(fileKey, metadata JSON).
    pub file_record_data: String,
    /// The record that gets the attachment.
    pub owner_record_uid: String,
    /// GCM(ownerRecordKey, updated owner record JSON).
    pub owner_record_data: String,
    /// Revision of the owner record (absent from the Rust SDK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_record_revision: Option<i64>,
    /// GCM(ownerRecordKey, fileKey).
    pub link_key: String,
    /// Size of the encrypted body.
    pub file_size: i64,
}

/// `add_file` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddFileResponse {
    /// Upload URL.
    pub url: String,
    /// JSON text of an object whose values are strings.
    pub parameters: String,
    /// The status the upload answers with.
    pub success_status_code: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_request_with_nulls_parses() {
        let text = r#"{
    "clientVersion": "mp17.3.0",
    "clientId": "abc==",
    "publicKey": null,
    "requestedRecords": null,
    "requestedFolders": null,
    "requestLinks": null,
    "somethingNew": 5
}"#;
        let req: GetSecretRequest = serde_json::from_str(text).unwrap();
        assert_eq!(req.client_id, "abc==");
        assert!(req.public_key.is_none() && req.requested_records.is_none());
    }

    #[test]
    fn response_always_has_the_required_keys() {
        let json = serde_json::to_value(GetSecretResponse::default()).unwrap();
        for key in [
            "appData",
            "encryptedAppKey",
            "appOwnerPublicKey",
            "records",
            "folders",
            "expiresOn",
            "warnings",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["expiresOn"], 0);
    }
}
