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

/// Writes a file atomically (temporary file, fsync, rename) with mode 0600. Missing parent
/// directories are created with mode 0700; existing ones are left as they are (they may be
/// shared, like `/tmp` or `/etc/coffer`). A symbolic link at `path` is followed, and a replaced
/// file keeps its owner and group where the caller may set them (root rotating the key of a
/// server that runs as another user).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    write_private_with(path, data, false)
}

/// [`write_private`] for a file that must not exist yet: refuses (and changes nothing) when
/// it does, even if it appears while this runs.
pub fn write_private_new(path: &Path, data: &[u8]) -> Result<()> {
    write_private_with(path, data, true)
}

fn write_private_with(path: &Path, data: &[u8], must_be_new: bool) -> Result<()> {
    use std::io::Write;
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        coffer_crypto::encode_url(&coffer_crypto::random_bytes::<6>())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| -> Result<()> {
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(data)?;
        file.sync_all()?;
        if must_be_new {
            // A hard link never replaces an existing name.
            return std::fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow::anyhow!("{} exists; refusing to overwrite it", path.display())
                } else {
                    anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
                }
            });
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
        }
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_files_leave_existing_directories_alone() {
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_private(&shared.join("key.json"), b"one").unwrap();
        assert_eq!(
            mode(&shared),
            0o1777,
            "an existing directory keeps its mode"
        );
        assert_eq!(mode(&shared.join("key.json")), 0o600);
        // Missing directories are made private.
        let nested = shared.join("a").join("b").join("key.json");
        write_private(&nested, b"two").unwrap();
        assert_eq!(mode(&shared.join("a")), 0o700);
        assert_eq!(mode(&shared.join("a").join("b")), 0o700);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&shared)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn private_files_follow_links_and_new_ones_never_replace() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real.json");
        let link = root.path().join("link.json");
        write_private(&real, b"first").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_private(&link, b"second").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"second");

        let err = write_private_new(&real, b"third").unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(&real).unwrap(), b"second");
        let fresh = root.path().join("fresh.json");
        write_private_new(&fresh, b"new").unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"new");
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 3);
    }
}
