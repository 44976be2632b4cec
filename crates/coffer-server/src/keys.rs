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
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read server key file {}: {e}", path.display()))?;
            return Self::parse(&text)
                .map_err(|e| format!("server key file {} is invalid: {e}", path.display()));
        }
        let keys = Self {
            keys: vec![(FIRST_KEY_ID, KeyPair::generate())],
        };
        write_private_file(path, keys.to_json().as_bytes())
            .map_err(|e| format!("cannot write server key file {}: {e}", path.display()))?;
        Ok(keys)
    }

    /// Parses the key file's JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.keys.is_empty() {
            return Err("no keys".into());
        }
        let mut keys = Vec::new();
        for entry in file.keys {
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
        assert!(ServerKeys::parse("garbage").is_err());
    }
}
