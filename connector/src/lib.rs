//! The Webhook Connect connector as a library: connect to the relay, receive messages over
//! WebSocket, SSE or long-poll, deliver each one to a local HTTP target and ack it only after
//! local success (`docs/design.md`, `docs/reference/wire-protocol.md`, `docs/reference/module-contract.md` §7.1).
//!
//! # Running it in-process
//!
//! [`start`] returns a [`ConnectorHandle`] (health listener address, per-channel health state);
//! [`run`] is `start` + [`ConnectorHandle::wait`]. Cancelling the token drains: in-flight
//! messages finish within `drain_timeout` and are acked, then the streams close with 1000.
//!
//! ```no_run
//! # async fn demo() -> Result<(), webhook_connector::RunError> {
//! use webhook_connector::config::{ChannelConfig, ConnectorConfig, Protocol, TargetConfig};
//! let mut channel = ChannelConfig::new("orders", "ch_tok_secret");
//! channel.protocol = Protocol::WebSocket; // default: Auto
//! channel.default_target = Some(TargetConfig::new("http://127.0.0.1:3000/hook"));
//! let mut config = ConnectorConfig::new("http://127.0.0.1:8080", channel);
//! config.health_listen = Some("127.0.0.1:0".parse().unwrap());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let handle = webhook_connector::start(config, shutdown.clone()).await?;
//! println!("health on {:?}", handle.health_addr);
//! shutdown.cancel();
//! assert_eq!(handle.wait().await, webhook_connector::RunOutcome::Shutdown);
//! # Ok(()) }
//! ```
//!
//! A configuration can also be built from a JSON document with the file rules (strict target
//! and channel objects, lenient top level) via [`config::load_from_value`], or from files,
//! environment and flags via [`config::load`].
//!
//! # Layout
//!
//! Each module imports only modules listed below it in this dependency order (no import
//! circle); `app` is at the top:
//!
//! - `app`: start-up, the stale watchdog and shutdown;
//! - `stream`: the per-channel connect loop (with its reconnect backoff) and the WebSocket, SSE
//!   and long-poll clients;
//! - [`dispatch`]: concurrency, ordering, memory bound and deduplication of received messages;
//! - [`forward`]: the HTTP request to a local target and the ack/nack decision;
//! - [`completion`]: the completion record;
//! - [`config`]: the configuration, its loading and validation (`check-config`);
//! - [`pipeline`]: module mode (module instances, chains, retries, and its configuration);
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`output`]: the output modules and their contract;
//! - `lease` and [`ack`]: keeping a message's lease, and acks and nacks back to the relay;
//! - [`tls`]: TLS towards the relay and for modules; `outbound`: the outbound address policy;
//! - `settings`: the settings reader and the problems it records, below both `config` and
//!   `output`; `failure`: recognising failed requests; `percent`: percent-encoding.

pub mod ack;
pub(crate) mod app;
pub mod completion;
pub mod config;
pub mod dispatch;
pub(crate) mod failure;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub(crate) mod lease;
pub(crate) mod outbound;
pub mod output;
pub(crate) mod percent;
pub mod pipeline;
pub(crate) mod settings;
pub(crate) mod stream;
pub mod tls;

pub use app::{ConnectorHandle, RunError, RunOutcome, run, start, target_http_client};
pub use config::ConnectorConfig;
