//! Loading: file (substituted once) < `CONNECTOR_*` environment < flags actually passed, then one
//! validation pass that reports every problem with its source and field path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::{Secret, substitute};
use webhook_connect_protocol::names::validate_channel_name;

use super::{
    BodyMode, ChannelConfig, CompletionRecordConfig, ConnectorConfig, DEFAULT_MAX_MESSAGE_SIZE,
    Flags, ForwardHeaders, LogFormat, MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE, Protocol,
    ReconnectPolicy, TargetConfig, TlsConfig, TokenSource, VersionPreference,
};
use crate::pipeline::config::{self as modules, ModuleModeConfig};
use crate::settings::Problems;
use crate::settings::reader::{Origins, Reader, join};

/// The configuration could not be loaded; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Problems);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.errors.join("\n"))
    }
}

/// Environment variables of the original and ours, mapped to top-level keys (§4.5).
const ENV_KEYS: &[(&str, &str)] = &[
    ("CONNECTOR_CLOUD_URL", "cloud_url"),
    ("CONNECTOR_CHANNEL", "channel"),
    ("CONNECTOR_TOKEN", "token"),
    ("CONNECTOR_TOKEN_FILE", "token_file"),
    ("CONNECTOR_PROTOCOL", "protocol"),
    ("CONNECTOR_PROTOCOL_VERSION", "protocol_version"),
    ("CONNECTOR_RECONNECT_DELAY", "reconnect_delay"),
    ("CONNECTOR_MAX_RECONNECT_DELAY", "max_reconnect_delay"),
    (
        "CONNECTOR_RECONNECT_BACKOFF_MULTIPLIER",
        "reconnect_backoff_multiplier",
    ),
    ("CONNECTOR_HEARTBEAT_TIMEOUT", "heartbeat_timeout"),
    ("CONNECTOR_CONNECTION_TIMEOUT", "connection_timeout"),
    (
        "CONNECTOR_MAX_CONCURRENT_REQUESTS",
        "max_concurrent_requests",
    ),
    ("CONNECTOR_ACK_TIMEOUT", "ack_timeout"),
    ("CONNECTOR_LOG_LEVEL", "log_level"),
    ("CONNECTOR_LOG_FORMAT", "log_format"),
    ("CONNECTOR_VERIFY_SSL", "verify_ssl"),
    ("CONNECTOR_CA_CERT_PATH", "ca_cert_path"),
    ("CONNECTOR_CLIENT_CERT_PATH", "client_cert_path"),
    ("CONNECTOR_CLIENT_KEY_PATH", "client_key_path"),
    ("CONNECTOR_ID", "connector_id"),
    ("CONNECTOR_WEBHOOKS_CONFIG", "webhooks_config"),
    ("CONNECTOR_CONNECTIONS_CONFIG", "connections_config"),
    ("CONNECTOR_ETCD_HOST", "etcd_host"),
    ("CONNECTOR_ETCD_PORT", "etcd_port"),
    ("CONNECTOR_ETCD_PREFIX", "etcd_prefix"),
    ("CONNECTOR_NAMESPACE", "namespace"),
    ("CONNECTOR_PROXY", "proxy"),
    ("CONNECTOR_HEALTH_LISTEN", "health_listen"),
    ("CONNECTOR_DRAIN_TIMEOUT", "drain_timeout"),
    ("CONNECTOR_MAX_MESSAGE_SIZE", "max_message_size"),
    ("CONNECTOR_EXIT_ON_STALE_SECONDS", "exit_on_stale_seconds"),
    ("CONNECTOR_OUTBOUND_POLICY", "outbound_policy"),
];

const TARGET_ENV_KEYS: &[(&str, &str)] = &[
    ("CONNECTOR_TARGET_URL", "url"),
    ("CONNECTOR_TARGET_METHOD", "method"),
    ("CONNECTOR_TARGET_TIMEOUT", "timeout_seconds"),
];

