//! Reading method blocks of a webhook entry with path-naming errors (`docs/reference/config-formats.md` §1).

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::{Secret, lenient};

/// Collects load errors and warnings while a webhook entry is read.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// True when a value counts as an empty block: `{}`, `""`, `[]` or `null`.
pub(crate) fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// One method block (an object) under `path` (e.g. `webhooks.json: stripe.hmac`).
pub(crate) struct Block<'a> {
    pub path: String,
    pub map: &'a Map<String, Value>,
}

impl<'a> Block<'a> {
    /// Reads `entry[key]` as an object block; reports a type error otherwise.
    pub fn object(
        parent: &str,
        key: &str,
        value: &'a Value,
        diag: &mut Diagnostics,
    ) -> Option<Block<'a>> {
        let path = format!("{parent}.{key}");
        match value {
            Value::Object(map) => Some(Block { path, map }),
            _ => {
                diag.errors.push(format!("{path}: expected an object"));
                None
            }
        }
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// Warns about keys that are not in `known` (tolerated, as in the original format).
    pub fn warn_unknown(&self, known: &[&str], diag: &mut Diagnostics) {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                diag.warnings
                    .push(format!("{}: unknown key, ignored", self.field(k)));
            }
        }
    }

    /// True when the key is present and not `null`.
    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// An optional string (`null` counts as absent).
    pub fn opt_str(&self, key: &str, diag: &mut Diagnostics) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                diag.errors
                    .push(format!("{}: expected a string", self.field(key)));
                None
            }
        }
    }

    /// A required non-empty string.
    pub fn req_str(&self, key: &str, diag: &mut Diagnostics) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                diag.errors
                    .push(format!("{}: missing field", self.field(key)));
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                diag.errors
                    .push(format!("{}: must not be empty", self.field(key)));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                diag.errors
                    .push(format!("{}: expected a string", self.field(key)));
                None
            }
        }
    }

    /// A required non-empty secret. Type errors never echo the value.
    pub fn req_secret(&self, key: &str, diag: &mut Diagnostics) -> Option<Secret> {
        self.req_str(key, diag).map(Secret::new)
    }

    /// An optional secret (empty counts as absent).
    pub fn opt_secret(&self, key: &str, diag: &mut Diagnostics) -> Option<Secret> {
        self.opt_str(key, diag)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    }

    /// A boolean (lenient, `docs/reference/config-formats.md` §1.2) with a default.
    pub fn bool(&self, key: &str, default: bool, diag: &mut Diagnostics) -> bool {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => match lenient::bool(v) {
                Ok(b) => b,
                Err(_) => {
                    diag.errors
                        .push(format!("{}: expected a boolean", self.field(key)));
                    default
                }
            },
        }
    }

    /// An integer in `lo..=hi` (lenient) with a default.
    pub fn u64_in(&self, key: &str, default: u64, lo: u64, hi: u64, diag: &mut Diagnostics) -> u64 {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => match lenient::u64(v) {
                Ok(n) if (lo..=hi).contains(&n) => n,
                Ok(n) => {
                    diag.errors.push(format!(
                        "{}: must be between {lo} and {hi}, got {n}",
                        self.field(key)
                    ));
                    default
                }
                Err(_) => {
                    diag.errors
                        .push(format!("{}: expected an integer", self.field(key)));
                    default
                }
            },
        }
    }

    /// A number in `lo..=hi` (lenient) with a default.
    pub fn f64_in(&self, key: &str, default: f64, lo: f64, hi: f64, diag: &mut Diagnostics) -> f64 {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => match lenient::f64(v) {
                Ok(n) if n >= lo && n <= hi => n,
                Ok(n) => {
                    diag.errors.push(format!(
                        "{}: must be between {lo} and {hi}, got {n}",
                        self.field(key)
                    ));
                    default
                }
                Err(_) => {
                    diag.errors
                        .push(format!("{}: expected a number", self.field(key)));
                    default
                }
            },
        }
    }

    /// A list of strings, or one space-separated string when `split_string` is set.
    pub fn str_list(&self, key: &str, split_string: bool, diag: &mut Diagnostics) -> Vec<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => str_list(&self.field(key), v, split_string, diag),
        }
    }

    /// Records an error on a field of this block.
    pub fn error(&self, key: &str, problem: impl std::fmt::Display, diag: &mut Diagnostics) {
        diag.errors.push(format!("{}: {problem}", self.field(key)));
    }
}

/// A list of strings at `path`, or one space-separated string when `split_string` is set.
pub(crate) fn str_list(
    path: &str,
    v: &Value,
    split_string: bool,
    diag: &mut Diagnostics,
) -> Vec<String> {
    match v {
        Value::String(s) if split_string => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    _ => diag.errors.push(format!("{path}[{i}]: expected a string")),
                }
            }
            out
        }
        _ => {
            diag.errors
                .push(format!("{path}: expected a list of strings"));
            Vec::new()
        }
    }
}
