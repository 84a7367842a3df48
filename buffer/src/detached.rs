//! A lease attempt run in its own task: if the caller is cancelled while the backend
//! works, the task hands the leases back uncounted instead of leaving them to expire as failed
//! attempts, and so does the caller's guard when the answer arrived but was never read. Shared
//! by the Redis and RabbitMQ backends.

use std::future::Future;
use std::sync::Arc;

use crate::lease_wait::LeaseAttempt;
use crate::{BufferError, Lease};

/// A backend that can lease once and give back leases nobody will settle.
pub(crate) trait Detachable: Send + Sync + 'static {
    /// One lease attempt.
    fn attempt(&self, channel: &str, max: usize) -> impl Future<Output = LeaseAttempt> + Send;
    /// Makes `leases` ready again without counting a delivery.
    fn give_back(&self, leases: &[Lease]) -> impl Future<Output = ()> + Send;
}

/// Runs one attempt of `inner` in its own task and waits for its answer.
pub(crate) async fn lease_detached<I: Detachable>(
    inner: &Arc<I>,
    channel: &str,
    max: usize,
) -> LeaseAttempt {
    let (tx, rx) = tokio::sync::oneshot::channel::<LeaseAttempt>();
    let task_inner = inner.clone();
    let channel = channel.to_owned();
    tokio::spawn(async move {
        let result = task_inner.attempt(&channel, max).await;
        if let Err(Ok((leases, _))) = tx.send(result)
            && !leases.is_empty()
        {
            task_inner.give_back(&leases).await;
        }
    });
    let mut guard = Guard {
        rx: Some(rx),
        inner: inner.clone(),
    };
    let rx = guard
        .rx
        .as_mut()
        .ok_or_else(|| BufferError::Unavailable("lease answer lost".into()))?;
    rx.await
        .map_err(|_| BufferError::Unavailable("lease task stopped".into()))?
}

/// The answer channel of a detached attempt: if the caller is dropped after the answer arrived
/// but before it was read, the leases in it are handed back.
struct Guard<I: Detachable> {
    rx: Option<tokio::sync::oneshot::Receiver<LeaseAttempt>>,
    inner: Arc<I>,
}

impl<I: Detachable> Drop for Guard<I> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        if let Ok(Ok((leases, _))) = rx.try_recv()
            && !leases.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let inner = self.inner.clone();
            runtime.spawn(async move { inner.give_back(&leases).await });
        }
    }
}
