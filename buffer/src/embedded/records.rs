//! Stored forms of the embedded backend: table keys and the small binary records beside the
//! envelope bytes. Every record starts with a version byte; decoders return `None` on anything
//! unexpected and never panic.

use std::time::Duration;

use crate::millis::ms;
use crate::{DeadLetterReason, QueueSettings};

const VERSION: u8 = 1;

/// Key of a message (meta and body tables): `len(channel) channel len(queue) queue seq_be`.
pub(crate) fn message_key(channel: &str, queue: &str, seq: u64) -> Vec<u8> {
    let mut key = queue_prefix(channel, queue);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Prefix shared by every message key of one queue. Lengths are written before the names, so
/// `a` + `b.c` can never collide with `a.b` + `c` (R-64).
pub(crate) fn queue_prefix(channel: &str, queue: &str) -> Vec<u8> {
    let mut key = channel_prefix(channel);
    put_str(&mut key, queue);
    key
}

/// Prefix of every key of one channel (dead letters, counters).
pub(crate) fn channel_prefix(channel: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel.len() + 80);
    put_str(&mut key, channel);
    key
}

/// Key of a dead letter: channel prefix + its id (global, increasing).
pub(crate) fn dead_key(channel: &str, id: u64) -> Vec<u8> {
    let mut key = channel_prefix(channel);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The id at the end of a dead-letter key.
pub(crate) fn dead_key_id(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// The channel and id of a dead-letter key.
pub(crate) fn split_dead_key(key: &[u8]) -> Option<(String, u64)> {
    let mut r = Reader::new(key);
    let channel = r.str()?;
    let id = r.u64()?;
    r.finish()?;
    Some((channel, id))
}

/// The channel, queue name and sequence of a message key.
pub(crate) fn split_message_key(key: &[u8]) -> Option<(String, String, u64)> {
    let mut r = Reader::new(key);
    let channel = r.str()?;
    let queue = r.str()?;
    let seq = r.u64()?;
    r.finish()?;
    Some((channel, queue, seq))
}

/// The channel and queue of a counters key.
pub(crate) fn split_queue_key(key: &[u8]) -> Option<(String, String)> {
    let mut r = Reader::new(key);
    let channel = r.str()?;
    let queue = r.str()?;
    r.finish()?;
    Some((channel, queue))
}

/// Where a live message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsgState {
    /// Deliverable from `ready_ms` on.
    Ready { ready_ms: i64 },
    /// Leased under lease generation `lease`, until `expires_ms`.
    Leased {
        lease: u64,
        expires_ms: i64,
        delivered_ms: i64,
    },
}

/// The mutable facts of a live message; the envelope bytes live in the body table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MsgRecord {
    pub message_id: String,
    pub delivery_count: u32,
    pub received_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_error: Option<String>,
    pub state: MsgState,
}

impl MsgRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.push(VERSION);
        put_str(&mut out, &self.message_id);
        out.extend_from_slice(&self.delivery_count.to_be_bytes());
        out.extend_from_slice(&self.received_ms.to_be_bytes());
        put_opt_i64(&mut out, self.expires_ms);
        put_opt_str(&mut out, self.last_error.as_deref());
        match self.state {
            MsgState::Ready { ready_ms } => {
                out.push(0);
                out.extend_from_slice(&ready_ms.to_be_bytes());
            }
            MsgState::Leased {
                lease,
                expires_ms,
                delivered_ms,
            } => {
                out.push(1);
                out.extend_from_slice(&lease.to_be_bytes());
                out.extend_from_slice(&expires_ms.to_be_bytes());
                out.extend_from_slice(&delivered_ms.to_be_bytes());
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<MsgRecord> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let message_id = r.str()?;
        let delivery_count = r.u32()?;
        let received_ms = r.i64()?;
        let expires_ms = r.opt_i64()?;
        let last_error = r.opt_str()?;
        let state = match r.u8()? {
            0 => MsgState::Ready { ready_ms: r.i64()? },
            1 => MsgState::Leased {
                lease: r.u64()?,
                expires_ms: r.i64()?,
                delivered_ms: r.i64()?,
            },
            _ => return None,
        };
        r.finish()?;
        Some(MsgRecord {
            message_id,
            delivery_count,
            received_ms,
            expires_ms,
            last_error,
            state,
        })
    }
}

/// A dead letter: its facts and the stored envelope bytes (kept as they were, even unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadRecord {
    pub queue: String,
    pub seq: u64,
    pub message_id: String,
    pub reason: DeadLetterReason,
    pub at_ms: i64,
    pub delivery_count: u32,
    pub received_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_error: Option<String>,
    pub body: Vec<u8>,
}

