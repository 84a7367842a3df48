//! Server-Sent Events: encoding of the relay's events (`docs/reference/wire-protocol.md` A.2.2, B.7) and a
//! streaming decoder that follows the WHATWG event-stream rules (R-78).
//!
//! The decoder works on bytes: chunks may split lines, CRLF pairs and multi-byte UTF-8
//! characters anywhere. Lines are decoded only once complete.

use crate::frames::{ErrorFrame, FrameErrorCode};
use crate::{ProtocolVersion, ServerFrame};

/// Longest line the decoder buffers before it reports an error (64 MiB + 64 KiB, the largest
/// frame a connector must accept).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024 + 64 * 1024;

/// Most bytes one event may buffer (its `data:` lines so far plus the line being read) before
/// the decoder reports an error: the same 64 MiB + 64 KiB, since one event carries one frame.
pub const DEFAULT_MAX_EVENT_BYTES: usize = DEFAULT_MAX_LINE_BYTES;

/// One event as written or read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `id:` line, if any.
    pub id: Option<String>,
    /// `event:` name; `None` means the default `message`.
    pub event: Option<String>,
    /// The data lines joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// An event named `event` with `data`.
    pub fn new(event: &str, data: impl Into<String>) -> Self {
        SseEvent {
            id: None,
            event: Some(event.to_owned()),
            data: data.into(),
        }
    }

    /// The event name, `message` when none was given.
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Appends the wire form: `id:`, `event:`, one `data:` line per line of data, blank line.
    pub fn write_to(&self, out: &mut String) {
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(&strip_newlines(id));
            out.push('\n');
        }
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(&strip_newlines(event));
            out.push('\n');
        }
        for line in split_lines(&self.data) {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }

    /// The wire form as a new string.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 32);
        self.write_to(&mut out);
        out
    }
}

/// The `retry:` line that starts a v2 stream.
pub fn retry_line(retry_ms: u64) -> String {
    format!("retry: {retry_ms}\n\n")
}

fn strip_newlines(s: &str) -> String {
    s.replace(['\r', '\n'], "")
}

/// Splits on CRLF, LF or CR, so no raw line break ever reaches the stream.
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// The SSE event for a relay frame on a connection of `version` (A.2.2, B.7):
///
/// - v1 `connected` carries only `connection_id` and `channel`; v1 `heartbeat` only
///   `timestamp`; v1 `error` is `{"error":"Internal server error"}`;
/// - v2 events carry the full frame object, and `webhook` events get `id: <message_id>`;
/// - `webhook` data is the flat object with `"type":"webhook"` in both versions.
///
/// Returns `None` for frames that have no SSE form on that version (`ack_result`, v1 `close`).
pub fn frame_to_event(frame: &ServerFrame, version: ProtocolVersion) -> Option<SseEvent> {
    let v2 = version.is_v2();
    let data = match frame {
        ServerFrame::Connected(c) if !v2 => serde_json::json!({
            "connection_id": c.connection_id,
            "channel": c.channel,
        })
        .to_string(),
        ServerFrame::Heartbeat(h) if !v2 => match &h.timestamp {
            Some(t) => format!(r#"{{"timestamp":"{t}"}}"#),
            None => "{}".to_owned(),
        },
        ServerFrame::Error(e) if !v2 => serde_json::json!({ "error": e.message }).to_string(),
        ServerFrame::Close(_) | ServerFrame::AckResult(_) if !v2 => return None,
        ServerFrame::Unknown(_) => return None,
        other => other.to_json(),
    };
    let id = match frame {
        ServerFrame::Webhook(w) if v2 => Some(w.message_id.clone()),
        _ => None,
    };
    Some(SseEvent {
        id,
        event: Some(frame.type_name().to_owned()),
        data,
    })
}

/// The relay's `error` event before it ends a stream on an internal failure.
pub fn internal_error_frame() -> ServerFrame {
    ServerFrame::Error(ErrorFrame {
        code: FrameErrorCode::Internal,
        message: "Internal server error".to_owned(),
        reference: None,
    })
}

/// A line or an event grew past the decoder's limit; the stream should be dropped. The decoder
/// forgets the partial line or event, so it stays bounded whatever the peer sends next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseTooLarge {
    /// One line was longer than the line limit (bytes).
    #[error("SSE line longer than {0} bytes")]
    LineTooLong(usize),
    /// One event's `data:` lines together were larger than the event limit (bytes).
    #[error("SSE event larger than {0} bytes")]
    EventTooLarge(usize),
}

pub use SseTooLarge::{EventTooLarge, LineTooLong};

/// Streaming event-stream decoder.
///
/// ```
/// use webhook_connect_protocol::sse::SseDecoder;
/// let mut d = SseDecoder::new();
/// let mut events = Vec::new();
/// d.feed(b"event: heartbeat\r\ndata: {\"timestamp\"", &mut events).unwrap();
/// d.feed(b":\"t\"}\r\n\r\n", &mut events).unwrap();
/// assert_eq!(events[0].name(), "heartbeat");
/// assert_eq!(events[0].data, "{\"timestamp\":\"t\"}");
/// ```
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF of the next chunk is part of a CRLF.
    after_cr: bool,
    max_line: usize,
    max_event: usize,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_event_id: Option<String>,
    retry_ms: Option<u64>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the default line and event limits.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE_BYTES)
    }

    /// A decoder that fails on lines longer than `max_line` bytes (and on events larger than
    /// [`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn with_max_line(max_line: usize) -> Self {
        Self::with_limits(max_line, DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that fails on lines longer than `max_line` bytes and on events whose `data:`
    /// lines, with the line being read, exceed `max_event` bytes.
    pub fn with_limits(max_line: usize, max_event: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            max_line,
            max_event,
            event: None,
            data: String::new(),
            has_data: false,
            last_event_id: None,
            retry_ms: None,
        }
    }

    /// The last `retry:` value seen.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// The last event id seen.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Feeds a chunk; complete events are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = rest.split_at(pos);
            self.push_bytes(head)?;
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
            self.line = line;
            self.line.clear();
            if tail[0] == b'\r' {
                match tail.get(1) {
                    Some(b'\n') => rest = &tail[2..],
                    Some(_) => rest = &tail[1..],
                    None => {
                        self.after_cr = true;
                        rest = &[];
                    }
                }
            } else {
                rest = &tail[1..];
            }
        }
        self.push_bytes(rest)
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), SseTooLarge> {
        let line = self.line.len() + bytes.len();
        if line > self.max_line {
            self.line.clear();
            return Err(LineTooLong(self.max_line));
        }
        // A data line adds at most its own length (plus the joining `\n`, less `data:`), so this
        // keeps the buffered data of one event within `max_event`.
        if self.data.len() + line > self.max_event {
            self.line.clear();
            self.data = String::new();
            self.has_data = false;
            self.event = None;
            return Err(EventTooLarge(self.max_event));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let value = &text[i + 1..];
                (&text[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_event_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            id: self.last_event_id.clone(),
            event: event.filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests;
