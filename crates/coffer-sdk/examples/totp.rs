//! TOTP: the current code of a record's one-time-code field.
//!
//! ```text
//! cargo run -p coffer-sdk --example totp -- RECORD_UID
//! cargo run -p coffer-sdk --example totp -- 'otpauth://totp/X?secret=JBSWY3DPEHPK3PXP'
//! ```

use coffer_sdk::{SecretsManager, fields, get_totp_code};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .expect("usage: totp RECORD_UID | otpauth://...");
    let uri = if arg.starts_with("otpauth://") {
        arg
    } else {
        let sm = SecretsManager::from_env()?;
        let record = sm.get_secret(&arg).await?;
        record
            .get_one::<fields::OneTimeCode>()?
            .ok_or_else(|| coffer_sdk::SdkError::NotFound("a oneTimeCode value".into()))?
    };
    let code = get_totp_code(&uri)?;
    println!(
        "{} (valid for {} more seconds of {})",
        code.code, code.time_left, code.period
    );
    Ok(())
}
