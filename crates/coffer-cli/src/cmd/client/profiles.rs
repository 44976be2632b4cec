//! `COFFER_HOME/profiles.json` (mode 0600): named KSM configurations and which is active.
//!
//! ```json
//! {
//!   "active": "default",
//!   "profiles": { "default": { "hostname": "…", "clientId": "…", "privateKey": "…", … } },
//!   "settings": { "default": { "caCert": "/path/to/cert.pem", "app": "CI" } }
//! }
//! ```
//!
//! Each entry of `profiles` is exactly a KSM configuration (PROTOCOL.md §4.1: string keys and
//! values only), so `profile export` gives what every official SDK accepts, including the
//! strict Rust SDK. Coffer's own per-profile settings live apart, in `settings`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coffer_sdk::config::keys;
use coffer_sdk::{Config, ConfigStorage, SdkError};
use serde::{Deserialize, Serialize};

use super::{code, fail};
use crate::home::write_private;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// Coffer-only settings of a profile (never part of the KSM configuration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSettings {
    /// Extra CA certificate trusted for this profile's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The application's title, as the server reported it when the profile was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profiles {
    /// The active profile's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// Name → KSM configuration.
    #[serde(default)]
    pub profiles: BTreeMap<String, BTreeMap<String, String>>,
    /// Name → Coffer settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, ProfileSettings>,
}

/// The file's path.
pub fn profiles_path(home: &Path) -> PathBuf {
    home.join("profiles.json")
}

/// Checks a profile name: letters, digits, `.`, `_`, `-`; at most 64.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(fail(
            code::USAGE,
            format!(
                "{name:?} is not a valid profile name: use up to 64 letters, digits, '.', '_' or '-'"
            ),
        ))
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(
            code::ERROR,
            format!(
                "{} is accessible to other users (mode {mode:03o}) although it holds device keys; \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

/// An exclusive lock on the profiles of a `COFFER_HOME`, held until dropped: every change
/// (read, modify, write) takes it, so two coffer processes changing profiles at once (a
/// binding and a `profile active`, say) do not lose one of the changes.
pub struct ProfilesLock {
    _file: std::fs::File,
}

impl Profiles {
    /// Reads the profiles to change them: the lock is held until the returned guard is
    /// dropped (after [`Profiles::save`]).
    pub fn load_for_change(home: &Path) -> Result<(ProfilesLock, Self)> {
        let lock = Self::lock(home)?;
        Ok((lock, Self::load(home)?))
    }

    /// Waits for and takes the lock of `home`'s profiles.
    fn lock(home: &Path) -> Result<ProfilesLock> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            dir.mode(0o700);
        }
        dir.create(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let path = home.join("profiles.lock");
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(ProfilesLock { _file: file })
    }

    /// Reads the file (empty when there is none).
    pub fn load(home: &Path) -> Result<Self> {
        let path = profiles_path(home);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        check_permissions(&path, &meta)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged (not a profiles file); fix or remove it and run `coffer profile init` again",
                path.display()
            )
        })
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, home: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_private(&profiles_path(home), &bytes)
    }

    /// The profile a command uses: `name`, else the active one.
    pub fn resolve(&self, name: Option<&str>) -> Result<String> {
        if let Some(name) = name {
            check_name(name)?;
            if !self.profiles.contains_key(name) {
                return Err(fail(
                    code::NOT_FOUND,
                    format!("there is no profile {name:?}; {}", self.known()),
                ));
            }
            return Ok(name.to_owned());
        }
        match &self.active {
            Some(active) if self.profiles.contains_key(active) => Ok(active.clone()),
            _ if self.profiles.is_empty() => Err(fail(
                code::ERROR,
                "no client profile yet: run `coffer profile init TOKEN` with a one-time token from \
                 `coffer vault client add` (or set KSM_CONFIG)",
            )),
            _ => Err(fail(
                code::ERROR,
                format!(
                    "no profile is active: choose one with `coffer profile active NAME` or pass \
                     --profile NAME; {}",
                    self.known()
                ),
            )),
        }
    }

    fn known(&self) -> String {
        if self.profiles.is_empty() {
            "there are none (`coffer profile init`)".to_owned()
        } else {
            let names: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            format!("profiles: {}", names.join(", "))
        }
    }

    /// The KSM configuration of a profile.
    pub fn config(&self, name: &str) -> Option<Config> {
        self.profiles.get(name).map(|map| {
            let mut config = Config::new();
            for (k, v) in map {
                config.set(k, v.clone());
            }
            config
        })
    }

    /// Stores a profile's KSM configuration.
    pub fn set_config(&mut self, name: &str, config: &Config) {
        let map = config
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.profiles.insert(name.to_owned(), map);
    }

    /// The Coffer settings of a profile (defaults when none).
    pub fn settings(&self, name: &str) -> ProfileSettings {
        self.settings.get(name).cloned().unwrap_or_default()
    }

    /// Removes a profile; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.settings.remove(name);
        let existed = self.profiles.remove(name).is_some();
        if self.active.as_deref() == Some(name) {
            self.active = None;
        }
        existed
    }
}

