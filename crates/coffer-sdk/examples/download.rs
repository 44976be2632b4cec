//! Download: every attachment of a record into a directory (created when missing).
//!
//! ```text
//! cargo run -p coffer-sdk --example download -- RECORD_UID [DIR]
//! ```

use coffer_sdk::SecretsManager;

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let mut args = std::env::args().skip(1);
    let uid = args.next().expect("usage: download RECORD_UID [DIR]");
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "downloads".into()));
    let sm = SecretsManager::from_env()?;
    let record = sm.get_secret(&uid).await?;
    for file in record.files() {
        // In memory, with progress …
        let bytes = sm
            .download_file_with_progress(
                file,
                Box::new(|p| eprint!("\r{} / {:?} bytes", p.done, p.total)),
            )
            .await?;
        eprintln!();
        // … or straight to a path.
        let target = dir.join(file.name());
        sm.save_file(file, &target, true).await?;
        println!(
            "{} ({} bytes) -> {}",
            file.title(),
            bytes.len(),
            target.display()
        );
    }
    Ok(())
}
