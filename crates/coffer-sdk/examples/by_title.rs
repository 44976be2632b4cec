//! Find records by title (exact match).
//!
//! ```text
//! cargo run -p coffer-sdk --example by_title -- "Demo Login"
//! ```

use coffer_sdk::SecretsManager;

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let title = std::env::args().nth(1).expect("usage: by_title TITLE");
    let sm = SecretsManager::from_env()?;
    let all = sm.get_secrets_by_title(&title).await?;
    println!("{} record(s) titled {title:?}", all.len());
    if let Some(first) = sm.get_secret_by_title(&title).await? {
        println!("first: {} ({})", first.uid(), first.record_type());
    }
    Ok(())
}
