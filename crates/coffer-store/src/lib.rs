//! Coffer's storage interface.
//!
//! The server talks to its database only through [`Store`]. Implementations: SQLite
//! (`coffer-store-sqlite`, the embedded default) and PostgreSQL (scale-out). Every value that
//! is a key or secret data is **ciphertext made by a client**, stored as opaque bytes; the store
//! never interprets it. Times are milliseconds since the Unix epoch.
//!
//! # Contract every implementation keeps
//!
//! * Each method is atomic: it either fully happens or not at all, and once it returns `Ok` the
//!   change is durable (survives a crash or power loss).
//! * Conditional writes ([`Store::bind_device`], [`Store::update_record`], the transaction
//!   methods,
//!   [`Store::complete_upload`], the `create_*` methods) are decided inside the database, so
//!   that several server processes sharing one database agree: exactly one of two racing
//!   callers wins.
//! * `NotFound` is returned only where the method says so; "no rows" on a list is an empty
//!   list.

use async_trait::async_trait;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// A unique key already exists (UID reuse, second registration, …).
    #[error("already exists")]
    Conflict,
    /// A conditional write lost: stale revision, token already used, …
    #[error("precondition failed: {0}")]
    Precondition(&'static str),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// An owner account. Keys are wrapped client-side; `auth_hash` is a PHC string.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerRow {
    /// Owner UID.
    pub uid: String,
    /// Login name, unique (stored lower-cased).
    pub email: String,
    /// KDF parameters as JSON text (non-secret).
    pub kdf: String,
    /// Argon2id PHC hash of the auth key.
    pub auth_hash: String,
    /// GCM(encryptionKey, dataKey).
    pub encrypted_data_key: Vec<u8>,
    /// P-256 public key (65 bytes).
    pub public_key: Vec<u8>,
    /// GCM(dataKey, private scalar).
    pub encrypted_private_key: Vec<u8>,
    /// Creation time.
    pub created_at: Millis,
}

/// An owner session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// SHA-256 of the bearer token (the token itself is never stored).
    pub token_hash: Vec<u8>,
    /// Owner it belongs to.
    pub owner_uid: String,
    /// Expiry.
    pub expires_at: Millis,
}

/// A folder: shared folder (`parent_uid` none, `root_uid == uid`) or sub-folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderRow {
    /// Folder UID.
    pub uid: String,
    /// Owning account.
    pub owner_uid: String,
    /// Direct parent, none for a shared folder.
    pub parent_uid: Option<String>,
    /// The shared folder at the top of this folder's tree (itself for a shared folder).
    pub root_uid: String,
    /// Shared folder: GCM(dataKey, key); sub-folder: CBC(rootKey, key).
    pub key: Vec<u8>,
    /// CBC(own key, `{"name": …}`).
    pub data: Vec<u8>,
    /// Creation time.
    pub created_at: Millis,
}

/// A record. It always lives in a folder tree (`root_folder_uid`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    /// Record UID.
    pub uid: String,
    /// Owning account.
    pub owner_uid: String,
    /// Shared folder at the root of its location.
    pub root_folder_uid: String,
    /// Folder that directly contains it (the root itself or a sub-folder).
    pub folder_uid: String,
    /// GCM(rootFolderKey, recordKey).
    pub key: Vec<u8>,
    /// ECIES(ownerPublicKey, recordKey), for records created by devices.
    pub owner_key: Option<Vec<u8>>,
    /// GCM(recordKey, record JSON).
    pub data: Vec<u8>,
    /// Revision, strictly increasing on every change.
    pub revision: i64,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A file attachment (only complete uploads are visible).
#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    /// File UID.
    pub uid: String,
    /// The record it is attached to.
    pub record_uid: String,
    /// GCM(recordKey, fileKey).
    pub key: Vec<u8>,
    /// ECIES(ownerPublicKey, fileKey), for files added by devices.
    pub owner_key: Option<Vec<u8>>,
    /// GCM(fileKey, metadata JSON).
    pub data: Vec<u8>,
    /// Size of the encrypted content in bytes.
    pub size: i64,
    /// Creation time.
    pub created_at: Millis,
}

/// A pending upload: the file row to publish and the record change that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    /// SHA-256 of the upload token.
    pub token_hash: Vec<u8>,
    /// The file to publish when the content has arrived.
    pub file: FileRow,
    /// New data of the owning record (with the file in its `fileRef` field).
    pub record_data: Vec<u8>,
    /// Record revision that new data was made from; `None` = do not check.
    pub record_revision: Option<i64>,
    /// Who started it (`owner:<uid>` or `client:<id>`), for the audit trail.
    pub actor: String,
    /// The upload must complete before this time.
    pub expires_at: Millis,
}

