//! Completion record (`wire-protocol.md` C.8, R-82): message ids whose local work completed, so a
//! redelivery (its ack was lost) is acked without calling the target again. Bounded by capacity
//! (oldest evicted first) and by age.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::time::{Duration, Instant};

use crate::config::CompletionRecordConfig;

/// Bounded, time-limited set of completed message ids, shared by a channel's workers.
#[derive(Debug)]
pub struct CompletionRecord {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<(String, Instant)>,
    ids: HashMap<String, Instant>,
}

impl CompletionRecord {
    /// An empty record.
    pub fn new(config: &CompletionRecordConfig) -> Self {
        CompletionRecord {
            capacity: config.capacity.max(1),
            ttl: config.ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// True when `message_id` completed within the TTL.
    pub fn contains(&self, message_id: &str) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now, self.ttl);
        inner.ids.contains_key(message_id)
    }

    /// Records `message_id` as fully complete.
    pub fn record(&self, message_id: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now, self.ttl);
        if inner.ids.insert(message_id.to_owned(), now).is_some() {
            inner.order.retain(|(id, _)| id != message_id);
        }
        inner.order.push_back((message_id.to_owned(), now));
        while inner.order.len() > self.capacity {
            if let Some((id, _)) = inner.order.pop_front() {
                inner.ids.remove(&id);
            }
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((id, at)) = self.order.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            self.ids.remove(id);
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(capacity: usize, ttl_secs: u64) -> CompletionRecord {
        CompletionRecord::new(&CompletionRecordConfig {
            capacity,
            ttl: Duration::from_secs(ttl_secs),
            path: None,
        })
    }

    #[test]
    fn capacity_bounds_the_record_oldest_first_r82() {
        let r = record(3, 3600);
        for id in ["a", "b", "c", "d"] {
            r.record(id);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains("a"));
        assert!(r.contains("d"));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl_r82() {
        let r = record(10, 60);
        r.record("a");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(r.contains("a"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!r.contains("a"));
        assert!(r.is_empty());
    }
}
