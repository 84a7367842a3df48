//! Rules shared by every configuration file of both binaries (`docs/reference/config-formats.md` §1.2, §5):
//! `{$VAR}` substitution, numbers and booleans written as strings, and secret values.
//!
//! Files are parsed (JSON, or TOML converted to JSON values) into a [`serde_json::Value`],
//! substituted once with [`substitute`], then deserialised into typed structs whose numeric and
//! boolean fields use the [`lenient`] helpers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Deepest nesting substitution walks into.
pub const MAX_DEPTH: usize = 100;

/// One substitution problem, with the field path it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SubstitutionError {
    /// Field path, e.g. `stripe.hmac.secret` or `channels[0].token`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Replaces `{$NAME}`, `{$NAME:default}` and `{$$` in every string value (never in keys) of
/// `value`, using `lookup` for variables. All problems are reported, each with its path.
///
/// ```
/// use webhook_connect_protocol::config_values::substitute;
/// let mut v = serde_json::json!({"url": "redis://{$HOST:127.0.0.1}:6379", "p": "{$P}"});
/// let env = |name: &str| (name == "P").then(|| "pa$$w0rd(1)/../x".to_string());
/// substitute(&mut v, "", &env).unwrap();
/// assert_eq!(v["url"], "redis://127.0.0.1:6379");
/// assert_eq!(v["p"], "pa$$w0rd(1)/../x");
/// ```
pub fn substitute(
    value: &mut Value,
    root_path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<SubstitutionError>> {
    let mut errors = Vec::new();
    walk(value, root_path.to_owned(), 0, lookup, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    value: &mut Value,
    path: String,
    depth: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<SubstitutionError>,
) {
    if depth > MAX_DEPTH {
        errors.push(SubstitutionError {
            path,
            message: "nested deeper than 100 levels".into(),
        });
        return;
    }
    match value {
        Value::String(text) => match substitute_str(text, lookup) {
            Ok(Some(new)) => *text = new,
            Ok(None) => {}
            Err(message) => errors.push(SubstitutionError { path, message }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), depth + 1, lookup, errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, join(&path, key), depth + 1, lookup, errors);
            }
        }
        _ => {}
    }
}

fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

fn resolve(
    name: &str,
    default: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if name == "vault" {
        return Err("vault: placeholders need a build with the `vault` feature".into());
    }
    match (lookup(name), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(format!("environment variable {name} is not set")),
    }
}

