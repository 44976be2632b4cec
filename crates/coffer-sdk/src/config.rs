//! Client configuration (PROTOCOL.md §4.1) and where it is kept.
//!
//! The configuration is a flat JSON object of strings, the same for every KSM SDK: a config
//! written by the official Python SDK works here, and the other way round. Three storages:
//!
//! * [`FileStorage`]: a JSON file, created with mode 0600 and rewritten atomically; a
//!   world-readable file is refused unless [`FileStorage::allow_insecure_permissions`] is set.
//! * [`MemoryStorage`]: in memory, optionally started from JSON or base64 text — the form of
//!   `KSM_CONFIG` and of the configs `coffer vault client add` prints
//!   ([`MemoryStorage::from_env`], [`MemoryStorage::to_base64`]).
//! * Any type implementing [`ConfigStorage`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::error::{Result, SdkError};

/// The configuration key names (PROTOCOL.md §4.1).
pub mod keys {
    /// Server host (or region code), optionally with `:port`.
    pub const HOSTNAME: &str = "hostname";
    /// The one-time token's client key, until binding succeeds.
    pub const CLIENT_KEY: &str = "clientKey";
    /// B64 HMAC client id.
    pub const CLIENT_ID: &str = "clientId";
    /// B64 PKCS#8 of the device key pair.
    pub const PRIVATE_KEY: &str = "privateKey";
    /// B64 application key, after binding.
    pub const APP_KEY: &str = "appKey";
    /// B64 application owner public key, after binding.
    pub const OWNER_PUBLIC_KEY: &str = "appOwnerPublicKey";
    /// Decimal server key id.
    pub const SERVER_PUBLIC_KEY_ID: &str = "serverPublicKeyId";
    /// B64URL server public key (self-hosted servers such as Coffer).
    pub const SERVER_PUBLIC_KEY: &str = "serverPublicKey";
}

/// Environment variables the SDK reads (the same names as the official SDKs, §4.2).
pub mod env {
    /// A whole configuration as JSON or base64, used when no storage is given.
    pub const KSM_CONFIG: &str = "KSM_CONFIG";
    /// A one-time token, used when none is given to the builder.
    pub const KSM_TOKEN: &str = "KSM_TOKEN";
    /// Overrides the server host on every request.
    pub const KSM_HOSTNAME: &str = "KSM_HOSTNAME";
    /// `true`/`false` (also `yes`/`no`, `1`/`0`, `on`/`off`, `t`/`f`, `y`/`n`): skip TLS
    /// certificate verification.
    pub const KSM_SKIP_VERIFY: &str = "KSM_SKIP_VERIFY";
    /// Path of the default configuration file (default `client-config.json`).
    pub const KSM_CONFIG_FILE: &str = "KSM_CONFIG_FILE";
    /// Coffer's own: a PEM file of extra trusted certificates (e.g. a self-hosted server's
    /// `DATA_DIR/tls/cert.pem`), used when the builder was given no other TLS setting. The
    /// `coffer` command line reads the same variable.
    pub const COFFER_CA_CERT: &str = "COFFER_CA_CERT";
}

/// The default configuration file name, as in the official SDKs.
pub const DEFAULT_CONFIG_FILE: &str = "client-config.json";

/// A client configuration: string keys to string values, kept sorted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Config(BTreeMap<String, String>);

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            let secret = matches!(
                k.as_str(),
                keys::CLIENT_KEY | keys::PRIVATE_KEY | keys::APP_KEY
            );
            map.entry(k, if secret { &"<redacted>" } else { v });
        }
        map.finish()
    }
}

