//! The redacted view of a configuration (`print-config`, `docs/reference/config-formats.md` §1.2: secrets never
//! appear in its output) and the test of whether a webhook entry holds a secret.
//!
//! Masking is fail-closed: typed sections hold their secrets in [`Secret`], whose `Serialize`
//! writes `***`; free-form webhook entries (authentication keys) show only the fields listed in
//! [`PUBLIC_FIELDS`] and booleans, and mask every other value, so a setting added later is masked
//! until someone declares it public here.

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;
use webhook_connect_protocol::redact::{MASK, mask_all, mask_url};

use super::file::RelayFile;
use super::{ENTRY_KEYS, RelayConfig};

/// Keys of a webhook entry whose whole value is public (no credential can live there).
const PUBLIC_KEYS: &[&str] = &[
    "ip_whitelist",
    "rate_limit",
    "json_schema",
    "trusted_proxies",
];

/// Per authentication key, the settings that are not secret. Strings that hold URLs are shown
/// with any password replaced by `***` ([`mask_url`]).
const PUBLIC_FIELDS: &[(&str, &[&str])] = &[
    (
        "hmac",
        &[
            "preset",
            "header",
            "algorithm",
            "encoding",
            "mode",
            "version",
            "timestamp_tolerance_seconds",
            "timestamp_window",
        ],
    ),
    (
        "jwt",
        &[
            "algorithm",
            "jwt_algorithms",
            "issuer",
            "audience",
            "leeway_seconds",
            "required_claims",
            "header",
            "header_name",
            "token_source",
        ],
    ),
    ("basic_auth", &["realm"]),
    (
        "digest_auth",
        &["realm", "qop", "algorithm", "nonce_ttl_seconds"],
    ),
    ("header_auth", &["header_name"]),
    ("query_auth", &["parameter_name"]),
    (
        "oauth2",
        &[
            "introspection_endpoint",
            "token_type",
            "issuer",
            "audience",
            "required_scope",
            "jwt_algorithms",
            "cache_seconds",
            "allowed_hosts",
            "leeway_seconds",
            "header_name",
        ],
    ),
    (
        "oauth1",
        &[
            "signature_method",
            "base_uri_mode",
            "realm",
            "timestamp_window",
            "nonce_ttl_seconds",
        ],
    ),
    (
        "recaptcha",
        &[
            "version",
            "token_field",
            "header_name",
            "verify_url",
            "min_score",
            "action",
            "allowed_hosts",
        ],
    ),
];

fn mask_secret_url(secret: &Secret) -> Value {
    Value::String(mask_url(secret.expose()))
}

/// A public setting: shown, with passwords in URLs masked.
fn public(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask_url(s)),
        Value::Array(items) => Value::Array(items.iter().map(public).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), public(v))).collect())
        }
        other => other.clone(),
    }
}

fn redact_method(key: &str, value: &Value) -> Value {
    let fields = PUBLIC_FIELDS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, f)| *f)
        .unwrap_or(&[]);
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if fields.contains(&k.as_str()) || v.is_boolean() {
                        public(v)
                    } else {
                        mask_all(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        other => mask_all(other),
    }
}

/// A webhook entry (authentication keys, `data_type`, …) with every secret masked.
pub fn redact_entry(entry: &Map<String, Value>) -> Map<String, Value> {
    entry
        .iter()
        .map(|(key, value)| {
            let shown = if ENTRY_KEYS.contains(&key.as_str()) || PUBLIC_KEYS.contains(&key.as_str())
            {
                public(value)
            } else {
                redact_method(key, value)
            };
            (key.clone(), shown)
        })
        .collect()
}

/// True when a webhook entry holds a value [`redact_entry`] masks.
pub fn entry_has_secret(entry: &Map<String, Value>) -> bool {
    fn masked_somewhere(shown: &Value, original: &Value) -> bool {
        match (shown, original) {
            // Masked whole, or a password masked inside a URL.
            (Value::String(s), Value::String(o)) => s != o,
            (Value::String(s), Value::Number(_)) => s == MASK,
            (Value::Array(a), Value::Array(b)) => {
                a.iter().zip(b).any(|(x, y)| masked_somewhere(x, y))
            }
            (Value::Object(a), Value::Object(b)) => a
                .iter()
                .any(|(k, x)| b.get(k).is_some_and(|y| masked_somewhere(x, y))),
            _ => false,
        }
    }
    let shown = redact_entry(entry);
    shown
        .iter()
        .any(|(k, v)| entry.get(k).is_some_and(|o| masked_somewhere(v, o)))
}

/// Webhook ids of a `webhooks` map (id → entry) whose entry holds a secret.
pub fn webhooks_with_secrets(webhooks: &Value) -> Vec<String> {
    webhooks
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(_, e)| e.as_object().is_some_and(entry_has_secret))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A `[[channels]]` entry as written, redacted: the token and every webhook secret masked;
/// keys that are not channel settings are masked whole.
fn redact_channel_map(map: &Map<String, Value>) -> Map<String, Value> {
    let settings = serde_json::to_value(super::settings::ChannelOverrides::default())
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    map.iter()
        .map(|(key, value)| {
            let shown = match key.as_str() {
                "name" | "token_file" => value.clone(),
                "webhooks" => redact_webhooks(value),
                k if settings.contains_key(k) => public(value),
                _ => mask_all(value),
            };
            (key.clone(), shown)
        })
        .collect()
}

