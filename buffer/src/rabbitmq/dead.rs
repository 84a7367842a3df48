//! Dead letters (listing, replay, purge, adopting the broker's own) and statistics.
//!
//! Each webhook queue keeps its dead letters in a RabbitMQ stream (`….dls`, `stream.rs`),
//! appended in the order they died. An entry is never changed: replay and purge record the
//! offsets they removed in the channel record ([`DeadIndex`]), and a purge of everything moves
//! the index's floor. A listing reads only the newest window of each stream that holds the
//! page, so it costs O(page) at any stream length, takes nothing and leaves nothing behind
//! (besides the tail probe, `stream.rs`), and two listings in a row agree.
//!
//! The broker's own dead letters (per-message TTL expiry in a webhook queue) arrive in the
//! classic queue `….dlq`; `adopt_expired` moves them into the stream with reason `expired` and
//! counts them. Queues of the older topology kept every dead letter in `….dlq`; the same move
//! migrates them on first use.

use super::message::Meta;
use super::record::DeadIndex;
use super::stream::{self, Entry};
use super::walk::Walk;
use super::{Inner, topology, view};
use crate::millis::{now_ms, signed_ms, ts};
use crate::types::replay_result;
use crate::unreadable::{Known, dead_letter_envelope};
use crate::{
    BufferError, ChannelStats, DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterReason,
    QueueStats,
};

/// Entries read per window when walking a whole stream.
const WINDOW: u64 = 1000;

/// The listing key of a dead letter: newest first by the time it died, then by sequence.
fn key(meta: &Meta) -> (i64, u64) {
    (meta.dead_at_ms.unwrap_or(meta.received_ms), meta.sequence)
}

pub(crate) fn cursor_of(k: (i64, u64)) -> String {
    format!("{}.{}", k.0, k.1)
}

pub(crate) fn parse_cursor(c: &str) -> Option<(i64, u64)> {
    let (a, b) = c.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A live dead letter of one stream, with its offset.
struct Found {
    key: (i64, u64),
    offset: u64,
    meta: Meta,
    entry: Entry,
}

/// Most replayed copies awaiting their confirms at once.
const REPLAY_WAVE: usize = 256;

/// A replay into one webhook queue: copies published back to back, confirmed in waves.
struct Replay<'a> {
    inner: &'a Inner,
    queue: String,
    routing: String,
    ttl_ms: i64,
    room: u64,
    pending: Vec<(u64, lapin::publisher_confirm::PublisherConfirm)>,
    /// Offsets of the dead letters whose copy is confirmed.
    moved: Vec<u64>,
    /// Refused for lack of room.
    blocked: u64,
}

