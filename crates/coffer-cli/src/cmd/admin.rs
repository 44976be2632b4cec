//! `coffer admin …`: operator tools.

use anyhow::{Context, Result};
use coffer_server::keys::ServerKeys;

use crate::cli::AdminCommand;
use crate::home::{write_private, write_private_new};
use crate::output;

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::GenServerKey { output: path, json } => {
            write_private_new(&path, ServerKeys::generate_json().as_bytes())?;
            let keys = ServerKeys::load(&path).map_err(anyhow::Error::msg)?;
            if json {
                return output::json(&serde_json::json!({
                    "path": path,
                    "key_id": keys.current().0,
                    "public_key": keys.public_key_b64url(),
                }));
            }
            output::line(format!(
                "Wrote {} (key id {}, public key {}).",
                path.display(),
                keys.current().0,
                keys.public_key_b64url()
            ))
        }
        AdminCommand::RotateServerKey { file, json } => {
            let mut keys = ServerKeys::load(&file).map_err(anyhow::Error::msg)?;
            let id = keys.rotate();
            write_private(&file, keys.to_file_json().as_bytes())
                .with_context(|| format!("cannot update {}", file.display()))?;
            if json {
                return output::json(&serde_json::json!({
                    "path": file,
                    "key_id": id,
                    "public_key": keys.public_key_b64url(),
                    "key_ids": keys.key_ids(),
                }));
            }
            output::line(format!(
                "Added key id {id} to {} (public key {}); key ids now {:?}. Restart the server.",
                file.display(),
                keys.public_key_b64url(),
                keys.key_ids()
            ))
        }
        AdminCommand::Migrate { from, to, json } => super::migrate::run(&from, &to, json).await,
    }
}
