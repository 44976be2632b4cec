//! TOTP codes from `otpauth://` URIs (PROTOCOL.md §8.1), with the official Python SDK's
//! semantics: RFC 4648 Base32 with implicit padding, SHA1/SHA256/SHA512, 6–8 digits, any
//! period, and the `counter` parameter taken as the Unix time (a testing aid).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;

use crate::error::{Result, SdkError};

/// A TOTP code and how long it stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpCode {
    /// The code, zero-padded to the URI's digit count.
    pub code: String,
    /// Seconds until the code changes (1 ..= period).
    pub time_left: u64,
    /// The period in seconds.
    pub period: u64,
}

/// The code for now (or for the URI's `counter` parameter when it is a positive integer).
pub fn get_totp_code(uri: &str) -> Result<TotpCode> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    get_totp_code_at(uri, now)
}

/// The code at `unix_time` (the URI's `counter` parameter still takes precedence).
pub fn get_totp_code_at(uri: &str, unix_time: u64) -> Result<TotpCode> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| SdkError::Totp("Not an otpauth URI".into()))?;
    if !scheme.eq_ignore_ascii_case("otpauth") {
        return Err(SdkError::Totp("Not an otpauth URI".into()));
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let mut secret = None;
    let mut algorithm = None;
    let mut digits = None;
    let mut period = None;
    let mut counter = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        // As Python's `parse_qsl` does: a blank value is no value (the default applies).
        if value.is_empty() {
            continue;
        }
        match percent_decode(key).as_str() {
            "secret" => secret = Some(value),
            "algorithm" => algorithm = Some(value),
            "digits" => digits = Some(value),
            "period" => period = Some(value),
            "counter" => counter = Some(value),
            _ => {}
        }
    }
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SdkError::Totp("TOTP secret not found in URI".into()))?;
    let algorithm = match algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("SHA1") => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Some("SHA256") => hmac::HMAC_SHA256,
        Some("SHA512") => hmac::HMAC_SHA512,
        Some(_) => {
            return Err(SdkError::Totp(format!(
                "Invalid value {:?} for TOTP algorithm, must be SHA1, SHA256 or SHA512",
                algorithm.unwrap_or_default()
            )));
        }
    };
    let positive = |v: Option<String>| {
        v.and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
    };
    let digits = positive(digits).unwrap_or(6);
    if !(6..=8).contains(&digits) {
        return Err(SdkError::Totp("TOTP Digits may only be 6, 7, or 8".into()));
    }
    let period = positive(period).unwrap_or(30);
    let time = positive(counter).unwrap_or(unix_time);
    let key = base32_decode(&secret)?;
    let step = (time / period).to_be_bytes();
    let tag = hmac::sign(&hmac::Key::new(algorithm, &key), &step);
    let h = tag.as_ref();
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let binary =
        u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]) & 0x7fff_ffff;
    let code = u64::from(binary) % 10u64.pow(digits as u32);
    Ok(TotpCode {
        code: format!("{code:0width$}", width = digits as usize),
        time_left: period - time % period,
        period,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 4648 Base32, case-insensitive, padding optional, spaces ignored; trailing bits that
/// do not fill a byte are dropped.
pub(crate) fn base32_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for c in text
        .trim_end_matches('=')
        .chars()
        .filter(|c| !c.is_whitespace())
    {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return Err(SdkError::Totp("the TOTP secret is not valid Base32".into())),
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const SHA256: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA====";
    const SHA512: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA=";

    #[test]
    fn rfc6238_vectors() {
        let table: [(u64, &str, &str, &str, u64); 5] = [
            (59, "94287082", "46119246", "90693936", 1),
            (1111111109, "07081804", "68084774", "25091201", 1),
            (1111111111, "14050471", "67062674", "99943326", 29),
            (1234567890, "89005924", "91819424", "93441116", 30),
            (2000000000, "69279037", "90698825", "38618901", 10),
        ];
        for (t, c1, c256, c512, left) in table {
            for (secret, alg, want) in [
                (SHA1, "SHA1", c1),
                (SHA256, "SHA256", c256),
                (SHA512, "sha512", c512),
            ] {
                let uri = format!(
                    "otpauth://totp/X?secret={secret}&algorithm={alg}&digits=8&period=30&counter={t}"
                );
                let code = get_totp_code(&uri).unwrap();
                assert_eq!(code.code, want, "{alg} at {t}");
                assert_eq!(code.time_left, left);
                assert_eq!(code.period, 30);
            }
        }
    }

    #[test]
    fn python_sdk_cases() {
        let cases = [
            (
                "otpauth://totp/Example:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Example&counter=1700000000",
                "324550",
                10,
                30,
            ),
            (
                "otpauth://totp/Example:alice@example.com?secret=jbswy3dpehpk3pxp&issuer=Example&counter=1700000000",
                "324550",
                10,
                30,
            ),
            (
                "otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&period=60&digits=7&counter=1700000000",
                "9508648",
                40,
                60,
            ),
            (
                "otpauth://totp/X?secret=JBSWY3DPEHPK3PXPJBSWY3DPEH&counter=1700000000",
                "164778",
                10,
                30,
            ),
        ];
        for (uri, code, left, period) in cases {
            let got = get_totp_code(uri).unwrap();
            assert_eq!(
                (got.code.as_str(), got.time_left, got.period),
                (code, left, period),
                "{uri}"
            );
        }
        // Without `counter` the given time is used.
        let at =
            get_totp_code_at("otpauth://totp/X?secret=JBSWY3DPEHPK3PXP", 1_700_000_000).unwrap();
        assert_eq!(at.code, "324550");
        let now = get_totp_code("otpauth://totp/X?secret=JBSWY3DPEHPK3PXP").unwrap();
        assert!(now.time_left >= 1 && now.time_left <= 30 && now.code.len() == 6);
    }

    #[test]
    fn errors() {
        let e = |uri: &str| get_totp_code(uri).unwrap_err().to_string();
        assert!(e("otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&digits=9").contains("6, 7, or 8"));
        assert!(e("otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&algorithm=MD5").contains("\"MD5\""));
        assert!(e("otpauth://totp/X?issuer=x").contains("secret not found"));
        assert!(e("https://totp/X?secret=JBSWY3DPEHPK3PXP").contains("Not an otpauth URI"));
        assert!(e("otpauth://totp/X?secret=JBSW1!").contains("Base32"));
        // Invalid numbers fall back to the defaults.
        let d = get_totp_code(
            "otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&digits=x&period=-5&counter=1700000000",
        )
        .unwrap();
        assert_eq!((d.code.as_str(), d.period), ("324550", 30));
        // Blank values are no values: the defaults apply, and an earlier value stays.
        for uri in [
            "otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&algorithm=&digits=&period=&counter=1700000000",
            "otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&algorithm&counter=1700000000",
            "otpauth://totp/X?secret=JBSWY3DPEHPK3PXP&secret=&counter=1700000000",
        ] {
            assert_eq!(get_totp_code(uri).unwrap().code, "324550", "{uri}");
        }
    }

    #[test]
    fn base32_and_percent_decoding() {
        assert_eq!(base32_decode("MZXW6===").unwrap(), b"foo");
        assert_eq!(base32_decode("mzxw6").unwrap(), b"foo");
        assert_eq!(percent_decode("a%20b+c%zz"), "a b c%zz");
    }
}
