//! Folders: the tree of shared folders and sub-folders (PROTOCOL.md §5.2, §5.7–§5.9).

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;

use coffer_crypto::{SymmetricKey, cbc_open, cbc_seal, decode_lenient, encode_url};

use crate::cache::CachedAnswer;
use crate::client::{DeleteOutcome, ReadRequest, SecretsManager, open_key};
use crate::error::{Result, SdkError};
use crate::wire;

/// A shared folder or a sub-folder.
#[derive(Clone)]
pub struct KeeperFolder {
    uid: String,
    parent_uid: Option<String>,
    shared_folder_uid: String,
    name: String,
    pub(crate) key: SymmetricKey,
}

impl fmt::Debug for KeeperFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeeperFolder")
            .field("uid", &self.uid)
            .field("parent_uid", &self.parent_uid)
            .field("shared_folder_uid", &self.shared_folder_uid)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KeeperFolder {
    /// The folder UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }
    /// The parent folder (`None` for a shared folder).
    pub fn parent_uid(&self) -> Option<&str> {
        self.parent_uid.as_deref()
    }
    /// The shared folder at the root of this folder's tree (itself for a shared folder).
    pub fn shared_folder_uid(&self) -> &str {
        &self.shared_folder_uid
    }
    /// True for a shared folder (a root).
    pub fn is_shared_folder(&self) -> bool {
        self.parent_uid.is_none()
    }
    /// The folder name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The answer of [`SecretsManager::get_folders`]; dereferences to the folder list.
#[derive(Debug, Clone, Default)]
pub struct Folders {
    /// Shared folders and sub-folders, each shared folder before its descendants.
    pub folders: Vec<KeeperFolder>,
    /// Set when the server was unavailable and the offline cache answered.
    pub cached: Option<CachedAnswer>,
}

impl Folders {
    /// True when this answer came from the offline cache.
    pub fn from_cache(&self) -> bool {
        self.cached.is_some()
    }
}

impl Deref for Folders {
    type Target = Vec<KeeperFolder>;
    fn deref(&self) -> &Vec<KeeperFolder> {
        &self.folders
    }
}

impl IntoIterator for Folders {
    type Item = KeeperFolder;
    type IntoIter = std::vec::IntoIter<KeeperFolder>;
    fn into_iter(self) -> Self::IntoIter {
        self.folders.into_iter()
    }
}

fn folder_name_data(key: &SymmetricKey, name: &str) -> String {
    let json = serde_json::json!({ "name": name }).to_string();
    encode_url(&cbc_seal(key, json.as_bytes()))
}

impl SecretsManager {
    /// Every shared folder of the application and all their sub-folders, with names.
    pub async fn get_folders(&self) -> Result<Folders> {
        let (plain, cached) = self
            .read(&ReadRequest {
                endpoint: "get_folders",
                body: wire::GetSecretBody::default(),
            })
            .await?;
        let response: wire::FoldersResponse = serde_json::from_slice(&plain)
            .map_err(|e| SdkError::Protocol(format!("get_folders answer: {e}")))?;
        let app_key = self.app_key()?;
        let mut out: Vec<KeeperFolder> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for folder in response.folders.unwrap_or_default() {
            let parent = folder.parent.filter(|p| !p.is_empty());
            let (key, root) = match &parent {
                None => match open_key(&app_key, &folder.folder_key) {
                    Some(key) => (key, folder.folder_uid.clone()),
                    None => {
                        tracing::warn!(folder = %folder.folder_uid, "skipping a shared folder whose key does not decrypt");
                        continue;
                    }
                },
                Some(parent) => {
                    let Some(&i) = index.get(parent) else {
                        tracing::warn!(folder = %folder.folder_uid, %parent, "skipping a folder listed before its parent");
                        continue;
                    };
                    let root_uid = out[i].shared_folder_uid.clone();
                    let root_key = &out[index[&root_uid]].key;
                    let key = decode_lenient(&folder.folder_key)
                        .ok()
                        .and_then(|b| cbc_open(root_key, &b).ok())
                        .and_then(|b| SymmetricKey::from_slice(&b).ok());
                    match key {
                        Some(key) => (key, root_uid),
                        None => {
                            tracing::warn!(folder = %folder.folder_uid, "skipping a folder whose key does not decrypt");
                            continue;
                        }
                    }
                }
            };
            let name = folder
                .data
                .as_deref()
                .and_then(|d| decode_lenient(d).ok())
                .and_then(|b| cbc_open(&key, &b).ok())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["name"].as_str().map(str::to_owned))
                .unwrap_or_default();
            index.insert(folder.folder_uid.clone(), out.len());
            out.push(KeeperFolder {
                uid: folder.folder_uid,
                parent_uid: parent,
                shared_folder_uid: root,
                name,
                key,
            });
        }
        Ok(Folders {
            folders: out,
            cached,
        })
    }

    /// Creates a sub-folder named `name` under `parent_uid` (a shared folder or a sub-folder
    /// inside one); returns its UID.
    pub async fn create_folder(&self, parent_uid: &str, name: &str) -> Result<String> {
        if name.trim().is_empty() {
            return Err(SdkError::Invalid("a folder needs a non-blank name".into()));
        }
        let folders = self.get_folders().await?;
        let parent = find(&folders, parent_uid)?;
        let root = find(&folders, parent.shared_folder_uid())?;
        let key = SymmetricKey::generate();
        let uid = coffer_crypto::make_uid();
        let body = wire::CreateFolderBody {
            folder_uid: uid.clone(),
            shared_folder_uid: root.uid.clone(),
            shared_folder_key: encode_url(&cbc_seal(&root.key, key.expose())),
            data: folder_name_data(&key, name),
            parent_uid: (!parent.is_shared_folder()).then(|| parent.uid.clone()),
        };
        self.post("create_folder", &body, false).await?;
        Ok(uid)
    }

    /// Renames a folder.
    pub async fn update_folder(&self, folder_uid: &str, name: &str) -> Result<()> {
        if name.trim().is_empty() {
            return Err(SdkError::Invalid("a folder needs a non-blank name".into()));
        }
        let folders = self.get_folders().await?;
        let folder = find(&folders, folder_uid)?;
        let body = wire::UpdateFolderBody {
            folder_uid: folder.uid.clone(),
            data: folder_name_data(&folder.key, name),
        };
        self.post("update_folder", &body, false).await?;
        Ok(())
    }

    /// Deletes folders; a non-empty folder only with `force` (then with its contents). One
    /// outcome per UID.
    pub async fn delete_folder(
        &self,
        folder_uids: &[&str],
        force: bool,
    ) -> Result<Vec<DeleteOutcome>> {
        self.ensure_bound().await?;
        let plain = self
            .post(
                "delete_folder",
                &wire::DeleteFolderBody {
                    folder_uids: folder_uids.iter().map(|s| (*s).to_owned()).collect(),
                    force_deletion: force,
                },
                false,
            )
            .await?;
        let response: wire::DeleteResponse = serde_json::from_slice(&plain)
            .map_err(|e| SdkError::Protocol(format!("delete_folder answer: {e}")))?;
        Ok(response
            .folders
            .unwrap_or_default()
            .into_iter()
            .map(|r| DeleteOutcome {
                uid: r.folder_uid.unwrap_or_default(),
                response_code: r.response_code,
                error_message: r.error_message,
            })
            .collect())
    }
}

fn find<'a>(folders: &'a [KeeperFolder], uid: &str) -> Result<&'a KeeperFolder> {
    folders.iter().find(|f| f.uid == uid).ok_or_else(|| {
        SdkError::NotFound(format!("folder {uid} is not shared with this application"))
    })
}
