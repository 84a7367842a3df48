//! Leasing: deliveries taken with `basic.get` (sent in waves, back to back) and held unacked by
//! this process, round-robin over the channel's webhook queues; the ordered-delivery token;
//! lease expiry.

use std::sync::Arc;
use std::time::Duration;

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::{BasicProperties, Channel};

use super::link::{Link, poll_once};
use super::message::Meta;
use super::{Inner, POLL_INTERVAL, lock};
use crate::detached::{Detachable, lease_detached};
use crate::lease_policy::LeasePolicy;
use crate::lease_wait::{LeaseAttempt, wait_for_leases};
use crate::millis::{now_ms, signed_ms, ts};
use crate::stored::decode_stored;
use crate::unreadable::UNREADABLE;
use crate::{BufferError, DeadLetterReason, Lease, LeaseToken, QueueSettings};

/// A lease held by this process.
#[derive(Debug)]
pub(crate) struct Held {
    pub channel: String,
    pub queue: String,
    pub handle: String,
    pub chan: Channel,
    pub generation: u64,
    /// The delivery of the message (the token itself when `carried`).
    pub tag: u64,
    /// Ordered channels: the token delivery, when the message came from a webhook queue.
    pub token_tag: Option<u64>,
    /// The message travelled inside the ordered-delivery token.
    pub carried: bool,
    pub meta: Meta,
    pub body: Vec<u8>,
    /// Deliveries including this one.
    pub count: u32,
    pub settings: Arc<QueueSettings>,
    pub delivered_ms: i64,
    pub expires_ms: i64,
}

impl Held {
    pub(crate) fn ordered(&self) -> bool {
        self.carried || self.token_tag.is_some()
    }
}

/// Publishes an ordered-delivery token into `queue`: empty, or carrying a message.
pub(crate) async fn put_token(
    link: &Link,
    queue: &str,
    carried: Option<(&Meta, &[u8])>,
) -> Result<(), BufferError> {
    let (props, body) = match carried {
        Some((meta, body)) => (meta.properties(false), body),
        None => (BasicProperties::default().with_delivery_mode(2), &[][..]),
    };
    let confirm = link.publish("", queue, body, props).await?;
    link.confirmed(confirm).await
}

/// Most peeked ids remembered (about one per webhook queue of each ordered channel).
const MAX_PEEKED: usize = 65_536;

/// Most gets sent back to back in one wave.
const MAX_WAVE: usize = 128;

/// `Buffer::lease`: waits up to `wait` for the first message.
pub(crate) async fn lease(
    inner: &Arc<Inner>,
    channel: &str,
    max: usize,
    wait: Duration,
) -> Result<Vec<Lease>, BufferError> {
    wait_for_leases(
        &inner.notifiers,
        channel,
        max,
        wait,
        Some(POLL_INTERVAL),
        || lease_detached(inner, channel, max),
    )
    .await
}

impl Detachable for Inner {
    fn attempt(&self, channel: &str, max: usize) -> impl Future<Output = LeaseAttempt> + Send {
        self.lease_once(channel, max)
    }

    fn give_back(&self, leases: &[Lease]) -> impl Future<Output = ()> + Send {
        self.hand_back(leases)
    }
}

/// What became of one delivery.
enum Taken {
    Leased(Box<Lease>),
    /// Moved to the dead letters (expired, unreadable, out of attempts).
    Buried,
}

impl Inner {
    async fn hand_back(&self, leases: &[Lease]) {
        for l in leases {
            let _ = self.settle(&l.token, crate::Settle::Return).await;
        }
    }

    /// The AMQP channel for deliveries of `channel` (recreated after it closed).
    async fn consumer(&self, channel: &str) -> Result<(Channel, u64), BufferError> {
        let mut map = self.consumers.lock().await;
        if let Some((chan, generation)) = map.get(channel)
            && chan.status().connected()
            && *generation == self.link.generation()
        {
            return Ok((chan.clone(), *generation));
        }
        let fresh = self.link.channel_with_generation().await?;
        map.insert(channel.to_owned(), fresh.clone());
        Ok(fresh)
    }

    fn held_count(&self, channel: &str) -> usize {
        lock(&self.leases)
            .values()
            .filter(|l| l.channel == channel)
            .count()
    }

