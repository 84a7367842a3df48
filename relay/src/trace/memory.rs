//! The trace store of a single relay instance: bounded maps in memory (lost on restart).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use webhook_connect_protocol::Timestamp;

use super::event::{MessageTrace, TraceEvent};
use super::{Limits, Record};

#[derive(Debug, Default)]
struct Inner {
    messages: HashMap<String, MessageTrace>,
    /// Per channel: message ids with the time they were first seen, oldest first.
    order: HashMap<String, VecDeque<(Timestamp, String)>>,
}

/// Messages kept over all channels at most, whatever the per-channel bound (a relay with many
/// channels must not hold `channels × max_messages` traces in memory).
pub const MAX_TOTAL: usize = 100_000;

/// Traces in memory, bounded per channel by count and age, and in total by [`MAX_TOTAL`].
#[derive(Debug)]
pub struct MemoryTraces {
    limits: Limits,
    inner: Mutex<Inner>,
}

impl MemoryTraces {
    /// An empty store.
    pub fn new(limits: Limits) -> MemoryTraces {
        MemoryTraces {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the records, dropping the oldest messages of a channel past its bounds.
    pub fn write(&self, records: Vec<Record>) {
        let now = Timestamp::now();
        let oldest_kept = self.limits.oldest_kept(now);
        let mut inner = self.lock();
        let Inner { messages, order } = &mut *inner;
        for record in records {
            let trace = messages
                .entry(record.message_id.clone())
                .or_insert_with(|| {
                    order
                        .entry(record.channel.clone())
                        .or_default()
                        .push_back((now, record.message_id.clone()));
                    MessageTrace {
                        message_id: record.message_id.clone(),
                        channel: record.channel.clone(),
                        events: Vec::new(),
                    }
                });
            if trace.events.len() < self.limits.max_events {
                trace.events.push(record.event);
            }
            let Some(queue) = order.get_mut(&record.channel) else {
                continue;
            };
            while queue.len() > self.limits.max_messages
                || messages.len() > MAX_TOTAL
                || queue
                    .front()
                    .is_some_and(|(t, _)| t.unix_millis() < oldest_kept)
            {
                let Some((_, id)) = queue.pop_front() else {
                    break;
                };
                messages.remove(&id);
            }
        }
    }

    /// The trace of `message_id`, if it is still kept.
    pub fn get(&self, message_id: &str) -> Option<MessageTrace> {
        let inner = self.lock();
        let trace = inner.messages.get(message_id)?;
        let oldest_kept = self.limits.oldest_kept(Timestamp::now());
        let first = trace.events.first().map(TraceEvent::at)?;
        (first.unix_millis() > oldest_kept).then(|| trace.clone())
    }

    /// How often `message_id` was replayed.
    pub fn replays(&self, message_id: &str) -> u32 {
        self.lock()
            .messages
            .get(message_id)
            .map_or(0, MessageTrace::replays)
    }

    /// Forgets every trace of `channel` (the channel was deleted).
    pub fn remove_channel(&self, channel: &str) {
        let mut inner = self.lock();
        if let Some(queue) = inner.order.remove(channel) {
            for (_, id) in queue {
                inner.messages.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(channel: &str, id: &str) -> Record {
        Record {
            channel: channel.into(),
            message_id: id.into(),
            event: TraceEvent::Replayed {
                at: Timestamp::now(),
            },
        }
    }

    #[test]
    fn keeps_at_most_max_messages_per_channel() {
        let store = MemoryTraces::new(Limits {
            max_messages: 2,
            max_age: std::time::Duration::from_secs(3600),
            max_events: 3,
        });
        store.write(vec![
            replayed("a", "m1"),
            replayed("a", "m2"),
            replayed("b", "m9"),
        ]);
        store.write(vec![replayed("a", "m3")]);
        assert!(store.get("m1").is_none());
        assert!(store.get("m2").is_some());
        assert!(store.get("m3").is_some());
        assert!(store.get("m9").is_some(), "other channels keep theirs");
        store.write((0..5).map(|_| replayed("a", "m3")).collect());
        assert_eq!(store.get("m3").map(|t| t.events.len()), Some(3));
        store.remove_channel("a");
        assert!(store.get("m3").is_none());
    }

    #[test]
    fn forgets_messages_older_than_max_age() {
        let store = MemoryTraces::new(Limits {
            max_messages: 10,
            max_age: std::time::Duration::ZERO,
            max_events: 10,
        });
        store.write(vec![replayed("a", "m1")]);
        assert!(store.get("m1").is_none());
    }
}
