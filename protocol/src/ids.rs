//! Message and connection identifiers (`docs/reference/wire-protocol.md` §0.4).
//!
//! Both are generated from random UUIDs and never derived from client input, so they are unique
//! and unguessable.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest message id a client must accept.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// A message id: `msg_` + 32 lower-case hex digits when we generate it.
///
/// Ids are UUIDv7, so ids made later sort later, which keeps stores' key order close to ingest
/// order.
///
/// ```
/// use webhook_connect_protocol::MessageId;
/// let id = MessageId::generate();
/// assert!(id.as_str().starts_with("msg_") && id.as_str().len() == 36);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

/// A message id received from a peer is not of the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message_id must be 1-128 characters from [A-Za-z0-9_.:-]")]
pub struct MessageIdError;

impl MessageId {
    /// A new, random, time-ordered id.
    pub fn generate() -> Self {
        MessageId(format!("msg_{}", uuid::Uuid::now_v7().simple()))
    }

    /// Accepts any id of 1–128 characters from `[A-Za-z0-9_.:-]` (the original produced
    /// `msg_` + 16 hex digits).
    pub fn parse(text: &str) -> Result<Self, MessageIdError> {
        if is_valid_message_id(text) {
            Ok(MessageId(text.to_owned()))
        } else {
            Err(MessageIdError)
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when `text` is 1–128 characters from `[A-Za-z0-9_.:-]`.
pub fn is_valid_message_id(text: &str) -> bool {
    (1..=MAX_MESSAGE_ID_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The transport of a connection, which fixes the prefix of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// `wsc_…`
    #[serde(rename = "websocket")]
    WebSocket,
    /// `sse_…`
    Sse,
    /// `poll_…`
    LongPoll,
}

impl ConnectionKind {
    /// The id prefix, including the underscore.
    pub fn prefix(self) -> &'static str {
        match self {
            ConnectionKind::WebSocket => "wsc_",
            ConnectionKind::Sse => "sse_",
            ConnectionKind::LongPoll => "poll_",
        }
    }

    /// The name used in admin listings: `websocket`, `sse` or `long_poll`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::WebSocket => "websocket",
            ConnectionKind::Sse => "sse",
            ConnectionKind::LongPoll => "long_poll",
        }
    }

    /// The default `X-Connector-ID` label when the header is absent.
    pub fn default_connector_id(self) -> &'static str {
        match self {
            ConnectionKind::WebSocket => "ws_default",
            ConnectionKind::Sse => "sse_default",
            ConnectionKind::LongPoll => "poll_default",
        }
    }
}

/// A connection id: `wsc_`, `sse_` or `poll_` + 32 hex digits of a random UUIDv4.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// A new random id for a connection of `kind`.
    pub fn generate(kind: ConnectionKind) -> Self {
        ConnectionId(format!(
            "{}{}",
            kind.prefix(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Wraps an id received from a peer (e.g. `X-Connection-ID`) without checking its form;
    /// lookups simply fail for ids the relay never issued.
    pub fn from_peer(text: impl Into<String>) -> Self {
        ConnectionId(text.into())
    }

    /// The kind implied by the prefix, if any.
    pub fn kind(&self) -> Option<ConnectionKind> {
        [
            ConnectionKind::WebSocket,
            ConnectionKind::Sse,
            ConnectionKind::LongPoll,
        ]
        .into_iter()
        .find(|k| self.0.starts_with(k.prefix()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_lower_hex(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn generated_message_ids_have_the_documented_form_and_sort_by_time() {
        let a = MessageId::generate();
        let b = MessageId::generate();
        for id in [&a, &b] {
            let hex = id.as_str().strip_prefix("msg_").unwrap();
            assert_eq!(hex.len(), 32);
            assert!(is_lower_hex(hex));
            assert!(is_valid_message_id(id.as_str()));
        }
        assert!(a < b, "UUIDv7 ids made later sort later");
    }

    #[test]
    fn peer_message_ids_are_checked() {
        assert!(MessageId::parse("msg_0123456789abcdef").is_ok());
        assert!(MessageId::parse("a:b.c-d_e").is_ok());
        assert!(MessageId::parse("").is_err());
        assert!(MessageId::parse(&"a".repeat(129)).is_err());
        assert!(MessageId::parse("msg 1").is_err());
        assert!(MessageId::parse("msg/1").is_err());
    }

    #[test]
    fn connection_ids_are_unique_prefixed_and_not_derived_from_input_r39() {
        let ids: HashSet<_> = (0..1000)
            .map(|_| ConnectionId::generate(ConnectionKind::LongPoll))
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let hex = id.as_str().strip_prefix("poll_").unwrap();
            assert_eq!(hex.len(), 32);
            assert!(is_lower_hex(hex));
            assert_eq!(id.kind(), Some(ConnectionKind::LongPoll));
        }
        assert_eq!(
            ConnectionId::generate(ConnectionKind::WebSocket).kind(),
            Some(ConnectionKind::WebSocket)
        );
        assert_eq!(ConnectionId::from_peer("zzz").kind(), None);
    }
}
