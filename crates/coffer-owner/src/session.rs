//! A logged-in owner: decrypted account keys plus typed vault operations.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_crypto::{
    KeyPair, SymmetricKey, cbc_open, cbc_seal, decode_lenient, derive_client_id, encode_std,
    encode_url, gcm_open, gcm_seal, make_uid,
};
use coffer_proto::owner::{
    AddClientRequest, App, AttachFileRequest, AttachFileResponse, AuditEvent, Client,
    CreateAppRequest, CreateFolderRequest, CreateRecordRequest, DeleteFolderRequest, Folder,
    HistoryEntry, LoginRequest, LoginResponse, PreloginRequest, PreloginResponse, Record,
    RegisterRequest, RemovedResponse, RenameFolderRequest, RestoreRequest, RevisionResponse,
    ServerInfo, Share, ShareKind, ShareRequest, UidResponse, UpdateRecordRequest,
};
use coffer_proto::record::{Field, RecordData};
use serde_json::{Value, json};

use zeroize::Zeroizing;

use crate::keys::{MasterKeys, derive_master_keys, new_kdf_params};
use crate::{OwnerClient, OwnerError, OwnerResult};

/// A logged-in owner.
pub struct Session {
    client: OwnerClient,
    token: String,
    expires_at: i64,
    owner_uid: String,
    email: String,
    data_key: SymmetricKey,
    key_pair: KeyPair,
}

/// A decrypted folder.
#[derive(Debug, Clone)]
pub struct FolderView {
    /// UID.
    pub uid: String,
    /// Parent folder, none for a shared folder.
    pub parent_uid: Option<String>,
    /// Shared folder at the root of its tree.
    pub root_uid: String,
    /// Name.
    pub name: String,
    /// The folder's own key.
    pub key: SymmetricKey,
}

/// A decrypted file attachment.
#[derive(Debug, Clone)]
pub struct FileView {
    /// File UID.
    pub uid: String,
    /// Metadata (`name`, `title`, `size`, `type`, `lastModified`).
    pub meta: Value,
    /// Encrypted size.
    pub size: i64,
    /// The file key.
    pub key: SymmetricKey,
}

/// A decrypted record.
#[derive(Debug, Clone)]
pub struct RecordView {
    /// UID.
    pub uid: String,
    /// Folder that directly contains it.
    pub folder_uid: String,
    /// Its shared folder.
    pub root_folder_uid: String,
    /// Revision.
    pub revision: i64,
    /// Content.
    pub data: RecordData,
    /// Attachments.
    pub files: Vec<FileView>,
    /// The record key.
    pub key: SymmetricKey,
}

/// A decrypted application.
#[derive(Debug, Clone)]
pub struct AppView {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// What it can see.
    pub shares: Vec<Share>,
    /// The app key.
    pub key: SymmetricKey,
}

/// A client device as the owner sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientView {
    /// Client id.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Whether the one-time token was redeemed.
    pub bound: bool,
    /// Creation time, ms.
    pub created_at: i64,
    /// First-access deadline, ms.
    pub first_access_expires_at: Option<i64>,
    /// Locked to the binding IP.
    pub ip_lock: bool,
    /// Binding IP.
    pub bound_ip: Option<String>,
    /// Last access, ms.
    pub last_access_at: Option<i64>,
}

/// Options of [`Session::add_client`].
#[derive(Debug, Clone, Default)]
pub struct NewClientOptions {
    /// Display name.
    pub name: Option<String>,
    /// The token must be used within this time.
    pub first_access_expires: Option<Duration>,
    /// Lock the device to the IP it binds from (default on).
    pub unlock_ip: bool,
}

/// A new one-time token and the matching KSM configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewClient {
    /// `host:clientKey` (the form the official tools accept; carries no port).
    pub token: String,
    /// The client id the server knows the device by.
    pub client_id: String,
    /// Base64 of the KSM config JSON (`hostname`, `clientKey`, `serverPublicKeyId`,
    /// `serverPublicKey`) that `KSM_CONFIG` and every official SDK accept.
    pub config: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn b64(field: &'static str, text: &str) -> OwnerResult<Vec<u8>> {
    decode_lenient(text).map_err(|_| OwnerError::Decrypt(field))
}

