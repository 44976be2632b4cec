//! Create: a new record from a standard template, in a shared folder or sub-folder.
//!
//! ```text
//! cargo run -p coffer-sdk --example create -- FOLDER_UID "New login"
//! ```

use coffer_sdk::{RecordCreate, SecretsManager, fields, generate_password, values};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let mut args = std::env::args().skip(1);
    let folder = args.next().expect("usage: create FOLDER_UID TITLE");
    let title = args
        .next()
        .unwrap_or_else(|| "Created by coffer-sdk".into());
    let sm = SecretsManager::from_env()?;
    let record = RecordCreate::login(&title)
        .set::<fields::Login>(["service@example.com".to_owned()])
        .set::<fields::Password>([generate_password(32, None, None, None, None)?])
        .set::<fields::Url>(["https://service.example.com".to_owned()])
        .custom::<fields::Host>(
            "Database",
            [values::Host {
                host_name: Some("db.internal".into()),
                port: Some("5432".into()),
                ..Default::default()
            }],
        )
        .notes("made by the create example");
    let uid = sm.create_secret(&folder, record).await?;
    println!("created {uid}");
    Ok(())
}
