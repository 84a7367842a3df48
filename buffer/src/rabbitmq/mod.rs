//! The `rabbitmq` backend (RabbitMQ ≥ 3.10, AMQP 0-9-1 through `lapin`).
//!
//! # Topology
//!
//! Per channel, one durable classic queue per webhook, `{exchange}.{channel}.{webhook_id}` with
//! each name written with its length before it (`webhook_connect.6:orders.6:stripe`, see
//! `names.rs`, R-64), bound to the topic exchange `{exchange}` with its own name as key.
//! Each webhook queue has `x-max-length` with `x-overflow = reject-publish` (a full queue refuses
//! at publish and never drops the oldest, R-67) and dead-letters into `{exchange}.dlx`, which
//! routes to its `….dlq` queue. Every publish is `mandatory` and waits for the publisher confirm:
//! a nack or an unroutable return is an error, never a success. Deliveries are taken with
//! `basic.get` and acknowledged manually.
//!
//! # Decisions
//!
//! - **Channel record and sequence numbers.** AMQP has no counter, so each channel has a small
//!   record (settings, webhook ids, next sequence, cumulative counters) kept as the only message
//!   of the durable queue `{base}.record` (`record.rs`). Holding that message unacked is a lock
//!   across every relay instance sharing the broker. Publishes are batched per channel: one
//!   holder of the lock checks capacity for the whole batch against the current queue depth,
//!   draws consecutive sequence numbers, publishes and waits for the confirms, then writes the
//!   record. A refused message draws no number; if a holder dies, the next one skips
//!   ahead rather than reuse a number. The record lives in the broker so that it is as
//!   durable as the messages and shared like them, with no second store to run.
//! - **Capacity.** The backend checks the channel's current `max_queue_size` against the ready
//!   depth under the record lock, so a full queue refuses at ingest and limit changes
//!   apply at once. `x-max-length` + `reject-publish` is the broker's own backstop: it is fixed
//!   when a queue is created (RabbitMQ refuses to change queue arguments) at twice the limit (at
//!   least the limit + 1000), so that requeued messages returning from a delay queue always fit
//!   (the broker would drop a dead-lettered message a full queue rejects). Raising the limit
//!   past that needs a policy (`rabbitmqctl set_policy … '{"max-length":N}'`).
//! - **Attempts.** Counted by republishing: every requeue publishes a new copy whose `wc-count`
//!   header holds the deliveries made so far, then acks the old copy. A delivery the broker gives
//!   back because the holder's connection dropped (relay crash, broker restart) arrives with
//!   `redelivered` set and counts as one more attempt. (A copy lost twice in a row without
//!   any settle in between still counts once.)
//! - **Leases and `ack_timeout`.** A lease is a delivery held unacked by this process. A local
//!   timer ends leases past their expiry as failed attempts; a lease token names the
//!   process and the connection generation, so after a reconnect, or on another instance, it
//!   answers `NotInFlight` and the broker redelivers the message. The `prefetch` option
//!   bounds the leases one instance holds per channel.
//! - **Requeue delay.** A requeued copy is published through the headers exchange
//!   `{exchange}.delay` into one of a fixed ladder of delay queues (`x-message-ttl` = 10 ms …
//!   1 h; the delay is rounded up to the next step), which dead-letter it back into its webhook
//!   queue by its own routing key. Shorter delays than 5 ms requeue directly.
//! - **Ordered channels.** The channel's `{base}.order` queue holds one token; a lease on an
//!   ordered channel first takes the token and keeps it until the message is settled, so at most
//!   one message of the channel is out across all instances. A requeued message of an ordered
//!   channel travels inside the token (with its ready time), so it is delivered again before any
//!   later message.
//! - **Expiry.** Copies carry the time left as AMQP `expiration`: the broker dead-letters them
//!   into the DLQ when they reach the head past their time (R-65; changing `ttl_seconds` only
//!   changes new messages' expiry, never a queue argument). `lease` dead-letters any expired copy
//!   it meets. The sweep and `stats` count the broker's own dead letters (reason `expired`) by
//!   rewriting them with our headers.
//! - **Dead letters.** Stored in a stream per webhook queue (`….dls`, `x-queue-type = stream`)
//!   with reason, time, count and last error as headers, and read by offset (`stream.rs`,
//!   `dead.rs`): a listing reads only the newest windows that hold the page, takes nothing and
//!   agrees with the listing before it. Replay and purge note the offsets they removed
//!   in the channel record; replay publishes its copies without holding the record, so ingest
//!   goes on meanwhile. What the broker dead-letters itself (TTL expiry) arrives in the classic
//!   `….dlq` and is moved into the stream, as are the dead letters an older version kept
//!   there. `docs/rabbitmq.md` has the details.
//!
//! # Limits
//!
//! - Stats add up every instance's leases and delayed copies (`view.rs`): each instance writes
//!   what it holds into the channel record within about a second of a change, and every 3 s
//!   while it holds something. An instance that died without closing keeps counting its leases for up to 15 s,
//!   while the broker has already put them back in the queue. Queue depths are the broker's,
//!   and cumulative counters of other instances appear once they flush (at most a second
//!   later).
//! - `oldest_queued_age_seconds` comes from the most recent look at the queue's head by any
//!   instance that holds something: a publish into an empty queue, or a lease that left
//!   messages behind (the leased message's receive time, since the rest came after it). It can
//!   be older than the true head by the gap between two messages, and it does not see a
//!   requeued copy waiting at the tail with an older receive time. AMQP has no way to read a
//!   head without taking it, which would count as a delivery attempt on another instance.
//! - Leases are settled by the instance holding them; an ack sent to another instance answers
//!   `NotInFlight` (the message is redelivered after its lease). Several relay instances need
//!   `state.backend = "redis"` (`docs/reference/config-formats.md` §2.3).
//! - Messages waiting out a requeue delay in the shared delay queues count in `queued` through
//!   the view of the instance that requeued them, until they are due back (also after that
//!   instance stopped); a requeued message of an ordered channel, inside the token, counts on
//!   every instance.