impl Config {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses configuration text: a JSON object, or the standard base64 of one (padding
    /// optional), as `KSM_CONFIG` and `coffer vault client add` carry it.
    ///
    /// Non-string scalar values are accepted and kept as text; `null` values are dropped.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self::new());
        }
        let json: Vec<u8> = if trimmed.starts_with('{') {
            trimmed.as_bytes().to_vec()
        } else {
            coffer_crypto::decode_lenient(trimmed).map_err(|_| {
                SdkError::Config(
                    "the configuration is neither a JSON object nor base64 of one".into(),
                )
            })?
        };
        Self::from_json(&json)
    }

    /// Parses a JSON object.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| SdkError::Config(format!("the configuration is not valid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(SdkError::Config(
                "the configuration must be a JSON object".into(),
            ));
        };
        let mut map = BTreeMap::new();
        for (key, value) in object {
            match value {
                Value::String(s) => {
                    map.insert(key, s);
                }
                Value::Null => {}
                Value::Bool(_) | Value::Number(_) => {
                    map.insert(key, value.to_string());
                }
                Value::Array(_) | Value::Object(_) => {
                    return Err(SdkError::Config(format!(
                        "configuration key {key:?} must hold a string"
                    )));
                }
            }
        }
        Ok(Self(map))
    }

    /// The value of `key`, if set and non-empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Sets `key`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// Iterates over all entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// JSON with sorted keys and 4-space indentation (the official Python SDK's file layout).
    pub fn to_json_pretty(&self) -> String {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        // A map of strings always serialises.
        let _ = serde::Serialize::serialize(&self.0, &mut ser);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Standard base64 of the compact JSON: what `KSM_CONFIG` takes.
    pub fn to_base64(&self) -> String {
        let json = serde_json::to_vec(&self.0).unwrap_or_default();
        coffer_crypto::encode_std(&json)
    }
}

/// Where a configuration is loaded from and saved to.
///
/// The SDK calls [`ConfigStorage::load`] once when it is built and [`ConfigStorage::save`]
/// after every change (initialisation, binding, key rotation).
pub trait ConfigStorage: Send + Sync + fmt::Debug {
    /// Reads the stored configuration (empty when nothing is stored yet).
    fn load(&self) -> Result<Config>;
    /// Replaces the stored configuration.
    fn save(&self, config: &Config) -> Result<()>;
    /// A short description for messages, e.g. the file path.
    fn describe(&self) -> String;
}

/// A configuration in a JSON file.
#[derive(Debug, Clone)]
pub struct FileStorage {
    path: PathBuf,
    allow_insecure: bool,
}

impl FileStorage {
    /// A storage at `path` (the file is created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            allow_insecure: false,
        }
    }

    /// The file named by `KSM_CONFIG_FILE`, else `client-config.json` in the working directory.
    pub fn default_location() -> Self {
        let path = std::env::var(env::KSM_CONFIG_FILE)
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_CONFIG_FILE.to_owned());
        Self::new(path)
    }

    /// Accept a file that other users can read (by default such a file is refused, because it
    /// holds the device's private key and the application key).
    pub fn allow_insecure_permissions(mut self, allow: bool) -> Self {
        self.allow_insecure = allow;
        self
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(unix)]
    fn check_permissions(&self, meta: &std::fs::Metadata) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 && !self.allow_insecure {
            return Err(SdkError::Config(format!(
                "{} is readable by every user (mode {mode:03o}) although it holds secret keys; \
                 run `chmod 600 {}` or allow it explicitly with \
                 FileStorage::allow_insecure_permissions(true)",
                self.path.display(),
                self.path.display()
            )));
        }
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %self.path.display(),
                mode = format!("{mode:03o}"),
                "the configuration file is accessible to other users; chmod 600 is recommended"
            );
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn check_permissions(&self, _meta: &std::fs::Metadata) -> Result<()> {
        Ok(())
    }
}

impl ConfigStorage for FileStorage {
    fn load(&self) -> Result<Config> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::new()),
            Err(e) => {
                return Err(SdkError::io(
                    format!("cannot read {}", self.path.display()),
                    e,
                ));
            }
        };
        self.check_permissions(&meta)?;
        let bytes = std::fs::read(&self.path)
            .map_err(|e| SdkError::io(format!("cannot read {}", self.path.display()), e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Config::new());
        }
        Config::from_json(&bytes).map_err(|e| match e {
            SdkError::Config(msg) => SdkError::Config(format!("{}: {msg}", self.path.display())),
            other => other,
        })
    }

    fn save(&self, config: &Config) -> Result<()> {
        write_private_file(&self.path, config.to_json_pretty().as_bytes())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Follows a chain of symbolic links (at most 40, as the kernel does) to the path they name,
/// which need not exist yet.
fn resolve_link(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|e| {
                    SdkError::io(format!("cannot read the link {}", current.display()), e)
                })?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(SdkError::Config(format!(
        "{} is a chain of too many symbolic links",
        path.display()
    )))
}

/// Writes `bytes` to `path` atomically (temporary file + rename) with mode 0600. A symbolic
/// link at `path` is followed: its target is replaced, the link stays.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved = resolve_link(path)?;
            resolved.as_path()
        }
        _ => path,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_owned());
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(coffer_crypto::random_bytes::<6>())
    ));
    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(SdkError::io(format!("cannot write {}", path.display()), e));
    }
    Ok(())
}

