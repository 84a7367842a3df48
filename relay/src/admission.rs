//! Connection admission for the relay's listeners: how many TCP connections it holds, from
//! whom, and which one gives way when the budget is spent.
//!
//! - **One budget for every listener**, `limits.max_connections_total`, lowered at start-up to
//!   what the process's file limit leaves after a reserve for the buffer, brokers and outbound
//!   connections ([`effective_total`]). A relay never runs out of file descriptors because of
//!   its clients: it stops admitting first.
//! - **Request connections and connectors' streams are counted apart.** A connection starts as
//!   a request connection; a WebSocket, SSE or long-poll handler claims a stream slot for it
//!   ([`ConnHandle::claim_stream`]). Streams may hold at most `limits.max_stream_connections`
//!   of the budget, so requests always keep the rest; a request connection that wants to become
//!   a stream beyond that gets `503`.
//! - **Idle connections give way.** When the budget (or the per-IP cap,
//!   `limits.max_connections_per_ip`, which counts request connections only) is spent, the
//!   request connection of that scope that has waited longest for its next request header is
//!   closed to make room: a socket that sends nothing, or sends its headers a byte at a time,
//!   cannot keep a working sender out. Connections in the middle of a request are never chosen.
//! - **Health stays reachable.** When nothing can give way, a few connections beyond the budget
//!   are served in overflow mode: `/healthz` and `/readyz` answer, everything else gets `503`
//!   with `Retry-After`, and the connection closes after one request. Beyond that, new
//!   connections are closed at once.
//!
//! Every refusal and eviction is counted in `/metrics`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// File descriptors kept back from the connection budget for everything else the process
/// opens (buffer files, broker and state-store connections, outbound HTTP, overflow).
pub(crate) const FD_RESERVE: u64 = 128;

/// Connections served in overflow mode at most.
pub(crate) const OVERFLOW_CONNECTIONS: usize = 64;

/// The limits of one relay process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdmissionLimits {
    /// Request and stream connections together.
    pub total: usize,
    /// Stream connections at most (≤ `total`).
    pub streams: usize,
    /// Request connections per client IP; 0 = no cap.
    pub per_ip: usize,
    /// Connections served in overflow mode at most.
    pub overflow: usize,
}

impl AdmissionLimits {
    /// Limits from the configured values: `streams` 0 means four fifths of the total.
    pub(crate) fn new(total: u64, streams: u64, per_ip: u64) -> Self {
        let total = usize::try_from(total).unwrap_or(usize::MAX).max(1);
        let streams = match usize::try_from(streams).unwrap_or(usize::MAX) {
            0 => total - total / 5,
            n => n.min(total),
        };
        AdmissionLimits {
            total,
            streams,
            per_ip: usize::try_from(per_ip).unwrap_or(usize::MAX),
            overflow: OVERFLOW_CONNECTIONS,
        }
    }
}

/// The configured total, lowered to the soft file limit minus [`FD_RESERVE`] (never below 16).
pub(crate) fn effective_total(configured: u64, open_files_limit: Option<u64>) -> u64 {
    match open_files_limit {
        Some(limit) => configured.min(limit.saturating_sub(FD_RESERVE).max(16)),
        None => configured,
    }
}

/// The process's soft limit on open files, where the platform tells it (`/proc/self/limits`).
pub(crate) fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How a new connection is to be served.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Within the budget.
    Full(ConnTicket),
    /// Beyond the budget: health endpoints only, one request.
    Overflow(OverflowTicket),
    /// Nothing left: close at once.
    Refused,
}

/// What one admitted connection is doing.
#[derive(Debug)]
struct Tracked {
    id: u64,
    ip: IpAddr,
    /// Requests whose response has not finished yet.
    busy: AtomicUsize,
    /// Milliseconds since the book's epoch when the connection last became idle.
    idle_since: AtomicU64,
    /// Still counted in the book (false once closed or evicted).
    registered: AtomicBool,
    /// Counted as a stream (under the book's lock).
    stream: AtomicBool,
    /// Cancelled to close the connection (eviction, forced shutdown).
    close: CancellationToken,
}

#[derive(Debug, Default)]
struct Book {
    conns: HashMap<u64, Arc<Tracked>>,
    per_ip: HashMap<IpAddr, usize>,
    requests: usize,
    streams: usize,
    overflow: usize,
}

