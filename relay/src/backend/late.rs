//! A buffer that connects after start-up (`docs/reference/config-formats.md` §2.8): when the backend cannot be
//! reached at start-up the relay starts anyway. Until the connection is made every operation
//! fails with [`BufferError::Unavailable`] (ingest and streams answer `503`, `/readyz` too),
//! except [`Buffer::ensure_channel`], which is remembered and replayed against the backend as
//! soon as it is reached, so the channels built at start-up get their queues. The relay retries
//! with exponential backoff, 1 s doubling to 30 s.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use webhook_connect_buffer::{
    Buffer, BufferError, ChannelStats, DeadLetterPage, DeadLetterQuery, Lease, LeaseToken,
    QueueSettings, Settle, Settled, SharedBuffer,
};
use webhook_connect_protocol::Envelope;
use webhook_connect_protocol::backoff::Backoff;

/// First and longest wait between connection attempts.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// The backend once connected, and the channels to create on it.
#[derive(Debug, Default)]
pub struct LateBuffer {
    inner: RwLock<Option<SharedBuffer>>,
    /// `ensure_channel` calls made before the connection, in order. Locked across the replay so
    /// a call made meanwhile is either replayed or sent to the connected backend.
    pending: tokio::sync::Mutex<Vec<(String, Vec<String>, QueueSettings)>>,
}

fn not_connected() -> BufferError {
    BufferError::Unavailable("not connected to the buffer yet".into())
}

impl LateBuffer {
    /// A buffer with no backend yet.
    pub fn new() -> Arc<LateBuffer> {
        Arc::new(LateBuffer::default())
    }

    fn get(&self) -> Result<SharedBuffer, BufferError> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(not_connected)
    }

    /// Creates the remembered channels on `backend` and puts it in force. On failure nothing
    /// changes (the next attempt replays everything again; `ensure_channel` is idempotent).
    async fn attach(&self, backend: SharedBuffer) -> Result<(), BufferError> {
        let mut pending = self.pending.lock().await;
        for (channel, queues, settings) in pending.iter() {
            backend.ensure_channel(channel, queues, settings).await?;
        }
        pending.clear();
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(backend);
        Ok(())
    }

    /// Calls `connect` until it succeeds (1 s doubling to 30 s between attempts) and attaches
    /// the backend it returns; gives up when `stop` is cancelled.
    pub async fn connect_with_backoff<F, Fut, E>(&self, connect: F, stop: CancellationToken)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<SharedBuffer, E>>,
        E: std::fmt::Display,
    {
        let mut backoff = Backoff::new(FIRST_RETRY, LONGEST_RETRY, 2.0);
        loop {
            let failure = match connect().await {
                Ok(backend) => match self.attach(backend.clone()).await {
                    Ok(()) => {
                        tracing::info!("Connected to the buffer");
                        return;
                    }
                    Err(e) => {
                        let _ = backend.close().await;
                        e.to_string()
                    }
                },
                Err(e) => e.to_string(),
            };
            let wait = backoff.next_delay();
            tracing::warn!(error = %failure, retry_in_s = wait.as_secs(), "Buffer still unreachable");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[async_trait]
impl Buffer for LateBuffer {
    async fn ensure_channel(
        &self,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> Result<(), BufferError> {
        let mut pending = self.pending.lock().await;
        match self.get() {
            Ok(backend) => {
                drop(pending);
                backend.ensure_channel(channel, webhook_ids, settings).await
            }
            Err(_) => {
                pending.push((channel.to_owned(), webhook_ids.to_vec(), settings.clone()));
                Ok(())
            }
        }
    }

    async fn delete_channel(&self, channel: &str) -> Result<(), BufferError> {
        self.get()?.delete_channel(channel).await
    }

    async fn publish(&self, queue: &str, envelope: &mut Envelope) -> Result<u64, BufferError> {
        self.get()?.publish(queue, envelope).await
    }

    async fn lease(
        &self,
        channel: &str,
        max: usize,
        wait: Duration,
        consumer: &str,
    ) -> Result<Vec<Lease>, BufferError> {
        self.get()?.lease(channel, max, wait, consumer).await
    }

    async fn settle(&self, token: &LeaseToken, action: Settle) -> Result<Settled, BufferError> {
        self.get()?.settle(token, action).await
    }

    async fn dead_letters(
        &self,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, BufferError> {
        self.get()?.dead_letters(channel, query).await
    }

    async fn replay_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        self.get()?
            .replay_dead_letters(channel, webhook_id, message_id)
            .await
    }

    async fn purge_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        self.get()?
            .purge_dead_letters(channel, webhook_id, message_id)
            .await
    }

    async fn stats(&self, channel: &str) -> Result<ChannelStats, BufferError> {
        self.get()?.stats(channel).await
    }

    async fn sweep_expired(&self) -> Result<u64, BufferError> {
        self.get()?.sweep_expired().await
    }

    async fn health_check(&self) -> Result<(), BufferError> {
        self.get()?.health_check().await
    }

    async fn close(&self) -> Result<(), BufferError> {
        match self.get() {
            Ok(backend) => backend.close().await,
            Err(_) => Ok(()),
        }
    }
}
