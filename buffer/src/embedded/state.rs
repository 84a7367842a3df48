//! The embedded store's state: per queue only its counters and sizes are in memory; every
//! message and every index over the messages lives in redb ([`super::index`]), written inside
//! the writer's transaction. Memory does not grow with the backlog, and start-up reads one row
//! per channel and queue plus the leases in flight, not the messages.
//!
//! Only the writer thread touches this. Each operation first checks everything that can refuse
//! it, then writes; a storage error aborts the whole batch ([`Fail`]) and the state is reloaded
//! from the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use redb::ReadableTable;
use webhook_connect_protocol::Envelope;

use super::index::{self, CHUNK, Row};
use super::records::{
    Counters, DeadRecord, MsgRecord, MsgState, Sizes, dead_key, dead_key_id, decode_channel,
    encode_channel, split_dead_key, split_message_key, split_queue_key,
};
pub(crate) use super::tables::{Fail, SResult, Tables};
use super::tables::{INDEX_FORMAT, MISC_HEALTH, MISC_INDEX_FORMAT, MISC_LEASE_GEN, MISC_NEXT_DEAD};
use crate::lease_policy::{AfterFailure, LeasePolicy};
use crate::millis::{now_ms, signed_ms, ts};
use crate::stored::{decode_stored, encode_stored};
use crate::types::replay_result;
pub(crate) use crate::unreadable::UNREADABLE;
use crate::unreadable::{Known, dead_letter_envelope};
use crate::{
    BufferError, ChannelStats, DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterReason,
    Lease, LeaseToken, QueueSettings, QueueStats, Settle, Settled,
};

/// Longest channel or queue name the store accepts (names are validated upstream to far less).
const MAX_NAME_LEN: usize = 255;

/// Outer: storage failure (abort the batch); inner: the operation's own answer.
pub(crate) type OpResult<T> = SResult<Result<T, BufferError>>;

/// What one batch changed beyond the rows it wrote directly.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Queues whose counters or sizes changed.
    dirty_queues: BTreeSet<(String, String)>,
    dirty_seqs: BTreeSet<String>,
    dirty_misc: bool,
    /// Channels whose lease waiters should look again after the commit.
    pub wake: BTreeSet<String>,
    /// Whether anything was written (otherwise the transaction is aborted, saving a sync).
    pub wrote: bool,
}

/// The answer to a lease request.
#[derive(Debug, Default)]
pub(crate) struct LeaseOut {
    pub leases: Vec<Lease>,
    /// Unix ms of the next moment something may become leasable (delayed message ready, lease
    /// running out), if any.
    pub next_wake_ms: Option<i64>,
}

/// What memory holds of one webhook queue: counters and sizes, a few dozen bytes whatever its
/// depth.
#[derive(Debug, Default)]
struct Queue {
    counters: Counters,
    sizes: Sizes,
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.sizes.msgs == 0 && self.sizes.dead == 0
    }
}

#[derive(Debug)]
struct Chan {
    settings: QueueSettings,
    webhook_ids: Vec<String>,
    queues: BTreeMap<String, Queue>,
    rr: usize,
    seq: u64,
}

impl Chan {
    fn in_flight(&self) -> u64 {
        self.queues.values().map(|q| q.sizes.leased).sum()
    }
}

/// The state of the whole store that is kept in memory.
#[derive(Debug, Default)]
pub(crate) struct Mem {
    channels: HashMap<String, Chan>,
    lease_gen: u64,
    next_dead_id: u64,
}

/// A message's stored record as read.
enum Rec {
    Missing,
    Unreadable,
    Found(MsgRecord),
}

fn read_rec(t: &Tables<'_>, key: &[u8]) -> SResult<Rec> {
    Ok(match t.meta.get(key)? {
        None => Rec::Missing,
        Some(g) => match MsgRecord::decode(g.value()) {
            Some(rec) => Rec::Found(rec),
            None => Rec::Unreadable,
        },
    })
}

