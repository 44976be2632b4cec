//! The offline cache: answers reads when the server is unreachable or failing.
//!
//! Better than the official SDKs' single-slot replay cache (PROTOCOL.md §9):
//!
//! * **Bound to the request.** Every entry is keyed by endpoint and exact filters, so a
//!   cached `get_secret` for one record never answers a request for another, a filtered
//!   answer never stands in for an unfiltered one, and writes are never answered from it.
//! * **Encrypted.** Entries are sealed with AES-256-GCM under a key derived from the
//!   application key (HMAC-SHA-256), so the file reveals neither record metadata nor the
//!   download capability URLs inside the answers; it is written with mode 0600. The sealed
//!   bytes also hold the entry's name and the time it was stored, so someone who can write the
//!   file can neither move an answer to another request nor make an old answer look fresh.
//! * **Bounded age.** An entry older than [`CacheOptions::max_age`] is never used.
//! * **Reported.** Results that came from the cache say so
//!   ([`Secrets::from_cache`](crate::Secrets::from_cache)) and a warning is logged.
//!
//! Only network failures (DNS, refused, reset, TLS, timeout) and HTTP 5xx answers fall back
//! to the cache; a refusal (4xx) never does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_crypto::{SymmetricKey, decode_lenient, encode_std, gcm_open, gcm_seal, hmac_sha256};
use serde::{Deserialize, Serialize};

use crate::config::write_private_file;

/// Where cached answers are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheLocation {
    /// In this process only.
    Memory,
    /// In a file (created with mode 0600), so that a restarted process can still read
    /// secrets while the server is down.
    File(PathBuf),
}

/// Offline cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOptions {
    /// Where entries are kept.
    pub location: CacheLocation,
    /// The oldest answer the cache may give (default one day).
    pub max_age: Duration,
    /// At most this many distinct requests are remembered (oldest evicted first).
    pub max_entries: usize,
}

impl CacheOptions {
    /// An in-memory cache with the default limits.
    pub fn memory() -> Self {
        Self {
            location: CacheLocation::Memory,
            max_age: Duration::from_secs(24 * 3600),
            max_entries: 64,
        }
    }

    /// A file cache at `path` with the default limits.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            location: CacheLocation::File(path.into()),
            ..Self::memory()
        }
    }

    /// Sets the maximum age of a usable answer.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets the number of remembered requests.
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }
}

/// When a cached answer was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedAnswer {
    /// When the server gave the answer.
    pub stored_at: SystemTime,
    /// How old it was when used.
    pub age: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "storedAt")]
    stored_at_ms: u64,
    data: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// Version 2 seals the entry name and the time stored with the answer; version 1 files are
/// ignored (their entries open under another key and would not be trusted anyway).
const VERSION: u32 = 2;
const LABEL: &[u8] = b"coffer-sdk offline cache v2";
/// Sealed layout: time stored (ms since the epoch, 8 bytes big-endian), entry name (32 bytes),
/// then the answer.
const HEADER_LEN: usize = 8 + 32;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The cache itself.
#[derive(Debug)]
pub(crate) struct OfflineCache {
    options: CacheOptions,
    memory: Mutex<CacheFile>,
}

impl OfflineCache {
    pub fn new(options: CacheOptions) -> Self {
        Self {
            options,
            memory: Mutex::new(CacheFile {
                version: VERSION,
                entries: BTreeMap::new(),
            }),
        }
    }

    fn cache_key(app_key: &SymmetricKey) -> SymmetricKey {
        SymmetricKey::from_array(hmac_sha256(app_key.expose(), LABEL))
    }

    /// The entry name of a request: it reveals nothing without the app key.
    fn entry_id(key: &SymmetricKey, client_id: &str, endpoint: &str, request: &[u8]) -> [u8; 32] {
        let mut message = Vec::with_capacity(client_id.len() + endpoint.len() + request.len() + 2);
        message.extend_from_slice(client_id.as_bytes());
        message.push(0);
        message.extend_from_slice(endpoint.as_bytes());
        message.push(0);
        message.extend_from_slice(request);
        hmac_sha256(key.expose(), &message)
    }

