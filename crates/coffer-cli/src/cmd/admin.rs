//! `coffer admin …`: operator tools.

use anyhow::{Context, Result};
use coffer_server::keys::ServerKeys;

use crate::cli::AdminCommand;
use crate::home::{write_private, write_private_new};
use crate::output;

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::GenServerKey { output: path } => {
            write_private_new(&path, ServerKeys::generate_json().as_bytes())?;
            let keys = ServerKeys::load(&path).map_err(anyhow::Error::msg)?;
            output::line(format!(
                "Wrote {} (key id {}, public key {}).",
                path.display(),
                keys.current().0,
                keys.public_key_b64url()
            ))
        }
        AdminCommand::RotateServerKey { file } => {
            let mut keys = ServerKeys::load(&file).map_err(anyhow::Error::msg)?;
            let id = keys.rotate();
            write_private(&file, keys.to_file_json().as_bytes())
                .with_context(|| format!("cannot update {}", file.display()))?;
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
