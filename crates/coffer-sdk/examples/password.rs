//! Password generation from the operating system's CSPRNG.
//!
//! ```text
//! cargo run -p coffer-sdk --example password
//! ```

use coffer_sdk::{PasswordOptions, generate_password, generate_password_with_options};

fn main() -> coffer_sdk::Result<()> {
    // Default: 32 characters from all four classes.
    println!("{}", generate_password(32, None, None, None, None)?);
    // 20 characters: at least 2 digits, no special characters.
    println!("{}", generate_password(20, None, None, Some(2), Some(0))?);
    // Exactly 4 digits (a PIN).
    println!(
        "{}",
        generate_password(4, Some(0), Some(0), Some(-4), Some(0))?
    );
    // A custom special set.
    let options = PasswordOptions {
        length: 16,
        special: Some(3),
        special_characters: "-_.".into(),
        ..PasswordOptions::default()
    };
    println!("{}", generate_password_with_options(&options)?);
    Ok(())
}
