//! The one-time setup code that lets the first owner register.
//!
//! On a start with no owner, the server makes a random code, keeps only its SHA-256 in the
//! database (shared by every instance), writes the code to `DATA_DIR/setup-code` (mode 0600)
//! and prints it. Registering the first owner deletes both.

use coffer_crypto::{encode_url, random_bytes, sha256};

use crate::fsutil::write_private_file;
use crate::state::AppState;

/// Settings key of the code's hash.
pub const SETUP_CODE_HASH: &str = "setup_code_hash";

fn code_path(state: &AppState) -> std::path::PathBuf {
    state.config.data_dir.join("setup-code")
}

/// Makes sure a setup code exists while there is no owner; returns the code when this
/// instance knows it.
pub async fn ensure(state: &AppState) -> Result<Option<String>, String> {
    let owners = state.store.owner_count().await.map_err(|e| e.to_string())?;
    if owners > 0 {
        let _ = std::fs::remove_file(code_path(state));
        return Ok(None);
    }
    let path = code_path(state);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        let stored = state
            .store
            .setting(SETUP_CODE_HASH)
            .await
            .map_err(|e| e.to_string())?;
        if stored.as_deref() == Some(&sha256(existing.as_bytes())[..]) {
            return Ok(Some(existing));
        }
    }
    let code = encode_url(&random_bytes::<18>());
    let hash = sha256(code.as_bytes());
    let stored = state
        .store
        .setting_init(SETUP_CODE_HASH, &hash)
        .await
        .map_err(|e| e.to_string())?;
    if stored != hash {
        // Another instance sharing this database made the code; it printed it.
        return Ok(None);
    }
    write_private_file(&path, format!("{code}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Some(code))
}

/// Forgets the code after the first owner registered.
pub async fn consume(state: &AppState) {
    if let Err(err) = state.store.setting_delete(SETUP_CODE_HASH).await {
        tracing::warn!(error = %err, "could not delete the setup code hash");
    }
    let _ = std::fs::remove_file(code_path(state));
}
