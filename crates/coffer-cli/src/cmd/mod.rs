//! Command implementations.

/// Like `eprintln!`/`println!` for what a long-running command announces, but a closed
/// stream (`coffer server | head`) is ignored instead of panicking.
macro_rules! say {
    (stderr $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr() $($arg)*);
    }};
    (stdout $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout() $($arg)*);
    }};
}

mod admin;
pub mod client;
mod dev;
mod migrate;
mod server;
mod vault;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Vault(args) => {
            init_logging("warn");
            vault::run(args).await
        }
        Command::Admin(command) => {
            init_logging("warn");
            admin::run(command).await
        }
        Command::Profile(args) => client::finish(client::profile::run(args)).await,
        Command::Secret(args) => client::finish(client::secret::run(args)).await,
        Command::Folder(args) => client::finish(client::folder::run(args)).await,
        Command::Exec(args) => client::finish(client::exec::run(args)).await,
        Command::Interpolate(args) => client::finish(client::interpolate::run(args)).await,
        Command::Completion(args) => client::finish(async { client::completion::run(args) }).await,
    }
}

/// Logs to stderr; `COFFER_LOG` (or `RUST_LOG`) overrides the default level.
pub fn init_logging(default: &str) {
    let filter = std::env::var("COFFER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(|| QuietStderr)
        .with_target(false)
        .try_init();
}

/// Standard error for log lines, where a failed write (nobody reads the log any more) drops
/// the line instead of failing: the logging layer would otherwise report the failure on that
/// same closed stream, and panic in whatever task was logging.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The master password from `COFFER_PASSWORD` or a prompt (twice when `confirm`).
pub fn master_password(confirm: bool) -> Result<String> {
    if let Ok(password) = std::env::var("COFFER_PASSWORD")
        && !password.is_empty()
    {
        return Ok(password);
    }
    let password = rpassword::prompt_password("Master password: ").map_err(|e| {
        anyhow::anyhow!("cannot read the master password ({e}); set COFFER_PASSWORD when no terminal is available")
    })?;
    if confirm {
        let again = rpassword::prompt_password("Repeat master password: ")?;
        anyhow::ensure!(password == again, "the passwords do not match");
    }
    Ok(password)
}
