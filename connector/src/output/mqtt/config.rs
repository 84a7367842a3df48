//! The `mqtt` settings (`docs/reference/module-contract.md` §3.13): the topic from `module-config` and the broker from
//! the `connections.json` entry, checked when the configuration is loaded. Nothing here depends
//! on the protocol version.

use std::sync::Arc;

use webhook_connect_protocol::config_values::Secret;

use super::super::ModuleSettings;
use super::super::connection_keys;
use super::super::shared::client_key;
use crate::settings::Problems;
use crate::settings::Reader;
use crate::tls::TlsConfig;

/// Why `topic` is refused, if it is.
pub(super) fn check_topic(topic: &str) -> Option<&'static str> {
    if topic.is_empty() || topic.len() > 32_768 {
        return Some("must be 1–32768 bytes");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Some("may only contain A-Z, a-z, 0-9, _, -, . and / (no + or # wildcards)");
    }
    if topic.starts_with('$') || topic.contains("//") || topic.contains("..") {
        return Some("must not start with $ or contain // or ..");
    }
    None
}

/// The topic: `topic` (falling back to the webhook-level `topic`) or the Tasmota topic, after
/// `topic_prefix`.
pub(super) fn read_topic(
    s: &ModuleSettings<'_>,
    mc: &mut Reader<'_>,
    p: &mut Problems,
) -> Option<String> {
    let prefix = mc.string(p, "topic_prefix");
    let tasmota = mc.boolean(p, "tasmota_format", false);
    let base = if tasmota {
        let kind = mc.choice(p, "tasmota_type", "cmnd", &["cmnd", "stat", "tele"]);
        let device = mc.string(p, "device_name");
        let command = mc.string(p, "command");
        let Some(device) = device else {
            mc.error(p, "device_name", "required with tasmota_format");
            return None;
        };
        match kind {
            "cmnd" => format!("cmnd/{device}/{}", command.as_deref().unwrap_or("POWER")),
            "stat" => format!("stat/{device}/status"),
            _ => format!("tele/{device}/telemetry"),
        }
    } else {
        let own = mc.string(p, "topic");
        let fallback = s
            .fallback("topic")
            .and_then(|v| v.as_str().map(str::to_owned));
        match own.or(fallback) {
            Some(t) => t,
            None => {
                mc.error(p, "topic", "missing field");
                return None;
            }
        }
    };
    let topic = match prefix.as_deref().map(|x| x.trim_end_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{base}"),
        _ => base,
    };
    if let Some(why) = check_topic(&topic) {
        mc.error(p, "topic", format!("{topic:?} {why}"));
        return None;
    }
    Some(topic)
}

/// The protocol version of a connection (conn `mqtt_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    /// `"3.1.1"`, the default.
    V311,
    /// `"5.0"`.
    V5,
}

/// Connection settings of one broker.
#[derive(Debug, Clone)]
pub(super) struct MqttServer {
    /// The key of the shared client (`docs/reference/module-contract.md` §2.2 rule 3).
    pub(super) key: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) username: Option<String>,
    pub(super) password: Option<Secret>,
    pub(super) client_id: String,
    pub(super) keepalive: u64,
    pub(super) version: Version,
    /// The TLS configuration with `tls: true`, built at load so an unreadable certificate or
    /// key file is a load error.
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    pub(super) strict: bool,
}

impl MqttServer {
    pub(super) fn read(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        if !connection_keys::require_connection(s, p) {
            return None;
        }
        let mut r = connection_keys::connection(s);
        let host = connection_keys::host(&mut r, p, "host", None, s.outbound_strict, &[]);
        let port = connection_keys::port(&mut r, p, "port", 1883);
        let username = r.string(p, "username");
        let password = connection_keys::secret(&mut r, p, "password");
        let client_id = r
            .string(p, "client_id")
            .unwrap_or_else(|| format!("webhook-connector-{:08x}", rand::random::<u32>()));
        let keepalive = r.integer_in(p, "keepalive", 60, 5, 65_535);
        let version = match r.string(p, "mqtt_version").as_deref() {
            None | Some("3.1.1") => Some(Version::V311),
            Some("5.0") => Some(Version::V5),
            Some(other) => {
                r.error(
                    p,
                    "mqtt_version",
                    format!("must be \"3.1.1\" or \"5.0\", got {other:?}"),
                );
                None
            }
        };
        let tls = read_tls(&mut r, p);
        r.finish(p, false);
        let empty = serde_json::Map::new();
        Some(MqttServer {
            key: client_key(
                "mqtt",
                s.connection_name.unwrap_or("connection"),
                s.connection.unwrap_or(&empty),
            ),
            host: host?,
            port,
            username,
            password,
            client_id,
            keepalive: u64::try_from(keepalive).unwrap_or(60),
            version: version?,
            tls: tls?,
            strict: s.outbound_strict,
        })
    }

    /// The password to send with `username`.
    pub(super) fn password(&self) -> &str {
        self.password
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default()
    }
}

/// The TLS keys: `tls` (default false), `tls_insecure` (accept any server certificate),
/// `tls_ca_cert_file` (PEM, trusted in addition to the public roots), `tls_cert_file` +
/// `tls_key_file` (client certificate, both or neither). `Some(None)` is plain TCP; `None` a
/// load error.
fn read_tls(r: &mut Reader<'_>, p: &mut Problems) -> Option<Option<Arc<rustls::ClientConfig>>> {
    let tls = r.boolean(p, "tls", false);
    let insecure = r.boolean(p, "tls_insecure", false);
    let ca = r.string(p, "tls_ca_cert_file");
    let cert = r.string(p, "tls_cert_file");
    let key = r.string(p, "tls_key_file");
    if !tls {
        for (name, set) in [
            ("tls_insecure", insecure),
            ("tls_ca_cert_file", ca.is_some()),
            ("tls_cert_file", cert.is_some()),
            ("tls_key_file", key.is_some()),
        ] {
            if set {
                r.warn(p, name, "ignored without \"tls\": true");
            }
        }
        return Some(None);
    }
    let client_cert =
        connection_keys::client_cert_files(r, p, cert, key)?.map(|(c, k)| (c.into(), k.into()));
    let config = TlsConfig {
        verify: !insecure,
        ca_cert_path: ca.map(Into::into),
        client_cert,
    };
    const KEYS: [&str; 3] = ["tls_ca_cert_file", "tls_cert_file", "tls_key_file"];
    match crate::tls::client_config_for(&config, KEYS) {
        Ok(c) => Some(Some(c)),
        Err(message) => {
            // The message starts with the key it is about.
            let key = KEYS
                .into_iter()
                .find(|k| message.starts_with(&format!("{k}: ")))
                .unwrap_or("tls");
            let text = message
                .strip_prefix(&format!("{key}: "))
                .unwrap_or(&message);
            r.error(p, key, text);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_topic;

    #[test]
    fn topics_are_checked() {
        for ok in ["webhooks/orders", "a", "home/dev-1/state.json"] {
            assert_eq!(check_topic(ok), None, "{ok}");
        }
        for bad in ["", "a/+/b", "a/#", "$SYS/x", "a//b", "a/../b", "a b"] {
            assert!(check_topic(bad).is_some(), "{bad}");
        }
    }
}
