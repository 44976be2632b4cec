//! Standard fields: typed and untyped access, one value or all of them.
//!
//! ```text
//! cargo run -p coffer-sdk --example fields -- RECORD_UID
//! ```

use coffer_sdk::{SecretsManager, fields, values};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let uid = std::env::args().nth(1).expect("usage: fields RECORD_UID");
    let sm = SecretsManager::from_env()?;
    let mut record = sm.get_secret(&uid).await?;
    println!("title: {}  type: {}", record.title(), record.record_type());

    // Typed: one value, or all values, of a field type.
    let login: Option<String> = record.get_one::<fields::Login>().unwrap_or(None);
    let urls: Vec<String> = record.get::<fields::Url>().unwrap_or_default();
    let host: Option<values::Host> = record.get_one::<fields::Host>().unwrap_or(None);
    println!("login: {login:?}\nurls: {urls:?}\nhost: {host:?}");
    println!("password present: {}", record.password().is_some());

    // Untyped: every field as JSON values.
    for field in &record.data().fields {
        println!(
            "  {} {:?}: {} value(s)",
            field.field_type,
            field.label.as_deref().unwrap_or(""),
            field.value.len()
        );
    }

    // Setting values locally (saved by SecretsManager::save, see the `update` example).
    record.set::<fields::Url>(["https://example.com".to_owned()]);
    record.set_field_values("login", vec!["someone@example.com".into()])?;
    println!("new login: {:?}", record.field_value("login")?);
    Ok(())
}
