//! The relay as a library: state, router, start-up and graceful shutdown.
//!
//! [`run`] opens the buffer, creates every configured channel and its queues before accepting
//! requests, serves until `shutdown` is cancelled, then shuts down as
//! `wire-protocol.md` C.5 rule 3 says: refuse new streams and leases, wait up to
//! `shutdown_grace_seconds` for outstanding acks, close every transport, keep unacked messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_buffer::{
    BufferError, EmbeddedBuffer, EmbeddedOptions, RabbitBuffer, RabbitOptions, RedisBuffer,
    RedisOptions, SharedBuffer,
};
use webhook_connect_protocol::{CloseReason, Timestamp};

use crate::admin::AdminGuard;
use crate::auth::{AuthBuildOptions, TrustedProxies, WebhookAuth};
use crate::channels::{Channel, Registry, TokenState, WebhookRoute, channel_from_spec, hash_token};
use crate::config::{BackendKind, ChannelSpec, RelayConfig};
use crate::delivery::{Hub, HubOptions};
use crate::http_error::{ApiError, json_response};
use crate::late_buffer::LateBuffer;
use crate::metrics::Metrics;
use crate::state_store::{StateStore, from_hex, hex};
use crate::{health, ingest, transport};

/// Shared state of a running relay.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<RelayConfig>,
    /// Channels and webhook routes.
    pub registry: Registry,
    /// The message buffer.
    pub buffer: SharedBuffer,
    /// Proxies whose forwarding headers are trusted (`server.trusted_proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Cancelled when graceful shutdown begins.
    pub shutdown: CancellationToken,
    buffer_ok: AtomicBool,
    /// Admin authentication.
    pub admin: AdminGuard,
    /// Persisted tokens, rotations and pause state.
    pub state_store: StateStore,
    /// Acks for connections other instances hold (only with the shared Redis state store).
    pub peer_acks: Option<Arc<crate::peer_acks::PeerAcks>>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The OpenAPI document, rendered once at start-up.
    pub openapi: String,
    /// Background tasks (dispatchers, releases, sweeps).
    pub tracker: TaskTracker,
    pub(crate) hub_options: HubOptions,
}

