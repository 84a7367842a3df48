//! Reads typed values out of one JSON object, recording every problem with its field path and
//! its source (file, environment variable or flag). Numbers and booleans given as strings are
//! accepted when they parse completely (`docs/reference/config-formats.md` §1.2).

use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::lenient::parse_bool;

use super::Problems;

/// Where each overridden path came from; paths not listed come from `default_source`.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub(crate) default_source: String,
    pub(crate) by_path: HashMap<String, String>,
    /// When set, every key path a reader asks for is recorded here (whether the document has it
    /// or not): the keys the loader knows, which the configuration reference must list.
    pub(crate) asked: Option<Mutex<BTreeSet<String>>>,
}

impl Origins {
    pub(crate) fn source_of(&self, path: &str) -> &str {
        self.by_path
            .get(path)
            .map(String::as_str)
            .unwrap_or(&self.default_source)
    }
}

/// Origins of readers whose path already names the file.
static DETACHED: LazyLock<Origins> = LazyLock::new(Origins::default);

/// Joins an object path and a key.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) path: String,
    origins: &'a Origins,
    known: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, path: String, origins: &'a Origins) -> Self {
        Reader {
            map,
            path,
            origins,
            known: Vec::new(),
        }
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A reader whose `path` already names its file (`webhooks.json: orders.module-config`),
    /// as module builders use.
    pub(crate) fn detached(map: &'a Map<String, Value>, path: String) -> Self {
        Self::new(map, path, &DETACHED)
    }

    fn located(&self, key: &str, message: &str) -> String {
        let path = self.path_of(key);
        match self.origins.source_of(&path) {
            "" => format!("{path}: {message}"),
            source => format!("{source}: {path}: {message}"),
        }
    }

    pub(crate) fn error(&self, problems: &mut Problems, key: &str, message: impl AsRef<str>) {
        problems.error(self.located(key, message.as_ref()));
    }

    pub(crate) fn warn(&self, problems: &mut Problems, key: &str, message: impl AsRef<str>) {
        problems.warn(self.located(key, message.as_ref()));
    }

    /// The raw value of `key`; null counts as absent. Marks the key as known.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        if let Some(Ok(mut asked)) = self.origins.asked.as_ref().map(Mutex::lock) {
            asked.insert(self.path_of(key));
        }
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn string(&mut self, p: &mut Problems, key: &'static str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error(p, key, format!("expected a string, got {other}"));
                None
            }
        }
    }

    /// A required string that `problem` accepts (it says why a value is refused), else `None`
    /// with an error: "missing field" when neither the key nor `fallback` gives one, or the
    /// value quoted with the reason.
    #[cfg_attr(
        not(any(
            feature = "nats",
            feature = "gcp_pubsub",
            feature = "s3",
            feature = "kafka"
        )),
        allow(dead_code)
    )] // only nats, gcp_pubsub, s3 and kafka use it
    pub(crate) fn checked_string<W: std::fmt::Display>(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        fallback: Option<String>,
        problem: impl Fn(&str) -> Option<W>,
    ) -> Option<String> {
        match self.string(p, key).or(fallback) {
            Some(v) => match problem(&v) {
                Some(why) => {
                    self.error(p, key, format!("{v:?} {why}"));
                    None
                }
                None => Some(v),
            },
            None => {
                if self.get(key).is_none() {
                    self.error(p, key, "missing field");
                }
                None
            }
        }
    }

    pub(crate) fn number(&mut self, p: &mut Problems, key: &'static str) -> Option<f64> {
        let v = self.get(key)?;
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        if parsed.is_none() {
            self.error(p, key, format!("expected a number, got {v}"));
        }
        parsed
    }

    /// A number checked against `ok`; `rule` describes the range in the error.
    pub(crate) fn number_in(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        default: f64,
        ok: impl Fn(f64) -> bool,
        rule: &str,
    ) -> f64 {
        match self.number(p, key) {
            Some(n) if ok(n) => n,
            Some(n) => {
                self.error(p, key, format!("must be {rule}, got {n}"));
                default
            }
            None => default,
        }
    }

    /// A number that is clamped (with a warning) instead of rejected.
    pub(crate) fn number_clamped(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        default: f64,
        min: f64,
        max: f64,
    ) -> f64 {
        match self.number(p, key) {
            Some(n) if n < min || n > max => {
                let c = n.clamp(min, max);
                self.warn(p, key, format!("{n} is outside {min}–{max}; using {c}"));
                c
            }
            Some(n) => n,
            None => default,
        }
    }

    pub(crate) fn integer(&mut self, p: &mut Problems, key: &'static str) -> Option<i64> {
        let v = self.get(key)?;
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(p, key, format!("expected an integer, got {v}"));
        }
        parsed
    }

    pub(crate) fn integer_in(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        match self.integer(p, key) {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.error(
                    p,
                    key,
                    format!("must be an integer between {min} and {max}, got {n}"),
                );
                default
            }
            None => default,
        }
    }

    pub(crate) fn boolean(&mut self, p: &mut Problems, key: &'static str, default: bool) -> bool {
        let Some(v) = self.get(key) else {
            return default;
        };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s.trim()),
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            self.error(p, key, format!("expected a boolean, got {v}"));
            default
        })
    }

    pub(crate) fn object(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Option<&'a Map<String, Value>> {
        match self.get(key)? {
            Value::Object(m) => Some(m),
            other => {
                self.error(p, key, format!("expected an object, got {other}"));
                None
            }
        }
    }

    /// One of `allowed` (exact spelling); `default` when absent.
    pub(crate) fn choice(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        default: &'static str,
        allowed: &[&'static str],
    ) -> &'static str {
        let Some(text) = self.string(p, key) else {
            return default;
        };
        match allowed.iter().find(|a| **a == text) {
            Some(a) => a,
            None => {
                self.error(
                    p,
                    key,
                    format!("must be one of {}, got {text:?}", allowed.join(", ")),
                );
                default
            }
        }
    }

    /// A list of strings.
    pub(crate) fn string_list(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Option<Vec<String>> {
        match self.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            self.error(
                                p,
                                &format!("{key}[{i}]"),
                                format!("expected a string, got {other}"),
                            );
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.error(p, key, format!("expected a list of strings, got {other}"));
                None
            }
        }
    }

    /// An object whose values are strings (numbers and booleans are taken as their text), in
    /// key order.
    pub(crate) fn string_map(
        &mut self,
        p: &mut Problems,
        key: &'static str,
    ) -> Option<Vec<(String, String)>> {
        let map = self.object(p, key)?;
        let mut out = Vec::with_capacity(map.len());
        for (name, value) in map {
            match value {
                Value::String(s) => out.push((name.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) => out.push((name.clone(), value.to_string())),
                other => self.error(
                    p,
                    &format!("{key}.{name}"),
                    format!("expected a string, got {other}"),
                ),
            }
        }
        Some(out)
    }

    /// Reports the keys nobody asked for: errors when `strict`, warnings otherwise.
    pub(crate) fn finish(&self, p: &mut Problems, strict: bool) {
        for key in self.map.keys() {
            if self.known.iter().any(|k| k == key) {
                continue;
            }
            if strict {
                self.error(p, key, "unknown key");
            } else {
                self.warn(p, key, "unknown key (ignored)");
            }
        }
    }
}
