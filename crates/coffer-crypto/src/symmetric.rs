//! 32-byte symmetric keys and the GCM / CBC envelopes of PROTOCOL.md §3.3 and §3.4.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, KEY_LEN, hazmat, random_bytes};

/// A 32-byte AES-256 key: app, record, folder, file, client, transmission or data key.
///
/// Wiped on drop; `Debug` never shows the bytes; equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SymmetricKey([u8; KEY_LEN]);

impl SymmetricKey {
    /// A fresh random key from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_bytes())
    }

    /// Wraps exactly 32 bytes; any other length is refused (the protocol has no other size).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("symmetric keys are 32 bytes"))?;
        Ok(Self(array))
    }

    /// Wraps a 32-byte array.
    pub fn from_array(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes. Callers must not log or persist them unwrapped.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        crate::ct_eq(&self.0, &other.0)
    }
}

impl Eq for SymmetricKey {}

/// `GCM(K, P)`: `nonce(12) || ciphertext || tag(16)` with a fresh random nonce.
pub fn gcm_seal(key: &SymmetricKey, plaintext: &[u8]) -> Vec<u8> {
    hazmat::gcm_seal_with_nonce(key, random_bytes(), plaintext)
}

/// Opens a `GCM(K, P)` envelope. Anything shorter than 28 bytes or failing authentication is
/// [`CryptoError::Decrypt`].
pub fn gcm_open(key: &SymmetricKey, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    hazmat::gcm_open(key, envelope)
}

/// `CBC(K, P)`: `iv(16) || AES-256-CBC(PKCS#7(P))` with a fresh random IV.
pub fn cbc_seal(key: &SymmetricKey, plaintext: &[u8]) -> Vec<u8> {
    hazmat::cbc_seal_with_iv(key, random_bytes(), plaintext)
}

/// Opens a `CBC(K, P)` envelope and strips the padding strictly.
///
/// CBC is unauthenticated: a wrong key usually shows up as bad padding, but not always.
/// The protocol only uses it for folder names and sub-folder keys.
pub fn cbc_open(key: &SymmetricKey, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    hazmat::cbc_open(key, envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = SymmetricKey::from_array([0xAB; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "SymmetricKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab, ") && !shown.contains("171"));
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(SymmetricKey::from_slice(&[0; 16]).is_err());
        assert!(SymmetricKey::from_slice(&[0; 33]).is_err());
        assert!(SymmetricKey::from_slice(&[0; 32]).is_ok());
    }

    #[test]
    fn gcm_round_trip_uses_fresh_nonces() {
        let key = SymmetricKey::generate();
        let a = gcm_seal(&key, b"secret");
        let b = gcm_seal(&key, b"secret");
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + crate::GCM_OVERHEAD);
        assert_eq!(gcm_open(&key, &a).unwrap(), b"secret");
        assert_eq!(
            gcm_open(&SymmetricKey::generate(), &a),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(gcm_open(&key, &a[..27]), Err(CryptoError::Decrypt));
    }

    #[test]
    fn cbc_round_trip() {
        let key = SymmetricKey::generate();
        for len in [0, 1, 15, 16, 17, 32, 100] {
            let pt = vec![7u8; len];
            let env = cbc_seal(&key, &pt);
            assert_eq!(env.len(), 16 + (len / 16 + 1) * 16);
            assert_eq!(cbc_open(&key, &env).unwrap(), pt);
        }
        assert_eq!(cbc_open(&key, &[0u8; 20]), Err(CryptoError::Decrypt));
        assert_eq!(cbc_open(&key, &[0u8; 16]), Err(CryptoError::Decrypt));
    }
}
