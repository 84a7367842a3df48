//! Dead letters (listing, replay, purge, counting the broker's own) and statistics.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use lapin::message::BasicGetMessage;
use lapin::options::QueuePurgeOptions;

use super::link::not_found;
use super::message::Meta;
use super::names::dead_letter_exchange;
use super::view;
use super::walk::Walk;
use super::{Inner, topology};
use crate::millis::{now_ms, signed_ms, ts};
use crate::types::replay_result;
use crate::unreadable::{Known, dead_letter_envelope};
use crate::{
    BufferError, ChannelStats, DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterReason,
    QueueStats,
};

/// The sort key of a stored dead letter, from its headers: listed newest first by the time it
/// was dead-lettered, then by sequence (the same time and sequence as in its [`DeadLetter`]).
fn key(meta: &Meta) -> (i64, u64) {
    (meta.dead_at_ms.unwrap_or(meta.received_ms), meta.sequence)
}

/// The newest `keep` dead letters seen so far, with their keys.
struct Newest {
    keep: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

/// A dead letter ordered by its key alone.
struct Ranked((i64, u64), DeadLetter);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Newest {
    /// Whether a dead letter with key `k` would be kept (decoding it is worth it).
    fn wants(&self, k: (i64, u64)) -> bool {
        self.heap.len() < self.keep || self.heap.peek().is_some_and(|Reverse(min)| k > min.0)
    }

    fn offer(&mut self, k: (i64, u64), d: DeadLetter) {
        self.heap.push(Reverse(Ranked(k, d)));
        if self.heap.len() > self.keep {
            self.heap.pop();
        }
    }

