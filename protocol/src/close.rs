//! Why the relay closes a connection: WebSocket close codes for v1 and v2, and the v2 `close`
//! notice (`docs/reference/wire-protocol.md` A.1.4, B.6).

use serde::{Deserialize, Serialize};

use crate::ProtocolVersion;

/// Why a connection is closed by the relay (or normally by either side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Normal closure requested by the peer.
    Normal,
    /// The relay is shutting down.
    Shutdown,
    /// Too many malformed frames.
    ProtocolError,
    /// No frame within `heartbeat_timeout`, or a send did not complete in time.
    Evicted,
    /// An administrator disconnected the connection.
    AdminDisconnect,
    /// The token used to connect is no longer valid.
    TokenInvalid,
    /// The channel was deleted.
    ChannelDeleted,
    /// The channel is at `max_connections`.
    MaxConnections,
    /// A client frame was larger than the limit.
    FrameTooLarge,
    /// Internal error.
    Internal,
}

impl CloseReason {
    /// The WebSocket close code for a connection of `version`.
    pub fn code(self, version: ProtocolVersion) -> u16 {
        let v2 = version.is_v2();
        match self {
            CloseReason::Normal => 1000,
            CloseReason::Shutdown => {
                if v2 {
                    4006
                } else {
                    1001
                }
            }
            CloseReason::ProtocolError => {
                if v2 {
                    4007
                } else {
                    1002
                }
            }
            CloseReason::Evicted => {
                if v2 {
                    4004
                } else {
                    1008
                }
            }
            CloseReason::AdminDisconnect => {
                if v2 {
                    4005
                } else {
                    1008
                }
            }
            CloseReason::TokenInvalid => {
                if v2 {
                    4001
                } else {
                    1008
                }
            }
            CloseReason::ChannelDeleted => {
                if v2 {
                    4002
                } else {
                    1008
                }
            }
            CloseReason::MaxConnections => 4003,
            CloseReason::FrameTooLarge => 1009,
            CloseReason::Internal => 1011,
        }
    }

    /// The machine-readable `reason` of the v2 notice.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Evicted => "evicted",
            CloseReason::AdminDisconnect => "admin_disconnect",
            CloseReason::TokenInvalid => "token_invalid",
            CloseReason::ChannelDeleted => "channel_deleted",
            CloseReason::MaxConnections => "max_connections",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::Internal => "internal",
        }
    }

    /// The human-readable text, also used as the WebSocket close reason (≤ 123 bytes).
    pub fn message(self) -> &'static str {
        match self {
            CloseReason::Normal => "Normal closure",
            CloseReason::Shutdown => "Relay shutting down",
            CloseReason::ProtocolError => "Too many malformed frames",
            CloseReason::Evicted => "Connection evicted",
            CloseReason::AdminDisconnect => "Disconnected by administrator",
            CloseReason::TokenInvalid => "Token no longer valid",
            CloseReason::ChannelDeleted => "Channel deleted",
            CloseReason::MaxConnections => "Max connections reached",
            CloseReason::FrameTooLarge => "Frame too large",
            CloseReason::Internal => "Internal error",
        }
    }

    /// Whether the connector should reconnect (v2 notice `reconnect`).
    pub fn reconnect(self) -> bool {
        !matches!(
            self,
            CloseReason::TokenInvalid | CloseReason::ChannelDeleted
        )
    }

    /// Reads a close code received from the relay (either version).
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1000 => CloseReason::Normal,
            1001 | 4006 => CloseReason::Shutdown,
            1002 | 4007 => CloseReason::ProtocolError,
            1008 | 4004 => CloseReason::Evicted,
            4005 => CloseReason::AdminDisconnect,
            4001 => CloseReason::TokenInvalid,
            4002 => CloseReason::ChannelDeleted,
            4003 => CloseReason::MaxConnections,
            1009 => CloseReason::FrameTooLarge,
            1011 => CloseReason::Internal,
            _ => return None,
        })
    }

    /// The v2 close notice for this reason.
    pub fn notice(self, retry_after_ms: Option<u64>) -> CloseNotice {
        CloseNotice {
            code: self.code(ProtocolVersion::V2),
            reason: self.as_str().to_owned(),
            message: self.message().to_owned(),
            reconnect: self.reconnect(),
            retry_after_ms,
        }
    }
}

/// The v2 `close` notice sent before the relay closes a connection (WebSocket frame or SSE event
/// `close`).
///
/// ```json
/// {"type":"close","code":4005,"reason":"admin_disconnect","message":"Disconnected by administrator","reconnect":true,"retry_after_ms":1000}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseNotice {
    /// The close code that follows.
    pub code: u16,
    /// Machine-readable reason, e.g. `admin_disconnect`.
    pub reason: String,
    /// Human-readable text.
    #[serde(default)]
    pub message: String,
    /// Whether the client should reconnect.
    #[serde(default = "default_true")]
    pub reconnect: bool,
    /// Suggested wait before reconnecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_version_table() {
        use CloseReason::*;
        let table = [
            (Normal, 1000, 1000),
            (Shutdown, 1001, 4006),
            (ProtocolError, 1002, 4007),
            (Evicted, 1008, 4004),
            (AdminDisconnect, 1008, 4005),
            (TokenInvalid, 1008, 4001),
            (ChannelDeleted, 1008, 4002),
            (MaxConnections, 4003, 4003),
            (FrameTooLarge, 1009, 1009),
            (Internal, 1011, 1011),
        ];
        for (reason, v1, v2) in table {
            assert_eq!(reason.code(ProtocolVersion::V1), v1, "{reason:?}");
            assert_eq!(reason.code(ProtocolVersion::V2), v2, "{reason:?}");
            assert!(reason.message().len() <= 123);
            if v2 >= 4000 {
                assert_eq!(CloseReason::from_code(v2), Some(reason));
            }
        }
    }

    #[test]
    fn notice_matches_the_spec_example() {
        let notice = CloseReason::AdminDisconnect.notice(Some(1000));
        let json = serde_json::to_string(&crate::ServerFrame::Close(notice)).unwrap();
        assert_eq!(
            json,
            r#"{"type":"close","code":4005,"reason":"admin_disconnect","message":"Disconnected by administrator","reconnect":true,"retry_after_ms":1000}"#
        );
        assert!(!CloseReason::TokenInvalid.notice(None).reconnect);
    }
}
