//! The two base64 forms of the protocol and the lenient decoder every server-side field needs.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::CryptoError;

/// B64: standard alphabet with `=` padding (keys, record data, folder data).
pub fn encode_std(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// B64URL: URL-safe alphabet without padding (UIDs, `appData`, tokens, `serverPublicKey`).
pub fn encode_url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes either alphabet, with or without padding, ignoring surrounding whitespace
/// (PROTOCOL.md §3.2, §5.0.3). Mixed alphabets are tolerated; anything else is an error.
pub fn decode_lenient(text: &str) -> Result<Vec<u8>, CryptoError> {
    let trimmed = text.trim();
    let unpadded = trimmed.trim_end_matches('=');
    if trimmed.len() - unpadded.len() > 2 {
        return Err(CryptoError::Base64);
    }
    let normalised: String = unpadded
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normalised.as_bytes())
        .map_err(|_| CryptoError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_decoder_accepts_all_four_forms() {
        let bytes = [0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x00];
        for form in ["+vv8/f7/AA==", "+vv8/f7/AA", "-vv8_f7_AA==", "-vv8_f7_AA"] {
            assert_eq!(decode_lenient(form).unwrap(), bytes, "{form}");
        }
        assert_eq!(encode_std(&bytes), "+vv8/f7/AA==");
        assert_eq!(encode_url(&bytes), "-vv8_f7_AA");
    }

    #[test]
    fn lenient_decoder_rejects_garbage() {
        for bad in ["!!!!", "a", "AAAA===", "AA AA", "ü"] {
            assert_eq!(decode_lenient(bad), Err(CryptoError::Base64), "{bad}");
        }
        assert_eq!(decode_lenient("").unwrap(), Vec::<u8>::new());
    }
}