    /// The kept dead letters, newest first.
    fn into_sorted(self) -> Vec<Ranked> {
        let mut v: Vec<Ranked> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

pub(crate) fn cursor_of(k: (i64, u64)) -> String {
    format!("{}.{}", k.0, k.1)
}

pub(crate) fn parse_cursor(c: &str) -> Option<(i64, u64)> {
    let (a, b) = c.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Inner {
    fn to_dead_letter(&self, channel: &str, queue: &str, m: &BasicGetMessage) -> DeadLetter {
        let d = &m.delivery;
        let meta = Meta::read(&d.properties);
        let envelope = dead_letter_envelope(
            Known {
                channel,
                queue,
                sequence: meta.sequence,
                message_id: &meta.message_id,
                received_ms: meta.received_ms,
                expires_ms: meta.expires_ms,
            },
            &d.data,
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
        let names = self.names(channel);
        // One more than a page, to know whether another page follows.
        let mut newest = Newest {
            keep: query.limit + 1,
            heap: BinaryHeap::new(),
        };
        for q in self.queues_of(channel, query.webhook_id.as_deref()).await? {
            let mut walk = Walk::start(&self.link, &names.dead_letters(&q)).await?;
            let visited = async {
                while let Some(m) = walk.next().await? {
                    let k = key(&Meta::read(&m.delivery.properties));
                    if before.is_none_or(|b| k < b) && newest.wants(k) {
                        newest.offer(k, self.to_dead_letter(channel, &q, &m));
                    }
                }
                Ok::<(), BufferError>(())
            }
            .await;
            walk.done().await;
            visited?;
        }
        let mut ranked = newest.into_sorted();
        let more = ranked.len() > query.limit;
        ranked.truncate(query.limit);
        let next_cursor = if more {
            ranked.last().map(|r| cursor_of(r.0))
        } else {
            None
        };
        let all = ranked.into_iter().map(|r| r.1).collect();
        Ok(DeadLetterPage {
            items: all,
            next_cursor,
        })
    }

    pub(crate) async fn replay(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        let names = self.names(channel);
        let queues = self.queues_of(channel, webhook_id).await?;
        let gate = self.gate(channel);
        let _g = gate.lock.lock().await;
        let locked = self.lock_record(channel).await?;
        let max_len = locked.data.settings_max_queue_size();
        let ttl_ms = signed_ms(crate::QueueSettings::from(&locked.data.settings).ttl);
        let live: Vec<String> = locked.data.queues.clone();
        let (mut replayed, mut blocked) = (0u64, 0u64);
        let mut outcome = Ok(());
        for q in queues {
            let mut room = match topology::depth(&self.link, &names.queue(&q)).await {
                Ok(d) => max_len.saturating_sub(d.unwrap_or(0)),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            let mut walk = match Walk::start(&self.link, &names.dead_letters(&q)).await {
                Ok(w) => w,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            let walked = async {
                while let Some(m) = walk.next().await? {
                    let mut meta = Meta::read(&m.delivery.properties);
                    if message_id.is_some_and(|id| id != meta.message_id) {
                        continue;
                    }
                    if room == 0 || !live.contains(&q) {
                        blocked += 1;
                        if message_id.is_some() {
                            break;
                        }
                        continue;
                    }
                    meta.queue = q.clone();
                    meta.count = 0;
                    meta.reason = None;
                    meta.dead_at_ms = None;
                    meta.last_error = None;
                    meta.ready_ms = None;
                    // `docs/reference/http-api.md`: a replayed message lives `ttl_seconds` from now.
                    meta.expires_ms = Some(now_ms().saturating_add(ttl_ms));
                    room -= 1;
                    let data = &m.delivery.data;
                    walk.move_to(
                        &m,
                        &self.exchange,
                        &names.queue(&q),
                        data,
                        meta.properties(true),
                    )
                    .await?;
                    if message_id.is_some() {
                        break;
                    }
                }
                walk.finish_moves().await
            }
            .await;
            let moved = walk.moved();
            replayed += moved;
            self.add_delta(channel, &q, |c| {
                c.dead_depth -= i64::try_from(moved).unwrap_or(0)
            });
            walk.done().await;
            if let Err(e) = walked {
                outcome = Err(e);
                break;
            }
            if message_id.is_some() && replayed > 0 {
                break;
            }
        }
        self.write_record(channel, locked).await?;
        outcome?;
        if replayed > 0 {
            self.notifiers.wake(channel);
        }
        replay_result(replayed, blocked)
    }

    pub(crate) async fn purge(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        let names = self.names(channel);
        let mut purged = 0u64;
        for q in self.queues_of(channel, webhook_id).await? {
            let dlq = names.dead_letters(&q);
            let n = match message_id {
                None => {
                    let chan = self.link.channel().await?;
                    let r = self
                        .link
                        .bounded(chan.queue_purge(&dlq, QueuePurgeOptions::default()))
                        .await;
                    self.link.recycle(chan).await;
                    match r {
                        Ok(n) => u64::from(n),
                        Err(e) if not_found(&e) => 0,
                        Err(e) => return Err(self.link.error(e)),
                    }
                }
                Some(id) => {
                    let mut walk = Walk::start(&self.link, &dlq).await?;
                    let found = async {
                        while let Some(m) = walk.next().await? {
                            if Meta::read(&m.delivery.properties).message_id == id {
                                walk.remove(&m).await?;
                                return Ok(1);
                            }
                        }
                        Ok::<u64, BufferError>(0)
                    }
                    .await;
                    walk.done().await;
                    found?
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

    /// Counts the dead letters the broker moved on its own (TTL): rewrites each with our
    /// headers (reason `expired`) and counts it as expired. Returns how many.
    pub(crate) async fn adopt_expired(&self, channel: &str) -> Result<u64, BufferError> {
        let record = self.flush(channel).await?;
        let names = self.names(channel);
        let mut adopted = 0;
        for q in record.all_queues() {
            let known = record.counters.get(&q).map_or(0, |c| c.dead_depth);
            let depth = topology::depth(&self.link, &names.dead_letters(&q))
                .await?
                .unwrap_or(0);
            if i64::try_from(depth).unwrap_or(i64::MAX) <= known {
                continue;
            }
            let mut walk = Walk::start(&self.link, &names.dead_letters(&q)).await?;
            let walked = async {
                while let Some(m) = walk.next().await? {
                    if !Meta::is_broker_dead_letter(&m.delivery.properties) {
                        continue;
                    }
                    let mut meta = Meta::read(&m.delivery.properties);
                    meta.queue = q.clone();
                    meta.reason = Some(DeadLetterReason::Expired);
                    meta.dead_at_ms = Some(meta.dead_at_ms.unwrap_or_else(now_ms));
                    let (exchange, dlq) =
                        (dead_letter_exchange(&self.exchange), names.dead_letters(&q));
                    walk.move_to(
                        &m,
                        &exchange,
                        &dlq,
                        &m.delivery.data,
                        meta.properties(false),
                    )
                    .await?;
                }
                walk.finish_moves().await
            }
            .await;
            // Counted also when a later move failed: the counters match what was moved.
            let moved = walk.moved();
            self.add_delta(channel, &q, |c| {
                let n = i64::try_from(moved).unwrap_or(0);
                c.expired += moved;
                c.dead_lettered += moved;
                c.dead_depth += n;
            });
            adopted += moved;
            walk.done().await;
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
            let dead = topology::depth(&self.link, &names.dead_letters(&q))
                .await?
                .unwrap_or(0);
            let c = record.counters.get(&q).copied().unwrap_or_default();
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
