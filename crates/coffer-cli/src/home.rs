//! Local state under `COFFER_HOME` (default `~/.config/coffer`): the owner session.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Where CLI state lives.
pub fn coffer_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("COFFER_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(config).join("coffer"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("cannot find a home directory: set COFFER_HOME")?;
    Ok(PathBuf::from(home).join(".config").join("coffer"))
}

/// Default server data dir (`~/.local/share/coffer`).
pub fn default_data_dir() -> Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("coffer"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("cannot find a home directory: pass --data-dir")?;
    Ok(PathBuf::from(home)
        .join(".local")
        .join("share")
        .join("coffer"))
}

/// The saved owner session (`COFFER_HOME/owner-session.json`, mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    /// Server URL.
    pub server: String,
    /// Login email.
    pub email: String,
    /// Bearer token.
    pub token: String,
    /// Expiry, ms.
    pub expires_at: i64,
    /// CA certificate used at login, if any.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn session_path(home: &Path) -> PathBuf {
    home.join("owner-session.json")
}

impl SavedSession {
    /// Loads the session, if one was saved.
    pub fn load(home: &Path) -> Result<Option<Self>> {
        let path = session_path(home);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!("{} is damaged; run `coffer vault login`", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Saves the session with mode 0600.
    pub fn save(&self, home: &Path) -> Result<()> {
        write_private(&session_path(home), &serde_json::to_vec_pretty(self)?)
    }

    /// Forgets the session.
    pub fn delete(home: &Path) -> Result<()> {
        match std::fs::remove_file(session_path(home)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Writes a private file (see [`coffer_server::fsutil::write_private_file`]: atomic, mode
/// 0600, existing directories left alone, links followed, owner kept).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    coffer_server::fsutil::write_private_file(path, data)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// [`write_private`] for a file that must not exist yet: refuses, changing nothing, when it
/// does.
pub fn write_private_new(path: &Path, data: &[u8]) -> Result<()> {
    coffer_server::fsutil::write_new_private_file(path, data).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists; refusing to overwrite it", path.display())
        } else {
            anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
        }
    })
}
