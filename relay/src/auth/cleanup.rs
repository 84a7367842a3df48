//! `credential_cleanup` (§10.2, opt-in, R-131): masking or removing credential-looking headers
//! and payload keys.

use http::{HeaderMap, HeaderValue};
use serde_json::Value;

/// The text that replaces a masked value.
pub const REDACTED: &str = "***REDACTED***";

/// How far into a payload the cleanup walks.
const MAX_WALK_DEPTH: usize = 100;

/// The names masked or removed by default (shared with the connector).
const DEFAULT_NAMES: [&str; 30] = webhook_connect_protocol::credentials::CREDENTIAL_NAMES;

const PATTERN_WORDS: [&str; 6] = ["password", "secret", "token", "key", "credential", "auth"];

/// Mask or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupMode {
    /// Replace the value with `***REDACTED***`.
    Mask,
    /// Leave the field out.
    Remove,
}

/// A webhook's enabled credential cleanup.
#[derive(Debug, Clone)]
pub struct CredentialCleanup {
    mode: CleanupMode,
    /// Extra names, lower-cased and trimmed.
    fields: Vec<String>,
}

impl CredentialCleanup {
    /// A cleanup with `mode` and extra `fields`.
    pub fn new(mode: CleanupMode, fields: &[String]) -> Self {
        CredentialCleanup {
            mode,
            fields: fields.iter().map(|f| f.trim().to_lowercase()).collect(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> CleanupMode {
        self.mode
    }

    /// True when a header name or JSON key counts as a credential.
    pub fn matches(&self, name: &str) -> bool {
        let n = name.trim().to_lowercase();
        DEFAULT_NAMES.contains(&n.as_str())
            || self.fields.contains(&n)
            // `.*password.*` … `.*auth.*`; `x-.*-key|token|secret` are covered by these.
            || PATTERN_WORDS.iter().any(|w| n.contains(w))
    }

    /// The relayed headers after cleanup.
    pub fn clean_headers(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            if self.matches(name.as_str()) {
                if self.mode == CleanupMode::Mask {
                    out.append(name.clone(), HeaderValue::from_static(REDACTED));
                }
            } else {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }

    /// Cleans `(name, value)` header pairs in place.
    pub fn clean_header_pairs(&self, headers: &mut Vec<(String, String)>) {
        match self.mode {
            CleanupMode::Remove => headers.retain(|(n, _)| !self.matches(n)),
            CleanupMode::Mask => {
                for (n, v) in headers.iter_mut() {
                    if self.matches(n) {
                        *v = REDACTED.to_string();
                    }
                }
            }
        }
    }

    /// Cleans a JSON payload in place, to depth 100.
    pub fn clean_payload(&self, payload: &mut Value) {
        self.walk(payload, 0);
    }

    fn walk(&self, value: &mut Value, depth: usize) {
        if depth >= MAX_WALK_DEPTH {
            return;
        }
        match value {
            Value::Object(map) => {
                let mut remove = Vec::new();
                for (k, v) in map.iter_mut() {
                    match v {
                        Value::Object(_) | Value::Array(_) => self.walk(v, depth + 1),
                        _ if self.matches(k) => match self.mode {
                            CleanupMode::Mask => *v = Value::String(REDACTED.to_string()),
                            CleanupMode::Remove => remove.push(k.clone()),
                        },
                        _ => {}
                    }
                }
                for k in remove {
                    map.shift_remove(&k);
                }
            }
            Value::Array(items) => {
                for v in items {
                    self.walk(v, depth + 1);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_match_defaults_patterns_and_extra_fields() {
        let c = CredentialCleanup::new(CleanupMode::Mask, &["Card_Number".into()]);
        for n in [
            "Password",
            " token ",
            "X-Api-Key",
            "monkey",
            "author",
            "idempotency_key",
            "card_number",
            "x-foo-secret",
        ] {
            assert!(c.matches(n), "{n}");
        }
        for n in [
            "stripe-signature",
            "x-hub-signature-256",
            "amount",
            "content-type",
        ] {
            assert!(!c.matches(n), "{n}");
        }
    }

    #[test]
    fn payload_mask_walks_into_containers_r131() {
        let c = CredentialCleanup::new(CleanupMode::Mask, &[]);
        let mut v = json!({"user": "a", "password": "p", "auth": {"token": "t", "n": 1},
            "list": [{"secret": 5}]});
        c.clean_payload(&mut v);
        assert_eq!(
            v,
            json!({"user": "a", "password": REDACTED, "auth": {"token": REDACTED, "n": 1},
                "list": [{"secret": REDACTED}]})
        );
        let c = CredentialCleanup::new(CleanupMode::Remove, &[]);
        let mut v = json!({"user": "a", "password": "p"});
        c.clean_payload(&mut v);
        assert_eq!(v, json!({"user": "a"}));
    }

    #[test]
    fn header_cleanup_masks_or_removes() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k".parse().expect("v"));
        h.insert("stripe-signature", "t=1,v1=ab".parse().expect("v"));
        let masked = CredentialCleanup::new(CleanupMode::Mask, &[]).clean_headers(&h);
        assert_eq!(
            masked.get("x-api-key").map(|v| v.as_bytes()),
            Some(REDACTED.as_bytes())
        );
        assert_eq!(
            masked.get("stripe-signature").map(|v| v.as_bytes()),
            Some(&b"t=1,v1=ab"[..])
        );
        let removed = CredentialCleanup::new(CleanupMode::Remove, &[]).clean_headers(&h);
        assert!(removed.get("x-api-key").is_none());
        assert!(removed.get("stripe-signature").is_some());
    }
}
