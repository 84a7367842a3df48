//! Durable per-webhook queues: the [`Buffer`] trait and its backends.
//!
//! A channel holds one queue per webhook id. The relay publishes each accepted message into its
//! webhook's queue ([`Buffer::publish`] returns only once the message is durable), and, while a
//! connector is connected, takes **leases** on ready messages ([`Buffer::lease`]). A lease is
//! settled by [`Buffer::settle`] (ack, nack, touch); one that is not settled within the channel's
//! `ack_timeout` comes back on its own, counted as a failed attempt. Delivery counts, sequences,
//! dead letters and cumulative counters all live in the store, so they survive restarts.
//!
//! Backends: `embedded` (one file, the default), `redis` (Streams), `rabbitmq` (AMQP 0-9-1).
//! One conformance suite (`tests/it/conformance.rs`) runs unchanged against each. What they
//! share is written once: the lease policy (requeue backoff and attempt cap, `lease_policy.rs`;
//! the Redis scripts get its answers as arguments), the wait of a `lease` call
//! (`lease_wait.rs`), the detached lease attempt of the broker backends (`detached.rs`).
//!
//! ```text
//! let buffer: SharedBuffer = match backend {
//!     Embedded => Arc::new(EmbeddedBuffer::open(path, EmbeddedOptions { commit_max_delay, operation_timeout }).await?),
//!     Redis => Arc::new(RedisBuffer::connect(RedisOptions { url, key_prefix, operation_timeout }).await?),
//!     RabbitMq => Arc::new(RabbitBuffer::connect(RabbitOptions { url, exchange, prefetch, operation_timeout }).await?),
//! };
//! ```
//!
//! The backends keep time with the wall clock (the Redis one with the Redis server's), so
//! lease and delay logic cannot be driven by `tokio::time::pause`; their tests use short real
//! timeouts instead.

mod detached;
pub mod embedded;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod lease_policy;
mod lease_wait;
mod millis;
mod notify;
pub mod rabbitmq;
mod reason;
pub mod redis;
mod stored;
mod types;
mod unreadable;

pub use self::rabbitmq::{RabbitBuffer, RabbitOptions};
pub use self::redis::{RedisBuffer, RedisOptions};
pub use embedded::{EmbeddedBuffer, EmbeddedOptions};
pub use error::BufferError;
pub use lease_policy::requeue_delay;
pub use types::{
    ChannelStats, DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterReason, Lease, LeaseToken,
    QueueSettings, QueueStats, Settle, Settled,
};

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use webhook_connect_protocol::Envelope;

/// Shared handle to a backend.
pub type SharedBuffer = Arc<dyn Buffer>;

/// Durable per-webhook queues with leases, retries and dead letters.
///
/// Every method is bounded in time by the backend's operation timeout and returns
/// [`BufferError::Unavailable`] / [`BufferError::Timeout`] rather than hanging.
#[async_trait]
pub trait Buffer: Send + Sync + std::fmt::Debug + 'static {
    /// Creates (or updates the settings of) `channel` with one queue per webhook id. Idempotent;
    /// existing messages, dead letters, counters and the sequence are kept. Queues of webhook ids
    /// no longer listed are kept until empty or the channel is deleted.
    async fn ensure_channel(
        &self,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> Result<(), BufferError>;

    /// Deletes the channel with all its queues, dead letters and counters.
    async fn delete_channel(&self, channel: &str) -> Result<(), BufferError>;

    /// Stores `envelope` in queue `queue` of `envelope.channel` (normally `queue` is
    /// `envelope.webhook_id`; the `default` webhook stores other ids in its own queue).
    ///
    /// Assigns `envelope.sequence` (the channel's next number, never reused, never going back)
    /// in the same atomic step as the capacity check and the insert, and returns it. Returns
    /// only when the message is durable. Refuses with [`BufferError::QueueFull`] when the queue
    /// already holds `max_queue_size` live messages (ready, delayed or leased), and with
    /// [`BufferError::TooLarge`] above `max_message_size`; a refused publish stores nothing and
    /// consumes no sequence number.
    async fn publish(&self, queue: &str, envelope: &mut Envelope) -> Result<u64, BufferError>;

    /// Leases up to `max` ready messages of `channel` to `consumer`, waiting up to `wait` for the
    /// first one. Queues are served round-robin. On an `ordered` channel at most one message of
    /// the whole channel is leased at any time (so this returns nothing while one is out).
    ///
    /// Each returned lease has its durable `delivery_count` already incremented and expires
    /// after the channel's `ack_timeout`. Messages found expired (TTL) are moved to the dead
    /// letters with reason `expired` instead of being returned; stored entries that cannot be
    /// decoded go to the dead letters with reason `rejected` (R-63).
    async fn lease(
        &self,
        channel: &str,
        max: usize,
        wait: Duration,
        consumer: &str,
    ) -> Result<Vec<Lease>, BufferError>;

    /// Settles a lease. Returns [`Settled::NotInFlight`] (changing nothing) when the lease is no
    /// longer held by this token: expired, settled already, or leased again since.
    ///
    /// - `Ack` removes the message durably.
    /// - `Nack { retry: true }` and `Release` (connection lost) requeue after
    ///   [`requeue_delay`] (or the given delay, clamped to `requeue_delay_max`), or dead-letter
    ///   with reason `max_attempts` when this was the `max_delivery_attempts`-th delivery.
    /// - `Nack { retry: false }` dead-letters at once with reason `rejected`.
    /// - `Touch` extends the lease to now + `ack_timeout`, but never past `max_lease` after the
    ///   delivery.
    /// - `Return` makes the message ready again at once without counting the delivery
    ///   (answers `Requeued`).
    async fn settle(&self, token: &LeaseToken, action: Settle) -> Result<Settled, BufferError>;

    /// Lists dead letters of `channel`, newest first, at most `query.limit` (≤ 1000).
    async fn dead_letters(
        &self,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, BufferError>;

    /// Moves dead letters back to their queues as fresh messages (same id, sequence and body,
    /// `delivery_count` 0). `message_id: None` replays all of the channel (or of `webhook_id`).
    /// Returns how many were replayed. A replay into a full queue fails with `QueueFull` and keeps
    /// that dead letter.
    async fn replay_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError>;

    /// Deletes dead letters (`message_id: None`: all of the channel or of `webhook_id`).
    /// Returns how many were deleted.
    async fn purge_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError>;

    /// Real numbers from the store, per channel and per webhook queue.
    async fn stats(&self, channel: &str) -> Result<ChannelStats, BufferError>;

    /// Moves every expired ready message of every channel to the dead letters (reason
    /// `expired`); returns how many. Called every `sweep_interval`.
    async fn sweep_expired(&self) -> Result<u64, BufferError>;

    /// Ok when the backend is reachable and writable.
    async fn health_check(&self) -> Result<(), BufferError>;

    /// Flushes and releases resources (file lock, connections). Later calls fail.
    async fn close(&self) -> Result<(), BufferError>;
}
