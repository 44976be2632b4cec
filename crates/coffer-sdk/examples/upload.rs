//! Upload: attach a file (from a path, or bytes with a title and MIME type) to a record.
//!
//! ```text
//! cargo run -p coffer-sdk --example upload -- RECORD_UID PATH
//! ```

use coffer_sdk::{FileUpload, SecretsManager};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let mut args = std::env::args().skip(1);
    let uid = args.next().expect("usage: upload RECORD_UID PATH");
    let path = args.next().expect("usage: upload RECORD_UID PATH");
    let sm = SecretsManager::from_env()?;
    let mut record = sm.get_secret(&uid).await?;
    let from_path = sm.upload_file_path(&mut record, &path).await?;
    let from_bytes = sm
        .upload_file_with_progress(
            &mut record,
            FileUpload::new("note.txt", b"uploaded by coffer-sdk".to_vec())
                .title("A note")
                .mime_type("text/plain"),
            Box::new(|p| eprintln!("{} of {:?} bytes sent", p.done, p.total)),
        )
        .await?;
    println!(
        "attached {from_path} and {from_bytes}; the record now has {} files",
        record.files().len()
    );
    Ok(())
}
