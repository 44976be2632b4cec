//! `coffer completion SHELL`: a completion script for the whole `coffer` command.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell as Target;

use crate::cli::Cli;
use crate::client_cli::{CompletionArgs, Shell};

/// Writes the completion script of `shell` to `out`.
pub fn write(shell: Shell, out: &mut dyn Write) {
    let target = match shell {
        Shell::Bash => Target::Bash,
        Shell::Zsh => Target::Zsh,
        Shell::Fish => Target::Fish,
        Shell::Elvish => Target::Elvish,
        Shell::Powershell => Target::PowerShell,
    };
    let mut command = Cli::command();
    clap_complete::generate(target, &mut command, "coffer", out);
}

/// Runs `coffer completion`.
pub fn run(args: CompletionArgs) -> Result<()> {
    // Made in memory first: the generator panics on a write error, and a closed pipe or a
    // full disk must be an ordinary error (or, for a closed pipe, a quiet exit).
    let mut script = Vec::new();
    write(args.shell, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_the_client_commands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::Powershell,
        ] {
            let mut out = Vec::new();
            write(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for word in ["secret", "interpolate", "delete-attachment", "--unmask"] {
                assert!(text.contains(word), "{shell:?} lacks {word}");
            }
        }
    }
}
