//! The message trace (`docs/operations.md` "Message trace", `GET /admin/webhook-connect/messages/{message_id}`):
//! per message, when it was accepted, every delivery attempt with what the connector reported
//! about its local delivery, dead-lettering and replays.
//!
//! The trace lives beside the state store and follows its backend: in memory for the embedded
//! state store (one instance; lost on restart), in Redis for the Redis state store (shared by
//! every instance). Either way it is bounded per channel by `[trace] max_messages_per_channel`
//! and `max_age_seconds`, and per message by [`MAX_EVENTS`].
//!
//! Recording never waits and never fails a delivery: events go through a bounded queue to one
//! writer task; when the queue is full the event is dropped, counted and logged once per
//! thousand. The trace is a diagnostic record, not the store of
//! truth (the buffer is).

pub mod event;
pub mod memory;
pub mod redis;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::Timestamp;

pub use event::{AttemptOutcome, MessageTrace, TraceEvent};
pub use view::MessageTraceView;

/// Most events kept per message (accepted, then two per attempt, dead-lettering, replays).
pub const MAX_EVENTS: usize = 200;

/// Events waiting for the writer at most.
const QUEUE: usize = 65_536;

/// Events written in one round trip at most.
const BATCH: usize = 1024;

/// How long a trace operation may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How much is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages per channel.
    pub max_messages: usize,
    /// Time since a message was first seen.
    pub max_age: Duration,
    /// Events per message.
    pub max_events: usize,
}

impl Limits {
    /// Milliseconds since the epoch before which traces are dropped.
    pub fn oldest_kept(&self, now: Timestamp) -> i64 {
        now.unix_millis()
            .saturating_sub(i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX))
    }
}

/// One event of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its channel.
    pub channel: String,
    /// The message.
    pub message_id: String,
    /// What happened.
    pub event: TraceEvent,
}

/// The trace store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TraceError(pub String);

#[derive(Debug)]
enum Backend {
    /// Off (`max_messages_per_channel = 0`).
    Off,
    Memory(memory::MemoryTraces),
    Redis(redis::RedisTraces),
}

/// Where traces are recorded and read.
#[derive(Debug)]
pub struct TraceStore {
    backend: Arc<Backend>,
    /// The writer's queue (Redis only; memory writes at once).
    queue: Option<mpsc::Sender<Record>>,
    /// Events not recorded (queue full or Redis failed).
    dropped: Arc<AtomicU64>,
}

fn note_dropped(dropped: &AtomicU64, n: u64) {
    let before = dropped.fetch_add(n, Ordering::Relaxed);
    if before / 1000 != (before + n) / 1000 || before == 0 {
        tracing::warn!(
            dropped = before + n,
            "Message trace events dropped (trace store behind or unreachable)"
        );
    }
}

impl TraceStore {
    /// A store in memory (the embedded state store); `max_messages == 0` turns tracing off.
    pub fn memory(limits: Limits) -> TraceStore {
        let backend = if limits.max_messages == 0 {
            Backend::Off
        } else {
            Backend::Memory(memory::MemoryTraces::new(limits))
        };
        TraceStore {
            backend: Arc::new(backend),
            queue: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A store in Redis at `url` (or the Redis Cluster of `cluster_nodes` when not empty) under
    /// `prefix`, with its writer task (stopped by `shutdown` after writing what is queued).
    pub async fn redis(
        url: &str,
        cluster_nodes: &[String],
        prefix: &str,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Result<TraceStore, TraceError> {
        if limits.max_messages == 0 {
            return Ok(TraceStore::memory(limits));
        }
        let store =
            redis::RedisTraces::connect(url, cluster_nodes, prefix, limits, OPERATION_TIMEOUT)
                .await?;
        let backend = Arc::new(Backend::Redis(store));
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(backend.clone(), rx, shutdown, dropped.clone()));
        Ok(TraceStore {
            backend,
            queue: Some(tx),
            dropped,
        })
    }

    /// Records `event` of `message_id` (never waits; drops and counts when the writer is
    /// behind).
    pub fn record(&self, channel: &str, message_id: &str, event: TraceEvent) {
        let record = Record {
            channel: channel.to_owned(),
            message_id: message_id.to_owned(),
            event,
        };
        match (&*self.backend, &self.queue) {
            (Backend::Off, _) => {}
            (Backend::Memory(m), _) => m.write(vec![record]),
            (_, Some(queue)) => {
                if queue.try_send(record).is_err() {
                    note_dropped(&self.dropped, 1);
                }
            }
            (Backend::Redis(_), None) => {}
        }
    }

    /// The trace of `message_id`, if it is kept.
    pub async fn get(&self, message_id: &str) -> Result<Option<MessageTrace>, TraceError> {
        match &*self.backend {
            Backend::Off => Ok(None),
            Backend::Memory(m) => Ok(m.get(message_id)),
            Backend::Redis(r) => r.get(message_id).await,
        }
    }

    /// Forgets the traces of a deleted channel.
    pub async fn remove_channel(&self, channel: &str) -> Result<(), TraceError> {
        match &*self.backend {
            Backend::Off => Ok(()),
            Backend::Memory(m) => {
                m.remove_channel(channel);
                Ok(())
            }
            Backend::Redis(r) => r.remove_channel(channel).await,
        }
    }

    /// How often `message_id` was replayed, for the `replay_count` of its next delivery.
    /// Only the memory store answers here (a lookup per delivery in Redis would cost a round
    /// trip on the delivery path); with Redis the replay shows in the trace, not the header.
    pub fn replays_known_locally(&self, message_id: &str) -> u32 {
        match &*self.backend {
            Backend::Memory(m) => m.replays(message_id),
            _ => 0,
        }
    }
}

async fn write_loop(
    backend: Arc<Backend>,
    mut rx: mpsc::Receiver<Record>,
    shutdown: CancellationToken,
    dropped: Arc<AtomicU64>,
) {
    let Backend::Redis(store) = &*backend else {
        return;
    };
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            () = shutdown.cancelled() => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        if let Err(e) = store.write(batch).await {
            tracing::debug!(error = %e, events = n, "Could not write the message trace");
            note_dropped(&dropped, n);
        }
    }
    // Shutdown: write what is already queued, once.
    rx.close();
    let mut rest = Vec::new();
    while let Ok(r) = rx.try_recv() {
        rest.push(r);
    }
    for batch in rest.chunks(BATCH) {
        if let Err(e) = store.write(batch.to_vec()).await {
            tracing::warn!(error = %e, "Could not write the message trace at shutdown");
            break;
        }
    }
}
