//! The on-disk indexes over one queue's live messages (tables in [`super::tables`]).
//!
//! Every live message is in exactly one of `ready`, `delayed` and `leased`; a message that is
//! not leased is also in `waiting`, and in `expiring` when it has an expiry. [`add`] and
//! [`remove`] keep all five for one message from its record; [`promote`] moves due rows from
//! `delayed` to `ready`. Readers meet a row without its message only after a corrupt record was
//! dead-lettered; they drop such rows ([`Row`]).

use redb::ReadableTable;

use super::records::{
    MsgRecord, MsgState, key_seq, key_time_seq, prefix_end, seq_key, split_timed_key, timed_key,
};
use super::tables::{IndexTable, SResult, Tables};

/// Rows read per range step, so one pass never holds an unbounded list.
pub(crate) const CHUNK: usize = 1024;

/// The key prefix of one queue (see [`super::records::queue_prefix`]).
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    prefix: Vec<u8>,
    end: Vec<u8>,
}

impl Queue {
    pub(crate) fn new(channel: &str, queue: &str) -> Self {
        let prefix = super::records::queue_prefix(channel, queue);
        // A queue prefix ends with name bytes or a length, never only 0xFF bytes.
        let end = prefix_end(&prefix).unwrap_or_else(|| vec![u8::MAX; prefix.len() + 17]);
        Queue { prefix, end }
    }

    /// Key of one of its messages (meta and body tables).
    pub(crate) fn key(&self, seq: u64) -> Vec<u8> {
        seq_key(&self.prefix, seq)
    }

    fn at(&self, at_ms: i64, seq: u64) -> Vec<u8> {
        timed_key(&self.prefix, at_ms, seq)
    }

    /// Time-ordered rows up to and including `at_ms`.
    fn until(&self, at_ms: i64) -> Vec<u8> {
        self.at(at_ms, u64::MAX)
    }
}

/// Adds the index rows of a message in state `rec` (ready at once when due by `now`).
pub(crate) fn add(
    t: &mut Tables<'_>,
    q: &Queue,
    seq: u64,
    rec: &MsgRecord,
    now: i64,
) -> SResult<()> {
    match rec.state {
        MsgState::Ready { ready_ms } => {
            if ready_ms <= now {
                t.ready.insert(q.key(seq).as_slice(), ())?;
            } else {
                t.delayed.insert(q.at(ready_ms, seq).as_slice(), ())?;
            }
            t.waiting
                .insert(q.at(rec.received_ms, seq).as_slice(), ())?;
            if let Some(expires_ms) = rec.expires_ms {
                t.expiring.insert(q.at(expires_ms, seq).as_slice(), ())?;
            }
        }
        MsgState::Leased { expires_ms, .. } => {
            t.leased.insert(q.at(expires_ms, seq).as_slice(), ())?;
        }
    }
    Ok(())
}

/// Removes the index rows of a message in state `rec`.
pub(crate) fn remove(t: &mut Tables<'_>, q: &Queue, seq: u64, rec: &MsgRecord) -> SResult<()> {
    match rec.state {
        MsgState::Ready { ready_ms } => {
            t.ready.remove(q.key(seq).as_slice())?;
            t.delayed.remove(q.at(ready_ms, seq).as_slice())?;
            t.waiting.remove(q.at(rec.received_ms, seq).as_slice())?;
            if let Some(expires_ms) = rec.expires_ms {
                t.expiring.remove(q.at(expires_ms, seq).as_slice())?;
            }
        }
        MsgState::Leased { expires_ms, .. } => {
            t.leased.remove(q.at(expires_ms, seq).as_slice())?;
        }
    }
    Ok(())
}

/// Moves the delayed rows due by `now` to `ready`.
pub(crate) fn promote(t: &mut Tables<'_>, q: &Queue, now: i64) -> SResult<()> {
    loop {
        let due = timed_upto(&t.delayed, q, now)?;
        for (at, seq) in &due {
            t.delayed.remove(q.at(*at, *seq).as_slice())?;
            t.ready.insert(q.key(*seq).as_slice(), ())?;
        }
        if due.len() < CHUNK {
            return Ok(());
        }
    }
}

