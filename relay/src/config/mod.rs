//! Loading and validating the relay's configuration (`docs/reference/config-formats.md` §1–§3).
//!
//! Pipeline: read the file (TOML or JSON) into a JSON value → `{$VAR}` substitution → the
//! `WEBHOOK_RELAY_*` and original environment variables → flags actually passed → strict typed
//! structs ([`file::RelayFile`]) → range checks → channels assembled from `[[channels]]` and an
//! original `webhooks.json`. Every problem is collected with its path; warnings are kept apart.

pub mod env;
pub mod file;
pub mod redact;
pub mod settings;
pub mod state_key;
pub mod webhooks_json;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;
use webhook_connect_protocol::DataType;
use webhook_connect_protocol::config_values::{Secret, secret_from_file_text, substitute};
use webhook_connect_protocol::names::{validate_channel_name, validate_webhook_id};

use self::file::{ChannelEntry, RelayFile};
use self::settings::{ChannelOverrides, ChannelSettings};

/// Keys a webhook entry of our own format may hold besides the authentication keys
/// (`docs/reference/config-formats.md` §2.5).
const ENTRY_KEYS: &[&str] = &[
    "data_type",
    "credential_cleanup",
    "strip_consumed_credentials",
];

/// True for a key a webhook entry may hold: an authentication key or an [`ENTRY_KEYS`] one.
pub fn is_inbound_key(key: &str) -> bool {
    ENTRY_KEYS.contains(&key) || crate::auth::AUTH_KEYS.contains(&key)
}

