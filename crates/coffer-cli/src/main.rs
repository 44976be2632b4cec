//! `coffer`: the Coffer server, the owner tools (`coffer vault …`) and the client tools.

mod cli;
mod client_cli;
mod cmd;
mod fields;
mod home;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes (documented in README.md).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any error.
    pub const ERROR: u8 = 1;
    /// Wrong usage (clap uses 2 as well).
    pub const USAGE: u8 = 2;
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::from(exit::OK);
            }
            let (code, print) = cmd::client::exit_status(&err).unwrap_or((exit::ERROR, true));
            if print {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