/// Up to [`CHUNK`] rows of a time-ordered index with time at or before `now`, soonest first.
pub(crate) fn timed_upto(table: &IndexTable<'_>, q: &Queue, now: i64) -> SResult<Vec<(i64, u64)>> {
    let mut out = Vec::new();
    let end = q.until(now);
    for row in table.range(q.prefix.as_slice()..=end.as_slice())? {
        let (k, _) = row?;
        if let Some(ts) = key_time_seq(k.value()) {
            out.push(ts);
        }
        if out.len() == CHUNK {
            break;
        }
    }
    Ok(out)
}

/// The first row of a time-ordered index: (time, seq).
pub(crate) fn first_timed(table: &IndexTable<'_>, q: &Queue) -> SResult<Option<(i64, u64)>> {
    let first = table
        .range(q.prefix.as_slice()..q.end.as_slice())?
        .next()
        .transpose()?;
    Ok(first.and_then(|(k, _)| key_time_seq(k.value())))
}

/// The lowest sequence that is ready.
pub(crate) fn first_ready(t: &Tables<'_>, q: &Queue) -> SResult<Option<u64>> {
    let first = t
        .ready
        .range(q.prefix.as_slice()..q.end.as_slice())?
        .next()
        .transpose()?;
    Ok(first.and_then(|(k, _)| key_seq(k.value())))
}

/// Whether `seq` is ready.
pub(crate) fn is_ready(t: &Tables<'_>, q: &Queue, seq: u64) -> SResult<bool> {
    Ok(t.ready.get(q.key(seq).as_slice())?.is_some())
}

/// The lowest sequence stored (the head of an ordered queue).
pub(crate) fn head(t: &Tables<'_>, q: &Queue) -> SResult<Option<u64>> {
    let first = t
        .meta
        .range(q.prefix.as_slice()..q.end.as_slice())?
        .next()
        .transpose()?;
    Ok(first.and_then(|(k, _)| key_seq(k.value())))
}

/// Rows whose message is gone are dropped by their readers.
pub(crate) enum Row {
    Ready,
    Leased,
    Waiting,
    Expiring,
}

/// Drops one index row found without its message.
pub(crate) fn drop_row(
    t: &mut Tables<'_>,
    q: &Queue,
    row: Row,
    at_ms: i64,
    seq: u64,
) -> SResult<()> {
    let key = match row {
        Row::Ready => q.key(seq),
        _ => q.at(at_ms, seq),
    };
    let table = match row {
        Row::Ready => &mut t.ready,
        Row::Leased => &mut t.leased,
        Row::Waiting => &mut t.waiting,
        Row::Expiring => &mut t.expiring,
    };
    table.remove(key.as_slice())?;
    Ok(())
}

/// Every lease in the store, of every queue: (channel, queue, lease end, seq). Used at start-up only, to
/// end the leases of a previous process; as long as the in-flight set, not the backlog.
pub(crate) fn all_leases(t: &Tables<'_>) -> SResult<Vec<(String, String, i64, u64)>> {
    let mut out = Vec::new();
    for row in t.leased.iter()? {
        let (k, _) = row?;
        if let Some(lease) = split_timed_key(k.value()) {
            out.push(lease);
        }
    }
    Ok(out)
}

/// Removes every row of `table` whose key starts with `prefix`.
pub(crate) fn clear_prefix<V: redb::Value + 'static>(
    table: &mut redb::Table<'_, &'static [u8], V>,
    prefix: &[u8],
) -> SResult<()> {
    match prefix_end(prefix) {
        Some(end) => table.retain_in(prefix..end.as_slice(), |_, _| false)?,
        None => table.retain_in(prefix.., |_, _| false)?,
    }
    Ok(())
}

/// Removes every index row (before indexing a file again).
pub(crate) fn clear_all(t: &mut Tables<'_>) -> SResult<()> {
    for table in [
        &mut t.ready,
        &mut t.delayed,
        &mut t.leased,
        &mut t.waiting,
        &mut t.expiring,
    ] {
        table.retain(|_, _| false)?;
    }
    Ok(())
}
