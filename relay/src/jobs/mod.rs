//! The relay's background jobs, spawned on the state's task tracker when serving starts: the
//! buffer probe behind `/readyz`, the expiry sweep, and on a shared state store the state
//! sync and the answers to other instances' forwarded acks ([`crate::peer_acks`]).

mod state_sync;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::state::AppState;

/// Spawns every background job of `state`.
pub(crate) fn spawn_all(state: &Arc<AppState>) {
    state_sync::spawn(state);
    if let Some(peers) = state.peer_acks.clone() {
        let channels = state.clone();
        crate::peer_acks::spawn(
            peers,
            &state.tracker,
            state.shutdown.clone(),
            Arc::new(move |name| channels.registry.channel(name)),
        );
    }
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
