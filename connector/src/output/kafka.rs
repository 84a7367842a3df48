//! `kafka` (`docs/reference/module-contract.md` §3.5, feature `kafka`, R-98): produce each message to a Kafka topic
//! through librdkafka, over **one producer per connection entry**, shared by every instance
//! that names it (the original started and stopped a producer per message).
//!
//! - The producer runs with `acks=all` and `enable.idempotence=true`. A broker that cannot do
//!   idempotent production (the producer fails fatally with "unsupported feature" or
//!   "unsupported version") gets a new producer without idempotence, once, with a warning.
//! - Every record carries the headers `webhook-message-id` and `webhook-id`; with
//!   `forward_headers` the webhook headers come first. `key` may use `{message_id}` and
//!   `{webhook_id}`; `partition` pins the partition; `value` is `json` (the payload's JSON) or
//!   `raw` (the exact body bytes).
//! - **Success** is a successful delivery report (`acks=all`, so every in-sync replica has it).
//! - **Setup** creates the producer and fetches the topic's metadata: a topic the broker does not
//!   have (and does not create) or a partition the topic lacks is `Unavailable`.
//! - **Errors** follow `docs/reference/module-contract.md` §3.5 by librdkafka error code: timeouts, transport errors,
//!   leader changes and other retriable broker errors are `Transient`; authorisation and SASL/TLS
//!   failures, an unknown topic or partition are `Unavailable`; a message too large or an invalid
//!   record is `Permanent`. A producer that turned fatal is replaced, and the message is
//!   `Transient`. librdkafka reports a refused login or TLS handshake only to its error callback
//!   and keeps retrying, so the sends time out: a timeout while the last such report is fresh
//!   is `Unavailable`/`auth` (or `connection` for TLS), with that report as its message.
//! - **Outbound policy** (`docs/reference/module-contract.md` §2.3): each producer the connector creates for a
//!   connection entry first resolves every bootstrap server through [`admission::admit_each`]: one
//!   refused server refuses the producer; servers whose lookup fails are left out (none left:
//!   `Transient`), and only the checked ones are given to librdkafka. librdkafka resolves them
//!   again itself, and connects to the brokers the cluster's metadata names (their advertised
//!   listeners) and re-resolves on every reconnect, all without the check. A producer replaced
//!   after a fatal error reuses the checked bootstrap list without a new lookup.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::admission;
use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping::within;
use super::record::{self, BodyFormat};
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ErrorKind, ModuleSettings, Output, OutputError};
use crate::outbound;
use crate::settings::Problems;

/// Header with the relay's message id, on every record.
pub const HEADER_MESSAGE_ID: &str = "webhook-message-id";
/// Header with the webhook id, on every record.
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// Longest wait for topic metadata at setup (shorter when `message_timeout_ms` is).
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for room in librdkafka's local queue before a send counts as throttled.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time, beyond `message.timeout.ms`, the module waits for a delivery report.
const REPORT_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_BOOTSTRAP: &str = "localhost:9092";
const DEFAULT_CLIENT_ID: &str = "webhook-connector";

/// Why `topic` is refused, if it is: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
/// Names are not restricted by keyword prefixes (the original refused `delete-events`).
pub fn check_topic(topic: &str) -> Option<&'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Some("must be 1–249 characters");
    }
    if topic == "." || topic == ".." {
        return Some("must not be \".\" or \"..\"");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("may only contain A-Z, a-z, 0-9, ., _ and -");
    }
    None
}

/// One piece of a `key` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Text(String),
    MessageId,
    WebhookId,
}

/// A parsed `key`: text with `{message_id}` and `{webhook_id}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyTemplate(Vec<KeyPart>);

