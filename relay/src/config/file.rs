//! The relay's own configuration file (`docs/reference/config-formats.md` §2): every key optional, unknown keys
//! are errors. Defaults live here, next to each field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use webhook_connect_protocol::config_values::{Secret, lenient};

use super::settings::ChannelOverrides;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayFile {
    /// `[server]`
    pub server: ServerSection,
    /// `[admin]`
    pub admin: AdminSection,
    /// `[buffer]`
    pub buffer: BufferSection,
    /// `[state]`
    pub state: StateSection,
    /// `[trace]`
    pub trace: TraceSection,
    /// `[ingest]`
    pub ingest: IngestSection,
    /// `[streaming]`
    pub streaming: StreamingSection,
    /// `[limits]`
    pub limits: LimitsSection,
    /// `[log]`
    pub log: LogSection,
    /// `[metrics]`
    pub metrics: MetricsSection,
    /// `[channel_defaults]`
    pub channel_defaults: ChannelOverrides,
    /// `[[channels]]`, read by [`ChannelEntry::from_map`] so errors carry their path.
    pub channels: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Main listener.
    pub listen: String,
    /// External URL of the relay.
    pub public_base_url: String,
    /// Trusted reverse proxies (IP or CIDR).
    pub trusted_proxies: Vec<String>,
    /// Ingest body limit, 1–104 857 600.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_body_bytes: u64,
    /// 1–300.
    #[serde(deserialize_with = "lenient::u64")]
    pub body_read_timeout_seconds: u64,
    /// 1–300: time for a request's header, from the connection's start or the end of the
    /// previous response (so also the keep-alive idle timeout).
    #[serde(deserialize_with = "lenient::u64")]
    pub header_read_timeout_seconds: u64,
    /// 1–65 535: the accept queue asked of the kernel for each listener (capped by
    /// `net.core.somaxconn`).
    #[serde(deserialize_with = "lenient::u64")]
    pub listen_backlog: u64,
    /// 1–1000.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_header_count: u64,
    /// 1024–65 536.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_header_bytes: u64,
    /// 1–1000.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_json_depth: u64,
    /// ≥ 1.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_string_length: u64,
    /// 0–300.
    #[serde(deserialize_with = "lenient::u64")]
    pub shutdown_grace_seconds: u64,
    /// Serve `/openapi.json`.
    #[serde(deserialize_with = "lenient::bool")]
    pub openapi: bool,
    /// TLS certificate (PEM).
    pub tls_cert_file: Option<String>,
    /// TLS key (PEM).
    pub tls_key_file: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "0.0.0.0:8000".into(),
            public_base_url: String::new(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 10_485_760,
            body_read_timeout_seconds: 30,
            header_read_timeout_seconds: 10,
            listen_backlog: 4096,
            max_header_count: 100,
            max_header_bytes: 8192,
            max_json_depth: 50,
            max_string_length: 1_048_576,
            shutdown_grace_seconds: 10,
            openapi: true,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Admin token; empty disables the admin API.
    pub token: Secret,
    /// File holding the admin token.
    pub token_file: Option<String>,
    /// Separate admin listener; empty = main listener.
    pub listen: String,
    /// Counts in unauthenticated admin health.
    #[serde(deserialize_with = "lenient::bool")]
    pub public_health_details: bool,
    /// 1–1000 per client IP.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_failed_auth_per_minute: u64,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            token: Secret::default(),
            token_file: None,
            listen: String::new(),
            public_health_details: false,
            max_failed_auth_per_minute: 10,
        }
    }
}

/// `[buffer]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSection {
    /// `embedded`, `redis` or `rabbitmq`; unset = chosen by §2.8.
    pub backend: Option<String>,
    /// 1–3600.
    #[serde(deserialize_with = "lenient::u64")]
    pub sweep_interval_seconds: u64,
    /// `[buffer.embedded]`
    pub embedded: EmbeddedSection,
    /// `[buffer.redis]`
    pub redis: RedisSection,
    /// `[buffer.rabbitmq]`
    pub rabbitmq: RabbitSection,
}

impl Default for BufferSection {
    fn default() -> Self {
        BufferSection {
            backend: None,
            sweep_interval_seconds: 60,
            embedded: EmbeddedSection::default(),
            redis: RedisSection::default(),
            rabbitmq: RabbitSection::default(),
        }
    }
}

/// `[buffer.embedded]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSection {
    /// Store file.
    pub path: String,
    /// Group-commit window, 0–100 ms.
    #[serde(deserialize_with = "lenient::u64")]
    pub commit_max_delay_ms: u64,
}