/// A profile as the SDK's configuration storage: the SDK's changes (binding, a new server key
/// id) are written back into `profiles.json`. With a host override (`KSM_HOSTNAME`), the
/// SDK sees that host while the stored hostname stays as it was.
#[derive(Debug)]
pub struct ProfileStorage {
    home: PathBuf,
    name: String,
    host_override: Option<String>,
}

impl ProfileStorage {
    /// The storage of profile `name` under `home`.
    pub fn new(home: &Path, name: &str, host_override: Option<String>) -> Self {
        Self {
            home: home.to_path_buf(),
            name: name.to_owned(),
            host_override,
        }
    }
}

fn storage_error(err: anyhow::Error) -> SdkError {
    SdkError::Config(format!("{err:#}"))
}

impl ConfigStorage for ProfileStorage {
    fn load(&self) -> coffer_sdk::Result<Config> {
        let profiles = Profiles::load(&self.home).map_err(storage_error)?;
        let mut config = profiles
            .config(&self.name)
            .ok_or_else(|| SdkError::Config(format!("profile {:?} was deleted", self.name)))?;
        if let Some(host) = &self.host_override {
            config.set(keys::HOSTNAME, host.clone());
        }
        Ok(config)
    }

    fn save(&self, config: &Config) -> coffer_sdk::Result<()> {
        let (_lock, mut profiles) = Profiles::load_for_change(&self.home).map_err(storage_error)?;
        let mut config = config.clone();
        if self.host_override.is_some() {
            match profiles
                .config(&self.name)
                .and_then(|old| old.get(keys::HOSTNAME).map(str::to_owned))
            {
                Some(stored) => config.set(keys::HOSTNAME, stored),
                None => config.remove(keys::HOSTNAME),
            }
        }
        profiles.set_config(&self.name, &config);
        profiles.save(&self.home).map_err(storage_error)
    }

    fn describe(&self) -> String {
        format!(
            "profile {:?} in {}",
            self.name,
            profiles_path(&self.home).display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes made at the same time (here by threads, each with its own lock file handle, as
    /// separate processes have) are all kept.
    #[test]
    fn concurrent_changes_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let home = home.clone();
                std::thread::spawn(move || {
                    for i in 0..15 {
                        let (_lock, mut profiles) = Profiles::load_for_change(&home).unwrap();
                        let mut config = Config::new();
                        config.set(keys::HOSTNAME, "vault.example.com");
                        profiles.set_config(&format!("p{w}-{i}"), &config);
                        profiles.save(&home).unwrap();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(Profiles::load(&home).unwrap().profiles.len(), 6 * 15);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("default").is_ok());
        assert!(check_name("ci-prod_2.eu").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("../x").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn storage_round_trips_and_keeps_the_stored_host_under_an_override() {
        let dir = tempfile::tempdir().unwrap();
        let mut profiles = Profiles::default();
        let mut config = Config::new();
        config.set(keys::HOSTNAME, "vault.example.com:8443");
        config.set(keys::CLIENT_KEY, "abc");
        profiles.set_config("default", &config);
        profiles.active = Some("default".into());
        profiles.save(dir.path()).unwrap();

        let storage = ProfileStorage::new(dir.path(), "default", Some("127.0.0.1:9".into()));
        let mut seen = storage.load().unwrap();
        assert_eq!(seen.get(keys::HOSTNAME), Some("127.0.0.1:9"));
        seen.set(keys::APP_KEY, "bound");
        storage.save(&seen).unwrap();

        let again = Profiles::load(dir.path()).unwrap();
        let stored = again.config("default").unwrap();
        assert_eq!(stored.get(keys::HOSTNAME), Some("vault.example.com:8443"));
        assert_eq!(stored.get(keys::APP_KEY), Some("bound"));
        assert_eq!(again.active.as_deref(), Some("default"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(profiles_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn resolve_explains_what_is_missing() {
        let mut profiles = Profiles::default();
        let err = profiles.resolve(None).unwrap_err().to_string();
        assert!(err.contains("profile init"), "{err}");
        profiles.set_config("a", &Config::new());
        profiles.set_config("b", &Config::new());
        let err = profiles.resolve(None).unwrap_err().to_string();
        assert!(
            err.contains("profile active") && err.contains("a, b"),
            "{err}"
        );
        assert_eq!(profiles.resolve(Some("b")).unwrap(), "b");
        assert!(profiles.resolve(Some("c")).is_err());
        profiles.active = Some("a".into());
        assert_eq!(profiles.resolve(None).unwrap(), "a");
        assert!(profiles.remove("a"));
        assert_eq!(profiles.active, None);
    }
}