impl KeyTemplate {
    /// Parses `text`. A `{name}` with another identifier is an error; other braces are text.
    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name = after.find('}').map(|close| &after[..close]);
            let part = match name {
                Some("message_id") => Some(KeyPart::MessageId),
                Some("webhook_id") => Some(KeyPart::WebhookId),
                Some(n)
                    if !n.is_empty()
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    return Err(format!(
                        "unknown placeholder {{{n}}}; allowed: {{message_id}}, {{webhook_id}}"
                    ));
                }
                _ => None,
            };
            match (part, name) {
                (Some(part), Some(n)) => {
                    if !literal.is_empty() {
                        parts.push(KeyPart::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &after[n.len() + 1..];
                }
                _ => {
                    literal.push('{');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(KeyPart::Text(literal));
        }
        Ok(KeyTemplate(parts))
    }

    fn render(&self, d: &Delivery) -> String {
        self.0
            .iter()
            .map(|p| match p {
                KeyPart::Text(t) => t.as_str(),
                KeyPart::MessageId => d.message_id.as_str(),
                KeyPart::WebhookId => d.webhook_id.as_str(),
            })
            .collect()
    }
}

/// Parses `bootstrap_servers`: a comma-separated string or a list of `host:port` entries
/// (IPv6 literals in brackets). Returns the entries, or why the value is refused.
fn parse_bootstrap(value: &Value) -> Result<Vec<String>, String> {
    let entries: Vec<String> = match value {
        Value::String(s) => s.split(',').map(|e| e.trim().to_owned()).collect(),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => out.push(s.trim().to_owned()),
                    other => return Err(format!("expected host:port strings, got {other}")),
                }
            }
            out
        }
        other => {
            return Err(format!(
                "expected \"host:port,…\" or a list of them, got {other}"
            ));
        }
    };
    if entries.is_empty() || entries.iter().any(String::is_empty) {
        return Err("must list at least one host:port, without empty entries".into());
    }
    for e in &entries {
        let (host, port) = e
            .rsplit_once(':')
            .ok_or_else(|| format!("{e:?} is not host:port"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let valid_port = port.parse::<u16>().is_ok_and(|p| p > 0);
        if bare.is_empty()
            || !valid_port
            || (bare.contains(':') && !host.starts_with('['))
            || e.chars().any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(format!(
                "{e:?} is not host:port (IPv6 addresses in brackets)"
            ));
        }
    }
    Ok(entries)
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let fallback = settings
        .fallback("topic")
        .and_then(|v| v.as_str().map(str::to_owned));
    let topic = mc.checked_string(problems, "topic", fallback, check_topic);
    let key = mc
        .string(problems, "key")
        .and_then(|k| match KeyTemplate::parse(&k) {
            Ok(t) => Some(t),
            Err(why) => {
                mc.error(problems, "key", why);
                None
            }
        });
    let partition = mc.integer(problems, "partition").and_then(|n| {
        match i32::try_from(n).ok().filter(|n| *n >= 0) {
            Some(n) => Some(n),
            None => {
                mc.error(
                    problems,
                    "partition",
                    format!("must be an integer between 0 and {}, got {n}", i32::MAX),
                );
                None
            }
        }
    });
    let forward_headers = mc.boolean(problems, "forward_headers", false);
    let value = BodyFormat::read(&mut mc, problems, "value");
    let mc_bootstrap = mc.get("bootstrap_servers");
    mc.finish(problems, false);
    let server = KafkaServer::read(settings, mc_bootstrap, problems);
    let out: Box<dyn Output> = Box::new(Kafka {
        topic: topic?,
        key,
        partition,
        forward_headers,
        value,
        server: server?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

/// The settings of one producer (a `connections.json` entry of type `kafka`).
#[derive(Debug, Clone)]
struct KafkaServer {
    /// Shared-client key: connection name plus a hash of the effective settings.
    key: String,
    bootstrap: String,
    security_protocol: &'static str,
    sasl_mechanism: Option<&'static str>,
    sasl_username: Option<String>,
    sasl_password: Option<Secret>,
    ssl_ca_location: Option<String>,
    client_id: String,
    message_timeout: Duration,
    /// `outbound_policy: strict`, applied to every address a bootstrap server resolves to.
    strict: bool,
}

impl KafkaServer {
    fn read(
        s: &ModuleSettings<'_>,
        mc_bootstrap: Option<&Value>,
        p: &mut Problems,
    ) -> Option<Self> {
        let before = p.errors.len();
        let mut r = connection_keys::connection(s);
        let conn_bootstrap = r.get("bootstrap_servers");
        let mc_path = format!("{}.module-config", s.path);
        let mc_list = mc_bootstrap.and_then(|v| match parse_bootstrap(v) {
            Ok(l) => Some(l),
            Err(why) => {
                p.error(format!("{mc_path}.bootstrap_servers: {why}"));
                None
            }
        });
        let conn_list = conn_bootstrap.and_then(|v| match parse_bootstrap(v) {
            Ok(l) => Some(l),
            Err(why) => {
                r.error(p, "bootstrap_servers", why);
                None
            }
        });
        let servers = match (mc_list, conn_list) {
            (Some(m), Some(c)) if m != c => {
                p.error(format!(
                    "{mc_path}.bootstrap_servers: {:?} conflicts with {} {:?} of the connection",
                    m.join(","),
                    r.path_of("bootstrap_servers"),
                    c.join(","),
                ));
                c
            }
            (Some(m), _) => m,
            (None, Some(c)) => c,
            (None, None) => vec![DEFAULT_BOOTSTRAP.to_owned()],
        };
        for hostport in &servers {
            if let Some(why) = outbound::check(&format!("tcp://{hostport}/"), s.outbound_strict) {
                p.error(format!(
                    "{}: {hostport}: {why}",
                    r.path_of("bootstrap_servers")
                ));
            }
        }
        let bootstrap = servers.join(",");

        let protocol = r.string(p, "security_protocol");
        let security_protocol = match protocol.as_deref().map(str::to_ascii_lowercase) {
            None => "plaintext",
            Some(v) => match v.as_str() {
                "plaintext" => "plaintext",
                "ssl" => "ssl",
                "sasl_plaintext" => "sasl_plaintext",
                "sasl_ssl" => "sasl_ssl",
                _ => {
                    r.error(
                        p,
                        "security_protocol",
                        format!(
                            "must be one of plaintext, ssl, sasl_plaintext, sasl_ssl, got {v:?}"
                        ),
                    );
                    "plaintext"
                }
            },
        };
        let sasl = security_protocol.starts_with("sasl_");
        let mechanism = r.string(p, "sasl_mechanism");
        let sasl_mechanism = match mechanism
            .as_deref()
            .map(|m| m.to_ascii_uppercase().replace('_', "-"))
        {
            None => sasl.then_some("PLAIN"),
            Some(m) => match m.as_str() {
                "PLAIN" => Some("PLAIN"),
                "SCRAM-SHA-256" => Some("SCRAM-SHA-256"),
                "SCRAM-SHA-512" => Some("SCRAM-SHA-512"),
                "GSSAPI" | "OAUTHBEARER" => {
                    r.error(
                        p,
                        "sasl_mechanism",
                        format!("{m} is not supported by this build; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                    );
                    None
                }
                _ => {
                    r.error(
                        p,
                        "sasl_mechanism",
                        format!("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {m:?}"),
                    );
                    None
                }
            },
        };
        let sasl_username = r.string(p, "sasl_username");
        let sasl_password = connection_keys::secret(&mut r, p, "sasl_password");
        if sasl && (sasl_username.is_none() || sasl_password.is_none()) {
            r.error(
                p,
                "security_protocol",
                format!("{security_protocol} needs sasl_username and sasl_password"),
            );
        }
        if !sasl && (mechanism.is_some() || sasl_username.is_some() || sasl_password.is_some()) {
            r.warn(
                p,
                "security_protocol",
                "the sasl_* keys are ignored unless security_protocol is sasl_plaintext or sasl_ssl",
            );
        }
        let ssl_ca_location = r.string(p, "ssl_ca_location");
        if ssl_ca_location.is_some() && !security_protocol.ends_with("ssl") {
            r.warn(
                p,
                "ssl_ca_location",
                "ignored unless security_protocol is ssl or sasl_ssl",
            );
        }
        let client_id = r
            .string(p, "client_id")
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned());
        let timeout_ms = r.integer_in(p, "message_timeout_ms", 30_000, 100, i64::from(i32::MAX));
        r.finish(p, false);

        // The key covers the effective settings: instances without a connection entry but with
        // different module-config servers must not share a producer.
        let mut effective = s.connection.cloned().unwrap_or_else(Map::new);
        effective.insert("bootstrap_servers".into(), Value::String(bootstrap.clone()));
        let server = KafkaServer {
            key: client_key(
                "kafka",
                s.connection_name.unwrap_or("<default>"),
                &effective,
            ),
            bootstrap,
            security_protocol,
            sasl_mechanism: if sasl { sasl_mechanism } else { None },
            sasl_username,
            sasl_password,
            ssl_ca_location,
            client_id,
            message_timeout: Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(30_000)),
            strict: s.outbound_strict,
        };
        settings::unless_errors(p, before, Some(server))
    }

    /// The librdkafka configuration of the producer. Holds the SASL password: never logged.
    fn client_config(&self, idempotent: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id)
            .set("acks", "all")
            .set(
                "enable.idempotence",
                if idempotent { "true" } else { "false" },
            )
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            .set("security.protocol", self.security_protocol);
        if let Some(m) = self.sasl_mechanism {
            c.set("sasl.mechanism", m);
            if let Some(u) = &self.sasl_username {
                c.set("sasl.username", u);
            }
            if let Some(pw) = &self.sasl_password {
                c.set("sasl.password", pw.expose());
            }
        }
        if self.security_protocol.ends_with("ssl")
            && let Some(ca) = &self.ssl_ca_location
        {
            c.set("ssl.ca.location", ca);
        }
        c
    }

    fn producer(
        &self,
        idempotent: bool,
        context: &KafkaContext,
    ) -> Result<FutureProducer<KafkaContext>, OutputError> {
        self.client_config(idempotent)
            .create_with_context(context.clone())
            .map_err(|e| match e {
                // librdkafka refused a property value: the configuration itself is wrong.
                KafkaError::ClientConfig(..) => OutputError::permanent(
                    ErrorCategory::ClientError,
                    format!("Kafka producer configuration refused: {e}"),
                ),
                // e.g. an unreadable ssl_ca_location: an operator has to act.
                _ => OutputError::unavailable(
                    ErrorCategory::Connection,
                    format!("creating the Kafka producer: {e}"),
                ),
            })
    }

    /// A producer for the bootstrap servers that pass the outbound policy.
    async fn connect(&self) -> Result<KafkaClient, OutputError> {
        let entries: Vec<&str> = self.bootstrap.split(',').collect();
        // Validated as host:port at load; an entry that is not is left out.
        let endpoints: Vec<(&str, u16)> = entries
            .iter()
            .filter_map(|e| {
                let (host, port) = e.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((host, port.parse().ok()?))
            })
            .collect();
        let admitted = within(
            METADATA_TIMEOUT,
            "resolving the Kafka bootstrap servers",
            async { admission::admit_each(&endpoints, self.strict, &[]).await },
        )
        .await?;
        let checked: Vec<String> = admitted
            .into_iter()
            .filter_map(|i| endpoints.get(i))
            .map(|(host, port)| {
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            })
            .collect();
        KafkaServer {
            bootstrap: checked.join(","),
            ..self.clone()
        }
        .start()
    }

    /// A producer for `bootstrap` as it is.
    fn start(&self) -> Result<KafkaClient, OutputError> {
        let context = KafkaContext::default();
        Ok(KafkaClient {
            server: self.clone(),
            current: RwLock::new(Current {
                producer: self.producer(true, &context)?,
                idempotent: true,
                generation: 0,
            }),
            context,
        })
    }
}

/// A login or TLS failure librdkafka reported, and when.
type Refusal = (Instant, RDKafkaErrorCode, String);

/// The producer's librdkafka callbacks: errors are logged, and the last refused login or TLS
/// handshake is kept so that the timeouts it causes are classified `Unavailable`.
#[derive(Clone, Default)]
struct KafkaContext {
    refused: Arc<Mutex<Option<Refusal>>>,
}

impl ClientContext for KafkaContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code().filter(|c| is_refusal(*c)) {
            *self.refused.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now(), code, reason.to_owned()));
        }
        tracing::warn!(error = %error, reason, "Kafka client error");
    }
}

