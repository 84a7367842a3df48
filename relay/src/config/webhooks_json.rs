//! The original `webhooks.json` on the relay (`docs/reference/config-formats.md` §3): `webhook_connect` entries
//! (directly or inside a chain) attach webhook ids to channels; everything else is skipped.
//! Lenient where the original was: unknown keys are warnings.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::{Secret, substitute};
use webhook_connect_protocol::names::{validate_channel_name, validate_webhook_id};

use super::file::RelayFile;
use super::settings::ChannelOverrides;
use super::{ChannelSource, ChannelSpec, WebhookSpec, file_label, is_inbound_key, parse_data_type};

/// What the file contributes.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Channels defined by its entries.
    pub channels: Vec<ChannelSpec>,
    /// The `default` entry (channel name, webhook), when it is a `webhook_connect` entry.
    pub default_webhook: Option<(String, WebhookSpec)>,
}

const SETTING_KEYS: &[&str] = &[
    "ttl_seconds",
    "max_queue_size",
    "max_message_size",
    "max_in_flight",
    "max_connections",
    "ack_timeout_seconds",
    "max_delivery_attempts",
    "ordered",
    "heartbeat_interval_seconds",
    "requeue_delay_initial_ms",
    "requeue_delay_max_ms",
    "max_lease_seconds",
    "allowed_ips",
    "rate_limit_per_second",
];

struct Draft {
    first_id: String,
    token: (String, String),
    settings: BTreeMap<String, (Value, String)>,
    webhooks: Vec<WebhookSpec>,
}

/// Finds the `webhook_connect` module-config of an entry: the entry itself, or the one chain
/// item that is `webhook_connect`.
fn connect_config<'a>(
    id: &str,
    entry: &'a Map<String, Value>,
    label: &str,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Option<&'a Map<String, Value>>> {
    if entry.get("module").and_then(Value::as_str) == Some("webhook_connect") {
        return Some(entry.get("module-config").and_then(Value::as_object));
    }
    let chain = entry.get("chain").and_then(Value::as_array)?;
    let mut found = Vec::new();
    for (i, item) in chain.iter().enumerate() {
        match item {
            Value::String(s) if s == "webhook_connect" => {
                found.push((i, entry.get("module-config").and_then(Value::as_object)))
            }
            Value::Object(o)
                if o.get("module").and_then(Value::as_str) == Some("webhook_connect") =>
            {
                found.push((i, o.get("module-config").and_then(Value::as_object)))
            }
            _ => {}
        }
    }
    match found.len() {
        0 => None,
        1 => {
            if chain.len() > 1 {
                warnings.push(format!(
                    "{label}: {id}.chain: items other than webhook_connect are ignored by the relay"
                ));
            }
            Some(found[0].1)
        }
        _ => {
            errors.push(format!(
                "{label}: {id}.chain: more than one webhook_connect item"
            ));
            None
        }
    }
}

