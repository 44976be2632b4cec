//! The Coffer Rust SDK: read and write secrets on a Coffer server, or on any server that
//! speaks the Keeper Secrets Manager (KSM) protocol.
//!
//! Everything is end-to-end encrypted: the server only ever sees ciphertext. The SDK is
//! async (tokio) with a small [`blocking`] wrapper for scripts; one [`SecretsManager`] keeps
//! one HTTP connection pool and can be shared by many tasks.
//!
//! # Quick start
//!
//! An owner creates a client device (`coffer vault client add APP_UID`) and hands over its
//! one-time token or its base64 configuration. The first call binds the device:
//!
//! ```no_run
//! use coffer_sdk::{FileStorage, SecretsManager, Tls, fields};
//!
//! #[tokio::main]
//! async fn main() -> coffer_sdk::Result<()> {
//!     let sm = SecretsManager::builder()
//!         .token("vault.example.com:AbCdEf...")          // one-time token, used once
//!         .hostname("vault.example.com:8443")            // when the server is not on 443
//!         .storage(FileStorage::new("client-config.json")) // written back after binding
//!         .tls(Tls::ExtraCaFile("cert.pem".into()))      // a private server certificate
//!         .build()?;
//!
//!     for record in sm.get_all_secrets().await?.iter() {
//!         println!("{}  {}", record.uid(), record.title());
//!     }
//!     let mut record = sm.get_secret_by_title("Build server").await?.expect("exists");
//!     let password: Option<String> = record.get_one::<fields::Password>()?;
//!     record.set_one::<fields::Password>(coffer_sdk::generate_password(32, None, None, None, None)?);
//!     sm.save(&mut record).await?;
//!     let host = sm.get_notation("keeper://Build server/field/url[0]").await?;
//!     # let _ = (password, host);
//!     Ok(())
//! }
//! ```
//!
//! With `KSM_CONFIG` set (the base64 configuration), `SecretsManager::from_env()` is all it
//! takes.
//!
//! # What is here
//!
//! | Area | API |
//! |---|---|
//! | Initialise | [`SecretsManager::builder`], [`FileStorage`], [`MemoryStorage`], [`Config`], env vars `KSM_CONFIG`, `KSM_TOKEN`, `KSM_HOSTNAME`, `KSM_SKIP_VERIFY` |
//! | Read | [`SecretsManager::get_secrets`], [`get_secrets_with_options`](SecretsManager::get_secrets_with_options), [`get_secrets_by_title`](SecretsManager::get_secrets_by_title), [`get_secret_by_title`](SecretsManager::get_secret_by_title) |
//! | Fields | [`Record::get`], [`Record::set`], [`Record::get_custom`], [`Record::set_custom`], untyped [`Record::field_values`]; types in [`fields`], values in [`values`] |
//! | Notation | [`SecretsManager::get_notation`], [`SecretsManager::get_notation_value`], [`parse_notation`] |
//! | TOTP | [`get_totp_code`], [`get_totp_code_at`] |
//! | Passwords | [`generate_password`], [`generate_password_with_options`] |
//! | Update | [`SecretsManager::save`], [`save_with_options`](SecretsManager::save_with_options), [`complete_transaction`](SecretsManager::complete_transaction) |
//! | Files | [`SecretsManager::download_file`], [`save_file`](SecretsManager::save_file), [`upload_file`](SecretsManager::upload_file), progress via [`Progress`] |
//! | Create / delete | [`RecordCreate`], [`SecretsManager::create_secret`], [`create_secret_with_options`](SecretsManager::create_secret_with_options), [`delete_secret`](SecretsManager::delete_secret) |
//! | Folders | [`SecretsManager::get_folders`], [`create_folder`](SecretsManager::create_folder), [`update_folder`](SecretsManager::update_folder), [`delete_folder`](SecretsManager::delete_folder) |
//! | Offline cache | [`CacheOptions`], [`Secrets::from_cache`] |
//! | Throttling | [`RetryPolicy`] |
//! | Errors | [`SdkError`] |
//!
//! # Compatibility
//!
//! Configurations are interchangeable with the official SDKs (Python, JavaScript, Rust): the
//! same keys, the same PKCS#8 device key layout. Records written here are read by them and
//! the other way round; unknown record keys and field types are preserved on save.

#![warn(missing_docs)]

pub mod blocking;
mod builder;
mod cache;
mod client;
pub mod config;
mod error;
pub mod fields;
mod files;
mod folders;
mod notation;
mod ordered;
mod password;
mod record;
mod totp;
mod transport;
pub mod values;
mod wire;

pub use builder::{RecordCreate, standard_record_types, template_fields};
pub use cache::{CacheLocation, CacheOptions, CachedAnswer};
pub use client::{
    AppInfo, CreateOptions, DEFAULT_MAX_DOWNLOAD, DeleteOutcome, QueryOptions, SaveOptions,
    Secrets, SecretsManager, SecretsManagerBuilder, TransactionType,
};
pub use coffer_proto::record::{Field, RecordData};
pub use config::{Config, ConfigStorage, FileStorage, MemoryStorage};
pub use error::{Result, SdkError};
pub use files::{FileUpload, KeeperFile, Progress, ProgressFn, guess_mime_type};
pub use folders::{Folders, KeeperFolder};
pub use notation::{Notation, NotationValue, Selector, parse_notation};
pub use password::{
    DEFAULT_LENGTH, DEFAULT_SPECIAL_CHARACTERS, PasswordOptions, generate_password,
    generate_password_with_options,
};
pub use record::{Record, RecordLink};
pub use totp::{TotpCode, get_totp_code, get_totp_code_at};
pub use transport::{CLIENT_VERSION, RetryPolicy, Tls};
