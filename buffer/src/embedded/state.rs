//! The embedded store's state: an in-memory index of every live message (bounded by the queues'
//! `max_queue_size`), mirrored write by write into redb tables inside the writer's transaction.
//!
//! Only the writer thread touches this. Each operation first checks everything that can refuse
//! it, then writes; a storage error aborts the whole batch ([`Fail`]) and the index is reloaded
//! from the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use webhook_connect_protocol::Envelope;

use super::records::{
    Counters, DeadRecord, MsgRecord, MsgState, dead_key, dead_key_id, decode_channel,
    encode_channel, message_key, split_dead_key, split_message_key, split_queue_key,
};
use crate::lease_policy::{AfterFailure, LeasePolicy};
use crate::millis::{now_ms, signed_ms, ts};
use crate::{
    BufferError, ChannelStats, DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterReason,
    Lease, LeaseToken, QueueSettings, QueueStats, Settle, Settled,
};

const META: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("message_meta");
const BODY: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("message_body");
const DEAD: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("dead_letters");
const COUNTERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("counters");
const CHANNELS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("channels");
const SEQUENCES: TableDefinition<'_, &str, u64> = TableDefinition::new("sequences");
const MISC: TableDefinition<'_, &str, u64> = TableDefinition::new("misc");

const MISC_LEASE_GEN: &str = "lease_generation";
const MISC_NEXT_DEAD: &str = "next_dead_letter_id";
const MISC_HEALTH: &str = "health_check";

use crate::stored::decode_stored;
use crate::types::replay_result;
pub(crate) use crate::unreadable::UNREADABLE;
use crate::unreadable::{Known, dead_letter_envelope};

/// Longest channel or queue name the store accepts (names are validated upstream to far less).
const MAX_NAME_LEN: usize = 255;

/// A storage failure: the batch is aborted and its callers get `Unavailable`.
#[derive(Debug)]
pub(crate) struct Fail(pub String);

macro_rules! fail_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail(e.to_string())
            }
        }
    )*};
}
fail_from!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::Error
);

pub(crate) type SResult<T> = Result<T, Fail>;
/// Outer: storage failure (abort the batch); inner: the operation's own answer.
pub(crate) type OpResult<T> = SResult<Result<T, BufferError>>;

/// The tables of one write transaction.
pub(crate) struct Tables<'txn> {
    meta: Table<'txn, &'static [u8], &'static [u8]>,
    body: Table<'txn, &'static [u8], &'static [u8]>,
    dead: Table<'txn, &'static [u8], &'static [u8]>,
    counters: Table<'txn, &'static [u8], &'static [u8]>,
    channels: Table<'txn, &'static str, &'static [u8]>,
    seqs: Table<'txn, &'static str, u64>,
    misc: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> SResult<Self> {
        Ok(Tables {
            meta: txn.open_table(META)?,
            body: txn.open_table(BODY)?,
            dead: txn.open_table(DEAD)?,
            counters: txn.open_table(COUNTERS)?,
            channels: txn.open_table(CHANNELS)?,
            seqs: txn.open_table(SEQUENCES)?,
            misc: txn.open_table(MISC)?,
        })
    }
}

/// What one batch changed beyond the rows it wrote directly.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    dirty_counters: BTreeSet<(String, String)>,
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

/// One webhook queue: its live messages and the indexes over them.
///
/// Every message is in exactly one of `ready`, `delayed` and `leased`. A message that is not
/// leased (ready or delayed) is also in `waiting`, and in `expiring` when it has an expiry, so
/// `stats` and `sweep` read sizes and first entries instead of walking `msgs`. All five are kept
/// by [`Queue::index`] and [`Queue::unindex`] (`promote` only moves from `delayed` to `ready`),
/// and `load` rebuilds them through the same [`Queue::insert`].
#[derive(Debug, Default)]
struct Queue {
    msgs: BTreeMap<u64, MsgRecord>,
    /// Ready now (promoted from `delayed`).
    ready: BTreeSet<u64>,
    /// Ready at a time: (ready_ms, seq).
    delayed: BTreeSet<(i64, u64)>,
    /// Leased until: (expires_ms, seq).
    leased: BTreeSet<(i64, u64)>,
    /// Not leased (ready or delayed), by arrival: (received_ms, seq). Its size is the queue
    /// depth once expired messages are buried; its first entry is the oldest waiting message,
    /// also for a replayed dead letter that kept its old received time.
    waiting: BTreeSet<(i64, u64)>,
    /// Not leased and with an expiry: (expires_ms, seq). A leased message is not here: its
    /// lease runs on past the TTL (its ack is accepted), and it enters again if it comes back.
    expiring: BTreeSet<(i64, u64)>,
    counters: Counters,
    dead: u64,
}