/// Loads the configuration from the process environment and the given flags.
pub fn load(flags: &Flags) -> Result<(ConnectorConfig, Problems), ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    load_with_env(flags, &env)
}

/// Like [`load`] with an explicit environment lookup (tests).
pub fn load_with_env(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(ConnectorConfig, Problems), ConfigError> {
    load_layers(flags, env).map(|(config, problems, _)| (config, problems))
}

/// What `print-config` prints: loads and validates exactly as [`load`] (so it fails with the
/// same problems), then the redacted view of the result ([`super::redact::printable`]).
pub fn load_printable(flags: &Flags) -> Result<(Value, Problems), ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    let (config, problems, document) = load_layers(flags, &env)?;
    Ok((super::redact::printable(&document, &config), problems))
}

/// Loads the layers, validates them, and also returns the document they made.
fn load_layers(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(ConnectorConfig, Problems, Map<String, Value>), ConfigError> {
    let mut problems = Problems::default();
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let path = flags
        .config
        .clone()
        .or_else(|| set("CONNECTOR_CONFIG").map(PathBuf::from));
    let mut origins = Origins {
        default_source: "config".into(),
        by_path: HashMap::new(),
        asked: None,
    };
    let mut root = match &path {
        Some(path) => {
            origins.default_source = path.display().to_string();
            match read_file(path, env) {
                Ok(map) => map,
                Err(errors) => {
                    problems.errors.extend(errors);
                    return Err(ConfigError(problems));
                }
            }
        }
        None => Map::new(),
    };

    let has_channels = root.contains_key("channels");
    // Environment layer.
    for (var, key) in ENV_KEYS {
        if let Some(value) = set(var) {
            if has_channels && matches!(*key, "channel" | "token" | "token_file") {
                problems.error(format!(
                    "env {var}: not allowed when the file lists `channels`"
                ));
                continue;
            }
            override_key(
                &mut root,
                &mut origins,
                key,
                Value::String(value),
                &format!("env {var}"),
            );
        }
    }
    for (var, key) in TARGET_ENV_KEYS {
        if let Some(value) = set(var) {
            override_target_key(&mut root, &mut origins, key, value, &format!("env {var}"));
        }
    }
    // Flag layer: only flags actually given.
    for (key, value, flag) in flags.overrides() {
        if has_channels && matches!(key, "channel" | "token" | "token_file") {
            problems.error(format!(
                "{flag}: not allowed when the file lists `channels`"
            ));
            continue;
        }
        override_key(&mut root, &mut origins, key, value, flag);
    }
    if let Some(url) = &flags.target_url {
        override_target_key(&mut root, &mut origins, "url", url.clone(), "--target-url");
    }
    if flags.token.is_some() {
        problems
            .warn("--token: command lines are visible to other users; prefer --token-file".into());
    }

    let config = validate(&root, &origins, &mut problems, env);
    match config {
        Some(config) if problems.is_ok() => Ok((config, problems, root)),
        _ => Err(ConfigError(problems)),
    }
}

/// Validates an already-substituted document (tests, embedding).
pub fn load_from_value(document: Value) -> Result<(ConnectorConfig, Problems), ConfigError> {
    let mut problems = Problems::default();
    let Value::Object(root) = document else {
        problems.error("config: the top level must be an object".into());
        return Err(ConfigError(problems));
    };
    let origins = Origins {
        default_source: "config".into(),
        by_path: HashMap::new(),
        asked: None,
    };
    let env = |name: &str| std::env::var(name).ok();
    match validate(&root, &origins, &mut problems, &env) {
        Some(config) if problems.is_ok() => Ok((config, problems)),
        _ => Err(ConfigError(problems)),
    }
}

/// Every key the loader reads, as paths: top-level keys (`cloud_url`), keys of a `channels`
/// entry (`channels[].token`), of a target object wherever one may stand
/// (`default_target.url`, `targets.*.url`, `channels[].targets.*.url`) and of
/// `completion_record`. Found by running the validation over documents that hold every
/// object once and recording what it asks for, so a key added to the code shows up here without
/// being listed by hand (the configuration reference is tested against it).
pub fn known_keys() -> BTreeSet<String> {
    let target = serde_json::json!({"url": "http://127.0.0.1:9/hook"});
    let single = serde_json::json!({
        "cloud_url": "http://127.0.0.1:9", "channel": "c", "token": "t",
        "default_target": target, "targets": {"w": target}, "completion_record": {},
    });
    let several = serde_json::json!({
        "cloud_url": "http://127.0.0.1:9",
        "channels": [{"channel": "c", "token": "t", "default_target": target,
                      "targets": {"w": target}}],
    });
    let mut keys = BTreeSet::new();
    for document in [single, several] {
        let Value::Object(root) = document else {
            continue;
        };
        let origins = Origins {
            default_source: "config".into(),
            by_path: HashMap::new(),
            asked: Some(std::sync::Mutex::new(BTreeSet::new())),
        };
        let _ = validate(&root, &origins, &mut Problems::default(), &|_| None);
        if let Some(Ok(asked)) = origins.asked.map(std::sync::Mutex::into_inner) {
            keys.extend(asked.into_iter().map(|path| {
                path.replace("channels[0]", "channels[]")
                    .replace("targets.w.", "targets.*.")
            }));
        }
    }
    keys
}

/// The environment variables the loader reads, each with the key it sets: top-level keys
/// (`CONNECTOR_CLOUD_URL` → `cloud_url`) and those of the default target
/// (`CONNECTOR_TARGET_URL` → `default_target.url`).
pub fn environment_variables() -> Vec<(&'static str, String)> {
    ENV_KEYS
        .iter()
        .map(|(var, key)| (*var, (*key).to_owned()))
        .chain(
            TARGET_ENV_KEYS
                .iter()
                .map(|(var, key)| (*var, format!("default_target.{key}"))),
        )
        .collect()
}

fn read_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Map<String, Value>, Vec<String>> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{label}: cannot read the configuration file: {e}")])?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut value: Value = match ext.as_str() {
        "toml" => toml::from_str::<toml::Value>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
            .map_err(|e| vec![format!("{label}: invalid TOML: {e}")])?,
        "yaml" | "yml" => serde_norway::from_str::<Value>(&text)
            .map_err(|e| vec![format!("{label}: invalid YAML: {e}")])?,
        _ => {
            serde_json::from_str(&text).map_err(|e| vec![format!("{label}: invalid JSON: {e}")])?
        }
    };
    substitute(&mut value, "", env).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("{label}: {e}"))
            .collect::<Vec<_>>()
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(vec![format!("{label}: the top level must be an object")]),
    }
}

