//! Connector configuration (`docs/reference/config-formats.md` §4): the typed, validated result of
//! defaults < file < environment < flags actually passed.
//!
//! - [`load`] reads the layers and validates them, collecting every problem with its path;
//! - [`flags`] holds the command-line flags (only flags actually given override anything, before
//!   or after the subcommand);
//! - [`redact`] is the view `print-config` prints, every secret masked;
//! - this module holds the typed configuration and its defaults, documented next to each field.

pub mod flags;
pub mod load;
pub mod redact;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use webhook_connect_protocol::config_values::{Secret, secret_from_file_text};

pub use crate::pipeline::config::ModuleModeConfig;
pub use crate::settings::Problems;
pub use crate::tls::TlsConfig;
pub use flags::Flags;
pub use load::{ConfigError, load, load_from_value, load_printable};

/// Default `max_message_size`: the relay's default, 10 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 10 * 1024 * 1024;
/// Smallest `max_message_size` accepted: 1 KiB.
pub const MIN_MESSAGE_SIZE: u64 = 1024;
/// Largest `max_message_size` accepted: 1 GiB (a frame may then reach about 3 GiB).
pub const MAX_MESSAGE_SIZE: u64 = 1024 * 1024 * 1024;

/// Stream transport (`protocol`). `auto` tries WebSocket, then SSE, then long-poll (C.7 rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// WebSocket, falling back to SSE, then long-poll, on transport-level failures.
    Auto,
    /// WebSocket only.
    WebSocket,
    /// Server-Sent Events only.
    Sse,
    /// Long-poll only.
    LongPoll,
}

impl Protocol {
    /// Parses the config spelling.
    pub fn parse(text: &str) -> Option<Protocol> {
        Some(match text.to_ascii_lowercase().as_str() {
            "auto" => Protocol::Auto,
            "websocket" | "ws" => Protocol::WebSocket,
            "sse" => Protocol::Sse,
            "long_poll" | "longpoll" | "long-poll" | "poll" => Protocol::LongPoll,
            _ => return None,
        })
    }
}

/// Which protocol version to ask for (`protocol_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionPreference {
    /// Ask for v2, accept v1 (default).
    Auto,
    /// Speak v1 only.
    V1,
    /// Ask for v2 (a relay that does not grant it is still spoken to in v1, B.1).
    V2,
}

/// Where a channel token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given inline (file, env or flag).
    Inline(Secret),
    /// Read from a file before every connect (`token_file`), so a rotated token is picked up.
    File(PathBuf),
}

impl TokenSource {
    /// The current token. Files lose exactly one trailing line end (§1.2).
    pub fn read(&self) -> Result<Secret, std::io::Error> {
        match self {
            TokenSource::Inline(secret) => Ok(secret.clone()),
            TokenSource::File(path) => std::fs::read_to_string(path).map(secret_from_file_text),
        }
    }
}

/// What to forward of the original headers (`forward_headers`, docs/reference/module-contract.md §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardHeaders {
    /// `X-Original-<name>` and the original name (default).
    Both,
    /// Only `X-Original-<name>`.
    Prefixed,
    /// Only the original name.
    Original,
    /// Neither.
    None,
}

/// What body to send (`body`, docs/reference/module-contract.md §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Raw body bytes when the message has them (v2), else as `json` (default).
    Auto,
    /// Raw body only; a permanent failure without one.
    Raw,
    /// The payload: a string payload as its text, other values as JSON.
    Json,
}

/// Local retry policy of one target (already clamped, §4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `retry_enabled` (default true); false means exactly one attempt.
    pub enabled: bool,
    /// `retry_max_attempts` (default 3), clamped to 1–20.
    pub max_attempts: u32,
    /// `retry_delay_seconds` (default 1.0), clamped to 0–60.
    pub delay: Duration,
    /// `retry_backoff_multiplier` (default 2.0), clamped to 1–10.
    pub multiplier: f64,
    /// `retry_max_delay_seconds` (default 60.0), clamped to `delay`–300.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Number of attempts this policy allows.
    pub fn attempts(&self) -> u32 {
        if self.enabled { self.max_attempts } else { 1 }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            enabled: true,
            max_attempts: 3,
            delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60),
        }
    }
}

/// An HTTP-mode target (§4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    /// `url` (required), `http://` or `https://`.
    pub url: String,
    /// `method` (default `POST`): POST, PUT, PATCH, DELETE or GET.
    pub method: http::Method,
    /// `headers` (default none), set first on every request, in file order.
    pub headers: Vec<(String, String)>,
    /// `timeout_seconds` (default 30): total request timeout.
    pub timeout: Duration,
    /// Retry settings.
    pub retry: RetryPolicy,
    /// `forward_headers` (default `both`).
    pub forward_headers: ForwardHeaders,
    /// `body` (default `auto`).
    pub body: BodyMode,
}

impl TargetConfig {
    /// A target with every default and the given URL.
    pub fn new(url: impl Into<String>) -> Self {
        TargetConfig {
            url: url.into(),
            method: http::Method::POST,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            forward_headers: ForwardHeaders::Both,
            body: BodyMode::Auto,
        }
    }
}

