//! The per-channel hub: registered connections, the dispatcher that leases messages while at
//! least one connection is registered, assignment to the least-loaded connection, and the
//! periodic sweep (lapsed leases, idle long-poll sessions). Settling is `settle.rs`; what a
//! connection holds is `leases.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use webhook_connect_buffer::{Lease, LeaseToken, SharedBuffer};
use webhook_connect_protocol::backoff::Backoff;
use webhook_connect_protocol::envelope::DeliveryInfo;
use webhook_connect_protocol::{CloseReason, ConnectionId, ConnectionKind, ServerFrame, Timestamp};

use super::conn::{Conn, ConnInfo, Outbound, PollSlot, Session};
use super::leases::{Held, Holding};
use crate::config::settings::ChannelSettings;
use crate::metrics::Metrics;
use crate::trace::TraceStore;

/// Tuning of a hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Consumer name of this relay instance in the buffer.
    pub consumer: String,
    /// How long one lease call waits for a message.
    pub lease_wait: Duration,
    /// Most messages leased per call.
    pub max_batch: usize,
    /// Extra outbound queue room per stream connection beyond its in-flight limit.
    pub outbound_slack: usize,
    /// Where delivery events are counted.
    pub metrics: Arc<Metrics>,
    /// Longest a closing connection waits for the settles it started (the shutdown deadline).
    pub settle_wait: Duration,
    /// Where delivery attempts are traced.
    pub trace: Arc<TraceStore>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            consumer: format!("relay-{}", uuid_like()),
            lease_wait: Duration::from_millis(500),
            max_batch: 256,
            outbound_slack: 16,
            metrics: Arc::new(Metrics::default()),
            settle_wait: Duration::from_secs(10),
            trace: Arc::new(TraceStore::memory(crate::trace::Limits {
                max_messages: 10_000,
                max_age: Duration::from_secs(86_400),
                max_events: crate::trace::MAX_EVENTS,
            })),
        }
    }
}

fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[derive(Debug, Default)]
struct Inner {
    /// WebSocket and SSE connections, and long-poll clients, by registration id.
    conns: HashMap<ConnectionId, Arc<Conn>>,
    /// Long-poll session id → its poll client.
    sessions: HashMap<ConnectionId, Arc<Conn>>,
    /// Long-poll clients that sent `X-Connector-ID`, by that id (a client without one is
    /// found only through its sessions).
    poll_clients: HashMap<String, Arc<Conn>>,
    dispatcher: Option<CancellationToken>,
}

/// Why a long-poll could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOpenError {
    /// The channel is at `max_connections`.
    MaxConnections,
    /// This session already has a poll open.
    InProgress,
}

