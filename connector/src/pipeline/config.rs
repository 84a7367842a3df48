//! Module mode configuration (`docs/reference/config-formats.md` §4.7, `docs/reference/module-contract.md` §5): `webhooks.json` and
//! `connections.json` read, substituted once and validated into plain data, with every problem
//! reported with its file and path. Instances are built from this by the pipeline.
//!
//! The original formats are lenient: unknown keys of an entry are warnings, the relay's keys
//! (authentication, channel settings) are ignored silently, and unknown module-config keys are
//! the module's to warn about. Chains are strict (§5.1).

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::substitute;
use webhook_connect_protocol::credentials::AUTH_KEYS;

use crate::output::registry;
use crate::pipeline::retry::ModuleRetry;
use crate::settings::Problems;
use crate::settings::Reader;

/// Keys of a webhook entry besides the authentication keys ([`AUTH_KEYS`]) that the relay reads
/// and the connector ignores without a warning.
const RELAY_KEYS: &[&str] = &[
    "credential_cleanup",
    "include_message_id",
    "channel",
    "channel_token",
];

/// Legacy webhook-level fallbacks a chain item may carry (§5.2 rule 5).
const LEGACY_KEYS: &[&str] = &["topic", "queue_name", "destination"];

/// Most items in a chain.
pub const MAX_CHAIN_ITEMS: usize = 20;

/// `chain-config` (§5.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSettings {
    /// `execution: "parallel"` (default sequential).
    pub parallel: bool,
    /// `continue_on_error` (default true).
    pub continue_on_error: bool,
    /// `timeout` (default 30 s, (0, 3600]): bounds the whole chain run in both modes.
    pub timeout: Duration,
}

impl Default for ChainSettings {
    fn default() -> Self {
        ChainSettings {
            parallel: false,
            continue_on_error: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One module instance to build: a webhook's single module or one chain item (§5.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemConfig {
    /// Position in the chain (0 for a single module).
    pub index: usize,
    /// Canonical module name.
    pub module: &'static str,
    /// Where it is configured, e.g. `webhooks.json: orders.chain[1]`.
    pub path: String,
    /// The merged `module-config`.
    pub module_config: Map<String, Value>,
    /// The `connections.json` entry name (the item's, else the webhook's).
    pub connection_name: Option<String>,
    /// That entry, substituted.
    pub connection: Option<Map<String, Value>>,
    /// The webhook entry, with the item's legacy keys on top.
    pub webhook: Map<String, Value>,
    /// The item's `retry`, else the webhook's.
    pub retry: ModuleRetry,
    /// Hash of everything above that shapes what the item does (partial completion, §5.4).
    pub fingerprint: u64,
}

/// One `webhooks.json` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryConfig {
    /// Webhook id (`default` catches the others).
    pub id: String,
    /// `webhooks.json: <id>`.
    pub path: String,
    /// `data_type: "blob"`: modules receive the raw body as the payload text.
    pub blob: bool,
    /// The chain settings; `None` for a single module.
    pub chain: Option<ChainSettings>,
    /// The module, or the chain items in order.
    pub items: Vec<ItemConfig>,
}

/// The validated module mode of one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleModeConfig {
    /// Entries by webhook id.
    pub entries: BTreeMap<String, EntryConfig>,
    /// `outbound_policy: strict`.
    pub outbound_strict: bool,
}

impl ModuleModeConfig {
    /// The entry for `webhook_id`, falling back to `default` (§1 rule 3).
    pub fn entry_for(&self, webhook_id: &str) -> Option<&EntryConfig> {
        self.entries
            .get(webhook_id)
            .or_else(|| self.entries.get("default"))
    }
}

fn label_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads a JSON object file and substitutes it; problems are recorded.
fn read_object(
    path: &Path,
    key: &str,
    label: &str,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<Map<String, Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            p.error(format!(
                "{label}: cannot read {} (given by {key}): {e}",
                path.display()
            ));
            return None;
        }
    };
    let mut value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            p.error(format!("{label}: invalid JSON: {e}"));
            return None;
        }
    };
    if let Err(errors) = substitute(&mut value, "", env) {
        for e in errors {
            p.error(format!("{label}: {e}"));
        }
        return None;
    }
    match value {
        Value::Object(map) => Some(map),
        _ => {
            p.error(format!("{label}: the top level must be an object"));
            None
        }
    }
}