impl Replay<'_> {
    /// Publishes the copy of one dead letter: same id, sequence and body, count 0, a fresh TTL.
    async fn start(&mut self, f: Found) -> Result<(), BufferError> {
        if self.room == 0 {
            self.blocked += 1;
            return Ok(());
        }
        self.room -= 1;
        let mut meta = f.meta;
        meta.queue = self.queue.clone();
        meta.count = 0;
        meta.reason = None;
        meta.dead_at_ms = None;
        meta.last_error = None;
        meta.ready_ms = None;
        // `docs/reference/http-api.md`: a replayed message lives `ttl_seconds` from now.
        meta.expires_ms = Some(now_ms().saturating_add(self.ttl_ms));
        let confirm = self
            .inner
            .link
            .publish(
                &self.inner.exchange,
                &self.routing,
                &f.entry.data,
                meta.properties(true),
            )
            .await?;
        self.pending.push((f.offset, confirm));
        if self.pending.len() >= REPLAY_WAVE {
            self.finish().await?;
        }
        Ok(())
    }

    /// Waits for the confirms under way; a copy the full queue refused keeps its dead letter.
    async fn finish(&mut self) -> Result<(), BufferError> {
        let mut failed = None;
        for (offset, confirm) in std::mem::take(&mut self.pending) {
            match self.inner.link.confirmed(confirm).await {
                Ok(()) => self.moved.push(offset),
                Err(BufferError::QueueFull) => self.blocked += 1,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Inner {
    fn to_dead_letter(&self, channel: &str, queue: &str, f: Found) -> DeadLetter {
        let meta = f.meta;
        let envelope = dead_letter_envelope(
            Known {
                channel,
                queue,
                sequence: meta.sequence,
                message_id: &meta.message_id,
                received_ms: meta.received_ms,
                expires_ms: meta.expires_ms,
            },
            &f.entry.data,
        );
        DeadLetter {
            envelope,
            queue: queue.to_owned(),
            reason: meta.reason.unwrap_or(DeadLetterReason::Rejected),
            dead_lettered_at: ts(meta.dead_at_ms.unwrap_or(meta.received_ms)),
            delivery_count: meta.count,
            last_error: meta.last_error,
        }
    }

    async fn queues_of(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
    ) -> Result<Vec<String>, BufferError> {
        let (record, _) = self.info(channel).await?;
        Ok(match webhook_id {
            Some(w) => vec![w.to_owned()],
            None => record.all_queues(),
        })
    }

    /// The removed entries of `queue`'s stream, as this process last read them.
    async fn dead_index(&self, channel: &str, queue: &str) -> Result<DeadIndex, BufferError> {
        let (record, _) = self.info(channel).await?;
        Ok(record.dead.get(queue).cloned().unwrap_or_default())
    }

    /// The live dead letters of `queue`'s stream below offset `end`, newest first, that `keep`
    /// accepts, until `enough` says stop. Reads windows backwards from `end`, each twice the
    /// last, so a page costs about its own size.
    async fn newest(
        &self,
        queue_stream: &str,
        index: &DeadIndex,
        end: u64,
        mut keep: impl FnMut(&Meta) -> bool,
        enough: impl Fn(usize) -> bool,
        first_window: u64,
    ) -> Result<Vec<Found>, BufferError> {
        let mut out = Vec::new();
        let mut hi = end;
        let mut window = first_window.max(1);
        while hi > index.floor && !enough(out.len()) {
            let lo = hi.saturating_sub(window).max(index.floor);
            let entries = stream::read(&self.link, queue_stream, lo, hi).await?;
            for entry in entries.into_iter().rev() {
                if entry.is_probe() || !index.live(entry.offset) {
                    continue;
                }
                let meta = Meta::read(&entry.properties);
                if keep(&meta) {
                    out.push(Found {
                        key: key(&meta),
                        offset: entry.offset,
                        meta,
                        entry,
                    });
                    if enough(out.len()) {
                        break;
                    }
                }
            }
            hi = lo;
            window = window.saturating_mul(2).min(WINDOW * 10);
        }
        Ok(out)
    }

    pub(crate) async fn dead_letters(
        &self,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, BufferError> {
        query.check_limit()?;
        let before = match &query.cursor {
            None => None,
            Some(c) => {
                Some(parse_cursor(c).ok_or_else(|| BufferError::Invalid("bad cursor".into()))?)
            }
        };
        self.adopt_expired(channel).await?;
        let names = self.names(channel);
        // One more than a page, to know whether another page follows.
        let want = query.limit + 1;
        let mut found: Vec<(String, Found)> = Vec::new();
        for q in self.queues_of(channel, query.webhook_id.as_deref()).await? {
            let index = self.dead_index(channel, &q).await?;
            let s = names.dead_stream(&q);
            let end = stream::tail(&self.link, &s).await?;
            let page = self
                .newest(
                    &s,
                    &index,
                    end,
                    |m| before.is_none_or(|b| key(m) < b),
                    |n| n >= want,
                    want as u64,
                )
                .await?;
            found.extend(page.into_iter().map(|f| (q.clone(), f)));
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.1.key));
        let more = found.len() > query.limit;
        found.truncate(query.limit);
        let next_cursor = if more {
            found.last().map(|(_, f)| cursor_of(f.key))
        } else {
            None
        };
        let items = found
            .into_iter()
            .map(|(q, f)| self.to_dead_letter(channel, &q, f))
            .collect();
        Ok(DeadLetterPage { items, next_cursor })
    }

    /// Records removed stream entries in the channel record: `offsets` of `queue`, and
    /// everything below `clear_below` when given.
    async fn remove_dead(
        &self,
        channel: &str,
        queue: &str,
        offsets: &[u64],
        clear_below: Option<u64>,
    ) -> Result<(), BufferError> {
        let gate = self.gate(channel);
        let _g = gate.lock.lock().await;
        let mut locked = self.lock_record(channel).await?;
        let index = locked.data.dead.entry(queue.to_owned()).or_default();
        for o in offsets {
            index.remove(*o);
        }
        if let Some(end) = clear_below {
            index.clear_below(end);
        }
        self.write_record(channel, locked).await?;
        Ok(())
    }

    /// The live entries of a stream from offset `lo` on, oldest first, one window's worth
    /// below `end`; and where the next window starts.
    async fn live_window(
        &self,
        stream_name: &str,
        index: &DeadIndex,
        lo: u64,
        end: u64,
    ) -> Result<(Vec<Found>, u64), BufferError> {
        let hi = lo.saturating_add(WINDOW).min(end);
        let found = stream::read(&self.link, stream_name, lo, hi)
            .await?
            .into_iter()
            .filter(|e| !e.is_probe() && index.live(e.offset))
            .map(|entry| {
                let meta = Meta::read(&entry.properties);
                Found {
                    key: key(&meta),
                    offset: entry.offset,
                    meta,
                    entry,
                }
            })
            .collect();
        Ok((found, hi))
    }

    pub(crate) async fn replay(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        let names = self.names(channel);
        let queues = self.queues_of(channel, webhook_id).await?;
        self.adopt_expired(channel).await?;
        let (record, settings) = self.info(channel).await?;
        let ttl_ms = signed_ms(settings.ttl);
        let (mut replayed, mut blocked) = (0u64, 0u64);
        for q in queues {
            let s = names.dead_stream(&q);
            let index = self.dead_index(channel, &q).await?;
            let end = stream::tail(&self.link, &s).await?;
            let mut r = Replay {
                inner: self,
                routing: names.queue(&q),
                queue: q.clone(),
                ttl_ms,
                room: self.replay_room(channel, &q, &record, &settings).await?,
                pending: Vec::new(),
                moved: Vec::new(),
                blocked: 0,
            };
            let walked = match message_id {
                Some(id) => {
                    let hit = self
                        .newest(&s, &index, end, |m| m.message_id == id, |n| n >= 1, WINDOW)
                        .await?;
                    for f in hit {
                        r.start(f).await?;
                    }
                    r.finish().await
                }
                None => {
                    let mut lo = index.floor;
                    let mut walked = Ok(());
                    while lo < end && walked.is_ok() {
                        walked = match self.live_window(&s, &index, lo, end).await {
                            Ok((found, next)) => {
                                lo = next;
                                let mut started = Ok(());
                                for f in found {
                                    started = r.start(f).await;
                                    if started.is_err() {
                                        break;
                                    }
                                }
                                started
                            }
                            Err(e) => Err(e),
                        };
                    }
                    let finished = r.finish().await;
                    walked.and(finished)
                }
            };
            let n = r.moved.len() as u64;
            if n > 0 {
                let clear =
                    (message_id.is_none() && r.blocked == 0 && walked.is_ok()).then_some(end);
                self.remove_dead(channel, &q, &r.moved, clear).await?;
                self.add_delta(channel, &q, |c| {
                    c.dead_depth -= i64::try_from(n).unwrap_or(0)
                });
            }
            replayed += n;
            blocked += r.blocked;
            walked?;
            if message_id.is_some() && replayed > 0 {
                break;
            }
        }
        if replayed > 0 {
            self.notifiers.wake(channel);
        }
        replay_result(replayed, blocked)
    }

    /// How many replayed messages `queue` takes: what its depth leaves of the channel's limit
    /// (the broker's `x-max-length` is above it); none for a queue no longer configured.
    async fn replay_room(
        &self,
        channel: &str,
        queue: &str,
        record: &super::record::ChannelRecord,
        settings: &crate::QueueSettings,
    ) -> Result<u64, BufferError> {
        if !record.queues.iter().any(|q| q == queue) {
            return Ok(0);
        }
        let depth = topology::depth(&self.link, &self.names(channel).queue(queue))
            .await?
            .unwrap_or(0);
        Ok(settings.max_queue_size.saturating_sub(depth))
    }

    pub(crate) async fn purge(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        let names = self.names(channel);
        self.adopt_expired(channel).await?;
        let mut purged = 0u64;
        for q in self.queues_of(channel, webhook_id).await? {
            let s = names.dead_stream(&q);
            let index = self.dead_index(channel, &q).await?;
            let end = match stream::tail(&self.link, &s).await {
                Ok(end) => end,
                Err(e) => return Err(e),
            };
            let n = match message_id {
                None => {
                    let mut n = 0u64;
                    let mut lo = index.floor;
                    while lo < end {
                        let (found, next) = self.live_window(&s, &index, lo, end).await?;
                        n += found.len() as u64;
                        lo = next;
                    }
                    self.remove_dead(channel, &q, &[], Some(end)).await?;
                    n
                }
                Some(id) => {
                    let hit = self
                        .newest(&s, &index, end, |m| m.message_id == id, |n| n >= 1, WINDOW)
                        .await?;
                    let offsets: Vec<u64> = hit.iter().map(|f| f.offset).collect();
                    if !offsets.is_empty() {
                        self.remove_dead(channel, &q, &offsets, None).await?;
                    }
                    offsets.len() as u64
                }
            };
            if n > 0 {
                self.add_delta(channel, &q, |c| {
                    c.dead_depth -= i64::try_from(n).unwrap_or(0)
                });
            }
            purged += n;
            if message_id.is_some() && purged > 0 {
                break;
            }
        }
        Ok(purged)
    }

    /// Moves what the broker dead-lettered on its own (TTL expiry), and the dead letters of the
    /// older topology, from each `….dlq` queue into the queue's stream, counting the broker's as
    /// expired. Returns how many were expired.
    pub(crate) async fn adopt_expired(&self, channel: &str) -> Result<u64, BufferError> {
        let (record, _) = self.info(channel).await?;
        let names = self.names(channel);
        let mut adopted = 0;
        for q in record.all_queues() {
            let dlq = names.dead_letters(&q);
            if topology::depth(&self.link, &dlq).await?.unwrap_or(0) == 0 {
                continue;
            }
            let s = names.dead_stream(&q);
            // Whether each move, in order, carries a broker dead letter.
            let mut from_broker = Vec::new();
            let mut walk = Walk::start(&self.link, &dlq).await?;
            let walked = async {
                while let Some(m) = walk.next().await? {
                    let broker = Meta::is_broker_dead_letter(&m.delivery.properties);
                    let mut meta = Meta::read(&m.delivery.properties);
                    meta.queue = q.clone();
                    if broker {
                        meta.reason = Some(DeadLetterReason::Expired);
                        meta.dead_at_ms = Some(meta.dead_at_ms.unwrap_or_else(now_ms));
                    }
                    from_broker.push(broker);
                    walk.move_to(&m, "", &s, &m.delivery.data, meta.properties(false))
                        .await?;
                }
                walk.finish_moves().await
            }
            .await;
            // Counted only once moved: a failed move leaves the message in `….dlq` for later.
            let done = usize::try_from(walk.moved()).unwrap_or(usize::MAX);
            walk.done().await;
            let moved = from_broker.iter().take(done).filter(|b| **b).count() as u64;
            self.add_delta(channel, &q, |c| {
                c.expired += moved;
                c.dead_lettered += moved;
                c.dead_depth += i64::try_from(moved).unwrap_or(0);
            });
            adopted += moved;
            walked?;
        }
        if adopted > 0 {
            self.flush(channel).await?;
        }
        Ok(adopted)
    }

    pub(crate) async fn stats(&self, channel: &str) -> Result<ChannelStats, BufferError> {
        self.adopt_expired(channel).await?;
        let record = self.flush(channel).await?;
        let names = self.names(channel);
        let now = now_ms();
        let mine = self.own_view(channel, now);
        let others = view::others(&record.views, self.instance, now);
        let mut queues = Vec::new();
        let mut all = record.queues.clone();
        all.extend(record.retired.iter().cloned());
        for q in all {
            let queued = topology::depth(&self.link, &names.queue(&q))
                .await?
                .unwrap_or(0);
            let c = record.counters.get(&q).copied().unwrap_or_default();
            let dead = u64::try_from(c.dead_depth).unwrap_or(0);
            let theirs = others.get(&q).copied().unwrap_or_default();
            let my_delayed: u64 = mine.delayed.get(&q).map_or(0, |d| d.values().sum());
            let queued =
                queued + u64::try_from(c.waiting).unwrap_or(0) + my_delayed + theirs.delayed;
            // The most recent look at the head, by any instance.
            let oldest = if queued == 0 {
                None
            } else {
                view::latest(mine.heads.get(&q).copied(), theirs.head)
                    .map(|[_, rcv]| (now - rcv).max(0) as f64 / 1000.0)
            };
            let s = QueueStats {
                webhook_id: q.clone(),
                queued,
                in_flight: mine.in_flight.get(&q).copied().unwrap_or(0) + theirs.leases,
                dead_letters: dead,
                oldest_queued_age_seconds: oldest,
                delivered: c.delivered,
                nacked: c.nacked,
                expired: c.expired,
                dead_lettered: c.dead_lettered,
                published: c.published,
            };
            queues.push(s);
        }
        Ok(ChannelStats::of_queues(channel, queues))
    }
}
