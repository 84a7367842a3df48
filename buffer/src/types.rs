//! Values passed to and returned by [`crate::Buffer`].

use std::time::Duration;

use webhook_connect_protocol::{Envelope, MessageId, Timestamp};

use crate::BufferError;

/// Per-channel queue settings (`docs/reference/config-formats.md` §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Message lifetime; envelopes carry their own `expires_at` computed from it.
    pub ttl: Duration,
    /// Live messages per webhook queue.
    pub max_queue_size: u64,
    /// Raw body bytes.
    pub max_message_size: u64,
    /// Deliveries before dead-lettering with `max_attempts`.
    pub max_delivery_attempts: u32,
    /// Lease length.
    pub ack_timeout: Duration,
    /// Longest a lease can be extended by touch, counted from the delivery.
    pub max_lease: Duration,
    /// First requeue delay.
    pub requeue_delay_initial: Duration,
    /// Largest requeue delay.
    pub requeue_delay_max: Duration,
    /// At most one message of the channel in flight.
    pub ordered: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            ttl: Duration::from_secs(86_400),
            max_queue_size: 10_000,
            max_message_size: 10 * 1024 * 1024,
            max_delivery_attempts: 10,
            ack_timeout: Duration::from_secs(30),
            max_lease: Duration::from_secs(3600),
            requeue_delay_initial: Duration::from_millis(500),
            requeue_delay_max: Duration::from_millis(60_000),
            ordered: false,
        }
    }
}

/// Identifies one lease of one message; settling with a stale token answers `NotInFlight`.
///
/// The token is plain data so that any relay instance sharing the backend can settle it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    /// Channel of the message.
    pub channel: String,
    /// Webhook queue holding the message.
    pub queue: String,
    /// The message.
    pub message_id: MessageId,
    /// Backend-specific fencing value (e.g. a lease generation, a stream entry id, a delivery
    /// tag), opaque to callers.
    pub handle: String,
}

/// A message leased to a consumer.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The stored message.
    pub envelope: Envelope,
    /// How to settle this lease.
    pub token: LeaseToken,
    /// Leases of this message so far, this one included (durable).
    pub delivery_count: u32,
    /// When this lease ends unless settled or touched.
    pub lease_expires_at: Timestamp,
}

/// How to settle a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Delivered: remove.
    Ack,
    /// Not delivered.
    Nack {
        /// Requeue (counted attempt) or dead-letter at once (`rejected`).
        retry: bool,
        /// Requested requeue delay (v2 `delay_ms`), clamped to `requeue_delay_max`.
        delay: Option<Duration>,
        /// Reason text, stored as `last_error`.
        reason: Option<String>,
    },
    /// The holding connection went away (or was evicted): requeue as a failed attempt.
    Release,
    /// Extend the lease.
    Touch,
    /// The message was never handed to any connection (e.g. none could take it after all):
    /// ready again at once, and this delivery does not count as an attempt (C.2 rule 11,
    /// Not for messages a connector may have seen; use `Release` for those.
    Return,
}

/// What settling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Removed.
    Acked,
    /// Pending again at `ready_at`.
    Requeued {
        /// When it becomes deliverable.
        ready_at: Timestamp,
    },
    /// Moved to the dead letters.
    DeadLettered(DeadLetterReason),
    /// Lease extended to this time.
    Extended(Timestamp),
    /// The token no longer holds the lease; nothing changed.
    NotInFlight,
}

/// Why a message is a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Nack without retry, or an unreadable stored entry.
    Rejected,
    /// `max_delivery_attempts` reached.
    MaxAttempts,
    /// TTL passed.
    Expired,
}