fn override_key(
    root: &mut Map<String, Value>,
    origins: &mut Origins,
    key: &str,
    value: Value,
    source: &str,
) {
    // `token` and `token_file` of a higher layer replace each other rather than conflicting.
    let other = match key {
        "token" => Some("token_file"),
        "token_file" => Some("token"),
        _ => None,
    };
    if let Some(other) = other {
        root.remove(other);
    }
    root.insert(key.to_owned(), value);
    origins.by_path.insert(key.to_owned(), source.to_owned());
}

fn override_target_key(
    root: &mut Map<String, Value>,
    origins: &mut Origins,
    key: &str,
    value: String,
    source: &str,
) {
    let target = root
        .entry("default_target")
        .or_insert_with(|| Value::Object(Map::new()));
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        t.insert(key.to_owned(), Value::String(value));
    }
    origins
        .by_path
        .insert(format!("default_target.{key}"), source.to_owned());
}

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n.max(0.0))
}

/// Channel-level settings that have top-level defaults (§4.3).
#[derive(Clone)]
struct ChannelDefaults {
    protocol: Protocol,
    protocol_version: VersionPreference,
    connector_id: Option<String>,
    max_concurrent_requests: usize,
    default_target: Option<TargetConfig>,
    targets: BTreeMap<String, TargetConfig>,
    webhooks_config: Option<String>,
    connections_config: Option<String>,
}

