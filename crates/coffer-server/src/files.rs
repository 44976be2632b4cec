//! Encrypted file contents in a directory: `FILES/objects/xx/<uid>`.
//!
//! Uploads stream into `FILES/incoming/<instance>/` (never buffered whole in memory), are
//! fsynced, and are renamed into place only when complete and of the announced size. The
//! directory may be shared by several server instances (a network file system mounted on each):
//! every instance has its own incoming directory, objects are written once under a unique name
//! and never modified, and a rename within one file system is atomic.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::fsutil::sync_dir;

/// Why an upload was not received.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// More bytes than allowed.
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// Fewer or more bytes than announced.
    #[error("the upload had {got} bytes but {expected} were announced")]
    SizeMismatch {
        /// Announced.
        expected: u64,
        /// Received.
        got: u64,
    },
    /// The client's stream failed (connection dropped, bad framing).
    #[error("the upload was interrupted: {0}")]
    Client(String),
    /// Local disk failure.
    #[error("disk error: {0}")]
    Io(#[from] std::io::Error),
}

/// A fully received, fsynced upload waiting to be published.
#[derive(Debug)]
pub struct Incoming {
    path: PathBuf,
    /// Bytes received.
    pub size: u64,
}

/// The file store.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    incoming: PathBuf,
}

/// Incoming directories of other instances untouched for this long are leftovers of a crash.
const STALE_INCOMING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl FileStore {
    /// Opens (creating) the store under `root` with an incoming directory of this instance's
    /// own, and removes incoming directories left behind by instances that died a day ago.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("objects"))?;
        let incoming_root = root.join("incoming");
        std::fs::create_dir_all(&incoming_root)?;
        for entry in std::fs::read_dir(&incoming_root)?.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_INCOMING);
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let incoming = incoming_root.join(coffer_crypto::encode_url(
            &coffer_crypto::random_bytes::<12>(),
        ));
        std::fs::create_dir_all(&incoming)?;
        Ok(Self {
            root: root.to_path_buf(),
            incoming,
        })
    }

    /// Removes this instance's incoming directory (at shutdown).
    pub fn close(&self) {
        let _ = std::fs::remove_dir_all(&self.incoming);
    }

    fn object_path(&self, uid: &str) -> PathBuf {
        let shard: String = uid.chars().take(2).collect();
        self.root.join("objects").join(shard).join(uid)
    }

    /// Streams a body to a temporary file, enforcing `max` and (if given) the exact size.
    pub async fn receive<S, E>(
        &self,
        mut body: S,
        expected: Option<u64>,
        max: u64,
    ) -> Result<Incoming, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let name = coffer_crypto::encode_url(&coffer_crypto::random_bytes::<16>());
        let path = self.incoming.join(name);
        let result = async {
            let mut file = tokio::fs::File::create(&path).await?;
            let mut size: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ReceiveError::Client(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(ReceiveError::TooLarge(max));
                }
                if let Some(expected) = expected
                    && size > expected
                {
                    return Err(ReceiveError::SizeMismatch {
                        expected,
                        got: size,
                    });
                }
                file.write_all(&chunk).await?;
            }
            if let Some(expected) = expected
                && size != expected
            {
                return Err(ReceiveError::SizeMismatch {
                    expected,
                    got: size,
                });
            }
            file.sync_all().await?;
            Ok(size)
        }
        .await;
        match result {
            Ok(size) => Ok(Incoming { path, size }),
            Err(err) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(err)
            }
        }
    }

    /// Moves a received upload into place under `uid` (durably). Fails with
    /// [`std::io::ErrorKind::AlreadyExists`], leaving the existing content alone, when content
    /// is already stored under `uid`; the received upload is discarded in every failure.
    pub async fn publish(&self, incoming: Incoming, uid: &str) -> std::io::Result<()> {
        let target = self.object_path(uid);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let source = incoming.path.clone();
        let linked = async {
            tokio::fs::create_dir_all(&dir).await?;
            // A hard link is created atomically and never replaces an existing name (the
            // files directory must support hard links, as local file systems and NFS do).
            tokio::fs::hard_link(&source, &target).await
        }
        .await;
        // Either way the incoming name goes: the content lives on under `target` or nowhere.
        let _ = tokio::fs::remove_file(&source).await;
        linked?;
        tokio::task::spawn_blocking(move || sync_dir(&dir))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Discards a received upload.
    pub async fn discard(&self, incoming: Incoming) {
        let _ = tokio::fs::remove_file(&incoming.path).await;
    }

    /// Opens stored content for reading.
    pub async fn open_object(&self, uid: &str) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.object_path(uid)).await
    }

    /// Removes the content of deleted files, logging (not failing on) what cannot be removed:
    /// the rows are already gone, so a leftover is garbage, not data.
    pub async fn remove_all(&self, uids: &[String]) {
        for uid in uids {
            if let Err(err) = self.remove(uid).await {
                tracing::warn!(file = %uid, error = %err, "could not remove file content");
            }
        }
    }

    /// Removes stored content (no error if absent).
    pub async fn remove(&self, uid: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.object_path(uid)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
