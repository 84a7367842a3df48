//! `docs/configuration-reference.md` against the code (issue 23, item 4).
//!
//! Relay: the keys of its tables are exactly the keys `print-config` prints (the same
//! `config::redact::printable` of the same loader) and the keys the environment may set; each
//! default is the effective one; each row names its `WEBHOOK_RELAY_*` variable.
//!
//! Connector: the keys of its tables are exactly the keys the loader reads
//! (`config::load::known_keys`, recorded from the loader itself), and each `CONNECTOR_*`
//! variable the loader maps is named in the row of the key it sets, and no other.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use webhook_connect_protocol::redact::mask_url;
use webhook_relay::config::settings::ChannelOverrides;
use webhook_relay::config::{self as relay_config, LoadOptions};

/// One row of a reference table.
struct Row {
    default: String,
    environment: String,
}

/// The cells of a Markdown table row (`\|` inside a cell is not a separator).
fn cells(line: &str) -> Vec<String> {
    line.replace("\\|", "\u{0}")
        .trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.replace('\u{0}', "|").trim().to_owned())
        .collect()
}

/// The rows of the tables between `## {title}` and the next `## ` heading, by key.
fn rows(title: &str) -> BTreeMap<String, Row> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration-reference.md"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title}"))
        + 1;
    let section = &text[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut rows = BTreeMap::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let c = cells(line);
        assert_eq!(c.len(), 6, "a row has six cells: {line}");
        let key = c[0].trim_matches('`').to_owned();
        let row = Row {
            default: c[2].clone(),
            environment: c[3].clone(),
        };
        assert!(rows.insert(key.clone(), row).is_none(), "{key} twice");
    }
    rows
}

/// The first `…` literal of a cell, as JSON.
fn literal(cell: &str) -> Option<Value> {
    serde_json::from_str(cell.split('`').nth(1)?).ok()
}

/// The variable names (`WEBHOOK_…`, `CONNECTOR_…`) a cell lists.
fn variables(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|v| v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

// ----- relay -----

fn relay_rows() -> BTreeMap<String, Row> {
    let mut rows = rows("Relay");
    rows.retain(|key, _| !key.starts_with("channels[]"));
    rows
}

fn leaves(value: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        other => {
            out.insert(path.to_owned(), other.clone());
        }
    }
}

/// What `webhook-relay print-config` prints with nothing configured, as leaf paths (lists and
/// scalars are leaves), without `channels`.
fn relay_printed_defaults() -> BTreeMap<String, Value> {
    let config = relay_config::load(&LoadOptions::default())
        .unwrap_or_else(|e| panic!("the defaults do not load: {:?}", e.errors));
    let mut out = BTreeMap::new();
    leaves(&relay_config::redact::printable(&config), "", &mut out);
    out.remove("channels");
    out
}

/// The value a channel gets for a `channel_defaults` key when no level sets it.
fn resolved_channel_default(key: &str) -> Value {
    let s = ChannelOverrides::default().resolve("", 10_485_760).unwrap();
    match key {
        "ttl_seconds" => s.ttl_seconds.into(),
        "max_queue_size" => s.max_queue_size.into(),
        "max_message_size" => s.max_message_size.into(),
        "max_in_flight" => s.max_in_flight.into(),
        "max_connections" => s.max_connections.into(),
        "ack_timeout_seconds" => s.ack_timeout_seconds.into(),
        "max_delivery_attempts" => s.max_delivery_attempts.into(),
        "heartbeat_interval_seconds" => s.heartbeat_interval_seconds.into(),
        "ordered" => s.ordered.into(),
        "requeue_delay_initial_ms" => s.requeue_delay_initial_ms.into(),
        "requeue_delay_max_ms" => s.requeue_delay_max_ms.into(),
        "max_lease_seconds" => s.max_lease_seconds.into(),
        "allowed_ips" => s
            .allowed_ips
            .map_or(Value::Null, |l| l.iter().map(|n| n.to_string()).collect()),
        "rate_limit_per_second" => s.rate_limit_per_second.into(),
        other => panic!("channel setting {other} is new: give it a resolved default here"),
    }
}