impl AppState {
    /// Buffer reachable and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.shutdown.is_cancelled() && self.buffer_ok.load(Ordering::SeqCst)
    }

    /// Whether the last buffer probe succeeded.
    pub fn buffer_ok(&self) -> bool {
        self.buffer_ok.load(Ordering::SeqCst)
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration problem found at start-up (exit 2).
    #[error("{0}")]
    Config(String),
    /// The buffer could not be opened (exit 1; e.g. the store is locked).
    #[error("buffer: {0}")]
    Buffer(#[from] BufferError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured buffer backend.
pub async fn open_buffer(config: &RelayConfig) -> Result<SharedBuffer, StartError> {
    match config.backend {
        BackendKind::Embedded => {
            let e = &config.file.buffer.embedded;
            if let Some(dir) = std::path::Path::new(&e.path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let options = EmbeddedOptions {
                commit_max_delay: Duration::from_millis(e.commit_max_delay_ms),
                operation_timeout: Duration::from_millis(5000),
            };
            Ok(Arc::new(EmbeddedBuffer::open(&e.path, options).await?))
        }
        BackendKind::Redis => {
            let r = &config.file.buffer.redis;
            let options = RedisOptions {
                url: r.url.expose().to_owned(),
                key_prefix: r.key_prefix.clone(),
                operation_timeout: Duration::from_millis(r.operation_timeout_ms),
            };
            Ok(Arc::new(RedisBuffer::connect(options).await?))
        }
        BackendKind::RabbitMq => {
            let r = &config.file.buffer.rabbitmq;
            let options = RabbitOptions {
                url: r.url.expose().to_owned(),
                exchange: r.exchange.clone(),
                prefetch: u16::try_from(r.prefetch).unwrap_or(u16::MAX),
                operation_timeout: Duration::from_millis(r.operation_timeout_ms),
            };
            Ok(Arc::new(RabbitBuffer::connect(options).await?))
        }
    }
}

pub(crate) fn auth_options(config: &RelayConfig, trusted: &TrustedProxies) -> AuthBuildOptions {
    AuthBuildOptions {
        server_trusted_proxies: trusted.clone(),
        nonce_cache_size: usize::try_from(config.file.limits.nonce_cache_size)
            .unwrap_or(usize::MAX),
        rate_limiter_max_keys: usize::try_from(config.file.limits.rate_limiter_max_keys)
            .unwrap_or(usize::MAX),
        strip_consumed_credentials: config.file.ingest.strip_consumed_credentials,
    }
}

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
    let metrics = Arc::new(Metrics::default());
    let openapi = crate::openapi::document(&config.file.server.public_base_url).to_string();
    let state = Arc::new(AppState {
        config: Arc::new(config),
        registry: Registry::default(),
        buffer,
        trusted_proxies: trusted,
        shutdown: CancellationToken::new(),
        buffer_ok: AtomicBool::new(true),
        admin,
        peer_acks: state_store
            .peer_link()
            .map(|link| Arc::new(crate::peer_acks::PeerAcks::new(link))),
        state_store,
        tracker: TaskTracker::new(),
        openapi,
        hub_options: HubOptions {
            metrics: metrics.clone(),
            ..HubOptions::default()
        },
        metrics,
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

/// Creates a channel's queues, hub and routes. Every webhook's authentication is built first,
/// so a definition that fails changes nothing.
pub(crate) async fn add_channel(
    state: &Arc<AppState>,
    spec: &ChannelSpec,
    with_default_queue: bool,
    options: &AuthBuildOptions,
) -> Result<(), String> {
    let mut auths = Vec::new();
    let mut errors = Vec::new();
    for webhook in &spec.webhooks {
        match WebhookAuth::from_entry(&webhook.entry, &webhook.path, options) {
            Ok(auth) => auths.push(auth),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let mut queues: Vec<String> = spec.webhooks.iter().map(|w| w.id.clone()).collect();
    if with_default_queue {
        queues.push("default".into());
    }
    state
        .buffer
        .ensure_channel(&spec.name, &queues, &spec.settings.queue_settings())
        .await
        .map_err(|e| format!("channel \"{}\": cannot create its queues: {e}", spec.name))?;
    let hub = Hub::new(
        spec.name.clone(),
        state.buffer.clone(),
        spec.settings.clone(),
        state.hub_options.clone(),
        state.shutdown.clone(),
        state.tracker.clone(),
    );
    let mut channel = channel_from_spec(spec, hub);
    restore_persisted(state, &mut channel, spec).await?;
    let channel = Arc::new(channel);
    for (webhook, auth) in spec.webhooks.iter().zip(auths) {
        state.registry.insert_route(
            webhook.id.clone(),
            Arc::new(WebhookRoute {
                channel: channel.clone(),
                queue: webhook.id.clone(),
                data_type: webhook.data_type,
                auth,
            }),
        );
    }
    state.registry.insert_channel(channel);
    Ok(())
}

/// Rebuilds the channels created through the admin API from the state store (unless the
/// configuration now defines a channel of the same name, which takes it over).
async fn restore_admin_channels(
    state: &Arc<AppState>,
    options: &AuthBuildOptions,
    errors: &mut Vec<String>,
) {
    let records = match state.state_store.all().await {
        Ok(records) => records,
        Err(e) => {
            errors.push(format!("state store: {e}"));
            return;
        }
    };
    for (name, record) in records {
        let Some(definition) = record.definition else {
            continue;
        };
        if state.registry.channel(&name).is_some() {
            tracing::warn!(channel = %name, "A configured channel takes over the admin-created channel of the same name");
            continue;
        }
        if let Err(e) = add_admin_channel(state, &name, definition, options).await {
            errors.push(e);
        }
    }
}

/// Builds the admin-created channel `name` from its stored definition; its tokens and pause
/// state come from the state store.
pub(crate) async fn add_admin_channel(
    state: &Arc<AppState>,
    name: &str,
    mut definition: serde_json::Map<String, serde_json::Value>,
    options: &AuthBuildOptions,
) -> Result<(), String> {
    // The token is known only as a hash; restore_persisted sets it from the record.
    definition.insert(
        "token".into(),
        serde_json::Value::String("restored-from-state".into()),
    );
    match crate::config::channel_spec_from_json(definition, &state.config.file) {
        Ok((mut spec, _)) => {
            spec.source = crate::config::ChannelSource::Admin;
            add_channel(state, &spec, false, options).await
        }
        Err(e) => Err(format!("state store: channel \"{name}\": {}", e.join("; "))),
    }
}

/// The token state a record holds (the current hash, or `fallback` when it is unreadable; the
/// previous token only while its grace lasts).
pub(crate) fn stored_tokens(
    r: &crate::state_store::ChannelRecord,
    fallback: Option<crate::channels::TokenHash>,
    now: Timestamp,
) -> Option<TokenState> {
    let current = from_hex(&r.current_token).or(fallback)?;
    let previous = r
        .previous_token
        .as_ref()
        .and_then(|(h, at)| from_hex(h).map(|h| (h, *at)))
        .filter(|(_, at)| *at > now);
    Some(TokenState {
        current,
        previous,
        rotated_at: r.rotated_at,
    })
}

/// Applies the state store to a config-defined channel: a token rotated through the admin API
/// stays in force unless the configured token changed since (then the configured one wins and
/// earlier tokens stop working); the pause state is restored.
async fn restore_persisted(
    state: &AppState,
    channel: &mut Channel,
    spec: &ChannelSpec,
) -> Result<(), String> {
    let now = Timestamp::now();
    let record = state
        .state_store
        .get(&spec.name)
        .await
        .map_err(|e| format!("channel \"{}\": state store: {e}", spec.name))?;
    if spec.source == crate::config::ChannelSource::Admin {
        // Admin-created: the record written at creation (or rotation) is the truth.
        if let Some(r) = &record {
            if let Some(tokens) = stored_tokens(r, None, now) {
                channel.set_tokens(tokens);
            }
            channel.hub.set_paused(r.paused);
            if let Some(created) = r.created_at {
                channel.created_at = created;
            }
        }
        return Ok(());
    }
    let configured = hash_token(spec.token.expose().as_bytes());
    let configured_hex = hex(&configured);
    let keep_rotation = record
        .as_ref()
        .is_some_and(|r| r.configured_token.as_deref() == Some(configured_hex.as_str()));
    if let Some(r) = &record {
        if keep_rotation {
            if let Some(tokens) = stored_tokens(r, Some(configured), now) {
                channel.set_tokens(tokens);
            }
        } else {
            tracing::warn!(channel = %spec.name, "Configured token changed; it replaces every earlier token");
        }
        channel.hub.set_paused(r.paused);
        if let Some(created) = r.created_at {
            channel.created_at = created;
        }
    }
    let created_at = channel.created_at;
    state
        .state_store
        .update(&spec.name, |r| {
            r.configured_token = Some(configured_hex.clone());
            r.definition = None;
            if !keep_rotation {
                r.current_token = configured_hex.clone();
                r.previous_token = None;
                r.rotated_at = None;
            }
            r.created_at.get_or_insert(created_at);
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("channel \"{}\": state store: {e}", spec.name))
}

/// Decoded query pairs (lenient: undecodable bytes are replaced).
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response()
}

async fn security_headers(response: Response) -> Response {
    let mut response = response;
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The HTTP routes of the relay.
pub fn router(state: Arc<AppState>) -> Router {
    let main = Router::new()
        .route("/webhook/{webhook_id}", post(ingest::plain))
        .route(
            "/webhook/{namespace}/{webhook_id}",
            post(ingest::namespaced),
        )
        .route(
            "/connect/stream/{channel}",
            get(transport::websocket::handler),
        )
        .route(
            "/connect/stream/{channel}/sse",
            get(transport::sse::handler),
        )
        .route(
            "/connect/stream/{channel}/poll",
            get(transport::long_poll::handler),
        )
        .route("/connect/ack", post(transport::ack::handler))
        .route("/connect/status/{channel}", get(transport::status::handler))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/health", get(health::health))
        .route("/openapi.json", get(health::openapi));
    // With `metrics.listen` set, `/metrics` is served only there (http-api.md §2.4).
    let main = if state.config.file.metrics.listen.is_empty() {
        main.route("/metrics", get(health::metrics))
    } else {
        main
    };
    // With `admin.listen` set, the admin routes live only on that listener (http-api.md §4).
    let main = if state.config.file.admin.listen.is_empty() {
        main.nest(
            "/admin/webhook-connect",
            crate::admin::router(state.clone()),
        )
    } else {
        main
    };
    finish(main, state)
}

/// The admin routes alone, for the separate `admin.listen` listener.
pub fn admin_router(state: Arc<AppState>) -> Router {
    finish(
        Router::new().nest(
            "/admin/webhook-connect",
            crate::admin::router(state.clone()),
        ),
        state,
    )
}

/// `/metrics` alone, for the separate `metrics.listen` listener.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    finish(Router::new().route("/metrics", get(health::metrics)), state)
}

fn finish(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Runs a relay on `listener` until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(
    config: RelayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let (buffer, late) = match open_buffer(&config).await {
        Ok(buffer) => (buffer, None),
        // A broker that is down is waited for (config-formats.md §2.8); a locked embedded
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

/// Small frames (acks, webhook frames, heartbeats) must leave at once: Nagle's algorithm would
/// hold them back waiting for the peer's delayed ACK.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
    }
}

/// Binds `addr` and serves `app` there until `stop` (the admin and metrics listeners).
async fn serve_side_listener(
    addr: &str,
    what: &'static str,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, StartError> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "{what} listening");
    Ok(tokio::spawn(serve_on(
        listener,
        tls,
        app,
        stop.cancelled_owned(),
    )))
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `until` completes (then
/// gracefully: open requests finish).
async fn serve_on(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    until: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener.tap_io(no_delay), app)
                .with_graceful_shutdown(until)
                .await
        }
        Some(acceptor) => {
            // TCP_NODELAY is set before the handshake; nothing more to tap.
            let listener = crate::tls::TlsListener::new(listener, acceptor)?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(until)
                .await
        }
    }
}

/// Serves an already built state (tests build it themselves).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    spawn_background(&state);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, channels = state.registry.channels().len(), "Relay listening");
    let tls = match (
        &state.config.file.server.tls_cert_file,
        &state.config.file.server.tls_key_file,
    ) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::acceptor(cert, key).map_err(StartError::Config)?)
        }
        _ => None,
    };
    let app = router(state.clone());
    let mut side_tasks = Vec::new();
    for (addr, what, app) in [
        (
            &state.config.file.admin.listen,
            "Admin API",
            admin_router as fn(Arc<AppState>) -> Router,
        ),
        (&state.config.file.metrics.listen, "Metrics", metrics_router),
    ] {
        if !addr.is_empty() {
            let task = serve_side_listener(
                addr,
                what,
                app(state.clone()),
                tls.clone(),
                shutdown.clone(),
            )
            .await?;
            side_tasks.push(task);
        }
    }
    let graceful = {
        let state = state.clone();
        async move {
            shutdown.cancelled().await;
            begin_shutdown(&state).await;
        }
    };
    serve_on(listener, tls, app, graceful).await?;
    for task in side_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    state.tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("Background tasks did not finish within 5 s");
    }
    state.state_store.close();
    if let Some(peers) = &state.peer_acks {
        peers.close();
    }
    if let Err(e) = state.buffer.close().await {
        tracing::warn!(error = %e, "Closing the buffer failed");
    }
    tracing::info!("Relay stopped");
    Ok(())
}

async fn begin_shutdown(state: &AppState) {
    tracing::info!("Shutting down: refusing new streams, waiting for outstanding acks");
    state.shutdown.cancel();
    let channels = state.registry.channels();
    for c in &channels {
        c.hub.stop_leasing();
    }
    let grace = Duration::from_secs(state.config.file.server.shutdown_grace_seconds);
    let started = Instant::now();
    while started.elapsed() < grace && channels.iter().any(|c| c.hub.in_flight_total() > 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &channels {
        c.hub.close_all(CloseReason::Shutdown);
    }
}

fn spawn_background(state: &Arc<AppState>) {
    crate::state_sync::spawn(state);
    crate::peer_acks::spawn(state);
    let probe = state.clone();
    state.tracker.spawn(async move {
        let stop = probe.shutdown.clone();
        loop {
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(1), probe.buffer.health_check()).await,
                Ok(Ok(()))
            );
            if probe.buffer_ok.swap(ok, Ordering::SeqCst) != ok {
                if ok {
                    tracing::info!("Buffer reachable again");
                } else {
                    tracing::warn!("Buffer unreachable");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.cancelled() => break,
            }
        }
    });
    let sweeper = state.clone();
    state.tracker.spawn(async move {
        let stop = sweeper.shutdown.clone();
        let every = Duration::from_secs(sweeper.config.file.buffer.sweep_interval_seconds);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => break,
            }
            match sweeper.buffer.sweep_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "Expired messages moved to dead letters"),
                Err(e) => tracing::warn!(error = %e, "Expiry sweep failed"),
            }
        }
    });
}

/// A JSON `{"status":…}` body.
pub fn status_body(status: StatusCode, body: serde_json::Value) -> Response {
    json_response(status, body.to_string())
}
