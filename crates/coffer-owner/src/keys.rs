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
    // The parameters come from the server: weak ones would make the auth key sent to it cheap
    // to brute-force, huge ones would exhaust this machine.
    if !kdf.within_bounds() || !coffer_proto::owner::KDF_SALT_BYTES.contains(&salt.len()) {
        return Err(OwnerError::Invalid(format!(
            "the server sent key-derivation parameters outside the accepted bounds (argon2id, \
             19 MiB–1 GiB, 2–20 passes, 1–16 lanes, 16–64-byte salt): {} KiB, {} passes, {} \
             lanes, {}-byte salt; refusing to derive the login key with them",
            kdf.memory_kib,
            kdf.iterations,
            kdf.parallelism,
            salt.len()
        )));
    }
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
        kdf.memory_kib = *coffer_proto::owner::KDF_MEMORY_KIB.start();
        kdf.iterations = *coffer_proto::owner::KDF_ITERATIONS.start();
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

    /// Parameters from a server outside the bounds are refused before any work is done: too
    /// cheap (an auth key easy to brute-force) or too costly (memory or time exhaustion).
    #[test]
    fn parameters_outside_the_bounds_are_refused() {
        let good = new_kdf_params();
        let mut cases = Vec::new();
        for (memory, iterations, lanes) in [
            (8, 1, 1),
            (18 * 1024, 3, 1),
            (64 * 1024, 1, 1),
            (u32::MAX, 3, 1),
            (64 * 1024, u32::MAX, 1),
            (64 * 1024, 3, 0),
            (64 * 1024, 3, 64),
        ] {
            cases.push(KdfParams {
                memory_kib: memory,
                iterations,
                parallelism: lanes,
                ..good.clone()
            });
        }
        cases.push(KdfParams {
            salt: encode_std(&[1u8; 8]),
            ..good.clone()
        });
        for kdf in cases {
            let err = derive_master_keys("correct horse", &kdf)
                .err()
                .expect("refused");
            assert!(
                err.to_string().contains("outside the accepted bounds"),
                "{err}"
            );
        }
    }
}
