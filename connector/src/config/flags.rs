//! Command-line flags (`docs/reference/config-formats.md` §4.6). Every flag is optional: a flag that was not
//! given never overrides the file or the environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `webhook-connector [flags] [run|check-config|print-config] [flags]`: the flags work before
/// or after the subcommand, or both (those after it win).
#[derive(Debug, Parser)]
#[command(
    name = "webhook-connector",
    version,
    about = "Webhook Connect connector"
)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags given before the subcommand (or without one).
    #[command(flatten)]
    pub flags: Flags,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect and deliver (the default).
    Run(Flags),
    /// Load and validate the configuration, print every problem, exit 0 or 2.
    CheckConfig(Flags),
    /// Print the effective configuration as JSON, every secret as `***`; exit 0 or 2.
    PrintConfig(Flags),
    /// Probe this connector's health listener (`/healthz`, or `/readyz` with `--ready`): exit 0
    /// when it answers 200, 1 otherwise. For container health checks: needs no shell or curl.
    Health(HealthArgs),
}

/// `health`: what to probe. Without `--url` the address is `health_listen` of the
/// configuration (on loopback when it binds every interface), loaded like `run`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// What to probe besides the configuration.
    #[command(flatten)]
    pub probe: HealthProbe,
    /// Configuration flags, as for `run`.
    #[command(flatten)]
    pub flags: Flags,
}

/// The options of `health` itself.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthProbe {
    /// Base URL to probe instead of `health_listen` (e.g. http://127.0.0.1:9091).
    #[arg(long)]
    pub url: Option<String>,
    /// Probe `/readyz` (every channel connected) instead of `/healthz`.
    #[arg(long)]
    pub ready: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: u64,
}

impl Cli {
    /// What to do and the flags for it: the subcommand's flags, filled from those given before
    /// it. No subcommand means `run`.
    pub fn resolve(self) -> (Action, Flags) {
        match self.command {
            None => (Action::Run, self.flags),
            Some(Command::Run(f)) => (Action::Run, f.over(self.flags)),
            Some(Command::CheckConfig(f)) => (Action::Check, f.over(self.flags)),
            Some(Command::PrintConfig(f)) => (Action::Print, f.over(self.flags)),
            Some(Command::Health(h)) => (Action::Health(h.probe), h.flags.over(self.flags)),
        }
    }
}

/// The subcommand, without its configuration flags.
#[derive(Debug, Clone)]
pub enum Action {
    /// `run` (or no subcommand).
    Run,
    /// `check-config`.
    Check,
    /// `print-config`.
    Print,
    /// `health`, with its own options.
    Health(HealthProbe),
}

/// Flags shared by `run` and `check-config`. `None` / `false` means "not given".
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// Configuration file (JSON, TOML or YAML by extension).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Relay base URL.
    #[arg(long)]
    pub cloud_url: Option<String>,
    /// Channel name.
    #[arg(long)]
    pub channel: Option<String>,
    /// Channel token (visible to other users; prefer --token-file).
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the channel token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Default target URL.
    #[arg(long)]
    pub target_url: Option<String>,
    /// auto, websocket, sse or long_poll.
    #[arg(long)]
    pub protocol: Option<String>,
    /// auto, 1 or 2.
    #[arg(long)]
    pub protocol_version: Option<String>,
    /// TRACE, DEBUG, INFO, WARNING, ERROR.
    #[arg(long)]
    pub log_level: Option<String>,
    /// text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Sent as X-Connector-ID.
    #[arg(long)]
    pub connector_id: Option<String>,
    /// Do not verify the relay's TLS certificate.
    #[arg(long)]
    pub no_verify_ssl: bool,
    /// Module-mode webhooks.json.
    #[arg(long)]
    pub webhooks_config: Option<PathBuf>,
    /// Module-mode connections.json.
    #[arg(long)]
    pub connections_config: Option<PathBuf>,
    /// Address of the local health listener.
    #[arg(long)]
    pub health_listen: Option<String>,
    /// Seconds to finish in-flight messages on shutdown.
    #[arg(long)]
    pub drain_timeout: Option<String>,
    /// Proxy URL for relay connections.
    #[arg(long)]
    pub proxy: Option<String>,
    /// Exit with status 3 after a channel was stale this many seconds.
    #[arg(long)]
    pub exit_on_stale_seconds: Option<String>,
}

impl Flags {
    /// These flags, with `top` (given before the subcommand) filling what they leave unset.
    pub fn over(self, top: Flags) -> Flags {
        Flags {
            config: self.config.or(top.config),
            cloud_url: self.cloud_url.or(top.cloud_url),
            channel: self.channel.or(top.channel),
            token: self.token.or(top.token),
            token_file: self.token_file.or(top.token_file),
            target_url: self.target_url.or(top.target_url),
            protocol: self.protocol.or(top.protocol),
            protocol_version: self.protocol_version.or(top.protocol_version),
            log_level: self.log_level.or(top.log_level),
            log_format: self.log_format.or(top.log_format),
            connector_id: self.connector_id.or(top.connector_id),
            no_verify_ssl: self.no_verify_ssl || top.no_verify_ssl,
            webhooks_config: self.webhooks_config.or(top.webhooks_config),
            connections_config: self.connections_config.or(top.connections_config),
            health_listen: self.health_listen.or(top.health_listen),
            drain_timeout: self.drain_timeout.or(top.drain_timeout),
            proxy: self.proxy.or(top.proxy),
            exit_on_stale_seconds: self.exit_on_stale_seconds.or(top.exit_on_stale_seconds),
        }
    }

    /// The flags that were given, as (top-level key, value, flag name) overrides.
    pub(crate) fn overrides(&self) -> Vec<(&'static str, serde_json::Value, &'static str)> {
        use serde_json::Value;
        let mut out = Vec::new();
        let mut put = |key: &'static str, value: Option<String>, flag: &'static str| {
            if let Some(v) = value {
                out.push((key, Value::String(v), flag));
            }
        };
        put("cloud_url", self.cloud_url.clone(), "--cloud-url");
        put("channel", self.channel.clone(), "--channel");
        put("token", self.token.clone(), "--token");
        put(
            "token_file",
            self.token_file.as_ref().map(|p| p.display().to_string()),
            "--token-file",
        );
        put("protocol", self.protocol.clone(), "--protocol");
        put(
            "protocol_version",
            self.protocol_version.clone(),
            "--protocol-version",
        );
        put("log_level", self.log_level.clone(), "--log-level");
        put("log_format", self.log_format.clone(), "--log-format");
        put("connector_id", self.connector_id.clone(), "--connector-id");
        put(
            "webhooks_config",
            self.webhooks_config
                .as_ref()
                .map(|p| p.display().to_string()),
            "--webhooks-config",
        );
        put(
            "connections_config",
            self.connections_config
                .as_ref()
                .map(|p| p.display().to_string()),
            "--connections-config",
        );
        put(
            "health_listen",
            self.health_listen.clone(),
            "--health-listen",
        );
        put(
            "drain_timeout",
            self.drain_timeout.clone(),
            "--drain-timeout",
        );
        put("proxy", self.proxy.clone(), "--proxy");
        put(
            "exit_on_stale_seconds",
            self.exit_on_stale_seconds.clone(),
            "--exit-on-stale-seconds",
        );
        if self.no_verify_ssl {
            out.push(("verify_ssl", Value::Bool(false), "--no-verify-ssl"));
        }
        out
    }
}