    fn read_file(path: &Path) -> CacheFile {
        let file: CacheFile = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable offline cache file");
                CacheFile::default()
            }),
            Err(_) => CacheFile::default(),
        };
        if file.version == VERSION {
            file
        } else {
            CacheFile::default()
        }
    }

    /// Remembers the decrypted answer to a request.
    pub fn store(
        &self,
        app_key: &SymmetricKey,
        client_id: &str,
        endpoint: &str,
        request: &[u8],
        answer: &[u8],
    ) {
        let key = Self::cache_key(app_key);
        let id = Self::entry_id(&key, client_id, endpoint, request);
        let stored_at_ms = now_ms();
        let mut sealed = Vec::with_capacity(HEADER_LEN + answer.len());
        sealed.extend_from_slice(&stored_at_ms.to_be_bytes());
        sealed.extend_from_slice(&id);
        sealed.extend_from_slice(answer);
        let entry = Entry {
            stored_at_ms,
            data: encode_std(&gcm_seal(&key, &sealed)),
        };
        let mut guard = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if let CacheLocation::File(path) = &self.options.location {
            *guard = Self::read_file(path);
        }
        guard.version = VERSION;
        guard.entries.insert(hex::encode(id), entry);
        while guard.entries.len() > self.options.max_entries {
            let oldest = guard
                .entries
                .iter()
                .min_by_key(|(_, e)| e.stored_at_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    guard.entries.remove(&k);
                }
                None => break,
            }
        }
        if let CacheLocation::File(path) = &self.options.location {
            let bytes = serde_json::to_vec(&*guard).unwrap_or_default();
            if let Err(e) = write_private_file(path, &bytes) {
                tracing::warn!(error = %e, "cannot write the offline cache");
            }
        }
    }

    /// A fresh enough answer to exactly this request, if one is cached.
    pub fn load(
        &self,
        app_key: &SymmetricKey,
        client_id: &str,
        endpoint: &str,
        request: &[u8],
    ) -> Option<(Vec<u8>, CachedAnswer)> {
        let key = Self::cache_key(app_key);
        let id = Self::entry_id(&key, client_id, endpoint, request);
        let name = hex::encode(id);
        let entry = match &self.options.location {
            CacheLocation::File(path) => Self::read_file(path).entries.remove(&name),
            CacheLocation::Memory => self
                .memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entries
                .get(&name)
                .cloned(),
        }?;
        let sealed = decode_lenient(&entry.data).ok()?;
        let mut plain = match gcm_open(&key, &sealed) {
            Ok(plain) if plain.len() >= HEADER_LEN && plain[8..HEADER_LEN] == id => plain,
            _ => {
                tracing::warn!("ignoring an offline cache entry that does not verify");
                return None;
            }
        };
        // The sealed time, not the file's plaintext one, decides the age.
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&plain[..8]);
        let stored_at_ms = u64::from_be_bytes(stamp);
        let age = Duration::from_millis(now_ms().saturating_sub(stored_at_ms));
        if age > self.options.max_age {
            tracing::debug!(?age, "offline cache entry too old");
            return None;
        }
        plain.drain(..HEADER_LEN);
        Some((
            plain,
            CachedAnswer {
                stored_at: UNIX_EPOCH + Duration::from_millis(stored_at_ms),
                age,
            },
        ))
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut guard = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        guard.entries.clear();
        if let CacheLocation::File(path) = &self.options.location {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_bound_to_request_key_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let cache = OfflineCache::new(CacheOptions::file(&path).max_entries(2));
        let app = SymmetricKey::generate();
        cache.store(&app, "c", "get_secret", b"{}", b"answer-all");
        cache.store(&app, "c", "get_secret", b"{\"r\":1}", b"answer-one");
        let (all, info) = cache.load(&app, "c", "get_secret", b"{}").unwrap();
        assert_eq!(all, b"answer-all");
        assert!(info.age < Duration::from_secs(5));
        assert_eq!(
            cache.load(&app, "c", "get_secret", b"{\"r\":1}").unwrap().0,
            b"answer-one"
        );
        // Another request, endpoint, client or app key: nothing.
        assert!(cache.load(&app, "c", "get_secret", b"{\"r\":2}").is_none());
        assert!(cache.load(&app, "c", "get_folders", b"{}").is_none());
        assert!(cache.load(&app, "d", "get_secret", b"{}").is_none());
        assert!(
            cache
                .load(&SymmetricKey::generate(), "c", "get_secret", b"{}")
                .is_none()
        );
        // The file holds no plaintext.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("answer"));
        // A second cache object on the same file sees the entries (a restarted process).
        let again = OfflineCache::new(CacheOptions::file(&path));
        assert!(again.load(&app, "c", "get_secret", b"{}").is_some());
        // Eviction keeps at most max_entries.
        cache.store(&app, "c", "get_folders", b"{}", b"f");
        let kept = ["{}", "{\"r\":1}"]
            .iter()
            .filter(|r| cache.load(&app, "c", "get_secret", r.as_bytes()).is_some())
            .count();
        assert_eq!(kept, 1);
        // Too old: refused.
        let strict = OfflineCache::new(CacheOptions::file(&path).max_age(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(5));
        assert!(strict.load(&app, "c", "get_folders", b"{}").is_none());
        cache.clear();
        assert!(!path.exists());
    }

    /// Someone who can write the cache file can neither make an old answer look fresh nor
    /// move an answer to another request's entry.
    #[test]
    fn a_tampered_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let app = SymmetricKey::generate();
        let cache = OfflineCache::new(CacheOptions::file(&path).max_age(Duration::from_millis(50)));
        cache.store(&app, "c", "get_secret", b"{}", b"answer-all");
        cache.store(&app, "c", "get_secret", b"{\"r\":1}", b"answer-one");
        let name = |request: &[u8]| {
            hex::encode(OfflineCache::entry_id(
                &OfflineCache::cache_key(&app),
                "c",
                "get_secret",
                request,
            ))
        };
        let (all, one) = (name(b"{}"), name(b"{\"r\":1}"));
        let rewrite = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            edit(&mut json);
            std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        };

        // One request's answer filed under another request's name: refused.
        let original = std::fs::read(&path).unwrap();
        rewrite(&|json| {
            let moved = json["entries"][&all]["data"].clone();
            json["entries"][&one]["data"] = moved;
        });
        assert!(cache.load(&app, "c", "get_secret", b"{\"r\":1}").is_none());
        assert!(cache.load(&app, "c", "get_secret", b"{}").is_some());
        std::fs::write(&path, &original).unwrap();
        assert!(cache.load(&app, "c", "get_secret", b"{\"r\":1}").is_some());

        // Too old, with a fresh (even future) time written into the file: still too old.
        std::thread::sleep(Duration::from_millis(80));
        let future = now_ms() + 3_600_000;
        rewrite(&|json| {
            for entry in json["entries"].as_object_mut().unwrap().values_mut() {
                entry["storedAt"] = serde_json::json!(future);
            }
        });
        assert!(cache.load(&app, "c", "get_secret", b"{}").is_none());
        assert!(cache.load(&app, "c", "get_secret", b"{\"r\":1}").is_none());

        // A file of another version is ignored as a whole.
        cache.store(&app, "c", "get_secret", b"{}", b"answer-all");
        assert!(cache.load(&app, "c", "get_secret", b"{}").is_some());
        rewrite(&|json| json["version"] = serde_json::json!(1));
        assert!(cache.load(&app, "c", "get_secret", b"{}").is_none());
    }
}
