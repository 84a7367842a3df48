//! `webhook-connector`: parses flags, loads the configuration, sets up logging and runs the
//! library. Exit statuses: 0 graceful shutdown, 1 runtime failure, 2 configuration error,
//! 3 `exit_on_stale_seconds` reached.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::health_probe;
use webhook_connector::config::flags::{Action, Cli, HealthProbe};
use webhook_connector::config::{self, ConfigError, LogFormat, Problems};

/// mimalloc instead of the system allocator: allocation was about a sixth of the CPU profile
/// of the message path (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (action, flags) = Cli::parse().resolve();
    if let Action::Health(probe) = &action {
        return health(probe, &flags);
    }
    if matches!(action, Action::Print) {
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
    if matches!(action, Action::Check) {
        for w in &problems.warnings {
            println!("warning: {w}");
        }
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    webhook_connect_protocol::logging::init(
        &config.log_level,
        matches!(config.log_format, LogFormat::Json),
    );
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

/// `health`: one GET of `/healthz` or `/readyz` on the health listener.
fn health(probe: &HealthProbe, flags: &config::Flags) -> ExitCode {
    let base = match &probe.url {
        Some(url) => url.clone(),
        None => match config::load(flags) {
            Ok((config, _)) => match config.health_listen {
                Some(addr) => format!("http://{}", health_probe::loopback(addr)),
                None => {
                    eprintln!(
                        "error: health_listen is not set: the health check probes the health \
                         listener (set health_listen, or pass --url)"
                    );
                    return ExitCode::from(2);
                }
            },
            Err(ConfigError(problems)) => return refused(&problems),
        },
    };
    let url = health_probe::probe_url(&base, probe.ready);
    let timeout = std::time::Duration::from_secs(probe.timeout_seconds.max(1));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    });
    match health_probe::verdict(&url, outcome) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("{line}");
            ExitCode::from(1)
        }
    }
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
        shutdown.cancel();
        tracing::info!("Signal received: draining (send again to exit at once)");
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