fn validate(
    root: &Map<String, Value>,
    origins: &Origins,
    p: &mut Problems,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ConnectorConfig> {
    let mut r = Reader::new(root, String::new(), origins);

    let cloud_url = match r.string(p, "cloud_url") {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Some(url.trim_end_matches('/').to_owned())
        }
        Some(url) => {
            r.error(
                p,
                "cloud_url",
                format!("must start with http:// or https://, got {url:?}"),
            );
            None
        }
        None => {
            r.error(p, "cloud_url", "missing field");
            None
        }
    };

    let reconnect_delay = r.number_in(p, "reconnect_delay", 1.0, |n| n > 0.0, "> 0");
    let max_reconnect_delay = r.number_in(p, "max_reconnect_delay", 60.0, |n| n > 0.0, "> 0");
    if max_reconnect_delay < reconnect_delay {
        r.error(
            p,
            "max_reconnect_delay",
            format!("must be ≥ reconnect_delay ({reconnect_delay}), got {max_reconnect_delay}"),
        );
    }
    let multiplier = r.number_in(
        p,
        "reconnect_backoff_multiplier",
        2.0,
        |n| (1.0..=10.0).contains(&n),
        "between 1 and 10",
    );
    let heartbeat_timeout = r.number_in(p, "heartbeat_timeout", 60.0, |n| n > 0.0, "> 0");
    let connection_timeout = r.number_in(p, "connection_timeout", 30.0, |n| n > 0.0, "> 0");
    let ack_timeout = r.number_in(p, "ack_timeout", 30.0, |n| n > 0.0, "> 0");
    let log_level = match r.string(p, "log_level") {
        None => "info".to_owned(),
        Some(level) => match level.to_ascii_uppercase().as_str() {
            "TRACE" => "trace".into(),
            "DEBUG" => "debug".into(),
            "INFO" => "info".into(),
            "WARNING" | "WARN" => "warn".into(),
            "ERROR" | "CRITICAL" => "error".into(),
            _ => {
                r.error(
                    p,
                    "log_level",
                    format!("must be TRACE, DEBUG, INFO, WARNING or ERROR, got {level:?}"),
                );
                "info".into()
            }
        },
    };
    let log_format = match r.string(p, "log_format").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            p.warn(format!(
                "{}: log_format: Python logging formats are ignored; using text",
                origins.source_of("log_format")
            ));
            LogFormat::Text
        }
    };
    let verify = r.boolean(p, "verify_ssl", true);
    let ca_cert_path = r.string(p, "ca_cert_path").map(PathBuf::from);
    let mut tls_readable = true;
    if let Some(ca) = &ca_cert_path
        && let Err(e) = std::fs::metadata(ca)
    {
        tls_readable = false;
        r.error(
            p,
            "ca_cert_path",
            format!("cannot read {}: {e}", ca.display()),
        );
    }
    let cert = r.string(p, "client_cert_path").map(PathBuf::from);
    let key = r.string(p, "client_key_path").map(PathBuf::from);
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            r.error(
                p,
                "client_key_path",
                "missing field (client_cert_path is set)",
            );
            None
        }
        (None, Some(_)) => {
            r.error(
                p,
                "client_cert_path",
                "missing field (client_key_path is set)",
            );
            None
        }
    };
    let proxy = r.string(p, "proxy");
    if let Some(proxy) = &proxy
        && !["http://", "https://", "socks5://", "socks5h://"]
            .iter()
            .any(|s| proxy.starts_with(s))
    {
        r.error(
            p,
            "proxy",
            "must be an http://, https://, socks5:// or socks5h:// URL",
        );
    }
    let no_proxy = match r.get("no_proxy") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_owned()).collect(),
        Some(other) => {
            r.error(
                p,
                "no_proxy",
                format!("expected a list of host patterns, got {other}"),
            );
            Vec::new()
        }
    };
    let health_listen = match r.string(p, "health_listen") {
        None => None,
        Some(addr) => match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.error(
                    p,
                    "health_listen",
                    format!("not a socket address: {addr:?}"),
                );
                None
            }
        },
    };
    let drain_timeout = r.number_in(p, "drain_timeout", 30.0, |n| n >= 0.0, "≥ 0");
    let max_message_size = r.integer_in(
        p,
        "max_message_size",
        DEFAULT_MAX_MESSAGE_SIZE as i64,
        MIN_MESSAGE_SIZE as i64,
        MAX_MESSAGE_SIZE as i64,
    ) as u64;
    let exit_on_stale = r.number(p, "exit_on_stale_seconds").and_then(|n| {
        if n > 0.0 {
            Some(secs(n))
        } else {
            r.error(p, "exit_on_stale_seconds", format!("must be > 0, got {n}"));
            None
        }
    });
    let strict = match r.string(p, "outbound_policy").as_deref() {
        None | Some("permissive") => false,
        Some("strict") => true,
        Some(_) => {
            r.error(p, "outbound_policy", "must be \"permissive\" or \"strict\"");
            false
        }
    };
    let completion_record = match r.object(p, "completion_record") {
        None => CompletionRecordConfig::default(),
        Some(map) => {
            let mut c = Reader::new(map, "completion_record".into(), origins);
            let capacity = c.integer_in(p, "capacity", 10_000, 100, 10_000_000) as usize;
            let ttl = c.integer_in(p, "ttl_seconds", 86_400, 60, 2_592_000) as u64;
            let path = c.string(p, "path").map(PathBuf::from);
            c.finish(p, true);
            CompletionRecordConfig {
                capacity,
                ttl: Duration::from_secs(ttl),
                path,
            }
        }
    };
    if r.get("etcd_host").is_some() {
        r.error(
            p,
            "etcd_host",
            "etcd mode needs a build with the `etcd` feature",
        );
    }
    for key in ["etcd_port", "etcd_prefix", "namespace"] {
        r.get(key);
    }

    // Channel defaults from the top level.
    let defaults = channel_settings(&mut r, p, None, origins, strict);
    let channel_list = r.get("channels");
    let top_channel = r.string(p, "channel");
    let top_token = token_source(&mut r, p);

    let mut channels = Vec::new();
    match channel_list {
        Some(Value::Array(entries)) => {
            if top_channel.is_some() {
                r.error(p, "channel", "must not be set together with `channels`");
            }
            if top_token.is_some() {
                r.error(p, "token", "must not be set together with `channels`");
            }
            if entries.is_empty() {
                r.error(p, "channels", "must list at least one channel");
            }
            for (i, entry) in entries.iter().enumerate() {
                let path = format!("channels[{i}]");
                let Value::Object(map) = entry else {
                    p.error(format!(
                        "{}: {path}: expected an object",
                        origins.source_of(&path)
                    ));
                    continue;
                };
                let mut c = Reader::new(map, path.clone(), origins);
                let name = c.string(p, "channel");
                let token = token_source(&mut c, p);
                let settings = channel_settings(&mut c, p, Some(&defaults), origins, strict);
                c.finish(p, true);
                match (name, token) {
                    (Some(name), Some(token)) => {
                        if let Err(e) = validate_channel_name(&name) {
                            c.error(p, "channel", e.to_string());
                        }
                        if channels.iter().any(|ch: &ChannelConfig| ch.channel == name) {
                            c.error(p, "channel", format!("channel {name:?} is listed twice"));
                        }
                        let ctx = ModeContext {
                            strict,
                            env,
                            completion: &completion_record,
                        };
                        let modules = check_mode(&c, p, &settings, &ctx);
                        channels.push(build_channel(name, token, settings, modules));
                    }
                    (name, token) => {
                        if name.is_none() {
                            c.error(p, "channel", "missing field");
                        }
                        if token.is_none() {
                            c.error(p, "token", "missing field (or token_file)");
                        }
                    }
                }
            }
        }
        Some(other) => r.error(p, "channels", format!("expected a list, got {other}")),
        None => match (top_channel, top_token) {
            (Some(name), Some(token)) => {
                if let Err(e) = validate_channel_name(&name) {
                    r.error(p, "channel", e.to_string());
                }
                let ctx = ModeContext {
                    strict,
                    env,
                    completion: &completion_record,
                };
                let modules = check_mode(&r, p, &defaults, &ctx);
                channels.push(build_channel(name, token, defaults.clone(), modules));
            }
            (name, token) => {
                if name.is_none() {
                    r.error(p, "channel", "missing field (or `channels`)");
                }
                if token.is_none() {
                    r.error(p, "token", "missing field (or token_file)");
                }
            }
        },
    }
    r.finish(p, false);

    let tls = TlsConfig {
        verify,
        ca_cert_path,
        client_cert,
    };
    if tls_readable {
        check_tls(&tls, origins, p);
    }
    if let Some(proxy) = &proxy
        && let Err(e) = reqwest::Proxy::all(proxy)
    {
        r.error(p, "proxy", format!("not a usable proxy URL: {e}"));
    }
    check_completion_path(&completion_record, origins, p);

    Some(ConnectorConfig {
        cloud_url: cloud_url?,
        channels,
        reconnect: ReconnectPolicy {
            initial: secs(reconnect_delay),
            max: secs(max_reconnect_delay.max(reconnect_delay)),
            multiplier,
        },
        heartbeat_timeout: secs(heartbeat_timeout),
        connection_timeout: secs(connection_timeout),
        ack_timeout: secs(ack_timeout),
        log_level,
        log_format,
        tls,
        proxy,
        no_proxy,
        health_listen,
        drain_timeout: secs(drain_timeout),
        max_message_size,
        exit_on_stale,
        completion_record,
        outbound_strict: strict,
    })
}

