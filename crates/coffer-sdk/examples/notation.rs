//! Keeper notation: `keeper://<uid or title>/field/<type or label>[index][property]`.
//!
//! ```text
//! cargo run -p coffer-sdk --example notation -- 'keeper://Demo Login/field/password'
//! ```

use coffer_sdk::{NotationValue, SecretsManager, parse_notation};

#[tokio::main]
async fn main() -> coffer_sdk::Result<()> {
    let notation = std::env::args()
        .nth(1)
        .expect("usage: notation 'keeper://UID/field/password'");
    // Syntax errors are found without a server.
    let parsed = parse_notation(&notation, false)?;
    println!("record {:?}, selector {:?}", parsed.record, parsed.selector);
    let sm = SecretsManager::from_env()?;
    for value in sm.get_notation(&notation).await? {
        println!("{value}");
    }
    // The legacy single-value form of the official Python SDK.
    match sm.get_notation_value(&notation).await? {
        NotationValue::Value(v) => println!("legacy value: {v}"),
        NotationValue::File(bytes) => println!("legacy value: a file of {} bytes", bytes.len()),
    }
    Ok(())
}
