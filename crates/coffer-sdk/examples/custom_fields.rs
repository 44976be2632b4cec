//! Custom fields: read by label, typed or untyped; add and change them.
//!
//! ```text
//! cargo run -p coffer-sdk --example custom_fields -- RECORD_UID [LABEL]
//! ```

use coffer_sdk::{SecretsManager, fields};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let mut args = std::env::args().skip(1);
    let uid = args
        .next()
        .expect("usage: custom_fields RECORD_UID [LABEL]");
    let sm = SecretsManager::from_env()?;
    let mut record = sm.get_secret(&uid).await?;
    for field in &record.data().custom {
        let values: Vec<String> = field.value.iter().map(|v| v.to_string()).collect();
        println!(
            "{:<24} ({}) = {}",
            field.label.as_deref().unwrap_or("<no label>"),
            field.field_type,
            values.join(", ")
        );
    }
    if let Some(label) = args.next() {
        println!("{label}: {:?}", record.custom_field_values(&label)?);
    }
    // Add or change a custom field (not saved by this example).
    record.set_custom::<fields::Text>("Environment", ["staging".to_owned()]);
    println!(
        "Environment is now {:?}",
        record.get_custom_one::<fields::Text>("Environment")?
    );
    Ok(())
}
