//! The protocol's error body (PROTOCOL.md §2.6, §2.8) and the codes Coffer uses.

use serde::{Deserialize, Serialize};

/// Error codes. The string forms are part of the protocol and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Bad signature, unknown or unbound client, revoked device, no access.
    AccessDenied,
    /// Stale revision on an update.
    OutOfSync,
    /// Malformed request.
    BadRequest,
    /// Too many requests; retry after `retry_after` seconds.
    Throttled,
    /// No such endpoint.
    NotFound,
    /// Upload or request body larger than allowed.
    TooLarge,
    /// Something failed inside the server.
    Internal,
    /// Owner API: missing or expired session.
    Unauthorized,
    /// Owner API: the object already exists.
    Conflict,
}

impl ErrorCode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::OutOfSync => "out_of_sync",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Throttled => "throttled",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Conflict => "conflict",
        }
    }

    /// The HTTP status Coffer answers with (PROTOCOL.md §2.8; `throttled` MUST be 403).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::AccessDenied | ErrorCode::Throttled => 403,
            ErrorCode::OutOfSync | ErrorCode::BadRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Internal => 500,
        }
    }
}

/// The plain JSON object every failed call answers with.
///
/// `result_code` is always equal to `error` (never `null`: Python would then miss the code).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// The error code.
    pub error: String,
    /// Same as `error`; read first by the Python and Rust SDKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<String>,
    /// Text for a person: what happened and what to do.
    pub message: String,
    /// With `throttled`: seconds to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorBody {
    /// A body with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: code.as_str().to_owned(),
            result_code: Some(code.as_str().to_owned()),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The effective code: `result_code` if present, else `error`.
    pub fn code(&self) -> &str {
        self.result_code.as_deref().unwrap_or(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_carries_result_code_equal_to_error() {
        let body = ErrorBody::new(ErrorCode::AccessDenied, "Signature is invalid");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["error"], "access_denied");
        assert_eq!(json["result_code"], "access_denied");
        assert_eq!(json["message"], "Signature is invalid");
        assert!(json.get("retry_after").is_none());
        assert_eq!(ErrorCode::Throttled.http_status(), 403);
    }
}