/// Substitutes one string. `Ok(None)` when it holds no placeholder and no `{$$`.
pub fn substitute_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    if !text.contains("{$") {
        return Ok(None);
    }
    // Whole-string placeholder with a default: the default runs to the final `}` (so it may
    // hold `}`), unless it holds another placeholder, in which case the string is read as
    // embedded placeholders.
    if let Some(rest) = text.strip_prefix("{$") {
        let n = name_len(rest);
        if n > 0 && rest[n..].starts_with(':') && text.ends_with('}') {
            let default = &rest[n + 1..rest.len() - 1];
            if !default.contains("{$") {
                return resolve(&rest[..n], Some(default), lookup).map(Some);
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{$") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push_str("{$");
            rest = tail;
            continue;
        }
        let n = name_len(after);
        let name = &after[..n];
        let tail = &after[n..];
        if n > 0 && tail.starts_with('}') {
            out.push_str(&resolve(name, None, lookup)?);
            rest = &tail[1..];
        } else if n > 0 && tail.starts_with(':') {
            let Some(end) = tail.find('}') else {
                return Err(format!("unterminated placeholder {{${name}:…"));
            };
            out.push_str(&resolve(name, Some(&tail[1..end]), lookup)?);
            rest = &tail[end + 1..];
        } else {
            // `{$` not followed by a valid placeholder: kept as written.
            out.push_str("{$");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// A secret value: `Debug` and `Display` print `***`; serialising writes `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The secret held by the contents of an `X_file`: exactly one trailing `\n` or `\r\n` is
/// removed, nothing else (the caller reads the file; this crate does no I/O).
pub fn secret_from_file_text(mut text: String) -> Secret {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    Secret(text)
}

/// Deserialisers for numbers and booleans that also accept a string holding one (§1.2).
///
/// Use with `#[serde(deserialize_with = "lenient::u64")]` (and `default` as needed).
pub mod lenient {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    /// Parses a boolean text: `true/false/1/0/yes/no/on/off`, any case.
    pub fn parse_bool(text: &str) -> Option<bool> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }

    fn to_u64(v: &Value) -> Option<u64> {
        match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.starts_with('+') => s.parse().ok(),
            _ => None,
        }
    }

    fn to_i64(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if !s.starts_with('+') => s.parse().ok(),
            _ => None,
        }
    }

    fn to_f64(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    fn to_bool(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s),
            _ => None,
        }
    }

    /// A non-negative integer, or a string holding one.
    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = value(d)?;
        to_u64(&v)
            .ok_or_else(|| D::Error::custom(format!("expected a non-negative integer, got {v}")))
    }

    /// An integer, or a string holding one.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let v = value(d)?;
        to_i64(&v).ok_or_else(|| D::Error::custom(format!("expected an integer, got {v}")))
    }

    /// A number, or a string holding one.
    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = value(d)?;
        to_f64(&v).ok_or_else(|| D::Error::custom(format!("expected a number, got {v}")))
    }

    /// A boolean, or a string holding one.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let v = value(d)?;
        to_bool(&v).ok_or_else(|| D::Error::custom(format!("expected a boolean, got {v}")))
    }

    /// Like [`u64()`](fn@u64), `null` giving `None`.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let v = value(d)?;
        if v.is_null() {
            return Ok(None);
        }
        to_u64(&v).map(Some).ok_or_else(|| {
            D::Error::custom(format!("expected a non-negative integer or null, got {v}"))
        })
    }

    /// Like [`bool()`](fn@bool), `null` giving `None`.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let v = value(d)?;
        if v.is_null() {
            return Ok(None);
        }
        to_bool(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a boolean or null, got {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "P" => Some("pa$$w0rd(1)/../x".into()),
            "EMPTY" => Some(String::new()),
            "PG_PORT" => Some("5433".into()),
            "NESTED" => Some("{$P}".into()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<Option<String>, String> {
        substitute_str(text, &env)
    }

    #[test]
    fn substitution_is_verbatim_r111() {
        assert_eq!(sub("{$P}").unwrap().unwrap(), "pa$$w0rd(1)/../x");
        assert_eq!(sub("x-{$P}-y").unwrap().unwrap(), "x-pa$$w0rd(1)/../x-y");
    }

    #[test]
    fn defaults_apply_only_when_unset() {
        assert_eq!(sub("{$UNSET:dflt}").unwrap().unwrap(), "dflt");
        assert_eq!(sub("{$EMPTY:dflt}").unwrap().unwrap(), "");
        assert_eq!(sub("{$UNSET:}").unwrap().unwrap(), "");
        assert_eq!(sub("a{$UNSET:b}c}").unwrap().unwrap(), "abc}");
        // Whole-string: the default runs to the final brace.
        assert_eq!(sub("{$UNSET:x}y}").unwrap().unwrap(), "x}y");
        assert_eq!(
            sub("redis://{$UNSET:127.0.0.1}:6379/0").unwrap().unwrap(),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(sub("{$UNSET:a}-{$PG_PORT}").unwrap().unwrap(), "a-5433");
    }

    #[test]
    fn missing_variables_are_errors_naming_them_r112() {
        assert_eq!(
            sub("{$STRIPE_SECRET}").unwrap_err(),
            "environment variable STRIPE_SECRET is not set"
        );
        assert_eq!(
            sub("pre-{$STRIPE_SECRET}-post").unwrap_err(),
            "environment variable STRIPE_SECRET is not set"
        );
        let mut v = json!({"stripe": {"hmac": {"secret": "{$STRIPE_SECRET}"}}, "list": ["{$A1}"]});
        let errors = substitute(&mut v, "", &env).unwrap_err();
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            vec![
                "stripe.hmac.secret: environment variable STRIPE_SECRET is not set",
                "list[0]: environment variable A1 is not set"
            ]
        );
    }

    #[test]
    fn no_recursion_and_escapes() {
        assert_eq!(sub("{$NESTED}").unwrap().unwrap(), "{$P}");
        assert_eq!(sub("{$${$P}").unwrap().unwrap(), "{$pa$$w0rd(1)/../x");
        assert_eq!(sub("plain").unwrap(), None);
        assert_eq!(sub("{$ not a var").unwrap().unwrap(), "{$ not a var");
        assert!(sub("{$vault:kv/x#y}").unwrap_err().contains("vault"));
        assert!(
            sub("{$A:unterminated")
                .unwrap_err()
                .contains("unterminated")
        );
    }

    #[test]
    fn keys_are_never_substituted_and_depth_is_bounded() {
        let mut v = json!({"{$P}": "{$PG_PORT}"});
        substitute(&mut v, "f", &env).unwrap();
        assert_eq!(v, json!({"{$P}": "5433"}));
        let mut deep = json!("x");
        for _ in 0..101 {
            deep = json!([deep]);
        }
        let errors = substitute(&mut deep, "", &env).unwrap_err();
        assert!(errors[0].message.contains("100"));
    }

    #[derive(Debug, Deserialize)]
    struct Port {
        #[serde(deserialize_with = "lenient::u64")]
        port: u64,
        #[serde(deserialize_with = "lenient::bool")]
        tls: bool,
        #[serde(default, deserialize_with = "lenient::opt_u64")]
        limit: Option<u64>,
    }

    #[test]
    fn substituted_numbers_and_booleans_are_usable_r113() {
        let mut v = json!({"port": "{$PG_PORT}", "tls": "Yes", "limit": null});
        substitute(&mut v, "", &env).unwrap();
        let p: Port = serde_json::from_value(v).unwrap();
        assert_eq!((p.port, p.tls, p.limit), (5433, true, None));
        let bad: Result<Port, _> = serde_json::from_value(json!({"port": "54x", "tls": true}));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("non-negative integer")
        );
        let p: Port = serde_json::from_str(r#"{"port": 1, "tls": "off", "limit": "7"}"#).unwrap();
        assert_eq!((p.port, p.tls, p.limit), (1, false, Some(7)));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_files_lose_exactly_one_line_end() {
        for (content, want) in [
            ("a\n", "a"),
            ("a\r\n", "a"),
            ("a\n\n", "a\n"),
            (" a ", " a "),
        ] {
            assert_eq!(secret_from_file_text(content.into()).expose(), want);
        }
    }
}
