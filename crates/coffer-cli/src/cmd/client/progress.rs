//! Progress bars for file transfers: on a terminal (stderr) only, and only for files large
//! enough to take a moment.

use std::io::IsTerminal;

use coffer_sdk::{Progress, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transfers smaller than this show no bar.
pub const THRESHOLD: u64 = 4 * 1024 * 1024;

/// A bar for a transfer of about `size` bytes, when stderr is a terminal and the transfer
/// is larger than [`THRESHOLD`].
pub fn bar(size: u64, label: &str) -> Option<ProgressBar> {
    if size <= THRESHOLD || !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:32.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.set_message(label.to_owned());
    Some(bar)
}

/// The SDK callback that moves `bar` (or does nothing without one).
pub fn callback(bar: Option<&ProgressBar>) -> ProgressFn {
    match bar {
        Some(bar) => {
            let bar = bar.clone();
            Box::new(move |p: Progress| {
                if let Some(total) = p.total
                    && bar.length() != Some(total)
                {
                    bar.set_length(total);
                }
                bar.set_position(p.done);
            })
        }
        None => Box::new(|_| {}),
    }
}

/// Ends a bar: left at 100 % on success, cleared on failure.
pub fn finish(bar: Option<ProgressBar>, ok: bool) {
    if let Some(bar) = bar {
        if ok {
            if let Some(total) = bar.length() {
                bar.set_position(total);
            }
            bar.finish();
        } else {
            bar.abandon();
        }
        // Leave the bar on a line of its own.
        eprintln!();
    }
}
