//! HTTPS transport: one connection-reusing HTTP client, request encryption and signing
//! (PROTOCOL.md §1.3, §2.3–§2.5, §3.6, §3.7), error mapping (§2.6–§2.8) and the throttling
//! back-off policy (§2.9).

use std::path::PathBuf;
use std::time::Duration;

use coffer_crypto::{KeyPair, PublicKey, SymmetricKey, encode_std, gcm_open, gcm_seal};
use serde_json::Value;

use crate::error::{Result, SdkError};

/// The `clientVersion` this SDK sends.
///
/// Coffer accepts any `m<letter><digits>.<digits>.<digits>` value. Keeper's own backend only
/// accepts registered SDK identities, so the SDK presents itself with the identity of the
/// protocol level it implements, the official Rust SDK 17.3.0 (`mr` = Rust): a made-up
/// identity such as `mc0.1.0` would be refused with `invalid_client_version` by any server
/// that checks.
pub const CLIENT_VERSION: &str = "mr17.3.0";

/// Which TLS server certificates are trusted.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Tls {
    /// The operating system's trust store (the default).
    #[default]
    System,
    /// The system roots plus the certificates of a PEM file, e.g. a self-hosted Coffer
    /// server's `DATA_DIR/tls/cert.pem`.
    ExtraCaFile(PathBuf),
    /// The system roots plus PEM certificates given as bytes.
    ExtraCaPem(Vec<u8>),
    /// No verification at all. Anyone on the network path can read and change the traffic's
    /// outer layer; the protocol's own encryption still protects payloads, but file download
    /// and upload links travel unprotected. Logged as a warning; for tests only.
    SkipVerify,
}

/// How often and how long to wait when the server answers `throttled` (PROTOCOL.md §2.9).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (the official SDKs use 5).
    pub max_retries: u32,
    /// First back-off when the server gives no `retry_after`; doubled for each retry.
    pub base_delay: Duration,
    /// Upper bound of any single wait (also caps a server's `retry_after`).
    pub max_delay: Duration,
    /// Relative jitter applied to every wait: ±`jitter` (0.25 = ±25 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_secs(11),
            max_delay: Duration::from_secs(176),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `attempt` (0-based), honouring the server's `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = match retry_after {
            Some(d) if !d.is_zero() => d,
            _ => self
                .base_delay
                .saturating_mul(2u32.saturating_pow(attempt.min(16))),
        };
        let base = base.min(self.max_delay);
        let unit = unit_random();
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        base.mul_f64(factor.max(0.0)).min(self.max_delay)
    }
}

/// A uniform random number in [0, 1) from the CSPRNG.
fn unit_random() -> f64 {
    let bytes = coffer_crypto::random_bytes::<8>();
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// HTTP settings of a client.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub tls: Tls,
    pub proxy: Option<String>,
    pub connect_timeout: Duration,
}

/// Builds the one HTTP client a `SecretsManager` uses for everything (API calls, downloads,
/// uploads), so connections are reused (keep-alive). It has no overall timeout: each use sets
/// its own (API calls and uploads a deadline per request, downloads a limit per wait for
/// data).
pub(crate) fn build_http(settings: &HttpSettings) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .http1_only();
    match &settings.proxy {
        Some(url) => {
            let proxy = reqwest::Proxy::all(url.as_str())
                .map_err(|e| SdkError::Config(format!("invalid proxy URL {url:?}: {e}")))?;
            builder = builder.proxy(proxy);
        }
        None => builder = builder.no_proxy(),
    }
    match &settings.tls {
        Tls::System => {}
        Tls::ExtraCaFile(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                SdkError::io(format!("cannot read CA certificate {}", path.display()), e)
            })?;
            builder = builder.tls_certs_merge(parse_pem(&pem, &path.display().to_string())?);
        }
        Tls::ExtraCaPem(pem) => {
            builder = builder.tls_certs_merge(parse_pem(pem, "the CA certificate")?);
        }
        Tls::SkipVerify => {
            tracing::warn!(
                "TLS certificate verification is disabled: the connection to the server is \
                 not authenticated (use an extra CA certificate instead)"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
    }
    builder
        .build()
        .map_err(|e| SdkError::Config(format!("cannot set up HTTPS: {}", error_chain(&e))))
}

fn parse_pem(pem: &[u8], what: &str) -> Result<Vec<reqwest::Certificate>> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| SdkError::Config(format!("{what} is not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(SdkError::Config(format!(
            "{what} contains no PEM certificate"
        )));
    }
    Ok(certs)
}

/// The message of an error and all its sources.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

/// Keys used to encrypt and sign one call.
pub(crate) struct CallKeys<'a> {
    pub server_key: &'a PublicKey,
    pub key_id: &'a str,
    pub device: &'a KeyPair,
}

/// What one attempt produced.
pub(crate) enum Attempt {
    /// HTTP 200: the decrypted body (empty when the server sent none).
    Ok(Vec<u8>),
    /// `throttled` (403 or 429): retry after the given time.
    Throttled(Option<Duration>),
    /// `key`: the server wants key id `N`.
    Key(Option<String>),
    /// Any other failure.
    Failed(SdkError),
}

