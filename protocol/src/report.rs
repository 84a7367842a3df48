//! What a connector reports about its local delivery of one message (`docs/reference/wire-protocol.md`
//! B.4 and B.9, "delivery report"): the target's status code, the error text and the first
//! 1 KiB of the target's response body. Carried as the optional `report` object of a v2 `ack`
//! or `nack`; v1 peers and older v2 relays ignore it.
//!
//! Reading is lenient: a field of the wrong type is dropped, the others are kept; lengths are
//! cut to their bounds, so a report never fails a frame.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most bytes of the target's response body kept in a report.
pub const MAX_SNIPPET_BYTES: usize = 1024;

/// Most characters of the error text kept in a report.
pub const MAX_ERROR_CHARS: usize = 1024;

/// The connector's account of one local delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryReport {
    /// HTTP status the target answered (100–999), when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_status: Option<u16>,
    /// Why the delivery failed, when it did (no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the target's response body, at most [`MAX_SNIPPET_BYTES`] bytes, decoded as
    /// UTF-8 with invalid sequences replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_snippet: Option<String>,
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn cut_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl DeliveryReport {
    /// The report of a target that answered `status` with a body starting with `body` (no
    /// snippet for an empty body).
    ///
    /// ```
    /// use webhook_connect_protocol::report::DeliveryReport;
    /// let r = DeliveryReport::answered(500, &[b'x'; 4000], None);
    /// assert_eq!(r.response_snippet.unwrap().len(), 1024);
    /// ```
    pub fn answered(status: u16, body: &[u8], error: Option<String>) -> DeliveryReport {
        let body = &body[..body.len().min(MAX_SNIPPET_BYTES)];
        let text = String::from_utf8_lossy(body);
        DeliveryReport {
            target_status: Some(status),
            error,
            response_snippet: (!body.is_empty())
                .then(|| cut_bytes(&text, MAX_SNIPPET_BYTES).to_owned()),
        }
        .bounded()
    }

    /// The report of a delivery that got no answer (connection refused, timeout, …).
    pub fn failed(error: impl Into<String>) -> DeliveryReport {
        DeliveryReport {
            target_status: None,
            error: Some(error.into()),
            response_snippet: None,
        }
        .bounded()
    }

    /// True when it says nothing.
    pub fn is_empty(&self) -> bool {
        self.target_status.is_none() && self.error.is_none() && self.response_snippet.is_none()
    }

    /// The same report with every field cut to its bound.
    pub fn bounded(mut self) -> DeliveryReport {
        if let Some(e) = self.error.as_mut()
            && e.chars().count() > MAX_ERROR_CHARS
        {
            *e = e.chars().take(MAX_ERROR_CHARS).collect();
        }
        if let Some(s) = self.response_snippet.as_mut() {
            let cut = cut_bytes(s, MAX_SNIPPET_BYTES).len();
            s.truncate(cut);
        }
        self.target_status = self.target_status.filter(|s| (100..=999).contains(s));
        self
    }

    /// Reads the `report` object leniently; `None` when it is absent, not an object or empty.
    pub fn from_value(value: Option<&Value>) -> Option<DeliveryReport> {
        let Some(Value::Object(object)) = value else {
            return None;
        };
        let text = |key: &str| match object.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let report = DeliveryReport {
            target_status: object
                .get("target_status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok()),
            error: text("error"),
            response_snippet: text("response_snippet"),
        }
        .bounded();
        (!report.is_empty()).then_some(report)
    }

    /// The `report` object.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        if let Some(s) = self.target_status {
            out.insert("target_status".into(), Value::from(s));
        }
        if let Some(e) = &self.error {
            out.insert("error".into(), Value::String(e.clone()));
        }
        if let Some(s) = &self.response_snippet {
            out.insert("response_snippet".into(), Value::String(s.clone()));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_cut_on_a_character_boundary() {
        let body = "é".repeat(600);
        let r = DeliveryReport::answered(400, body.as_bytes(), None);
        let s = r.response_snippet.unwrap_or_default();
        assert!(s.len() <= MAX_SNIPPET_BYTES);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn lenient_read_keeps_good_fields_and_drops_bad_ones() {
        let v = serde_json::json!({"target_status": "500", "error": "boom", "response_snippet": 7});
        let r = DeliveryReport::from_value(Some(&v)).unwrap_or_default();
        assert_eq!(r.target_status, None);
        assert_eq!(r.error.as_deref(), Some("boom"));
        assert_eq!(r.response_snippet, None);
        assert_eq!(
            DeliveryReport::from_value(Some(&serde_json::json!({}))),
            None
        );
        assert_eq!(
            DeliveryReport::from_value(Some(&serde_json::json!([1]))),
            None
        );
        let status = serde_json::json!({"target_status": 70000});
        assert_eq!(DeliveryReport::from_value(Some(&status)), None);
    }

    #[test]
    fn round_trips_through_its_json() {
        let r = DeliveryReport::answered(503, b"busy", Some("target returned 503".into()));
        assert_eq!(DeliveryReport::from_value(Some(&r.to_value())), Some(r));
    }
}