fn check_name(kind: &str, name: &str) -> Result<(), BufferError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(BufferError::Invalid(format!(
            "{kind} name must be 1-{MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

/// The record standing in for one whose stored bytes are unreadable, when it is dead-lettered.
fn unreadable_record(now: i64) -> MsgRecord {
    MsgRecord {
        message_id: String::new(),
        delivery_count: 0,
        received_ms: now,
        expires_ms: None,
        last_error: Some(UNREADABLE.to_owned()),
        state: MsgState::Ready { ready_ms: now },
    }
}

/// Everything needed to move one message, already out of the indexes, to the dead letters.
struct Bury<'a> {
    channel: &'a str,
    queue: &'a str,
    seq: u64,
    rec: MsgRecord,
    reason: DeadLetterReason,
    now: i64,
}

impl Mem {
    /// Loads the state from the tables. With `restore`, leases left by a previous process are
    /// ended at once as failed attempts. A file written before the index tables existed is
    /// indexed here once (the only start-up work that grows with the backlog).
    pub(crate) fn load(t: &mut Tables<'_>, b: &mut Batch, restore: bool) -> SResult<Mem> {
        let mut mem = Mem {
            lease_gen: t.misc.get(MISC_LEASE_GEN)?.map(|g| g.value()).unwrap_or(0),
            next_dead_id: t.misc.get(MISC_NEXT_DEAD)?.map(|g| g.value()).unwrap_or(1),
            ..Mem::default()
        };
        for row in t.channels.iter()? {
            let (k, v) = row?;
            let name = k.value().to_owned();
            let Some((settings, webhook_ids)) = decode_channel(v.value()) else {
                tracing::error!(channel = %name, "Unreadable channel definition skipped");
                continue;
            };
            let seq = t.seqs.get(name.as_str())?.map(|g| g.value()).unwrap_or(0);
            let queues = webhook_ids
                .iter()
                .map(|id| (id.clone(), Queue::default()))
                .collect();
            mem.channels.insert(
                name,
                Chan {
                    settings,
                    webhook_ids,
                    queues,
                    rr: 0,
                    seq,
                },
            );
        }
        for row in t.counters.iter()? {
            let (k, v) = row?;
            let Some((channel, queue)) = split_queue_key(k.value()) else {
                continue;
            };
            if let Some(chan) = mem.channels.get_mut(&channel) {
                let counters = Counters::decode(v.value()).unwrap_or_default();
                chan.queues.entry(queue).or_default().counters = counters;
            }
        }
        let indexed = t.misc.get(MISC_INDEX_FORMAT)?.map(|g| g.value()) == Some(INDEX_FORMAT);
        if indexed {
            for row in t.sizes.iter()? {
                let (k, v) = row?;
                let Some((channel, queue)) = split_queue_key(k.value()) else {
                    continue;
                };
                if let Some(chan) = mem.channels.get_mut(&channel) {
                    let sizes = Sizes::decode(v.value()).unwrap_or_default();
                    chan.queues.entry(queue).or_default().sizes = sizes;
                }
            }
        } else {
            mem.index_file(t, b)?;
        }
        if restore {
            let held = index::all_leases(t)?;
            if !held.is_empty() {
                tracing::info!(
                    count = held.len(),
                    "Restoring messages leased by a previous process"
                );
            }
            let now = now_ms();
            for (channel, queue, at, seq) in held {
                mem.end_lease(t, b, &channel, &queue, at, seq, now)?;
            }
        }
        Ok(mem)
    }

    /// Builds the index tables and sizes from the message and dead-letter rows, once, for a
    /// file written before they existed. Unreadable records are dead-lettered.
    fn index_file(&mut self, t: &mut Tables<'_>, b: &mut Batch) -> SResult<()> {
        index::clear_all(t)?;
        for q in self
            .channels
            .values_mut()
            .flat_map(|c| c.queues.values_mut())
        {
            q.sizes = Sizes::default();
        }
        let now = now_ms();
        let mut unreadable = Vec::new();
        let mut found = 0u64;
        let mut start: Vec<u8> = Vec::new();
        // In chunks: the rows of a chunk are read, then indexed.
        loop {
            let mut rows = Vec::with_capacity(CHUNK);
            for row in t.meta.range(start.as_slice()..)? {
                let (k, v) = row?;
                if k.value() == start.as_slice() {
                    continue;
                }
                rows.push((k.value().to_vec(), MsgRecord::decode(v.value())));
                if rows.len() == CHUNK {
                    break;
                }
            }
            let Some((last, _)) = rows.last() else { break };
            start = last.clone();
            for (key, rec) in rows {
                let Some((channel, queue, seq)) = split_message_key(&key) else {
                    continue;
                };
                let Some(chan) = self.channels.get_mut(&channel) else {
                    continue;
                };
                let q = chan.queues.entry(queue.clone()).or_default();
                q.sizes.msgs += 1;
                found += 1;
                match rec {
                    Some(rec) => {
                        if matches!(rec.state, MsgState::Leased { .. }) {
                            q.sizes.leased += 1;
                        }
                        index::add(t, &index::Queue::new(&channel, &queue), seq, &rec, now)?;
                    }
                    None => unreadable.push((channel, queue, seq)),
                }
            }
        }
        for row in t.dead.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let Some(id) = dead_key_id(key) else { continue };
            self.next_dead_id = self.next_dead_id.max(id + 1);
            let Some((queue, _)) = DeadRecord::decode_head(v.value()) else {
                continue;
            };
            let Some((channel, _)) = split_dead_key(key) else {
                continue;
            };
            if let Some(chan) = self.channels.get_mut(&channel) {
                chan.queues.entry(queue).or_default().sizes.dead += 1;
            }
        }
        for (channel, queue, seq) in unreadable {
            self.bury_unreadable(t, b, &channel, &queue, seq, false, now)?;
        }
        t.misc.insert(MISC_INDEX_FORMAT, INDEX_FORMAT)?;
        b.dirty_misc = true;
        for (name, chan) in &self.channels {
            for qname in chan.queues.keys() {
                b.dirty_queues.insert((name.clone(), qname.clone()));
            }
        }
        tracing::info!(
            messages = found,
            "Embedded store indexed (first start of this version)"
        );
        Ok(())
    }

    /// Writes the counters, sizes, sequences and generations changed in this batch.
    pub(crate) fn flush(&self, t: &mut Tables<'_>, b: &mut Batch) -> SResult<()> {
        for (channel, queue) in std::mem::take(&mut b.dirty_queues) {
            let key = super::records::queue_prefix(&channel, &queue);
            match self
                .channels
                .get(&channel)
                .and_then(|c| c.queues.get(&queue))
            {
                Some(q) => {
                    t.counters
                        .insert(key.as_slice(), q.counters.encode().as_slice())?;
                    t.sizes
                        .insert(key.as_slice(), q.sizes.encode().as_slice())?;
                }
                None => {
                    t.counters.remove(key.as_slice())?;
                    t.sizes.remove(key.as_slice())?;
                }
            }
            b.wrote = true;
        }
        for channel in std::mem::take(&mut b.dirty_seqs) {
            if let Some(chan) = self.channels.get(&channel) {
                t.seqs.insert(channel.as_str(), chan.seq)?;
                b.wrote = true;
            }
        }
        if std::mem::take(&mut b.dirty_misc) {
            t.misc.insert(MISC_LEASE_GEN, self.lease_gen)?;
            t.misc.insert(MISC_NEXT_DEAD, self.next_dead_id)?;
            b.wrote = true;
        }
        Ok(())
    }

    /// One queue's memory, marked to be written at the end of the batch.
    fn queue_mut(&mut self, b: &mut Batch, channel: &str, queue: &str) -> Option<&mut Queue> {
        let q = self.channels.get_mut(channel)?.queues.get_mut(queue)?;
        b.dirty_queues
            .insert((channel.to_owned(), queue.to_owned()));
        Some(q)
    }

    /// Stores a message's record and indexes it: it becomes (or stays) live in its queue.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        rec: &MsgRecord,
        now: i64,
    ) -> SResult<()> {
        let iq = index::Queue::new(channel, queue);
        t.meta
            .insert(iq.key(seq).as_slice(), rec.encode().as_slice())?;
        index::add(t, &iq, seq, rec, now)?;
        b.wrote = true;
        if let Some(q) = self.queue_mut(b, channel, queue) {
            q.sizes.msgs += 1;
            if matches!(rec.state, MsgState::Leased { .. }) {
                q.sizes.leased += 1;
            }
        }
        Ok(())
    }

    /// Takes a live message out of its queue's indexes (its rows stay until rewritten or
    /// removed).
    fn unplace(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        rec: &MsgRecord,
    ) -> SResult<()> {
        index::remove(t, &index::Queue::new(channel, queue), seq, rec)?;
        b.wrote = true;
        if let Some(q) = self.queue_mut(b, channel, queue) {
            q.sizes.msgs = q.sizes.msgs.saturating_sub(1);
            if matches!(rec.state, MsgState::Leased { .. }) {
                q.sizes.leased = q.sizes.leased.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Moves a message (already out of the indexes) to the dead letters.
    fn bury(&mut self, t: &mut Tables<'_>, b: &mut Batch, m: Bury<'_>) -> SResult<()> {
        let key = index::Queue::new(m.channel, m.queue).key(m.seq);
        let body = t
            .body
            .remove(key.as_slice())?
            .map(|g| g.value().to_vec())
            .unwrap_or_default();
        t.meta.remove(key.as_slice())?;
        let id = self.next_dead_id;
        self.next_dead_id += 1;
        b.dirty_misc = true;
        let record = DeadRecord {
            queue: m.queue.to_owned(),
            seq: m.seq,
            message_id: m.rec.message_id,
            reason: m.reason,
            at_ms: m.now,
            delivery_count: m.rec.delivery_count,
            received_ms: m.rec.received_ms,
            expires_ms: m.rec.expires_ms,
            last_error: m.rec.last_error,
            body,
        };
        t.dead.insert(
            dead_key(m.channel, id).as_slice(),
            record.encode().as_slice(),
        )?;
        b.wrote = true;
        if let Some(q) = self.queue_mut(b, m.channel, m.queue) {
            q.sizes.dead += 1;
            q.counters.dead_lettered += 1;
            if m.reason == DeadLetterReason::Expired {
                q.counters.expired += 1;
            }
        }
        Ok(())
    }

    /// Dead-letters a message whose stored record cannot be read. Its index rows other
    /// than the one its reader found are dropped later by their own readers.
    #[allow(clippy::too_many_arguments)]
    fn bury_unreadable(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        leased: bool,
        now: i64,
    ) -> SResult<()> {
        tracing::warn!(
            channel,
            webhook_id = queue,
            sequence = seq,
            "Unreadable stored record dead-lettered"
        );
        if let Some(q) = self.queue_mut(b, channel, queue) {
            q.sizes.msgs = q.sizes.msgs.saturating_sub(1);
            if leased {
                q.sizes.leased = q.sizes.leased.saturating_sub(1);
            }
        }
        self.bury(
            t,
            b,
            Bury {
                channel,
                queue,
                seq,
                rec: unreadable_record(now),
                reason: DeadLetterReason::Rejected,
                now,
            },
        )
    }

    /// Takes out a leased message whose lease failed (nack, release, lease expiry, restore),
    /// counted as nacked; returns its channel's lease policy.
    fn take_failed(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        rec: &MsgRecord,
    ) -> SResult<Option<LeasePolicy>> {
        let Some(chan) = self.channels.get(channel) else {
            return Ok(None);
        };
        let (ordered, policy) = (chan.settings.ordered, LeasePolicy::of(&chan.settings));
        self.unplace(t, b, channel, queue, seq, rec)?;
        if let Some(q) = self.queue_mut(b, channel, queue) {
            q.counters.nacked += 1;
        }
        if ordered {
            // The channel's one slot is free again.
            b.wake.insert(channel.to_owned());
        }
        Ok(Some(policy))
    }

    /// A delivery failed (nack with retry, release, lease expiry, restore): requeue after the
    /// delay, or dead-letter with `max_attempts`. `rec` is the message's leased record.
    #[allow(clippy::too_many_arguments)]
    fn fail_attempt(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        mut rec: MsgRecord,
        delay: Option<Duration>,
        last_error: Option<String>,
        now: i64,
    ) -> SResult<Settled> {
        let Some(policy) = self.take_failed(t, b, channel, queue, seq, &rec)? else {
            return Ok(Settled::NotInFlight);
        };
        if last_error.is_some() {
            rec.last_error = last_error;
        }
        let delay = match policy.after_failure(rec.delivery_count, delay) {
            AfterFailure::Requeue(delay) => delay,
            AfterFailure::DeadLetter => {
                self.bury(
                    t,
                    b,
                    Bury {
                        channel,
                        queue,
                        seq,
                        rec,
                        reason: DeadLetterReason::MaxAttempts,
                        now,
                    },
                )?;
                return Ok(Settled::DeadLettered(DeadLetterReason::MaxAttempts));
            }
        };
        let ready_ms = now.saturating_add(signed_ms(delay));
        if ready_ms <= now {
            b.wake.insert(channel.to_owned());
        }
        rec.state = MsgState::Ready { ready_ms };
        self.place(t, b, channel, queue, seq, &rec, now)?;
        Ok(Settled::Requeued {
            ready_at: ts(ready_ms),
        })
    }

    /// Ends the lease row (`at`, `seq`) as a failed attempt (it ran out, or a previous process
    /// held it). The row goes whatever its message's state.
    #[allow(clippy::too_many_arguments)]
    fn end_lease(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        at: i64,
        seq: u64,
        now: i64,
    ) -> SResult<()> {
        let iq = index::Queue::new(channel, queue);
        match read_rec(t, &iq.key(seq))? {
            Rec::Found(rec) if matches!(rec.state, MsgState::Leased { .. }) => {
                self.fail_attempt(t, b, channel, queue, seq, rec, None, None, now)?;
            }
            Rec::Unreadable => self.bury_unreadable(t, b, channel, queue, seq, true, now)?,
            Rec::Found(_) | Rec::Missing => {}
        }
        index::drop_row(t, &iq, Row::Leased, at, seq)
    }

    /// Makes delayed messages ready and ends the leases that ran out, in one channel.
    fn reap(&mut self, t: &mut Tables<'_>, b: &mut Batch, channel: &str, now: i64) -> SResult<()> {
        let Some(chan) = self.channels.get(channel) else {
            return Ok(());
        };
        let names: Vec<String> = chan.queues.keys().cloned().collect();
        for queue in names {
            let iq = index::Queue::new(channel, &queue);
            index::promote(t, &iq, now)?;
            loop {
                let ended = index::timed_upto(&t.leased, &iq, now)?;
                for &(at, seq) in &ended {
                    self.end_lease(t, b, channel, &queue, at, seq, now)?;
                }
                if ended.len() < CHUNK {
                    break;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn ensure_channel(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> OpResult<()> {
        if let Err(e) = check_name("channel", channel) {
            return Ok(Err(e));
        }
        for id in webhook_ids {
            if let Err(e) = check_name("webhook", id) {
                return Ok(Err(e));
            }
        }
        let mut ids: Vec<String> = webhook_ids.to_vec();
        ids.sort();
        ids.dedup();
        t.channels
            .insert(channel, encode_channel(settings, &ids).as_slice())?;
        b.wrote = true;
        let seq = match self.channels.get(channel) {
            Some(c) => c.seq,
            None => t.seqs.get(channel)?.map(|g| g.value()).unwrap_or(0),
        };
        let chan = self
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| Chan {
                settings: settings.clone(),
                webhook_ids: Vec::new(),
                queues: BTreeMap::new(),
                rr: 0,
                seq,
            });
        chan.settings = settings.clone();
        for id in &ids {
            chan.queues.entry(id.clone()).or_default();
        }
        let dropped: Vec<String> = chan
            .queues
            .iter()
            .filter(|(name, q)| q.is_idle() && ids.binary_search(name).is_err())
            .map(|(name, _)| name.clone())
            .collect();
        for name in dropped {
            chan.queues.remove(&name);
            b.dirty_queues.insert((channel.to_owned(), name));
        }
        chan.webhook_ids = ids;
        b.wake.insert(channel.to_owned());
        Ok(Ok(()))
    }

    pub(crate) fn delete_channel(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
    ) -> OpResult<()> {
        if self.channels.remove(channel).is_none() {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        }
        let prefix = super::records::channel_prefix(channel);
        for table in [
            &mut t.meta,
            &mut t.body,
            &mut t.dead,
            &mut t.counters,
            &mut t.sizes,
        ] {
            index::clear_prefix(table, &prefix)?;
        }
        for table in [
            &mut t.ready,
            &mut t.delayed,
            &mut t.leased,
            &mut t.waiting,
            &mut t.expiring,
        ] {
            index::clear_prefix(table, &prefix)?;
        }
        t.channels.remove(channel)?;
        // The sequence row stays: a channel created again under this name continues from it.
        b.wrote = true;
        b.wake.insert(channel.to_owned());
        Ok(Ok(()))
    }

    pub(crate) fn publish(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        queue: &str,
        envelope: &mut Envelope,
    ) -> OpResult<u64> {
        let channel = envelope.channel.clone();
        let Some(chan) = self.channels.get_mut(&channel) else {
            return Ok(Err(BufferError::UnknownChannel(channel)));
        };
        let declared = chan
            .webhook_ids
            .binary_search_by(|w| w.as_str().cmp(queue))
            .is_ok();
        let Some(q) = chan.queues.get_mut(queue).filter(|_| declared) else {
            return Ok(Err(BufferError::UnknownChannel(format!(
                "{channel}/{queue}"
            ))));
        };
        if envelope.body.len() as u64 > chan.settings.max_message_size {
            return Ok(Err(BufferError::TooLarge));
        }
        if q.sizes.msgs >= chan.settings.max_queue_size {
            return Ok(Err(BufferError::QueueFull));
        }
        let seq = chan.seq + 1;
        chan.seq = seq;
        q.counters.published += 1;
        envelope.sequence = seq;
        let now = now_ms();
        let rec = MsgRecord {
            message_id: envelope.message_id.as_str().to_owned(),
            delivery_count: 0,
            received_ms: envelope.received_at.unix_millis(),
            expires_ms: envelope.expires_at.map(|e| e.unix_millis()),
            last_error: None,
            state: MsgState::Ready { ready_ms: now },
        };
        let key = index::Queue::new(&channel, queue).key(seq);
        t.body
            .insert(key.as_slice(), encode_stored(envelope).as_slice())?;
        self.place(t, b, &channel, queue, seq, &rec, now)?;
        b.dirty_seqs.insert(channel.clone());
        b.wake.insert(channel);
        Ok(Ok(seq))
    }

    pub(crate) fn lease(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        max: usize,
    ) -> OpResult<LeaseOut> {
        if !self.channels.contains_key(channel) {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        }
        let now = now_ms();
        self.reap(t, b, channel, now)?;
        let mut out = LeaseOut::default();
        let (names, limit, start) = match self.channels.get(channel) {
            Some(chan) => {
                let limit = if chan.settings.ordered {
                    usize::from(chan.in_flight() == 0).min(max)
                } else {
                    max
                };
                let names: Vec<String> = chan.queues.keys().cloned().collect();
                (names, limit, chan.rr)
            }
            None => return Ok(Ok(out)),
        };
        let n = names.len();
        let mut i = 0usize;
        let mut misses = 0usize;
        while out.leases.len() < limit && misses < n {
            let qi = (start + i) % n;
            i += 1;
            match self.take_one(t, b, channel, &names[qi], now)? {
                Some(lease) => {
                    out.leases.push(lease);
                    misses = 0;
                    if let Some(chan) = self.channels.get_mut(channel) {
                        chan.rr = (qi + 1) % n;
                    }
                }
                None => misses += 1,
            }
        }
        let mut next = None::<i64>;
        for name in &names {
            let iq = index::Queue::new(channel, name);
            for first in [
                index::first_timed(&t.delayed, &iq)?,
                index::first_timed(&t.leased, &iq)?,
            ]
            .into_iter()
            .flatten()
            {
                next = Some(next.map_or(first.0, |n| n.min(first.0)));
            }
        }
        out.next_wake_ms = next;
        Ok(Ok(out))
    }

    /// Leases the next deliverable message of one queue, dead-lettering expired and unreadable
    /// ones on the way.
    fn take_one(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        now: i64,
    ) -> SResult<Option<Lease>> {
        let iq = index::Queue::new(channel, queue);
        loop {
            let Some(chan) = self.channels.get(channel) else {
                return Ok(None);
            };
            let ordered = chan.settings.ordered;
            let ack_timeout = signed_ms(chan.settings.ack_timeout);
            if !chan.queues.contains_key(queue) {
                return Ok(None);
            }
            let seq = if ordered {
                match index::head(t, &iq)? {
                    Some(head) if index::is_ready(t, &iq, head)? => head,
                    _ => return Ok(None),
                }
            } else {
                match index::first_ready(t, &iq)? {
                    Some(s) => s,
                    None => return Ok(None),
                }
            };
            let key = iq.key(seq);
            let mut rec = match read_rec(t, &key)? {
                Rec::Found(rec) if matches!(rec.state, MsgState::Ready { .. }) => rec,
                Rec::Unreadable => {
                    index::drop_row(t, &iq, Row::Ready, 0, seq)?;
                    self.bury_unreadable(t, b, channel, queue, seq, false, now)?;
                    continue;
                }
                Rec::Found(_) | Rec::Missing => {
                    index::drop_row(t, &iq, Row::Ready, 0, seq)?;
                    b.wrote = true;
                    continue;
                }
            };
            if rec.expires_ms.is_some_and(|e| e <= now) {
                self.unplace(t, b, channel, queue, seq, &rec)?;
                self.bury(
                    t,
                    b,
                    Bury {
                        channel,
                        queue,
                        seq,
                        rec,
                        reason: DeadLetterReason::Expired,
                        now,
                    },
                )?;
                continue;
            }
            let envelope = t
                .body
                .get(key.as_slice())?
                .and_then(|g| decode_stored(g.value(), seq, rec.expires_ms));
            self.unplace(t, b, channel, queue, seq, &rec)?;
            let Some(envelope) = envelope else {
                rec.last_error = Some(UNREADABLE.to_owned());
                tracing::warn!(
                    channel,
                    webhook_id = queue,
                    sequence = seq,
                    "Unreadable stored message dead-lettered"
                );
                self.bury(
                    t,
                    b,
                    Bury {
                        channel,
                        queue,
                        seq,
                        rec,
                        reason: DeadLetterReason::Rejected,
                        now,
                    },
                )?;
                continue;
            };
            self.lease_gen += 1;
            b.dirty_misc = true;
            let lease = self.lease_gen;
            let expires_ms = now.saturating_add(ack_timeout);
            rec.delivery_count = rec.delivery_count.saturating_add(1);
            rec.state = MsgState::Leased {
                lease,
                expires_ms,
                delivered_ms: now,
            };
            self.place(t, b, channel, queue, seq, &rec, now)?;
            return Ok(Some(Lease {
                token: LeaseToken {
                    channel: channel.to_owned(),
                    queue: queue.to_owned(),
                    message_id: envelope.message_id.clone(),
                    handle: format!("{seq}.{lease}"),
                },
                envelope,
                delivery_count: rec.delivery_count,
                lease_expires_at: ts(expires_ms),
            }));
        }
    }

    /// The current lease of a token: its record, while leased under this token's generation.
    fn held(&self, t: &Tables<'_>, token: &LeaseToken) -> SResult<Option<(u64, MsgRecord)>> {
        let Some((seq, lease)) = token
            .handle
            .split_once('.')
            .and_then(|(s, l)| Some((s.parse::<u64>().ok()?, l.parse::<u64>().ok()?)))
        else {
            return Ok(None);
        };
        let known = self
            .channels
            .get(token.channel.as_str())
            .is_some_and(|c| c.queues.contains_key(token.queue.as_str()));
        if !known {
            return Ok(None);
        }
        let key = index::Queue::new(&token.channel, &token.queue).key(seq);
        Ok(match read_rec(t, &key)? {
            Rec::Found(rec) if matches!(rec.state, MsgState::Leased { lease: held, .. } if held == lease) => {
                Some((seq, rec))
            }
            _ => None,
        })
    }

    pub(crate) fn settle(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        token: &LeaseToken,
        action: Settle,
    ) -> OpResult<Settled> {
        let now = now_ms();
        let Some((seq, rec)) = self.held(t, token)? else {
            return Ok(Ok(Settled::NotInFlight));
        };
        let channel = token.channel.as_str();
        let queue = token.queue.as_str();
        let Some(settings) = self.channels.get(channel).map(|c| c.settings.clone()) else {
            return Ok(Ok(Settled::NotInFlight));
        };
        let (lease, expires_ms, delivered_ms) = match rec.state {
            MsgState::Leased {
                lease,
                expires_ms,
                delivered_ms,
            } if expires_ms > now && rec.message_id == token.message_id.as_str() => {
                (lease, expires_ms, delivered_ms)
            }
            _ => return Ok(Ok(Settled::NotInFlight)),
        };
        match action {
            Settle::Ack => {
                self.unplace(t, b, channel, queue, seq, &rec)?;
                let key = index::Queue::new(channel, queue).key(seq);
                t.meta.remove(key.as_slice())?;
                t.body.remove(key.as_slice())?;
                if let Some(q) = self.queue_mut(b, channel, queue) {
                    q.counters.delivered += 1;
                }
                if settings.ordered {
                    b.wake.insert(channel.to_owned());
                }
                Ok(Ok(Settled::Acked))
            }
            Settle::Nack {
                retry: false,
                reason,
                ..
            } => {
                if self.take_failed(t, b, channel, queue, seq, &rec)?.is_none() {
                    return Ok(Ok(Settled::NotInFlight));
                }
                let mut rec = rec;
                rec.last_error = reason;
                self.bury(
                    t,
                    b,
                    Bury {
                        channel,
                        queue,
                        seq,
                        rec,
                        reason: DeadLetterReason::Rejected,
                        now,
                    },
                )?;
                Ok(Ok(Settled::DeadLettered(DeadLetterReason::Rejected)))
            }
            Settle::Nack {
                retry: true,
                delay,
                reason,
            } => Ok(Ok(self.fail_attempt(
                t, b, channel, queue, seq, rec, delay, reason, now,
            )?)),
            Settle::Release => Ok(Ok(
                self.fail_attempt(t, b, channel, queue, seq, rec, None, None, now)?
            )),
            Settle::Return => {
                self.return_lease(t, b, channel, queue, seq, rec, now)?;
                Ok(Ok(Settled::Requeued { ready_at: ts(now) }))
            }
            Settle::Touch => {
                let cap = delivered_ms.saturating_add(signed_ms(settings.max_lease));
                let new_expiry = now
                    .saturating_add(signed_ms(settings.ack_timeout))
                    .min(cap)
                    .max(expires_ms);
                self.unplace(t, b, channel, queue, seq, &rec)?;
                let mut rec = rec;
                rec.state = MsgState::Leased {
                    lease,
                    expires_ms: new_expiry,
                    delivered_ms,
                };
                self.place(t, b, channel, queue, seq, &rec, now)?;
                Ok(Ok(Settled::Extended(ts(new_expiry))))
            }
        }
    }

    /// Makes a leased message ready again at once without counting the delivery.
    #[allow(clippy::too_many_arguments)]
    fn return_lease(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        mut rec: MsgRecord,
        now: i64,
    ) -> SResult<()> {
        self.unplace(t, b, channel, queue, seq, &rec)?;
        rec.delivery_count = rec.delivery_count.saturating_sub(1);
        rec.state = MsgState::Ready { ready_ms: now };
        self.place(t, b, channel, queue, seq, &rec, now)?;
        b.wake.insert(channel.to_owned());
        Ok(())
    }

    /// Undoes a lease whose caller never received it: ready again at once, and the delivery
    /// does not count. Does nothing when the lease is no longer current.
    pub(crate) fn unlease(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        token: &LeaseToken,
    ) -> SResult<()> {
        let Some((seq, rec)) = self.held(t, token)? else {
            return Ok(());
        };
        self.return_lease(t, b, &token.channel, &token.queue, seq, rec, now_ms())
    }

    pub(crate) fn dead_letters(
        &mut self,
        t: &mut Tables<'_>,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> OpResult<DeadLetterPage> {
        if !self.channels.contains_key(channel) {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        }
        if let Err(e) = query.check_limit() {
            return Ok(Err(e));
        }
        let end = match &query.cursor {
            None => dead_key(channel, u64::MAX),
            Some(c) => match c.parse::<u64>() {
                Ok(id) if id > 0 => dead_key(channel, id - 1),
                _ => return Ok(Err(BufferError::Invalid("bad cursor".into()))),
            },
        };
        let start = dead_key(channel, 0);
        let mut items = Vec::new();
        let mut last_id = None;
        let mut more = false;
        for row in t.dead.range(start.as_slice()..=end.as_slice())?.rev() {
            let (k, v) = row?;
            let Some((queue, _)) = DeadRecord::decode_head(v.value()) else {
                continue;
            };
            if query.webhook_id.as_ref().is_some_and(|w| *w != queue) {
                continue;
            }
            if items.len() == query.limit {
                more = true;
                break;
            }
            let Some(rec) = DeadRecord::decode(v.value()) else {
                continue;
            };
            last_id = dead_key_id(k.value());
            items.push(to_dead_letter(channel, rec));
        }
        Ok(Ok(DeadLetterPage {
            items,
            next_cursor: if more {
                last_id.map(|id| id.to_string())
            } else {
                None
            },
        }))
    }

    /// Dead-letter keys of a channel matching the filters, oldest first.
    fn matching_dead(
        t: &Tables<'_>,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> SResult<Vec<(Vec<u8>, String)>> {
        let start = dead_key(channel, 0);
        let end = dead_key(channel, u64::MAX);
        let mut found = Vec::new();
        for row in t.dead.range(start.as_slice()..=end.as_slice())? {
            let (k, v) = row?;
            let Some((queue, id)) = DeadRecord::decode_head(v.value()) else {
                continue;
            };
            if webhook_id.is_some_and(|w| w != queue) || message_id.is_some_and(|m| m != id) {
                continue;
            }
            found.push((k.value().to_vec(), queue));
            if message_id.is_some() {
                break;
            }
        }
        Ok(found)
    }

    pub(crate) fn replay(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> OpResult<u64> {
        let Some(chan) = self.channels.get_mut(channel) else {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        };
        let ttl = signed_ms(chan.settings.ttl);
        let max_queue_size = chan.settings.max_queue_size;
        let found = Self::matching_dead(t, channel, webhook_id, message_id)?;
        let now = now_ms();
        let mut replayed = 0u64;
        let mut blocked = 0u64;
        for (key, _) in found {
            // One record in memory at a time.
            let Some(rec) = t
                .dead
                .get(key.as_slice())?
                .and_then(|g| DeadRecord::decode(g.value()))
            else {
                continue;
            };
            let iq = index::Queue::new(channel, &rec.queue);
            let mkey = iq.key(rec.seq);
            let full = self
                .channels
                .get_mut(channel)
                .map(|c| c.queues.entry(rec.queue.clone()).or_default())
                .is_none_or(|q| q.sizes.msgs >= max_queue_size);
            if full || t.meta.get(mkey.as_slice())?.is_some() {
                blocked += 1;
                continue;
            }
            // `docs/reference/http-api.md`: a replayed message lives `ttl_seconds` from now.
            let live = MsgRecord {
                message_id: rec.message_id.clone(),
                delivery_count: 0,
                received_ms: rec.received_ms,
                expires_ms: Some(now.saturating_add(ttl)),
                last_error: None,
                state: MsgState::Ready { ready_ms: now },
            };
            t.body.insert(mkey.as_slice(), rec.body.as_slice())?;
            t.dead.remove(key.as_slice())?;
            self.place(t, b, channel, &rec.queue, rec.seq, &live, now)?;
            if let Some(q) = self.queue_mut(b, channel, &rec.queue) {
                q.sizes.dead = q.sizes.dead.saturating_sub(1);
            }
            replayed += 1;
        }
        if replayed > 0 {
            b.wake.insert(channel.to_owned());
        }
        Ok(replay_result(replayed, blocked))
    }

    pub(crate) fn purge(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> OpResult<u64> {
        if !self.channels.contains_key(channel) {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        }
        let found = Self::matching_dead(t, channel, webhook_id, message_id)?;
        let mut purged = 0u64;
        for (key, queue) in found {
            t.dead.remove(key.as_slice())?;
            b.wrote = true;
            purged += 1;
            if let Some(q) = self.queue_mut(b, channel, &queue) {
                q.sizes.dead = q.sizes.dead.saturating_sub(1);
            }
        }
        Ok(Ok(purged))
    }

    /// The oldest waiting message's arrival time, dropping index rows left by a dead-lettered
    /// unreadable record on the way.
    fn oldest_waiting(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        iq: &index::Queue,
    ) -> SResult<Option<i64>> {
        while let Some((received_ms, seq)) = index::first_timed(&t.waiting, iq)? {
            if t.meta.get(iq.key(seq).as_slice())?.is_some() {
                return Ok(Some(received_ms));
            }
            index::drop_row(t, iq, Row::Waiting, received_ms, seq)?;
            b.wrote = true;
        }
        Ok(None)
    }

    /// The channel's numbers, from the sizes and one index row per queue: no walk over its
    /// messages. Like a lease call it first ends the leases that ran out and dead-letters the
    /// waiting messages that expired (reason `expired`), so `queued` is exact (never an expired
    /// or leased message) and the same answer's `expired` and `dead_letters` already hold what
    /// it no longer counts.
    pub(crate) fn stats(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
    ) -> OpResult<ChannelStats> {
        if !self.channels.contains_key(channel) {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        }
        let now = now_ms();
        self.reap(t, b, channel, now)?;
        self.bury_expired(t, b, channel, now)?;
        let shown: Vec<String> = match self.channels.get(channel) {
            Some(chan) => chan
                .queues
                .iter()
                .filter(|(name, q)| !q.is_idle() || chan.webhook_ids.binary_search(name).is_ok())
                .map(|(name, _)| name.clone())
                .collect(),
            None => return Ok(Err(BufferError::UnknownChannel(channel.to_owned()))),
        };
        let mut queues = Vec::new();
        for name in shown {
            let oldest = self.oldest_waiting(t, b, &index::Queue::new(channel, &name))?;
            let Some(q) = self.channels.get(channel).and_then(|c| c.queues.get(&name)) else {
                continue;
            };
            // Expired ones were buried above: every waiting message counts.
            queues.push(QueueStats {
                webhook_id: name.clone(),
                queued: q.sizes.waiting(),
                in_flight: q.sizes.leased,
                dead_letters: q.sizes.dead,
                oldest_queued_age_seconds: oldest
                    .map(|o| (now.saturating_sub(o)).max(0) as f64 / 1000.0),
                delivered: q.counters.delivered,
                nacked: q.counters.nacked,
                expired: q.counters.expired,
                dead_lettered: q.counters.dead_lettered,
                published: q.counters.published,
            });
        }
        Ok(Ok(ChannelStats::of_queues(channel, queues)))
    }

    /// Dead-letters the waiting messages that expired in every channel (after ending the leases
    /// that ran out), through the expiry index: no walk over messages that are not expired.
    pub(crate) fn sweep(&mut self, t: &mut Tables<'_>, b: &mut Batch) -> SResult<u64> {
        let now = now_ms();
        let names: Vec<String> = self.channels.keys().cloned().collect();
        let mut moved = 0u64;
        for channel in names {
            self.reap(t, b, &channel, now)?;
            moved += self.bury_expired(t, b, &channel, now)?;
        }
        Ok(moved)
    }

    /// Moves the waiting (ready or delayed) messages of one channel whose expiry is at or before
    /// `now` to the dead letters with reason `expired`; returns how many. Leased messages are
    /// left to their lease.
    fn bury_expired(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        now: i64,
    ) -> SResult<u64> {
        let Some(chan) = self.channels.get(channel) else {
            return Ok(0);
        };
        let names: Vec<String> = chan.queues.keys().cloned().collect();
        let mut moved = 0u64;
        for queue in names {
            let iq = index::Queue::new(channel, &queue);
            loop {
                let expired = index::timed_upto(&t.expiring, &iq, now)?;
                for &(at, seq) in &expired {
                    match read_rec(t, &iq.key(seq))? {
                        Rec::Found(rec)
                            if matches!(rec.state, MsgState::Ready { .. })
                                && rec.expires_ms.is_some_and(|e| e <= now) =>
                        {
                            self.unplace(t, b, channel, &queue, seq, &rec)?;
                            self.bury(
                                t,
                                b,
                                Bury {
                                    channel,
                                    queue: &queue,
                                    seq,
                                    rec,
                                    reason: DeadLetterReason::Expired,
                                    now,
                                },
                            )?;
                            moved += 1;
                        }
                        Rec::Unreadable => {
                            self.bury_unreadable(t, b, channel, &queue, seq, false, now)?
                        }
                        Rec::Found(_) | Rec::Missing => {}
                    }
                    // Gone with its message, or left behind by a record that changed.
                    index::drop_row(t, &iq, Row::Expiring, at, seq)?;
                    b.wrote = true;
                }
                if expired.len() < CHUNK {
                    break;
                }
            }
        }
        if moved > 0 {
            // An ordered channel's head may have gone: the next message can be leased now.
            b.wake.insert(channel.to_owned());
        }
        Ok(moved)
    }

    pub(crate) fn health(&mut self, t: &mut Tables<'_>, b: &mut Batch) -> SResult<()> {
        t.misc
            .insert(MISC_HEALTH, u64::try_from(now_ms()).unwrap_or(0))?;
        b.wrote = true;
        Ok(())
    }
}

fn to_dead_letter(channel: &str, rec: DeadRecord) -> DeadLetter {
    let envelope = dead_letter_envelope(
        Known {
            channel,
            queue: &rec.queue,
            sequence: rec.seq,
            message_id: &rec.message_id,
            received_ms: rec.received_ms,
            expires_ms: rec.expires_ms,
        },
        &rec.body,
    );
    DeadLetter {
        envelope,
        queue: rec.queue,
        reason: rec.reason,
        dead_lettered_at: ts(rec.at_ms),
        delivery_count: rec.delivery_count,
        last_error: rec.last_error,
    }
}
