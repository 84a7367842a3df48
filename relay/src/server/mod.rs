//! Serving a built relay: the main, admin and metrics listeners (plain or TLS, every connection
//! admitted through [`crate::admission`], see [`listener`]), the background jobs, and graceful
//! shutdown as `docs/reference/wire-protocol.md` C.5 rule 3 says: refuse new streams and
//! leases, wait up to `shutdown_grace_seconds` for outstanding acks, close every transport,
//! keep unacked messages.

pub(crate) mod bind;
mod listener;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_protocol::CloseReason;

use self::listener::{ConnOptions, Stops, accept_loop};
use crate::routes::{admin_router, metrics_router, router};
use crate::start_error::StartError;
use crate::state::AppState;

/// How long connections may finish their current request once shutdown has closed the
/// transports; then every connection is closed, whatever its client is doing.
const DRAIN: Duration = Duration::from_secs(1);

/// Serves an already built state (tests build it themselves) on `listener` and the separate
/// admin and metrics listeners when configured, until `shutdown`; then shuts down within
/// `server.shutdown_grace_seconds` plus a few seconds, whatever clients are doing.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    crate::jobs::spawn_all(&state);
    let addr = listener.local_addr()?;
    let server = &state.config.file.server;
    let tls = match (&server.tls_cert_file, &server.tls_key_file) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::acceptor(cert, key).map_err(StartError::Config)?)
        }
        _ => None,
    };
    let limits = state.admission.limits();
    tracing::info!(
        %addr,
        channels = state.registry.channels().len(),
        tls = tls.is_some(),
        max_connections = limits.total,
        max_streams = limits.streams,
        "Relay listening"
    );
    let mut listeners = vec![(listener, router(state.clone()))];
    for (addr, what, app) in [
        (
            &state.config.file.admin.listen,
            "Admin API",
            admin_router as fn(Arc<AppState>) -> Router,
        ),
        (&state.config.file.metrics.listen, "Metrics", metrics_router),
    ] {
        if !addr.is_empty() {
            let side = bind::bind(addr, server.listen_backlog as u32).await?;
            tracing::info!(addr = %side.local_addr()?, tls = tls.is_some(), "{what} listening");
            listeners.push((side, app(state.clone())));
        }
    }
    let options = ConnOptions {
        header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
        tls,
        metrics: state.metrics.clone(),
    };
    let stops = Stops {
        stop_accepting: CancellationToken::new(),
        drain: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let connections = TaskTracker::new();
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(listener, app)| {
            // One task per listener (at most three).
            tokio::spawn(accept_loop(
                listener,
                app,
                state.admission.clone(),
                options.clone(),
                stops.clone(),
                connections.clone(),
            ))
        })
        .collect();
    shutdown.cancelled().await;
    // Acks keep arriving (long-poll and SSE connectors post them on new connections) while the
    // hubs wait for them; then no more connections, current requests finish, the rest close.
    begin_shutdown(&state).await;
    stops.stop_accepting.cancel();
    for task in accepting {
        let _ = task.await;
    }
    stops.drain.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        stops.force.cancel();
        state.admission.close_all();
        if tokio::time::timeout(DRAIN, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("Connections still closing after the shutdown bound");
        }
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
