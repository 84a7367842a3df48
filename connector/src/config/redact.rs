//! The redacted view of the connector's configuration (`print-config`; `docs/reference/config-formats.md` §1.2:
//! secrets never appear in its output).
//!
//! Masking is structural, so a setting added later is covered without being listed here:
//!
//! - a value whose key names a secret is masked whole: the key, lower-cased with `-` read as `_`,
//!   contains one of [`SENSITIVE_KEY_FRAGMENTS`] (`token`, `password`, `secret`, `auth`, …) or
//!   one of [`MORE_SECRET_FRAGMENTS`] (`pass`, `seed`, `key`: RabbitMQ's `pass`, NATS's
//!   `nkey_seed`, a `private_key` or `ssl_key` given inline);
//! - except keys ending in `_file` or `_path`, which name a file (`token_file`,
//!   `client_key_path`, `tls_key_file`): the path is shown, its contents never are;
//! - every other string is shown with the password of a URL masked (`redis://u:***@h`), and a
//!   string holding a PEM private key is masked whole wherever it appears.

use serde_json::{Map, Value};
use webhook_connect_protocol::credentials::SENSITIVE_KEY_FRAGMENTS;
use webhook_connect_protocol::redact::{MASK, mask_all, mask_url};

use super::ConnectorConfig;

/// Key fragments that mark a secret in the connector's files besides the shared list.
pub const MORE_SECRET_FRAGMENTS: [&str; 3] = ["pass", "seed", "key"];

/// True when a value under `key` is a secret (and not a path to one).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    if key.ends_with("_file") || key.ends_with("_path") {
        return false;
    }
    SENSITIVE_KEY_FRAGMENTS
        .iter()
        .chain(MORE_SECRET_FRAGMENTS.iter())
        .any(|fragment| key.contains(fragment))
}

/// A string as shown: PEM private keys masked whole, URL passwords masked.
fn shown_string(text: &str) -> String {
    if text.contains("PRIVATE KEY") {
        MASK.to_owned()
    } else {
        mask_url(text)
    }
}

/// `value` with every secret masked by the rules of this module.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(shown_string(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(map) => Value::Object(redact_map(map)),
        other => other.clone(),
    }
}

/// An object with every secret masked: values under secret keys whole, the rest by [`redact`].
pub fn redact_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| {
            let shown = if is_secret_key(key) {
                mask_all(value)
            } else {
                redact(value)
            };
            (key.clone(), shown)
        })
        .collect()
}

/// What `print-config` prints: `config`, the configuration document as the layers made it
/// (file, environment, flags, after substitution), and per module-mode channel its `webhooks`
/// (each entry's module or chain items, `module-config` and connection name) and the
/// `connections` they use, all redacted.
pub fn printable(document: &Map<String, Value>, config: &ConnectorConfig) -> Value {
    let mut modules = Map::new();
    for channel in &config.channels {
        let Some(mode) = &channel.modules else {
            continue;
        };
        let mut webhooks = Map::new();
        let mut connections = Map::new();
        for (id, entry) in &mode.entries {
            let items: Vec<Value> = entry
                .items
                .iter()
                .map(|item| {
                    if let (Some(name), Some(connection)) =
                        (&item.connection_name, &item.connection)
                    {
                        connections.insert(name.clone(), Value::Object(redact_map(connection)));
                    }
                    serde_json::json!({
                        "module": item.module,
                        "connection": item.connection_name,
                        "module-config": Value::Object(redact_map(&item.module_config)),
                    })
                })
                .collect();
            let mut shown = Map::new();
            shown.insert(
                "data_type".into(),
                (if entry.blob { "blob" } else { "json" }).into(),
            );
            shown.insert(
                if entry.chain.is_some() {
                    "chain"
                } else {
                    "module"
                }
                .into(),
                Value::Array(items),
            );
            webhooks.insert(id.clone(), Value::Object(shown));
        }
        modules.insert(
            channel.channel.clone(),
            serde_json::json!({"webhooks": webhooks, "connections": connections}),
        );
    }
    let mut out = Map::new();
    out.insert("config".into(), Value::Object(redact_map(document)));
    if !modules.is_empty() {
        out.insert("module_mode".into(), Value::Object(modules));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_masked_paths_and_other_settings_shown() {
        let doc = serde_json::json!({
            "token": "t0k",
            "token_file": "/run/secrets/token",
            "client_key_path": "/etc/connector/client.key",
            "proxy": "http://proxyuser:proxypw@proxy:3128",
            "pass": "guest-pw",
            "nkey_seed": "SUAM",
            "ssl_key": "inline",
            "port": 5672,
            "tls": true,
            "headers": {"Authorization": "Bearer b", "X-Api-Key": "k", "X-Team": "blue"},
            "note": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
            "hosts": ["h1", "nats://u:npw@h2:4222"],
        });
        let shown = redact(&doc);
        assert_eq!(shown["token"], MASK);
        assert_eq!(shown["token_file"], "/run/secrets/token");
        assert_eq!(shown["client_key_path"], "/etc/connector/client.key");
        assert_eq!(shown["proxy"], "http://proxyuser:***@proxy:3128");
        assert_eq!(shown["pass"], MASK);
        assert_eq!(shown["nkey_seed"], MASK);
        assert_eq!(shown["ssl_key"], MASK);
        assert_eq!(shown["port"], 5672);
        assert_eq!(shown["tls"], true);
        assert_eq!(shown["headers"]["Authorization"], MASK);
        assert_eq!(shown["headers"]["X-Api-Key"], MASK);
        assert_eq!(shown["headers"]["X-Team"], "blue");
        assert_eq!(shown["note"], MASK);
        assert_eq!(shown["hosts"][0], "h1");
        assert_eq!(shown["hosts"][1], "nats://u:***@h2:4222");
    }
}
