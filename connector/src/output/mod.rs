//! The output-module contract of module mode (`docs/reference/module-contract.md` §2): the [`Output`] trait every module
//! implements, its typed [`OutputError`], the [`Delivery`] a module receives, and the
//! [`ModuleSettings`] a module is built from.
//!
//! Instances are built once at start-up from validated configuration, never per message
//! (§2.2). Modules that talk to the same `connections.json` entry share one client through
//! [`shared::SharedClients`].

pub mod activemq;
mod admission;
#[cfg(any(feature = "s3", feature = "aws_sqs"))]
mod aws;
#[cfg(feature = "aws_sqs")]
pub mod aws_sqs;
#[cfg(feature = "clickhouse")]
pub mod clickhouse;
mod client_slot;
mod connection_keys;
mod error_mapping;
#[cfg(feature = "gcp_pubsub")]
mod gcp_auth;
#[cfg(feature = "gcp_pubsub")]
pub mod gcp_pubsub;
pub(crate) mod http_webhook;
#[cfg(any(feature = "postgresql", feature = "mysql", feature = "clickhouse"))]
mod identifier;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod log;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis-rq")]
pub mod pickle;
#[cfg(feature = "postgresql")]
pub mod postgresql;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(any(
    feature = "clickhouse",
    feature = "kafka",
    feature = "mqtt",
    feature = "nats",
    feature = "rabbitmq",
    feature = "redis",
    feature = "s3",
    feature = "postgresql",
    feature = "mysql"
))]
// Each module uses part of it; only the default features use all of it.
#[cfg_attr(
    not(all(
        feature = "postgresql",
        feature = "mysql",
        feature = "mqtt",
        feature = "nats",
        feature = "rabbitmq",
        feature = "redis"
    )),
    allow(dead_code)
)]
mod record;
#[cfg(feature = "redis")]
mod redis_client;
#[cfg(feature = "redis")]
pub mod redis_publish;
#[cfg(feature = "redis")]
pub mod redis_rq;
pub mod registry;
#[cfg(feature = "redis-rq")]
mod rq_job;
#[cfg(feature = "s3")]
pub mod s3;
pub(crate) mod save_to_disk;
mod settings;
pub mod shared;
#[cfg(any(feature = "postgresql", feature = "mysql"))]
mod sql;
pub(crate) mod websocket;
#[cfg(feature = "zeromq")]
pub mod zeromq;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use webhook_connect_protocol::WebhookMessage;
use webhook_connect_protocol::envelope::DataType;

use self::shared::SharedClients;

/// One output module instance (`docs/reference/module-contract.md` §2.1).
#[async_trait::async_trait]
pub trait Output: Send + Sync + 'static {
    /// Once, before the first `process`: connect, declare, create tables, warm pools.
    async fn setup(&self) -> Result<(), OutputError>;
    /// Delivers one message. Called concurrently; must be cancellation-safe. `Ok` only once the
    /// sink has taken responsibility for the message (commit, confirm, 2xx, file renamed, …).
    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError>;
    /// Once, at shutdown or when the instance is replaced: flush and release.
    async fn teardown(&self);
}

/// How a failure affects retries (`docs/reference/module-contract.md` §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// This attempt failed; a later one may succeed (network, timeout, busy, 5xx, 429).
    Transient,
    /// This message can never be delivered (invalid data, too large, 4xx other than 408/429).
    Permanent,
    /// The sink refuses us until an operator acts (auth, permission, missing table or queue).
    Unavailable,
}

/// What went wrong, for metrics and `retryable_errors` (`docs/reference/module-contract.md` §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// Connecting or a dropped connection.
    Connection,
    /// The sink did not answer in time (also a dropped `process` future).
    Timeout,
    /// Authentication or permission.
    Auth,
    /// The message cannot be represented in the sink.
    InvalidData,
    /// The sink throttles us.
    RateLimited,
    /// The sink failed on its side.
    ServerError,
    /// The sink refused the request as ours to fix.
    ClientError,
    /// Anything else.
    Other,
}

impl ErrorCategory {
    /// The name used in configuration (`retryable_errors`) and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Connection => "connection",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Auth => "auth",
            ErrorCategory::InvalidData => "invalid_data",
            ErrorCategory::RateLimited => "rate_limited",
            ErrorCategory::ServerError => "server_error",
            ErrorCategory::ClientError => "client_error",
            ErrorCategory::Other => "other",
        }
    }
}

