//! The channel record and the registry of channels, each kept as the only message of its own
//! durable queue. Taking that message with `basic.get` (unacked) is the lock: while one
//! process holds it, nobody else can get it. A change publishes the next version (confirmed)
//! and then acks the old one; if the holder dies first, the broker gives the old message back
//! (marked redelivered) and the highest version wins. A record taken back that way tells the
//! next holder that sequence numbers may have been handed out without being recorded, so it
//! skips ahead ([`CRASH_GAP`]) rather than reuse one.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};
use webhook_connect_protocol::backoff::Backoff;

use super::link::{Link, not_found};
use super::view::View;
use crate::millis::ms;
use crate::{BufferError, QueueSettings};

/// Sequence numbers skipped after a holder of the record died: more than one publish batch.
pub(crate) const CRASH_GAP: u64 = 4096;
/// Most record copies read while looking for the newest.
const MAX_COPIES: usize = 16;

/// Cumulative counters of one webhook queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub published: u64,
    pub delivered: u64,
    pub nacked: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    /// Dead letters this backend put into the DLQ minus those it removed; a DLQ holding more
    /// has entries the broker moved there itself (TTL), not counted yet.
    pub dead_depth: i64,
    /// Requeued copies of an ordered channel waiting inside its token: queued, though not in
    /// the webhook queue.
    #[serde(default)]
    pub waiting: i64,
}

impl Counters {
    pub(crate) fn add(&mut self, d: &Counters) {
        self.published += d.published;
        self.delivered += d.delivered;
        self.nacked += d.nacked;
        self.expired += d.expired;
        self.dead_lettered += d.dead_lettered;
        self.dead_depth += d.dead_depth;
        self.waiting += d.waiting;
    }
}

/// Queue settings as stored (milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSettings {
    ttl_ms: u64,
    max_queue_size: u64,
    max_message_size: u64,
    max_delivery_attempts: u32,
    ack_timeout_ms: u64,
    max_lease_ms: u64,
    requeue_delay_initial_ms: u64,
    requeue_delay_max_ms: u64,
    ordered: bool,
}

impl From<&QueueSettings> for StoredSettings {
    fn from(s: &QueueSettings) -> Self {
        StoredSettings {
            ttl_ms: ms(s.ttl),
            max_queue_size: s.max_queue_size,
            max_message_size: s.max_message_size,
            max_delivery_attempts: s.max_delivery_attempts,
            ack_timeout_ms: ms(s.ack_timeout),
            max_lease_ms: ms(s.max_lease),
            requeue_delay_initial_ms: ms(s.requeue_delay_initial),
            requeue_delay_max_ms: ms(s.requeue_delay_max),
            ordered: s.ordered,
        }
    }
}

impl From<&StoredSettings> for QueueSettings {
    fn from(s: &StoredSettings) -> Self {
        QueueSettings {
            ttl: Duration::from_millis(s.ttl_ms),
            max_queue_size: s.max_queue_size,
            max_message_size: s.max_message_size,
            max_delivery_attempts: s.max_delivery_attempts,
            ack_timeout: Duration::from_millis(s.ack_timeout_ms),
            max_lease: Duration::from_millis(s.max_lease_ms),
            requeue_delay_initial: Duration::from_millis(s.requeue_delay_initial_ms),
            requeue_delay_max: Duration::from_millis(s.requeue_delay_max_ms),
            ordered: s.ordered,
        }
    }
}

/// Everything about one channel that is not a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChannelRecord {
    pub settings: StoredSettings,
    /// Webhook queues that accept publishes.
    pub queues: Vec<String>,
    /// Queues no longer configured, kept (and served) until empty.
    pub retired: Vec<String>,
    /// The next sequence number of the channel.
    pub next_seq: u64,
    pub counters: BTreeMap<String, Counters>,
    /// Whether the ordered-delivery token was created.
    pub order_token: bool,
    /// What each relay instance holds that the queue depths do not show, by instance id.
    #[serde(default)]
    pub views: BTreeMap<u64, View>,
    /// Which entries of each webhook queue's dead-letter stream are gone (replayed or purged).
    #[serde(default)]
    pub dead: BTreeMap<String, DeadIndex>,
}

/// The removed entries of one dead-letter stream: everything below `floor`, and `removed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeadIndex {
    pub floor: u64,
    pub removed: std::collections::BTreeSet<u64>,
}

impl DeadIndex {
    /// Whether the entry at `offset` is still a dead letter.
    pub(crate) fn live(&self, offset: u64) -> bool {
        offset >= self.floor && !self.removed.contains(&offset)
    }

    /// Removes the entry at `offset`.
    pub(crate) fn remove(&mut self, offset: u64) {
        if offset >= self.floor {
            self.removed.insert(offset);
        }
    }

    /// Removes everything below `end`.
    pub(crate) fn clear_below(&mut self, end: u64) {
        self.floor = self.floor.max(end);
        let floor = self.floor;
        self.removed.retain(|o| *o >= floor);
    }
}