/// Builds the relay TLS settings as `run` does (reading and parsing the CA bundle and the client
/// certificate and key), so `check-config` reports what `run` would refuse.
fn check_tls(tls: &TlsConfig, origins: &Origins, p: &mut Problems) {
    if let Err(e) = crate::tls::client_config(tls) {
        // The message starts with the key it is about (`client_key_path: cannot read …`).
        let key = e.split_once(':').map(|(k, _)| k).unwrap_or("ca_cert_path");
        p.error(format!("{}: {e}", origins.source_of(key)));
    }
}

/// The persisted completion record lives in `<path>.<channel>`: its directory must exist.
fn check_completion_path(record: &CompletionRecordConfig, origins: &Origins, p: &mut Problems) {
    let Some(path) = &record.path else {
        return;
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        p.error(format!(
            "{}: completion_record.path: directory {} does not exist",
            origins.source_of("completion_record.path"),
            dir.display()
        ));
    }
}

/// What loading a channel's module mode needs from the rest of the configuration.
struct ModeContext<'a> {
    strict: bool,
    env: &'a dyn Fn(&str) -> Option<String>,
    completion: &'a CompletionRecordConfig,
}

/// Checks that the channel has exactly one delivery mode, and loads and validates module mode
/// (every instance is built once, without I/O, so `check-config` reports module problems).
fn check_mode(
    r: &Reader<'_>,
    p: &mut Problems,
    s: &ChannelDefaults,
    ctx: &ModeContext<'_>,
) -> Option<Arc<ModuleModeConfig>> {
    let http = s.default_target.is_some() || !s.targets.is_empty();
    let Some(webhooks) = &s.webhooks_config else {
        if !http {
            r.error(
                p,
                "default_target",
                "no delivery mode: set default_target or targets (or webhooks_config)",
            );
        }
        return None;
    };
    if http {
        r.error(
            p,
            "webhooks_config",
            "exactly one delivery mode per channel: HTTP targets (default_target, targets) or webhooks_config, not both",
        );
        return None;
    }
    let config = modules::load(
        Path::new(webhooks),
        s.connections_config.as_deref().map(Path::new),
        ctx.strict,
        ctx.env,
        p,
    )?;
    crate::pipeline::Pipeline::build(
        &config,
        crate::output::shared::SharedClients::new(),
        ctx.completion.capacity,
        ctx.completion.ttl,
        p,
    )?;
    Some(Arc::new(config))
}