fn changed_kdf() -> OwnerError {
    OwnerError::Invalid(
        "the server answered other key-derivation parameters at login than before it; refusing \
         to go on"
            .into(),
    )
}

fn open_key(wrapping: &SymmetricKey, what: &'static str, text: &str) -> OwnerResult<SymmetricKey> {
    let plain = Zeroizing::new(
        gcm_open(wrapping, &b64(what, text)?).map_err(|_| OwnerError::Decrypt(what))?,
    );
    SymmetricKey::from_slice(&plain).map_err(|_| OwnerError::Decrypt(what))
}

fn folder_name_data(key: &SymmetricKey, name: &str) -> String {
    encode_std(&cbc_seal(
        key,
        json!({ "name": name }).to_string().as_bytes(),
    ))
}

impl Session {
    /// Registers the first owner of a server with its setup code, and logs in.
    pub async fn register(
        client: OwnerClient,
        email: &str,
        password: &str,
        setup_code: &str,
    ) -> OwnerResult<Self> {
        check_password(password)?;
        let kdf = new_kdf_params();
        let master = derive_master_keys(password, &kdf)?;
        let data_key = SymmetricKey::generate();
        let key_pair = KeyPair::generate();
        let request = RegisterRequest {
            email: email.to_owned(),
            setup_code: Some(setup_code.trim().to_owned()),
            invite_code: None,
            kdf,
            auth_key: encode_std(master.auth_key.expose()),
            encrypted_data_key: encode_std(&gcm_seal(&master.encryption_key, data_key.expose())),
            public_key: encode_std(key_pair.public_key().as_bytes()),
            encrypted_private_key: encode_std(&gcm_seal(&data_key, key_pair.expose_scalar())),
        };
        let login: LoginResponse = client.send_json(false, "/register", None, &request).await?;
        if login.account.kdf != request.kdf {
            return Err(changed_kdf());
        }
        Self::from_login(client, login, &master)
    }

    /// Logs in with email and master password.
    pub async fn login(client: OwnerClient, email: &str, password: &str) -> OwnerResult<Self> {
        let pre: PreloginResponse = client
            .send_json(
                false,
                "/prelogin",
                None,
                &PreloginRequest {
                    email: email.to_owned(),
                },
            )
            .await?;
        let master = derive_master_keys(password, &pre.kdf)?;
        let login: LoginResponse = client
            .send_json(
                false,
                "/login",
                None,
                &LoginRequest {
                    email: email.to_owned(),
                    auth_key: encode_std(master.auth_key.expose()),
                },
            )
            .await?;
        // The keys that proved the password are the ones that unlock the account: a server
        // answering other parameters now would be steering two different derivations.
        if login.account.kdf != pre.kdf {
            return Err(changed_kdf());
        }
        Self::from_login(client, login, &master)
    }

    /// Resumes a saved session token; the password unlocks the keys locally.
    pub async fn resume(
        client: OwnerClient,
        token: &str,
        expires_at: i64,
        password: &str,
    ) -> OwnerResult<Self> {
        let account: coffer_proto::owner::Account = client.get("/account", Some(token)).await?;
        let master = derive_master_keys(password, &account.kdf)?;
        Self::from_login(
            client,
            LoginResponse {
                session_token: token.to_owned(),
                expires_at,
                account,
            },
            &master,
        )
    }

