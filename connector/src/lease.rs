//! The relay's lease on a message while the connector works on it (`docs/reference/module-contract.md` §6 "Bounded by
//! the lease"). Over v2 the lease is extended with `touch` whenever half of it has passed; once
//! it cannot be kept (the relay answers `not_in_flight`, the connection that holds it is gone, or
//! its last known expiry passed without a successful extension) the message's [`Lease`] is marked
//! lost. Retry loops start no new attempt on a lost lease: the relay has taken the message back
//! and will deliver it again, so the outcome at hand is final.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::{Timestamp, WebhookMessage};

use crate::ack::{AckError, AckSink};

/// The lease of one message: cancelled once it is lost.
pub type Lease = CancellationToken;

/// The reason given when a retryable failure is nacked because the lease ran out.
pub const LEASE_LOST: &str = "lease could not be extended; no further attempt";

/// Leases of the messages being worked on in one channel, by message id, so the stream reader
/// can mark one lost when the relay reports it `not_in_flight`. Bounded by the dispatcher's
/// holding permits: an entry lives exactly as long as the work on its message.
#[derive(Debug, Default)]
pub struct Leases {
    held: Mutex<HashMap<String, Lease>>,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the work on `message_id`; the returned lease is live until [`Self::lost`].
    pub fn start(&self, message_id: &str) -> Lease {
        let lease = Lease::new();
        self.lock().insert(message_id.to_owned(), lease.clone());
        lease
    }

    /// The work on `message_id` is finished.
    pub fn finish(&self, message_id: &str) {
        self.lock().remove(message_id);
    }

    /// The relay no longer holds `message_id` for this connector.
    pub fn lost(&self, message_id: &str) {
        if let Some(lease) = self.lock().get(message_id) {
            lease.cancel();
        }
    }
}

/// While `msg` is worked on over v2, extends its lease with `touch` whenever half of it has
/// passed, and cancels `lease` once it cannot be kept. Never returns; over v1 (no `touch`) it
/// only waits, and the retry policy alone bounds the work.
pub async fn keep(msg: &WebhookMessage, acks: &AckSink, lease: &Lease) {
    let remaining = match (&msg.lease_expires_at, acks.supports_touch()) {
        (Some(expires), true) => expires.unix_millis() - Timestamp::now().unix_millis(),
        _ => return std::future::pending().await,
    };
    // The relay's lease length, as seen at receipt (at least 1 s).
    let length = Duration::from_millis(u64::try_from(remaining.max(1000)).unwrap_or(1000));
    let mut expires = Instant::now() + Duration::from_millis(u64::try_from(remaining).unwrap_or(0));
    loop {
        tokio::time::sleep(length / 2).await;
        let sent = Instant::now();
        match acks.touch(&msg.message_id).await {
            Ok(()) => {
                expires = sent + length;
                tracing::debug!(message_id = %msg.message_id, "Lease extended");
            }
            Err(e @ (AckError::NotInFlight | AckError::ConnectionGone)) => {
                tracing::info!(message_id = %msg.message_id, error = %e, "Lease lost; no further attempt");
                break;
            }
            Err(e) if Instant::now() >= expires => {
                tracing::info!(message_id = %msg.message_id, error = %e, "Lease expired unextended; no further attempt");
                break;
            }
            Err(e) => {
                tracing::debug!(message_id = %msg.message_id, error = %e, "Could not extend the lease");
            }
        }
    }
    lease.cancel();
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_work_can_lose_its_lease() {
        let leases = Leases::default();
        let lease = leases.start("m1");
        leases.lost("m2");
        assert!(!lease.is_cancelled());
        leases.lost("m1");
        assert!(lease.is_cancelled());
        leases.finish("m1");
        assert!(leases.lock().is_empty());
    }
}
