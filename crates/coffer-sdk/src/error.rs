//! The one error type of the SDK.

use std::time::Duration;

/// Everything that can go wrong in the SDK.
///
/// Match on the variant to react to a specific failure; [`SdkError::code`] gives the
/// protocol error code of server refusals (e.g. `access_denied`, `out_of_sync`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The server refused the call with a protocol error body (PROTOCOL.md §2.6).
    #[error("the server refused the call: {message} ({code}, HTTP {status})")]
    Server {
        /// HTTP status.
        status: u16,
        /// Protocol error code (`result_code`, else `error`).
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The server answered a non-200 status without a readable error body.
    #[error("the server answered HTTP {status}: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The start of the body, as text.
        body: String,
    },
    /// The server kept answering `throttled`; the SDK gave up after its retries.
    #[error("request throttled by the server; gave up after {retries} retries")]
    Throttled {
        /// How many times the request was retried.
        retries: u32,
        /// The last `retry_after` the server asked for.
        retry_after: Option<Duration>,
    },
    /// The server rejected this SDK's `clientVersion` (`invalid_client_version`).
    #[error("the server rejected this client version: {0}")]
    ClientVersion(String),
    /// The server could not be reached, or the connection broke (DNS, TCP, TLS, timeout).
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server answered something that is not the protocol (undecryptable, not JSON,
    /// missing keys).
    #[error("the server's answer is not valid: {0}")]
    Protocol(String),
    /// A record, folder, file or field that was asked for does not exist (or is not shared
    /// with this application).
    #[error("not found: {0}")]
    NotFound(String),
    /// A Keeper notation could not be parsed or resolved.
    #[error("{0}")]
    Notation(String),
    /// The configuration is missing, unreadable or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// Binding the one-time token to this device failed.
    #[error("binding the one-time token failed: {0}")]
    Binding(String),
    /// Something the caller passed is invalid.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A TOTP URI is invalid.
    #[error("TOTP: {0}")]
    Totp(String),
    /// Data that should decrypt did not (wrong key or damaged data).
    #[error("cannot decrypt {0}")]
    Decrypt(String),
    /// A file download was refused for its size: bigger than the file's recorded size (plus
    /// encryption overhead) or than [`max_download_size`](crate::SecretsManagerBuilder::max_download_size).
    /// Nothing was written.
    #[error("download refused: {reason} (limit {limit} bytes)")]
    DownloadTooLarge {
        /// The limit that applied, in bytes of encrypted content.
        limit: u64,
        /// Which limit, and what the server announced or sent.
        reason: String,
    },
    /// Local file-system error.
    #[error("{context}: {source}")]
    Io {
        /// What the SDK was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl SdkError {
    /// The protocol error code of a server refusal (`access_denied`, `out_of_sync`, …),
    /// `throttled` for [`SdkError::Throttled`], otherwise `None`.
    pub fn code(&self) -> Option<&str> {
        match self {
            SdkError::Server { code, .. } => Some(code),
            SdkError::Throttled { .. } => Some("throttled"),
            SdkError::ClientVersion(_) => Some("invalid_client_version"),
            _ => None,
        }
    }

    /// True for a stale-revision refusal of `update_secret` (save the record again after
    /// re-reading it).
    pub fn is_out_of_sync(&self) -> bool {
        match self {
            SdkError::Server { code, message, .. } => {
                code == "out_of_sync" || message.contains("out of sync")
            }
            _ => false,
        }
    }

    /// True when the failure is on the way to the server or inside it (network failures and
    /// 5xx answers): the cases in which the offline cache may answer reads.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SdkError::Network(_) => true,
            SdkError::Server { status, .. } | SdkError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SdkError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of the SDK.
pub type Result<T, E = SdkError> = std::result::Result<T, E>;