impl KafkaContext {
    /// The refusal reported within `window`, if any.
    fn recent_refusal(&self, window: Duration) -> Option<(RDKafkaErrorCode, String)> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .as_ref()
            .filter(|(at, _, _)| at.elapsed() <= window)
            .map(|(_, code, reason)| (*code, reason.clone()))
    }

    /// Forgets the last refusal (after a delivery succeeded).
    fn clear(&self) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// Error codes of a refused login or TLS handshake.
fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::SSL
    )
}

/// The producer in use and how it was made.
struct Current {
    producer: FutureProducer<KafkaContext>,
    idempotent: bool,
    generation: u64,
}

/// The shared client of one connection: the producer, replaced when it turns fatal.
struct KafkaClient {
    server: KafkaServer,
    current: RwLock<Current>,
    context: KafkaContext,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("bootstrap", &self.server.bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// The producer now in use and its generation.
    fn producer(&self) -> (FutureProducer<KafkaContext>, u64) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.producer.clone(), c.generation)
    }

    /// Whether the producer runs idempotently (tests and logs).
    fn idempotent(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .idempotent
    }

    /// Replaces the producer of `generation` after it turned fatal; a later generation (another
    /// caller already replaced it) is kept. Idempotence is dropped when the broker lacks it.
    fn replace_fatal(&self, generation: u64) -> String {
        let (code, reason) = {
            let c = self.current.read().unwrap_or_else(|e| e.into_inner());
            c.producer
                .client()
                .fatal_error()
                .unwrap_or((RDKafkaErrorCode::Fatal, "fatal producer error".to_owned()))
        };
        let mut c = self.current.write().unwrap_or_else(|e| e.into_inner());
        if c.generation != generation {
            return reason;
        }
        let unsupported = matches!(
            code,
            RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion
        );
        let idempotent = c.idempotent && !unsupported;
        if c.idempotent && !idempotent {
            tracing::warn!(
                bootstrap = %self.server.bootstrap,
                error = %reason,
                "Kafka broker cannot do idempotent production; continuing without it"
            );
        } else {
            tracing::warn!(error = %reason, "Kafka producer failed fatally; replacing it");
        }
        match self.server.producer(idempotent, &self.context) {
            Ok(p) => {
                *c = Current {
                    producer: p,
                    idempotent,
                    generation: generation + 1,
                };
            }
            Err(e) => tracing::warn!(error = %e, "Replacing the Kafka producer failed"),
        }
        reason
    }

    /// Maps a produce or metadata error; a fatal producer is replaced first.
    fn classify(&self, e: &KafkaError, generation: u64) -> OutputError {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                let reason = self.replace_fatal(generation);
                OutputError::transient(
                    ErrorCategory::ServerError,
                    format!("Kafka producer failed fatally ({reason}); it was replaced"),
                )
            }
            Some(code) => {
                let out = classify_code(code, &format!("Kafka: {e}"));
                // A refused login or handshake shows up as timeouts: report the cause.
                let window = self.server.message_timeout + REPORT_GRACE;
                match self.context.recent_refusal(window) {
                    Some((cause, reason)) if out.kind == ErrorKind::Transient => {
                        let category = if cause == RDKafkaErrorCode::SSL {
                            ErrorCategory::Connection
                        } else {
                            ErrorCategory::Auth
                        };
                        OutputError::unavailable(
                            category,
                            format!("Kafka: {e}; the broker refused us: {reason}"),
                        )
                    }
                    _ => out,
                }
            }
            None => OutputError::transient(ErrorCategory::Other, format!("Kafka: {e}")),
        }
    }

    /// Fetches `topic`'s metadata: the topic must exist (or be created by the broker) and have
    /// `partition`, when one is pinned.
    async fn check_topic(&self, topic: &str, partition: Option<i32>) -> Result<(), OutputError> {
        let (producer, generation) = self.producer();
        let name = topic.to_owned();
        let limit = METADATA_TIMEOUT.min(self.server.message_timeout);
        let fetched = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), limit)
                .map(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .map(|t| (t.error(), t.partitions().len()))
                })
        })
        .await
        .map_err(|e| {
            OutputError::transient(ErrorCategory::Other, format!("Kafka metadata task: {e}"))
        })?;
        match fetched {
            Err(e) => Err(self.classify(&e, generation)),
            Ok(None) => Err(OutputError::unavailable(
                ErrorCategory::ClientError,
                format!("Kafka topic '{topic}' is missing from the broker's metadata"),
            )),
            Ok(Some((Some(err), _))) => {
                let code = RDKafkaErrorCode::from(err);
                Err(classify_code(
                    code,
                    &format!("Kafka topic '{topic}' metadata: {code}"),
                ))
            }
            Ok(Some((None, count))) => match partition {
                Some(n) if usize::try_from(n).is_ok_and(|n| n >= count) => {
                    Err(OutputError::unavailable(
                        ErrorCategory::ClientError,
                        format!(
                            "Kafka topic '{topic}' has {count} partition(s); partition {n} does not exist"
                        ),
                    ))
                }
                _ => Ok(()),
            },
        }
    }
}