/// Encrypts, signs and posts one payload; classifies the answer.
pub(crate) async fn post_once(
    http: &reqwest::Client,
    timeout: Duration,
    url: &str,
    keys: &CallKeys<'_>,
    payload: &[u8],
) -> Attempt {
    let transmission_key = SymmetricKey::generate();
    let encrypted_key = keys.server_key.ecies_seal(transmission_key.expose());
    let body = gcm_seal(&transmission_key, payload);
    let mut signed = Vec::with_capacity(encrypted_key.len() + body.len());
    signed.extend_from_slice(&encrypted_key);
    signed.extend_from_slice(&body);
    let signature = keys.device.sign(&signed);
    drop(signed);
    let request = http
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header("PublicKeyId", keys.key_id)
        .header("TransmissionKey", encode_std(&encrypted_key))
        .header(
            "Authorization",
            format!("Signature {}", encode_std(&signature)),
        )
        .body(body);
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(SdkError::Network(error_chain(&e))),
    };
    let status = response.status().as_u16();
    let retry_after_header = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Attempt::Failed(SdkError::Network(error_chain(&e))),
    };
    if status == 200 {
        if bytes.is_empty() {
            return Attempt::Ok(Vec::new());
        }
        return match gcm_open(&transmission_key, &bytes) {
            Ok(plain) => Attempt::Ok(plain),
            Err(_) => Attempt::Failed(SdkError::Protocol(format!(
                "the {}-byte answer does not decrypt with this request's transmission key \
                 (is something between the SDK and the server altering traffic?)",
                bytes.len()
            ))),
        };
    }
    classify_error(status, &bytes, retry_after_header)
}

/// Maps a non-200 answer (PROTOCOL.md §2.7).
pub(crate) fn classify_error(status: u16, body: &[u8], retry_after_header: Option<f64>) -> Attempt {
    let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_slice(body).ok();
    let Some(obj) = parsed else {
        if status == 429 {
            return Attempt::Throttled(retry_after_header.and_then(seconds));
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Attempt::Failed(SdkError::Http { status, body: text });
    };
    let text = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let code = text("result_code").or_else(|| text("error")).unwrap_or("");
    let message = text("message").unwrap_or("no message").to_owned();
    if (status == 403 && code == "throttled") || status == 429 {
        let retry_after = obj
            .get("retry_after")
            .and_then(number)
            .or(retry_after_header)
            .and_then(seconds);
        return Attempt::Throttled(retry_after);
    }
    if code == "key" {
        let key_id = obj.get("key_id").and_then(|v| match v {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if s.trim().parse::<u64>().is_ok() => Some(s.trim().to_owned()),
            _ => None,
        });
        return Attempt::Key(key_id);
    }
    if code == "invalid_client_version" {
        let info = text("additional_info").unwrap_or(&message).to_owned();
        return Attempt::Failed(SdkError::ClientVersion(info));
    }
    if code.is_empty() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Attempt::Failed(SdkError::Http { status, body: text });
    }
    Attempt::Failed(SdkError::Server {
        status,
        code: code.to_owned(),
        message,
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn seconds(value: f64) -> Option<Duration> {
    if value.is_finite() && value > 0.0 {
        Some(Duration::from_secs_f64(value.min(86_400.0)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay(0, None), Duration::from_secs(11));
        assert_eq!(policy.delay(1, None), Duration::from_secs(22));
        assert_eq!(policy.delay(4, None), Duration::from_secs(176));
        assert_eq!(policy.delay(9, None), Duration::from_secs(176));
        assert_eq!(
            policy.delay(3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(9999))),
            Duration::from_secs(176)
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let policy = RetryPolicy::default();
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..200 {
            let d = policy.delay(0, None).as_secs_f64();
            assert!((8.25..=13.75).contains(&d), "{d}");
            seen_low |= d < 11.0;
            seen_high |= d > 11.0;
        }
        assert!(seen_low && seen_high);
    }

    #[test]
    fn error_bodies_are_classified() {
        let throttled = br#"{"error":"throttled","message":"slow down","retry_after":"3"}"#;
        assert!(matches!(
            classify_error(403, throttled, None),
            Attempt::Throttled(Some(d)) if d == Duration::from_secs(3)
        ));
        // A non-403 `throttled` is an ordinary error (PROTOCOL.md §2.9)…
        assert!(matches!(
            classify_error(400, throttled, None),
            Attempt::Failed(SdkError::Server { .. })
        ));
        // …but 429 always means "slow down".
        assert!(matches!(
            classify_error(429, b"busy", Some(1.5)),
            Attempt::Throttled(Some(d)) if d == Duration::from_millis(1500)
        ));
        let neg = br#"{"error":"throttled","message":"x","retry_after":-4}"#;
        assert!(matches!(
            classify_error(403, neg, None),
            Attempt::Throttled(None)
        ));
        let key = br#"{"error":"key","key_id":7,"message":"invalid key id"}"#;
        assert!(matches!(classify_error(401, key, None), Attempt::Key(Some(k)) if k == "7"));
        let version =
            br#"{"error":"invalid_client_version","additional_info":"too old","message":"m"}"#;
        assert!(matches!(
            classify_error(400, version, None),
            Attempt::Failed(SdkError::ClientVersion(info)) if info == "too old"
        ));
        let denied = br#"{"error":"access_denied","result_code":"access_denied","message":"Signature is invalid"}"#;
        match classify_error(403, denied, None) {
            Attempt::Failed(SdkError::Server {
                status,
                code,
                message,
            }) => {
                assert_eq!((status, code.as_str()), (403, "access_denied"));
                assert_eq!(message, "Signature is invalid");
            }
            _ => panic!("expected a server error"),
        }
        assert!(matches!(
            classify_error(502, b"<html>bad gateway</html>", None),
            Attempt::Failed(SdkError::Http { status: 502, .. })
        ));
        // `result_code` wins over `error`.
        let both = br#"{"error":"x","result_code":"throttled","message":"m"}"#;
        assert!(matches!(
            classify_error(403, both, None),
            Attempt::Throttled(None)
        ));
    }
}