impl Default for EmbeddedSection {
    fn default() -> Self {
        EmbeddedSection {
            path: "data/webhook-relay.db".into(),
            commit_max_delay_ms: 2,
        }
    }
}

/// The default of `buffer.redis.url`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// `[buffer.redis]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `redis://`, `rediss://` or `unix://`.
    pub url: Secret,
    /// Seed nodes of a Redis Cluster (`redis://` or `rediss://`); set instead of `url`.
    pub cluster_nodes: Vec<Secret>,
    /// Replicas that must hold a published message before the relay answers (`WAIT`); 0–16.
    #[serde(deserialize_with = "lenient::u64")]
    pub wait_replicas: u64,
    /// `^[A-Za-z0-9_.-]{1,64}$`.
    pub key_prefix: String,
    /// 1–256.
    #[serde(deserialize_with = "lenient::u64")]
    pub pool_size: u64,
    /// 100–60 000.
    #[serde(deserialize_with = "lenient::u64")]
    pub operation_timeout_ms: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: Secret::new(DEFAULT_REDIS_URL),
            cluster_nodes: Vec::new(),
            wait_replicas: 0,
            key_prefix: "webhook_connect".into(),
            pool_size: 16,
            operation_timeout_ms: 5000,
        }
    }
}

impl RedisSection {
    /// The cluster node URLs, exposed (empty: the server at `url`).
    pub fn cluster_node_urls(&self) -> Vec<String> {
        self.cluster_nodes
            .iter()
            .map(|n| n.expose().to_owned())
            .collect()
    }
}

/// `[buffer.rabbitmq]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitSection {
    /// `amqp://` or `amqps://`.
    pub url: Secret,
    /// Topic exchange.
    pub exchange: String,
    /// 1–65 535.
    #[serde(deserialize_with = "lenient::u64")]
    pub prefetch: u64,
    /// 100–60 000.
    #[serde(deserialize_with = "lenient::u64")]
    pub operation_timeout_ms: u64,
}

impl Default for RabbitSection {
    fn default() -> Self {
        RabbitSection {
            url: Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            exchange: "webhook_connect".into(),
            prefetch: 100,
            operation_timeout_ms: 5000,
        }
    }
}

/// `[state]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// `auto`, `embedded` or `redis`.
    pub backend: String,
    /// Embedded state store.
    pub path: String,
    /// Redis state URL; empty = `buffer.redis.url`.
    pub redis_url: Secret,
    /// Redis key prefix.
    pub key_prefix: String,
    /// File holding the 32-byte key that encrypts the webhook secrets of admin-created
    /// channels at rest (64 hex digits or base64); empty = generated beside `path` for the
    /// embedded store, none for Redis.
    pub encryption_key_file: String,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            backend: "auto".into(),
            path: "data/webhook-relay-state.db".into(),
            redis_url: Secret::default(),
            key_prefix: "webhook_connect".into(),
            encryption_key_file: String::new(),
        }
    }
}

/// `[trace]`: how much of the message trace is kept (`docs/operations.md` "Message trace").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSection {
    /// Messages kept per channel, 0–1 000 000 (0 turns the trace off).
    #[serde(deserialize_with = "lenient::u64")]
    pub max_messages_per_channel: u64,
    /// How long a message's trace is kept after it was first seen, 60–2 592 000 seconds.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_age_seconds: u64,
}

impl Default for TraceSection {
    fn default() -> Self {
        TraceSection {
            max_messages_per_channel: 10_000,
            max_age_seconds: 86_400,
        }
    }
}

/// `[ingest]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// An original `webhooks.json`, or empty.
    pub webhooks_file: String,
    /// An original `connections.json`, or empty.
    pub connections_file: String,
    /// Honour the `default` webhook entry.
    #[serde(deserialize_with = "lenient::bool")]
    pub allow_default_webhook: bool,
    /// Remove credentials the relay consumed from relayed headers.
    #[serde(deserialize_with = "lenient::bool")]
    pub strip_consumed_credentials: bool,
    /// 1–3600.
    #[serde(deserialize_with = "lenient::u64")]
    pub queue_full_retry_after_seconds: u64,
    /// `warn` or `error`.
    pub unsupported_modules: String,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            webhooks_file: String::new(),
            connections_file: String::new(),
            allow_default_webhook: false,
            strip_consumed_credentials: true,
            queue_full_retry_after_seconds: 5,
            unsupported_modules: "warn".into(),
        }
    }
}

