//! Delete: records by UID, with one outcome per record.
//!
//! ```text
//! cargo run -p coffer-sdk --example delete -- RECORD_UID [RECORD_UID ...]
//! ```

use coffer_sdk::SecretsManager;

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let uids: Vec<String> = std::env::args().skip(1).collect();
    assert!(!uids.is_empty(), "usage: delete RECORD_UID ...");
    let sm = SecretsManager::from_env()?;
    let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
    for outcome in sm.delete_secret(&refs).await? {
        match outcome.is_ok() {
            true => println!("{}: deleted", outcome.uid),
            false => println!(
                "{}: {} {}",
                outcome.uid,
                outcome.response_code,
                outcome.error_message.unwrap_or_default()
            ),
        }
    }
    Ok(())
}
