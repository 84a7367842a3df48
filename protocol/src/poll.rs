//! Long-poll request parameters and response bodies (`docs/reference/wire-protocol.md` A.3, B.8).

use serde::{Deserialize, Serialize};

use crate::{Timestamp, WebhookMessage};

/// Default and range of `timeout` (seconds).
pub const POLL_TIMEOUT_DEFAULT: u64 = 30;
/// Default and range of `max_messages`.
pub const POLL_MAX_MESSAGES_DEFAULT: u32 = 10;

/// Validated query parameters of `GET …/poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollParams {
    /// Seconds to hold the request, 1–60.
    pub timeout_secs: u64,
    /// Most messages to return, 1–100.
    pub max_messages: u32,
}

impl Default for PollParams {
    fn default() -> Self {
        PollParams {
            timeout_secs: POLL_TIMEOUT_DEFAULT,
            max_messages: POLL_MAX_MESSAGES_DEFAULT,
        }
    }
}

/// A poll parameter is out of range; `Display` is the `422` detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollParamError {
    /// `timeout` not an integer in 1–60.
    #[error("timeout must be an integer between 1 and 60")]
    Timeout,
    /// `max_messages` not an integer in 1–100.
    #[error("max_messages must be an integer between 1 and 100")]
    MaxMessages,
}

impl PollParams {
    /// Reads the decoded query pairs; unknown parameters are ignored, the last of a repeated
    /// one wins.
    ///
    /// ```
    /// use webhook_connect_protocol::poll::PollParams;
    /// let p = PollParams::from_query([("timeout", "5"), ("max_messages", "2")]).unwrap();
    /// assert_eq!((p.timeout_secs, p.max_messages), (5, 2));
    /// ```
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PollParamError> {
        let mut params = PollParams::default();
        for (key, value) in pairs {
            match key {
                "timeout" => {
                    params.timeout_secs =
                        parse_in_range(value, 1, 60).ok_or(PollParamError::Timeout)?;
                }
                "max_messages" => {
                    params.max_messages = parse_in_range(value, 1, 100)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(PollParamError::MaxMessages)?;
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_in_range(value: &str, min: u64, max: u64) -> Option<u64> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

/// The `200` body of a poll.
///
/// ```json
/// {"messages":[…],"connection_id":"poll_9b8a7c6d5e4f40312a1b0c9d8e7f6a5b","channel":"orders","timestamp":"2026-03-14T09:27:01.171802+00:00"}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollResponse {
    /// 1 to `max_messages` webhook objects, each with `"type":"webhook"`.
    #[serde(serialize_with = "serialize_webhooks")]
    pub messages: Vec<WebhookMessage>,
    /// The session id, for `X-Connection-ID` on acks.
    pub connection_id: String,
    /// Channel name.
    pub channel: String,
    /// Response time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// v2: always 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// v2: lease length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
    /// v2: more messages were ready; poll again at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

fn serialize_webhooks<S: serde::Serializer>(
    messages: &[WebhookMessage],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Tagged<'a> {
        Webhook(&'a WebhookMessage),
    }

    let mut seq = serializer.serialize_seq(Some(messages.len()))?;
    for m in messages {
        seq.serialize_element(&Tagged::Webhook(m))?;
    }
    seq.end()
}

impl PollResponse {
    /// Compact JSON of the body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"{"messages":[{"type":"webhook","message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"content-type":"application/json"},"payload":{"id":"t1"}},{"type":"webhook","message_id":"msg_0190f7c2a1b44d1e9f0a1b2c3d4e5f60","sequence":43,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.120044+00:00","headers":{"content-type":"application/json"},"payload":{"id":"t2"}}],"connection_id":"poll_9b8a7c6d5e4f40312a1b0c9d8e7f6a5b","channel":"orders","timestamp":"2026-03-14T09:27:01.171802+00:00"}"#;

    #[test]
    fn spec_example_round_trips_exactly() {
        let body: PollResponse = serde_json::from_str(SPEC_EXAMPLE).unwrap();
        assert_eq!(body.messages.len(), 2);
        assert_eq!(body.messages[1].sequence, 43);
        assert_eq!(body.to_json(), SPEC_EXAMPLE);
    }

    #[test]
    fn v2_fields_are_added_after_the_v1_ones() {
        let mut body: PollResponse = serde_json::from_str(SPEC_EXAMPLE).unwrap();
        body.messages.truncate(0);
        body.protocol = Some(2);
        body.ack_timeout_ms = Some(30000);
        body.more = Some(true);
        assert!(
            body.to_json()
                .ends_with(r#""protocol":2,"ack_timeout_ms":30000,"more":true}"#)
        );
    }

    #[test]
    fn params_default_and_range_checks() {
        assert_eq!(PollParams::from_query([]).unwrap(), PollParams::default());
        let err = |k, v| PollParams::from_query([(k, v)]).unwrap_err().to_string();
        assert_eq!(
            err("timeout", "0"),
            "timeout must be an integer between 1 and 60"
        );
        assert_eq!(
            err("timeout", "61"),
            "timeout must be an integer between 1 and 60"
        );
        assert_eq!(
            err("timeout", "1.5"),
            "timeout must be an integer between 1 and 60"
        );
        assert_eq!(
            err("timeout", ""),
            "timeout must be an integer between 1 and 60"
        );
        assert_eq!(
            err("max_messages", "101"),
            "max_messages must be an integer between 1 and 100"
        );
        assert_eq!(
            err("max_messages", "-1"),
            "max_messages must be an integer between 1 and 100"
        );
        assert_eq!(
            PollParams::from_query([("timeout", "60"), ("max_messages", "100"), ("x", "y")])
                .unwrap(),
            PollParams {
                timeout_secs: 60,
                max_messages: 100
            }
        );
    }
}
