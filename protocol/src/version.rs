//! Protocol version negotiation (`docs/reference/wire-protocol.md` B.1).

use serde::{Deserialize, Serialize};

/// Header carrying the requested and granted protocol version.
pub const PROTOCOL_HEADER: &str = "x-webhook-connect-protocol";
/// Optional request header lowering the in-flight limit of a connection.
pub const MAX_IN_FLIGHT_HEADER: &str = "x-webhook-connect-max-in-flight";
/// Header naming the connection or long-poll session on acks and polls.
pub const CONNECTION_ID_HEADER: &str = "x-connection-id";
/// Free-form connector label.
pub const CONNECTOR_ID_HEADER: &str = "x-connector-id";

/// The protocol version of a connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum ProtocolVersion {
    /// Compatible with the original implementation.
    V1,
    /// With the v2 extensions.
    V2,
}

impl ProtocolVersion {
    /// The version a relay grants for a request header value: a decimal integer ≥ 2 grants v2;
    /// `1`, absence or anything unparsable means v1.
    ///
    /// ```
    /// use webhook_connect_protocol::ProtocolVersion;
    /// assert_eq!(ProtocolVersion::from_request_header(Some(b" 2 ")), ProtocolVersion::V2);
    /// assert_eq!(ProtocolVersion::from_request_header(Some(b"two")), ProtocolVersion::V1);
    /// ```
    pub fn from_request_header(value: Option<&[u8]>) -> Self {
        let parsed = value
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match parsed {
            Some(n) if n >= 2 => ProtocolVersion::V2,
            _ => ProtocolVersion::V1,
        }
    }

    /// The version a client uses after asking for v2: v2 only when the response echoed it.
    pub fn from_response_header(value: Option<&[u8]>) -> Self {
        Self::from_request_header(value)
    }

    /// True for v2.
    pub fn is_v2(self) -> bool {
        self == ProtocolVersion::V2
    }
}

impl From<ProtocolVersion> for u8 {
    fn from(v: ProtocolVersion) -> u8 {
        match v {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => 2,
        }
    }
}

impl TryFrom<u8> for ProtocolVersion {
    type Error = String;

    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(ProtocolVersion::V1),
            2 => Ok(ProtocolVersion::V2),
            other => Err(format!("unknown protocol version {other}")),
        }
    }
}

/// Parses `X-Webhook-Connect-Max-In-Flight`: an integer ≥ 1, else ignored (`None`).
pub fn parse_max_in_flight(value: Option<&[u8]>) -> Option<u32> {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_grants_v2_only_for_two_or_more() {
        let v = |s: &'static [u8]| ProtocolVersion::from_request_header(Some(s));
        assert_eq!(
            ProtocolVersion::from_request_header(None),
            ProtocolVersion::V1
        );
        assert_eq!(v(b"1"), ProtocolVersion::V1);
        assert_eq!(v(b"2"), ProtocolVersion::V2);
        assert_eq!(v(b"3"), ProtocolVersion::V2);
        assert_eq!(v(b"-2"), ProtocolVersion::V1);
        assert_eq!(v(b"2.0"), ProtocolVersion::V1);
        assert_eq!(v(&[0xff]), ProtocolVersion::V1);
    }

    #[test]
    fn max_in_flight_header_needs_a_positive_integer() {
        assert_eq!(parse_max_in_flight(Some(b"20")), Some(20));
        assert_eq!(parse_max_in_flight(Some(b"0")), None);
        assert_eq!(parse_max_in_flight(Some(b"x")), None);
        assert_eq!(parse_max_in_flight(None), None);
    }
}