/// A configuration kept in memory (nothing is written anywhere).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    config: Mutex<Config>,
}

impl MemoryStorage {
    /// An empty in-memory configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from JSON or base64 configuration text (see [`Config::parse`]).
    pub fn from_text(text: &str) -> Result<Self> {
        Ok(Self::from_config(Config::parse(text)?))
    }

    /// Starts from a configuration.
    pub fn from_config(config: Config) -> Self {
        Self {
            config: Mutex::new(config),
        }
    }

    /// Starts from the `KSM_CONFIG` environment variable, if it is set.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(env::KSM_CONFIG) {
            Ok(text) if !text.trim().is_empty() => Self::from_text(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// The current configuration.
    pub fn snapshot(&self) -> Config {
        self.config
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The current configuration as base64 (for `KSM_CONFIG`).
    pub fn to_base64(&self) -> String {
        self.snapshot().to_base64()
    }
}

impl ConfigStorage for MemoryStorage {
    fn load(&self) -> Result<Config> {
        Ok(self.snapshot())
    }

    fn save(&self, config: &Config) -> Result<()> {
        let mut guard = self.config.lock().unwrap_or_else(|p| p.into_inner());
        *guard = config.clone();
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory configuration".to_owned()
    }
}

impl<T: ConfigStorage + ?Sized> ConfigStorage for std::sync::Arc<T> {
    fn load(&self) -> Result<Config> {
        (**self).load()
    }
    fn save(&self, config: &Config) -> Result<()> {
        (**self).save(config)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Parses a boolean the way the official Python SDK reads `KSM_SKIP_VERIFY`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_base64_forms() {
        let json = r#"{"hostname":"h:1","clientKey":"abc","serverPublicKeyId":10,"x":null}"#;
        let a = Config::parse(json).unwrap();
        assert_eq!(a.get("hostname"), Some("h:1"));
        assert_eq!(a.get("serverPublicKeyId"), Some("10"));
        assert_eq!(a.get("x"), None);
        let b64 = coffer_crypto::encode_std(json.as_bytes());
        assert_eq!(Config::parse(&b64).unwrap(), a);
        assert_eq!(Config::parse(b64.trim_end_matches('=')).unwrap(), a);
        assert_eq!(Config::parse(&a.to_base64()).unwrap(), a);
        assert!(Config::parse("not a config!").is_err());
        assert!(Config::parse("[1]").is_err());
        assert!(Config::parse(r#"{"a":{"b":1}}"#).is_err());
    }

    #[test]
    fn pretty_json_is_sorted_with_four_spaces() {
        let mut c = Config::new();
        c.set("zeta", "1");
        c.set("alpha", "2");
        assert_eq!(
            c.to_json_pretty(),
            "{\n    \"alpha\": \"2\",\n    \"zeta\": \"1\"\n}"
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let mut c = Config::new();
        c.set(keys::APP_KEY, "SECRETSECRET");
        c.set(keys::HOSTNAME, "host");
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRETSECRET") && shown.contains("host"));
    }

    #[cfg(unix)]
    #[test]
    fn file_storage_is_private_and_refuses_world_readable_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg.json");
        let storage = FileStorage::new(&path);
        assert!(storage.load().unwrap().is_empty());
        let mut c = Config::new();
        c.set("hostname", "example");
        storage.save(&c).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(storage.load().unwrap(), c);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = storage.load().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let relaxed = FileStorage::new(&path).allow_insecure_permissions(true);
        assert_eq!(relaxed.load().unwrap(), c);
    }

    #[test]
    fn a_symlinked_config_is_written_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real").join("cfg.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        let link = dir.path().join("link.json");
        // A relative link, resolved against the link's directory.
        std::os::unix::fs::symlink("real/cfg.json", &link).unwrap();
        let storage = FileStorage::new(&link);
        let mut c = Config::new();
        c.set("hostname", "through-the-link");
        storage.save(&c).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(FileStorage::new(&real).load().unwrap(), c);
        assert_eq!(storage.load().unwrap(), c);
        // A dangling link gets its target created.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("made.json"), &dangling).unwrap();
        FileStorage::new(&dangling).save(&c).unwrap();
        assert_eq!(
            FileStorage::new(dir.path().join("made.json"))
                .load()
                .unwrap(),
            c
        );
    }

    #[test]
    fn booleans_like_python() {
        for t in ["true", "TRUE", "yes", "1", "on", "t", "y"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "No", "0", "off", "f", "n"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