impl ChannelRecord {
    /// Every queue that may hold messages: configured first, then retired.
    pub(crate) fn all_queues(&self) -> Vec<String> {
        let mut all = self.queues.clone();
        all.extend(self.retired.iter().cloned());
        all
    }
}

/// The registry: names of all channels (for the sweep).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Registry {
    pub channels: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u64,
    data: T,
}

/// A record taken (locked) from its queue.
#[derive(Debug)]
pub(crate) struct Locked<T> {
    chan: Channel,
    queue: String,
    tags: Vec<u64>,
    version: u64,
    /// The previous holder died while holding it.
    pub crashed: bool,
    pub data: T,
}

/// Takes the record in `queue`, waiting up to `wait` while another process holds it.
/// `Ok(None)`: the queue does not exist. `Err(Timeout)`: still held (or never created).
pub(crate) async fn lock<T: for<'de> Deserialize<'de>>(
    link: &Link,
    queue: &str,
    wait: Duration,
) -> Result<Option<Locked<T>>, BufferError> {
    let deadline = tokio::time::Instant::now() + wait;
    let chan = link.channel().await?;
    let mut pause = Backoff::new(Duration::from_millis(1), Duration::from_millis(20), 2.0);
    loop {
        match link
            .bounded(chan.basic_get(queue, BasicGetOptions { no_ack: false }))
            .await
        {
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(link.error(e)),
            Ok(Some(first)) => {
                let mut copies = vec![first];
                while copies.last().is_some_and(|c| c.message_count > 0)
                    && copies.len() < MAX_COPIES
                {
                    match link
                        .bounded(chan.basic_get(queue, BasicGetOptions { no_ack: false }))
                        .await
                        .map_err(|e| link.error(e))?
                    {
                        Some(c) => copies.push(c),
                        None => break,
                    }
                }
                let mut best: Option<(u64, T, bool)> = None;
                let mut crashed = false;
                for c in &copies {
                    crashed |= c.delivery.redelivered;
                    if let Ok(v) = serde_json::from_slice::<Versioned<T>>(&c.delivery.data)
                        && best.as_ref().is_none_or(|b| v.v > b.0)
                    {
                        best = Some((v.v, v.data, c.delivery.redelivered));
                    }
                }
                let tags = copies.iter().map(|c| c.delivery.delivery_tag).collect();
                let Some((version, data, best_crashed)) = best else {
                    let _ = chan.close(200, "unreadable record").await;
                    return Err(BufferError::Corrupt(format!("record {queue}")));
                };
                return Ok(Some(Locked {
                    chan,
                    queue: queue.to_owned(),
                    tags,
                    version,
                    crashed: crashed && best_crashed,
                    data,
                }));
            }
            Ok(None) => {
                if tokio::time::Instant::now() >= deadline {
                    link.recycle(chan).await;
                    return Err(BufferError::Timeout);
                }
                tokio::time::sleep(pause.next_delay()).await;
            }
        }
    }
}

/// Publishes the first version of a record into `queue` (which must exist and be empty).
pub(crate) async fn create<T: Serialize>(
    link: &Link,
    queue: &str,
    data: &T,
) -> Result<(), BufferError> {
    let chan = link.channel().await?;
    let r = put(link, &chan, queue, 1, data).await;
    link.recycle(chan).await;
    r
}

async fn put<T: Serialize>(
    link: &Link,
    chan: &Channel,
    queue: &str,
    v: u64,
    data: &T,
) -> Result<(), BufferError> {
    let body = serde_json::to_vec(&Versioned { v, data })
        .map_err(|e| BufferError::Corrupt(e.to_string()))?;
    let confirm = link
        .bounded(chan.basic_publish(
            "",
            queue,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &body,
            BasicProperties::default().with_delivery_mode(2),
        ))
        .await
        .map_err(|e| link.error(e))?;
    link.confirmed(confirm).await
}

impl<T: Serialize> Locked<T> {
    /// The channel holding the lock (publisher confirms on).
    pub(crate) fn chan(&self) -> &Channel {
        &self.chan
    }

    /// Stores `self.data` as the next version and releases the lock.
    pub(crate) async fn write(self, link: &Link) -> Result<(), BufferError> {
        let r = self.write_inner(link).await;
        if r.is_ok() {
            link.recycle(self.chan).await;
        } else {
            // Gives back whatever is still held.
            let _ = self.chan.close(200, "failed").await;
        }
        r
    }

    async fn write_inner(&self, link: &Link) -> Result<(), BufferError> {
        put(link, &self.chan, &self.queue, self.version + 1, &self.data).await?;
        for tag in &self.tags {
            link.bounded(self.chan.basic_ack(*tag, BasicAckOptions::default()))
                .await
                .map_err(|e| link.error(e))?;
        }
        Ok(())
    }

    /// Releases the lock of a record that is about to be deleted with its queue.
    pub(crate) async fn abandon(self) {
        let _ = self.chan.close(200, "deleted").await;
    }
}

impl ChannelRecord {
    pub(crate) fn settings_max_message_size(&self) -> u64 {
        self.settings.max_message_size
    }

    pub(crate) fn settings_max_queue_size(&self) -> u64 {
        self.settings.max_queue_size
    }
}