/// The kind of a librdkafka error code (`docs/reference/module-contract.md` §3.5).
fn classify_code(code: RDKafkaErrorCode, text: &str) -> OutputError {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::BadMessage
        | C::UnsupportedForMessageFormat
        | C::PolicyViolation => OutputError::permanent(ErrorCategory::InvalidData, text),
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::Authentication
        | C::SecurityDisabled => OutputError::unavailable(ErrorCategory::Auth, text),
        C::SSL => OutputError::unavailable(ErrorCategory::Connection, text),
        C::UnknownTopicOrPartition
        | C::UnknownTopic
        | C::UnknownPartition
        | C::InvalidTopic
        | C::InvalidRequiredAcks => OutputError::unavailable(ErrorCategory::ClientError, text),
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue => {
            OutputError::transient(ErrorCategory::Timeout, text)
        }
        C::QueueFull | C::ThrottlingQuotaExceeded => {
            OutputError::transient(ErrorCategory::RateLimited, text)
        }
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::NetworkException
        | C::BrokerNotAvailable => OutputError::transient(ErrorCategory::Connection, text),
        // Leader changes, not enough replicas, storage errors and everything else the broker
        // may get over: retry.
        _ => OutputError::transient(ErrorCategory::ServerError, text),
    }
}

struct Kafka {
    topic: String,
    key: Option<KeyTemplate>,
    partition: Option<i32>,
    forward_headers: bool,
    value: BodyFormat,
    server: KafkaServer,
    shared: Arc<SharedClients>,
    client: ClientSlot<KafkaClient>,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl Kafka {
    async fn client(&self) -> Result<Arc<KafkaClient>, OutputError> {
        self.client
            .get_or(
                self.shared
                    .get_or_connect(&self.server.key, || self.server.connect()),
            )
            .await
    }

    fn headers(&self, d: &Delivery) -> OwnedHeaders {
        let mut h = OwnedHeaders::new();
        if self.forward_headers {
            for (k, v) in &d.headers {
                if k != HEADER_MESSAGE_ID && k != HEADER_WEBHOOK_ID {
                    h = h.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
            }
        }
        h.insert(Header {
            key: HEADER_MESSAGE_ID,
            value: Some(d.message_id.as_bytes()),
        })
        .insert(Header {
            key: HEADER_WEBHOOK_ID,
            value: Some(d.webhook_id.as_bytes()),
        })
    }
}

#[async_trait::async_trait]
impl Output for Kafka {
    async fn setup(&self) -> Result<(), OutputError> {
        let client = self.client().await?;
        client.check_topic(&self.topic, self.partition).await?;
        tracing::debug!(
            topic = %self.topic,
            idempotent = client.idempotent(),
            "Kafka producer ready"
        );
        Ok(())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let client = self.client().await?;
        let value = record::encode(delivery, self.value)?.bytes;
        let key = self.key.as_ref().map(|k| k.render(delivery));
        let mut rec = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(&value)
            .headers(self.headers(delivery));
        if let Some(k) = &key {
            rec = rec.key(k.as_bytes());
        }
        if let Some(p) = self.partition {
            rec = rec.partition(p);
        }
        let (producer, generation) = client.producer();
        let limit = self.server.message_timeout + QUEUE_TIMEOUT + REPORT_GRACE;
        within(limit, "Kafka delivery report", async {
            match producer.send(rec, QUEUE_TIMEOUT).await {
                Ok(_) => {
                    client.context.clear();
                    Ok(())
                }
                Err((e, _)) => Err(client.classify(&e, generation)),
            }
        })
        .await
    }

    async fn teardown(&self) {
        // librdkafka's destroy blocks (purge, flush, thread joins): let the last user's drop
        // happen off the async workers.
        if let Some(client) = self.client.take() {
            let _ = tokio::task::spawn_blocking(move || drop(client)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record::tests::delivery;

    #[test]
    fn topics_are_checked_without_keyword_prefixes() {
        for ok in [
            "orders",
            "delete-events",
            "a.b_c-D9",
            &"t".repeat(249),
            "...",
        ] {
            assert_eq!(check_topic(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ünï", &"t".repeat(250)] {
            assert!(check_topic(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn key_templates_fill_both_placeholders_and_refuse_others() {
        let d = delivery(b"x");
        let t = KeyTemplate::parse("{webhook_id}:{message_id}").expect("parses");
        assert_eq!(t.render(&d), "orders:msg_1");
        let t = KeyTemplate::parse("k-{ x }-{").expect("literal braces");
        assert_eq!(t.render(&d), "k-{ x }-{");
        let e = KeyTemplate::parse("{uuid}").expect_err("unknown");
        assert!(e.contains("{uuid}"), "{e}");
    }

    #[test]
    fn bootstrap_servers_are_strings_or_lists_of_host_port() {
        assert_eq!(
            parse_bootstrap(&Value::from("a:9092, b:9093")).expect("string"),
            ["a:9092", "b:9093"]
        );
        assert_eq!(
            parse_bootstrap(&serde_json::json!(["[::1]:9092"])).expect("list"),
            ["[::1]:9092"]
        );
        for bad in [
            serde_json::json!("a"),
            serde_json::json!("a:0"),
            serde_json::json!("a:9092,"),
            serde_json::json!("::1:9092"),
            serde_json::json!([1]),
            serde_json::json!(9092),
        ] {
            assert!(parse_bootstrap(&bad).is_err(), "{bad}");
        }
    }

    /// A refused SASL login reaches only the error callback, and sends then time out: while
    /// the refusal is fresh, the timeout is `Unavailable`/`auth`; after a success, `Transient`.
    #[test]
    fn timeouts_after_a_refused_login_are_unavailable() {
        let server = KafkaServer {
            key: "k".into(),
            bootstrap: "127.0.0.1:1".into(),
            security_protocol: "plaintext",
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            client_id: DEFAULT_CLIENT_ID.into(),
            message_timeout: Duration::from_secs(1),
            strict: false,
        };
        let client = server.start().expect("producer");
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(client.classify(&timeout, 0).kind, ErrorKind::Transient);
        client.context.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        let e = client.classify(&timeout, 0);
        assert_eq!(
            (e.kind, e.category),
            (ErrorKind::Unavailable, ErrorCategory::Auth)
        );
        assert!(e.message.contains("invalid credentials"), "{e}");
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(client.classify(&too_large, 0).kind, ErrorKind::Permanent);
        client.context.clear();
        assert_eq!(client.classify(&timeout, 0).kind, ErrorKind::Transient);
    }

    #[test]
    fn error_codes_map_to_the_spec_kinds() {
        use RDKafkaErrorCode as C;
        for (code, kind) in [
            (C::MessageSizeTooLarge, ErrorKind::Permanent),
            (C::InvalidRecord, ErrorKind::Permanent),
            (C::TopicAuthorizationFailed, ErrorKind::Unavailable),
            (C::ClusterAuthorizationFailed, ErrorKind::Unavailable),
            (C::UnknownTopicOrPartition, ErrorKind::Unavailable),
            (C::UnknownTopic, ErrorKind::Unavailable),
            (C::SaslAuthenticationFailed, ErrorKind::Unavailable),
            (C::MessageTimedOut, ErrorKind::Transient),
            (C::NotLeaderForPartition, ErrorKind::Transient),
            (C::LeaderNotAvailable, ErrorKind::Transient),
            (C::NotEnoughReplicas, ErrorKind::Transient),
            (C::AllBrokersDown, ErrorKind::Transient),
            (C::QueueFull, ErrorKind::Transient),
        ] {
            assert_eq!(classify_code(code, "x").kind, kind, "{code:?}");
        }
    }
}
