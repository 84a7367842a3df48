//! One registered connection: its identity, the leases it holds, its outbound queue and the
//! settles it has started.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::leases::Leases;
use webhook_connect_protocol::{
    CloseReason, ConnectionId, ConnectionKind, ProtocolVersion, Timestamp,
};

/// What a WebSocket or SSE transport writes for the dispatcher.
#[derive(Debug)]
pub enum Outbound {
    /// A `webhook` frame, already encoded for this connection's version.
    Webhook {
        /// Message id (SSE v2 uses it as the event id).
        message_id: String,
        /// Compact JSON of the frame.
        json: String,
    },
}

/// Fixed facts about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Transport.
    pub kind: ConnectionKind,
    /// Version negotiated at connect time (long-poll: of the latest poll).
    pub version: ProtocolVersion,
    /// Sanitised `X-Connector-ID` (or the transport default).
    pub connector_id: String,
    /// The client sent `X-Connector-ID` (long-poll clients without one never share state).
    pub connector_id_sent: bool,
    /// Effective in-flight limit.
    pub limit: u32,
    /// Client address.
    pub remote_ip: Option<IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// Hash of the token it authenticated with (closed when that token stops being valid).
    pub token: [u8; 32],
}

/// An open long-poll request waiting for messages.
#[derive(Debug)]
pub struct PollSlot {
    /// Session the poll belongs to.
    pub session: ConnectionId,
    /// Version of this poll request.
    pub version: ProtocolVersion,
    /// Messages still wanted.
    pub room: usize,
    /// Encoded `webhook` objects handed to this poll.
    pub messages: Vec<String>,
    /// Wakes the poll handler when messages arrive or the session closes.
    pub notify: std::sync::Arc<Notify>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) last_returned: Instant,
    pub(crate) poll_open: bool,
}

#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) leases: Leases,
    pub(crate) last_delivery: Option<Instant>,
    pub(crate) last_seen: Instant,
    pub(crate) last_seen_at: Option<Timestamp>,
    pub(crate) last_message_at: Option<Timestamp>,
    pub(crate) received: u64,
    pub(crate) acked: u64,
    pub(crate) nacked: u64,
    pub(crate) poll: Option<PollSlot>,
    pub(crate) sessions: HashMap<ConnectionId, Session>,
    pub(crate) closing: bool,
}

/// A registered connection (a WebSocket, an SSE stream, or a long-poll client).
#[derive(Debug)]
pub struct Conn {
    /// Id (long-poll: the client's first session id).
    pub id: ConnectionId,
    /// Fixed facts.
    pub info: ConnInfo,
    /// Registration time.
    pub connected_at: Timestamp,
    pub(crate) state: Mutex<ConnState>,
    /// Outbound queue (WebSocket and SSE; unused for long-poll).
    pub(crate) outbound: Option<mpsc::Sender<Outbound>>,
    /// Cancelled when the relay closes this connection.
    pub closed: CancellationToken,
    /// Settles this connection started (a close waits for them).
    pub(crate) settles: TaskTracker,
    close_reason: Mutex<Option<CloseReason>>,
}

impl Conn {
    /// A new connection; `outbound` is `None` for long-poll clients.
    pub(crate) fn new(
        id: ConnectionId,
        info: ConnInfo,
        outbound: Option<mpsc::Sender<Outbound>>,
    ) -> Self {
        Conn {
            id,
            info,
            connected_at: Timestamp::now(),
            state: Mutex::new(ConnState {
                leases: Leases::default(),
                last_delivery: None,
                last_seen: Instant::now(),
                last_seen_at: None,
                last_message_at: None,
                received: 0,
                acked: 0,
                nacked: 0,
                poll: None,
                sessions: HashMap::new(),
                closing: false,
            }),
            outbound,
            closed: CancellationToken::new(),
            settles: TaskTracker::new(),
            close_reason: Mutex::new(None),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records life from the client (any frame, ack or poll).
    pub fn touch_alive(&self) {
        let mut s = self.lock();
        s.last_seen = Instant::now();
        s.last_seen_at = Some(Timestamp::now());
    }

    /// Time since the client was last heard from.
    pub fn silent_for(&self) -> std::time::Duration {
        self.lock().last_seen.elapsed()
    }

    /// Messages leased to this connection whose connector may still settle them.
    pub fn in_flight(&self) -> usize {
        self.lock().leases.in_flight()
    }

    /// Asks the transport to close with `reason` (first reason wins).
    pub fn close(&self, reason: CloseReason) {
        {
            let mut r = self.close_reason.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.lock().closing = true;
        if let Some(slot) = &self.lock().poll {
            slot.notify.notify_one();
        }
        self.closed.cancel();
    }

    /// Why the relay closed it, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close_reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot for admin listings: `(in_flight, received, acked, nacked, last_seen_at,
    /// last_message_at, closing)`.
    pub fn snapshot(&self) -> ConnSnapshot {
        let s = self.lock();
        ConnSnapshot {
            in_flight: s.leases.in_flight() as u64,
            received: s.received,
            acked: s.acked,
            nacked: s.nacked,
            last_seen_at: s.last_seen_at,
            last_message_at: s.last_message_at,
            closing: s.closing,
        }
    }
}

/// Counters of a connection at one moment.
#[derive(Debug, Clone)]
pub struct ConnSnapshot {
    /// Leased now.
    pub in_flight: u64,
    /// Deliveries made.
    pub received: u64,
    /// Acks.
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Last life sign.
    pub last_seen_at: Option<Timestamp>,
    /// Last delivery.
    pub last_message_at: Option<Timestamp>,
    /// Being closed.
    pub closing: bool,
}
