//! The Webhook Connect connector as a library: connect to the relay, receive messages over
//! WebSocket, SSE or long-poll, deliver each one to a local HTTP target and ack it only after
//! local success (`DESIGN.md`, `spec/wire-protocol.md`, `spec/modules.md` §7.1).
//!
//! Start it in-process with [`run`] (or [`start`] to learn the health listener's address):
//!
//! ```no_run
//! # async fn demo() -> Result<(), webhook_connector::RunError> {
//! use webhook_connector::config::{ChannelConfig, ConnectorConfig, TargetConfig};
//! let mut channel = ChannelConfig::new("orders", "ch_tok_secret");
//! channel.default_target = Some(TargetConfig::new("http://127.0.0.1:3000/hook"));
//! let config = ConnectorConfig::new("http://127.0.0.1:8080", channel);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let outcome = webhook_connector::run(config, shutdown).await?;
//! # let _ = outcome; Ok(()) }
//! ```

pub mod ack;
pub mod app;
pub mod backoff;
pub mod completion;
pub mod config;
pub mod dispatch;
pub mod forward;
pub mod health;
pub mod stream;
pub mod tls;

pub use app::{ConnectorHandle, RunError, RunOutcome, run, start};
pub use config::ConnectorConfig;