/// Loads `webhooks_config` (and `connections_config`) for one channel.
pub fn load(
    webhooks: &Path,
    connections: Option<&Path>,
    outbound_strict: bool,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<ModuleModeConfig> {
    let wlabel = label_of(webhooks);
    let webhooks_map = read_object(webhooks, "webhooks_config", &wlabel, env, p);
    let connections_map = match connections {
        Some(path) => read_object(path, "connections_config", &label_of(path), env, p),
        None => Some(Map::new()),
    };
    let (webhooks_map, connections_map) = (webhooks_map?, connections_map?);
    let clabel = connections.map_or_else(|| "connections.json".to_owned(), label_of);
    check_connections(&connections_map, &clabel, p);
    let mut entries = BTreeMap::new();
    if webhooks_map.is_empty() {
        p.error(format!("{wlabel}: no webhook entries"));
    }
    for (id, value) in &webhooks_map {
        let path = format!("{wlabel}: {id}");
        let Value::Object(entry) = value else {
            p.error(format!("{path}: expected an object, got {value}"));
            continue;
        };
        if let Some(e) = entry_config(id, entry, path, &connections_map, p) {
            entries.insert(id.clone(), e);
        }
    }
    Some(ModuleModeConfig {
        entries,
        outbound_strict,
    })
}

fn check_connections(connections: &Map<String, Value>, label: &str, p: &mut Problems) {
    for (name, value) in connections {
        let path = format!("{label}: {name}");
        match value {
            Value::Object(c) => match c.get("type") {
                Some(Value::String(t)) if !t.is_empty() => {}
                Some(other) => p.error(format!("{path}.type: expected a string, got {other}")),
                None => p.error(format!("{path}.type: missing field")),
            },
            other => p.error(format!("{path}: expected an object, got {other}")),
        }
    }
}

fn entry_config(
    id: &str,
    entry: &Map<String, Value>,
    path: String,
    connections: &Map<String, Value>,
    p: &mut Problems,
) -> Option<EntryConfig> {
    let mut r = Reader::detached(entry, path.clone());
    let module = r.string(p, "module");
    let module_config = match r.object(p, "module-config") {
        Some(m) => m.clone(),
        None => Map::new(),
    };
    let connection_name = r.string(p, "connection");
    if let Some(name) = &connection_name {
        resolve_connection(&r, p, "connection", name, connections);
    }
    let retry = ModuleRetry::parse(
        entry.get("retry").unwrap_or(&Value::Null),
        &r.path_of("retry"),
        p,
    );
    r.get("retry");
    let blob = r.choice(p, "data_type", "json", &["json", "blob"]) == "blob";
    for key in LEGACY_KEYS.iter().chain(&["redis"]) {
        r.get(key);
    }
    let chain = r.get("chain");
    let chain_config = r.get("chain-config");
    for key in AUTH_KEYS.iter().chain(RELAY_KEYS) {
        r.get(key);
    }
    r.finish(p, false);

    let base = ItemBase {
        entry,
        module_config: &module_config,
        connection_name: connection_name.as_deref(),
        connections,
        retry: &retry,
    };
    // A chain wins over `module` unless it is empty (§5.1).
    let chain_items = match chain {
        None => None,
        Some(Value::Array(items)) if items.is_empty() && module.is_some() => None,
        Some(Value::Array(items)) if items.is_empty() => {
            r.error(p, "chain", "must list 1 to 20 items (or set `module`)");
            return None;
        }
        Some(Value::Array(items)) if items.len() > MAX_CHAIN_ITEMS => {
            r.error(
                p,
                "chain",
                format!(
                    "must list at most {MAX_CHAIN_ITEMS} items, got {}",
                    items.len()
                ),
            );
            return None;
        }
        Some(Value::Array(items)) => Some(items),
        Some(other) => {
            r.error(p, "chain", format!("expected a list, got {other}"));
            return None;
        }
    };
    match chain_items {
        Some(items) => {
            let settings = chain_settings(chain_config, &r.path_of("chain-config"), p);
            let mut built = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match chain_item(i, item, &format!("{path}.chain[{i}]"), &base, p) {
                    Some(it) => built.push(it),
                    None => ok = false,
                }
            }
            ok.then(|| EntryConfig {
                id: id.to_owned(),
                path,
                blob,
                chain: Some(settings),
                items: built,
            })
        }
        None => {
            if chain_config.is_some() {
                r.warn(p, "chain-config", "ignored without a chain");
            }
            let Some(name) = module else {
                r.error(p, "module", "missing field (or `chain`)");
                return None;
            };
            let module = match registry::resolve(&name) {
                Ok(m) => m,
                Err(e) => {
                    r.error(p, "module", e);
                    return None;
                }
            };
            let item = item_config(0, module, path.clone(), &base, ItemOwn::default());
            Some(EntryConfig {
                id: id.to_owned(),
                path,
                blob,
                chain: None,
                items: vec![item],
            })
        }
    }
}

fn resolve_connection<'c>(
    r: &Reader<'_>,
    p: &mut Problems,
    key: &str,
    name: &str,
    connections: &'c Map<String, Value>,
) -> Option<&'c Map<String, Value>> {
    match connections.get(name) {
        Some(Value::Object(c)) => Some(c),
        Some(_) => None, // reported by check_connections
        None => {
            r.error(
                p,
                key,
                format!("unknown connection {name:?} (not in connections.json)"),
            );
            None
        }
    }
}

