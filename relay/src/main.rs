//! `webhook-relay`: parses flags, sets up logging and runs the relay library.
//!
//! Exit statuses: 0 after a graceful shutdown, 1 for a runtime failure, 2 for a configuration
//! error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::health_probe;
use webhook_relay::admin_cli;
use webhook_relay::config::{self, FlagOverrides, LoadOptions, RelayConfig};
use webhook_relay::{StartError, run};

#[derive(Debug, Parser)]
#[command(name = "webhook-relay", version, about = "Webhook Connect relay")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run(Flags),
    /// Validate the configuration, print every problem, exit 0 (valid) or 2 (errors).
    CheckConfig(Flags),
    /// Print the effective configuration, secrets as "***".
    PrintConfig(Flags),
    #[command(flatten)]
    Admin(admin_cli::Command),
    /// Probe this relay's `/healthz` (or `/readyz` with `--ready`): exit 0 when it answers
    /// 200, 1 otherwise. For container health checks: needs no shell or curl.
    Health(HealthArgs),
}

/// `health`: which endpoint to probe. Without `--url` the address comes from the configuration
/// (`server.listen` on loopback, `https` when `server.tls_cert_file` is set), loaded like `run`.
#[derive(Debug, Clone, Args)]
struct HealthArgs {
    /// Base URL to probe instead of the configured listener (e.g. http://127.0.0.1:8000).
    #[arg(long)]
    url: Option<String>,
    /// Probe `/readyz` (buffer and state store reachable) instead of `/healthz`.
    #[arg(long)]
    ready: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_seconds: u64,
    #[command(flatten)]
    flags: Flags,
}

/// The server's options: taken before the subcommand, after `run`, `check-config` or
/// `print-config`, or both (the subcommand's win). The admin subcommands have their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
struct Flags {
    /// Configuration file (.toml or .json); also WEBHOOK_RELAY_CONFIG.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Main listener address.
    #[arg(long)]
    listen: Option<String>,
    /// Separate admin listener address.
    #[arg(long)]
    admin_listen: Option<String>,
    /// Buffer backend: embedded, redis or rabbitmq.
    #[arg(long)]
    buffer: Option<String>,
    /// An original webhooks.json.
    #[arg(long)]
    webhooks_config: Option<String>,
    /// File holding the admin token.
    #[arg(long)]
    admin_token_file: Option<String>,
    /// trace, debug, info, warn or error.
    #[arg(long)]
    log_level: Option<String>,
    /// text or json.
    #[arg(long)]
    log_format: Option<String>,
}

impl Flags {
    /// These flags, with `top` (given before the subcommand) filling what they leave unset.
    fn over(self, top: Flags) -> Flags {
        Flags {
            config: self.config.or(top.config),
            listen: self.listen.or(top.listen),
            admin_listen: self.admin_listen.or(top.admin_listen),
            buffer: self.buffer.or(top.buffer),
            webhooks_config: self.webhooks_config.or(top.webhooks_config),
            admin_token_file: self.admin_token_file.or(top.admin_token_file),
            log_level: self.log_level.or(top.log_level),
            log_format: self.log_format.or(top.log_format),
        }
    }

    fn load_options(self) -> LoadOptions {
        let config_path = self.config.or_else(|| {
            std::env::var_os("WEBHOOK_RELAY_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        LoadOptions::from_process_env(
            config_path,
            FlagOverrides {
                listen: self.listen,
                admin_listen: self.admin_listen,
                buffer: self.buffer,
                webhooks_config: self.webhooks_config,
                admin_token_file: self.admin_token_file,
                log_level: self.log_level,
                log_format: self.log_format,
            },
        )
    }
}

fn init_logging(config: &RelayConfig) {
    webhook_connect_protocol::logging::init(
        &config.file.log.level,
        config.file.log.format == "json",
    );
}

fn load(flags: Flags) -> Result<RelayConfig, ExitCode> {
    match config::load(&flags.load_options()) {
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            for err in &e.errors {
                eprintln!("error: {err}");
            }
            Err(ExitCode::from(2))
        }
    }
}

/// mimalloc instead of the system allocator: allocation was about a sixth of the CPU profile
/// of the message path (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The redis crate (a `rediss://` buffer or state store) builds its TLS configuration with
    // rustls's process-wide provider. ring is the only one the workspace builds; installing it
    // explicitly keeps that true should a dependency ever enable a second provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let admin_command = matches!(cli.command, Some(Command::Admin(_)));
    if admin_command && cli.flags != Flags::default() {
        eprintln!(
            "error: the server options (--config, --listen, …) apply to run, check-config and \
             print-config, not to the admin subcommands"
        );
        return ExitCode::from(2);
    }
    let (command, flags) = match cli.command {
        None => ("run", cli.flags),
        Some(Command::Run(f)) => ("run", f.over(cli.flags)),
        Some(Command::CheckConfig(f)) => ("check", f.over(cli.flags)),
        Some(Command::PrintConfig(f)) => ("print", f.over(cli.flags)),
        Some(Command::Admin(c)) => return admin_cli::main(c),
        Some(Command::Health(args)) => return health(args, cli.flags),
    };
    let config = match load(flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        "check" => {
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!(
                "configuration is valid: {} channel(s)",
                config.channels.len()
            );
            ExitCode::SUCCESS
        }
        "print" => match serde_json::to_string_pretty(&config::redact::printable(&config)) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        _ => serve(config),
    }
}

/// `health`: one GET of `/healthz` or `/readyz`. The relay's own certificate names its public
/// host, not loopback, so the probe does not verify it (it sends no secret and only reads the
/// status).
fn health(args: HealthArgs, top: Flags) -> ExitCode {
    let base = match args.url {
        Some(url) => url,
        None => match load(args.flags.over(top)) {
            Ok(config) => {
                let scheme = if config.file.server.tls_cert_file.is_some() {
                    "https"
                } else {
                    "http"
                };
                match health_probe::loopback_url(scheme, &config.file.server.listen) {
                    Ok(url) => url,
                    Err(e) => {
                        eprintln!("error: server.listen: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            Err(code) => return code,
        },
    };
    let url = health_probe::probe_url(&base, args.ready);
    let timeout = std::time::Duration::from_secs(args.timeout_seconds.max(1));
    let probe = async {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok::<_, String>((status, response.text().await.unwrap_or_default()))
    };
    let runtime = match current_thread_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match health_probe::verdict(&url, runtime.block_on(probe)) {
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

/// A single-threaded runtime for the `health` subcommand.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

fn serve(config: RelayConfig) -> ExitCode {
    init_logging(&config);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let listen = config.file.server.listen.clone();
        let backlog = config.file.server.listen_backlog as u32;
        let listener = match webhook_relay::startup::bind_listener(&listen, backlog).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%listen, error = %e, "Cannot listen");
                return ExitCode::from(1);
            }
        };
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        // The signal listener: one per process.
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        match run(config, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(StartError::Config(e)) => {
                for line in e.lines() {
                    tracing::error!("{line}");
                }
                ExitCode::from(2)
            }
            Err(e) => {
                tracing::error!(error = %e, "Relay failed");
                ExitCode::from(1)
            }
        }
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
