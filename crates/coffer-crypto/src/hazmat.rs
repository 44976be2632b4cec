//! Raw primitives over aws-lc-rs. Crate-private except for the test-vector re-exports.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;

use crate::{CryptoError, PUBLIC_KEY_LEN, SymmetricKey, sha256};

fn gcm_key(key: &SymmetricKey) -> LessSafeKey {
    // AES_256_GCM accepts every 32-byte key, and SymmetricKey is always 32 bytes.
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.expose()).expect("a 32-byte key is a valid AES-256 key"),
    )
}

/// `GCM(K, P)` with a caller-chosen nonce. Test vectors only.
pub fn gcm_seal_with_nonce(key: &SymmetricKey, nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = gcm_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut out[12..],
        )
        .expect("AES-GCM sealing cannot fail for in-range lengths");
    out.extend_from_slice(tag.as_ref());
    out
}

pub(crate) fn gcm_open(key: &SymmetricKey, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if envelope.len() < 28 {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, rest) = envelope.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
    let mut buf = rest.to_vec();
    let plain_len = gcm_key(key)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

fn cbc_unbound(key: &SymmetricKey) -> UnboundCipherKey {
    UnboundCipherKey::new(&AES_256, key.expose()).expect("a 32-byte key is a valid AES-256 key")
}

/// `CBC(K, P)` with a caller-chosen IV. Test vectors only.
pub fn cbc_seal_with_iv(key: &SymmetricKey, iv: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(cbc_unbound(key))
        .expect("AES-256-CBC with PKCS#7 is supported");
    let mut body = plaintext.to_vec();
    cipher
        .less_safe_encrypt(&mut body, EncryptionContext::Iv128(FixedLength::from(iv)))
        .expect("CBC encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&body);
    out
}

pub(crate) fn cbc_open(key: &SymmetricKey, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if envelope.len() < 32 || !envelope.len().is_multiple_of(16) {
        return Err(CryptoError::Decrypt);
    }
    let (iv, body) = envelope.split_at(16);
    let iv: [u8; 16] = iv.try_into().map_err(|_| CryptoError::Decrypt)?;
    let cipher = PaddedBlockDecryptingKey::cbc_pkcs7(cbc_unbound(key))
        .expect("AES-256-CBC with PKCS#7 is supported");
    let mut buf = body.to_vec();
    let plain_len = cipher
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// ECDH on P-256 followed by SHA-256 of the shared x-coordinate: the ECIES key.
pub(crate) fn ecies_key(
    private: &agreement::PrivateKey,
    peer_public: &[u8],
) -> Result<SymmetricKey, CryptoError> {
    let peer = UnparsedPublicKey::new(&ECDH_P256, peer_public);
    agreement::agree(private, peer, CryptoError::Decrypt, |shared| {
        Ok(SymmetricKey::from_array(sha256(shared)))
    })
}

/// `ECIES(Q, P)` with a caller-chosen ephemeral scalar and nonce. Test vectors only.
pub fn ecies_seal_with(
    recipient: &[u8],
    ephemeral_scalar: &[u8; 32],
    nonce: [u8; 12],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let ephemeral = agreement::PrivateKey::from_private_key(&ECDH_P256, ephemeral_scalar)
        .map_err(|_| CryptoError::InvalidKey("not a P-256 scalar"))?;
    ecies_seal_inner(recipient, &ephemeral, nonce, plaintext)
}

pub(crate) fn ecies_seal_inner(
    recipient: &[u8],
    ephemeral: &agreement::PrivateKey,
    nonce: [u8; 12],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let ephemeral_public = ephemeral
        .compute_public_key()
        .map_err(|_| CryptoError::InvalidKey("ephemeral key"))?;
    let key = ecies_key(ephemeral, recipient)
        .map_err(|_| CryptoError::InvalidKey("not a P-256 public key"))?;
    let mut out = Vec::with_capacity(PUBLIC_KEY_LEN + 28 + plaintext.len());
    out.extend_from_slice(ephemeral_public.as_ref());
    out.extend_from_slice(&gcm_seal_with_nonce(&key, nonce, plaintext));
    Ok(out)
}