/// One channel served by this process (§4.3; the top-level `channel` makes one entry).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    /// Channel name (validated).
    pub channel: String,
    /// Token source.
    pub token: TokenSource,
    /// Transport (default `auto`).
    pub protocol: Protocol,
    /// Version to ask for (default `auto`).
    pub protocol_version: VersionPreference,
    /// Sent as `X-Connector-ID`.
    pub connector_id: Option<String>,
    /// Concurrent deliveries (default 10, 1–1000).
    pub max_concurrent_requests: usize,
    /// Target for webhook ids without their own.
    pub default_target: Option<TargetConfig>,
    /// Targets by exact, case-sensitive webhook id.
    pub targets: BTreeMap<String, TargetConfig>,
    /// Module mode (`webhooks_config`): the validated `webhooks.json` / `connections.json`.
    /// Exclusive with the HTTP targets.
    pub modules: Option<Arc<ModuleModeConfig>>,
}

impl ChannelConfig {
    /// A channel with an inline token, `auto` protocol and default limits.
    pub fn new(channel: impl Into<String>, token: impl Into<String>) -> Self {
        ChannelConfig {
            channel: channel.into(),
            token: TokenSource::Inline(Secret::new(token.into())),
            protocol: Protocol::Auto,
            protocol_version: VersionPreference::Auto,
            connector_id: None,
            max_concurrent_requests: 10,
            default_target: None,
            targets: BTreeMap::new(),
            modules: None,
        }
    }

    /// The target for a webhook id: exact match, then the default.
    pub fn target_for(&self, webhook_id: &str) -> Option<&TargetConfig> {
        self.targets
            .get(webhook_id)
            .or(self.default_target.as_ref())
    }
}

/// Reconnect backoff (C.7).
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// `reconnect_delay` (default 1 s).
    pub initial: Duration,
    /// `max_reconnect_delay` (default 60 s), ≥ `initial`.
    pub max: Duration,
    /// `reconnect_backoff_multiplier` (default 2, 1–10).
    pub multiplier: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

/// Completion record (C.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRecordConfig {
    /// `capacity` (default 10 000, 100–10 000 000).
    pub capacity: usize,
    /// `ttl_seconds` (default 86 400, 60–2 592 000).
    pub ttl: Duration,
    /// `path` (default none): persist the record in `<path>.<channel>` so deduplication
    /// survives restarts.
    pub path: Option<PathBuf>,
}

impl Default for CompletionRecordConfig {
    fn default() -> Self {
        CompletionRecordConfig {
            capacity: 10_000,
            ttl: Duration::from_secs(86_400),
            path: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable (default).
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole validated connector configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// `cloud_url` without a trailing `/`.
    pub cloud_url: String,
    /// Channels served (at least one).
    pub channels: Vec<ChannelConfig>,
    /// Reconnect backoff.
    pub reconnect: ReconnectPolicy,
    /// `heartbeat_timeout` (default 60 s): client-side stale detection.
    pub heartbeat_timeout: Duration,
    /// `connection_timeout` (default 30 s): connect and handshake timeout on every transport.
    pub connection_timeout: Duration,
    /// `ack_timeout` (default 30 s): timeout of each HTTP ack or nack.
    pub ack_timeout: Duration,
    /// `log_level` (default `INFO`), as a tracing filter directive.
    pub log_level: String,
    /// `log_format`.
    pub log_format: LogFormat,
    /// TLS for the relay connections.
    pub tls: TlsConfig,
    /// `proxy`; when none, the standard proxy environment variables apply.
    pub proxy: Option<String>,
    /// `no_proxy` host patterns.
    pub no_proxy: Vec<String>,
    /// `health_listen`: serves `/healthz`, `/readyz`, `/metrics`.
    pub health_listen: Option<SocketAddr>,
    /// `drain_timeout` (default 30 s).
    pub drain_timeout: Duration,
    /// `max_message_size` (default 10 MiB, the relay's default): the largest webhook body the
    /// connector expects; it bounds what one frame, SSE event or long-poll response may hold
    /// (see `stream::MessageLimit`).
    pub max_message_size: u64,
    /// `exit_on_stale_seconds` (default none).
    pub exit_on_stale: Option<Duration>,
    /// `completion_record`.
    pub completion_record: CompletionRecordConfig,
    /// `outbound_policy: strict` (`docs/reference/module-contract.md` §2.3); HTTP targets are checked again on every
    /// new connection.
    pub outbound_strict: bool,
}

impl ConnectorConfig {
    /// A configuration with every default for one channel; handy for in-process tests.
    pub fn new(cloud_url: impl Into<String>, channel: ChannelConfig) -> Self {
        let mut cloud_url: String = cloud_url.into();
        while cloud_url.ends_with('/') {
            cloud_url.pop();
        }
        ConnectorConfig {
            cloud_url,
            channels: vec![channel],
            reconnect: ReconnectPolicy::default(),
            heartbeat_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(30),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            tls: TlsConfig::default(),
            proxy: None,
            no_proxy: Vec::new(),
            health_listen: None,
            drain_timeout: Duration::from_secs(30),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            exit_on_stale: None,
            completion_record: CompletionRecordConfig::default(),
            outbound_strict: false,
        }
    }
}
