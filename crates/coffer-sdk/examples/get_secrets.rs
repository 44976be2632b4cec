//! Get secrets: all records shared with the application, or some by UID.
//!
//! ```text
//! export KSM_CONFIG=<base64 configuration>  COFFER_CA_CERT=cert.pem
//! cargo run -p coffer-sdk --example get_secrets -- [UID ...]
//! ```

use coffer_sdk::{QueryOptions, SecretsManager};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let sm = SecretsManager::from_env()?;
    let uids: Vec<String> = std::env::args().skip(1).collect();
    let secrets = sm
        .get_secrets_with_options(&QueryOptions {
            records_filter: uids,
            ..Default::default()
        })
        .await?;
    if let Some(app) = &secrets.app {
        println!("application: {}", app.title);
    }
    for record in secrets.iter() {
        println!(
            "{}  {:<30} {:<20} rev {} {}",
            record.uid(),
            record.title(),
            record.record_type(),
            record.revision(),
            if record.is_editable() {
                "editable"
            } else {
                "read-only"
            }
        );
    }
    for warning in &secrets.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
