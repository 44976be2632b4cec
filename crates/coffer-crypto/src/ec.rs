//! P-256 key pairs and public keys: ECIES, ECDSA, and the PKCS#8 layout of PROTOCOL.md §3.9.

use std::fmt;

use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};
use zeroize::Zeroizing;

use crate::{CryptoError, PUBLIC_KEY_LEN, SymmetricKey, hazmat, random_bytes};

/// The 36 bytes that precede the private scalar in the protocol's PKCS#8 layout.
const PKCS8_PREFIX: [u8; 36] = [
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];
/// The 5 bytes between the scalar and the public point.
const PKCS8_MIDDLE: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];

/// An uncompressed P-256 public key (65 bytes, `04 || X || Y`), validated to be on the curve.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Parses and validates a 65-byte uncompressed point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("public keys are 65-byte uncompressed points"))?;
        if array[0] != 0x04 {
            return Err(CryptoError::InvalidKey("public keys must be uncompressed"));
        }
        // An ECDH with a throwaway key validates that the point is on the curve.
        let probe = agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| CryptoError::Random)?;
        hazmat::ecies_key(&probe, &array)
            .map_err(|_| CryptoError::InvalidKey("not a point on P-256"))?;
        Ok(Self(array))
    }

    /// The 65 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// `ECIES(Q, P)`: a fresh ephemeral key and nonce; output is `65 + 28 + len(P)` bytes.
    pub fn ecies_seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let ephemeral = agreement::PrivateKey::generate(&ECDH_P256).expect("P-256 key generation");
        hazmat::ecies_seal_inner(&self.0, &ephemeral, random_bytes(), plaintext)
            .expect("a validated public key always agrees")
    }

    /// Verifies a DER ECDSA-P256-SHA256 signature over `message` (high-S and low-S accepted).
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.0[..])
            .verify(message, der_signature)
            .map_err(|_| CryptoError::Signature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", crate::encode_url(&self.0))
    }
}