    fn from_login(
        client: OwnerClient,
        login: LoginResponse,
        master: &MasterKeys,
    ) -> OwnerResult<Self> {
        let account = login.account;
        let data_key = open_key(
            &master.encryption_key,
            "the data key",
            &account.encrypted_data_key,
        )?;
        let scalar = Zeroizing::new(
            gcm_open(
                &data_key,
                &b64("the private key", &account.encrypted_private_key)?,
            )
            .map_err(|_| OwnerError::Decrypt("the private key"))?,
        );
        let scalar: Zeroizing<[u8; 32]> = Zeroizing::new(
            scalar
                .as_slice()
                .try_into()
                .map_err(|_| OwnerError::Decrypt("the private key"))?,
        );
        let key_pair =
            KeyPair::from_scalar(&scalar).map_err(|_| OwnerError::Decrypt("the private key"))?;
        // Devices wrap the keys of what they create to the public key the server hands them
        // as the owner's: it must be the one that belongs to this private key.
        if b64("the public key", &account.public_key)? != key_pair.public_key().as_bytes() {
            return Err(OwnerError::Invalid(
                "the server holds a public key for this account that does not match the \
                 account's private key: devices would wrap new records to someone else's key. \
                 Treat the server's database as tampered with and restore it from a backup."
                    .into(),
            ));
        }
        Ok(Self {
            client,
            token: login.session_token,
            expires_at: login.expires_at,
            owner_uid: account.uid,
            email: account.email,
            data_key,
            key_pair,
        })
    }

    /// The bearer token (to save for later commands).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Session expiry, ms.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The owner's UID.
    pub fn owner_uid(&self) -> &str {
        &self.owner_uid
    }

    /// The owner's public key (devices encrypt the keys of records they create to it).
    pub fn public_key(&self) -> &coffer_crypto::PublicKey {
        self.key_pair.public_key()
    }

    /// The owner's email.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The transport.
    pub fn client(&self) -> &OwnerClient {
        &self.client
    }

    /// Ends the session on the server.
    pub async fn logout(self) -> OwnerResult<()> {
        let _: Value = self
            .client
            .send_json(false, "/logout", Some(&self.token), &json!({}))
            .await?;
        Ok(())
    }

    // ---- folders ---------------------------------------------------------------------

