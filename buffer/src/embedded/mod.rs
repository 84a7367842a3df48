//! The `embedded` backend (default): every queue of the relay in one redb file.
//!
//! - **Durable, crash-safe.** Each batch of operations is one redb write transaction committed
//!   with immediate durability before any caller of the batch gets its answer.
//! - **Group commit.** One writer thread ([`writer`]) applies many concurrent publishes, leases
//!   and settles in one transaction, so throughput does not pay one sync per message.
//! - **Everything persists:** messages, delivery counts, leases, requeue times, dead letters,
//!   cumulative counters and each channel's sequence. Leases left by a previous process are
//!   ended at start-up as failed attempts.
//! - **Single instance.** The file is locked; a second process gets [`BufferError::Locked`]
//!

mod index;
pub(crate) mod records;
mod state;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use webhook_connect_protocol::Envelope;

use crate::lease_wait::wait_for_leases;
use crate::millis::now_ms;
use crate::notify::Notifiers;
use crate::{
    Buffer, BufferError, ChannelStats, DeadLetterPage, DeadLetterQuery, Lease, LeaseToken,
    QueueSettings, Settle, Settled,
};
use writer::{Cmd, Reply, Writer};

/// Commands waiting for the writer at most (callers beyond it wait for room).
const COMMAND_QUEUE: usize = 4096;

/// Options of the embedded backend (`buffer.embedded.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Group-commit window: how long the writer may wait for more operations of concurrent
    /// callers before committing (`commit_max_delay_ms`, default 2 ms).
    pub commit_max_delay: Duration,
    /// Bound of every operation (default 5 s).
    pub operation_timeout: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            commit_max_delay: Duration::from_millis(2),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

/// The embedded store. Cheap to share behind an `Arc`; dropping the last handle (or
/// [`Buffer::close`]) releases the file.
#[derive(Debug)]
pub struct EmbeddedBuffer {
    tx: mpsc::Sender<Cmd>,
    notifiers: Arc<Notifiers>,
    outstanding: Arc<AtomicUsize>,
    options: EmbeddedOptions,
    path: PathBuf,
    /// Set by `close`, to tell "closed" from "the writer died".
    closed: std::sync::atomic::AtomicBool,
}

/// Counts an operation as on its way to the writer (see the group-commit window).
struct Outstanding<'a>(&'a AtomicUsize);

impl<'a> Outstanding<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Outstanding(counter)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer channel of a lease request. If the request is dropped (cancelled or timed out)
/// after the writer answered but before the answer was read, the leases in it are handed back;
/// if it is dropped before the writer answered, the writer hands them back itself.
struct LeaseReply {
    rx: Option<oneshot::Receiver<Result<state::LeaseOut, BufferError>>>,
    tx: mpsc::Sender<Cmd>,
}

impl Drop for LeaseReply {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        if let Ok(Ok(out)) = rx.try_recv() {
            let tokens: Vec<LeaseToken> = out.leases.into_iter().map(|l| l.token).collect();
            if !tokens.is_empty() && self.tx.try_send(Cmd::Unlease { tokens }).is_err() {
                tracing::warn!("Could not hand back leases of a cancelled call; they will expire");
            }
        }
    }
}