pub(crate) mod dead;
mod lease;
mod link;
mod message;
mod names;
mod publish;
mod record;
mod settle;
mod stream;
mod topology;
mod view;
mod walk;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use webhook_connect_protocol::Envelope;

use crate::millis::now_ms;
use crate::notify::Notifiers;
use crate::{
    Buffer, BufferError, ChannelStats, DeadLetterPage, DeadLetterQuery, Lease, LeaseToken,
    QueueSettings, Settle, Settled,
};
use lease::Held;
use link::Link;
use names::{ChannelNames, registry, valid_exchange};
use record::{ChannelRecord, Counters, Registry};

/// How long a lease call waits between looks for messages published by other instances.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long channel settings read from the record are used before reading them again.
const INFO_TTL: Duration = Duration::from_secs(1);
/// How often unflushed counters are written to the channel records.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often held leases are checked for expiry.
const EXPIRY_TICK: Duration = Duration::from_millis(50);

/// Options of the RabbitMQ backend (`buffer.rabbitmq.*`).
#[derive(Clone, PartialEq, Eq)]
pub struct RabbitOptions {
    /// `amqp://` or `amqps://` URL with credentials and vhost (a secret).
    pub url: String,
    /// Name of the topic exchange and prefix of every queue, `^[A-Za-z0-9_.-]{1,64}$`.
    pub exchange: String,
    /// Most leases one instance holds per channel (1–65 535).
    pub prefetch: u16,
    /// Bound of every broker call.
    pub operation_timeout: Duration,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        RabbitOptions {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "webhook_connect".into(),
            prefetch: 100,
            operation_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RabbitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitOptions")
            .field("url", &"<redacted>")
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// The `x-max-length` of a new webhook queue: above the channel's limit (which the backend
/// enforces exactly at publish), so that a requeued message coming back from a delay queue
/// always fits; the broker drops dead-lettered messages a full queue rejects.
fn broker_limit(max_queue_size: u64) -> u64 {
    max_queue_size.saturating_add(max_queue_size.max(1000))
}

/// Settings and queues of a channel as last read from its record.
#[derive(Debug, Clone)]
struct Info {
    record: Arc<ChannelRecord>,
    settings: Arc<QueueSettings>,
    read_at: Instant,
}

/// Per-channel serialisation of this process's record changes, with the publishes waiting
/// for the next batch.
#[derive(Debug, Default)]
struct Gate {
    lock: tokio::sync::Mutex<()>,
    pending: std::sync::Mutex<Vec<publish::Pending>>,
}

/// Queues in RabbitMQ. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RabbitBuffer {
    inner: Arc<Inner>,
}

/// Due times (ms), earliest first.
type DueTimes = std::collections::BinaryHeap<std::cmp::Reverse<i64>>;

/// The shared state of a [`RabbitBuffer`].
pub struct Inner {
    link: Link,
    exchange: String,
    prefetch: usize,
    /// Names this process in lease tokens.
    instance: u64,
    notifiers: Notifiers,
    gates: std::sync::Mutex<HashMap<String, Arc<Gate>>>,
    infos: std::sync::Mutex<HashMap<String, Info>>,
    /// One AMQP channel per buffer channel for its deliveries, with its connection generation.
    consumers: tokio::sync::Mutex<HashMap<String, (lapin::Channel, u64)>>,
    leases: std::sync::Mutex<HashMap<u64, Held>>,
    next_lease: std::sync::atomic::AtomicU64,
    /// Counter changes not yet written to the records: channel → queue → delta.
    deltas: std::sync::Mutex<HashMap<String, BTreeMap<String, Counters>>>,
    /// This process's latest look at each queue's head, per (channel, queue): `[seen_ms,
    /// received_ms]`, the receive time of the oldest message believed queued (set when a
    /// message enters an empty queue, moved on by each lease that leaves messages behind).
    heads: std::sync::Mutex<HashMap<(String, String), [i64; 2]>>,
    /// Round-robin position per channel.
    rr: std::sync::Mutex<HashMap<String, usize>>,
    /// Ordered channels: (channel, message id) of queue heads this process took only to compare
    /// sequences and gave back. The broker marks them redelivered, which must not count as an
    /// attempt when they are taken for real.
    peeked: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// When the copies this process sent into a delay queue come back, per (channel, queue):
    /// until then they are queued, though in a delay queue shared by every channel.
    delayed: std::sync::Mutex<HashMap<(String, String), DueTimes>>,
    /// The view of each channel this process last wrote into its record, and when.
    written_views: std::sync::Mutex<HashMap<String, (view::View, Instant)>>,
    exchanges_ready: tokio::sync::Mutex<bool>,
    /// Dropping the sender ends the background task.
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl std::ops::Deref for RabbitBuffer {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl fmt::Debug for RabbitBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBuffer")
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RabbitBuffer {
    /// Connects (bounded by the operation timeout). Fails with `Invalid` for a bad URL or
    /// exchange name and `Unavailable`/`Timeout` when the broker cannot be reached.
    pub async fn connect(options: RabbitOptions) -> Result<RabbitBuffer, BufferError> {
        if !valid_exchange(&options.exchange) {
            return Err(BufferError::Invalid(
                "buffer.rabbitmq.exchange must match ^[A-Za-z0-9_.-]{1,64}$".into(),
            ));
        }
        if options.url.parse::<lapin::uri::AMQPUri>().is_err() {
            return Err(BufferError::Invalid(
                "buffer.rabbitmq.url is not a valid amqp:// or amqps:// URL".into(),
            ));
        }
        if options.prefetch == 0 {
            return Err(BufferError::Invalid(
                "buffer.rabbitmq.prefetch must be 1-65535".into(),
            ));
        }
        let link = Link::new(options.url, options.operation_timeout);
        link.publisher().await?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let inner = Arc::new(Inner {
            link,
            exchange: options.exchange,
            prefetch: usize::from(options.prefetch),
            instance: rand::random::<u64>(),
            notifiers: Notifiers::default(),
            gates: Default::default(),
            infos: Default::default(),
            consumers: Default::default(),
            leases: Default::default(),
            next_lease: Default::default(),
            deltas: Default::default(),
            heads: Default::default(),
            rr: Default::default(),
            peeked: Default::default(),
            delayed: Default::default(),
            written_views: Default::default(),
            exchanges_ready: tokio::sync::Mutex::new(false),
            stop: std::sync::Mutex::new(Some(stop_tx)),
        });
        tokio::spawn(background(Arc::downgrade(&inner), stop_rx));
        Ok(RabbitBuffer { inner })
    }

    /// Deletes every queue and exchange under this buffer's exchange name that the registry
    /// knows of (channels, their dead letters and records, the delay queues). For tests and
    /// uninstalling.
    pub async fn destroy_all(&self) -> Result<(), BufferError> {
        let channels = self.registry_channels().await?;
        for c in channels {
            match self.delete_channel(&c).await {
                Ok(()) | Err(BufferError::UnknownChannel(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut queues: Vec<String> = topology::BUCKETS_MS
            .iter()
            .map(|ms| names::delay_queue(&self.exchange, *ms))
            .collect();
        queues.push(registry(&self.exchange));
        topology::delete_queues(&self.link, &queues).await?;
        let chan = self.link.channel().await?;
        for x in [
            self.exchange.clone(),
            names::dead_letter_exchange(&self.exchange),
            names::delay_exchange(&self.exchange),
        ] {
            let _ = self
                .link
                .bounded(chan.exchange_delete(&x, lapin::options::ExchangeDeleteOptions::default()))
                .await;
        }
        let _ = chan.close(200, "done").await;
        Ok(())
    }
}

/// Ends expired leases and writes counters and this process's views until the buffer is closed
/// or dropped.
async fn background(inner: std::sync::Weak<Inner>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut last_flush = Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(EXPIRY_TICK) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.expire_leases().await;
        if last_flush.elapsed() >= FLUSH_INTERVAL {
            last_flush = Instant::now();
            for c in inner.due_for_flush() {
                if let Err(e) = inner.flush(&c).await {
                    tracing::debug!(channel = %c, error = %e, "Counter flush failed; retrying");
                }
            }
        }
    }
}

impl Inner {
    fn names(&self, channel: &str) -> ChannelNames {
        ChannelNames::new(&self.exchange, channel)
    }

    fn gate(&self, channel: &str) -> Arc<Gate> {
        lock(&self.gates)
            .entry(channel.to_owned())
            .or_default()
            .clone()
    }

    fn add_delta(&self, channel: &str, queue: &str, f: impl FnOnce(&mut Counters)) {
        let mut d = lock(&self.deltas);
        f(d.entry(channel.to_owned())
            .or_default()
            .entry(queue.to_owned())
            .or_default());
    }

    /// Notes a copy sent into a delay queue, due back at `ready_ms`.
    pub(crate) fn note_delayed(&self, channel: &str, queue: &str, ready_ms: i64) {
        let mut delayed = lock(&self.delayed);
        let heap = delayed
            .entry((channel.to_owned(), queue.to_owned()))
            .or_default();
        let now = now_ms();
        while heap.peek().is_some_and(|r| r.0 <= now) {
            heap.pop();
        }
        heap.push(std::cmp::Reverse(ready_ms));
    }

    /// What this process holds of `channel` at `now_ms`: its leases, and its copies in a delay
    /// queue that are not due back yet.
    pub(crate) fn own_view(&self, channel: &str, now_ms: i64) -> view::View {
        let mut v = view::View {
            at_ms: now_ms,
            ..view::View::default()
        };
        for l in lock(&self.leases).values().filter(|l| l.channel == channel) {
            *v.in_flight.entry(l.queue.clone()).or_default() += 1;
        }
        for ((c, q), head) in lock(&self.heads).iter() {
            if c == channel {
                v.heads.insert(q.clone(), *head);
            }
        }
        let mut delayed = lock(&self.delayed);
        delayed.retain(|(c, q), heap| {
            if c != channel {
                return true;
            }
            while heap.peek().is_some_and(|r| r.0 <= now_ms) {
                heap.pop();
            }
            for std::cmp::Reverse(due) in heap.iter() {
                *v.delayed
                    .entry(q.clone())
                    .or_default()
                    .entry(view::due_second(*due))
                    .or_default() += 1;
            }
            !heap.is_empty()
        });
        v
    }

    /// Channels whose record should be written now: counter changes to flush, or this
    /// process's view changed or due for its heartbeat.
    fn due_for_flush(&self) -> Vec<String> {
        let mut channels: std::collections::BTreeSet<String> =
            lock(&self.deltas).keys().cloned().collect();
        let mut holding: std::collections::BTreeSet<String> = lock(&self.leases)
            .values()
            .map(|l| l.channel.clone())
            .collect();
        holding.extend(lock(&self.delayed).keys().map(|(c, _)| c.clone()));
        holding.extend(lock(&self.written_views).keys().cloned());
        let now = now_ms();
        for c in holding {
            if channels.contains(&c) {
                continue;
            }
            let mine = self.own_view(&c, now);
            let stale = match lock(&self.written_views).get(&c) {
                None => !mine.is_empty(),
                Some((written, at)) => {
                    !written.same_holdings(&mine)
                        || (!mine.is_empty() && at.elapsed() >= view::HEARTBEAT)
                }
            };
            if stale {
                channels.insert(c);
            }
        }
        channels.into_iter().collect()
    }

    fn take_deltas(&self, channel: &str) -> BTreeMap<String, Counters> {
        lock(&self.deltas).remove(channel).unwrap_or_default()
    }

    fn put_back_deltas(&self, channel: &str, deltas: BTreeMap<String, Counters>) {
        for (q, d) in deltas {
            self.add_delta(channel, &q, |c| c.add(&d));
        }
    }

    /// Takes the channel record, waiting up to the operation timeout.
    async fn lock_record(
        &self,
        channel: &str,
    ) -> Result<record::Locked<ChannelRecord>, BufferError> {
        record::lock(
            &self.link,
            &self.names(channel).record(),
            self.link.timeout(),
        )
        .await?
        .ok_or_else(|| BufferError::UnknownChannel(channel.to_owned()))
    }

    /// Writes the record with this process's counter changes merged in.
    async fn write_record(
        &self,
        channel: &str,
        mut locked: record::Locked<ChannelRecord>,
    ) -> Result<Arc<ChannelRecord>, BufferError> {
        let deltas = self.take_deltas(channel);
        for (q, d) in &deltas {
            locked.data.counters.entry(q.clone()).or_default().add(d);
        }
        let now = now_ms();
        let mine = self.own_view(channel, now);
        view::prune(&mut locked.data.views, now);
        if mine.is_empty() {
            locked.data.views.remove(&self.instance);
        } else {
            locked.data.views.insert(self.instance, mine.clone());
        }
        let snapshot = Arc::new(locked.data.clone());
        if let Err(e) = locked.write(&self.link).await {
            self.put_back_deltas(channel, deltas);
            return Err(e);
        }
        let mut written = lock(&self.written_views);
        if mine.is_empty() {
            written.remove(channel);
        } else {
            written.insert(channel.to_owned(), (mine, Instant::now()));
        }
        drop(written);
        self.remember(channel, snapshot.clone());
        Ok(snapshot)
    }

    fn remember(&self, channel: &str, record: Arc<ChannelRecord>) {
        let settings = Arc::new(QueueSettings::from(&record.settings));
        lock(&self.infos).insert(
            channel.to_owned(),
            Info {
                record,
                settings,
                read_at: Instant::now(),
            },
        );
    }

    /// Writes this process's counter changes of `channel` to its record.
    async fn flush(&self, channel: &str) -> Result<Arc<ChannelRecord>, BufferError> {
        let gate = self.gate(channel);
        let _g = gate.lock.lock().await;
        let locked = match self.lock_record(channel).await {
            Ok(l) => l,
            Err(BufferError::UnknownChannel(c)) => {
                self.take_deltas(channel);
                return Err(BufferError::UnknownChannel(c));
            }
            Err(e) => return Err(e),
        };
        self.write_record(channel, locked).await
    }

    /// Settings and queues of `channel`, read from the record at most [`INFO_TTL`] ago.
    async fn info(
        &self,
        channel: &str,
    ) -> Result<(Arc<ChannelRecord>, Arc<QueueSettings>), BufferError> {
        if let Some(i) = lock(&self.infos).get(channel)
            && i.read_at.elapsed() < INFO_TTL
        {
            return Ok((i.record.clone(), i.settings.clone()));
        }
        let record = self.flush(channel).await?;
        let settings = Arc::new(QueueSettings::from(&record.settings));
        Ok((record, settings))
    }

    async fn registry_channels(&self) -> Result<Vec<String>, BufferError> {
        let q = registry(&self.exchange);
        match record::lock::<Registry>(&self.link, &q, self.link.timeout()).await {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(l)) => {
                let channels = l.data.channels.clone();
                l.write(&self.link).await?;
                Ok(channels)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds or removes `channel` in the registry.
    async fn register(&self, channel: &str, present: bool) -> Result<(), BufferError> {
        let q = registry(&self.exchange);
        let depth = topology::declare_plain(&self.link, &q).await?;
        let wait = if depth == 0 {
            // Either new, or held by another instance right now: wait for it a little.
            Duration::from_millis(300)
        } else {
            self.link.timeout()
        };
        let mut locked = match record::lock::<Registry>(&self.link, &q, wait).await {
            Ok(Some(l)) => l,
            Ok(None) | Err(BufferError::Timeout) if depth == 0 => {
                if !present {
                    return Ok(());
                }
                record::create(&self.link, &q, &Registry::default()).await?;
                record::lock::<Registry>(&self.link, &q, self.link.timeout())
                    .await?
                    .ok_or_else(|| BufferError::Unavailable("rabbitmq: registry vanished".into()))?
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        let known = locked.data.channels.iter().any(|c| c == channel);
        if known == present {
            locked.write(&self.link).await?;
            return Ok(());
        }
        if present {
            locked.data.channels.push(channel.to_owned());
            locked.data.channels.sort();
        } else {
            locked.data.channels.retain(|c| c != channel);
        }
        locked.write(&self.link).await
    }

    async fn ensure_exchanges(&self) -> Result<(), BufferError> {
        let mut ready = self.exchanges_ready.lock().await;
        if !*ready {
            topology::declare_exchanges(&self.link, &self.exchange).await?;
            *ready = true;
        }
        Ok(())
    }

    async fn ensure_channel(
        &self,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> Result<(), BufferError> {
        let names = self.names(channel);
        if channel.is_empty() || webhook_ids.iter().any(|w| w.is_empty()) {
            return Err(BufferError::Invalid("empty channel or webhook id".into()));
        }
        if !names.fits(webhook_ids) {
            return Err(BufferError::Invalid(
                "channel and webhook id too long for RabbitMQ queue names".into(),
            ));
        }
        self.ensure_exchanges().await?;
        let gate = self.gate(channel);
        let _g = gate.lock.lock().await;
        let rq = names.record();
        let mut locked = match record::lock::<ChannelRecord>(
            &self.link,
            &rq,
            Duration::from_millis(300),
        )
        .await
        {
            Ok(Some(l)) => l,
            Ok(None) | Err(BufferError::Timeout) => {
                if topology::declare_plain(&self.link, &rq).await? == 0 {
                    match record::lock::<ChannelRecord>(&self.link, &rq, Duration::from_millis(300))
                        .await
                    {
                        Ok(Some(l)) => l,
                        Ok(None) | Err(BufferError::Timeout) => {
                            let fresh = ChannelRecord {
                                next_seq: 1,
                                ..ChannelRecord::default()
                            };
                            record::create(&self.link, &rq, &fresh).await?;
                            self.lock_record(channel).await?
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    self.lock_record(channel).await?
                }
            }
            Err(e) => return Err(e),
        };
        let rec = &mut locked.data;
        rec.settings = settings.into();
        for w in webhook_ids {
            topology::declare_webhook_queue(
                &self.link,
                &self.exchange,
                &names,
                w,
                broker_limit(settings.max_queue_size),
            )
            .await?;
        }
        let mut retired: Vec<String> = rec
            .queues
            .iter()
            .chain(rec.retired.iter())
            .filter(|q| !webhook_ids.contains(q))
            .cloned()
            .collect();
        retired.sort();
        retired.dedup();
        // Retired queues go once they and their dead letters are empty.
        let mut kept = Vec::new();
        for q in retired {
            let held = lock(&self.leases)
                .values()
                .any(|l| l.channel == channel && l.queue == q);
            let live = topology::depth(&self.link, &names.queue(&q))
                .await?
                .unwrap_or(0);
            let dead = topology::depth(&self.link, &names.dead_letters(&q))
                .await?
                .unwrap_or(0)
                + rec
                    .counters
                    .get(&q)
                    .map_or(0, |c| u64::try_from(c.dead_depth).unwrap_or(0));
            if held || live > 0 || dead > 0 {
                kept.push(q);
            } else {
                topology::delete_queues(
                    &self.link,
                    &[
                        names.queue(&q),
                        names.dead_letters(&q),
                        names.dead_stream(&q),
                    ],
                )
                .await?;
                rec.counters.remove(&q);
                rec.dead.remove(&q);
            }
        }
        rec.retired = kept;
        rec.queues = webhook_ids.to_vec();
        if settings.ordered && !rec.order_token {
            topology::declare_plain(&self.link, &names.order()).await?;
            lease::put_token(&self.link, &names.order(), None).await?;
            rec.order_token = true;
        }
        self.write_record(channel, locked).await?;
        self.register(channel, true).await?;
        drop(_g);
        // Dead letters of the older topology move into the streams now.
        self.adopt_expired(channel).await?;
        self.notifiers.wake(channel);
        Ok(())
    }

    async fn delete_channel(&self, channel: &str) -> Result<(), BufferError> {
        let names = self.names(channel);
        let gate = self.gate(channel);
        let _g = gate.lock.lock().await;
        let locked = self.lock_record(channel).await?;
        let mut queues = Vec::new();
        for q in locked.data.all_queues() {
            queues.push(names.queue(&q));
            queues.push(names.dead_letters(&q));
            queues.push(names.dead_stream(&q));
        }
        queues.push(names.order());
        self.drop_channel_state(channel).await;
        topology::delete_queues(&self.link, &queues).await?;
        locked.abandon().await;
        topology::delete_queues(&self.link, &[names.record()]).await?;
        self.register(channel, false).await?;
        self.notifiers.remove(channel);
        Ok(())
    }

    /// Forgets everything this process holds of `channel`.
    async fn drop_channel_state(&self, channel: &str) {
        lock(&self.leases).retain(|_, l| l.channel != channel);
        lock(&self.infos).remove(channel);
        lock(&self.deltas).remove(channel);
        lock(&self.written_views).remove(channel);
        lock(&self.delayed).retain(|k, _| k.0 != channel);
        lock(&self.heads).retain(|k, _| k.0 != channel);
        if let Some((chan, _)) = self.consumers.lock().await.remove(channel) {
            let _ = chan.close(200, "channel deleted").await;
        }
    }
}

#[async_trait]
impl Buffer for RabbitBuffer {
    async fn ensure_channel(
        &self,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> Result<(), BufferError> {
        self.inner
            .ensure_channel(channel, webhook_ids, settings)
            .await
    }

    async fn delete_channel(&self, channel: &str) -> Result<(), BufferError> {
        self.inner.delete_channel(channel).await
    }

    async fn publish(&self, queue: &str, envelope: &mut Envelope) -> Result<u64, BufferError> {
        self.inner.publish(queue, envelope).await
    }

    async fn lease(
        &self,
        channel: &str,
        max: usize,
        wait: Duration,
        _consumer: &str,
    ) -> Result<Vec<Lease>, BufferError> {
        lease::lease(&self.inner, channel, max, wait).await
    }

    async fn settle(&self, token: &LeaseToken, action: Settle) -> Result<Settled, BufferError> {
        self.inner
            .settle(token, crate::reason::bound_action(action))
            .await
    }

    async fn dead_letters(
        &self,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, BufferError> {
        self.inner.dead_letters(channel, query).await
    }

    async fn replay_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        self.inner.replay(channel, webhook_id, message_id).await
    }

    async fn purge_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        self.inner.purge(channel, webhook_id, message_id).await
    }

    async fn stats(&self, channel: &str) -> Result<ChannelStats, BufferError> {
        self.inner.stats(channel).await
    }

    async fn sweep_expired(&self) -> Result<u64, BufferError> {
        let mut moved = 0;
        for channel in self.inner.registry_channels().await? {
            match self.inner.adopt_expired(&channel).await {
                Ok(n) => moved += n,
                Err(BufferError::UnknownChannel(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    async fn health_check(&self) -> Result<(), BufferError> {
        self.inner.ensure_exchanges().await?;
        let chan = self.inner.link.channel().await?;
        self.inner.link.recycle(chan).await;
        Ok(())
    }

    async fn close(&self) -> Result<(), BufferError> {
        lock(&self.inner.stop).take();
        let mut channels: Vec<String> = lock(&self.inner.deltas).keys().cloned().collect();
        channels.extend(lock(&self.inner.written_views).keys().cloned());
        channels.sort();
        channels.dedup();
        // The broker gives the leases back when the connection closes; the views written now
        // keep only the delayed copies, which still come back on their own.
        lock(&self.inner.leases).clear();
        for c in channels {
            let _ = self.inner.flush(&c).await;
        }
        self.inner.link.close().await;
        Ok(())
    }
}