/// `[streaming]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingSection {
    /// Accept `?token=` on stream endpoints.
    #[serde(deserialize_with = "lenient::bool")]
    pub allow_query_token: bool,
    /// 1024–16 777 216.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_client_frame_bytes: u64,
    /// 0–600 000.
    #[serde(deserialize_with = "lenient::u64")]
    pub sse_retry_ms: u64,
    /// 0–1000.
    #[serde(deserialize_with = "lenient::u64")]
    pub long_poll_linger_ms: u64,
    /// 2–10.
    #[serde(deserialize_with = "lenient::u64")]
    pub stale_multiplier: u64,
    /// 1–10 000.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_malformed_frames_per_minute: u64,
}

impl Default for StreamingSection {
    fn default() -> Self {
        StreamingSection {
            allow_query_token: false,
            max_client_frame_bytes: 65_536,
            sse_retry_ms: 2000,
            long_poll_linger_ms: 50,
            stale_multiplier: 3,
            max_malformed_frames_per_minute: 20,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// ≥ 1.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_channels: u64,
    /// ≥ 1.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_webhooks: u64,
    /// ≥ 1; lowered at start-up to the file limit minus a reserve.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_connections_total: u64,
    /// Connectors' stream connections at most; 0 = four fifths of the total.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_stream_connections: u64,
    /// Request connections per client IP; 0 = no cap.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_connections_per_ip: u64,
    /// ≥ 1.
    #[serde(deserialize_with = "lenient::u64")]
    pub rate_limiter_max_keys: u64,
    /// ≥ 1.
    #[serde(deserialize_with = "lenient::u64")]
    pub nonce_cache_size: u64,
    /// Bytes of ingest bodies held in memory at once, over all requests: at least
    /// `server.max_body_bytes`, at most 64 GiB. A body that would pass it gets `503`.
    #[serde(deserialize_with = "lenient::u64")]
    pub max_inflight_body_bytes: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_channels: 1000,
            max_webhooks: 10_000,
            max_connections_total: 10_000,
            max_stream_connections: 0,
            max_connections_per_ip: 0,
            rate_limiter_max_keys: 100_000,
            nonce_cache_size: 100_000,
            max_inflight_body_bytes: 268_435_456,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `trace` … `error`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Serve `/metrics`.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Separate metrics listener, or empty.
    pub listen: String,
    /// Bearer token for `/metrics`, or empty.
    pub bearer_token: Secret,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            listen: String::new(),
            bearer_token: Secret::default(),
        }
    }
}

/// A `[[channels]]` entry.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    /// Channel name.
    pub name: String,
    /// Channel token (or `token_file`).
    pub token: Option<Secret>,
    /// File holding the channel token.
    pub token_file: Option<String>,
    /// Webhook id → inbound settings (auth keys, `data_type`, …).
    pub webhooks: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Channel settings.
    pub settings: ChannelOverrides,
}

impl ChannelEntry {
    /// Reads one entry; errors are prefixed with `path` (e.g. `channels[0]`).
    pub fn from_map(
        mut map: serde_json::Map<String, serde_json::Value>,
        path: &str,
    ) -> Result<ChannelEntry, Vec<String>> {
        let mut errors = Vec::new();
        let mut take_string =
            |map: &mut serde_json::Map<String, serde_json::Value>, key: &str| match map.remove(key)
            {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s),
                Some(other) => {
                    errors.push(format!("{path}.{key}: expected a string, got {other}"));
                    None
                }
            };
        let name = take_string(&mut map, "name");
        let token = take_string(&mut map, "token").map(Secret::new);
        let token_file = take_string(&mut map, "token_file");
        let webhooks = match map.remove("webhooks") {
            None | Some(serde_json::Value::Null) => BTreeMap::new(),
            Some(serde_json::Value::Object(w)) => {
                let mut out = BTreeMap::new();
                for (id, entry) in w {
                    match entry {
                        serde_json::Value::Object(e) => {
                            out.insert(id, e);
                        }
                        other => errors.push(format!(
                            "{path}.webhooks.{id}: expected a table of webhook settings, got {other}"
                        )),
                    }
                }
                out
            }
            Some(other) => {
                errors.push(format!("{path}.webhooks: expected a table, got {other}"));
                BTreeMap::new()
            }
        };
        let settings = super::deserialize_at::<ChannelOverrides>(
            serde_json::Value::Object(map),
            &format!("{path}."),
        )
        .unwrap_or_else(|e| {
            errors.push(e);
            ChannelOverrides::default()
        });
        let Some(name) = name else {
            errors.push(format!("{path}.name: missing field"));
            return Err(errors);
        };
        if errors.is_empty() {
            Ok(ChannelEntry {
                name,
                token,
                token_file,
                webhooks,
                settings,
            })
        } else {
            Err(errors)
        }
    }
}