impl EmbeddedBuffer {
    /// Opens (or creates) the store at `path`, restoring leases of a previous process.
    ///
    /// Fails with [`BufferError::Locked`] while another process (or another handle in this
    /// one) has the file open.
    pub async fn open(
        path: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<EmbeddedBuffer, BufferError> {
        let path = path.as_ref().to_path_buf();
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let notifiers = Arc::new(Notifiers::default());
        let outstanding = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_path = path.clone();
        let thread_notifiers = notifiers.clone();
        let thread_outstanding = outstanding.clone();
        let delay = options.commit_max_delay;
        std::thread::Builder::new()
            .name("wc-embedded-writer".into())
            .spawn(move || match writer::open_store(&thread_path) {
                Ok((db, mem)) => {
                    let _ = ready_tx.send(Ok(()));
                    Writer::new(db, mem, rx, thread_notifiers, thread_outstanding, delay).run();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| BufferError::Unavailable(format!("cannot start writer thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| BufferError::Unavailable("writer thread stopped".into()))??;
        Ok(EmbeddedBuffer {
            tx,
            notifiers,
            outstanding,
            options,
            path,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    async fn call_lease(&self, channel: &str, max: usize) -> Result<state::LeaseOut, BufferError> {
        let _outstanding = Outstanding::new(&self.outstanding);
        let (reply, rx) = oneshot::channel();
        let mut guard = LeaseReply {
            rx: Some(rx),
            tx: self.tx.clone(),
        };
        let cmd = Cmd::Lease {
            channel: channel.to_owned(),
            max,
            reply,
        };
        let exchange = async {
            self.tx.send(cmd).await.map_err(|_| self.writer_gone())?;
            let rx = guard
                .rx
                .as_mut()
                .ok_or_else(|| BufferError::Unavailable("lease answer lost".into()))?;
            rx.await.map_err(|_| self.writer_gone())?
        };
        tokio::time::timeout(self.options.operation_timeout, exchange)
            .await
            .map_err(|_| BufferError::Timeout)?
    }

    /// Why an answer never came: closed on purpose, or the writer failed.
    fn writer_gone(&self) -> BufferError {
        if self.closed.load(Ordering::Acquire) {
            BufferError::Closed
        } else {
            BufferError::Unavailable("embedded store writer stopped".into())
        }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, BufferError> {
        let _outstanding = Outstanding::new(&self.outstanding);
        let (reply, rx) = oneshot::channel();
        let cmd = make(reply);
        let exchange = async {
            self.tx.send(cmd).await.map_err(|_| self.writer_gone())?;
            rx.await.map_err(|_| self.writer_gone())?
        };
        tokio::time::timeout(self.options.operation_timeout, exchange)
            .await
            .map_err(|_| BufferError::Timeout)?
    }
}

#[async_trait]
impl Buffer for EmbeddedBuffer {
    async fn ensure_channel(
        &self,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> Result<(), BufferError> {
        self.call(|reply| Cmd::Ensure {
            channel: channel.to_owned(),
            webhook_ids: webhook_ids.to_vec(),
            settings: settings.clone(),
            reply,
        })
        .await
    }

    async fn delete_channel(&self, channel: &str) -> Result<(), BufferError> {
        let result = self
            .call(|reply| Cmd::Delete {
                channel: channel.to_owned(),
                reply,
            })
            .await;
        if result.is_ok() {
            self.notifiers.remove(channel);
        }
        result
    }

    async fn publish(&self, queue: &str, envelope: &mut Envelope) -> Result<u64, BufferError> {
        let seq = self
            .call(|reply| Cmd::Publish {
                queue: queue.to_owned(),
                envelope: Box::new(envelope.clone()),
                reply,
            })
            .await?;
        envelope.sequence = seq;
        Ok(seq)
    }

    async fn lease(
        &self,
        channel: &str,
        max: usize,
        wait: Duration,
        _consumer: &str,
    ) -> Result<Vec<Lease>, BufferError> {
        // One process: every change that can make a message leasable wakes the waiters.
        wait_for_leases(&self.notifiers, channel, max, wait, None, || async {
            let out = self.call_lease(channel, max).await?;
            let wake_in = out
                .next_wake_ms
                .map(|at| u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0));
            Ok((out.leases, wake_in))
        })
        .await
    }

    async fn settle(&self, token: &LeaseToken, action: Settle) -> Result<Settled, BufferError> {
        self.call(|reply| Cmd::Settle {
            token: token.clone(),
            action: crate::reason::bound_action(action),
            reply,
        })
        .await
    }

    async fn dead_letters(
        &self,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, BufferError> {
        self.call(|reply| Cmd::DeadLetters {
            channel: channel.to_owned(),
            query: query.clone(),
            reply,
        })
        .await
    }

    async fn replay_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        self.call(|reply| Cmd::Replay {
            channel: channel.to_owned(),
            webhook_id: webhook_id.map(str::to_owned),
            message_id: message_id.map(str::to_owned),
            reply,
        })
        .await
    }

    async fn purge_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        self.call(|reply| Cmd::Purge {
            channel: channel.to_owned(),
            webhook_id: webhook_id.map(str::to_owned),
            message_id: message_id.map(str::to_owned),
            reply,
        })
        .await
    }

    async fn stats(&self, channel: &str) -> Result<ChannelStats, BufferError> {
        self.call(|reply| Cmd::Stats {
            channel: channel.to_owned(),
            reply,
        })
        .await
    }

    async fn sweep_expired(&self) -> Result<u64, BufferError> {
        self.call(|reply| Cmd::Sweep { reply }).await
    }

    async fn health_check(&self) -> Result<(), BufferError> {
        self.call(|reply| Cmd::Health { reply }).await
    }

    async fn close(&self) -> Result<(), BufferError> {
        self.closed.store(true, Ordering::Release);
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close { reply }).await.is_err() {
            return Ok(());
        }
        // Waits for the running batch and the release of the file.
        let bound = self.options.operation_timeout.max(Duration::from_secs(10));
        match tokio::time::timeout(bound, rx).await {
            Ok(_) => Ok(()),
            Err(_) => Err(BufferError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeadLetterQuery, DeadLetterReason};
    use redb::{Database, ReadableTable, TableDefinition};
    use serde_json::value::RawValue;
    use webhook_connect_protocol::{DataType, Headers, MessageId, Timestamp};

    fn envelope(channel: &str, webhook: &str) -> Envelope {
        Envelope {
            message_id: MessageId::generate(),
            channel: channel.into(),
            webhook_id: webhook.into(),
            namespace: None,
            sequence: 0,
            received_at: Timestamp::now(),
            expires_at: None,
            headers: Headers::new(),
            raw_headers: None,
            data_type: DataType::Json,
            content_type: None,
            payload: RawValue::from_string("{}".into()).unwrap(),
            payload_encoding: None,
            body_omitted: false,
            body: b"{}".to_vec(),
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn store_file_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "wc-embedded-mode-{}-{}",
            std::process::id(),
            Timestamp::now().unix_micros()
        ));
        let path = dir.join("b.db");
        let b = EmbeddedBuffer::open(&path, EmbeddedOptions::default())
            .await
            .unwrap();
        b.ensure_channel("c", &["w".into()], &QueueSettings::default())
            .await
            .unwrap();
        let mut e = envelope("c", "w");
        b.publish("w", &mut e).await.unwrap();
        b.close().await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "store file mode {mode:o}");
        // The file redb initialised in place still opens with its message.
        let b = EmbeddedBuffer::open(&path, EmbeddedOptions::default())
            .await
            .unwrap();
        let got = b.lease("c", 10, Duration::from_secs(2), "t").await.unwrap();
        assert_eq!(got.len(), 1);
        b.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn unreadable_stored_entry_is_dead_lettered_r63() {
        let dir = std::env::temp_dir().join(format!(
            "wc-embedded-r63-{}-{}",
            std::process::id(),
            Timestamp::now().unix_micros()
        ));
        let path = dir.join("b.db");
        let b = EmbeddedBuffer::open(&path, EmbeddedOptions::default())
            .await
            .unwrap();
        b.ensure_channel("c", &["w".into()], &QueueSettings::default())
            .await
            .unwrap();
        let mut bad = envelope("c", "w");
        b.publish("w", &mut bad).await.unwrap();
        let mut good = envelope("c", "w");
        b.publish("w", &mut good).await.unwrap();
        b.close().await.unwrap();

        // Overwrite the first message's stored bytes with garbage.
        {
            const BODY: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("message_body");
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(BODY).unwrap();
                let key = records::message_key("c", "w", bad.sequence);
                assert!(t.get(key.as_slice()).unwrap().is_some());
                t.insert(key.as_slice(), b"\x00garbage".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }

        let b = EmbeddedBuffer::open(&path, EmbeddedOptions::default())
            .await
            .unwrap();
        let got = b.lease("c", 10, Duration::from_secs(2), "t").await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].envelope.message_id, good.message_id);
        let page = b
            .dead_letters("c", &DeadLetterQuery::default())
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let d = &page.items[0];
        assert_eq!(d.reason, DeadLetterReason::Rejected);
        assert_eq!(d.last_error.as_deref(), Some(state::UNREADABLE));
        assert_eq!(d.envelope.message_id, bad.message_id);
        assert_eq!(d.envelope.body, b"\x00garbage");
        b.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