    /// All folders, decrypted, each shared folder before its descendants.
    pub async fn folders(&self) -> OwnerResult<Vec<FolderView>> {
        let rows: Vec<Folder> = self.client.get("/folders", Some(&self.token)).await?;
        let mut keys: HashMap<String, (SymmetricKey, String)> = HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (key, root_uid) = match &row.parent_uid {
                None => (
                    open_key(&self.data_key, "a folder key", &row.key)?,
                    row.uid.clone(),
                ),
                Some(parent) => {
                    let (_, root_uid) = keys
                        .get(parent)
                        .ok_or(OwnerError::Decrypt("the folder tree"))?
                        .clone();
                    let (root_key, _) = keys
                        .get(&root_uid)
                        .ok_or(OwnerError::Decrypt("the folder tree"))?;
                    let plain = Zeroizing::new(
                        cbc_open(root_key, &b64("a folder key", &row.key)?)
                            .map_err(|_| OwnerError::Decrypt("a folder key"))?,
                    );
                    let key = SymmetricKey::from_slice(&plain)
                        .map_err(|_| OwnerError::Decrypt("a folder key"))?;
                    (key, root_uid)
                }
            };
            let name = cbc_open(&key, &b64("a folder name", &row.data)?)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                .ok_or(OwnerError::Decrypt("a folder name"))?;
            keys.insert(row.uid.clone(), (key.clone(), root_uid.clone()));
            out.push(FolderView {
                uid: row.uid,
                parent_uid: row.parent_uid,
                root_uid,
                name,
                key,
            });
        }
        Ok(out)
    }

    async fn folder(&self, uid: &str) -> OwnerResult<(FolderView, Vec<FolderView>)> {
        let all = self.folders().await?;
        let folder = all
            .iter()
            .find(|f| f.uid == uid)
            .cloned()
            .ok_or_else(|| OwnerError::Invalid(format!("no folder {uid} in your vault")))?;
        Ok((folder, all))
    }

    /// Creates a shared folder (no parent) or a sub-folder; returns its UID.
    pub async fn create_folder(&self, name: &str, parent: Option<&str>) -> OwnerResult<String> {
        let key = SymmetricKey::generate();
        let wrapped = match parent {
            None => gcm_seal(&self.data_key, key.expose()),
            Some(parent) => {
                let (parent, all) = self.folder(parent).await?;
                let root = all
                    .iter()
                    .find(|f| f.uid == parent.root_uid)
                    .ok_or(OwnerError::Decrypt("the folder tree"))?;
                cbc_seal(&root.key, key.expose())
            }
        };
        let request = CreateFolderRequest {
            uid: make_uid(),
            parent_uid: parent.map(str::to_owned),
            key: encode_std(&wrapped),
            data: folder_name_data(&key, name),
        };
        let answer: UidResponse = self
            .client
            .send_json(false, "/folders", Some(&self.token), &request)
            .await?;
        Ok(answer.uid)
    }

    // ---- records ---------------------------------------------------------------------

    fn record_view(
        &self,
        row: Record,
        root_keys: &HashMap<String, SymmetricKey>,
    ) -> OwnerResult<RecordView> {
        let root_key = root_keys
            .get(&row.root_folder_uid)
            .ok_or(OwnerError::Decrypt("a record's folder key"))?;
        let key = open_key(root_key, "a record key", &row.key)?;
        let plain = gcm_open(&key, &b64("a record", &row.data)?)
            .map_err(|_| OwnerError::Decrypt("a record"))?;
        let data = RecordData::from_slice(&plain).map_err(|_| OwnerError::Decrypt("a record"))?;
        let mut files = Vec::new();
        for file in row.files {
            let file_key = open_key(&key, "a file key", &file.key)?;
            let meta = gcm_open(&file_key, &b64("file metadata", &file.data)?)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or(OwnerError::Decrypt("file metadata"))?;
            files.push(FileView {
                uid: file.uid,
                meta,
                size: file.size,
                key: file_key,
            });
        }
        Ok(RecordView {
            uid: row.uid,
            folder_uid: row.folder_uid,
            root_folder_uid: row.root_folder_uid,
            revision: row.revision,
            data,
            files,
            key,
        })
    }

    async fn root_keys(&self) -> OwnerResult<HashMap<String, SymmetricKey>> {
        Ok(self
            .folders()
            .await?
            .into_iter()
            .filter(|f| f.parent_uid.is_none())
            .map(|f| (f.uid, f.key))
            .collect())
    }

    /// All records, decrypted.
    pub async fn records(&self) -> OwnerResult<Vec<RecordView>> {
        let roots = self.root_keys().await?;
        let rows: Vec<Record> = self.client.get("/records", Some(&self.token)).await?;
        rows.into_iter()
            .map(|row| self.record_view(row, &roots))
            .collect()
    }

    /// One record, decrypted.
    pub async fn record(&self, uid: &str) -> OwnerResult<RecordView> {
        let roots = self.root_keys().await?;
        let row: Record = self
            .client
            .get(&format!("/records/{uid}"), Some(&self.token))
            .await?;
        self.record_view(row, &roots)
    }

    /// Adds a record to a folder; returns its UID.
    pub async fn add_record(&self, folder_uid: &str, data: &RecordData) -> OwnerResult<String> {
        validate_record(data)?;
        let (folder, all) = self.folder(folder_uid).await?;
        let root = all
            .iter()
            .find(|f| f.uid == folder.root_uid)
            .ok_or(OwnerError::Decrypt("the folder tree"))?;
        let record_key = SymmetricKey::generate();
        let request = CreateRecordRequest {
            uid: make_uid(),
            folder_uid: folder.uid.clone(),
            key: encode_std(&gcm_seal(&root.key, record_key.expose())),
            data: encode_std(&gcm_seal(&record_key, &data.to_vec())),
        };
        let answer: UidResponse = self
            .client
            .send_json(false, "/records", Some(&self.token), &request)
            .await?;
        Ok(answer.uid)
    }

    /// Attaches a file to a record (encrypting name, metadata and content); returns its UID.
    pub async fn attach_file(
        &self,
        record_uid: &str,
        name: &str,
        mime: &str,
        content: &[u8],
    ) -> OwnerResult<String> {
        let record = self.record(record_uid).await?;
        let file_uid = make_uid();
        let file_key = SymmetricKey::generate();
        let meta = json!({
            "name": name,
            "title": name,
            "size": content.len(),
            "type": mime,
            "lastModified": now_ms(),
        });
        let encrypted = gcm_seal(&file_key, content);
        let mut data = record.data.clone();
        match data.fields.iter_mut().find(|f| f.field_type == "fileRef") {
            Some(field) => field.value.push(Value::from(file_uid.clone())),
            None => data
                .fields
                .push(Field::new("fileRef", vec![Value::from(file_uid.clone())])),
        }
        let request = AttachFileRequest {
            uid: file_uid.clone(),
            key: encode_std(&gcm_seal(&record.key, file_key.expose())),
            data: encode_std(&gcm_seal(&file_key, meta.to_string().as_bytes())),
            size: encrypted.len() as i64,
            record_data: encode_std(&gcm_seal(&record.key, &data.to_vec())),
            record_revision: record.revision,
        };
        let answer: AttachFileResponse = self
            .client
            .send_json(
                false,
                &format!("/records/{record_uid}/files"),
                Some(&self.token),
                &request,
            )
            .await?;
        let _: UidResponse = self.client.put_bytes(&answer.upload_url, encrypted).await?;
        Ok(file_uid)
    }

    /// Downloads and decrypts an attachment.
    pub async fn download_file(&self, file: &FileView) -> OwnerResult<Vec<u8>> {
        let bytes = self
            .client
            .get_bytes(
                &format!("/files/{}/content", file.uid),
                &self.token,
                u64::try_from(file.size).unwrap_or(0),
            )
            .await?;
        gcm_open(&file.key, &bytes).map_err(|_| OwnerError::Decrypt("a file"))
    }

    /// Replaces a record's content; `revision` must be the one it was read at. Returns the new
    /// revision.
    pub async fn update_record(
        &self,
        uid: &str,
        data: &RecordData,
        revision: i64,
    ) -> OwnerResult<i64> {
        self.update_record_removing(uid, data, revision, &[]).await
    }

    async fn update_record_removing(
        &self,
        uid: &str,
        data: &RecordData,
        revision: i64,
        remove_files: &[String],
    ) -> OwnerResult<i64> {
        validate_record(data)?;
        let record = self.record(uid).await?;
        let request = UpdateRecordRequest {
            data: encode_std(&gcm_seal(&record.key, &data.to_vec())),
            revision,
            remove_files: remove_files.to_vec(),
        };
        let answer: RevisionResponse = self
            .client
            .send_json(
                true,
                &format!("/records/{uid}"),
                Some(&self.token),
                &request,
            )
            .await?;
        Ok(answer.revision)
    }

    /// Deletes an attachment and its reference in the record's `fileRef` fields.
    pub async fn remove_file(&self, record_uid: &str, file_uid: &str) -> OwnerResult<i64> {
        let record = self.record(record_uid).await?;
        if !record.files.iter().any(|f| f.uid == file_uid) {
            return Err(OwnerError::Invalid(format!(
                "record {record_uid} has no attachment {file_uid}"
            )));
        }
        let mut data = record.data.clone();
        for field in data.fields.iter_mut().chain(data.custom.iter_mut()) {
            if field.field_type == "fileRef" {
                field.value.retain(|v| v.as_str() != Some(file_uid));
            }
        }
        self.update_record_removing(record_uid, &data, record.revision, &[file_uid.to_owned()])
            .await
    }

    /// Deletes a record with its attachments and history.
    pub async fn delete_record(&self, uid: &str) -> OwnerResult<RemovedResponse> {
        self.client
            .send_json(
                false,
                &format!("/records/{uid}/delete"),
                Some(&self.token),
                &json!({}),
            )
            .await
    }

    /// Every revision of a record, newest first, decrypted.
    pub async fn record_history(&self, uid: &str) -> OwnerResult<Vec<(HistoryEntry, RecordData)>> {
        let record = self.record(uid).await?;
        let entries: Vec<HistoryEntry> = self
            .client
            .get(&format!("/records/{uid}/history"), Some(&self.token))
            .await?;
        entries
            .into_iter()
            .map(|entry| {
                let plain = gcm_open(&record.key, &b64("a record revision", &entry.data)?)
                    .map_err(|_| OwnerError::Decrypt("a record revision"))?;
                let data = RecordData::from_slice(&plain)
                    .map_err(|_| OwnerError::Decrypt("a record revision"))?;
                Ok((entry, data))
            })
            .collect()
    }

    /// Makes an old revision current again (as a new revision). Returns the new revision.
    pub async fn restore_record(&self, uid: &str, revision: i64) -> OwnerResult<i64> {
        let current = self.record(uid).await?;
        let answer: RevisionResponse = self
            .client
            .send_json(
                false,
                &format!("/records/{uid}/restore"),
                Some(&self.token),
                &RestoreRequest {
                    revision,
                    expected_revision: current.revision,
                },
            )
            .await?;
        Ok(answer.revision)
    }

    /// Renames a folder.
    pub async fn rename_folder(&self, uid: &str, name: &str) -> OwnerResult<()> {
        let (folder, _) = self.folder(uid).await?;
        let _: Value = self
            .client
            .send_json(
                false,
                &format!("/folders/{uid}/rename"),
                Some(&self.token),
                &RenameFolderRequest {
                    data: folder_name_data(&folder.key, name),
                },
            )
            .await?;
        Ok(())
    }

    /// Deletes a folder; a non-empty one only with `force` (then with everything in it).
    pub async fn delete_folder(&self, uid: &str, force: bool) -> OwnerResult<RemovedResponse> {
        self.client
            .send_json(
                false,
                &format!("/folders/{uid}/delete"),
                Some(&self.token),
                &DeleteFolderRequest { force },
            )
            .await
    }

    // ---- applications ------------------------------------------------------------------

    /// All applications, decrypted.
    pub async fn apps(&self) -> OwnerResult<Vec<AppView>> {
        let rows: Vec<App> = self.client.get("/apps", Some(&self.token)).await?;
        rows.into_iter()
            .map(|row| {
                let key = open_key(&self.data_key, "an app key", &row.key)?;
                let data = gcm_open(&key, &b64("app data", &row.data)?)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                    .ok_or(OwnerError::Decrypt("app data"))?;
                Ok(AppView {
                    uid: row.uid,
                    name: data["title"].as_str().unwrap_or_default().to_owned(),
                    shares: row.shares,
                    key,
                })
            })
            .collect()
    }

    async fn app(&self, uid: &str) -> OwnerResult<AppView> {
        self.apps()
            .await?
            .into_iter()
            .find(|a| a.uid == uid)
            .ok_or_else(|| OwnerError::Invalid(format!("no application {uid} in your vault")))
    }

    /// Creates an application; returns its UID.
    pub async fn create_app(&self, name: &str) -> OwnerResult<String> {
        let app_key = SymmetricKey::generate();
        let request = CreateAppRequest {
            uid: make_uid(),
            key: encode_std(&gcm_seal(&self.data_key, app_key.expose())),
            data: encode_std(&gcm_seal(
                &app_key,
                json!({ "title": name, "type": "app" })
                    .to_string()
                    .as_bytes(),
            )),
        };
        let answer: UidResponse = self
            .client
            .send_json(false, "/apps", Some(&self.token), &request)
            .await?;
        Ok(answer.uid)
    }

    /// Shares a shared folder or a record with an application (or changes the permission).
    pub async fn share(
        &self,
        app_uid: &str,
        target_uid: &str,
        editable: bool,
    ) -> OwnerResult<ShareKind> {
        let app = self.app(app_uid).await?;
        let folders = self.folders().await?;
        let target_key = match folders.iter().find(|f| f.uid == target_uid) {
            Some(folder) if folder.parent_uid.is_some() => {
                return Err(OwnerError::Invalid(format!(
                    "{target_uid} is a sub-folder; share its shared folder {} or single records",
                    folder.root_uid
                )));
            }
            Some(folder) => folder.key.clone(),
            None => self.record(target_uid).await?.key,
        };
        let request = ShareRequest {
            target_uid: target_uid.to_owned(),
            key: encode_std(&gcm_seal(&app.key, target_key.expose())),
            editable,
        };
        let share: Share = self
            .client
            .send_json(
                true,
                &format!("/apps/{app_uid}/shares"),
                Some(&self.token),
                &request,
            )
            .await?;
        Ok(share.kind)
    }

    /// Stops sharing a folder or record with an application.
    pub async fn unshare(&self, app_uid: &str, target_uid: &str) -> OwnerResult<()> {
        let _: Value = self
            .client
            .send_json(
                false,
                &format!("/apps/{app_uid}/shares/remove"),
                Some(&self.token),
                &json!({ "target_uid": target_uid }),
            )
            .await?;
        Ok(())
    }

    /// Creates a one-time token for a new client device of an application.
    pub async fn add_client(
        &self,
        app_uid: &str,
        options: &NewClientOptions,
    ) -> OwnerResult<NewClient> {
        let app = self.app(app_uid).await?;
        let info: ServerInfo = self.client.info().await?;
        let client_key = SymmetricKey::generate();
        let client_id = derive_client_id(client_key.expose());
        let name = options.name.clone().unwrap_or_else(|| "client".to_owned());
        let request = AddClientRequest {
            client_id: client_id.clone(),
            encrypted_app_key: encode_std(&gcm_seal(&client_key, app.key.expose())),
            name: encode_std(&gcm_seal(&app.key, name.as_bytes())),
            first_access_expires_at: options
                .first_access_expires
                .map(|d| now_ms() + d.as_millis() as i64),
            ip_lock: !options.unlock_ip,
        };
        let _: Client = self
            .client
            .send_json(
                false,
                &format!("/apps/{app_uid}/clients"),
                Some(&self.token),
                &request,
            )
            .await?;
        let key_text = encode_url(client_key.expose());
        let host_name = host_without_port(&info.public_host);
        let config = json!({
            "hostname": info.public_host,
            "clientKey": key_text,
            "serverPublicKeyId": info.key_id.to_string(),
            "serverPublicKey": info.public_key,
        });
        Ok(NewClient {
            token: format!("{host_name}:{key_text}"),
            client_id,
            config: encode_std(config.to_string().as_bytes()),
        })
    }

    /// The client devices of an application.
    pub async fn clients(&self, app_uid: &str) -> OwnerResult<Vec<ClientView>> {
        let app = self.app(app_uid).await?;
        let rows: Vec<Client> = self
            .client
            .get(&format!("/apps/{app_uid}/clients"), Some(&self.token))
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ClientView {
                name: decode_lenient(&row.name)
                    .ok()
                    .and_then(|bytes| gcm_open(&app.key, &bytes).ok())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_else(|| "<undecryptable>".to_owned()),
                client_id: row.client_id,
                bound: row.bound_at.is_some(),
                created_at: row.created_at,
                first_access_expires_at: row.first_access_expires_at,
                ip_lock: row.ip_lock,
                bound_ip: row.bound_ip,
                last_access_at: row.last_access_at,
            })
            .collect())
    }

    /// Revokes a client device at once.
    pub async fn remove_client(&self, app_uid: &str, client_id: &str) -> OwnerResult<()> {
        let _: Value = self
            .client
            .send_json(
                false,
                &format!("/apps/{app_uid}/clients/remove"),
                Some(&self.token),
                &json!({ "client_id": client_id }),
            )
            .await?;
        Ok(())
    }

    /// Audit events, newest first. `query` is a URL query string (`actor=…&action=…`).
    pub async fn audit(&self, query: &str) -> OwnerResult<Vec<AuditEvent>> {
        let path = if query.is_empty() {
            "/audit".to_owned()
        } else {
            format!("/audit?{query}")
        };
        self.client.get(&path, Some(&self.token)).await
    }
}

fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn check_password(password: &str) -> OwnerResult<()> {
    if password.chars().count() < 8 {
        return Err(OwnerError::Invalid(
            "the master password must have at least 8 characters".into(),
        ));
    }
    Ok(())
}

/// The checks the official record builders make (PROTOCOL.md §6.1).
pub fn validate_record(data: &RecordData) -> OwnerResult<()> {
    if data.title.trim().is_empty() {
        return Err(OwnerError::Invalid("a record needs a title".into()));
    }
    if data.record_type.trim().is_empty() {
        return Err(OwnerError::Invalid("a record needs a type".into()));
    }
    for field in data.fields.iter().chain(&data.custom) {
        if field.field_type.trim().is_empty() {
            return Err(OwnerError::Invalid("every field needs a type".into()));
        }
    }
    Ok(())
}
