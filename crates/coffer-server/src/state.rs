//! Shared server state handed to every handler.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_store::{Millis, NewAuditEvent, Store};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::files::FileStore;
use crate::keys::ServerKeys;

/// Cheap-to-clone handle on the server's state.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// What [`AppState`] points at.
pub struct Inner {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The server's P-256 key pairs.
    pub keys: ServerKeys,
    /// Encrypted file contents.
    pub files: FileStore,
    /// Resolved configuration.
    pub config: ServerConfig,
    /// Secret for download-link signatures and decoy KDF salts (shared by all instances
    /// through the database).
    pub link_secret: Vec<u8>,
    /// Background audit writer.
    pub audit: Audit,
    /// A password hash of nothing, made once: a login for an unknown email is checked against
    /// it, so it costs what a login for a real account costs (one verification).
    pub decoy_auth_hash: tokio::sync::OnceCell<String>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Audit events from the request path go through a queue so a read never waits for a disk
/// flush; owner actions are written before the request answers.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<NewAuditEvent>,
    store: Arc<dyn Store>,
}

impl Audit {
    /// Starts the background writer. It stops when every [`Audit`] handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<NewAuditEvent>(10_000);
        let writer_store = store.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(err) = writer_store.append_audit(&event).await {
                    tracing::error!(error = %err, action = %event.action, "audit write failed");
                }
            }
        });
        (Self { tx, store }, task)
    }

    /// Queues an event (written shortly after; a full queue falls back to a direct write).
    pub fn queue(&self, event: NewAuditEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.tx.try_send(event) {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(err) = store.append_audit(&event).await {
                    tracing::error!(error = %err, "audit write failed");
                }
            });
        }
    }

    /// Writes an event now.
    pub async fn write(&self, event: NewAuditEvent) -> Result<(), coffer_store::StoreError> {
        self.store.append_audit(&event).await
    }
}