/// An application.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    /// App UID.
    pub uid: String,
    /// Owning account.
    pub owner_uid: String,
    /// GCM(dataKey, appKey).
    pub key: Vec<u8>,
    /// GCM(appKey, app data JSON).
    pub data: Vec<u8>,
    /// Creation time.
    pub created_at: Millis,
}

/// What a share points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareKind {
    /// A shared folder and its whole tree.
    Folder,
    /// A single record.
    Record,
}

impl ShareKind {
    /// Stable text form for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareKind::Folder => "folder",
            ShareKind::Record => "record",
        }
    }

    /// Parses [`ShareKind::as_str`].
    pub fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "folder" => Ok(ShareKind::Folder),
            "record" => Ok(ShareKind::Record),
            _ => Err(StoreError::Backend(format!("unknown share kind {s:?}"))),
        }
    }
}

/// A folder or record shared with an app.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRow {
    /// The app.
    pub app_uid: String,
    /// Shared folder UID or record UID.
    pub target_uid: String,
    /// Folder or record.
    pub kind: ShareKind,
    /// GCM(appKey, folder or record key).
    pub key: Vec<u8>,
    /// Devices may change it.
    pub editable: bool,
}

/// A client device (one per one-time token).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// B64 client id (HMAC of the client key), compared as an exact string.
    pub client_id: String,
    /// The app it belongs to.
    pub app_uid: String,
    /// GCM(appKey, name).
    pub name: Vec<u8>,
    /// GCM(clientKey, appKey).
    pub encrypted_app_key: Vec<u8>,
    /// The device's P-256 public key once bound.
    pub public_key: Option<Vec<u8>>,
    /// The token must be redeemed before this time.
    pub first_access_expires_at: Option<Millis>,
    /// Once bound, only usable from `bound_ip`.
    pub ip_lock: bool,
    /// When it was bound.
    pub bound_at: Option<Millis>,
    /// Address that bound it.
    pub bound_ip: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last successful request.
    pub last_access_at: Option<Millis>,
}

/// Outcome of [`Store::bind_device`].
#[derive(Debug, Clone, PartialEq)]
pub enum BindOutcome {
    /// This call bound the device.
    Bound,
    /// Already bound to the same public key (a repeated binding).
    AlreadyBoundSameKey,
    /// Already bound to a different key: refuse.
    AlreadyBoundOtherKey,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// Time.
    pub at: Millis,
    /// Owner whose vault this concerns (events are listed per owner).
    pub owner_uid: Option<String>,
    /// `owner:<uid>` or `client:<client id>`.
    pub actor: String,
    /// Dotted action name.
    pub action: String,
    /// UID the action was about.
    pub target: Option<String>,
    /// Source address.
    pub ip: Option<String>,
    /// Extra non-secret detail.
    pub detail: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Sequence number (increasing).
    pub id: i64,
    /// The event.
    pub event: NewAuditEvent,
}

/// Filter for [`Store::list_audit`]; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only events of this owner's vault.
    pub owner_uid: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this prefix.
    pub action_prefix: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Millis>,
    /// Only events with an id below this (paging backwards).
    pub before_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// How a record update is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdate {
    /// The record.
    pub uid: String,
    /// The revision the writer read; the update only happens if it is still current.
    pub expected_revision: i64,
    /// New data (GCM(recordKey, JSON)).
    pub data: Vec<u8>,
    /// File UIDs to detach and delete.
    pub remove_files: Vec<String>,
    /// Open a transaction instead of committing outright.
    pub transaction: Option<TransactionStart>,
    /// `owner:<uid>` or `client:<id>`.
    pub actor: String,
    /// Time of the change.
    pub now: Millis,
}

/// A transaction to open with an update (PROTOCOL.md §5.3: `general` or `rotation`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionStart {
    /// `general` or `rotation`.
    pub kind: String,
    /// When it is rolled back automatically if nobody finalises it.
    pub expires_at: Millis,
}

/// An open transaction on a record.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRow {
    /// The record.
    pub record_uid: String,
    /// `general` or `rotation`.
    pub kind: String,
    /// Data before the transactional update.
    pub previous_data: Vec<u8>,
    /// Revision before the transactional update.
    pub previous_revision: i64,
    /// File UIDs to delete when the transaction is finalised.
    pub remove_files: Vec<String>,
    /// Who opened it.
    pub actor: String,
    /// Automatic rollback time.
    pub expires_at: Millis,
}

