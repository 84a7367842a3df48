//! The process log of both programs (feature `logging`): one line per event on stderr, as text
//! or JSON, filtered by `RUST_LOG` or the configured level.
//!
//! - Colour codes only when stderr is a terminal: a file, a pipe or the journal gets plain text.
//! - A log line that cannot be written (stderr a closed pipe, a full disk) is dropped. The
//!   subscriber's default reports such a failure with `eprintln!`, which panics when stderr is
//!   gone; a panic inside the task that waits for SIGTERM left both programs deaf to it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the process-wide subscriber; `level` is a filter directive (`info`,
/// `webhook_relay=debug`), overridden by `RUST_LOG`. A second call does nothing.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