impl DeadRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.push(VERSION);
        put_str(&mut out, &self.queue);
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_str(&mut out, &self.message_id);
        out.push(reason_code(self.reason));
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        out.extend_from_slice(&self.delivery_count.to_be_bytes());
        out.extend_from_slice(&self.received_ms.to_be_bytes());
        put_opt_i64(&mut out, self.expires_ms);
        put_opt_str(&mut out, self.last_error.as_deref());
        out.extend_from_slice(&self.body);
        out
    }

    /// Queue and message id only, without copying the body.
    pub(crate) fn decode_head(bytes: &[u8]) -> Option<(String, String)> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let queue = r.str()?;
        let _seq = r.u64()?;
        let message_id = r.str()?;
        Some((queue, message_id))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<DeadRecord> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let queue = r.str()?;
        let seq = r.u64()?;
        let message_id = r.str()?;
        let reason = reason_from_code(r.u8()?)?;
        let at_ms = r.i64()?;
        let delivery_count = r.u32()?;
        let received_ms = r.i64()?;
        let expires_ms = r.opt_i64()?;
        let last_error = r.opt_str()?;
        let body = r.rest().to_vec();
        Some(DeadRecord {
            queue,
            seq,
            message_id,
            reason,
            at_ms,
            delivery_count,
            received_ms,
            expires_ms,
            last_error,
            body,
        })
    }
}

fn reason_code(reason: DeadLetterReason) -> u8 {
    match reason {
        DeadLetterReason::Rejected => 0,
        DeadLetterReason::MaxAttempts => 1,
        DeadLetterReason::Expired => 2,
    }
}

fn reason_from_code(code: u8) -> Option<DeadLetterReason> {
    match code {
        0 => Some(DeadLetterReason::Rejected),
        1 => Some(DeadLetterReason::MaxAttempts),
        2 => Some(DeadLetterReason::Expired),
        _ => None,
    }
}

/// Cumulative counters of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub published: u64,
    pub delivered: u64,
    pub nacked: u64,
    pub expired: u64,
    pub dead_lettered: u64,
}

impl Counters {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41);
        out.push(VERSION);
        for v in [
            self.published,
            self.delivered,
            self.nacked,
            self.expired,
            self.dead_lettered,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Counters> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let c = Counters {
            published: r.u64()?,
            delivered: r.u64()?,
            nacked: r.u64()?,
            expired: r.u64()?,
            dead_lettered: r.u64()?,
        };
        r.finish()?;
        Some(c)
    }
}

/// Live size of one queue: messages stored, of them leased, and dead letters. Kept in its own
/// row so start-up reads one row per queue instead of counting messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sizes {
    pub msgs: u64,
    pub leased: u64,
    pub dead: u64,
}

impl Sizes {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        out.push(VERSION);
        for v in [self.msgs, self.leased, self.dead] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Sizes> {
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let s = Sizes {
            msgs: r.u64()?,
            leased: r.u64()?,
            dead: r.u64()?,
        };
        r.finish()?;
        Some(s)
    }

    /// Messages not leased (ready or delayed).
    pub(crate) fn waiting(&self) -> u64 {
        self.msgs.saturating_sub(self.leased)
    }
}

