//! `coffer exec`: runs a command with the `keeper://` notations of its environment (and, with
//! `--inline`, of its arguments) replaced by secrets.

use std::ffi::OsString;
use std::process::ExitStatus;

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

use super::interpolate::{SCHEME, check, notations, resolve_all, substitute};
use super::{code, connect, exit_quietly, fail};
use crate::client_cli::ExecArgs;

/// The exit code that stands for a child's exit status (128+N for signal N, as shells do).
pub fn exit_code_of(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return (code & 0xff) as u8;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128u8.saturating_add((signal & 0x7f) as u8);
        }
    }
    code::ERROR
}

/// Runs `coffer exec`.
pub async fn run(args: ExecArgs) -> Result<()> {
    let Some(program) = args.command.first().cloned() else {
        return Err(fail(
            code::USAGE,
            "no command given: coffer exec -- COMMAND [ARGS…]",
        ));
    };
    let from_env: Vec<(OsString, String)> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let value = value.to_str()?.trim();
            value.starts_with(SCHEME).then(|| (name, value.to_owned()))
        })
        .collect();
    let mut wanted: Vec<String> = Vec::new();
    for (_, notation) in &from_env {
        if !wanted.contains(notation) {
            wanted.push(notation.clone());
        }
    }
    if args.inline {
        for notation in notations(args.command.iter().map(String::as_str)) {
            if !wanted.contains(&notation) {
                wanted.push(notation);
            }
        }
    }
    for notation in &wanted {
        check(notation)?;
    }
    let values = if wanted.is_empty() {
        Default::default()
    } else {
        let sm = connect(&args.global)?;
        resolve_all(&sm, &wanted).await?
    };
    let argv: Vec<String> = if args.inline {
        args.command
            .iter()
            .map(|a| substitute(a, &values))
            .collect()
    } else {
        args.command.clone()
    };
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    // The owner's master password is Coffer's to use, never the child's.
    command.env_remove("COFFER_PASSWORD");
    for (name, notation) in &from_env {
        if let Some(value) = values.get(notation) {
            command.env(name, value);
        }
    }

    // Watch the signals before the child exists, so none is missed.
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot watch signals")?;
    let handle = signals.handle();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            handle.close();
            // Only the name as typed: an --inline argument may hold a secret now.
            return Err(match err.kind() {
                std::io::ErrorKind::NotFound => fail(127, format!("{program}: command not found")),
                std::io::ErrorKind::PermissionDenied => {
                    fail(126, format!("{program}: permission denied"))
                }
                _ => fail(126, format!("cannot run {program}: {err}")),
            });
        }
    };
    let pid = i32::try_from(child.id())
        .map(Pid::from_raw)
        .context("the child's process id is out of range")?;
    let forwarder = std::thread::spawn(move || {
        for origin in signals.forever() {
            // A signal from the terminal (Ctrl-C, hang-up) reaches the whole foreground
            // process group, the child included: passing it on would deliver it twice.
            if matches!(origin.cause, Cause::Kernel) {
                continue;
            }
            if let Ok(signal) = Signal::try_from(origin.signal) {
                let _ = kill(pid, signal);
            }
        }
    });
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .context("waiting for the command failed")?
        .context("waiting for the command failed")?;
    handle.close();
    let _ = forwarder.join();
    match exit_code_of(status) {
        code::OK => Ok(()),
        status => Err(exit_quietly(status)),
    }
}
