//! The shared state of a running relay ([`AppState`]): configuration, channels, buffer, state
//! store and the handles every handler and background job reads. It imports no HTTP handler;
//! [`crate::startup`] builds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_buffer::SharedBuffer;

use crate::admin_guard::AdminGuard;
use crate::admission::Admission;
use crate::auth::TrustedProxies;
use crate::channels::Registry;
use crate::config::RelayConfig;
use crate::delivery::HubOptions;
use crate::metrics::Metrics;
use crate::peer_acks::PeerAcks;
use crate::state_store::StateStore;

/// Shared state of a running relay.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub(crate) config: Arc<RelayConfig>,
    /// Channels and webhook routes.
    pub(crate) registry: Registry,
    /// The message buffer.
    pub(crate) buffer: SharedBuffer,
    /// Proxies whose forwarding headers are trusted (`server.trusted_proxies`).
    pub(crate) trusted_proxies: TrustedProxies,
    /// Cancelled when graceful shutdown begins.
    pub(crate) shutdown: CancellationToken,
    pub(crate) buffer_ok: AtomicBool,
    /// Buffer operations that succeeded (a count); the readiness probe treats progress since
    /// its last run as proof that the buffer is reachable, however slow its own probe was.
    pub(crate) buffer_progress: AtomicU64,
    /// Admin authentication.
    pub(crate) admin: AdminGuard,
    /// Persisted tokens, rotations and pause state.
    pub(crate) state_store: StateStore,
    /// Acks for connections other instances hold (only with the shared Redis state store).
    pub(crate) peer_acks: Option<Arc<PeerAcks>>,
    /// Counters and histograms.
    pub(crate) metrics: Arc<Metrics>,
    /// The OpenAPI document, rendered once at start-up.
    pub(crate) openapi: String,
    /// Background tasks (dispatchers, releases, sweeps).
    pub(crate) tracker: TaskTracker,
    pub(crate) hub_options: HubOptions,
    /// The connection budget of every listener.
    pub(crate) admission: Arc<Admission>,
    /// The message trace (`GET /messages/{message_id}`).
    pub(crate) trace: Arc<crate::trace::TraceStore>,
    /// Memory for ingest bodies over all requests (`limits.max_inflight_body_bytes`).
    pub(crate) body_budget: Arc<crate::body::budget::BodyBudget>,
}

impl AppState {
    /// Buffer reachable and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.shutdown.is_cancelled() && self.buffer_ok.load(Ordering::SeqCst)
    }

    /// Records a buffer operation that succeeded (for the readiness probe).
    pub fn note_buffer_success(&self) {
        self.buffer_progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the last buffer probe succeeded.
    pub fn buffer_ok(&self) -> bool {
        self.buffer_ok.load(Ordering::SeqCst)
    }

    /// True when `webhook_id` is routed to a channel.
    pub fn has_webhook(&self, webhook_id: &str) -> bool {
        self.registry.route(webhook_id).is_some()
    }

    /// Closes the buffer (a state built without [`crate::serve`], as tests do).
    pub async fn close_buffer(&self) -> Result<(), webhook_connect_buffer::BufferError> {
        self.buffer.close().await
    }
}