/// A failed `setup` or `process`. `message` never holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputError {
    /// Retry behaviour.
    pub kind: ErrorKind,
    /// Cause, for metrics and `retryable_errors`.
    pub category: ErrorCategory,
    /// Human-readable reason (also the v2 nack reason).
    pub message: String,
    /// A delay the sink asked for (HTTP `Retry-After`, throttling).
    pub retry_after: Option<Duration>,
}

impl OutputError {
    /// An error of `kind` and `category`.
    pub fn new(kind: ErrorKind, category: ErrorCategory, message: impl Into<String>) -> Self {
        OutputError {
            kind,
            category,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A [`ErrorKind::Transient`] error.
    pub fn transient(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, category, message)
    }

    /// A [`ErrorKind::Permanent`] error.
    pub fn permanent(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, category, message)
    }

    /// An [`ErrorKind::Unavailable`] error.
    pub fn unavailable(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, category, message)
    }

    /// The same error with a sink-requested delay.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.category.as_str())
    }
}

impl std::error::Error for OutputError {}

/// What a module receives for one message (`docs/reference/module-contract.md` §2.3). Cheap to share between the
/// items of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Relay-assigned message id; the idempotency key wherever a sink supports one.
    pub message_id: String,
    /// The webhook the message was sent to.
    pub webhook_id: String,
    /// The channel it came through.
    pub channel: String,
    /// Per-webhook sequence number.
    pub sequence: u64,
    /// Delivery attempt, 1 for the first.
    pub delivery_count: u32,
    /// When the relay accepted it (RFC 3339), when known.
    pub received_at: Option<String>,
    /// Received headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The JSON payload (for `blob` data, the string form of the body).
    pub payload: Value,
    /// The exact body bytes.
    pub body: Arc<[u8]>,
    /// `Content-Type` of the original request, when known.
    pub content_type: Option<String>,
    /// `json` or `blob`.
    pub data_type: String,
}

impl Delivery {
    /// Builds the delivery for `msg`, received on `channel`. A payload that is not valid JSON
    /// (impossible after frame decoding) becomes JSON null.
    pub fn from_message(msg: &WebhookMessage, channel: &str) -> Self {
        let headers = msg
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect::<BTreeMap<_, _>>();
        let content_type = match &msg.content_type {
            Some(Some(ct)) => Some(ct.clone()),
            _ => headers.get("content-type").cloned(),
        };
        Delivery {
            message_id: msg.message_id.clone(),
            webhook_id: msg.webhook_id.clone(),
            channel: msg.channel.clone().unwrap_or_else(|| channel.to_owned()),
            sequence: msg.sequence,
            delivery_count: msg.delivery_count.unwrap_or(1),
            received_at: msg.received_at.map(|t| t.to_string()),
            headers,
            payload: serde_json::from_str(msg.payload.get()).unwrap_or(Value::Null),
            body: msg.delivery_body().into(),
            content_type,
            data_type: match msg.data_type {
                Some(DataType::Blob) => "blob",
                _ => "json",
            }
            .to_owned(),
        }
    }

    /// The payload as compact JSON text (what most sinks store).
    pub fn payload_json(&self) -> String {
        self.payload.to_string()
    }
}

/// Everything a module's builder reads (`docs/reference/module-contract.md` §3, §4, §5.2). Builders record problems
/// (with the path of the offending key) into the load's `Problems` and return `None` when the
/// configuration is unusable; unknown `module-config` keys are warnings, not errors.
#[derive(Debug, Clone)]
pub struct ModuleSettings<'a> {
    /// Canonical module name (aliases resolved: `postgres` → `postgresql`).
    pub module: &'a str,
    /// Path of the webhook entry or chain item, for messages, e.g. `webhooks.json: orders`.
    pub path: String,
    /// The merged `module-config` object (empty when absent).
    pub module_config: &'a Map<String, Value>,
    /// Name of the `connections.json` entry, when one is named.
    pub connection_name: Option<&'a str>,
    /// That entry's object, after `{$VAR}` substitution.
    pub connection: Option<&'a Map<String, Value>>,
    /// The webhook entry (or chain item) object itself, for webhook-level fallbacks.
    pub webhook: &'a Map<String, Value>,
    /// Clients shared per connection.
    pub shared: Arc<SharedClients>,
    /// `outbound_policy: strict` in the connector config.
    pub outbound_strict: bool,
}
