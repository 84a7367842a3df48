//! `webhook-connector`: parses flags, loads the configuration, sets up logging and runs the
//! library. Exit statuses: 0 graceful shutdown, 1 runtime failure, 2 configuration error,
//! 3 `exit_on_stale_seconds` reached.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use webhook_connector::config::flags::{Action, Cli};
use webhook_connector::config::{self, ConfigError, LogFormat, Problems};

/// mimalloc instead of the system allocator: allocation was about a sixth of the CPU profile
/// of the message path (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (action, flags) = Cli::parse().resolve();
    if action == Action::Print {
        return match config::load_printable(&flags) {
            Ok((document, problems)) => {
                for w in &problems.warnings {
                    eprintln!("warning: {w}");
                }
                match serde_json::to_string_pretty(&document) {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: cannot print the configuration: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(ConfigError(problems)) => refused(&problems),
        };
    }
    // `run` and `check-config` validate with the same function.
    let (config, problems) = match config::load(&flags) {
        Ok(x) => x,
        Err(ConfigError(problems)) => return refused(&problems),
    };
    if action == Action::Check {
        for w in &problems.warnings {
            println!("warning: {w}");
        }
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    for w in &problems.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        // The signal listener: one per process.
        tokio::spawn(signals(shutdown.clone()));
        match webhook_connector::run(config, shutdown).await {
            Ok(outcome) => outcome.exit_code(),
            Err(e) => {
                tracing::error!(error = %e, "Cannot start");
                e.exit_code()
            }
        }
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Prints every warning and error of a refused configuration; exit status 2.
fn refused(problems: &Problems) -> ExitCode {
    for w in &problems.warnings {
        eprintln!("warning: {w}");
    }
    for e in &problems.errors {
        eprintln!("error: {e}");
    }
    ExitCode::from(2)
}

/// First SIGINT/SIGTERM: drain. Second: exit at once.
async fn signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("Cannot install signal handlers");
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("Signal received: draining (send again to exit at once)");
        shutdown.cancel();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("Second signal: exiting without finishing the drain");
        std::process::exit(1);
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    }
}