/// Command-line values that override the file and the environment, only when given.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--admin-listen`
    pub admin_listen: Option<String>,
    /// `--buffer`
    pub buffer: Option<String>,
    /// `--webhooks-config`
    pub webhooks_config: Option<String>,
    /// `--admin-token-file`
    pub admin_token_file: Option<String>,
    /// `--log-level`
    pub log_level: Option<String>,
    /// `--log-format`
    pub log_format: Option<String>,
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config` / `WEBHOOK_RELAY_CONFIG`.
    pub config_path: Option<PathBuf>,
    /// Flags actually passed.
    pub flags: FlagOverrides,
    /// The environment (tests pass their own).
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    /// Options from the process environment.
    pub fn from_process_env(config_path: Option<PathBuf>, flags: FlagOverrides) -> Self {
        LoadOptions {
            config_path,
            flags,
            env: std::env::vars().collect(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// The buffer backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// One local file.
    Embedded,
    /// Redis Streams.
    Redis,
    /// RabbitMQ.
    RabbitMq,
}

/// Where a channel definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelSource {
    /// `[[channels]]` or `webhooks.json`.
    Config,
    /// The admin API.
    Admin,
}

/// One webhook id attached to a channel.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    /// The webhook id.
    pub id: String,
    /// How its body is read.
    pub data_type: DataType,
    /// Its inbound settings (authentication keys etc.), substituted.
    pub entry: serde_json::Map<String, Value>,
    /// Path used in error messages (e.g. `webhooks.json: stripe`).
    pub path: String,
}

/// A channel as configured.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    /// Name.
    pub name: String,
    /// Current token.
    pub token: Secret,
    /// Where it is defined.
    pub source: ChannelSource,
    /// Resolved settings.
    pub settings: ChannelSettings,
    /// The settings as given (for admin display and persistence).
    pub overrides: ChannelOverrides,
    /// Attached webhook ids, in attach order.
    pub webhooks: Vec<WebhookSpec>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The effective file values (defaults < file < env < flags).
    pub file: RelayFile,
    /// Chosen buffer backend.
    pub backend: BackendKind,
    /// Admin token (empty: admin API disabled).
    pub admin_token: Secret,
    /// Config-defined channels.
    pub channels: Vec<ChannelSpec>,
    /// The `default` webhook of `webhooks.json`, when present.
    pub default_webhook: Option<(String, WebhookSpec)>,
    /// Warnings found while loading.
    pub warnings: Vec<String>,
}

/// Loading failed; every error (and the warnings found so far) is listed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", errors.join("\n"))]
pub struct ConfigErrors {
    /// One line per problem, each naming its path.
    pub errors: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Deserialises `value` into `T`, naming the failing field path (prefixed by `prefix`).
pub fn deserialize_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        format!("{prefix}{path}: {}", e.into_inner())
    })
}

/// Reads a config file into a JSON value: TOML for `.toml`, JSON for `.json`.
pub fn read_document(path: &Path) -> Result<Value, String> {
    let label = file_label(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{label}: cannot read {}: {e}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| format!("{label}: invalid TOML: {e}"))?;
            serde_json::to_value(table).map_err(|e| format!("{label}: {e}"))
        }
        Some("json") => {
            serde_json::from_str(&text).map_err(|e| format!("{label}: invalid JSON: {e}"))
        }
        _ => Err(format!(
            "{label}: unknown configuration format; use a .toml or .json file"
        )),
    }
}

/// The file name used to prefix messages.
pub fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn read_secret(path: &str, key: &str) -> Result<Secret, String> {
    std::fs::read_to_string(path)
        .map(secret_from_file_text)
        .map_err(|e| format!("{key}: cannot read {path}: {e}"))
}

/// Loads and validates everything.
pub fn load(options: &LoadOptions) -> Result<RelayConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let lookup = |name: &str| {
        options
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };

    // 1–2. File, substituted.
    let (mut doc, label) = match &options.config_path {
        Some(path) => {
            let label = file_label(path);
            match read_document(path) {
                Ok(mut doc) => {
                    if let Err(errs) = substitute(&mut doc, "", &lookup) {
                        errors.extend(errs.iter().map(|e| format!("{label}: {e}")));
                    }
                    (doc, label)
                }
                Err(e) => {
                    return Err(ConfigErrors {
                        errors: vec![e],
                        warnings,
                    });
                }
            }
        }
        None => (Value::Object(Default::default()), "config".to_owned()),
    };
    if !doc.is_object() {
        return Err(ConfigErrors {
            errors: vec![format!("{label}: expected a table at the top level")],
            warnings,
        });
    }

    // 3. Environment, 4. flags; each value they set is blamed on them.
    let mut origins = env::apply(&mut doc, options, &mut errors, &mut warnings);
    origins.extend(apply_flags(&mut doc, &options.flags));
    let blamed_from = errors.len();

    // 5. Typed: every field error, not only the first.
    let file: RelayFile = deserialize_all(doc, &label, &mut errors);

    // 6. Ranges.
    validate_sections(&file, &label, &mut errors);

    // Admin token.
    let admin_token = match (&file.admin.token_file, file.admin.token.is_empty()) {
        (Some(_), false) => {
            errors.push(format!(
                "{label}: admin.token_file: set either admin.token or admin.token_file, not both"
            ));
            Secret::default()
        }
        (Some(path), true) => read_secret(path, "admin.token_file").unwrap_or_else(|e| {
            errors.push(format!("{label}: {e}"));
            Secret::default()
        }),
        (None, _) => file.admin.token.clone(),
    };
    if !admin_token.is_empty() && admin_token.expose().len() < 16 {
        warnings.push("admin.token: shorter than 16 bytes".to_owned());
    }

    // 7. Channels.
    let defaults = file.channel_defaults.clone();
    let mut channels: Vec<ChannelSpec> = Vec::new();
    let mut first_index: std::collections::HashMap<String, usize> = Default::default();
    for (i, raw) in file.channels.iter().enumerate() {
        let path = format!("{label}: channels[{i}]");
        match ChannelEntry::from_map(raw.clone(), &path) {
            Ok(entry) => {
                if let Some(first) = first_index.get(&entry.name) {
                    errors.push(format!(
                        "{path}.name: channel \"{}\" is defined more than once (first in channels[{first}])",
                        entry.name
                    ));
                    continue;
                }
                first_index.insert(entry.name.clone(), i);
                if let Some(spec) =
                    channel_from_entry(entry, &defaults, &file, &path, &mut errors, &mut warnings)
                {
                    channels.push(spec);
                }
            }
            Err(errs) => errors.extend(errs),
        }
    }
    let mut default_webhook = None;
    if !file.ingest.webhooks_file.is_empty() {
        let path = PathBuf::from(&file.ingest.webhooks_file);
        let loaded =
            webhooks_json::load(&path, &lookup, &defaults, &file, &mut errors, &mut warnings);
        for spec in loaded.channels {
            if channels.iter().any(|c| c.name == spec.name) {
                errors.push(format!(
                    "{}: channel \"{}\" is defined both in [[channels]] and in webhooks.json",
                    file_label(&path),
                    spec.name
                ));
            } else {
                channels.push(spec);
            }
        }
        default_webhook = loaded.default_webhook;
    }
    if !file.ingest.connections_file.is_empty() {
        match std::fs::read_to_string(&file.ingest.connections_file) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(_)) => {}
                Ok(_) => errors.push("connections.json: expected a JSON object".to_owned()),
                Err(e) => errors.push(format!("connections.json: invalid JSON: {e}")),
            },
            Err(e) => errors.push(format!(
                "ingest.connections_file: cannot read {}: {e}",
                file.ingest.connections_file
            )),
        }
    }
    check_duplicate_webhooks(&channels, &mut errors);
    // The `default` webhook is built (and so checked) only when it is in use, as at start-up.
    let default_in_use = default_webhook
        .as_ref()
        .filter(|_| file.ingest.allow_default_webhook);
    check_authentication(&file, &channels, default_in_use, &mut errors);
    let webhook_count: usize = channels.iter().map(|c| c.webhooks.len()).sum();
    if webhook_count as u64 > file.limits.max_webhooks {
        errors.push(format!(
            "{label}: limits.max_webhooks: {webhook_count} configured webhooks exceed limits.max_webhooks ({})",
            file.limits.max_webhooks
        ));
    }
    if channels.len() as u64 > file.limits.max_channels {
        errors.push(format!(
            "channels: {} channels exceed limits.max_channels ({})",
            channels.len(),
            file.limits.max_channels
        ));
    }

    // 8. Backend.
    let backend = choose_backend(&file, options).unwrap_or_else(|e| {
        errors.push(e);
        BackendKind::Embedded
    });

    blame(&mut errors[blamed_from..], &label, &origins);
    if errors.is_empty() {
        Ok(RelayConfig {
            file,
            backend,
            admin_token,
            channels,
            default_webhook,
            warnings,
        })
    } else {
        Err(ConfigErrors { errors, warnings })
    }
}

/// Key path → where its value came from (an environment variable or a flag), for the keys
/// not taken from the file.
pub type Origins = std::collections::BTreeMap<String, String>;

fn apply_flags(doc: &mut Value, flags: &FlagOverrides) -> Origins {
    let mut origins = Origins::new();
    let mut set =
        |doc: &mut Value, flag: &str, section: &str, key: &str, value: &Option<String>| {
            if let (Some(v), Some(root)) = (value, doc.as_object_mut()) {
                let entry = root
                    .entry(section)
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(table) = entry.as_object_mut() {
                    table.insert(key.to_owned(), Value::String(v.clone()));
                    origins.insert(format!("{section}.{key}"), flag.to_owned());
                }
            }
        };
    set(doc, "--listen", "server", "listen", &flags.listen);
    set(
        doc,
        "--admin-listen",
        "admin",
        "listen",
        &flags.admin_listen,
    );
    set(doc, "--buffer", "buffer", "backend", &flags.buffer);
    set(
        doc,
        "--webhooks-config",
        "ingest",
        "webhooks_file",
        &flags.webhooks_config,
    );
    set(
        doc,
        "--admin-token-file",
        "admin",
        "token_file",
        &flags.admin_token_file,
    );
    set(doc, "--log-level", "log", "level", &flags.log_level);
    set(doc, "--log-format", "log", "format", &flags.log_format);
    origins
}

/// Rewrites `"{label}: key: …"` as `"{origin}: key: …"` when an environment variable or a flag
/// set `key`, so the message names where the value came from.
fn blame(errors: &mut [String], label: &str, origins: &Origins) {
    let prefix = format!("{label}: ");
    for error in errors {
        let Some(rest) = error.strip_prefix(&prefix) else {
            continue;
        };
        let key = rest.split(": ").next().unwrap_or_default();
        let key = key.split('[').next().unwrap_or_default();
        let origin = origins
            .iter()
            .find(|(path, _)| key == path.as_str() || key.starts_with(&format!("{path}.")));
        if let Some((_, origin)) = origin {
            *error = format!("{origin}: {rest}");
        }
    }
}

/// Deserialises the relay file, collecting every field error: a failing field is reported and
/// removed (so its default applies) and deserialisation tried again.
fn deserialize_all(mut doc: Value, label: &str, errors: &mut Vec<String>) -> RelayFile {
    // Each round removes one value, so this ends; the bound guards against a path that
    // cannot be removed.
    for _ in 0..256 {
        match serde_path_to_error::deserialize::<_, RelayFile>(doc.clone()) {
            Ok(file) => return file,
            Err(e) => {
                let path = e.path().to_string();
                let removed = remove_path(&mut doc, e.path());
                let shown = if path == "." { String::new() } else { path };
                errors.push(format!("{label}: {shown}: {}", e.into_inner()));
                if !removed {
                    break;
                }
            }
        }
    }
    RelayFile::default()
}

/// Removes the value at `path` from `doc`; false when there is none.
fn remove_path(doc: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = doc;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Map { key }, Value::Object(map)) => map.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// The options every webhook's authentication is built with (here to validate, and at
/// start-up and by the admin API to run).
pub fn auth_build_options(
    file: &RelayFile,
    trusted: &crate::auth::TrustedProxies,
) -> crate::auth::AuthBuildOptions {
    crate::auth::AuthBuildOptions {
        server_trusted_proxies: trusted.clone(),
        nonce_cache_size: usize::try_from(file.limits.nonce_cache_size).unwrap_or(usize::MAX),
        rate_limiter_max_keys: usize::try_from(file.limits.rate_limiter_max_keys)
            .unwrap_or(usize::MAX),
        strip_consumed_credentials: file.ingest.strip_consumed_credentials,
    }
}

/// Builds the authentication of every webhook as the relay will run it, so whatever the relay
/// would refuse at start-up (unknown preset, empty secret, JWT `none`, an introspection URL on
/// loopback, …) is a configuration error here.
fn check_authentication(
    file: &RelayFile,
    channels: &[ChannelSpec],
    default_webhook: Option<&(String, WebhookSpec)>,
    errors: &mut Vec<String>,
) {
    let trusted =
        crate::auth::TrustedProxies::parse(&file.server.trusted_proxies).unwrap_or_default();
    let options = auth_build_options(file, &trusted);
    let webhooks = channels
        .iter()
        .flat_map(|c| c.webhooks.iter())
        .chain(default_webhook.map(|(_, w)| w));
    for webhook in webhooks {
        if let Err(e) =
            crate::auth::WebhookAuth::from_entry(&webhook.entry, &webhook.path, &options)
        {
            errors.extend(e);
        }
    }
}

fn range(errors: &mut Vec<String>, label: &str, key: &str, v: u64, min: u64, max: u64) {
    if !(min..=max).contains(&v) {
        errors.push(format!(
            "{label}: {key}: must be between {min} and {max}, got {v}"
        ));
    }
}

/// `buffer.redis.cluster_nodes`: valid node URLs, and not beside a `url` of its own (the
/// default `url` is not one).
fn check_cluster_nodes(errors: &mut Vec<String>, label: &str, r: &file::RedisSection) {
    if r.cluster_nodes.is_empty() {
        return;
    }
    if r.url.expose() != file::DEFAULT_REDIS_URL {
        errors.push(format!(
            "{label}: buffer.redis: set either url (one server) or cluster_nodes (a Redis Cluster), not both"
        ));
    }
    let nodes = r.cluster_node_urls();
    if let Err(e) = webhook_connect_buffer::redis::connection::Endpoint::open("", &nodes) {
        errors.push(format!("{label}: buffer.redis.cluster_nodes: {e}"));
    }
}

fn one_of(errors: &mut Vec<String>, label: &str, key: &str, v: &str, allowed: &[&str]) {
    if !allowed.contains(&v) {
        errors.push(format!(
            "{label}: {key}: must be one of {}, got \"{v}\"",
            allowed.join(", ")
        ));
    }
}

fn validate_sections(f: &RelayFile, label: &str, errors: &mut Vec<String>) {
    let s = &f.server;
    if s.listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(format!(
            "{label}: server.listen: invalid socket address \"{}\"",
            s.listen
        ));
    }
    for (key, value) in [
        ("admin.listen", &f.admin.listen),
        ("metrics.listen", &f.metrics.listen),
    ] {
        if !value.is_empty() && value.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!(
                "{label}: {key}: invalid socket address \"{value}\""
            ));
        }
    }
    for (i, p) in s.trusted_proxies.iter().enumerate() {
        if let Err(e) = settings::parse_ip_net(p) {
            errors.push(format!("{label}: server.trusted_proxies[{i}]: {e}"));
        }
    }
    range(
        errors,
        label,
        "server.max_body_bytes",
        s.max_body_bytes,
        1,
        104_857_600,
    );
    range(
        errors,
        label,
        "server.body_read_timeout_seconds",
        s.body_read_timeout_seconds,
        1,
        300,
    );
    range(
        errors,
        label,
        "server.header_read_timeout_seconds",
        s.header_read_timeout_seconds,
        1,
        300,
    );
    range(
        errors,
        label,
        "server.listen_backlog",
        s.listen_backlog,
        1,
        65_535,
    );
    range(
        errors,
        label,
        "server.max_header_count",
        s.max_header_count,
        1,
        1000,
    );
    range(
        errors,
        label,
        "server.max_header_bytes",
        s.max_header_bytes,
        1024,
        65_536,
    );
    range(
        errors,
        label,
        "server.max_json_depth",
        s.max_json_depth,
        1,
        1000,
    );
    range(
        errors,
        label,
        "server.max_string_length",
        s.max_string_length,
        1,
        u64::MAX,
    );
    range(
        errors,
        label,
        "server.shutdown_grace_seconds",
        s.shutdown_grace_seconds,
        0,
        300,
    );
    if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
        errors.push(format!(
            "{label}: server.tls_cert_file: set both tls_cert_file and tls_key_file, or neither"
        ));
    }
    if let (Some(cert), Some(key)) = (&s.tls_cert_file, &s.tls_key_file)
        && let Err(e) = crate::tls::acceptor(cert, key)
    {
        errors.push(format!("{label}: {e}"));
    }
    range(
        errors,
        label,
        "admin.max_failed_auth_per_minute",
        f.admin.max_failed_auth_per_minute,
        1,
        1000,
    );
    let b = &f.buffer;
    if let Some(backend) = &b.backend {
        one_of(
            errors,
            label,
            "buffer.backend",
            backend,
            &["embedded", "redis", "rabbitmq"],
        );
    }
    range(
        errors,
        label,
        "buffer.sweep_interval_seconds",
        b.sweep_interval_seconds,
        1,
        3600,
    );
    range(
        errors,
        label,
        "buffer.embedded.commit_max_delay_ms",
        b.embedded.commit_max_delay_ms,
        0,
        100,
    );
    range(
        errors,
        label,
        "buffer.redis.pool_size",
        b.redis.pool_size,
        1,
        256,
    );
    range(
        errors,
        label,
        "buffer.redis.operation_timeout_ms",
        b.redis.operation_timeout_ms,
        100,
        60_000,
    );
    range(
        errors,
        label,
        "buffer.rabbitmq.prefetch",
        b.rabbitmq.prefetch,
        1,
        65_535,
    );
    range(
        errors,
        label,
        "buffer.rabbitmq.operation_timeout_ms",
        b.rabbitmq.operation_timeout_ms,
        100,
        60_000,
    );
    range(
        errors,
        label,
        "buffer.redis.wait_replicas",
        b.redis.wait_replicas,
        0,
        16,
    );
    check_cluster_nodes(errors, label, &b.redis);
    let prefix_ok = webhook_connect_buffer::redis::valid_prefix;
    if !prefix_ok(&b.redis.key_prefix) {
        errors.push(format!(
            "{label}: buffer.redis.key_prefix: must match ^[A-Za-z0-9_.-]{{1,64}}$"
        ));
    }
    if !prefix_ok(&b.rabbitmq.exchange) {
        errors.push(format!(
            "{label}: buffer.rabbitmq.exchange: must match ^[A-Za-z0-9_.-]{{1,64}}$"
        ));
    }
    let amqp = b.rabbitmq.url.expose();
    if !(amqp.starts_with("amqp://") || amqp.starts_with("amqps://")) {
        errors.push(format!(
            "{label}: buffer.rabbitmq.url: must be an amqp:// or amqps:// URL"
        ));
    }
    if !prefix_ok(&f.state.key_prefix) {
        errors.push(format!(
            "{label}: state.key_prefix: must match ^[A-Za-z0-9_.-]{{1,64}}$"
        ));
    }
    if !f.state.encryption_key_file.is_empty()
        && let Err(e) = state_key::read_key(&f.state.encryption_key_file)
    {
        errors.push(format!("{label}: {e}"));
    }
    if !f.state.redis_url.is_empty() && ::redis::Client::open(f.state.redis_url.expose()).is_err() {
        errors.push(format!("{label}: state.redis_url: not a valid Redis URL"));
    }
    one_of(
        errors,
        label,
        "state.backend",
        &f.state.backend,
        &["auto", "embedded", "redis"],
    );
    range(
        errors,
        label,
        "ingest.queue_full_retry_after_seconds",
        f.ingest.queue_full_retry_after_seconds,
        1,
        3600,
    );
    one_of(
        errors,
        label,
        "ingest.unsupported_modules",
        &f.ingest.unsupported_modules,
        &["warn", "error"],
    );
    let st = &f.streaming;
    range(
        errors,
        label,
        "streaming.max_client_frame_bytes",
        st.max_client_frame_bytes,
        1024,
        16_777_216,
    );
    range(
        errors,
        label,
        "streaming.sse_retry_ms",
        st.sse_retry_ms,
        0,
        600_000,
    );
    range(
        errors,
        label,
        "streaming.long_poll_linger_ms",
        st.long_poll_linger_ms,
        0,
        1000,
    );
    range(
        errors,
        label,
        "streaming.stale_multiplier",
        st.stale_multiplier,
        2,
        10,
    );
    range(
        errors,
        label,
        "streaming.max_malformed_frames_per_minute",
        st.max_malformed_frames_per_minute,
        1,
        10_000,
    );
    range(
        errors,
        label,
        "trace.max_messages_per_channel",
        f.trace.max_messages_per_channel,
        0,
        1_000_000,
    );
    range(
        errors,
        label,
        "trace.max_age_seconds",
        f.trace.max_age_seconds,
        60,
        2_592_000,
    );
    for (key, v) in [
        ("limits.max_channels", f.limits.max_channels),
        ("limits.max_webhooks", f.limits.max_webhooks),
        (
            "limits.max_connections_total",
            f.limits.max_connections_total,
        ),
        (
            "limits.rate_limiter_max_keys",
            f.limits.rate_limiter_max_keys,
        ),
        ("limits.nonce_cache_size", f.limits.nonce_cache_size),
    ] {
        range(errors, label, key, v, 1, u64::MAX);
    }
    if f.limits.max_stream_connections > f.limits.max_connections_total {
        errors.push(format!(
            "{label}: limits.max_stream_connections: {} is more than limits.max_connections_total ({})",
            f.limits.max_stream_connections, f.limits.max_connections_total
        ));
    }
    // Room for at least one body of the largest allowed size.
    range(
        errors,
        label,
        "limits.max_inflight_body_bytes",
        f.limits.max_inflight_body_bytes,
        s.max_body_bytes,
        68_719_476_736,
    );
    one_of(
        errors,
        label,
        "log.level",
        &f.log.level,
        &["trace", "debug", "info", "warn", "error"],
    );
    one_of(
        errors,
        label,
        "log.format",
        &f.log.format,
        &["text", "json"],
    );
    errors.extend(
        f.channel_defaults
            .validate("channel_defaults.", s.max_body_bytes)
            .into_iter()
            .map(|e| format!("{label}: {e}")),
    );
    if !f.metrics.listen.is_empty() && f.metrics.listen == f.server.listen {
        errors.push(format!(
            "{label}: metrics.listen: must differ from server.listen (leave it empty to serve /metrics on the main listener)"
        ));
    }
}

/// A channel definition given as JSON (admin `POST /channels`, or one stored by it), checked
/// like a `[[channels]]` entry. Errors are `"<field path>: <problem>"`.
pub fn channel_spec_from_json(
    map: serde_json::Map<String, Value>,
    file: &RelayFile,
) -> Result<(ChannelSpec, Vec<String>), Vec<String>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let entry = ChannelEntry::from_map(map, "").map_err(strip_root)?;
    let spec = channel_from_entry(
        entry,
        &file.channel_defaults,
        file,
        "",
        &mut errors,
        &mut warnings,
    );
    match spec {
        Some(spec) if errors.is_empty() => Ok((spec, warnings)),
        _ => Err(strip_root(errors)),
    }
}

fn strip_root(errors: Vec<String>) -> Vec<String> {
    errors
        .into_iter()
        .map(|e| e.strip_prefix('.').map(str::to_owned).unwrap_or(e))
        .collect()
}

fn channel_from_entry(
    entry: ChannelEntry,
    defaults: &ChannelOverrides,
    file: &RelayFile,
    path: &str,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<ChannelSpec> {
    let before = errors.len();
    if let Err(e) = validate_channel_name(&entry.name) {
        errors.push(format!("{path}.name: {e}"));
    }
    let token = match (entry.token, entry.token_file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "{path}.token_file: set either token or token_file, not both"
            ));
            None
        }
        (Some(t), None) => Some(t),
        (None, Some(file_path)) => read_secret(&file_path, &format!("{path}.token_file"))
            .map_err(|e| errors.push(e))
            .ok(),
        (None, None) => {
            errors.push(format!(
                "{path}.token: missing field (set token or token_file)"
            ));
            None
        }
    };
    if let Some(t) = &token {
        if t.is_empty() {
            errors.push(format!("{path}.token: must not be empty"));
        } else if t.expose().len() < 16 {
            warnings.push(format!("{path}.token: shorter than 16 bytes"));
        }
    }
    let overrides = entry.settings.over(defaults);
    let settings = overrides
        .resolve(&format!("{path}."), file.server.max_body_bytes)
        .map_err(|e| errors.extend(e))
        .ok();
    let mut webhooks = Vec::new();
    for (id, map) in entry.webhooks {
        let wpath = format!("{path}.webhooks.{id}");
        if let Err(e) = validate_webhook_id(&id) {
            errors.push(format!("{wpath}: {e}"));
            continue;
        }
        for key in map.keys() {
            if !is_inbound_key(key) {
                errors.push(format!("{wpath}.{key}: unknown key"));
            }
        }
        if let Some(data_type) = parse_data_type(&map, &wpath, errors) {
            webhooks.push(WebhookSpec {
                id,
                data_type,
                entry: map,
                path: wpath,
            });
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(ChannelSpec {
        name: entry.name,
        token: token?,
        source: ChannelSource::Config,
        settings: settings?,
        overrides: entry.settings,
        webhooks,
    })
}

/// Reads `data_type` (`json` default, or `blob`).
pub fn parse_data_type(
    map: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
) -> Option<DataType> {
    match map.get("data_type") {
        None | Some(Value::Null) => Some(DataType::Json),
        Some(Value::String(s)) if s == "json" => Some(DataType::Json),
        Some(Value::String(s)) if s == "blob" => Some(DataType::Blob),
        Some(other) => {
            errors.push(format!(
                "{path}.data_type: must be \"json\" or \"blob\", got {other}"
            ));
            None
        }
    }
}

fn check_duplicate_webhooks(channels: &[ChannelSpec], errors: &mut Vec<String>) {
    let mut seen: std::collections::HashMap<&str, &str> = Default::default();
    for c in channels {
        for w in &c.webhooks {
            if let Some(other) = seen.insert(w.id.as_str(), c.name.as_str()) {
                errors.push(format!(
                    "{}: webhook id \"{}\" is attached to both channel \"{}\" and channel \"{}\"",
                    w.path, w.id, other, c.name
                ));
            }
        }
    }
}

fn choose_backend(file: &RelayFile, options: &LoadOptions) -> Result<BackendKind, String> {
    let explicit = file
        .buffer
        .backend
        .clone()
        .or_else(|| options.var("WEBHOOK_CONNECT_BUFFER").map(str::to_owned));
    if let Some(b) = explicit {
        return match b.as_str() {
            "embedded" => Ok(BackendKind::Embedded),
            "redis" => Ok(BackendKind::Redis),
            "rabbitmq" => Ok(BackendKind::RabbitMq),
            other => Err(format!(
                "buffer.backend: must be one of embedded, redis, rabbitmq, got \"{other}\""
            )),
        };
    }
    match (
        options.var("WEBHOOK_CONNECT_REDIS_URL").is_some(),
        options.var("WEBHOOK_CONNECT_RABBITMQ_URL").is_some(),
    ) {
        (true, true) => Err("buffer.backend: both WEBHOOK_CONNECT_REDIS_URL and WEBHOOK_CONNECT_RABBITMQ_URL are set; set buffer.backend".to_owned()),
        (true, false) => Ok(BackendKind::Redis),
        (false, true) => Ok(BackendKind::RabbitMq),
        (false, false) => Ok(BackendKind::Embedded),
    }
}

#[cfg(test)]
mod tests;