fn redact_webhooks(value: &Value) -> Value {
    match value {
        Value::Object(webhooks) => Value::Object(
            webhooks
                .iter()
                .map(|(id, entry)| {
                    let shown = match entry {
                        Value::Object(e) => Value::Object(redact_entry(e)),
                        other => mask_all(other),
                    };
                    (id.clone(), shown)
                })
                .collect(),
        ),
        other => mask_all(other),
    }
}

/// The relay file, redacted: secrets of the typed sections print as `***` (URLs with only the
/// password masked), `[[channels]]` as [`redact_channel_map`].
pub fn redact_file(file: &RelayFile) -> Value {
    let mut doc = serde_json::to_value(file).unwrap_or(Value::Null);
    let urls = [
        ("buffer", "redis", "url", &file.buffer.redis.url),
        ("buffer", "rabbitmq", "url", &file.buffer.rabbitmq.url),
    ];
    for (a, b, c, secret) in urls {
        if let Some(slot) = doc.pointer_mut(&format!("/{a}/{b}/{c}")) {
            *slot = mask_secret_url(secret);
        }
    }
    if let Some(slot) = doc.pointer_mut("/buffer/redis/cluster_nodes") {
        *slot = Value::Array(
            file.buffer
                .redis
                .cluster_nodes
                .iter()
                .map(mask_secret_url)
                .collect(),
        );
    }
    if let Some(slot) = doc.pointer_mut("/state/redis_url") {
        *slot = mask_secret_url(&file.state.redis_url);
    }
    if let Some(slot) = doc.pointer_mut("/channels") {
        *slot = Value::Array(
            file.channels
                .iter()
                .map(|c| Value::Object(redact_channel_map(c)))
                .collect(),
        );
    }
    doc
}

/// What `print-config` prints: the effective file values redacted, plus the channels and the
/// `default` webhook that an original `webhooks.json` contributes, redacted.
pub fn printable(config: &RelayConfig) -> Value {
    let mut doc = redact_file(&config.file);
    let from_file: Vec<&str> = config
        .file
        .channels
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let from_webhooks_json: Vec<Value> = config
        .channels
        .iter()
        .filter(|c| !from_file.contains(&c.name.as_str()))
        .map(|c| {
            let mut out = Map::new();
            out.insert("name".into(), Value::String(c.name.clone()));
            out.insert("token".into(), Value::String(MASK.into()));
            if let Ok(Value::Object(settings)) = serde_json::to_value(&c.overrides) {
                out.extend(settings.into_iter().filter(|(_, v)| !v.is_null()));
            }
            let webhooks: Map<String, Value> = c
                .webhooks
                .iter()
                .map(|w| (w.id.clone(), Value::Object(redact_entry(&w.entry))))
                .collect();
            out.insert("webhooks".into(), Value::Object(webhooks));
            Value::Object(out)
        })
        .collect();
    if let Some(root) = doc.as_object_mut() {
        if !config.file.ingest.webhooks_file.is_empty() {
            root.insert(
                "webhooks_file_channels".into(),
                Value::Array(from_webhooks_json),
            );
        }
        if let Some((channel, webhook)) = &config.default_webhook {
            root.insert(
                "default_webhook".into(),
                serde_json::json!({
                    "channel": channel,
                    "entry": Value::Object(redact_entry(&webhook.entry)),
                }),
            );
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_show_public_settings_and_mask_the_rest() {
        let entry = serde_json::json!({
            "data_type": "json",
            "hmac": {"preset": "github", "secret": "s3cr3t"},
            "authorization": "Bearer abc",
            "ip_whitelist": ["10.0.0.1"],
            "future_method": {"anything": "x", "enabled": true},
            "jwt": {"algorithm": "HS256", "key": "k", "leeway_seconds": 5, "n": 7},
        });
        let entry = entry.as_object().cloned().unwrap_or_default();
        let shown = Value::Object(redact_entry(&entry));
        assert_eq!(shown["hmac"]["preset"], "github");
        assert_eq!(shown["hmac"]["secret"], MASK);
        assert_eq!(shown["authorization"], MASK);
        assert_eq!(shown["ip_whitelist"][0], "10.0.0.1");
        assert_eq!(shown["future_method"]["anything"], MASK);
        assert_eq!(shown["future_method"]["enabled"], true);
        assert_eq!(shown["jwt"]["key"], MASK);
        assert_eq!(shown["jwt"]["leeway_seconds"], 5);
        assert_eq!(shown["jwt"]["n"], MASK);
        assert!(entry_has_secret(&entry));
        let url = serde_json::json!({"oauth2": {"introspection_endpoint": "https://u:pw@idp/i"}});
        let url = url.as_object().cloned().unwrap_or_default();
        assert_eq!(
            Value::Object(redact_entry(&url))["oauth2"]["introspection_endpoint"],
            "https://u:***@idp/i"
        );
        assert!(
            entry_has_secret(&url),
            "a password inside a URL is a secret"
        );
        let plain = serde_json::json!({"ip_whitelist": ["10.0.0.1"], "data_type": "blob"});
        assert!(!entry_has_secret(plain.as_object().unwrap_or(&Map::new())));
    }
}