fn chain_settings(value: Option<&Value>, path: &str, p: &mut Problems) -> ChainSettings {
    let mut s = ChainSettings::default();
    let Some(value) = value else {
        return s;
    };
    let Value::Object(map) = value else {
        p.error(format!("{path}: expected an object, got {value}"));
        return s;
    };
    let mut r = Reader::detached(map, path.to_owned());
    s.parallel = r.choice(p, "execution", "sequential", &["sequential", "parallel"]) == "parallel";
    s.continue_on_error = r.boolean(p, "continue_on_error", true);
    let t = r.number_in(
        p,
        "timeout",
        30.0,
        |n| n > 0.0 && n <= 3600.0,
        "in (0, 3600]",
    );
    s.timeout = Duration::from_secs_f64(t);
    for key in map.keys() {
        if !["execution", "continue_on_error", "timeout"].contains(&key.as_str()) {
            p.error(format!(
                "{path}: unknown field '{key}' (allowed: continue_on_error, execution, timeout)"
            ));
        }
    }
    s
}

/// What every item of one entry starts from (§5.2 rule 1).
struct ItemBase<'a> {
    entry: &'a Map<String, Value>,
    module_config: &'a Map<String, Value>,
    connection_name: Option<&'a str>,
    connections: &'a Map<String, Value>,
    retry: &'a ModuleRetry,
}

fn chain_item(
    index: usize,
    item: &Value,
    path: &str,
    base: &ItemBase<'_>,
    p: &mut Problems,
) -> Option<ItemConfig> {
    let resolve = |name: &str, p: &mut Problems, at: &str| match registry::resolve(name) {
        Ok(m) => Some(m),
        Err(e) => {
            p.error(format!("{at}: {e}"));
            None
        }
    };
    match item {
        Value::String(name) => {
            let module = resolve(name, p, path)?;
            Some(item_config(
                index,
                module,
                path.to_owned(),
                base,
                ItemOwn::default(),
            ))
        }
        Value::Object(map) => {
            let mut r = Reader::detached(map, path.to_owned());
            let name = r.string(p, "module");
            let connection = r.string(p, "connection");
            if let Some(c) = &connection {
                resolve_connection(&r, p, "connection", c, base.connections);
            }
            let own_config = r.object(p, "module-config");
            let retry = map
                .get("retry")
                .map(|v| ModuleRetry::parse(v, &r.path_of("retry"), p));
            r.get("retry");
            let mut legacy = Map::new();
            for key in LEGACY_KEYS {
                if let Some(v) = r.get(key) {
                    if own_config.is_some_and(|c| c.contains_key(*key)) {
                        r.error(
                            p,
                            key,
                            format!("also set in module-config.{key}; set it in one place"),
                        );
                    }
                    legacy.insert((*key).to_owned(), v.clone());
                }
            }
            // Chains are validated strictly (§5.1).
            r.finish(p, true);
            let Some(name) = name else {
                r.error(p, "module", "missing field");
                return None;
            };
            let module = resolve(&name, p, &r.path_of("module"))?;
            let own = ItemOwn {
                connection: connection.as_deref(),
                module_config: own_config,
                retry,
                legacy,
            };
            Some(item_config(index, module, path.to_owned(), base, own))
        }
        other => {
            p.error(format!(
                "{path}: expected a module name or an object, got {other}"
            ));
            None
        }
    }
}

/// What a chain item sets itself, on top of the entry (§5.2 rules 3–6).
#[derive(Default)]
struct ItemOwn<'a> {
    connection: Option<&'a str>,
    module_config: Option<&'a Map<String, Value>>,
    retry: Option<ModuleRetry>,
    legacy: Map<String, Value>,
}

fn item_config(
    index: usize,
    module: &'static str,
    path: String,
    base: &ItemBase<'_>,
    own: ItemOwn<'_>,
) -> ItemConfig {
    let mut module_config = base.module_config.clone();
    if let Some(own) = own.module_config {
        for (k, v) in own {
            module_config.insert(k.clone(), v.clone());
        }
    }
    let connection_name = own.connection.or(base.connection_name).map(str::to_owned);
    let connection_map = connection_name
        .as_deref()
        .and_then(|n| base.connections.get(n))
        .and_then(Value::as_object)
        .cloned();
    let mut webhook = base.entry.clone();
    webhook.insert("module".into(), Value::String(module.to_owned()));
    let retry = own.retry.unwrap_or_else(|| base.retry.clone());
    for (k, v) in own.legacy {
        webhook.insert(k, v);
    }
    let mut h = DefaultHasher::new();
    module.hash(&mut h);
    Value::Object(module_config.clone())
        .to_string()
        .hash(&mut h);
    connection_name.hash(&mut h);
    connection_map
        .as_ref()
        .map(|c| Value::Object(c.clone()).to_string())
        .hash(&mut h);
    for key in LEGACY_KEYS {
        webhook.get(*key).map(Value::to_string).hash(&mut h);
    }
    ItemConfig {
        index,
        module,
        path,
        module_config,
        connection_name,
        connection: connection_map,
        webhook,
        retry,
        fingerprint: h.finish(),
    }
}
