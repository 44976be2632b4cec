//! Rate limiting: fixed windows counted in the database, so that every instance sharing a
//! PostgreSQL database sees the same counts (SQLite counts in the process).
//!
//! * KSM requests: per client id and endpoint (the SDKs back off on `403 throttled` with
//!   `retry_after`, PROTOCOL.md §2.9).
//! * Owner logins: per email, against password guessing.

use std::time::Duration;

use coffer_proto::ErrorCode;

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

/// At most `requests` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in one window.
    pub requests: u32,
    /// Window length.
    pub window: Duration,
}

impl RateLimit {
    /// Parses `N/DURATION`, e.g. `200/10s`, `10/1m`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (count, window) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a rate like 200/10s"))?;
        let requests: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{count:?} is not a positive number of requests"))?;
        let window = humantime::parse_duration(window.trim())
            .map_err(|e| format!("{window:?} is not a duration: {e}"))?;
        if window < Duration::from_secs(1) {
            return Err("the window must be at least 1s".into());
        }
        Ok(Self { requests, window })
    }
}

/// Counts a request against `key`; answers `throttled` with `retry_after` past the limit.
pub async fn check(state: &AppState, limit: Option<RateLimit>, key: &str) -> ApiResult<()> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let window = limit.window.as_millis() as i64;
    let now = now_ms();
    let start = now - now.rem_euclid(window);
    let count = state.store.count_request(key, start).await?;
    if count <= u64::from(limit.requests) {
        return Ok(());
    }
    let retry_after = ((start + window - now) as u64).div_ceil(1000).max(1);
    let mut err = ApiError::new(
        ErrorCode::Throttled,
        format!(
            "Too many requests: at most {} per {} for this client; retry in {retry_after} s.",
            limit.requests,
            humantime::format_duration(limit.window)
        ),
    );
    err.retry_after = Some(retry_after);
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            RateLimit::parse("200/10s").unwrap(),
            RateLimit {
                requests: 200,
                window: Duration::from_secs(10)
            }
        );
        assert_eq!(
            RateLimit::parse("5 / 1m").unwrap().window,
            Duration::from_secs(60)
        );
        for bad in ["", "10", "0/10s", "x/10s", "10/soon", "10/500ms"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }
}
