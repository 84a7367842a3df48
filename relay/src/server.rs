//! Serving a built relay: the main, admin and metrics listeners (plain or TLS), the background
//! jobs, and graceful shutdown as `wire-protocol.md` C.5 rule 3 says: refuse new streams and
//! leases, wait up to `shutdown_grace_seconds` for outstanding acks, close every transport,
//! keep unacked messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::CloseReason;

use crate::routes::{admin_router, metrics_router, router};
use crate::start_error::StartError;
use crate::state::AppState;

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
    crate::jobs::spawn_all(&state);
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