fn build_channel(
    name: String,
    token: TokenSource,
    s: ChannelDefaults,
    modules: Option<Arc<ModuleModeConfig>>,
) -> ChannelConfig {
    ChannelConfig {
        channel: name,
        token,
        protocol: s.protocol,
        protocol_version: s.protocol_version,
        connector_id: s.connector_id,
        max_concurrent_requests: s.max_concurrent_requests,
        default_target: s.default_target,
        targets: s.targets,
        modules,
    }
}

fn token_source(r: &mut Reader<'_>, p: &mut Problems) -> Option<TokenSource> {
    let token = r.string(p, "token");
    let file = r.string(p, "token_file");
    match (token, file) {
        (Some(_), Some(_)) => {
            r.error(p, "token_file", "`token` and `token_file` are both set");
            None
        }
        (Some(t), None) if t.is_empty() => {
            r.error(p, "token", "must not be empty");
            None
        }
        (Some(t), None) => Some(TokenSource::Inline(Secret::new(t))),
        (None, Some(path)) => {
            let source = TokenSource::File(PathBuf::from(&path));
            match source.read() {
                Ok(t) if t.is_empty() => {
                    r.error(
                        p,
                        "token_file",
                        format!("{path}: the file holds an empty token"),
                    );
                    None
                }
                Ok(_) => Some(source),
                Err(e) => {
                    r.error(p, "token_file", format!("cannot read {path}: {e}"));
                    None
                }
            }
        }
        (None, None) => None,
    }
}