/// Result of a record change.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    /// The record's revision after the change.
    pub revision: i64,
    /// Files whose rows were deleted; the caller removes their content.
    pub removed_files: Vec<String>,
}

/// A past revision of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Revision number.
    pub revision: i64,
    /// Data of that revision.
    pub data: Vec<u8>,
    /// Who wrote it.
    pub actor: String,
    /// When.
    pub at: Millis,
}

/// What a deletion removed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Removed {
    /// Records deleted.
    pub records: Vec<String>,
    /// Folders deleted.
    pub folders: Vec<String>,
    /// Files deleted (the caller removes their content).
    pub files: Vec<String>,
}

/// Every row of a vault, for moving it between backends (`coffer admin migrate`). Sessions and
/// pending uploads are not included (they are short-lived); everything else is, verbatim.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Server settings (key, value).
    pub settings: Vec<(String, Vec<u8>)>,
    /// Owners.
    pub owners: Vec<OwnerRow>,
    /// Folders, each parent before its children.
    pub folders: Vec<FolderRow>,
    /// Records.
    pub records: Vec<RecordRow>,
    /// Record history: (record UID, entry).
    pub history: Vec<(String, HistoryRow)>,
    /// Open transactions.
    pub transactions: Vec<TransactionRow>,
    /// Complete files.
    pub files: Vec<FileRow>,
    /// Applications.
    pub apps: Vec<AppRow>,
    /// Shares.
    pub shares: Vec<ShareRow>,
    /// Devices.
    pub devices: Vec<DeviceRow>,
    /// Audit events, oldest first (ids are kept).
    pub audit: Vec<AuditRow>,
}

/// Everything an application can see: what [`Store::app_contents`] returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppContents {
    /// The app's shares, by target UID (as [`Store::shares_of_app`]).
    pub shares: Vec<ShareRow>,
    /// Records in the trees of the app's folder shares, by creation time, then UID.
    pub folder_records: Vec<RecordRow>,
    /// Records shared with the app directly, by creation time, then UID.
    pub direct_records: Vec<RecordRow>,
    /// Complete files of all those records, by creation time, then UID.
    pub files: Vec<FileRow>,
}