    async fn get(
        &self,
        chan: &Channel,
        queue: &str,
    ) -> Result<Option<BasicGetMessage>, BufferError> {
        self.link
            .bounded(chan.basic_get(queue, BasicGetOptions { no_ack: false }))
            .await
            .map_err(|e| self.link.error(e))
    }

    pub(crate) async fn lease_once(&self, channel: &str, max: usize) -> LeaseAttempt {
        let (record, settings) = self.info(channel).await?;
        let room = self.prefetch.saturating_sub(self.held_count(channel));
        let n = max.min(room);
        if n == 0 {
            return Ok((Vec::new(), None));
        }
        let (chan, generation) = self.consumer(channel).await?;
        if settings.ordered {
            return self
                .lease_ordered(channel, &record.all_queues(), &settings, chan, generation)
                .await;
        }
        if record.order_token {
            // Once ordered: a requeued message may still wait inside the token.
            // One still waiting out its delay does not hold up the others.
            if let Some(attempt) = self
                .lease_carried(channel, &settings, &chan, generation)
                .await?
            {
                let (leases, wake) = attempt?;
                if !leases.is_empty() {
                    return Ok((leases, wake));
                }
            }
        }
        let queues = record.all_queues();
        if queues.is_empty() {
            return Ok((Vec::new(), None));
        }
        let names = self.names(channel);
        let routes: Vec<String> = queues.iter().map(|q| names.queue(q)).collect();
        let mut i = lock(&self.rr).get(channel).copied().unwrap_or(0);
        // Messages believed ready per queue: 1 until a get says how many are left.
        let mut hint = vec![1u64; queues.len()];
        let mut out = Vec::new();
        while out.len() < n && hint.iter().any(|h| *h > 0) {
            // One wave: gets spread round-robin over the queues, sent back to back (the broker
            // answers them in order), so a batch costs about one round trip, not one per message.
            let budget = (n - out.len()).min(MAX_WAVE);
            let mut asked = vec![0u64; queues.len()];
            let mut wave = Vec::with_capacity(budget);
            let mut failed: Option<BufferError> = None;
            while wave.len() < budget {
                let Some(qi) = (0..queues.len())
                    .map(|k| (i + k) % queues.len())
                    .find(|qi| asked[*qi] < hint[*qi])
                else {
                    break;
                };
                asked[qi] += 1;
                i = qi + 1;
                let mut get = Box::pin(
                    self.link
                        .bounded(chan.basic_get(&routes[qi], BasicGetOptions { no_ack: false })),
                );
                let early = poll_once(&mut get).await;
                wave.push((qi, get, early));
            }
            for (qi, get, early) in wave {
                let got = match early {
                    Some(r) => r,
                    None => get.await,
                };
                // After a failure the rest of the wave is still taken: a delivery dropped here
                // would stay unacked on this channel.
                let got = match got {
                    Ok(g) => g,
                    Err(e) => {
                        failed.get_or_insert(self.link.error(e));
                        continue;
                    }
                };
                let q = &queues[qi];
                let Some(msg) = got else {
                    hint[qi] = 0;
                    lock(&self.heads).remove(&(channel.to_owned(), q.clone()));
                    continue;
                };
                hint[qi] = u64::from(msg.message_count);
                let key = (channel.to_owned(), q.clone());
                if msg.message_count == 0 {
                    lock(&self.heads).remove(&key);
                } else {
                    // The messages left were published after this one (requeued copies aside),
                    // so its receive time bounds the oldest of them.
                    let rcv = Meta::read(&msg.delivery.properties).received_ms;
                    lock(&self.heads).insert(key, [now_ms(), rcv]);
                }
                let d = msg.delivery;
                match self
                    .take(
                        channel,
                        q,
                        &chan,
                        generation,
                        d.delivery_tag,
                        None,
                        false,
                        d.redelivered,
                        &d.properties,
                        d.data,
                        &settings,
                    )
                    .await
                {
                    Ok(Taken::Leased(l)) => out.push(*l),
                    Ok(Taken::Buried) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                if out.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
        lock(&self.rr).insert(channel.to_owned(), i % queues.len());
        Ok((out, None))
    }

    async fn lease_ordered(
        &self,
        channel: &str,
        queues: &[String],
        settings: &Arc<QueueSettings>,
        chan: Channel,
        generation: u64,
    ) -> LeaseAttempt {
        if self.held_count(channel) > 0 {
            return Ok((Vec::new(), None));
        }
        let names = self.names(channel);
        let Some(token) = self.get(&chan, &names.order()).await? else {
            return Ok((Vec::new(), None));
        };
        let d = token.delivery;
        if !d.data.is_empty() {
            return self
                .lease_from_token(channel, settings, &chan, generation, d)
                .await;
        }
        // The channel's next message is the lowest sequence among the webhook queues' heads
        // take every head, keep that one, and give the others back in place (a classic
        // queue requeues at the original position). Only the token holder does this.
        loop {
            let mut heads = Vec::with_capacity(queues.len());
            for q in queues {
                if let Some(msg) = self.get(&chan, &names.queue(q)).await? {
                    heads.push((q, msg.delivery));
                }
            }
            let Some(first) = heads
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, m))| Meta::read(&m.properties).sequence)
                .map(|(i, _)| i)
            else {
                break;
            };
            let (q, m) = heads.swap_remove(first);
            {
                let mut peeked = lock(&self.peeked);
                if peeked.len() >= MAX_PEEKED {
                    // Ids of heads since removed otherwise (purge, expiry); forget them all.
                    peeked.clear();
                }
                for (_, other) in &heads {
                    peeked.insert((channel.to_owned(), Meta::read(&other.properties).message_id));
                }
            }
            for (_, other) in &heads {
                self.return_delivery(&chan, other.delivery_tag).await?;
            }
            if let Taken::Leased(l) = self
                .take(
                    channel,
                    q,
                    &chan,
                    generation,
                    m.delivery_tag,
                    Some(d.delivery_tag),
                    false,
                    m.redelivered,
                    &m.properties,
                    m.data,
                    settings,
                )
                .await?
            {
                return Ok((vec![*l], None));
            }
        }
        // Nothing to deliver: put the (empty) token back.
        self.return_delivery(&chan, d.delivery_tag).await?;
        Ok((Vec::new(), None))
    }

