//! Partial completion (`docs/reference/module-contract.md` §5.4): per message, the chain items that already succeeded,
//! each with the fingerprint of its configuration, so a redelivery runs only the others. The
//! record is updated after each item succeeds, bounded in entries (oldest evicted first) and in
//! age, and kept in memory: after a restart a redelivered chain runs in full again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::time::{Duration, Instant};

/// Most chain items remembered for one message (chains have at most 20).
const MAX_ITEMS: usize = 32;

#[derive(Debug, Default)]
struct Inner {
    /// message id → (item index, fingerprint) pairs, and when the entry was created.
    done: HashMap<String, (Vec<(usize, u64)>, Instant)>,
    order: VecDeque<String>,
}

/// The bounded record of succeeded chain items, shared by a channel's workers.
#[derive(Debug)]
pub struct PartialRecord {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl PartialRecord {
    /// A record of at most `capacity` messages, each forgotten after `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        PartialRecord {
            capacity: capacity.max(1),
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when item `index` with `fingerprint` already succeeded for `message_id`.
    pub fn succeeded(&self, message_id: &str, index: usize, fingerprint: u64) -> bool {
        let mut inner = self.lock();
        inner.expire(self.ttl);
        inner
            .done
            .get(message_id)
            .is_some_and(|(items, _)| items.contains(&(index, fingerprint)))
    }

    /// Records that item `index` (with `fingerprint`) succeeded for `message_id`.
    pub fn mark(&self, message_id: &str, index: usize, fingerprint: u64) {
        let mut inner = self.lock();
        inner.expire(self.ttl);
        if let Some((items, _)) = inner.done.get_mut(message_id) {
            items.retain(|(i, _)| *i != index);
            if items.len() < MAX_ITEMS {
                items.push((index, fingerprint));
            }
            return;
        }
        inner.done.insert(
            message_id.to_owned(),
            (vec![(index, fingerprint)], Instant::now()),
        );
        inner.order.push_back(message_id.to_owned());
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.done.remove(&old);
            }
        }
    }

    /// Forgets `message_id` (its chain completed; the completion record takes over).
    pub fn forget(&self, message_id: &str) {
        let mut inner = self.lock();
        if inner.done.remove(message_id).is_some() {
            inner.order.retain(|id| id != message_id);
        }
    }

    /// Messages with a partial record.
    pub fn len(&self) -> usize {
        self.lock().done.len()
    }

    /// True when no message has a partial record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn expire(&mut self, ttl: Duration) {
        while let Some(id) = self.order.front() {
            let expired = self.done.get(id).is_none_or(|(_, at)| at.elapsed() >= ttl);
            if !expired {
                break;
            }
            if let Some(id) = self.order.pop_front() {
                self.done.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_fingerprint_means_not_done() {
        let r = PartialRecord::new(10, Duration::from_secs(60));
        r.mark("m", 0, 7);
        assert!(r.succeeded("m", 0, 7));
        assert!(!r.succeeded("m", 0, 8));
        assert!(!r.succeeded("m", 1, 7));
        r.forget("m");
        assert!(r.is_empty());
    }

    #[test]
    fn capacity_evicts_the_oldest_message_r134() {
        let r = PartialRecord::new(2, Duration::from_secs(60));
        for id in ["a", "b", "c"] {
            r.mark(id, 0, 1);
        }
        assert_eq!(r.len(), 2);
        assert!(!r.succeeded("a", 0, 1));
        assert!(r.succeeded("c", 0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let r = PartialRecord::new(10, Duration::from_secs(60));
        r.mark("a", 0, 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!r.succeeded("a", 0, 1));
        assert!(r.is_empty());
    }
}
