//! Environment variables of the relay (`docs/reference/config-formats.md` §2.7): `WEBHOOK_RELAY_<SECTION>__<KEY>`
//! for any scalar key (strict: an unknown one is an error), and the original implementation's
//! variables.

use std::collections::BTreeMap;

use serde_json::Value;

use super::LoadOptions;
use super::file::RelayFile;

const PREFIX: &str = "WEBHOOK_RELAY_";
/// Keys that take comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "server.trusted_proxies",
    "channel_defaults.allowed_ips",
    "buffer.redis.cluster_nodes",
];

/// Every settable key path (`server.listen`, `buffer.redis.url`, …), from the defaults.
pub fn known_keys() -> Vec<String> {
    fn leaves(value: &Value, path: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if !path.is_empty() || !map.is_empty() => {
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(v, p, out);
                }
            }
            _ => out.push(path),
        }
    }
    let mut out = Vec::new();
    if let Ok(defaults) = serde_json::to_value(RelayFile::default()) {
        leaves(&defaults, String::new(), &mut out);
    }
    out.retain(|p| p != "channels");
    out
}

fn set_path(doc: &mut Value, path: &str, value: Value) {
    let mut node = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            map.insert((*part).to_owned(), value);
            return;
        }
        node = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
    }
}

fn env_value(path: &str, raw: &str) -> Value {
    if LIST_KEYS.contains(&path) {
        Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )
    } else {
        Value::String(raw.to_owned())
    }
}

/// Applies the environment to the parsed document; returns which variable set which key.
pub fn apply(
    doc: &mut Value,
    options: &LoadOptions,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> super::Origins {
    let known = known_keys();
    let mut set_by_prefix: BTreeMap<String, String> = BTreeMap::new();
    for (name, raw) in &options.env {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if raw.is_empty() || rest == "CONFIG" {
            continue;
        }
        let path = rest.to_ascii_lowercase().replace("__", ".");
        if path.starts_with("channels") {
            errors.push(format!(
                "{name}: [[channels]] cannot be set through the environment"
            ));
            continue;
        }
        if !known.contains(&path) {
            errors.push(format!("{name}: unknown setting (no key {path})"));
            continue;
        }
        set_path(doc, &path, env_value(&path, raw));
        set_by_prefix.insert(path, name.clone());
    }
    let originals = [
        ("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin.token"),
        ("WEBHOOK_CONNECT_REDIS_URL", "buffer.redis.url"),
        ("WEBHOOK_CONNECT_RABBITMQ_URL", "buffer.rabbitmq.url"),
        ("WEBHOOK_CONNECT_BUFFER", "buffer.backend"),
        ("WEBHOOKS_CONFIG_FILE", "ingest.webhooks_file"),
        ("CONNECTIONS_CONFIG_FILE", "ingest.connections_file"),
    ];
    for (name, path) in originals {
        let Some(value) = options.var(name) else {
            continue;
        };
        if let Some(ours) = set_by_prefix.get(path) {
            warnings.push(format!("{name}: ignored because {ours} sets {path}"));
            continue;
        }
        set_path(doc, path, Value::String(value.to_owned()));
        set_by_prefix.insert(path.to_owned(), name.to_owned());
    }
    if options.var("WEBHOOK_CONNECT_RABBITMQ_URL").is_none()
        && !set_by_prefix.contains_key("buffer.rabbitmq.url")
        && let Some(value) = options.var("RABBITMQ_URL")
    {
        set_path(doc, "buffer.rabbitmq.url", Value::String(value.to_owned()));
        set_by_prefix.insert("buffer.rabbitmq.url".to_owned(), "RABBITMQ_URL".to_owned());
    }
    if options
        .var("WEBHOOK_CONNECT_ENABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        warnings
            .push("WEBHOOK_CONNECT_ENABLED=false: ignored; the relay is always enabled".to_owned());
    }
    set_by_prefix
}
