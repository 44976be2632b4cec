//! Caching: an encrypted offline cache that answers reads while the server is unreachable
//! (or failing with 5xx), tells you when it did, and never answers writes.
//!
//! ```text
//! cargo run -p coffer-sdk --example caching          # once with the server up,
//! cargo run -p coffer-sdk --example caching          # again with it stopped
//! ```

use std::time::Duration;

use coffer_sdk::{CacheOptions, SecretsManager};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let sm = SecretsManager::builder()
        .cache(CacheOptions::file("ksm-cache.json").max_age(Duration::from_secs(12 * 3600)))
        .connect_timeout(Duration::from_secs(3))
        .build()?;
    let secrets = sm.get_all_secrets().await?;
    match secrets.cached {
        Some(cached) => println!(
            "server unavailable: {} records from the offline cache ({:?} old)",
            secrets.len(),
            cached.age
        ),
        None => println!(
            "{} records from the server (cache refreshed)",
            secrets.len()
        ),
    }
    Ok(())
}