    /// A requeued message waiting inside the ordered token `d`: leased once its delay is over
    /// (the token travels with the lease), else put back.
    async fn lease_from_token(
        &self,
        channel: &str,
        settings: &Arc<QueueSettings>,
        chan: &Channel,
        generation: u64,
        d: lapin::message::Delivery,
    ) -> LeaseAttempt {
        let names = self.names(channel);
        let meta = Meta::read(&d.properties);
        let now = now_ms();
        if let Some(ready) = meta.ready_ms.filter(|r| *r > now) {
            put_token(&self.link, &names.order(), Some((&meta, &d.data))).await?;
            self.ack(chan, d.delivery_tag).await?;
            return Ok((Vec::new(), u64::try_from(ready - now).ok()));
        }
        let q = meta.queue.clone();
        match self
            .take(
                channel,
                &q,
                chan,
                generation,
                d.delivery_tag,
                None,
                true,
                d.redelivered,
                &d.properties,
                d.data,
                settings,
            )
            .await?
        {
            Taken::Leased(l) => Ok((vec![*l], None)),
            Taken::Buried => Ok((Vec::new(), Some(0))),
        }
    }

    /// A channel that is no longer ordered drains a message still waiting inside its token;
    /// `None` when the token is empty or out (it is given back as it was).
    async fn lease_carried(
        &self,
        channel: &str,
        settings: &Arc<QueueSettings>,
        chan: &Channel,
        generation: u64,
    ) -> Result<Option<LeaseAttempt>, BufferError> {
        let names = self.names(channel);
        let Some(token) = self.get(chan, &names.order()).await? else {
            return Ok(None);
        };
        let d = token.delivery;
        if d.data.is_empty() {
            self.return_delivery(chan, d.delivery_tag).await?;
            return Ok(None);
        }
        Ok(Some(
            self.lease_from_token(channel, settings, chan, generation, d)
                .await,
        ))
    }

