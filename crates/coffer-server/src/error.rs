//! The one place where failures become HTTP responses.
//!
//! Every error answers with the protocol's plain JSON body (`error`, `result_code`, `message`).
//! The message is for the client; the `log` detail goes only to the server log, so an answer
//! never reveals whether an object the caller cannot see exists.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_proto::{ErrorBody, ErrorCode};
use coffer_store::StoreError;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    /// Protocol error code.
    pub code: ErrorCode,
    /// Text for the client.
    pub message: String,
    /// Detail for the server log only.
    pub log: Option<String>,
    /// Seconds to wait, with `throttled`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a client message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            log: None,
            retry_after: None,
        }
    }

    /// `access_denied` with a message.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AccessDenied, message)
    }

    /// `bad_request` with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// Adds detail for the server log.
    pub fn log(mut self, detail: impl Into<String>) -> Self {
        self.log = Some(detail.into());
        self
    }

    /// An internal error: the client sees a generic message, the log sees the cause.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::Internal,
            "The server failed to process the request; the operator can find details in the server log.",
        )
        .log(detail.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "Not found."),
            StoreError::Conflict => {
                ApiError::new(ErrorCode::Conflict, "That UID is already in use.")
            }
            StoreError::Precondition(what) => ApiError::new(ErrorCode::BadRequest, what),
            StoreError::Backend(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match (&self.log, self.code) {
            (_, ErrorCode::Internal) => {
                tracing::error!(code = self.code.as_str(), detail = ?self.log, "request failed")
            }
            (Some(detail), _) => {
                tracing::info!(code = self.code.as_str(), message = %self.message, detail = %detail, "request refused")
            }
            (None, _) => {
                tracing::debug!(code = self.code.as_str(), message = %self.message, "request refused")
            }
        }
        let mut body = ErrorBody::new(self.code, self.message);
        body.retry_after = self.retry_after;
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
