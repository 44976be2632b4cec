//! Transactions: a rotation update that is rolled back (or committed) afterwards.
//!
//! ```text
//! cargo run -p coffer-sdk --example transaction -- RECORD_UID [commit|rollback]
//! ```

use coffer_sdk::{SaveOptions, SecretsManager, TransactionType, fields, generate_password};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let mut args = std::env::args().skip(1);
    let uid = args
        .next()
        .expect("usage: transaction RECORD_UID [commit|rollback]");
    let commit = args.next().as_deref() == Some("commit");
    let sm = SecretsManager::from_env()?;
    let mut record = sm.get_secret(&uid).await?;
    let new_password = generate_password(32, None, None, None, None)?;
    record.set_one::<fields::Password>(new_password);
    sm.save_with_options(
        &mut record,
        &SaveOptions {
            transaction_type: Some(TransactionType::Rotation),
            ..Default::default()
        },
    )
    .await?;
    // ... change the password on the target system here; on failure roll back ...
    sm.complete_transaction(&uid, !commit).await?;
    let now = sm.get_secret(&uid).await?;
    println!(
        "{}: password is now {} characters long",
        if commit { "committed" } else { "rolled back" },
        now.password().map_or(0, str::len)
    );
    Ok(())
}