    /// Returns a delivery to its queue, in its place (`basic.nack` with requeue).
    async fn return_delivery(&self, chan: &Channel, tag: u64) -> Result<(), BufferError> {
        self.link
            .bounded(chan.basic_nack(
                tag,
                BasicNackOptions {
                    requeue: true,
                    multiple: false,
                },
            ))
            .await
            .map_err(|e| self.link.error(e))
    }

    pub(crate) async fn ack(&self, chan: &Channel, tag: u64) -> Result<(), BufferError> {
        self.link
            .bounded(chan.basic_ack(tag, BasicAckOptions::default()))
            .await
            .map_err(|e| self.link.error(e))
    }

    /// Leases one delivery, or buries it when it is expired, unreadable or out of attempts.
    #[allow(clippy::too_many_arguments)]
    async fn take(
        &self,
        channel: &str,
        queue: &str,
        chan: &Channel,
        generation: u64,
        tag: u64,
        token_tag: Option<u64>,
        carried: bool,
        redelivered: bool,
        props: &BasicProperties,
        body: Vec<u8>,
        settings: &Arc<QueueSettings>,
    ) -> Result<Taken, BufferError> {
        let mut meta = Meta::read(props);
        meta.queue = queue.to_owned();
        // A copy given back by the broker was delivered once more than its header says, unless
        // this process only peeked at it (ordered channels).
        let peeked = lock(&self.peeked).remove(&(channel.to_owned(), meta.message_id.clone()));
        // A copy out of the ordered token is no longer waiting.
        if carried {
            self.add_delta(channel, queue, |c| c.waiting -= 1);
        }
        meta.count = meta.count.saturating_add(u32::from(redelivered && !peeked));
        meta.ready_ms = None;
        let now = now_ms();
        let held = Held {
            channel: channel.to_owned(),
            queue: queue.to_owned(),
            handle: String::new(),
            chan: chan.clone(),
            generation,
            tag,
            token_tag,
            carried,
            count: meta.count,
            meta,
            body,
            settings: settings.clone(),
            delivered_ms: now,
            expires_ms: now,
        };
        let envelope = decode_stored(&held.body, held.meta.sequence, held.meta.expires_ms);
        let bury = if held.meta.expires_ms.is_some_and(|e| e <= now) {
            Some((DeadLetterReason::Expired, held.meta.last_error.clone()))
        } else if envelope.is_none() {
            Some((DeadLetterReason::Rejected, Some(UNREADABLE.to_owned())))
        } else if LeasePolicy::of(settings).exhausted(held.meta.count) {
            Some((DeadLetterReason::MaxAttempts, held.meta.last_error.clone()))
        } else {
            None
        };
        if let Some((reason, err)) = bury {
            self.bury(held, reason, err).await?;
            return Ok(Taken::Buried);
        }
        let Some(envelope) = envelope else {
            return Ok(Taken::Buried);
        };
        let id = self
            .next_lease
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = format!("{:x}-{generation}-{id}", self.instance);
        let count = held.meta.count + 1;
        let expires_ms = now.saturating_add(signed_ms(settings.ack_timeout));
        let token = LeaseToken {
            channel: channel.to_owned(),
            queue: queue.to_owned(),
            message_id: envelope.message_id.clone(),
            handle: handle.clone(),
        };
        lock(&self.leases).insert(
            id,
            Held {
                handle,
                count,
                expires_ms,
                ..held
            },
        );
        Ok(Taken::Leased(Box::new(Lease {
            envelope,
            token,
            delivery_count: count,
            lease_expires_at: ts(expires_ms),
        })))
    }

    /// Ends every lease past its expiry as a failed attempt.
    pub(crate) async fn expire_leases(&self) {
        let now = now_ms();
        let expired: Vec<Held> = {
            let mut map = lock(&self.leases);
            let ids: Vec<u64> = map
                .iter()
                .filter(|(_, l)| l.expires_ms <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| map.remove(&id)).collect()
        };
        for held in expired {
            let channel = held.channel.clone();
            if let Err(e) = self.requeue(held, None, None, true).await {
                tracing::debug!(channel = %channel, error = %e, "Expired lease not requeued; the broker redelivers it");
            }
            self.notifiers.wake(&channel);
        }
    }
}