/// Key of a time-ordered index row: queue prefix + time + seq. Times are stored with the sign
/// bit flipped, so byte order is numeric order also for times before 1970.
pub(crate) fn timed_key(prefix: &[u8], at_ms: i64, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 16);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&((at_ms as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Key of a sequence-ordered row (messages, ready index): queue prefix + seq.
pub(crate) fn seq_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence at the end of a message or index key.
pub(crate) fn key_seq(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// The time and sequence at the end of a time-ordered index key.
pub(crate) fn key_time_seq(key: &[u8]) -> Option<(i64, u64)> {
    let start = key.len().checked_sub(16)?;
    let at = u64::from_be_bytes(key[start..start + 8].try_into().ok()?) ^ (1 << 63);
    Some((at as i64, key_seq(key)?))
}

/// The channel, queue, time and sequence of a time-ordered index key.
pub(crate) fn split_timed_key(key: &[u8]) -> Option<(String, String, i64, u64)> {
    let mut r = Reader::new(key);
    let channel = r.str()?;
    let queue = r.str()?;
    let (at, seq) = key_time_seq(r.rest())?;
    Some((channel, queue, at, seq))
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A channel definition: settings and declared webhook queues.
pub(crate) fn encode_channel(settings: &QueueSettings, webhook_ids: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    for d in [
        settings.ttl,
        settings.ack_timeout,
        settings.max_lease,
        settings.requeue_delay_initial,
        settings.requeue_delay_max,
    ] {
        out.extend_from_slice(&ms(d).to_be_bytes());
    }
    out.extend_from_slice(&settings.max_queue_size.to_be_bytes());
    out.extend_from_slice(&settings.max_message_size.to_be_bytes());
    out.extend_from_slice(&settings.max_delivery_attempts.to_be_bytes());
    out.push(u8::from(settings.ordered));
    out.extend_from_slice(&(webhook_ids.len() as u32).to_be_bytes());
    for id in webhook_ids {
        put_str(&mut out, id);
    }
    out
}

pub(crate) fn decode_channel(bytes: &[u8]) -> Option<(QueueSettings, Vec<String>)> {
    let mut r = Reader::new(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let ttl = Duration::from_millis(r.u64()?);
    let ack_timeout = Duration::from_millis(r.u64()?);
    let max_lease = Duration::from_millis(r.u64()?);
    let requeue_delay_initial = Duration::from_millis(r.u64()?);
    let requeue_delay_max = Duration::from_millis(r.u64()?);
    let max_queue_size = r.u64()?;
    let max_message_size = r.u64()?;
    let max_delivery_attempts = r.u32()?;
    let ordered = r.u8()? != 0;
    let n = r.u32()?;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(r.str()?);
    }
    r.finish()?;
    Some((
        QueueSettings {
            ttl,
            max_queue_size,
            max_message_size,
            max_delivery_attempts,
            ack_timeout,
            max_lease,
            requeue_delay_initial,
            requeue_delay_max,
            ordered,
        },
        ids,
    ))
}

/// Whole milliseconds, saturating.
fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names and ids are short; longer text (error reasons) is cut at a char boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
        None => out.push(0),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }

    fn opt_i64(&mut self) -> Option<Option<i64>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.i64()?)),
            _ => None,
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Option<()> {
        self.buf.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let m = MsgRecord {
            message_id: "msg_1".into(),
            delivery_count: 3,
            received_ms: 17,
            expires_ms: Some(99),
            last_error: Some("boom é".into()),
            state: MsgState::Leased {
                lease: 7,
                expires_ms: 1000,
                delivered_ms: 900,
            },
        };
        assert_eq!(MsgRecord::decode(&m.encode()), Some(m.clone()));
        let d = DeadRecord {
            queue: "q".into(),
            seq: 5,
            message_id: "msg_2".into(),
            reason: DeadLetterReason::Expired,
            at_ms: 3,
            delivery_count: 0,
            received_ms: 1,
            expires_ms: None,
            last_error: None,
            body: vec![0, 1, 2, 255],
        };
        assert_eq!(
            DeadRecord::decode_head(&d.encode()),
            Some(("q".to_owned(), "msg_2".to_owned()))
        );
        assert_eq!(DeadRecord::decode(&d.encode()), Some(d));
        let c = Counters {
            published: 1,
            delivered: 2,
            nacked: 3,
            expired: 4,
            dead_lettered: 5,
        };
        assert_eq!(Counters::decode(&c.encode()), Some(c));
        let s = QueueSettings {
            ordered: true,
            ..QueueSettings::default()
        };
        let ids = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(decode_channel(&encode_channel(&s, &ids)), Some((s, ids)));
    }

    #[test]
    fn truncated_or_garbage_records_are_none() {
        let m = MsgRecord {
            message_id: "msg_1".into(),
            delivery_count: 0,
            received_ms: 0,
            expires_ms: None,
            last_error: None,
            state: MsgState::Ready { ready_ms: 0 },
        }
        .encode();
        for n in 0..m.len() {
            assert_eq!(MsgRecord::decode(&m[..n]), None);
        }
        assert_eq!(MsgRecord::decode(b"\x09garbage"), None);
        assert_eq!(Counters::decode(b""), None);
    }

    #[test]
    fn keys_of_similar_names_never_collide_r64() {
        assert_ne!(queue_prefix("a", "b.c"), queue_prefix("a.b", "c"));
        assert!(!queue_prefix("a.b", "x").starts_with(&channel_prefix("a")));
        assert!(!queue_prefix("a-b", "x").starts_with(&channel_prefix("a")));
        assert!(!message_key("a", "ab", 1).starts_with(&queue_prefix("a", "a")));
        assert_eq!(
            split_message_key(&message_key("ch", "q", 42)),
            Some(("ch".into(), "q".into(), 42))
        );
        assert_eq!(dead_key_id(&dead_key("ch", 9)), Some(9));
    }

    #[test]
    fn index_keys_sort_by_time_then_seq_and_split_back() {
        let p = queue_prefix("ch", "q");
        let keys = [
            timed_key(&p, -5, 9),
            timed_key(&p, 0, 1),
            timed_key(&p, 0, 2),
            timed_key(&p, 1_700_000_000_000, 0),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(key_time_seq(&keys[0]), Some((-5, 9)));
        assert_eq!(
            split_timed_key(&keys[3]),
            Some(("ch".into(), "q".into(), 1_700_000_000_000, 0))
        );
        assert_eq!(key_seq(&seq_key(&p, 42)), Some(42));
        assert_eq!(seq_key(&p, 42), message_key("ch", "q", 42));
        let end = prefix_end(&p).unwrap();
        assert!(keys.iter().all(|k| k.as_slice() < end.as_slice()));
        assert!(queue_prefix("ch", "r").as_slice() >= end.as_slice());
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
        let s = Sizes {
            msgs: 3,
            leased: 1,
            dead: 2,
        };
        assert_eq!(Sizes::decode(&s.encode()), Some(s));
        assert_eq!(s.waiting(), 2);
    }
}