impl Queue {
    fn index(&mut self, seq: u64, rec: &MsgRecord) {
        match rec.state {
            MsgState::Ready { ready_ms } => {
                self.delayed.insert((ready_ms, seq));
                self.waiting.insert((rec.received_ms, seq));
                if let Some(expires_ms) = rec.expires_ms {
                    self.expiring.insert((expires_ms, seq));
                }
            }
            MsgState::Leased { expires_ms, .. } => {
                self.leased.insert((expires_ms, seq));
            }
        }
    }

    fn unindex(&mut self, seq: u64, rec: &MsgRecord) {
        self.ready.remove(&seq);
        match rec.state {
            MsgState::Ready { ready_ms } => {
                self.delayed.remove(&(ready_ms, seq));
                self.waiting.remove(&(rec.received_ms, seq));
                if let Some(expires_ms) = rec.expires_ms {
                    self.expiring.remove(&(expires_ms, seq));
                }
            }
            MsgState::Leased { expires_ms, .. } => {
                self.leased.remove(&(expires_ms, seq));
            }
        }
    }

    fn insert(&mut self, seq: u64, rec: MsgRecord) {
        self.index(seq, &rec);
        self.msgs.insert(seq, rec);
    }

    fn remove(&mut self, seq: u64) -> Option<MsgRecord> {
        let rec = self.msgs.remove(&seq)?;
        self.unindex(seq, &rec);
        Some(rec)
    }

    fn promote(&mut self, now: i64) {
        while let Some(&(ready_ms, seq)) = self.delayed.first() {
            if ready_ms > now {
                break;
            }
            self.delayed.pop_first();
            self.ready.insert(seq);
        }
    }

    /// Sequence numbers of the waiting messages whose expiry is at or before `now`, soonest
    /// first: O(k log n) for k of them.
    fn expired(&self, now: i64) -> Vec<u64> {
        self.expiring
            .range(..=(now, u64::MAX))
            .map(|&(_, seq)| seq)
            .collect()
    }

