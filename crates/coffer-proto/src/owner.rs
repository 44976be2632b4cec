//! The owner API: `/api/owner/v1/…`, HTTPS + JSON with a bearer session token.
//!
//! Every key and every piece of data in these messages is ciphertext made on the owner's
//! machine, as B64 (standard alphabet, padded). The server stores and returns it verbatim.
//! See `docs/owner-api.md` for the endpoint list and the key each field is wrapped with.

use serde::{Deserialize, Serialize};

/// Path prefix of the owner API.
pub const OWNER_PREFIX: &str = "/api/owner/v1";

/// Argon2id memory (KiB) accepted for an account: 19 MiB (the least OWASP recommends) to 1 GiB.
/// The server refuses registrations outside these bounds, and the owner client refuses to
/// derive keys with parameters outside them (a server handing out cheap parameters would get
/// an auth key that is cheap to brute-force; huge ones would exhaust the client).
pub const KDF_MEMORY_KIB: std::ops::RangeInclusive<u32> = 19 * 1024..=1024 * 1024;
/// Argon2id passes accepted for an account.
pub const KDF_ITERATIONS: std::ops::RangeInclusive<u32> = 2..=20;
/// Argon2id lanes accepted for an account.
pub const KDF_PARALLELISM: std::ops::RangeInclusive<u32> = 1..=16;
/// Salt length (bytes) accepted for an account.
pub const KDF_SALT_BYTES: std::ops::RangeInclusive<usize> = 16..=64;

/// Key-derivation parameters of an owner account (Argon2id over the master password).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// B64 salt (16 random bytes).
    pub salt: String,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// True when the algorithm is Argon2id and memory, passes and lanes are within the bounds
    /// above (the salt, being base64, is checked by the caller against [`KDF_SALT_BYTES`]).
    pub fn within_bounds(&self) -> bool {
        self.algorithm == "argon2id"
            && KDF_MEMORY_KIB.contains(&self.memory_kib)
            && KDF_ITERATIONS.contains(&self.iterations)
            && KDF_PARALLELISM.contains(&self.parallelism)
    }
}

/// Public facts about a server, for building client configs. No authentication needed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerInfo {
    /// Coffer version.
    pub version: String,
    /// Decimal id of the server key clients should use.
    pub key_id: u32,
    /// B64URL of the 65-byte server public key.
    pub public_key: String,
    /// Host name (and port) clients reach the server at.
    pub public_host: String,
    /// True until the first owner has registered.
    pub setup_required: bool,
}

/// `POST /register`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RegisterRequest {
    /// Login name.
    pub email: String,
    /// The one-time setup code (first owner) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_code: Option<String>,
    /// … or an invitation code from an existing owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
    /// KDF parameters the client used.
    pub kdf: KdfParams,
    /// B64 auth key derived from the master key (the server stores only a slow hash).
    pub auth_key: String,
    /// B64 of GCM(encryptionKey, dataKey).
    pub encrypted_data_key: String,
    /// B64 of the owner's P-256 public key (65 bytes).
    pub public_key: String,
    /// B64 of GCM(dataKey, private scalar).
    pub encrypted_private_key: String,
}

/// `POST /prelogin`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PreloginRequest {
    /// Login name.
    pub email: String,
}

/// `POST /prelogin` answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PreloginResponse {
    /// How to derive the master key.
    pub kdf: KdfParams,
}

/// `POST /login`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LoginRequest {
    /// Login name.
    pub email: String,
    /// B64 auth key.
    pub auth_key: String,
}

/// `POST /login` and `POST /register` answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LoginResponse {
    /// Bearer token for the `Authorization` header.
    pub session_token: String,
    /// Session expiry, ms since the epoch.
    pub expires_at: i64,
    /// The account's wrapped keys.
    pub account: Account,
}

/// An owner account as its owner sees it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Account {
    /// Owner UID.
    pub uid: String,
    /// Login name.
    pub email: String,
    /// KDF parameters.
    pub kdf: KdfParams,
    /// B64 of GCM(encryptionKey, dataKey).
    pub encrypted_data_key: String,
    /// B64 public key.
    pub public_key: String,
    /// B64 of GCM(dataKey, private scalar).
    pub encrypted_private_key: String,
}

/// A folder: a shared folder (no parent) or a sub-folder.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Folder {
    /// Folder UID.
    pub uid: String,
    /// Parent folder (a shared folder or a sub-folder), none for a shared folder.
    pub parent_uid: Option<String>,
    /// Shared folder: GCM(dataKey, folderKey); sub-folder: CBC(rootKey, folderKey).
    pub key: String,
    /// CBC(folderKey, `{"name": …}`).
    pub data: String,
    /// Creation time, ms.
    #[serde(default)]
    pub created_at: i64,
}

/// `POST /folders`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CreateFolderRequest {
    /// New UID (client-made).
    pub uid: String,
    /// Parent, if a sub-folder.
    #[serde(default)]
    pub parent_uid: Option<String>,
    /// Wrapped folder key (see [`Folder::key`]).
    pub key: String,
    /// Encrypted name.
    pub data: String,
}

/// A record with its attachments.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Record {
    /// Record UID.
    pub uid: String,
    /// The folder that directly contains the record.
    pub folder_uid: String,
    /// The shared folder at the root of that folder's tree.
    pub root_folder_uid: String,
    /// GCM(rootFolderKey, recordKey).
    pub key: String,
    /// ECIES(ownerPublicKey, recordKey) when a device created the record.
    #[serde(default)]
    pub owner_key: Option<String>,
    /// GCM(recordKey, record JSON).
    pub data: String,
    /// Current revision.
    pub revision: i64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
    /// Completed attachments.
    pub files: Vec<FileInfo>,
}