impl Book {
    fn count_request(&mut self, ip: IpAddr, up: bool) {
        if up {
            self.requests += 1;
            *self.per_ip.entry(ip).or_default() += 1;
        } else {
            self.requests = self.requests.saturating_sub(1);
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// The idle request connection (of `ip`, when given) that has waited longest.
    fn victim(&self, ip: Option<IpAddr>) -> Option<Arc<Tracked>> {
        self.conns
            .values()
            .filter(|t| {
                !t.stream.load(Ordering::SeqCst)
                    && t.busy.load(Ordering::SeqCst) == 0
                    && ip.is_none_or(|ip| t.ip == ip)
            })
            .min_by_key(|t| (t.idle_since.load(Ordering::SeqCst), t.id))
            .cloned()
    }

    fn unregister(&mut self, t: &Tracked) {
        if t.registered.swap(false, Ordering::SeqCst) {
            self.conns.remove(&t.id);
            if !t.stream.load(Ordering::SeqCst) {
                self.count_request(t.ip, false);
            }
        }
    }
}

/// The connection budget shared by the relay's listeners.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    book: Mutex<Book>,
    epoch: Instant,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// A budget with `limits`, counting its refusals in `metrics`.
    pub(crate) fn new(limits: AdmissionLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            book: Mutex::new(Book::default()),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            metrics,
        })
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// (request connections, stream connections, overflow connections) now.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let book = self.book();
        (book.requests, book.streams, book.overflow)
    }

    /// Decides how a new connection from `ip` is served, closing an idle one to make room when
    /// the budget is spent.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Admit {
        let mut book = self.book();
        let total_full = book.requests + book.streams >= self.limits.total;
        let ip_full = self.limits.per_ip > 0
            && book.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip;
        if total_full || ip_full {
            // The per-IP cap makes room within that IP; the total within everyone.
            let scope = if ip_full { Some(ip) } else { None };
            match book.victim(scope) {
                Some(victim) => {
                    book.unregister(&victim);
                    victim.close.cancel();
                    self.metrics.inc(
                        "webhook_relay_connections_closed_total",
                        &[("reason", if ip_full { "evicted_per_ip" } else { "evicted" })],
                    );
                }
                None if book.overflow < self.limits.overflow => {
                    book.overflow += 1;
                    self.metrics.inc(
                        "webhook_relay_connections_refused_total",
                        &[("reason", "overflow")],
                    );
                    return Admit::Overflow(OverflowTicket {
                        admission: self.clone(),
                    });
                }
                None => {
                    self.metrics.inc(
                        "webhook_relay_connections_refused_total",
                        &[("reason", "limit")],
                    );
                    return Admit::Refused;
                }
            }
        }
        let tracked = Arc::new(Tracked {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            ip,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            registered: AtomicBool::new(true),
            stream: AtomicBool::new(false),
            close: CancellationToken::new(),
        });
        book.conns.insert(tracked.id, tracked.clone());
        book.count_request(ip, true);
        Admit::Full(ConnTicket {
            handle: ConnHandle {
                admission: self.clone(),
                tracked,
            },
        })
    }

    /// Closes every admitted connection (the end of a graceful shutdown's bound).
    pub(crate) fn close_all(&self) {
        let conns: Vec<Arc<Tracked>> = self.book().conns.values().cloned().collect();
        for t in conns {
            t.close.cancel();
        }
    }
}

/// Held for the life of a connection admitted within the budget; releases its place on drop.
#[derive(Debug)]
pub(crate) struct ConnTicket {
    handle: ConnHandle,
}

impl ConnTicket {
    /// The handle requests on this connection carry.
    pub(crate) fn handle(&self) -> ConnHandle {
        self.handle.clone()
    }

    /// Cancelled when the connection must close now (evicted, or shutdown's bound reached).
    pub(crate) fn closed(&self) -> CancellationToken {
        self.handle.tracked.close.clone()
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        let admission = &self.handle.admission;
        admission.book().unregister(&self.handle.tracked);
    }
}

/// Held for the life of a connection served in overflow mode.
#[derive(Debug)]
pub(crate) struct OverflowTicket {
    admission: Arc<Admission>,
}

impl Drop for OverflowTicket {
    fn drop(&mut self) {
        let mut book = self.admission.book();
        book.overflow = book.overflow.saturating_sub(1);
    }
}

/// What a request knows about its connection: it marks the connection busy while the request
/// runs and lets a streaming handler claim a stream slot. Requests carry it as an extension.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    admission: Arc<Admission>,
    tracked: Arc<Tracked>,
}

impl ConnHandle {
    /// Marks the connection busy until the returned guard is dropped (when the response has
    /// been sent, or abandoned).
    pub(crate) fn begin_request(&self) -> BusyGuard {
        self.tracked.busy.fetch_add(1, Ordering::SeqCst);
        BusyGuard {
            handle: self.clone(),
        }
    }

    /// Counts this connection as a connector's stream for as long as the returned slot lives.
    /// `None` when the streams' share of the budget is spent.
    pub fn claim_stream(&self) -> Option<StreamSlot> {
        let mut book = self.admission.book();
        if book.streams >= self.admission.limits.streams {
            drop(book);
            self.admission.metrics.inc(
                "webhook_relay_connections_refused_total",
                &[("reason", "streams")],
            );
            return None;
        }
        book.streams += 1;
        let t = &self.tracked;
        if t.registered.load(Ordering::SeqCst) && !t.stream.swap(true, Ordering::SeqCst) {
            book.count_request(t.ip, false);
        }
        Some(StreamSlot {
            handle: self.clone(),
        })
    }
}