    fn is_idle(&self) -> bool {
        self.msgs.is_empty() && self.dead == 0
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
    fn in_flight(&self) -> usize {
        self.queues.values().map(|q| q.leased.len()).sum()
    }
}

/// The whole index.
#[derive(Debug, Default)]
pub(crate) struct Mem {
    channels: HashMap<String, Chan>,
    lease_gen: u64,
    next_dead_id: u64,
}

fn check_name(kind: &str, name: &str) -> Result<(), BufferError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(BufferError::Invalid(format!(
            "{kind} name must be 1-{MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

/// Everything needed to move one message, already removed from its queue index, to the dead
/// letters.
struct Bury<'a> {
    channel: &'a str,
    queue: &'a str,
    seq: u64,
    rec: MsgRecord,
    reason: DeadLetterReason,
    now: i64,
}

impl Mem {
    /// Loads the index from the tables. With `restore`, leases left by a previous process are
    /// ended at once as failed attempts, and unreadable entries are dead-lettered.
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
        let mut unreadable = Vec::new();
        for row in t.meta.iter()? {
            let (k, v) = row?;
            let Some((channel, queue, seq)) = split_message_key(k.value()) else {
                continue;
            };
            let Some(chan) = mem.channels.get_mut(&channel) else {
                continue;
            };
            let q = chan.queues.entry(queue.clone()).or_default();
            match MsgRecord::decode(v.value()) {
                Some(rec) => q.insert(seq, rec),
                None => unreadable.push((channel, queue, seq)),
            }
        }
        for row in t.dead.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let Some(id) = dead_key_id(key) else { continue };
            mem.next_dead_id = mem.next_dead_id.max(id + 1);
            let Some((queue, _)) = DeadRecord::decode_head(v.value()) else {
                continue;
            };
            let Some((channel, _)) = split_dead_key(key) else {
                continue;
            };
            if let Some(chan) = mem.channels.get_mut(&channel) {
                chan.queues.entry(queue).or_default().dead += 1;
            }
        }
        if restore {
            let now = now_ms();
            for (channel, queue, seq) in unreadable {
                let rec = MsgRecord {
                    message_id: String::new(),
                    delivery_count: 0,
                    received_ms: now,
                    expires_ms: None,
                    last_error: Some(UNREADABLE.to_owned()),
                    state: MsgState::Ready { ready_ms: now },
                };
                mem.bury(
                    t,
                    b,
                    Bury {
                        channel: &channel,
                        queue: &queue,
                        seq,
                        rec,
                        reason: DeadLetterReason::Rejected,
                        now,
                    },
                )?;
            }
            let mut held = Vec::new();
            for (name, chan) in &mem.channels {
                for (qname, q) in &chan.queues {
                    for &(_, seq) in &q.leased {
                        held.push((name.clone(), qname.clone(), seq));
                    }
                }
            }
            if !held.is_empty() {
                tracing::info!(
                    count = held.len(),
                    "Restoring messages leased by a previous process"
                );
            }
            for (channel, queue, seq) in held {
                mem.fail_attempt(t, b, &channel, &queue, seq, None, None, now)?;
            }
        }
        Ok(mem)
    }

    /// Writes the counters, sequences and generations changed in this batch.
    pub(crate) fn flush(&self, t: &mut Tables<'_>, b: &mut Batch) -> SResult<()> {
        for (channel, queue) in std::mem::take(&mut b.dirty_counters) {
            let key = super::records::queue_prefix(&channel, &queue);
            match self
                .channels
                .get(&channel)
                .and_then(|c| c.queues.get(&queue))
            {
                Some(q) => {
                    t.counters
                        .insert(key.as_slice(), q.counters.encode().as_slice())?;
                }
                None => {
                    t.counters.remove(key.as_slice())?;
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

    fn put_meta(
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        rec: &MsgRecord,
    ) -> SResult<()> {
        let key = message_key(channel, queue, seq);
        t.meta.insert(key.as_slice(), rec.encode().as_slice())?;
        b.wrote = true;
        Ok(())
    }

    /// Moves a message (already out of the index) to the dead letters.
    fn bury(&mut self, t: &mut Tables<'_>, b: &mut Batch, m: Bury<'_>) -> SResult<()> {
        let key = message_key(m.channel, m.queue, m.seq);
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
        if let Some(q) = self
            .channels
            .get_mut(m.channel)
            .and_then(|c| c.queues.get_mut(m.queue))
        {
            q.dead += 1;
            q.counters.dead_lettered += 1;
            if m.reason == DeadLetterReason::Expired {
                q.counters.expired += 1;
            }
            b.dirty_counters
                .insert((m.channel.to_owned(), m.queue.to_owned()));
        }
        Ok(())
    }

    /// Takes out a message whose lease failed (nack, release, lease expiry, restore), counted as
    /// nacked, with its channel's lease policy. `None` when it is not there.
    fn take_failed(
        &mut self,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
    ) -> Option<(MsgRecord, LeasePolicy)> {
        let chan = self.channels.get_mut(channel)?;
        let (ordered, policy) = (chan.settings.ordered, LeasePolicy::of(&chan.settings));
        let q = chan.queues.get_mut(queue)?;
        let rec = q.remove(seq)?;
        q.counters.nacked += 1;
        b.dirty_counters
            .insert((channel.to_owned(), queue.to_owned()));
        if ordered {
            // The channel's one slot is free again.
            b.wake.insert(channel.to_owned());
        }
        Some((rec, policy))
    }

    /// A delivery failed (nack with retry, release, lease expiry, restore): requeue after the
    /// delay, or dead-letter with `max_attempts`.
    #[allow(clippy::too_many_arguments)]
    fn fail_attempt(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        channel: &str,
        queue: &str,
        seq: u64,
        delay: Option<Duration>,
        last_error: Option<String>,
        now: i64,
    ) -> SResult<Settled> {
        let Some((mut rec, policy)) = self.take_failed(b, channel, queue, seq) else {
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
        Self::put_meta(t, b, channel, queue, seq, &rec)?;
        if let Some(q) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.queues.get_mut(queue))
        {
            q.insert(seq, rec);
        }
        Ok(Settled::Requeued {
            ready_at: ts(ready_ms),
        })
    }

    /// Makes delayed messages ready and ends the leases that ran out, in one channel.
    fn reap(&mut self, t: &mut Tables<'_>, b: &mut Batch, channel: &str, now: i64) -> SResult<()> {
        let mut ended = Vec::new();
        if let Some(chan) = self.channels.get_mut(channel) {
            for (qname, q) in &mut chan.queues {
                q.promote(now);
                for &(expires_ms, seq) in &q.leased {
                    if expires_ms > now {
                        break;
                    }
                    ended.push((qname.clone(), seq));
                }
            }
        }
        for (queue, seq) in ended {
            self.fail_attempt(t, b, channel, &queue, seq, None, None, now)?;
        }
        if let Some(chan) = self.channels.get_mut(channel) {
            for q in chan.queues.values_mut() {
                q.promote(now);
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
            b.dirty_counters.insert((channel.to_owned(), name));
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
        let Some(chan) = self.channels.remove(channel) else {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        };
        for (qname, q) in &chan.queues {
            for seq in q.msgs.keys() {
                let key = message_key(channel, qname, *seq);
                t.meta.remove(key.as_slice())?;
                t.body.remove(key.as_slice())?;
            }
            let ckey = super::records::queue_prefix(channel, qname);
            t.counters.remove(ckey.as_slice())?;
        }
        let start = dead_key(channel, 0);
        let end = dead_key(channel, u64::MAX);
        let keys: Vec<Vec<u8>> = t
            .dead
            .range(start.as_slice()..=end.as_slice())?
            .filter_map(|row| row.ok().map(|(k, _)| k.value().to_vec()))
            .collect();
        for key in keys {
            t.dead.remove(key.as_slice())?;
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
        if q.msgs.len() as u64 >= chan.settings.max_queue_size {
            return Ok(Err(BufferError::QueueFull));
        }
        let seq = chan.seq + 1;
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
        let key = message_key(&channel, queue, seq);
        t.body
            .insert(key.as_slice(), envelope.encode().as_slice())?;
        t.meta.insert(key.as_slice(), rec.encode().as_slice())?;
        chan.seq = seq;
        q.insert(seq, rec);
        q.promote(now);
        q.counters.published += 1;
        b.wrote = true;
        b.dirty_seqs.insert(channel.clone());
        b.dirty_counters.insert((channel.clone(), queue.to_owned()));
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
        if let Some(chan) = self.channels.get(channel) {
            out.next_wake_ms = chan
                .queues
                .values()
                .flat_map(|q| {
                    [
                        q.delayed.first().map(|d| d.0),
                        q.leased.first().map(|l| l.0),
                    ]
                })
                .flatten()
                .min();
        }
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
        loop {
            let Some(chan) = self.channels.get_mut(channel) else {
                return Ok(None);
            };
            let ordered = chan.settings.ordered;
            let ack_timeout = signed_ms(chan.settings.ack_timeout);
            let Some(q) = chan.queues.get_mut(queue) else {
                return Ok(None);
            };
            let seq = if ordered {
                match q.msgs.keys().next() {
                    Some(&head) if q.ready.contains(&head) => head,
                    _ => return Ok(None),
                }
            } else {
                match q.ready.first() {
                    Some(&s) => s,
                    None => return Ok(None),
                }
            };
            let Some(mut rec) = q.msgs.get(&seq).cloned() else {
                q.ready.remove(&seq);
                continue;
            };
            if rec.expires_ms.is_some_and(|e| e <= now) {
                q.remove(seq);
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
            let key = message_key(channel, queue, seq);
            let envelope = t
                .body
                .get(key.as_slice())?
                .and_then(|g| decode_stored(g.value(), seq, rec.expires_ms));
            let Some(envelope) = envelope else {
                q.remove(seq);
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
            q.remove(seq);
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
            Self::put_meta(t, b, channel, queue, seq, &rec)?;
            let delivery_count = rec.delivery_count;
            if let Some(q) = self
                .channels
                .get_mut(channel)
                .and_then(|c| c.queues.get_mut(queue))
            {
                q.insert(seq, rec);
            }
            return Ok(Some(Lease {
                token: LeaseToken {
                    channel: channel.to_owned(),
                    queue: queue.to_owned(),
                    message_id: envelope.message_id.clone(),
                    handle: format!("{seq}.{lease}"),
                },
                envelope,
                delivery_count,
                lease_expires_at: ts(expires_ms),
            }));
        }
    }

    pub(crate) fn settle(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        token: &LeaseToken,
        action: Settle,
    ) -> OpResult<Settled> {
        let Some((seq, lease)) = token
            .handle
            .split_once('.')
            .and_then(|(s, l)| Some((s.parse::<u64>().ok()?, l.parse::<u64>().ok()?)))
        else {
            return Ok(Ok(Settled::NotInFlight));
        };
        let now = now_ms();
        let channel = token.channel.as_str();
        let queue = token.queue.as_str();
        let Some(chan) = self.channels.get_mut(channel) else {
            return Ok(Ok(Settled::NotInFlight));
        };
        let settings = chan.settings.clone();
        let Some(q) = chan.queues.get_mut(queue) else {
            return Ok(Ok(Settled::NotInFlight));
        };
        let Some(rec) = q.msgs.get(&seq) else {
            return Ok(Ok(Settled::NotInFlight));
        };
        let (expires_ms, delivered_ms) = match rec.state {
            MsgState::Leased {
                lease: held,
                expires_ms,
                delivered_ms,
            } if held == lease
                && expires_ms > now
                && rec.message_id == token.message_id.as_str() =>
            {
                (expires_ms, delivered_ms)
            }
            _ => return Ok(Ok(Settled::NotInFlight)),
        };
        match action {
            Settle::Ack => {
                q.remove(seq);
                q.counters.delivered += 1;
                let key = message_key(channel, queue, seq);
                t.meta.remove(key.as_slice())?;
                t.body.remove(key.as_slice())?;
                b.wrote = true;
                b.dirty_counters
                    .insert((channel.to_owned(), queue.to_owned()));
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
                let Some((mut rec, _)) = self.take_failed(b, channel, queue, seq) else {
                    return Ok(Ok(Settled::NotInFlight));
                };
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
            } => Ok(Ok(
                self.fail_attempt(t, b, channel, queue, seq, delay, reason, now)?
            )),
            Settle::Release => Ok(Ok(
                self.fail_attempt(t, b, channel, queue, seq, None, None, now)?
            )),
            Settle::Return => {
                let Some(mut rec) = q.remove(seq) else {
                    return Ok(Ok(Settled::NotInFlight));
                };
                rec.delivery_count = rec.delivery_count.saturating_sub(1);
                rec.state = MsgState::Ready { ready_ms: now };
                Self::put_meta(t, b, channel, queue, seq, &rec)?;
                q.insert(seq, rec);
                q.promote(now);
                b.wake.insert(channel.to_owned());
                Ok(Ok(Settled::Requeued { ready_at: ts(now) }))
            }
            Settle::Touch => {
                let cap = delivered_ms.saturating_add(signed_ms(settings.max_lease));
                let new_expiry = now
                    .saturating_add(signed_ms(settings.ack_timeout))
                    .min(cap)
                    .max(expires_ms);
                let Some(mut rec) = q.remove(seq) else {
                    return Ok(Ok(Settled::NotInFlight));
                };
                rec.state = MsgState::Leased {
                    lease,
                    expires_ms: new_expiry,
                    delivered_ms,
                };
                Self::put_meta(t, b, channel, queue, seq, &rec)?;
                q.insert(seq, rec);
                Ok(Ok(Settled::Extended(ts(new_expiry))))
            }
        }
    }

    /// Undoes a lease whose caller never received it: ready again at once, and the delivery
    /// does not count. Does nothing when the lease is no longer current.
    pub(crate) fn unlease(
        &mut self,
        t: &mut Tables<'_>,
        b: &mut Batch,
        token: &LeaseToken,
    ) -> SResult<()> {
        let Some((seq, lease)) = token
            .handle
            .split_once('.')
            .and_then(|(s, l)| Some((s.parse::<u64>().ok()?, l.parse::<u64>().ok()?)))
        else {
            return Ok(());
        };
        let channel = token.channel.as_str();
        let queue = token.queue.as_str();
        let Some(q) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.queues.get_mut(queue))
        else {
            return Ok(());
        };
        if !q.msgs.get(&seq).is_some_and(
            |r| matches!(r.state, MsgState::Leased { lease: held, .. } if held == lease),
        ) {
            return Ok(());
        }
        let Some(mut rec) = q.remove(seq) else {
            return Ok(());
        };
        let now = now_ms();
        rec.delivery_count = rec.delivery_count.saturating_sub(1);
        rec.state = MsgState::Ready { ready_ms: now };
        Self::put_meta(t, b, channel, queue, seq, &rec)?;
        q.insert(seq, rec);
        q.promote(now);
        b.wake.insert(channel.to_owned());
        Ok(())
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
        let found = Self::matching_dead(t, channel, webhook_id, message_id)?;
        let now = now_ms();
        let ttl = signed_ms(chan.settings.ttl);
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
            let q = chan.queues.entry(rec.queue.clone()).or_default();
            if q.msgs.len() as u64 >= chan.settings.max_queue_size || q.msgs.contains_key(&rec.seq)
            {
                blocked += 1;
                continue;
            }
            // `docs/reference/http-api.md`: a replayed message lives `ttl_seconds` from now.
            let expires_ms = Some(now.saturating_add(ttl));
            let live = MsgRecord {
                message_id: rec.message_id.clone(),
                delivery_count: 0,
                received_ms: rec.received_ms,
                expires_ms,
                last_error: None,
                state: MsgState::Ready { ready_ms: now },
            };
            let mkey = message_key(channel, &rec.queue, rec.seq);
            t.body.insert(mkey.as_slice(), rec.body.as_slice())?;
            t.meta.insert(mkey.as_slice(), live.encode().as_slice())?;
            t.dead.remove(key.as_slice())?;
            q.insert(rec.seq, live);
            q.promote(now);
            q.dead = q.dead.saturating_sub(1);
            replayed += 1;
            b.wrote = true;
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
            if let Some(q) = self
                .channels
                .get_mut(channel)
                .and_then(|c| c.queues.get_mut(&queue))
            {
                q.dead = q.dead.saturating_sub(1);
            }
        }
        Ok(Ok(purged))
    }

    /// The channel's numbers, from index sizes: no walk over its messages. Like a lease call it
    /// first ends the leases that ran out and dead-letters the waiting messages that expired
    /// (reason `expired`), so `queued` is exact (never an expired or leased message) and the
    /// same answer's `expired` and `dead_letters` already hold what it no longer counts.
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
        let Some(chan) = self.channels.get(channel) else {
            return Ok(Err(BufferError::UnknownChannel(channel.to_owned())));
        };
        let mut queues = Vec::new();
        for (name, q) in &chan.queues {
            if q.is_idle() && chan.webhook_ids.binary_search(name).is_err() {
                continue;
            }
            debug_assert_eq!(q.waiting.len(), q.ready.len() + q.delayed.len());
            debug_assert_eq!(q.msgs.len(), q.waiting.len() + q.leased.len());
            // Expired ones were buried above: every waiting message counts.
            let oldest = q.waiting.first().map(|&(received_ms, _)| received_ms);
            let qs = QueueStats {
                webhook_id: name.clone(),
                queued: q.waiting.len() as u64,
                in_flight: q.leased.len() as u64,
                dead_letters: q.dead,
                oldest_queued_age_seconds: oldest
                    .map(|o| (now.saturating_sub(o)).max(0) as f64 / 1000.0),
                delivered: q.counters.delivered,
                nacked: q.counters.nacked,
                expired: q.counters.expired,
                dead_lettered: q.counters.dead_lettered,
                published: q.counters.published,
            };
            queues.push(qs);
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
        let mut expired = Vec::new();
        if let Some(chan) = self.channels.get(channel) {
            for (qname, q) in &chan.queues {
                let seqs = q.expired(now);
                if !seqs.is_empty() {
                    expired.push((qname.clone(), seqs));
                }
            }
        }
        let mut moved = 0u64;
        for (queue, seqs) in expired {
            for seq in seqs {
                let Some(rec) = self
                    .channels
                    .get_mut(channel)
                    .and_then(|c| c.queues.get_mut(&queue))
                    .and_then(|q| q.remove(seq))
                else {
                    continue;
                };
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
