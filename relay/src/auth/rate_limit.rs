//! `rate_limit` (§5, R-07, R-134): a sliding-window log per key, with bounded keys.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rejection::Rejection;

/// What one budget is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateKey {
    Webhook,
    ClientIp,
}

/// Admissions closer together than this share one log entry, stamped with the latest of
/// them, so a group leaves the window no earlier than its last member (never admits more).
const GROUP: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Entry {
    /// (time of the latest admission in the group, admissions in the group), oldest first.
    admitted: VecDeque<(Instant, u32)>,
    total: usize,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Option<IpAddr>, Entry>,
    /// Last-use sequence → key, oldest first, for evicting idle keys.
    lru: BTreeMap<u64, Option<IpAddr>>,
    next_seq: u64,
}

/// A sliding-window limiter: at most `max_requests` admissions in any `window`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    max_requests: usize,
    window: Duration,
    key: RateKey,
    max_keys: usize,
    inner: Mutex<Inner>,
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 { s + 1 } else { s }.max(1)
}

impl RateLimiter {
    pub fn new(max_requests: u64, window_seconds: u64, key: RateKey, max_keys: usize) -> Self {
        RateLimiter {
            max_requests: usize::try_from(max_requests).unwrap_or(usize::MAX),
            window: Duration::from_secs(window_seconds),
            key,
            max_keys: max_keys.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Counts one request for `client` at `now`, or rejects it with 429.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Rejection> {
        if self.max_requests == 0 {
            return Err(Rejection::too_many_requests(
                "Rate limit exceeded. No requests allowed",
                self.window.as_secs(),
            ));
        }
        let key = match self.key {
            RateKey::Webhook => None,
            RateKey::ClientIp => Some(client),
        };
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if !inner.entries.contains_key(&key) {
            while inner.entries.len() >= self.max_keys {
                let Some((_, oldest)) = inner.lru.pop_first() else {
                    break;
                };
                inner.entries.remove(&oldest);
            }
            inner.entries.insert(
                key,
                Entry {
                    admitted: VecDeque::new(),
                    total: 0,
                    seq,
                },
            );
        } else if let Some(entry) = inner.entries.get(&key) {
            inner.lru.remove(&entry.seq);
        }
        inner.lru.insert(seq, key);
        let Some(entry) = inner.entries.get_mut(&key) else {
            return Ok(());
        };
        entry.seq = seq;
        while let Some(&(front, count)) = entry.admitted.front() {
            if now.saturating_duration_since(front) >= self.window {
                entry.admitted.pop_front();
                entry.total = entry.total.saturating_sub(count as usize);
            } else {
                break;
            }
        }
        if entry.total >= self.max_requests {
            let oldest = entry.admitted.front().map(|&(t, _)| t).unwrap_or(now);
            let wait = (oldest + self.window).saturating_duration_since(now);
            let n = ceil_secs(wait);
            return Err(Rejection::too_many_requests(
                format!("Rate limit exceeded. Retry after {n} seconds"),
                n,
            ));
        }
        match entry.admitted.back_mut() {
            Some((t, count)) if now.saturating_duration_since(*t) < GROUP && *count < u32::MAX => {
                *t = (*t).max(now);
                *count += 1;
            }
            _ => entry.admitted.push_back((now, 1)),
        }
        entry.total += 1;
        Ok(())
    }

    /// Takes back one admission made at `admitted_at` for `client` (the request failed later,
    /// so it must not use up the budget: R-11).
    pub fn refund(&self, client: IpAddr, admitted_at: Instant) {
        let key = match self.key {
            RateKey::Webhook => None,
            RateKey::ClientIp => Some(client),
        };
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = guard.entries.get_mut(&key) else {
            return;
        };
        // Groups are stamped with their latest member: the first group not older than
        // `admitted_at` holds it.
        let at = entry.admitted.partition_point(|&(t, _)| t < admitted_at);
        let Some(group) = entry.admitted.get_mut(at) else {
            return;
        };
        group.1 = group.1.saturating_sub(1);
        if group.1 == 0 {
            entry.admitted.remove(at);
        }
        entry.total = entry.total.saturating_sub(1);
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(1, 2, 3, 4));

    #[test]
    fn limit_admits_max_then_answers_429_with_retry_after_r07() {
        let l = RateLimiter::new(3, 10, RateKey::Webhook, 10);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check(IP, t0 + Duration::from_millis(i)).is_ok());
        }
        let r = l
            .check(IP, t0 + Duration::from_millis(2500))
            .expect_err("limited");
        assert_eq!(r.status, 429);
        assert_eq!(r.detail, "Rate limit exceeded. Retry after 8 seconds");
        assert_eq!(r.retry_after(), Some(8));
        // Once the oldest admission leaves the window, one more is admitted.
        assert!(l.check(IP, t0 + Duration::from_secs(10)).is_ok());
        let r = l
            .check(
                IP,
                t0 + Duration::from_millis(10_000) + Duration::from_nanos(1),
            )
            .expect_err("limited");
        assert!(r.retry_after().unwrap_or(0) >= 1);
    }

    #[test]
    fn burst_within_a_millisecond_uses_one_log_entry_and_stays_exact() {
        let l = RateLimiter::new(1_000_000, 60, RateKey::Webhook, 10);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            assert!(l.check(IP, t0 + Duration::from_nanos(u64::from(i))).is_ok());
        }
        let entries = l
            .inner
            .lock()
            .map(|i| i.entries.values().map(|e| e.admitted.len()).sum::<usize>())
            .unwrap_or(0);
        assert!(entries <= 1, "{entries}");
        let l = RateLimiter::new(2, 1, RateKey::Webhook, 10);
        assert!(l.check(IP, t0).is_ok());
        assert!(l.check(IP, t0 + Duration::from_micros(500)).is_ok());
        assert!(l.check(IP, t0 + Duration::from_millis(999)).is_err());
        // The group leaves the window with its latest member, never earlier.
        assert!(l.check(IP, t0 + Duration::from_millis(1000)).is_err());
        assert!(
            l.check(
                IP,
                t0 + Duration::from_millis(1000) + Duration::from_micros(500)
            )
            .is_ok()
        );
    }

    #[test]
    fn refunded_admission_frees_its_slot_r11() {
        let l = RateLimiter::new(2, 60, RateKey::Webhook, 10);
        let t0 = Instant::now();
        assert!(l.check(IP, t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.check(IP, t1).is_ok());
        assert!(l.check(IP, t1).is_err());
        l.refund(IP, t1);
        assert!(l.check(IP, t1 + Duration::from_secs(1)).is_ok());
        assert!(l.check(IP, t1 + Duration::from_secs(2)).is_err());
        // Refunding for an unknown key or time changes nothing.
        l.refund(
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            t0 + Duration::from_secs(100),
        );
    }

    #[test]
    fn zero_requests_rejects_everything_with_window_retry_after() {
        let l = RateLimiter::new(0, 60, RateKey::Webhook, 10);
        let r = l.check(IP, Instant::now()).expect_err("limited");
        assert_eq!(r.detail, "Rate limit exceeded. No requests allowed");
        assert_eq!(r.retry_after(), Some(60));
    }

    #[test]
    fn client_ip_keys_are_separate_and_bounded_r134() {
        let l = RateLimiter::new(1, 60, RateKey::ClientIp, 1000);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            assert!(l.check(ip, t0).is_ok());
        }
        assert_eq!(l.keys(), 1000);
        // The most recent key is still remembered and limited.
        let last = IpAddr::V4(std::net::Ipv4Addr::from(99_999u32));
        assert!(l.check(last, t0).is_err());
    }
}