/// Delivery state of one channel.
#[derive(Debug)]
pub struct Hub {
    channel: String,
    buffer: SharedBuffer,
    options: HubOptions,
    settings: RwLock<Arc<ChannelSettings>>,
    inner: Mutex<Inner>,
    wake: Notify,
    paused: AtomicBool,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Hub {
    /// A hub for `channel`; `shutdown` stops every dispatcher of the relay.
    pub fn new(
        channel: String,
        buffer: SharedBuffer,
        settings: ChannelSettings,
        options: HubOptions,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Hub {
            channel,
            buffer,
            options,
            settings: RwLock::new(Arc::new(settings)),
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            shutdown,
            tracker,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The metrics the hub counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.options.metrics
    }

    /// Where delivery attempts are traced.
    pub(super) fn trace_store(&self) -> &TraceStore {
        &self.options.trace
    }

    /// Channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The buffer.
    pub fn buffer(&self) -> &SharedBuffer {
        &self.buffer
    }

    /// Tracks the hub's background work (the relay's shutdown waits for it).
    pub(super) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Lets the dispatcher look for room again (a slot was freed).
    pub(super) fn wake_dispatcher(&self) {
        self.wake.notify_one();
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<ChannelSettings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the settings (admin update).
    pub fn set_settings(&self, settings: ChannelSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        self.wake.notify_one();
    }

    /// Pauses or resumes new leases.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Registered connections (long-poll clients count once).
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.lock().conns.values().cloned().collect()
    }

    /// The connection or long-poll session named `id`.
    pub fn find(&self, id: &ConnectionId) -> Option<Arc<Conn>> {
        let inner = self.lock();
        inner
            .conns
            .get(id)
            .or_else(|| inner.sessions.get(id))
            .cloned()
    }

    /// Stream connections plus long-poll sessions with a poll open (`max_connections` counting).
    fn counted(inner: &Inner) -> usize {
        inner
            .conns
            .values()
            .map(|c| match c.info.kind {
                ConnectionKind::LongPoll => {
                    c.lock().sessions.values().filter(|s| s.poll_open).count()
                }
                _ => 1,
            })
            .sum()
    }

    /// Registers a WebSocket or SSE connection. `None` at `max_connections`.
    pub fn register_stream(
        self: &Arc<Self>,
        info: ConnInfo,
    ) -> Option<(Arc<Conn>, mpsc::Receiver<Outbound>)> {
        let max = self.settings().max_connections as usize;
        let (tx, rx) = mpsc::channel(info.limit as usize + self.options.outbound_slack);
        let conn = Arc::new(Conn::new(ConnectionId::generate(info.kind), info, Some(tx)));
        {
            let mut inner = self.lock();
            if self.shutdown.is_cancelled() || Self::counted(&inner) >= max {
                return None;
            }
            inner.conns.insert(conn.id.clone(), conn.clone());
            self.ensure_dispatcher(&mut inner);
        }
        self.wake.notify_one();
        Some((conn, rx))
    }

    /// Unregisters a connection and releases its leases at once. Transports call
    /// [`Hub::unregister_when_settled`] instead, so acks their connector sent are not lost.
    pub fn unregister(self: &Arc<Self>, conn: &Arc<Conn>) {
        let leases: Vec<(String, Held)> = {
            let mut inner = self.lock();
            if inner.conns.remove(&conn.id).is_none() {
                return;
            }
            if conn.info.kind == ConnectionKind::LongPoll {
                inner.poll_clients.retain(|_, c| !Arc::ptr_eq(c, conn));
                inner.sessions.retain(|_, c| !Arc::ptr_eq(c, conn));
            }
            if inner.conns.is_empty()
                && let Some(stop) = inner.dispatcher.take()
            {
                stop.cancel();
            }
            let mut state = conn.lock();
            state.closing = true;
            state.leases.drain()
        };
        conn.closed.cancel();
        if let Some(reason) = conn.close_reason() {
            self.count(
                "webhook_relay_evictions_total",
                &[("reason", reason.as_str())],
            );
        }
        self.release(conn, leases);
        self.wake.notify_one();
    }

    /// Unregisters `conn` once the settles it started have finished (at most the hub's
    /// `settle_wait`): the graceful close of every transport. New leases stop at once.
    pub async fn unregister_when_settled(self: &Arc<Self>, conn: &Arc<Conn>) {
        conn.lock().closing = true;
        conn.settles_done(self.options.settle_wait).await;
        self.unregister(conn);
    }

    /// Like [`Hub::unregister_when_settled`] from where nothing can be awaited (a dropped
    /// response body): one task per closing connection.
    pub fn unregister_later(self: &Arc<Self>, conn: &Arc<Conn>) {
        conn.lock().closing = true;
        let (hub, conn) = (self.clone(), conn.clone());
        self.tracker
            .spawn(async move { hub.unregister_when_settled(&conn).await });
    }

    fn count(&self, name: &'static str, extra: &[(&'static str, &str)]) {
        let mut labels: Vec<(&'static str, &str)> = vec![("channel", &self.channel)];
        labels.extend_from_slice(extra);
        self.options.metrics.inc(name, &labels);
    }

    /// Opens a long-poll for the poll client `connector_id`, resuming `resume` when it is a live
    /// session of that client with no poll open.
    pub fn open_poll(
        self: &Arc<Self>,
        info: ConnInfo,
        resume: Option<&ConnectionId>,
        max_messages: usize,
    ) -> Result<(Arc<Conn>, ConnectionId, Arc<Notify>), PollOpenError> {
        let max = self.settings().max_connections as usize;
        let notify = Arc::new(Notify::new());
        let mut inner = self.lock();
        if self.shutdown.is_cancelled() || Self::counted(&inner) >= max {
            return Err(PollOpenError::MaxConnections);
        }
        // A client that names itself is one client across its sessions; one that does not is
        // a client of its own, found again only by resuming one of its sessions.
        let known = if info.connector_id_sent {
            inner.poll_clients.get(&info.connector_id).cloned()
        } else {
            resume
                .and_then(|id| inner.sessions.get(id))
                .filter(|c| !c.info.connector_id_sent)
                .cloned()
        };
        let client = match known {
            Some(c) => c,
            None => {
                let id = ConnectionId::generate(ConnectionKind::LongPoll);
                let c = Arc::new(Conn::new(id.clone(), info.clone(), None));
                if info.connector_id_sent {
                    inner
                        .poll_clients
                        .insert(info.connector_id.clone(), c.clone());
                }
                inner.conns.insert(id, c.clone());
                c
            }
        };
        let session = {
            let mut state = client.lock();
            let resumed = resume
                .filter(|id| state.sessions.contains_key(*id))
                .cloned();
            if let Some(id) = &resumed
                && state.sessions.get(id).is_some_and(|s| s.poll_open)
            {
                return Err(PollOpenError::InProgress);
            }
            // One poll slot per client: a concurrent poll on another session of the same
            // client gets no messages until the first returns (it ends with 204).
            let session =
                resumed.unwrap_or_else(|| ConnectionId::generate(ConnectionKind::LongPoll));
            state.sessions.insert(
                session.clone(),
                Session {
                    last_returned: Instant::now(),
                    poll_open: true,
                },
            );
            state.last_seen = Instant::now();
            state.last_seen_at = Some(Timestamp::now());
            if state.poll.is_none() {
                state.poll = Some(PollSlot {
                    session: session.clone(),
                    version: info.version,
                    room: max_messages,
                    messages: Vec::new(),
                    notify: notify.clone(),
                });
            }
            session
        };
        inner.sessions.insert(session.clone(), client.clone());
        self.ensure_dispatcher(&mut inner);
        drop(inner);
        self.wake.notify_one();
        Ok((client, session, notify))
    }

    /// Messages handed to the open poll of `session` so far (without closing it).
    pub fn poll_ready(&self, client: &Conn, session: &ConnectionId) -> usize {
        let state = client.lock();
        match &state.poll {
            Some(slot) if slot.session == *session => slot.messages.len(),
            _ => 0,
        }
    }

    /// True when the poll of `session` can take no more messages.
    pub fn poll_full(&self, client: &Conn, session: &ConnectionId) -> bool {
        let state = client.lock();
        match &state.poll {
            Some(slot) if slot.session == *session => slot.room == 0,
            _ => true,
        }
    }

    /// Ends the poll of `session`; returns the encoded messages it got and whether more were
    /// ready when it closed.
    pub fn close_poll(&self, client: &Conn, session: &ConnectionId) -> Vec<String> {
        let mut state = client.lock();
        if let Some(s) = state.sessions.get_mut(session) {
            s.poll_open = false;
            s.last_returned = Instant::now();
        }
        match state.poll.take() {
            Some(slot) if slot.session == *session => slot.messages,
            other => {
                state.poll = other;
                Vec::new()
            }
        }
    }

    fn ensure_dispatcher(self: &Arc<Self>, inner: &mut Inner) {
        if inner.dispatcher.is_some() || self.shutdown.is_cancelled() {
            return;
        }
        let stop = self.shutdown.child_token();
        inner.dispatcher = Some(stop.clone());
        let hub = self.clone();
        // One dispatcher per channel at most.
        self.tracker
            .spawn(async move { hub.run_dispatcher(stop).await });
    }

    /// Free in-flight room over eligible connections.
    fn capacity(&self) -> usize {
        let inner = self.lock();
        inner
            .conns
            .values()
            .map(|c| {
                let s = c.lock();
                if s.closing {
                    return 0;
                }
                let free = (c.info.limit as usize).saturating_sub(s.leases.occupied());
                match (&c.info.kind, &s.poll) {
                    (ConnectionKind::LongPoll, Some(slot)) => free.min(slot.room),
                    (ConnectionKind::LongPoll, None) => 0,
                    _ => free,
                }
            })
            .sum()
    }

    async fn run_dispatcher(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 2.0);
        let mut last_sweep = Instant::now();
        tracing::debug!(channel = %self.channel, "Dispatcher started");
        loop {
            if stop.is_cancelled() {
                break;
            }
            if last_sweep.elapsed() >= Duration::from_millis(200) {
                self.sweep();
                last_sweep = Instant::now();
            }
            let capacity = if self.is_paused() { 0 } else { self.capacity() };
            if capacity == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
            let want = capacity.min(self.options.max_batch);
            // Leases lapse `ack_timeout` after they were asked for, on this clock.
            let lapses_after = (Instant::now(), self.settings().ack_timeout());
            let leased = tokio::select! {
                r = self.buffer.lease(&self.channel, want, self.options.lease_wait, &self.options.consumer) => r,
                _ = stop.cancelled() => break,
            };
            match leased {
                Ok(leases) => {
                    backoff.reset();
                    let unsent: Vec<_> = leases
                        .into_iter()
                        .filter_map(|lease| self.assign(lease, lapses_after))
                        .collect();
                    self.give_back(unsent);
                }
                Err(e) => {
                    self.options
                        .metrics
                        .inc("webhook_relay_buffer_errors_total", &[("op", "lease")]);
                    tracing::warn!(channel = %self.channel, error = %e, "Lease failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        }
        tracing::debug!(channel = %self.channel, "Dispatcher stopped");
    }

    /// Hands a lease to the eligible connection with the fewest in flight (ties: the one that
    /// least recently received a message). `lapses_after`: when the lease was asked for, and
    /// its length. Returns the lease when no connection could take it (to be given back).
    pub(super) fn assign(
        self: &Arc<Self>,
        lease: Lease,
        lapses_after: (Instant, Duration),
    ) -> Option<LeaseToken> {
        let delivery = DeliveryInfo {
            delivery_count: lease.delivery_count,
            lease_expires_at: lease.lease_expires_at,
        };
        let message_id = lease.envelope.message_id.as_str().to_owned();
        let replays = self.replays_of(&message_id);
        let mut encoded: [Option<String>; 2] = [None, None];
        let mut tried: Vec<ConnectionId> = Vec::new();
        loop {
            let Some(conn) = self.pick(&tried) else {
                tracing::debug!(channel = %self.channel, message_id, "No connection can take the message; returning it");
                return Some(lease.token);
            };
            tried.push(conn.id.clone());
            let version = {
                let s = conn.lock();
                match (&conn.info.kind, &s.poll) {
                    (ConnectionKind::LongPoll, Some(slot)) => slot.version,
                    _ => conn.info.version,
                }
            };
            let slot = usize::from(version.is_v2());
            let json = encoded[slot]
                .get_or_insert_with(|| {
                    let mut webhook = lease.envelope.to_webhook(version, delivery);
                    if replays > 0 && version.is_v2() {
                        webhook.replay_count = Some(replays);
                    }
                    ServerFrame::Webhook(Box::new(webhook)).to_json()
                })
                .clone();
            let delivered = {
                let mut s = conn.lock();
                if !s.closing && s.leases.holds_live(&message_id) {
                    // A second copy of a message this connection is working on: settled with
                    // it rather than sent twice.
                    tracing::debug!(channel = %self.channel, message_id, "Second copy of a message in flight; held with it");
                    let held = Held::new(&lease, lapses_after.0, lapses_after.1);
                    let holding = s.leases.hold(&message_id, held);
                    debug_assert_eq!(holding, Holding::Copy);
                    return None;
                }
                let sent = if s.closing {
                    false
                } else if conn.info.kind == ConnectionKind::LongPoll {
                    match &mut s.poll {
                        Some(slot) if slot.room > 0 => {
                            slot.room -= 1;
                            slot.messages.push(json);
                            slot.notify.notify_one();
                            true
                        }
                        _ => false,
                    }
                } else {
                    match &conn.outbound {
                        Some(tx) => match tx.try_send(Outbound::Webhook {
                            message_id: message_id.clone(),
                            json,
                        }) {
                            Ok(()) => true,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                drop(s);
                                tracing::info!(channel = %self.channel, connection_id = %conn.id, "Evicting slow connection");
                                conn.close(CloseReason::Evicted);
                                self.unregister_later(&conn);
                                continue;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        },
                        None => false,
                    }
                };
                if sent {
                    let held = Held::new(&lease, lapses_after.0, lapses_after.1);
                    s.leases.hold(&message_id, held);
                    s.last_delivery = Some(Instant::now());
                    s.last_message_at = Some(Timestamp::now());
                    s.received += 1;
                }
                sent
            };
            if delivered {
                self.count("webhook_relay_messages_delivered_total", &[]);
                self.trace_delivered(&conn, &message_id, lease.delivery_count);
                return None;
            }
        }
    }

    fn pick(&self, skip: &[ConnectionId]) -> Option<Arc<Conn>> {
        let inner = self.lock();
        inner
            .conns
            .values()
            .filter(|c| !skip.contains(&c.id))
            .filter_map(|c| {
                let s = c.lock();
                let occupied = s.leases.occupied();
                let eligible = !s.closing
                    && occupied < c.info.limit as usize
                    && (c.info.kind != ConnectionKind::LongPoll
                        || s.poll.as_ref().is_some_and(|p| p.room > 0));
                eligible.then(|| (occupied, s.last_delivery, c.clone()))
            })
            .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, c)| c)
    }

    /// Lets leases the connectors never answered lapse (the buffer takes them back itself) and
    /// forgets idle long-poll sessions and clients.
    pub(super) fn sweep(self: &Arc<Self>) {
        let now = Instant::now();
        let ack_timeout = self.settings().ack_timeout();
        let mut idle_clients = Vec::new();
        let mut lapsed = Vec::new();
        {
            let mut inner = self.lock();
            let mut dead_sessions = Vec::new();
            for conn in inner.conns.values() {
                let mut s = conn.lock();
                let gone = s.leases.lapse(now);
                if !gone.message_ids.is_empty() {
                    lapsed.push((conn.clone(), gone));
                }
                if conn.info.kind == ConnectionKind::LongPoll {
                    let holds = !s.leases.is_empty();
                    s.sessions.retain(|id, session| {
                        let keep = session.poll_open
                            || holds
                            || session.last_returned.elapsed() < ack_timeout;
                        if !keep {
                            dead_sessions.push(id.clone());
                        }
                        keep
                    });
                    if s.sessions.is_empty() && s.poll.is_none() && !holds {
                        idle_clients.push(conn.clone());
                    }
                }
            }
            for id in dead_sessions {
                inner.sessions.remove(&id);
            }
        }
        for (conn, lapsed) in lapsed {
            self.lapsed(&conn, lapsed);
        }
        for client in idle_clients {
            self.unregister(&client);
        }
    }

    /// Closes every connection with `reason` and stops the dispatcher (shutdown, deletion).
    pub fn close_all(self: &Arc<Self>, reason: CloseReason) {
        for conn in self.connections() {
            conn.close(reason);
            if conn.info.kind == ConnectionKind::LongPoll {
                self.unregister_later(&conn);
            }
        }
    }

    /// Closes the connections that authenticated with `token` (it is no longer valid; 4001/1008).
    pub fn close_token(self: &Arc<Self>, token: &[u8; 32]) -> usize {
        let mut closed = 0;
        for conn in self.connections() {
            if conn.info.token == *token {
                conn.close(CloseReason::TokenInvalid);
                if conn.info.kind == ConnectionKind::LongPoll {
                    self.unregister_later(&conn);
                }
                closed += 1;
            }
        }
        closed
    }

    /// Stops leasing new messages (relay shutdown step 1) without closing connections.
    pub fn stop_leasing(&self) {
        if let Some(stop) = self.lock().dispatcher.take() {
            stop.cancel();
        }
    }

    /// Total in flight over connections.
    pub fn in_flight_total(&self) -> usize {
        self.connections().iter().map(|c| c.in_flight()).sum()
    }
}

/// The effective in-flight limit of a new connection: the channel's, lowered by the client's
/// `X-Webhook-Connect-Max-In-Flight`.
pub fn effective_limit(settings: &ChannelSettings, requested: Option<u32>) -> u32 {
    requested
        .map_or(settings.max_in_flight, |r| r.min(settings.max_in_flight))
        .max(1)
}
