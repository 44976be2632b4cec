//! Coffer's cryptography, exactly as the Keeper Secrets Manager (KSM) protocol defines it.
//!
//! Everything a Coffer client or server encrypts, wraps, signs or verifies goes through this
//! crate. It is a leaf: no HTTP, no SQL, no async runtime. The primitives come from `aws-lc-rs`
//! (the same library rustls uses), which is fast for P-256 — the server does one ECDH and one
//! ECDSA verification per request.
//!
//! # Wire formats (PROTOCOL.md §3)
//!
//! * [`gcm_seal`]: `nonce(12) || AES-256-GCM ciphertext || tag(16)`, no associated data, a fresh
//!   random nonce for every call.
//! * [`cbc_seal`]: `iv(16) || AES-256-CBC(PKCS#7 padded plaintext)`, a fresh random IV every
//!   call. Used only for folder names and sub-folder keys, because the protocol says so.
//! * [`PublicKey::ecies_seal`]: `ephemeral P-256 point(65) || GCM(SHA-256(ECDH x), plaintext)`.
//! * [`KeyPair::sign`]: ECDSA P-256 with SHA-256, ASN.1 DER. [`PublicKey::verify`] accepts
//!   high-S and low-S signatures alike (the SDKs do not normalise S).
//!
//! # Invariants
//!
//! * Every symmetric key is exactly 32 bytes ([`SymmetricKey`]); nothing else is accepted.
//! * Key types wipe themselves on drop and never print their bytes (`Debug` is redacted).
//! * Decryption failures are detail-free: a wrong key, a flipped bit in the nonce, ciphertext
//!   or tag all give [`CryptoError::Decrypt`].
//! * GCM is not key-committing and has no associated data here; the protocol binds context
//!   only through which key wraps what.

mod b64;
mod ec;
mod hazmat;
mod symmetric;

pub use b64::{decode_lenient, encode_std, encode_url};
pub use ec::{KeyPair, PublicKey};
pub use symmetric::{SymmetricKey, cbc_open, cbc_seal, gcm_open, gcm_seal};

/// Raw primitives with caller-chosen nonces, IVs and ephemeral keys.
///
/// These exist only so that the protocol's fixed test vectors can be reproduced byte for byte.
/// Never use them for real data: a repeated GCM nonce destroys confidentiality and integrity.
pub mod vectors {
    pub use crate::hazmat::{cbc_seal_with_iv, ecies_seal_with, gcm_seal_with_nonce};
}

/// Length of every symmetric key in the protocol.
pub const KEY_LEN: usize = 32;
/// Length of an uncompressed SEC1 P-256 point.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Bytes that [`gcm_seal`] adds to a plaintext.
pub const GCM_OVERHEAD: usize = 12 + 16;

/// Every failure this crate reports.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Authenticated decryption failed: wrong key, or the data was altered. Deliberately
    /// detail-free.
    #[error("decryption failed (wrong key or tampered data)")]
    Decrypt,
    /// An ECDSA signature did not verify.
    #[error("signature is invalid")]
    Signature,
    /// Key material of the wrong size or shape.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Text that is not base64 in either alphabet.
    #[error("invalid base64")]
    Base64,
    /// The operating system's random source failed.
    #[error("random number generator failure")]
    Random,
}

/// Fills `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS random source failing is not recoverable in any meaningful way for a secrets
    // manager; aws-lc aborts internally in that case anyway.
    aws_lc_rs::rand::fill(&mut out).expect("operating system random source failed");
    out
}

/// The KSM client id of a one-time token's client key:
/// `B64(HMAC-SHA-512(clientKey, "KEEPER_SECRETS_MANAGER_CLIENT_ID"))` (PROTOCOL.md §3.8).
pub fn derive_client_id(client_key: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, client_key);
    let tag = aws_lc_rs::hmac::sign(&key, b"KEEPER_SECRETS_MANAGER_CLIENT_ID");
    encode_std(tag.as_ref())
}

/// HMAC-SHA-256, for capability tokens and key derivation labels.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Lowercase hexadecimal of `data` (checksums and digests shown to people).
pub fn encode_hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(data.len() * 2);
    for b in data {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A new random UID: 16 bytes, B64URL without padding (22 characters), never starting with
/// `-` or `_` (PROTOCOL.md §3.10).
pub fn make_uid() -> String {
    make_uid_from(random_bytes::<16>)
}

/// The UID rule of PROTOCOL.md §3.10 over an arbitrary source of 16-byte draws.
pub fn make_uid_from(mut draw: impl FnMut() -> [u8; 16]) -> String {
    let mut bytes = draw();
    let mut tries = 1;
    while bytes[0] & 0xF8 == 0xF8 && tries < 8 {
        bytes = draw();
        tries += 1;
    }
    if bytes[0] & 0xF8 == 0xF8 {
        bytes[0] &= 0x7F;
    }
    encode_url(&bytes)
}

/// True when `s` has the shape of a UID: 22 characters of the B64URL alphabet.
pub fn is_uid(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(encode_hex(&[]), "");
        assert_eq!(encode_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(
            encode_hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn uid_rule_masks_after_eight_bad_draws() {
        let mut first = [0u8; 16];
        first[0] = 0xfa;
        for (i, b) in first.iter_mut().enumerate().skip(1) {
            *b = i as u8;
        }
        assert_eq!(make_uid_from(|| first), "egECAwQFBgcICQoLDA0ODw");
    }

    #[test]
    fn uid_rule_redraws_a_bad_first_byte() {
        let mut draws = vec![];
        let mut bad = [0u8; 16];
        bad[0] = 0xfc;
        let mut good = [0u8; 16];
        good[0] = 0x12;
        for (i, b) in good.iter_mut().enumerate().skip(1) {
            *b = i as u8;
        }
        draws.push(good);
        draws.push(bad);
        assert_eq!(
            make_uid_from(|| draws.pop().unwrap()),
            "EgECAwQFBgcICQoLDA0ODw"
        );
    }

    #[test]
    fn random_uids_are_valid_and_distinct() {
        let a = make_uid();
        let b = make_uid();
        assert!(is_uid(&a) && is_uid(&b));
        assert_ne!(a, b);
        assert!(!a.starts_with('-') && !a.starts_with('_'));
        assert!(!is_uid("short"));
        assert!(!is_uid("AAAAAAAAAAAAAAAAAAAAA+"));
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
