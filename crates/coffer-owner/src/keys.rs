//! Master-password key derivation.

use coffer_crypto::{SymmetricKey, decode_lenient, encode_std, hmac_sha256, random_bytes};
use coffer_proto::owner::KdfParams;
use zeroize::Zeroizing;

use crate::{OwnerError, OwnerResult};

/// Argon2id memory for new accounts (64 MiB).
pub const KDF_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes for new accounts.
pub const KDF_ITERATIONS: u32 = 3;

/// The two keys derived from the master password.
pub struct MasterKeys {
    /// Proves the password to the server (the server stores a slow hash of it).
    pub auth_key: SymmetricKey,
    /// Unwraps the data key; never leaves this machine.
    pub encryption_key: SymmetricKey,
}

/// Fresh KDF parameters for a new account.
pub fn new_kdf_params() -> KdfParams {
    KdfParams {
        algorithm: "argon2id".into(),
        salt: encode_std(&random_bytes::<16>()),
        memory_kib: KDF_MEMORY_KIB,
        iterations: KDF_ITERATIONS,
        parallelism: 1,
    }
}

/// Runs Argon2id over the password and splits the result into the auth and encryption keys.
pub fn derive_master_keys(password: &str, kdf: &KdfParams) -> OwnerResult<MasterKeys> {
    if kdf.algorithm != "argon2id" {
        return Err(OwnerError::Invalid(format!(
            "unsupported key derivation {:?}",
            kdf.algorithm
        )));
    }
    let salt = decode_lenient(&kdf.salt)
        .map_err(|_| OwnerError::Invalid("the account's KDF salt is not base64".into()))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| OwnerError::Invalid(format!("invalid KDF parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut master = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password.as_bytes(), &salt, &mut master[..])
        .map_err(|e| OwnerError::Invalid(format!("key derivation failed: {e}")))?;
    Ok(MasterKeys {
        auth_key: SymmetricKey::from_array(hmac_sha256(&master[..], b"coffer auth key")),
        encryption_key: SymmetricKey::from_array(hmac_sha256(
            &master[..],
            b"coffer encryption key",
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_password_dependent() {
        let mut kdf = new_kdf_params();
        kdf.memory_kib = 8 * 1024;
        kdf.iterations = 1;
        let a = derive_master_keys("correct horse", &kdf).unwrap();
        let b = derive_master_keys("correct horse", &kdf).unwrap();
        let c = derive_master_keys("correct horsf", &kdf).unwrap();
        assert_eq!(a.auth_key, b.auth_key);
        assert_eq!(a.encryption_key, b.encryption_key);
        assert_ne!(a.auth_key, c.auth_key);
        assert_ne!(a.auth_key, a.encryption_key);
        kdf.algorithm = "pbkdf2".into();
        assert!(derive_master_keys("x", &kdf).is_err());
    }
}
