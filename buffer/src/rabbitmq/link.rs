//! The broker connection: connects lazily, reconnects after a drop, and bounds every call by
//! the operation timeout. Each reconnect starts a new generation; leases of an older one can
//! no longer be settled (the broker has given their messages back, R-68).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind};

use crate::BufferError;

/// Whether `e` is the broker's 404 (no such queue or exchange).
pub(crate) fn not_found(e: &Failure) -> bool {
    matches!(e, Failure::Amqp(err) if matches!(err.kind(), ErrorKind::ProtocolError(a) if a.get_id() == 404))
}

/// Polls `fut` once: its output when it finished at once, else `None` (polled again later).
/// A lapin call queues its frames on its first poll, so starting calls this way in turn sends
/// them in that order without waiting for each one's write or reply.
pub(crate) async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Why a broker call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Timeout,
    Amqp(lapin::Error),
}

#[derive(Debug)]
struct Live {
    conn: Arc<Connection>,
    publisher: Channel,
    generation: u64,
}

/// One connection to the broker, shared by every operation of a buffer.
#[derive(Debug)]
pub(crate) struct Link {
    url: String,
    timeout: Duration,
    live: tokio::sync::Mutex<Option<Live>>,
    generation: AtomicU64,
    closed: AtomicBool,
    /// Idle confirm channels for short operations, with their generation. Reusing them keeps
    /// channel ids from wrapping around (a reused id can inherit a late broker error).
    idle: std::sync::Mutex<Vec<(Channel, u64)>>,
}

/// Most idle channels kept.
const MAX_IDLE: usize = 16;

impl Link {
    pub(crate) fn new(url: String, timeout: Duration) -> Link {
        Link {
            url,
            timeout,
            live: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a broker call within the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, lapin::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(Failure::Timeout),
            Ok(r) => r.map_err(Failure::Amqp),
        }
    }

    /// The buffer error of a failed call (without the URL: it may hold a password).
    pub(crate) fn error(&self, e: Failure) -> BufferError {
        match e {
            Failure::Timeout => BufferError::Timeout,
            Failure::Amqp(e) => BufferError::Unavailable(format!("rabbitmq: {e}")),
        }
    }

    /// The current connection generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    async fn connect(&self) -> Result<Live, BufferError> {
        let conn = self
            .bounded(Connection::connect(
                &self.url,
                ConnectionProperties::default().with_connection_name("webhook-relay buffer".into()),
            ))
            .await
            .map_err(|e| match e {
                Failure::Timeout => BufferError::Timeout,
                // The error text may quote the URL; say only what kind of failure it was.
                Failure::Amqp(e) => BufferError::Unavailable(format!(
                    "rabbitmq: cannot connect ({})",
                    match e.kind() {
                        ErrorKind::IOError(io) => io.kind().to_string(),
                        ErrorKind::ProtocolError(a) => a.get_id().to_string(),
                        _ => "protocol".to_owned(),
                    }
                )),
            })?;
        let publisher = self
            .bounded(conn.create_channel())
            .await
            .map_err(|e| self.error(e))?;
        self.bounded(publisher.confirm_select(ConfirmSelectOptions::default()))
            .await
            .map_err(|e| self.error(e))?;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        Ok(Live {
            conn: Arc::new(conn),
            publisher,
            generation,
        })
    }

    /// The live connection and its shared confirm channel, reconnecting when needed.
    async fn live(&self) -> Result<(Arc<Connection>, Channel, u64), BufferError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BufferError::Closed);
        }
        let mut live = self.live.lock().await;
        let usable = live.as_ref().is_some_and(|l| l.conn.status().connected());
        if !usable {
            *live = None;
            *live = Some(self.connect().await?);
        }
        let Some(l) = live.as_mut() else {
            return Err(BufferError::Unavailable("rabbitmq: not connected".into()));
        };
        if !l.publisher.status().connected() {
            let publisher = self
                .bounded(l.conn.create_channel())
                .await
                .map_err(|e| self.error(e))?;
            self.bounded(publisher.confirm_select(ConfirmSelectOptions::default()))
                .await
                .map_err(|e| self.error(e))?;
            l.publisher = publisher;
        }
        Ok((l.conn.clone(), l.publisher.clone(), l.generation))
    }

    /// The shared channel with publisher confirms.
    pub(crate) async fn publisher(&self) -> Result<Channel, BufferError> {
        Ok(self.live().await?.1)
    }

    /// A channel with publisher confirms for a short operation (a broker error closes only
    /// this channel). Hand it back with [`Link::recycle`] when it holds no deliveries.
    pub(crate) async fn channel(&self) -> Result<Channel, BufferError> {
        let generation = self.generation();
        loop {
            let next = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match next {
                Some((chan, g)) if g == generation && chan.status().connected() => return Ok(chan),
                Some(_) => continue,
                None => break,
            }
        }
        Ok(self.channel_with_generation().await?.0)
    }

    /// Takes back a channel from [`Link::channel`] that holds no unacked deliveries.
    pub(crate) async fn recycle(&self, chan: Channel) {
        if !chan.status().connected() {
            return;
        }
        let generation = self.generation();
        let extra = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push((chan, generation));
                None
            } else {
                Some(chan)
            }
        };
        let Some(chan) = extra else {
            return;
        };
        let _ = chan.close(200, "done").await;
    }

    /// A new confirm channel and the generation of its connection.
    pub(crate) async fn channel_with_generation(&self) -> Result<(Channel, u64), BufferError> {
        let (conn, _, generation) = self.live().await?;
        let chan = self
            .bounded(conn.create_channel())
            .await
            .map_err(|e| self.error(e))?;
        self.bounded(chan.confirm_select(ConfirmSelectOptions::default()))
            .await
            .map_err(|e| self.error(e))?;
        Ok((chan, generation))
    }

    /// Starts a mandatory publish on the shared confirm channel; the confirm is awaited with
    /// [`Link::confirmed`].
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<PublisherConfirm, BufferError> {
        let publisher = self.publisher().await?;
        self.bounded(publisher.basic_publish(
            exchange,
            routing,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props,
        ))
        .await
        .map_err(|e| self.error(e))
    }

    /// Waits for a publisher confirm: `Ok` only for an ack of a routed message.
    pub(crate) async fn confirmed(&self, confirm: PublisherConfirm) -> Result<(), BufferError> {
        match self.bounded(confirm).await.map_err(|e| self.error(e))? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(BufferError::Unavailable(
                "rabbitmq: message was not routed to a queue".into(),
            )),
            Confirmation::Nack(_) => Err(BufferError::QueueFull),
        }
    }

    /// Closes the connection; the broker gives unacked deliveries back.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let live = self.live.lock().await.take();
        if let Some(l) = live {
            let _ = tokio::time::timeout(self.timeout, l.conn.close(200, "closing")).await;
        }
    }
}
