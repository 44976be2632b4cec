//! Folders: list the tree, create a sub-folder, rename it, delete it.
//!
//! ```text
//! cargo run -p coffer-sdk --example folders -- [SHARED_FOLDER_UID]
//! ```

use coffer_sdk::SecretsManager;

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let sm = SecretsManager::from_env()?;
    let folders = sm.get_folders().await?;
    for folder in folders.iter() {
        println!(
            "{}  {:<24} parent {:<22} shared folder {}",
            folder.uid(),
            folder.name(),
            folder.parent_uid().unwrap_or("-"),
            folder.shared_folder_uid()
        );
    }
    let Some(parent) = std::env::args().nth(1) else {
        return Ok(());
    };
    let uid = sm.create_folder(&parent, "Made by coffer-sdk").await?;
    sm.update_folder(&uid, "Renamed by coffer-sdk").await?;
    let outcome = sm.delete_folder(&[&uid], true).await?;
    println!(
        "created, renamed and deleted {uid}: {}",
        outcome[0].response_code
    );
    Ok(())
}
