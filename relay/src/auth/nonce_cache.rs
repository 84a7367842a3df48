//! A bounded replay cache for Digest and OAuth 1.0 nonces.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// What happened when a nonce was offered to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceOutcome {
    /// First use; now remembered.
    Fresh,
    /// Seen before and not yet expired.
    Replayed,
    /// The cache is full of unexpired entries.
    Full,
}

#[derive(Debug, Default)]
struct Inner {
    /// key → expiry (unix seconds).
    seen: HashMap<Vec<u8>, i64>,
    /// Insertion order, for expiry sweeps (every entry has the same ttl).
    order: VecDeque<(i64, Vec<u8>)>,
}

/// Remembers keys for `ttl` seconds, at most `capacity` at a time.
#[derive(Debug)]
pub(crate) struct NonceCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: i64,
}

impl NonceCache {
    pub fn new(capacity: usize, ttl_seconds: i64) -> Self {
        NonceCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ttl: ttl_seconds,
        }
    }

    fn sweep(inner: &mut Inner, now: i64) {
        while let Some((expiry, _)) = inner.order.front() {
            if *expiry > now {
                break;
            }
            if let Some((expiry, key)) = inner.order.pop_front()
                && inner.seen.get(&key) == Some(&expiry)
            {
                inner.seen.remove(&key);
            }
        }
    }

    /// True when `key` was seen within the ttl (does not record it).
    pub fn contains(&self, key: &[u8], now: i64) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Self::sweep(&mut inner, now);
        inner.seen.contains_key(key)
    }

    /// Records `key`, reporting a replay or a full cache.
    pub fn insert(&self, key: Vec<u8>, now: i64) -> NonceOutcome {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Self::sweep(&mut inner, now);
        if inner.seen.contains_key(&key) {
            return NonceOutcome::Replayed;
        }
        if inner.seen.len() >= self.capacity {
            return NonceOutcome::Full;
        }
        let expiry = now.saturating_add(self.ttl);
        inner.seen.insert(key.clone(), expiry);
        inner.order.push_back((expiry, key));
        NonceOutcome::Fresh
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }
}

/// Joins parts with a separator that cannot occur in them unescaped (length-prefixed).
pub(crate) fn nonce_key(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_cache_detects_replay_until_expiry() {
        let c = NonceCache::new(10, 60);
        assert_eq!(c.insert(b"a".to_vec(), 1000), NonceOutcome::Fresh);
        assert_eq!(c.insert(b"a".to_vec(), 1059), NonceOutcome::Replayed);
        assert_eq!(c.insert(b"a".to_vec(), 1060), NonceOutcome::Fresh);
    }

    #[test]
    fn nonce_cache_stays_bounded_r134() {
        let c = NonceCache::new(100, 60);
        let mut full = 0;
        for i in 0..1000u32 {
            if c.insert(i.to_be_bytes().to_vec(), 1000) == NonceOutcome::Full {
                full += 1;
            }
        }
        assert_eq!(c.len(), 100);
        assert_eq!(full, 900);
        // Once entries expire, room is made again.
        assert_eq!(c.insert(b"x".to_vec(), 2000), NonceOutcome::Fresh);
        assert_eq!(c.len(), 1);
    }
}
