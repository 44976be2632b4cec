//! Initialize: redeem a one-time token once, keep the configuration in a file, reuse it.
//!
//! ```text
//! cargo run -p coffer-sdk --example initialize -- HOST:TOKEN [HOST:PORT] [config.json]
//! ```
//! Trust a private server certificate with `COFFER_CA_CERT=cert.pem`. Pass the server's public
//! key with `KSM_SERVER_PUBLIC_KEY` / `KSM_SERVER_PUBLIC_KEY_ID` when the token comes without a
//! configuration (Coffer's `client add` also prints a full base64 configuration, see
//! `get_secrets`).

use coffer_sdk::{FileStorage, SecretsManager};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let mut args = std::env::args().skip(1);
    let token = args.next();
    let hostname = args.next();
    let path = args.next().unwrap_or_else(|| "client-config.json".into());

    let mut builder = SecretsManager::builder().storage(FileStorage::new(&path));
    if let Some(token) = token {
        builder = builder.token(token);
    }
    if let Some(hostname) = hostname {
        builder = builder.hostname(hostname);
    }
    if let (Ok(key), Ok(id)) = (
        std::env::var("KSM_SERVER_PUBLIC_KEY"),
        std::env::var("KSM_SERVER_PUBLIC_KEY_ID"),
    ) {
        builder = builder.server_public_key(key, id);
    }
    let sm = builder.build()?;
    // The first call binds the token to this device and writes the configuration back.
    let secrets = sm.get_all_secrets().await?;
    println!(
        "bound: {}; {} records; configuration saved in {path} (mode 0600)",
        sm.is_bound(),
        secrets.len()
    );
    Ok(())
}