#[test]
fn relay_reference_lists_exactly_the_printed_keys() {
    let printed: BTreeSet<String> = relay_printed_defaults().into_keys().collect();
    let documented: BTreeSet<String> = relay_rows().into_keys().collect();
    let missing: Vec<_> = printed.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&printed).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/configuration-reference.md lacks {missing:?}; lists keys the relay does not \
         print: {stale:?}"
    );
    let settable: BTreeSet<String> = relay_config::env::known_keys().into_iter().collect();
    assert_eq!(settable, documented, "keys the environment may set");
}

#[test]
fn relay_reference_defaults_are_the_effective_ones() {
    let printed = relay_printed_defaults();
    let mut wrong = Vec::new();
    for (key, row) in relay_rows() {
        let Some(documented) = literal(&row.default) else {
            wrong.push(format!("{key}: no JSON literal in {:?}", row.default));
            continue;
        };
        let effective = match key.strip_prefix("channel_defaults.") {
            Some(setting) => resolved_channel_default(setting),
            None => printed[&key].clone(),
        };
        // Secrets print masked: "***" whole, or a URL with its password masked.
        let shown = match &documented {
            Value::String(_) if effective == "***" => effective.clone(),
            Value::String(s) => Value::String(mask_url(s)),
            other => other.clone(),
        };
        if shown != effective {
            wrong.push(format!(
                "{key}: documented {documented}, effective {effective}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn relay_reference_names_the_variable_of_every_key() {
    for (key, row) in relay_rows() {
        let variable = format!(
            "WEBHOOK_RELAY_{}",
            key.to_ascii_uppercase().replace('.', "__")
        );
        assert!(
            variables(&row.environment).contains(&variable),
            "{key}: {:?} lacks {variable}",
            row.environment
        );
    }
}

// ----- connector -----

/// The connector rows, `<target>.k` expanded to every place a target object stands.
fn connector_rows() -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    for (key, row) in rows("Connector") {
        match key.strip_prefix("<target>.") {
            Some(k) => {
                for place in [
                    "default_target",
                    "targets.*",
                    "channels[].default_target",
                    "channels[].targets.*",
                ] {
                    let environment = if place == "default_target" {
                        row.environment.clone()
                    } else {
                        String::new()
                    };
                    out.insert(
                        format!("{place}.{k}"),
                        Row {
                            default: row.default.clone(),
                            environment,
                        },
                    );
                }
            }
            None => {
                out.insert(key, row);
            }
        }
    }
    out
}

#[test]
fn connector_reference_lists_exactly_the_keys_the_loader_reads() {
    let read = webhook_connector::config::load::known_keys();
    assert!(
        read.contains("cloud_url") && read.contains("targets.*.url"),
        "{read:?}"
    );
    let documented: BTreeSet<String> = connector_rows().into_keys().collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/configuration-reference.md lacks {missing:?}; lists keys the connector does not \
         read: {stale:?}"
    );
}

#[test]
fn connector_reference_names_each_variable_in_the_row_of_its_key() {
    let rows = connector_rows();
    let mapped = webhook_connector::config::load::environment_variables();
    for (variable, key) in &mapped {
        let row = rows
            .get(key)
            .unwrap_or_else(|| panic!("{variable} sets {key}, which has no row"));
        assert!(
            variables(&row.environment).contains(*variable),
            "{key}: {:?} lacks {variable}",
            row.environment
        );
    }
    let known: BTreeSet<&str> = mapped.iter().map(|(v, _)| *v).collect();
    for (key, row) in &rows {
        for variable in variables(&row.environment) {
            assert!(
                known.contains(variable.as_str()),
                "{key} names {variable}, which the connector does not read"
            );
        }
    }
}
