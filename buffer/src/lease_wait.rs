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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Attempts that find nothing, saying `wake_in`; counted in `calls`.
    fn empty(
        calls: &Arc<AtomicUsize>,
        wake_in: Option<u64>,
    ) -> impl FnMut() -> std::future::Ready<LeaseAttempt> {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok((Vec::new(), wake_in)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_poll_it_sleeps_until_the_deadline_and_returns_nothing() {
        let notifiers = Notifiers::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let got = wait_for_leases(
            &notifiers,
            "c",
            5,
            Duration::from_secs(30),
            None,
            empty(&calls, None),
        )
        .await
        .unwrap();
        assert!(got.is_empty());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "once, and once at the deadline"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn it_looks_again_at_each_poll_and_when_something_may_be_ready() {
        let notifiers = Notifiers::default();
        let calls = Arc::new(AtomicUsize::new(0));
        wait_for_leases(
            &notifiers,
            "c",
            5,
            Duration::from_millis(1000),
            Some(Duration::from_millis(200)),
            empty(&calls, None),
        )
        .await
        .unwrap();
        // At 0, 200, 400, 600, 800 and 1000 ms.
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        let calls = Arc::new(AtomicUsize::new(0));
        wait_for_leases(
            &notifiers,
            "c",
            5,
            Duration::from_millis(1000),
            Some(Duration::from_millis(200)),
            empty(&calls, Some(50)),
        )
        .await
        .unwrap();
        // Every 50 ms: 0, 50, …, 1000.
        assert_eq!(calls.load(Ordering::SeqCst), 21);
        // "Ready now" still waits a millisecond rather than spinning.
        let calls = Arc::new(AtomicUsize::new(0));
        wait_for_leases(
            &notifiers,
            "c",
            5,
            Duration::from_millis(10),
            None,
            empty(&calls, Some(0)),
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_of_the_channel_ends_the_sleep() {
        let notifiers = Arc::new(Notifiers::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let waker = {
            let notifiers = notifiers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                notifiers.wake("other");
                notifiers.wake("c");
            })
        };
        let start = Instant::now();
        let attempt = {
            let calls = calls.clone();
            move || {
                // Something to lease once the wake-up came.
                let n = calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok(if n == 0 {
                    (Vec::new(), None)
                } else {
                    (vec![lease()], None)
                }))
            }
        };
        let got = wait_for_leases(&notifiers, "c", 5, Duration::from_secs(60), None, attempt)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        waker.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn max_zero_and_errors_return_at_once() {
        let notifiers = Notifiers::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let got = wait_for_leases(
            &notifiers,
            "c",
            0,
            Duration::from_secs(30),
            None,
            empty(&calls, None),
        )
        .await
        .unwrap();
        assert!(got.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let err = wait_for_leases(&notifiers, "c", 5, Duration::from_secs(30), None, || {
            std::future::ready(Err(BufferError::Timeout))
        })
        .await;
        assert!(matches!(err, Err(BufferError::Timeout)));
    }

    fn lease() -> Lease {
        use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};
        let envelope = Envelope {
            message_id: MessageId::generate(),
            channel: "c".into(),
            webhook_id: "w".into(),
            namespace: None,
            sequence: 1,
            received_at: Timestamp::now(),
            expires_at: None,
            headers: Headers::new(),
            raw_headers: None,
            data_type: DataType::Json,
            content_type: None,
            payload: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            payload_encoding: None,
            body_omitted: false,
            body: b"{}".to_vec(),
        };
        Lease {
            token: crate::LeaseToken {
                channel: "c".into(),
                queue: "w".into(),
                message_id: envelope.message_id.clone(),
                handle: "1".into(),
            },
            envelope,
            delivery_count: 1,
            lease_expires_at: Timestamp::now(),
        }
    }
}