/// A P-256 key pair: server key, device key, or owner key.
///
/// Holds both the ECDH and the ECDSA form so the hot path does no key parsing.
pub struct KeyPair {
    scalar: Zeroizing<[u8; 32]>,
    public: PublicKey,
    ecdh: agreement::PrivateKey,
    ecdsa: EcdsaKeyPair,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        loop {
            let scalar = Zeroizing::new(random_bytes::<32>());
            // A random 32-byte string is a valid scalar except with negligible probability.
            if let Ok(pair) = Self::from_scalar(&scalar) {
                return pair;
            }
        }
    }

    /// Builds a key pair from a 32-byte big-endian private scalar.
    pub fn from_scalar(scalar: &[u8; 32]) -> Result<Self, CryptoError> {
        let ecdh = agreement::PrivateKey::from_private_key(&ECDH_P256, scalar)
            .map_err(|_| CryptoError::InvalidKey("not a valid P-256 private scalar"))?;
        let public = ecdh
            .compute_public_key()
            .map_err(|_| CryptoError::InvalidKey("not a valid P-256 private scalar"))?;
        let public = PublicKey::from_bytes(public.as_ref())?;
        let ecdsa = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            scalar,
            public.as_bytes(),
        )
        .map_err(|_| CryptoError::InvalidKey("not a valid P-256 private scalar"))?;
        Ok(Self {
            scalar: Zeroizing::new(*scalar),
            public,
            ecdh,
            ecdsa,
        })
    }

    /// Parses a PKCS#8 DER private key (the config's `privateKey`). The protocol's 138-byte
    /// layout is read directly; any other valid PKCS#8 P-256 key is accepted too.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        if der.len() == 138 && der[..36] == PKCS8_PREFIX && der[68..73] == PKCS8_MIDDLE {
            let mut scalar = Zeroizing::new([0u8; 32]);
            scalar.copy_from_slice(&der[36..68]);
            let pair = Self::from_scalar(&scalar)?;
            if pair.public.as_bytes()[..] != der[73..] {
                return Err(CryptoError::InvalidKey(
                    "public key does not match private key",
                ));
            }
            return Ok(pair);
        }
        let parsed = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map_err(|_| CryptoError::InvalidKey("not a PKCS#8 P-256 private key"))?;
        let bin = parsed
            .private_key()
            .as_be_bytes()
            .map_err(|_| CryptoError::InvalidKey("not a PKCS#8 P-256 private key"))?;
        let scalar: [u8; 32] = bin
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("not a PKCS#8 P-256 private key"))?;
        let scalar = Zeroizing::new(scalar);
        Self::from_scalar(&scalar)
    }

    /// The protocol's 138-byte PKCS#8 DER (PROTOCOL.md §3.9), public key included.
    pub fn to_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(138));
        out.extend_from_slice(&PKCS8_PREFIX);
        out.extend_from_slice(&self.scalar[..]);
        out.extend_from_slice(&PKCS8_MIDDLE);
        out.extend_from_slice(self.public.as_bytes());
        out
    }

    /// The private scalar. Callers must not log or persist it unwrapped.
    pub fn expose_scalar(&self) -> &[u8; 32] {
        &self.scalar
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Opens an `ECIES(Q, P)` blob addressed to this key pair.
    pub fn ecies_open(&self, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < PUBLIC_KEY_LEN + 28 {
            return Err(CryptoError::Decrypt);
        }
        let (ephemeral, envelope) = blob.split_at(PUBLIC_KEY_LEN);
        let key = hazmat::ecies_key(&self.ecdh, ephemeral)?;
        crate::gcm_open(&key, envelope)
    }

    /// Opens an ECIES blob that must contain a 32-byte symmetric key.
    pub fn ecies_open_key(&self, blob: &[u8]) -> Result<SymmetricKey, CryptoError> {
        let plain = Zeroizing::new(self.ecies_open(blob)?);
        SymmetricKey::from_slice(&plain)
    }

    /// ECDSA P-256 SHA-256 signature, DER-encoded.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.ecdsa
            .sign(&SystemRandom::new(), message)
            .expect("ECDSA signing with a valid key")
            .as_ref()
            .to_vec()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl Clone for KeyPair {
    fn clone(&self) -> Self {
        Self::from_scalar(&self.scalar).expect("a key pair's own scalar is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecies_round_trip_and_tamper() {
        let pair = KeyPair::generate();
        let blob = pair.public_key().ecies_seal(b"transmission key");
        assert_eq!(blob.len(), 65 + 28 + 16);
        assert_eq!(pair.ecies_open(&blob).unwrap(), b"transmission key");
        for i in [0usize, 10, 64, 65, 80, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert!(pair.ecies_open(&bad).is_err(), "flip at {i}");
        }
        assert!(KeyPair::generate().ecies_open(&blob).is_err());
        assert!(pair.ecies_open(&blob[..90]).is_err());
    }

    #[test]
    fn sign_verify_and_tamper() {
        let pair = KeyPair::generate();
        let sig = pair.sign(b"message");
        pair.public_key().verify(b"message", &sig).unwrap();
        assert_eq!(
            pair.public_key().verify(b"messagf", &sig),
            Err(CryptoError::Signature)
        );
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            pair.public_key().verify(b"message", &bad),
            Err(CryptoError::Signature)
        );
        assert_eq!(
            KeyPair::generate().public_key().verify(b"message", &sig),
            Err(CryptoError::Signature)
        );
    }

    #[test]
    fn pkcs8_round_trip() {
        let pair = KeyPair::generate();
        let der = pair.to_pkcs8();
        assert_eq!(der.len(), 138);
        let back = KeyPair::from_pkcs8(&der).unwrap();
        assert_eq!(back.public_key(), pair.public_key());
        let mut wrong = der.to_vec();
        wrong[137] ^= 1;
        assert!(KeyPair::from_pkcs8(&wrong).is_err());
        assert!(KeyPair::from_pkcs8(b"garbage").is_err());
    }

    #[test]
    fn public_keys_are_validated() {
        assert!(PublicKey::from_bytes(&[4u8; 65]).is_err());
        assert!(PublicKey::from_bytes(&[4u8; 64]).is_err());
        let good = KeyPair::generate().public_key().as_bytes().to_vec();
        let mut compressed = good.clone();
        compressed[0] = 2;
        assert!(PublicKey::from_bytes(&compressed).is_err());
        assert!(PublicKey::from_bytes(&good).is_ok());
    }

    #[test]
    fn debug_never_prints_the_scalar() {
        let pair = KeyPair::from_scalar(&[0x41; 32]).unwrap();
        let shown = format!("{pair:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("QUFBQUFB"));
    }
}
