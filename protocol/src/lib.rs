//! Wire types of Webhook Connect, shared by `webhook-relay` and `webhook-connector`.
//!
//! This crate holds the relay ↔ connector contract of `docs/reference/wire-protocol.md` as Rust types:
//!
//! - [`frames`]: WebSocket frames in both directions (v1 and v2), decoded leniently;
//! - [`webhook`]: the flat `webhook` message that every transport carries;
//! - [`envelope`]: the message as stored in the buffer, with the exact raw body bytes;
//! - [`sse`]: SSE event encoding and a streaming, chunking-proof decoder;
//! - [`poll`] and [`ack`]: long-poll and `POST /connect/ack` bodies and query parameters;
//! - [`close`]: close codes and the v2 close notice;
//! - [`backoff`]: the one retry/backoff policy (initial, max, factor, jitter);
//! - [`exposition`]: the Prometheus text format both `/metrics` endpoints write;
//! - [`credentials`]: the names that mark credentials (auth keys, cleanup and redaction lists);
//! - [`health_probe`]: the loopback URL the `health` subcommands probe;
//! - `logging` (feature `logging`): the process log setup of both programs;
//! - [`ids`], [`names`], [`time`], [`token`], [`version`]: identifiers, name rules,
//!   timestamps, `Authorization` parsing and version negotiation.
//!
//! It does no I/O (but for [`exposition::ProcessStats::read`], the process's own `/proc`) and
//! never panics on input: every decoder returns an error value.

pub mod ack;
pub mod backoff;
pub mod close;
pub mod config_values;
pub mod credentials;
pub mod envelope;
pub mod exposition;
pub mod frames;
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod health_probe;
pub mod ids;
#[cfg(feature = "logging")]
pub mod logging;
pub mod names;
pub mod poll;
pub mod redact;
pub mod report;
pub mod sse;
pub mod time;
pub mod token;
pub mod version;
pub mod webhook;

pub use close::{CloseNotice, CloseReason};
pub use envelope::{DataType, Envelope, EnvelopeError};
pub use frames::{ClientFrame, FrameError, FrameErrorCode, ServerFrame};
pub use headers::Headers;
pub use ids::{ConnectionId, ConnectionKind, MessageId};
pub use time::Timestamp;
pub use version::ProtocolVersion;
pub use webhook::{PayloadEncoding, WebhookMessage};
