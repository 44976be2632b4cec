//! A blocking wrapper for scripts and programs without an async runtime.
//!
//! ```no_run
//! use coffer_sdk::blocking::SecretsManager;
//!
//! fn main() -> coffer_sdk::Result<()> {
//!     // KSM_CONFIG holds the configuration (e.g. from `coffer vault client add`).
//!     let sm = SecretsManager::new(coffer_sdk::SecretsManager::from_env()?)?;
//!     for record in sm.get_secrets(&[])?.iter() {
//!         println!("{} {}", record.uid(), record.title());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Do not use it inside an async runtime (it would block a runtime thread); use
//! [`crate::SecretsManager`] there.

use std::future::Future;
use std::path::Path;

use crate::builder::RecordCreate;
use crate::client::{CreateOptions, DeleteOutcome, QueryOptions, SaveOptions, Secrets};
use crate::error::{Result, SdkError};
use crate::files::{FileUpload, KeeperFile};
use crate::folders::Folders;
use crate::notation::NotationValue;
use crate::record::Record;

/// The blocking client: an async [`crate::SecretsManager`] plus a private single-threaded
/// runtime.
#[derive(Debug)]
pub struct SecretsManager {
    runtime: tokio::runtime::Runtime,
    inner: crate::SecretsManager,
}

impl SecretsManager {
    /// Wraps an async client.
    pub fn new(inner: crate::SecretsManager) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SdkError::io("cannot start the blocking runtime", e))?;
        Ok(Self { runtime, inner })
    }

    /// Builds an async client with `builder` and wraps it.
    pub fn from_builder(builder: crate::SecretsManagerBuilder) -> Result<Self> {
        Self::new(builder.build()?)
    }

    /// The async client inside.
    pub fn inner(&self) -> &crate::SecretsManager {
        &self.inner
    }

    fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// See [`crate::SecretsManager::get_secrets`].
    pub fn get_secrets(&self, uids: &[&str]) -> Result<Secrets> {
        self.run(self.inner.get_secrets(uids))
    }

    /// See [`crate::SecretsManager::get_secrets_with_options`].
    pub fn get_secrets_with_options(&self, options: &QueryOptions) -> Result<Secrets> {
        self.run(self.inner.get_secrets_with_options(options))
    }

    /// See [`crate::SecretsManager::get_secrets_by_title`].
    pub fn get_secrets_by_title(&self, title: &str) -> Result<Vec<Record>> {
        self.run(self.inner.get_secrets_by_title(title))
    }

    /// See [`crate::SecretsManager::get_secret_by_title`].
    pub fn get_secret_by_title(&self, title: &str) -> Result<Option<Record>> {
        self.run(self.inner.get_secret_by_title(title))
    }

    /// See [`crate::SecretsManager::get_notation`].
    pub fn get_notation(&self, notation: &str) -> Result<Vec<String>> {
        self.run(self.inner.get_notation(notation))
    }

    /// See [`crate::SecretsManager::get_notation_value`].
    pub fn get_notation_value(&self, notation: &str) -> Result<NotationValue> {
        self.run(self.inner.get_notation_value(notation))
    }

    /// See [`crate::SecretsManager::save`].
    pub fn save(&self, record: &mut Record) -> Result<()> {
        self.run(self.inner.save(record))
    }

    /// See [`crate::SecretsManager::save_with_options`].
    pub fn save_with_options(&self, record: &mut Record, options: &SaveOptions) -> Result<()> {
        self.run(self.inner.save_with_options(record, options))
    }

    /// See [`crate::SecretsManager::complete_transaction`].
    pub fn complete_transaction(&self, record_uid: &str, rollback: bool) -> Result<()> {
        self.run(self.inner.complete_transaction(record_uid, rollback))
    }

    /// See [`crate::SecretsManager::create_secret`].
    pub fn create_secret(&self, folder_uid: &str, record: RecordCreate) -> Result<String> {
        self.run(self.inner.create_secret(folder_uid, record))
    }

    /// See [`crate::SecretsManager::create_secret_with_options`].
    pub fn create_secret_with_options(
        &self,
        options: &CreateOptions,
        record: RecordCreate,
    ) -> Result<String> {
        self.run(self.inner.create_secret_with_options(options, record))
    }

    /// See [`crate::SecretsManager::delete_secret`].
    pub fn delete_secret(&self, uids: &[&str]) -> Result<Vec<DeleteOutcome>> {
        self.run(self.inner.delete_secret(uids))
    }

    /// See [`crate::SecretsManager::download_file`].
    pub fn download_file(&self, file: &KeeperFile) -> Result<Vec<u8>> {
        self.run(self.inner.download_file(file))
    }

    /// See [`crate::SecretsManager::save_file`].
    pub fn save_file(
        &self,
        file: &KeeperFile,
        path: impl AsRef<Path>,
        create_folders: bool,
    ) -> Result<()> {
        self.run(self.inner.save_file(file, path, create_folders))
    }

    /// See [`crate::SecretsManager::upload_file`].
    pub fn upload_file(&self, owner: &mut Record, upload: FileUpload) -> Result<String> {
        self.run(self.inner.upload_file(owner, upload))
    }

    /// See [`crate::SecretsManager::get_folders`].
    pub fn get_folders(&self) -> Result<Folders> {
        self.run(self.inner.get_folders())
    }

    /// See [`crate::SecretsManager::create_folder`].
    pub fn create_folder(&self, parent_uid: &str, name: &str) -> Result<String> {
        self.run(self.inner.create_folder(parent_uid, name))
    }

    /// See [`crate::SecretsManager::update_folder`].
    pub fn update_folder(&self, folder_uid: &str, name: &str) -> Result<()> {
        self.run(self.inner.update_folder(folder_uid, name))
    }

    /// See [`crate::SecretsManager::delete_folder`].
    pub fn delete_folder(&self, folder_uids: &[&str], force: bool) -> Result<Vec<DeleteOutcome>> {
        self.run(self.inner.delete_folder(folder_uids, force))
    }
}