/// Reads, substitutes and validates the file.
pub fn load(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    defaults: &ChannelOverrides,
    file: &RelayFile,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Loaded {
    let label = file_label(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{label}: cannot read {}: {e}", path.display()));
            return Loaded::default();
        }
    };
    let mut doc: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("{label}: invalid JSON: {e}"));
            return Loaded::default();
        }
    };
    if let Err(errs) = substitute(&mut doc, "", lookup) {
        errors.extend(errs.iter().map(|e| format!("{label}: {e}")));
    }
    let Value::Object(entries) = doc else {
        errors.push(format!(
            "{label}: expected an object mapping webhook ids to entries"
        ));
        return Loaded::default();
    };
    let mut drafts: BTreeMap<String, Draft> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut default_webhook = None;
    for (id, entry) in &entries {
        let Value::Object(entry) = entry else {
            errors.push(format!("{label}: {id}: expected an object"));
            continue;
        };
        let is_default = id == "default";
        if !is_default && let Err(e) = validate_webhook_id(id) {
            errors.push(format!("{label}: {id}: {e}"));
            continue;
        }
        let Some(mc) = connect_config(id, entry, &label, errors, warnings) else {
            let msg = format!(
                "{label}: {id}: not a webhook_connect entry; the relay skips it and answers 404"
            );
            if file.ingest.unsupported_modules == "error" {
                errors.push(msg)
            } else {
                warnings.push(msg)
            }
            continue;
        };
        let Some(mc) = mc else {
            errors.push(format!("{label}: {id}.module-config: missing field"));
            continue;
        };
        let mpath = format!("{label}: {id}.module-config");
        let channel = match mc.get("channel") {
            Some(Value::String(c)) => c.clone(),
            Some(_) => {
                errors.push(format!("{mpath}.channel: expected a string"));
                continue;
            }
            None => {
                errors.push(format!("{mpath}.channel: missing field"));
                continue;
            }
        };
        if let Err(e) = validate_channel_name(&channel) {
            errors.push(format!("{mpath}.channel: {e}"));
            continue;
        }
        let token = match mc.get("channel_token") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(Value::String(_)) => {
                errors.push(format!("{mpath}.channel_token: must not be empty"));
                continue;
            }
            Some(_) => {
                errors.push(format!("{mpath}.channel_token: expected a string"));
                continue;
            }
            None => {
                errors.push(format!("{mpath}.channel_token: missing field"));
                continue;
            }
        };
        for key in mc.keys() {
            match key.as_str() {
                "channel" | "channel_token" => {}
                k if SETTING_KEYS.contains(&k) => {}
                "include_message_id" | "heartbeat" => warnings.push(format!(
                    "{mpath}.{key}: documented for the original but never implemented; ignored"
                )),
                other => warnings.push(format!("{mpath}.{other}: unknown key, ignored")),
            }
        }
        for key in entry.keys() {
            let known = is_inbound_key(key)
                || ["module", "module-config", "chain", "chain-config"].contains(&key.as_str());
            if ["retry", "connection"].contains(&key.as_str()) {
                warnings.push(format!(
                    "{label}: {id}.{key}: ignored on the relay (storing is synchronous)"
                ));
            } else if !known {
                warnings.push(format!("{label}: {id}.{key}: unknown key, ignored"));
            }
        }
        let wpath = format!("{label}: {id}");
        let Some(data_type) = parse_data_type(entry, &wpath, errors) else {
            continue;
        };
        let inbound: Map<String, Value> = entry
            .iter()
            .filter(|(k, _)| is_inbound_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let webhook = WebhookSpec {
            id: id.clone(),
            data_type,
            entry: inbound,
            path: wpath,
        };
        if is_default {
            default_webhook = Some((channel.clone(), webhook.clone()));
        }
        let draft = drafts.entry(channel.clone()).or_insert_with(|| {
            order.push(channel.clone());
            Draft {
                first_id: id.clone(),
                token: (token.clone(), id.clone()),
                settings: BTreeMap::new(),
                webhooks: Vec::new(),
            }
        });
        if draft.token.0 != token {
            errors.push(format!(
                "{mpath}.channel_token: conflicts with {}.module-config.channel_token for channel \"{channel}\"",
                draft.token.1
            ));
        }
        for key in SETTING_KEYS {
            let Some(value) = mc.get(*key) else { continue };
            match draft.settings.get(*key) {
                Some((existing, other)) if existing != value => errors.push(format!(
                    "{mpath}.{key}: conflicts with {other}.module-config.{key} for channel \"{channel}\""
                )),
                Some(_) => {}
                None => {
                    draft.settings.insert((*key).to_owned(), (value.clone(), id.clone()));
                }
            }
        }
        draft.webhooks.push(webhook);
    }
    let mut channels = Vec::new();
    for name in order {
        let Some(draft) = drafts.remove(&name) else {
            continue;
        };
        let given: Map<String, Value> = draft
            .settings
            .into_iter()
            .map(|(k, (v, _))| (k, v))
            .collect();
        let path = format!("{label}: {}.module-config.", draft.first_id);
        let overrides = match super::deserialize_at::<ChannelOverrides>(Value::Object(given), &path)
        {
            Ok(o) => o,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let settings = match overrides
            .over(defaults)
            .resolve(&path, file.server.max_body_bytes)
        {
            Ok(s) => s,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        if draft.token.0.len() < 16 {
            warnings.push(format!(
                "{label}: channel \"{name}\": channel_token shorter than 16 bytes"
            ));
        }
        let webhooks = draft
            .webhooks
            .into_iter()
            .filter(|w| w.id != "default")
            .collect();
        channels.push(ChannelSpec {
            name,
            token: Secret::new(draft.token.0),
            source: ChannelSource::Config,
            settings,
            overrides,
            webhooks,
        });
    }
    Loaded {
        channels,
        default_webhook,
    }
}