/// The storage interface. See the crate docs for the contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- server settings -------------------------------------------------------------

    /// A server setting (opaque bytes), if set.
    async fn setting(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets `key` to `value` unless it is already set; returns the value now stored. Several
    /// instances starting at once agree on one value.
    async fn setting_init(&self, key: &str, value: &[u8]) -> StoreResult<Vec<u8>>;
    /// Removes a setting (no error if absent).
    async fn setting_delete(&self, key: &str) -> StoreResult<()>;

    // ---- owners and sessions ---------------------------------------------------------

    /// Number of owner accounts.
    async fn owner_count(&self) -> StoreResult<u64>;
    /// Creates an owner. `Conflict` if the email is taken. With `first = true` the insert
    /// only happens while there is no owner at all (else `Precondition`).
    async fn create_owner(&self, owner: &OwnerRow, first: bool) -> StoreResult<()>;
    /// Looks an owner up by (lower-cased) email; `NotFound` if none.
    async fn owner_by_email(&self, email: &str) -> StoreResult<OwnerRow>;
    /// Looks an owner up by UID; `NotFound` if none.
    async fn owner(&self, uid: &str) -> StoreResult<OwnerRow>;
    /// Stores a session.
    async fn create_session(&self, session: &SessionRow) -> StoreResult<()>;
    /// The owner UID of an unexpired session; `NotFound` if unknown or expired.
    async fn session_owner(&self, token_hash: &[u8], now: Millis) -> StoreResult<String>;
    /// Deletes a session (no error if absent) and every expired session.
    async fn delete_session(&self, token_hash: &[u8], now: Millis) -> StoreResult<()>;

    // ---- folders -----------------------------------------------------------------------

    /// Creates a folder. `Conflict` if the UID names a folder or a record (the two share one UID
    /// space, since a share names its target by UID).
    async fn create_folder(&self, folder: &FolderRow) -> StoreResult<()>;
    /// A folder by UID; `NotFound` if none.
    async fn folder(&self, uid: &str) -> StoreResult<FolderRow>;
    /// All folders of an owner, each shared folder before its descendants (depth-first
    /// pre-order), siblings by creation time.
    async fn folders_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<FolderRow>>;
    /// All folders in the trees of the given shared folders, in the same order.
    async fn folders_in_roots(&self, root_uids: &[String]) -> StoreResult<Vec<FolderRow>>;

    // ---- records and files ---------------------------------------------------------------

    /// Creates a record and its first history entry. `Conflict` if the UID names a record or a
    /// folder.
    async fn create_record(&self, record: &RecordRow, actor: &str) -> StoreResult<()>;
    /// A record by UID; `NotFound` if none.
    async fn record(&self, uid: &str) -> StoreResult<RecordRow>;
    /// All records of an owner, by creation time.
    async fn records_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<RecordRow>>;
    /// All records located in the trees of the given shared folders, by creation time.
    async fn records_in_roots(&self, root_uids: &[String]) -> StoreResult<Vec<RecordRow>>;
    /// The records with the given UIDs that exist (any order).
    async fn records_by_uids(&self, uids: &[String]) -> StoreResult<Vec<RecordRow>>;
    /// Complete files of the given records, by creation time.
    async fn files_of_records(&self, record_uids: &[String]) -> StoreResult<Vec<FileRow>>;
    /// A complete file by UID; `NotFound` if none (or still uploading).
    async fn file(&self, uid: &str) -> StoreResult<FileRow>;

    // ---- uploads ---------------------------------------------------------------------------

    /// Registers a pending upload. `Conflict` if the file UID is already used (by a complete
    /// file or another pending upload).
    async fn create_upload(&self, upload: &UploadRow) -> StoreResult<()>;
    /// The unexpired pending upload of a token; `NotFound` otherwise.
    async fn upload(&self, token_hash: &[u8], now: Millis) -> StoreResult<UploadRow>;
    /// Publishes an upload in one transaction: checks the record revision (if the upload
    /// carries one; `Precondition("record is out of date")` when stale; `Precondition("transaction
    /// open")` while a transaction is open on the record), replaces the record's data, increments its
    /// revision, makes the file visible, and deletes the upload. `NotFound` if the upload is
    /// gone (used or expired). Returns the record's new revision.
    async fn complete_upload(&self, token_hash: &[u8], now: Millis) -> StoreResult<i64>;
    /// Deletes uploads that expired before `now`; returns the file UIDs they were for, so the
    /// caller can remove partial content.
    async fn expire_uploads(&self, now: Millis) -> StoreResult<Vec<String>>;

    // ---- applications and shares ------------------------------------------------------------

    /// Creates an app. `Conflict` if the UID exists.
    async fn create_app(&self, app: &AppRow) -> StoreResult<()>;
    /// An app by UID; `NotFound` if none.
    async fn app(&self, uid: &str) -> StoreResult<AppRow>;
    /// All apps of an owner, by creation time.
    async fn apps_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<AppRow>>;
    /// Creates or replaces the share of `target_uid` with an app.
    async fn put_share(&self, share: &ShareRow) -> StoreResult<()>;
    /// Removes a share; `NotFound` if there was none.
    async fn delete_share(&self, app_uid: &str, target_uid: &str) -> StoreResult<()>;
    /// All shares of an app.
    async fn shares_of_app(&self, app_uid: &str) -> StoreResult<Vec<ShareRow>>;
    /// Everything an app can see (its shares, their records and files): what `get_secret`
    /// answers from. An implementation should read it at one point in time; this default
    /// composes [`Store::shares_of_app`], [`Store::records_in_roots`],
    /// [`Store::records_by_uids`] and [`Store::files_of_records`].
    async fn app_contents(&self, app_uid: &str) -> StoreResult<AppContents> {
        let shares = self.shares_of_app(app_uid).await?;
        let targets = |kind: ShareKind| -> Vec<String> {
            shares
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| s.target_uid.clone())
                .collect()
        };
        let folder_records = self.records_in_roots(&targets(ShareKind::Folder)).await?;
        let direct_records = self.records_by_uids(&targets(ShareKind::Record)).await?;
        let mut uids: Vec<String> = folder_records
            .iter()
            .chain(&direct_records)
            .map(|r| r.uid.clone())
            .collect();
        uids.sort_unstable();
        uids.dedup();
        let files = self.files_of_records(&uids).await?;
        Ok(AppContents {
            shares,
            folder_records,
            direct_records,
            files,
        })
    }

    // ---- devices ---------------------------------------------------------------------------

    /// Creates a device (pending until bound). `Conflict` if the client id exists.
    async fn create_device(&self, device: &DeviceRow) -> StoreResult<()>;
    /// A device by client id; `NotFound` if none (revoked devices are deleted).
    async fn device(&self, client_id: &str) -> StoreResult<DeviceRow>;
    /// Binds a pending device to `public_key`, decided atomically in the database.
    async fn bind_device(
        &self,
        client_id: &str,
        public_key: &[u8],
        ip: &str,
        now: Millis,
    ) -> StoreResult<BindOutcome>;
    /// Records a successful request.
    async fn touch_device(&self, client_id: &str, now: Millis) -> StoreResult<()>;
    /// All devices of an app, by creation time.
    async fn devices_of_app(&self, app_uid: &str) -> StoreResult<Vec<DeviceRow>>;
    /// Deletes a device of an app; `NotFound` if it is not a device of that app.
    async fn delete_device(&self, app_uid: &str, client_id: &str) -> StoreResult<()>;

    // ---- record changes (write path) -----------------------------------------------------

    /// Replaces a record's data if `expected_revision` is current (`Precondition("stale")`
    /// otherwise) and no transaction is open on it (`Precondition("transaction open")`).
    /// Increments the revision and appends a history entry. Without a transaction the listed
    /// files are deleted at once (only files of this record; others are ignored); with one, the
    /// previous data and revision are kept, and the file removal waits for finalisation.
    /// `NotFound` if the record does not exist.
    async fn update_record(&self, update: &RecordUpdate) -> StoreResult<RecordChange>;
    /// The open transaction of a record; `NotFound` if none.
    async fn transaction(&self, record_uid: &str) -> StoreResult<TransactionRow>;
    /// Commits the open transaction: deletes its pending files and forgets the previous data.
    /// `NotFound` if no transaction is open. The revision does not change.
    async fn finalize_transaction(
        &self,
        record_uid: &str,
        now: Millis,
    ) -> StoreResult<RecordChange>;
    /// Rolls the open transaction back: restores the previous data as a new, higher revision
    /// (history entry by `actor`). `NotFound` if no transaction is open.
    async fn rollback_transaction(
        &self,
        record_uid: &str,
        actor: &str,
        now: Millis,
    ) -> StoreResult<RecordChange>;
    /// Rolls back every transaction that expired before `now`; returns (record UID, owner UID)
    /// of each.
    async fn expire_transactions(&self, now: Millis) -> StoreResult<Vec<(String, String)>>;
    /// Every revision of a record, newest first (the current one included).
    async fn record_history(&self, record_uid: &str) -> StoreResult<Vec<HistoryRow>>;
    /// Deletes a record with its files, pending uploads, history, transaction and direct
    /// shares. `NotFound` if it does not exist.
    async fn delete_record(&self, uid: &str) -> StoreResult<Removed>;
    /// Replaces a folder's encrypted data (its name). `NotFound` if it does not exist.
    async fn update_folder(&self, uid: &str, data: &[u8]) -> StoreResult<()>;
    /// Deletes a folder, all its sub-folders, every record in them (as [`Store::delete_record`])
    /// and, for a shared folder, its shares. `NotFound` if it does not exist. Without `force`, a
    /// folder that directly contains a record or a sub-folder (judged in the same transaction
    /// as the deletion, so a record created meanwhile is never taken along) is refused with
    /// `Precondition("folder not empty")`.
    async fn delete_folder_tree(&self, uid: &str, force: bool) -> StoreResult<Removed>;

    // ---- audit -----------------------------------------------------------------------------

    /// Appends an audit event.
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;
    /// Lists audit events, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRow>>;

    // ---- rate limiting -----------------------------------------------------------------------

    /// Counts one request against `key` in the fixed window that starts at `window_start` and
    /// returns the number of requests counted in that window, this one included. Backends that
    /// several instances share (PostgreSQL) count globally; SQLite counts in this process.
    /// Windows older than `window_start` may be forgotten.
    async fn count_request(&self, key: &str, window_start: Millis) -> StoreResult<u64>;

    // ---- whole-vault copy --------------------------------------------------------------------

    /// Reads every row (see [`Snapshot`]) in one consistent read.
    async fn export(&self) -> StoreResult<Snapshot>;
    /// Writes a snapshot into an empty store in one transaction (`Precondition("not empty")`
    /// when the store already has an owner); audit ids are kept.
    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()>;

    // ---- lifecycle -------------------------------------------------------------------------

    /// Closes the connections (checkpointing where the backend does so); later calls fail.
    async fn close(&self);
}
