//! The relay's background jobs, spawned on the state's task tracker when serving starts: the
//! buffer probe behind `/readyz`, the expiry sweep, and on a shared state store the state
//! sync and the answers to other instances' forwarded acks ([`crate::peer_acks`]).

mod state_sync;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::state::AppState;

/// How long one buffer probe may take (`docs/reference/http-api.md` §2.2).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time between probes.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Consecutive failed probes after which the buffer counts as unreachable; one success makes it
/// reachable again.
const PROBE_FAILURES_TO_UNREADY: u32 = 3;

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
        // A buffer that was not reachable at start (late backend) stays unready until a probe
        // succeeds.
        let mut failures = if probe.buffer_ok.load(Ordering::SeqCst) {
            0
        } else {
            PROBE_FAILURES_TO_UNREADY
        };
        let mut progress = probe.buffer_progress.load(Ordering::Relaxed);
        loop {
            let answered = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, probe.buffer.health_check()).await,
                Ok(Ok(()))
            );
            // A probe that waited behind large writes says "busy", not "unreachable": any
            // operation that succeeded since the last probe proves the buffer answers.
            let now_progress = probe.buffer_progress.load(Ordering::Relaxed);
            let ok = answered || now_progress != progress;
            progress = now_progress;
            failures = if ok { 0 } else { failures.saturating_add(1) };
            // One slow probe (a busy store, a loaded host) does not make every channel answer
            // 503: the buffer counts as unreachable only after consecutive failures.
            let reachable = failures < PROBE_FAILURES_TO_UNREADY;
            if !ok && reachable {
                tracing::debug!(failures, "Buffer probe failed");
            }
            if probe.buffer_ok.swap(reachable, Ordering::SeqCst) != reachable {
                if reachable {
                    tracing::info!("Buffer reachable again");
                } else {
                    tracing::warn!(failures, "Buffer unreachable");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
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
