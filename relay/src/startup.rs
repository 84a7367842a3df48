//! Starting a relay: open the buffer, build the state with every configured and persisted
//! channel, then serve ([`run`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_buffer::{BufferError, SharedBuffer};

use crate::admin_guard::AdminGuard;
use crate::admission::{Admission, AdmissionLimits, effective_total, open_files_limit};
use crate::auth::{TrustedProxies, WebhookAuth};
use crate::backend::{LateBuffer, open_buffer};
use crate::channels::{Registry, WebhookRoute};
use crate::config::{BackendKind, RelayConfig};
use crate::delivery::HubOptions;
use crate::lifecycle::{add_channel, auth_options, restore_admin_channels};
use crate::metrics::Metrics;
/// Opens a listener with the configured accept queue (`server.listen_backlog`).
pub use crate::server::bind::bind as bind_listener;
use crate::server::serve;
pub use crate::start_error::StartError;
use crate::state::AppState;
use crate::state_store::StateStore;
use crate::trace::{Limits, TraceStore};

/// Builds the state: every channel and its queues exist before this returns.
pub async fn build_state(
    config: RelayConfig,
    buffer: SharedBuffer,
) -> Result<Arc<AppState>, StartError> {
    let trusted =
        TrustedProxies::parse(&config.file.server.trusted_proxies).map_err(StartError::Config)?;
    let state_store = StateStore::open(&config).await.map_err(|e| {
        StartError::Config(format!("state store ({}): {e}", config.file.state.backend))
    })?;
    let admin = AdminGuard::new(
        config.admin_token.expose(),
        config.file.admin.max_failed_auth_per_minute,
    );
    let shutdown = CancellationToken::new();
    let trace = Arc::new(open_trace(&config, shutdown.clone()).await?);
    let metrics = Arc::new(Metrics::default());
    let admission = Admission::new(admission_limits(&config), metrics.clone());
    let openapi = crate::openapi::document(&config.file.server.public_base_url).to_string();
    let body_budget_bytes = config.file.limits.max_inflight_body_bytes;
    let settle_wait = Duration::from_secs(config.file.server.shutdown_grace_seconds);
    let state = Arc::new(AppState {
        config: Arc::new(config),
        registry: Registry::default(),
        buffer,
        trusted_proxies: trusted,
        shutdown,
        buffer_ok: AtomicBool::new(true),
        buffer_progress: std::sync::atomic::AtomicU64::new(0),
        admin,
        peer_acks: state_store
            .peer_link()
            .map(|link| Arc::new(crate::peer_acks::PeerAcks::new(link))),
        state_store,
        tracker: TaskTracker::new(),
        openapi,
        admission,
        hub_options: HubOptions {
            metrics: metrics.clone(),
            settle_wait,
            trace: trace.clone(),
            ..HubOptions::default()
        },
        trace,
        metrics,
        body_budget: crate::body::budget::BodyBudget::new(body_budget_bytes),
    });
    let options = auth_options(&state.config, &state.trusted_proxies);
    let mut errors = Vec::new();
    let default_channel = state
        .config
        .file
        .ingest
        .allow_default_webhook
        .then(|| state.config.default_webhook.clone())
        .flatten();
    for spec in &state.config.channels {
        let with_default = default_channel
            .as_ref()
            .is_some_and(|(c, _)| *c == spec.name);
        if let Err(e) = add_channel(&state, spec, with_default, &options).await {
            errors.push(e);
        }
    }
    restore_admin_channels(&state, &options, &mut errors).await;
    if let Some((channel_name, webhook)) = default_channel {
        match (
            state.registry.channel(&channel_name),
            WebhookAuth::from_entry(&webhook.entry, &webhook.path, &options),
        ) {
            (Some(channel), Ok(auth)) => {
                state
                    .registry
                    .set_default_route(Some(Arc::new(WebhookRoute {
                        channel,
                        queue: "default".into(),
                        data_type: webhook.data_type,
                        auth,
                    })))
            }
            (None, _) => errors.push(format!(
                "default webhook: channel \"{channel_name}\" is not defined"
            )),
            (_, Err(e)) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(state)
    } else {
        Err(StartError::Config(errors.join("\n")))
    }
}

/// The message trace beside the state store: in Redis when the state store is Redis, else in
/// memory.
async fn open_trace(
    config: &RelayConfig,
    shutdown: CancellationToken,
) -> Result<TraceStore, StartError> {
    let limits = Limits {
        max_messages: config.file.trace.max_messages_per_channel as usize,
        max_age: std::time::Duration::from_secs(config.file.trace.max_age_seconds),
        max_events: crate::trace::MAX_EVENTS,
    };
    match StateStore::redis_location(config) {
        Some(at) => TraceStore::redis(at.url, &at.cluster_nodes, at.prefix, limits, shutdown)
            .await
            .map_err(|e| StartError::Config(format!("trace store: {e}"))),
        None => Ok(TraceStore::memory(limits)),
    }
}

/// Runs a relay on `listener` until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(
    config: RelayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let (buffer, late) = match open_buffer(&config).await {
        Ok(buffer) => (buffer, None),
        // A broker that is down is waited for (docs/reference/config-formats.md §2.8); a locked embedded
        // store or a bad setting is not.
        Err(StartError::Buffer(e @ (BufferError::Unavailable(_) | BufferError::Timeout)))
            if config.backend != BackendKind::Embedded =>
        {
            tracing::warn!(error = %e, "Buffer unreachable at start-up; starting anyway and retrying");
            let late = LateBuffer::new();
            (late.clone() as SharedBuffer, Some(late))
        }
        Err(e) => return Err(e),
    };
    let state = build_state(config, buffer).await?;
    if let Some(late) = late {
        state.buffer_ok.store(false, Ordering::SeqCst);
        let config = state.config.clone();
        let stop = state.shutdown.clone();
        state.tracker.spawn(async move {
            late.connect_with_backoff(|| open_buffer(&config), stop)
                .await;
        });
    }
    serve(state, listener, shutdown).await
}

/// The connection limits: the configured total, lowered to what the file limit allows.
fn admission_limits(config: &RelayConfig) -> AdmissionLimits {
    let limits = &config.file.limits;
    let files = open_files_limit();
    let total = effective_total(limits.max_connections_total, files);
    if total < limits.max_connections_total {
        tracing::warn!(
            configured = limits.max_connections_total,
            open_files_limit = files.unwrap_or_default(),
            max_connections = total,
            "limits.max_connections_total lowered to fit the open-files limit; raise LimitNOFILE / ulimit -n to allow more"
        );
    }
    AdmissionLimits::new(
        total,
        limits.max_stream_connections,
        limits.max_connections_per_ip,
    )
}
