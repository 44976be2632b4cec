//! Update: change a record and save it; the SDK refreshes the revision, so saving again works.
//!
//! ```text
//! cargo run -p coffer-sdk --example update -- RECORD_UID
//! ```

use coffer_sdk::{SecretsManager, fields, generate_password};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let uid = std::env::args().nth(1).expect("usage: update RECORD_UID");
    let sm = SecretsManager::from_env()?;
    let mut record = sm.get_secret(&uid).await?;
    let before = record.revision();
    record.set_one::<fields::Password>(generate_password(24, None, None, None, None)?);
    sm.save(&mut record).await?;
    record.set_notes(Some(format!("password rotated from revision {before}")));
    sm.save(&mut record).await?;
    println!("saved twice: revision {before} -> {}", record.revision());
    Ok(())
}