/// Marks a connection busy while one request on it runs.
#[derive(Debug)]
pub(crate) struct BusyGuard {
    handle: ConnHandle,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let t = &self.handle.tracked;
        t.idle_since
            .store(self.handle.admission.now_ms(), Ordering::SeqCst);
        t.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connector's stream slot; the connection counts as a request connection again once it is
/// dropped (a long-poll connection between polls, say).
#[derive(Debug)]
pub struct StreamSlot {
    handle: ConnHandle,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut book = self.handle.admission.book();
        book.streams = book.streams.saturating_sub(1);
        let t = &self.handle.tracked;
        if t.registered.load(Ordering::SeqCst) && t.stream.swap(false, Ordering::SeqCst) {
            book.count_request(t.ip, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn admission(total: u64, streams: u64, per_ip: u64) -> Arc<Admission> {
        Admission::new(
            AdmissionLimits::new(total, streams, per_ip),
            Arc::new(Metrics::default()),
        )
    }

    fn full(a: Admit) -> ConnTicket {
        match a {
            Admit::Full(t) => t,
            other => panic!("expected Full, got {other:?}"),
        }
    }

    #[test]
    fn the_longest_idle_connection_gives_way_when_the_budget_is_spent() {
        let a = admission(2, 1, 0);
        let first = full(a.admit(ip(1)));
        let second = full(a.admit(ip(2)));
        // The second one is working on a request: only the first can give way.
        let _busy = second.handle().begin_request();
        let third = full(a.admit(ip(3)));
        assert!(first.closed().is_cancelled());
        assert!(!second.closed().is_cancelled());
        assert_eq!(a.counts(), (2, 0, 0));
        // Both left are busy now: the next one is served in overflow mode, then refused.
        let _busy3 = third.handle().begin_request();
        let mut overflow = Vec::new();
        for _ in 0..OVERFLOW_CONNECTIONS {
            match a.admit(ip(4)) {
                Admit::Overflow(t) => overflow.push(t),
                other => panic!("expected Overflow, got {other:?}"),
            }
        }
        assert!(matches!(a.admit(ip(4)), Admit::Refused));
        overflow.pop();
        assert!(matches!(a.admit(ip(4)), Admit::Overflow(_)));
        // A dropped evicted ticket does not free a second place.
        drop(first);
        assert_eq!(a.counts().0, 2);
    }

    #[test]
    fn a_connection_idle_after_its_request_can_give_way_but_not_during_it() {
        let a = admission(1, 1, 0);
        let only = full(a.admit(ip(1)));
        let busy = only.handle().begin_request();
        assert!(matches!(a.admit(ip(2)), Admit::Overflow(_)));
        drop(busy);
        let _next = full(a.admit(ip(2)));
        assert!(only.closed().is_cancelled());
    }

    #[test]
    fn the_per_ip_cap_evicts_within_that_ip_only() {
        let a = admission(10, 5, 2);
        let other = full(a.admit(ip(9)));
        let a1 = full(a.admit(ip(1)));
        let _a2 = full(a.admit(ip(1)));
        let _a3 = full(a.admit(ip(1)));
        assert!(a1.closed().is_cancelled());
        assert!(!other.closed().is_cancelled());
        assert_eq!(a.counts(), (3, 0, 0));
    }

    #[test]
    fn streams_are_counted_apart_and_capped_within_the_budget() {
        let a = admission(3, 2, 1);
        let s1 = full(a.admit(ip(1)));
        let slot1 = s1.handle().claim_stream().expect("first stream");
        // A stream does not count against its IP's request cap, nor can it be evicted.
        let s2 = full(a.admit(ip(1)));
        let slot2 = s2.handle().claim_stream().expect("second stream");
        assert_eq!(a.counts(), (0, 2, 0));
        let r = full(a.admit(ip(1)));
        assert!(
            r.handle().claim_stream().is_none(),
            "streams may not take the requests' share"
        );
        assert!(!s1.closed().is_cancelled() && !s2.closed().is_cancelled());
        // A long-poll connection between polls is a request connection again.
        drop(slot2);
        assert_eq!(a.counts(), (2, 1, 0));
        // An upgraded WebSocket: the HTTP connection ends, the stream slot lives on.
        drop(s1);
        assert_eq!(a.counts(), (2, 1, 0));
        drop(slot1);
        assert_eq!(a.counts(), (2, 0, 0));
        drop((s2, r));
        assert_eq!(a.counts(), (0, 0, 0));
    }

    #[test]
    fn the_total_follows_the_file_limit() {
        assert_eq!(effective_total(10_000, Some(1024)), 896);
        assert_eq!(effective_total(500, Some(1024)), 500);
        assert_eq!(effective_total(10_000, None), 10_000);
        assert_eq!(effective_total(10_000, Some(20)), 16);
        let limits = AdmissionLimits::new(1000, 0, 0);
        assert_eq!(
            (limits.total, limits.streams, limits.per_ip),
            (1000, 800, 0)
        );
    }
}
