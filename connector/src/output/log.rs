//! `log` (`docs/reference/module-contract.md` §3.1): one compact JSON line per message on stdout (or a multi-line
//! layout with `pretty_print`), sensitive keys redacted, never through the tracing log.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value};

use webhook_connect_protocol::credentials::SENSITIVE_KEY_FRAGMENTS;

use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

/// Longest string printed.
const MAX_STRING: usize = 10_000;
/// Deepest nesting printed.
const MAX_DEPTH: usize = 10;

/// Where the lines go: stdout, or a writer injected by tests.
type Sink = Mutex<Box<dyn Write + Send>>;

/// The `log` module.
pub struct Log {
    pretty: bool,
    redact: bool,
    include_headers: bool,
    out: Sink,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("pretty", &self.pretty)
            .field("redact", &self.redact)
            .finish_non_exhaustive()
    }
}

/// Builds `log` writing to stdout.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    build_with_writer(settings, problems, Box::new(std::io::stdout()))
        .map(|l| Box::new(l) as Box<dyn Output>)
}

/// Builds `log` writing to `out` (tests capture the output this way).
pub fn build_with_writer(
    settings: &ModuleSettings<'_>,
    problems: &mut Problems,
    out: Box<dyn Write + Send>,
) -> Option<Log> {
    let mut r = settings.config_reader();
    let pretty = r.boolean(problems, "pretty_print", false);
    let redact = r.boolean(problems, "redact_sensitive", true);
    let include_headers = r.boolean(problems, "include_headers", true);
    r.finish(problems, false);
    Some(Log {
        pretty,
        redact,
        include_headers,
        out: Mutex::new(out),
    })
}

fn sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    SENSITIVE_KEY_FRAGMENTS.iter().any(|s| k.contains(s))
}

fn clean_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_STRING));
    for (n, c) in s.chars().enumerate() {
        if n >= MAX_STRING {
            break;
        }
        match c {
            '\r' | '\n' => out.push_str("[NL]"),
            c if c.is_control() => out.push_str("[CTRL]"),
            c => out.push(c),
        }
    }
    out
}

/// The value as printed: sensitive keys redacted, strings cleaned, depth bounded.
pub fn redact(value: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::String("[Max depth exceeded]".into());
    }
    match value {
        Value::String(s) => Value::String(clean_string(s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, depth + 1)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if sensitive(k) {
                        Value::String("[REDACTED]".into())
                    } else {
                        redact(v, depth + 1)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Log {
    fn render(&self, d: &Delivery) -> String {
        let headers: Map<String, Value> = d
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let (headers, payload) = if self.redact {
            (redact(&Value::Object(headers), 0), redact(&d.payload, 0))
        } else {
            (Value::Object(headers), d.payload.clone())
        };
        let q = |s: &str| Value::String(s.to_owned()).to_string();
        if !self.pretty {
            let mut line = format!(
                "{{\"webhook_id\":{},\"message_id\":{}",
                q(&d.webhook_id),
                q(&d.message_id)
            );
            if self.include_headers {
                line.push_str(&format!(",\"headers\":{headers}"));
            }
            line.push_str(&format!(",\"payload\":{payload}}}\n"));
            return line;
        }
        let rule = "=".repeat(80);
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        let mut body = pretty(&payload);
        if body.chars().count() > MAX_STRING {
            body = body.chars().take(MAX_STRING).collect::<String>() + "... [truncated]";
        }
        let mut text = format!(
            "{rule}\nWEBHOOK RECEIVED\nWebhook ID: {}\nMessage ID: {}\n",
            clean_string(&d.webhook_id),
            clean_string(&d.message_id)
        );
        if self.include_headers {
            text.push_str(&format!("Headers:\n{}\n", pretty(&headers)));
        }
        text.push_str(&format!("Payload:\n{body}\n{rule}\n"));
        text
    }
}

#[async_trait::async_trait]
impl Output for Log {
    async fn setup(&self) -> Result<(), OutputError> {
        Ok(())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let text = self.render(delivery);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| {
                OutputError::transient(ErrorCategory::Other, format!("cannot write to stdout: {e}"))
            })
    }

    async fn teardown(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_keys_are_redacted_and_control_characters_replaced_r110() {
        let v =
            json!({"user": "a\nb\u{7}", "Api-Key": "k", "nested": {"db_password": "p", "ok": 1}});
        let r = redact(&v, 0);
        assert_eq!(r["user"], "a[NL]b[CTRL]");
        assert_eq!(r["Api-Key"], "[REDACTED]");
        assert_eq!(r["nested"]["db_password"], "[REDACTED]");
        assert_eq!(r["nested"]["ok"], 1);
    }

    #[test]
    fn deep_values_are_cut() {
        let mut v = json!("leaf");
        for _ in 0..15 {
            v = json!({ "k": v });
        }
        assert!(redact(&v, 0).to_string().contains("[Max depth exceeded]"));
    }
}