fn channel_settings(
    r: &mut Reader<'_>,
    p: &mut Problems,
    defaults: Option<&ChannelDefaults>,
    origins: &Origins,
    strict: bool,
) -> ChannelDefaults {
    let mut s = defaults.cloned().unwrap_or(ChannelDefaults {
        protocol: Protocol::Auto,
        protocol_version: VersionPreference::Auto,
        connector_id: None,
        max_concurrent_requests: 10,
        default_target: None,
        targets: BTreeMap::new(),
        webhooks_config: None,
        connections_config: None,
    });
    if let Some(text) = r.string(p, "protocol") {
        match Protocol::parse(&text) {
            Some(proto) => s.protocol = proto,
            None => r.error(
                p,
                "protocol",
                format!("must be auto, websocket, sse or long_poll, got {text:?}"),
            ),
        }
    }
    if let Some(v) = r.get("protocol_version") {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match text.to_ascii_lowercase().as_str() {
            "auto" => s.protocol_version = VersionPreference::Auto,
            "1" => s.protocol_version = VersionPreference::V1,
            "2" => s.protocol_version = VersionPreference::V2,
            _ => r.error(
                p,
                "protocol_version",
                format!("must be \"auto\", 1 or 2, got {text}"),
            ),
        }
    }
    if let Some(id) = r.string(p, "connector_id") {
        s.connector_id = Some(id);
    }
    if r.map.contains_key("max_concurrent_requests") {
        s.max_concurrent_requests =
            r.integer_in(p, "max_concurrent_requests", 10, 1, 1000) as usize;
    } else {
        r.get("max_concurrent_requests");
    }
    if let Some(map) = r.object(p, "default_target") {
        s.default_target = target(map, r.path_of("default_target"), origins, p, strict);
    }
    if let Some(map) = r.object(p, "targets") {
        s.targets = BTreeMap::new();
        let base = r.path_of("targets");
        for (id, value) in map {
            let path = join(&base, id);
            match value {
                Value::Object(t) => {
                    if let Some(t) = target(t, path, origins, p, strict) {
                        s.targets.insert(id.clone(), t);
                    }
                }
                other => p.error(format!(
                    "{}: {path}: expected a target object, got {other}",
                    origins.source_of(&path)
                )),
            }
        }
    }
    if let Some(path) = r.string(p, "webhooks_config") {
        s.webhooks_config = Some(path);
    }
    if let Some(path) = r.string(p, "connections_config") {
        s.connections_config = Some(path);
    }
    s
}