/// `POST /records`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CreateRecordRequest {
    /// New UID (client-made).
    pub uid: String,
    /// Folder to put it in (shared folder or sub-folder).
    pub folder_uid: String,
    /// GCM(rootFolderKey, recordKey).
    pub key: String,
    /// GCM(recordKey, record JSON).
    pub data: String,
}

/// A file attachment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct FileInfo {
    /// File UID.
    pub uid: String,
    /// GCM(recordKey, fileKey).
    pub key: String,
    /// GCM(fileKey, metadata JSON).
    pub data: String,
    /// Size of the encrypted content.
    pub size: i64,
    /// Creation time, ms.
    pub created_at: i64,
}

/// `POST /records/{uid}/files`: announce an attachment, then upload its content.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AttachFileRequest {
    /// New file UID (client-made).
    pub uid: String,
    /// GCM(recordKey, fileKey).
    pub key: String,
    /// GCM(fileKey, metadata JSON).
    pub data: String,
    /// Exact size of the encrypted content to be uploaded.
    pub size: i64,
    /// New record data (with the file UID in its `fileRef` field).
    pub record_data: String,
    /// The record revision the new data was made from.
    pub record_revision: i64,
}

/// Answer to [`AttachFileRequest`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AttachFileResponse {
    /// Absolute URL to `PUT` the encrypted content to (single use, expires).
    pub upload_url: String,
}

/// An application.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct App {
    /// App UID.
    pub uid: String,
    /// GCM(dataKey, appKey).
    pub key: String,
    /// GCM(appKey, `{"title": …, "type": "app"}`).
    pub data: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// What the app can see.
    #[serde(default)]
    pub shares: Vec<Share>,
}

/// `POST /apps`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CreateAppRequest {
    /// New UID (client-made).
    pub uid: String,
    /// GCM(dataKey, appKey).
    pub key: String,
    /// GCM(appKey, app data JSON).
    pub data: String,
}

/// What a share points at.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// A shared folder (root) and everything in it.
    Folder,
    /// One record.
    Record,
}

/// A folder or record shared with an app.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Share {
    /// Shared folder or record UID.
    pub target_uid: String,
    /// Folder or record.
    pub kind: ShareKind,
    /// GCM(appKey, folder or record key).
    pub key: String,
    /// Whether devices of the app may change it.
    pub editable: bool,
}

/// `PUT /apps/{uid}/shares`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ShareRequest {
    /// Shared folder or record UID.
    pub target_uid: String,
    /// GCM(appKey, folder or record key).
    pub key: String,
    /// Editable or read-only.
    pub editable: bool,
}

/// A client device of an app.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Client {
    /// B64 client id.
    pub client_id: String,
    /// GCM(appKey, name), B64.
    pub name: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// The token must be used before this time (ms), if set.
    pub first_access_expires_at: Option<i64>,
    /// Once bound, only usable from the IP that bound it.
    pub ip_lock: bool,
    /// When the token was redeemed.
    pub bound_at: Option<i64>,
    /// The IP that redeemed it.
    pub bound_ip: Option<String>,
    /// Last successful request, ms.
    pub last_access_at: Option<i64>,
}

/// `POST /apps/{uid}/clients`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AddClientRequest {
    /// B64 client id computed from the client key.
    pub client_id: String,
    /// B64 of GCM(clientKey, appKey).
    pub encrypted_app_key: String,
    /// GCM(appKey, name), B64.
    pub name: String,
    /// Expiry of the first access, ms.
    #[serde(default)]
    pub first_access_expires_at: Option<i64>,
    /// Lock the device to the IP that binds it.
    pub ip_lock: bool,
}

/// An audit event.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Sequence number.
    pub id: i64,
    /// Time, ms.
    pub at: i64,
    /// `owner:<uid>` or `client:<client id>`.
    pub actor: String,
    /// What happened, e.g. `record.create`, `client.bind`, `client.refused`.
    pub action: String,
    /// UID the action was about.
    pub target: Option<String>,
    /// Source address.
    pub ip: Option<String>,
    /// Extra non-secret detail.
    pub detail: Option<String>,
}

/// `{"uid": …}` answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UidResponse {
    /// The UID.
    pub uid: String,
}

/// `PUT /records/{uid}`: replace a record's data.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UpdateRecordRequest {
    /// GCM(recordKey, record JSON).
    pub data: String,
    /// The revision the new data was made from.
    pub revision: i64,
    /// Attachments to delete with this change.
    #[serde(default)]
    pub remove_files: Vec<String>,
}

/// `{"revision": …}` answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RevisionResponse {
    /// The record's revision after the change.
    pub revision: i64,
}

/// One entry of `GET /records/{uid}/history`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct HistoryEntry {
    /// Revision.
    pub revision: i64,
    /// GCM(recordKey, record JSON) of that revision.
    pub data: String,
    /// Who wrote it.
    pub actor: String,
    /// When, ms.
    pub at: i64,
}

/// `POST /records/{uid}/restore`: make an old revision current again (as a new revision).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RestoreRequest {
    /// The revision to restore.
    pub revision: i64,
    /// The current revision the owner saw.
    pub expected_revision: i64,
}

/// `POST /folders/{uid}/rename`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RenameFolderRequest {
    /// CBC(folderKey, `{"name": …}`).
    pub data: String,
}

/// `POST /folders/{uid}/delete`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeleteFolderRequest {
    /// Delete a non-empty folder with everything in it.
    #[serde(default)]
    pub force: bool,
}

/// What a deletion removed.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct RemovedResponse {
    /// Records deleted.
    pub records: Vec<String>,
    /// Folders deleted.
    pub folders: Vec<String>,
    /// Files deleted.
    pub files: Vec<String>,
}
