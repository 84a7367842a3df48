//! The wait of a `lease` call, the same for every backend: try, and while nothing was leased,
//! sleep until a wake-up of the channel (publish, requeue, settle, replay), the moment the
//! backend said something may become leasable (a delay ends, a lease runs out), or the next poll
//! for what other instances did, whichever comes first, until the caller's deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::notify::Notifiers;
use crate::{BufferError, Lease};

/// One lease attempt's answer: the leases, and in how many ms something may become leasable.
pub(crate) type LeaseAttempt = Result<(Vec<Lease>, Option<u64>), BufferError>;

/// Runs `attempt` until it leases something (or `max` is 0) or `wait` has passed, sleeping in
/// between as the module says; `poll` is the longest sleep (`None`: wake-ups alone suffice, as
/// for a backend used by one process).
pub(crate) async fn wait_for_leases<Fut>(
    notifiers: &Notifiers,
    channel: &str,
    max: usize,
    wait: Duration,
    poll: Option<Duration>,
    mut attempt: impl FnMut() -> Fut,
) -> Result<Vec<Lease>, BufferError>
where
    Fut: Future<Output = LeaseAttempt>,
{
    let deadline = Instant::now() + wait;
    loop {
        // Armed before the attempt, so a wake-up during it is not missed.
        let notify = notifiers.get(channel);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (leases, wake_in) = attempt().await?;
        if !leases.is_empty() || max == 0 {
            return Ok(leases);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(leases);
        }
        let mut until = match poll {
            Some(poll) => deadline.min(now + poll),
            None => deadline,
        };
        if let Some(ms) = wake_in {
            until = until.min(now + Duration::from_millis(ms.max(1)));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}