fn target(
    map: &Map<String, Value>,
    path: String,
    origins: &Origins,
    p: &mut Problems,
    strict: bool,
) -> Option<TargetConfig> {
    let mut r = Reader::new(map, path, origins);
    let url = r.string(p, "url");
    let url = match url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            match crate::outbound::check(&u, strict) {
                None => Some(u),
                Some(why) => {
                    r.error(p, "url", why);
                    None
                }
            }
        }
        Some(u) => {
            r.error(
                p,
                "url",
                format!("must start with http:// or https://, got {u:?}"),
            );
            None
        }
        None => {
            r.error(p, "url", "missing field");
            None
        }
    };
    let mut t = TargetConfig::new(url.clone().unwrap_or_default());
    if let Some(m) = r.string(p, "method") {
        let upper = m.to_ascii_uppercase();
        match upper.as_str() {
            "POST" | "PUT" | "PATCH" | "DELETE" | "GET" => {
                t.method = http::Method::from_bytes(upper.as_bytes()).unwrap_or(http::Method::POST);
            }
            _ => r.error(
                p,
                "method",
                format!("must be POST, PUT, PATCH, DELETE or GET, got {m:?}"),
            ),
        }
    }
    if let Some(h) = r.object(p, "headers") {
        for (name, value) in h {
            let hpath = format!("headers.{name}");
            let Some(value) = value.as_str() else {
                r.error(p, &hpath, "expected a string value");
                continue;
            };
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                r.error(p, &hpath, "not a valid HTTP header name");
            } else if value.contains(['\r', '\n', '\0']) {
                r.error(p, &hpath, "value must not contain CR, LF or NUL");
            } else {
                t.headers.push((name.clone(), value.to_owned()));
            }
        }
    }
    t.timeout = secs(r.number_in(p, "timeout_seconds", 30.0, |n| n > 0.0, "> 0"));
    t.retry.enabled = r.boolean(p, "retry_enabled", true);
    if let Some(n) = r.integer(p, "retry_max_attempts") {
        let c = n.clamp(1, 20);
        if c != n && n != 0 {
            r.warn(
                p,
                "retry_max_attempts",
                format!("{n} is outside 1–20; using {c}"),
            );
        }
        t.retry.max_attempts = c as u32;
    }
    let delay = r.number_clamped(p, "retry_delay_seconds", 1.0, 0.0, 60.0);
    t.retry.delay = secs(delay);
    t.retry.multiplier = r.number_clamped(p, "retry_backoff_multiplier", 2.0, 1.0, 10.0);
    t.retry.max_delay = secs(r.number_clamped(p, "retry_max_delay_seconds", 60.0, delay, 300.0));
    t.forward_headers = match r.string(p, "forward_headers").as_deref() {
        None | Some("both") => ForwardHeaders::Both,
        Some("prefixed") => ForwardHeaders::Prefixed,
        Some("original") => ForwardHeaders::Original,
        Some("none") => ForwardHeaders::None,
        Some(other) => {
            r.error(
                p,
                "forward_headers",
                format!("must be both, prefixed, original or none, got {other:?}"),
            );
            ForwardHeaders::Both
        }
    };
    t.body = match r.string(p, "body").as_deref() {
        None | Some("auto") => BodyMode::Auto,
        Some("raw") => BodyMode::Raw,
        Some("json") => BodyMode::Json,
        Some(other) => {
            r.error(
                p,
                "body",
                format!("must be auto, raw or json, got {other:?}"),
            );
            BodyMode::Auto
        }
    };
    r.finish(p, true);
    url.map(|_| t)
}
