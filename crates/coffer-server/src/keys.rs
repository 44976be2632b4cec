//! The server's P-256 key pair(s): generated on first start, persisted with mode 0600.

use std::path::Path;

use coffer_crypto::{KeyPair, decode_lenient, encode_std, encode_url};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_private_file;

/// The key id the first generated key gets.
pub const FIRST_KEY_ID: u32 = 100;

/// The server's key pairs. The newest is the one published; older ones still open requests.
#[derive(Debug)]
pub struct ServerKeys {
    keys: Vec<(u32, KeyPair)>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    key_id: u32,
    /// B64 PKCS#8 DER.
    private_key: String,
}

impl ServerKeys {
    /// Loads `path`, or generates a key and writes it there (mode 0600) when it is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        if path.exists() {
            return Self::load(path);
        }
        let keys = Self {
            keys: vec![(FIRST_KEY_ID, KeyPair::generate())],
        };
        write_private_file(path, keys.to_json().as_bytes())
            .map_err(|e| format!("cannot write server key file {}: {e}", path.display()))?;
        Ok(keys)
    }

    /// Loads an existing key file (shared by several instances); a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read server key file {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| format!("server key file {} is invalid: {e}", path.display()))
    }

    /// A new key file's JSON with one fresh key (`coffer admin gen-server-key`).
    pub fn generate_json() -> String {
        Self {
            keys: vec![(FIRST_KEY_ID, KeyPair::generate())],
        }
        .to_json()
    }

    /// Adds a fresh key with the next key id; it becomes the published key, and the older
    /// ones still open requests of clients configured with them. Returns the new id.
    pub fn rotate(&mut self) -> u32 {
        let next = self
            .keys
            .iter()
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(FIRST_KEY_ID - 1)
            + 1;
        self.keys.push((next, KeyPair::generate()));
        next
    }

    /// The key file's JSON.
    pub fn to_file_json(&self) -> String {
        self.to_json()
    }

    /// The key ids, oldest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    /// Parses the key file's JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.keys.is_empty() {
            return Err("no keys".into());
        }
        let mut keys: Vec<(u32, KeyPair)> = Vec::new();
        for entry in file.keys {
            if keys.iter().any(|(id, _)| *id == entry.key_id) {
                return Err(format!("key id {} appears twice", entry.key_id));
            }
            let der = decode_lenient(&entry.private_key).map_err(|e| e.to_string())?;
            let pair = KeyPair::from_pkcs8(&der).map_err(|e| e.to_string())?;
            keys.push((entry.key_id, pair));
        }
        Ok(Self { keys })
    }

    fn to_json(&self) -> String {
        let file = KeyFile {
            keys: self
                .keys
                .iter()
                .map(|(id, pair)| KeyEntry {
                    key_id: *id,
                    private_key: encode_std(&pair.to_pkcs8()),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).expect("key file serialises")
    }

    /// The published key id and key pair (the newest).
    pub fn current(&self) -> (u32, &KeyPair) {
        let (id, pair) = self.keys.last().expect("at least one key is always loaded");
        (*id, pair)
    }

    /// B64URL of the published public key (the form client configs carry).
    pub fn public_key_b64url(&self) -> String {
        encode_url(self.current().1.public_key().as_bytes())
    }

    /// Opens a transmission key: the key named by `key_id` first, then every other key
    /// (PROTOCOL.md §4.6: with custom keys, clients may send any id).
    pub fn open_transmission_key(&self, key_id: Option<u32>, blob: &[u8]) -> Option<Vec<u8>> {
        let preferred = self.keys.iter().filter(|(id, _)| Some(*id) == key_id);
        let others = self.keys.iter().filter(|(id, _)| Some(*id) != key_id);
        preferred
            .chain(others)
            .find_map(|(_, pair)| pair.ecies_open(blob).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server-key.json");
        let a = ServerKeys::load_or_create(&path).unwrap();
        let b = ServerKeys::load_or_create(&path).unwrap();
        assert_eq!(a.public_key_b64url(), b.public_key_b64url());
        assert_eq!(a.current().0, FIRST_KEY_ID);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let blob = a.current().1.public_key().ecies_seal(b"tk");
        assert_eq!(b.open_transmission_key(Some(7), &blob).unwrap(), b"tk");
        assert!(ServerKeys::parse("{\"keys\":[]}").is_err());
        let mut rotated = ServerKeys::parse(&a.to_file_json()).unwrap();
        assert_eq!(rotated.rotate(), FIRST_KEY_ID + 1);
        assert_eq!(rotated.key_ids(), vec![FIRST_KEY_ID, FIRST_KEY_ID + 1]);
        assert_ne!(rotated.public_key_b64url(), a.public_key_b64url());
        // A client still configured with the old key is served.
        assert_eq!(
            rotated
                .open_transmission_key(Some(FIRST_KEY_ID), &blob)
                .unwrap(),
            b"tk"
        );
        assert_eq!(
            rotated.open_transmission_key(Some(1), &blob).unwrap(),
            b"tk"
        );
        let entry: serde_json::Value = serde_json::from_str(&a.to_file_json()).unwrap();
        let one = entry["keys"][0].clone();
        let doubled = serde_json::json!({ "keys": [one.clone(), one] }).to_string();
        let err = ServerKeys::parse(&doubled).unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
        assert!(ServerKeys::parse("garbage").is_err());
    }
}