impl DeadLetterReason {
    /// `rejected`, `max_attempts` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::MaxAttempts => "max_attempts",
            DeadLetterReason::Expired => "expired",
        }
    }

    /// The reason named `s` by [`as_str`](DeadLetterReason::as_str).
    pub(crate) fn parse(s: &str) -> Option<DeadLetterReason> {
        [
            DeadLetterReason::Rejected,
            DeadLetterReason::MaxAttempts,
            DeadLetterReason::Expired,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A dead-lettered message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The stored message.
    pub envelope: Envelope,
    /// Queue it came from.
    pub queue: String,
    /// Why.
    pub reason: DeadLetterReason,
    /// When.
    pub dead_lettered_at: Timestamp,
    /// Deliveries made.
    pub delivery_count: u32,
    /// Reason text of the last failed delivery.
    pub last_error: Option<String>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this webhook queue.
    pub webhook_id: Option<String>,
    /// Page size, 1–1000.
    pub limit: usize,
    /// Continue after a previous page (`next_cursor`).
    pub cursor: Option<String>,
}

impl DeadLetterQuery {
    /// Refuses a page size outside 1–1000.
    pub(crate) fn check_limit(&self) -> Result<(), BufferError> {
        if self.limit == 0 || self.limit > 1000 {
            return Err(BufferError::Invalid("limit must be 1-1000".into()));
        }
        Ok(())
    }
}

/// The answer to a replay of `replayed` dead letters, `blocked` more kept because their queue
/// was full: `QueueFull` when none could go back.
pub(crate) fn replay_result(replayed: u64, blocked: u64) -> Result<u64, BufferError> {
    if replayed == 0 && blocked > 0 {
        return Err(BufferError::QueueFull);
    }
    Ok(replayed)
}

impl Default for DeadLetterQuery {
    fn default() -> Self {
        DeadLetterQuery {
            webhook_id: None,
            limit: 100,
            cursor: None,
        }
    }
}

/// One page of dead letters, newest first.
#[derive(Debug, Clone)]
pub struct DeadLetterPage {
    /// The entries.
    pub items: Vec<DeadLetter>,
    /// Cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// Numbers of one webhook queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// Webhook id of the queue.
    pub webhook_id: String,
    /// Ready or waiting for redelivery (not leased, not dead, not expired).
    pub queued: u64,
    /// Leased.
    pub in_flight: u64,
    /// Current dead-letter depth.
    pub dead_letters: u64,
    /// Age of the oldest queued message, seconds.
    pub oldest_queued_age_seconds: Option<f64>,
    /// Acked, cumulative.
    pub delivered: u64,
    /// Nacks and releases, cumulative.
    pub nacked: u64,
    /// Dead-lettered as expired, cumulative.
    pub expired: u64,
    /// Dead-lettered for any reason, cumulative.
    pub dead_lettered: u64,
    /// Accepted by publish, cumulative.
    pub published: u64,
}

/// Numbers of one channel: the sum of its queues, and each queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelStats {
    /// Channel name.
    pub channel: String,
    /// Sum over queues (`webhook_id` empty, `oldest_queued_age_seconds` the max).
    pub total: QueueStats,
    /// Per webhook queue.
    pub queues: Vec<QueueStats>,
}

impl ChannelStats {
    /// The numbers of `channel` with these queues, and their total.
    pub(crate) fn of_queues(channel: &str, queues: Vec<QueueStats>) -> ChannelStats {
        let mut total = QueueStats::default();
        for q in &queues {
            total.queued += q.queued;
            total.in_flight += q.in_flight;
            total.dead_letters += q.dead_letters;
            total.delivered += q.delivered;
            total.nacked += q.nacked;
            total.expired += q.expired;
            total.dead_lettered += q.dead_lettered;
            total.published += q.published;
            total.oldest_queued_age_seconds =
                match (total.oldest_queued_age_seconds, q.oldest_queued_age_seconds) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
        }
        ChannelStats {
            channel: channel.to_owned(),
            total,
            queues,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_from_their_names() {
        for r in [
            DeadLetterReason::Rejected,
            DeadLetterReason::MaxAttempts,
            DeadLetterReason::Expired,
        ] {
            assert_eq!(DeadLetterReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(DeadLetterReason::parse("delivery_limit"), None);
    }

    #[test]
    fn a_replay_fails_only_when_every_match_was_blocked() {
        assert_eq!(replay_result(2, 1).ok(), Some(2));
        assert_eq!(replay_result(0, 0).ok(), Some(0));
        assert!(matches!(replay_result(0, 3), Err(BufferError::QueueFull)));
    }

    #[test]
    fn channel_total_adds_the_queues_and_keeps_the_oldest_age() {
        let q = |id: &str, queued, age| QueueStats {
            webhook_id: id.into(),
            queued,
            published: queued,
            oldest_queued_age_seconds: age,
            ..QueueStats::default()
        };
        let s = ChannelStats::of_queues("c", vec![q("a", 2, Some(1.5)), q("b", 3, None)]);
        assert_eq!(s.channel, "c");
        assert_eq!((s.total.queued, s.total.published), (5, 5));
        assert_eq!(s.total.oldest_queued_age_seconds, Some(1.5));
        assert_eq!(s.total.webhook_id, "");
        assert_eq!(s.queues.len(), 2);
    }
}
