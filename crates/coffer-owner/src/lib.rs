//! The owner side of Coffer: account keys and client-side vault encryption over the owner API.
//!
//! Everything secret is encrypted here, on the owner's machine, before it is sent:
//!
//! ```text
//! master password ──Argon2id(salt)──► master key ─┬─HMAC "coffer auth key"──────► auth key (sent at login)
//!                                                 └─HMAC "coffer encryption key"─► encryption key (never sent)
//! encryption key ──GCM──► data key
//! data key ──GCM──► owner private key, shared-folder keys, app keys
//! shared-folder key ──CBC──► sub-folder keys;  folder key ──CBC──► {"name": …}
//! shared-folder key ──GCM──► record keys;  record key ──GCM──► record JSON, file keys
//! app key ──GCM──► shared-folder / record keys (shares), app data, client names
//! client key (one-time token) ──GCM──► app key
//! ```
//!
//! The server stores only the right-hand sides. See `docs/security.md`.

mod client;
mod keys;
mod session;

pub use client::{OwnerClient, ServerTrust};
pub use keys::{MasterKeys, derive_master_keys, new_kdf_params};
pub use session::{
    AppView, ClientView, FileView, FolderView, NewClient, NewClientOptions, RecordView, Session,
};

/// Everything that can go wrong on the owner side.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The server answered with an error body.
    #[error("{message} ({code})")]
    Server {
        /// HTTP status.
        status: u16,
        /// Protocol error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The connection failed (TLS, DNS, refused, timeout).
    #[error("cannot reach the server: {0}")]
    Http(String),
    /// Decryption of vault data failed: wrong password, or corrupted data.
    #[error("cannot decrypt {0}: wrong master password or damaged data")]
    Decrypt(&'static str),
    /// Input the caller gave is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Local file problem.
    #[error("{0}")]
    Io(String),
}

/// Result alias.
pub type OwnerResult<T> = Result<T, OwnerError>;
