//! Wire types shared by the Coffer server, the SDK and the owner tools.
//!
//! * [`ksm`]: the Keeper Secrets Manager protocol payloads (PROTOCOL.md §5), in the exact JSON
//!   shapes the official SDKs send and expect.
//! * [`owner`]: the owner API (`/api/owner/v1/…`), HTTPS + JSON, ciphertext only.
//! * [`error`]: the protocol's error body and error codes.
//! * [`record`]: the decrypted record model (PROTOCOL.md §6): record and field types.
//!
//! This crate does no I/O and no cryptography: encrypted values travel as base64 strings.

pub mod error;
pub mod ksm;
pub mod owner;
pub mod record;

pub use error::{ErrorBody, ErrorCode};

/// Failure to read a wire message.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The bytes are not the JSON this message needs.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field has a value the protocol does not allow.
    #[error("invalid field {field}: {reason}")]
    Field {
        /// The JSON field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Reads an optional string in which `null`, absent and `""` all mean "not given"
/// (PROTOCOL.md §2.4).
pub fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}
