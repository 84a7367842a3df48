//! The settle path: every way a lease the relay handed to a connection ends goes through here —
//! an ack, nack or touch from any transport (WebSocket frames, `POST /connect/ack`, a peer
//! instance's request), a release when the connection goes away, a lapse when the connector
//! never answered, and a return of a lease no connection could take. Each ends in one
//! [`SettleOutcome`] passed to [`Hub::record`], which counts it and adds it to the message
//! trace (`traced.rs`).
//!
//! The buffer decides every outcome: the relay only looks up which lease a connection holds
//! (`leases.rs`) and hands the buffer's answer back.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use webhook_connect_buffer::{BufferError, LeaseToken, Settle, Settled, SharedBuffer};
use webhook_connect_protocol::Timestamp;

use webhook_connect_protocol::report::DeliveryReport;

use super::leases::{Held, Lapsed};
use super::{Conn, Hub};

/// How one settle of one message ended, as the relay saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Acked: removed for good.
    Acked,
    /// Nacked by the connector.
    Nacked {
        /// Whether it asked for a retry.
        retry: bool,
        /// Its reason text.
        reason: Option<String>,
        /// What the buffer did (`Requeued` or `DeadLettered`).
        settled: Settled,
    },
    /// Touched: the lease now ends at this time (buffer clock).
    Extended(Timestamp),
    /// The connector never answered: the lease lapsed and the buffer takes the message back
    /// as a failed attempt.
    LeaseExpired,
    /// A settle for a lease that was over (expired, settled already, or leased again): nothing
    /// changed.
    NotInFlight,
    /// Its connection went away: released as a failed attempt (what the buffer did, when it
    /// answered).
    ConnectionLost(Option<Settled>),
    /// No connection could take it: ready again without counting an attempt.
    Returned,
    /// The buffer failed; the lease is unchanged.
    Failed,
}

impl SettleOutcome {
    fn of(action: &Settle, settled: Settled) -> SettleOutcome {
        match (action, settled) {
            (_, Settled::NotInFlight) => SettleOutcome::NotInFlight,
            (_, Settled::Extended(until)) => SettleOutcome::Extended(until),
            (Settle::Nack { retry, reason, .. }, settled) => SettleOutcome::Nacked {
                retry: *retry,
                reason: reason.clone(),
                settled,
            },
            (Settle::Release, settled) => SettleOutcome::ConnectionLost(Some(settled)),
            (Settle::Return, _) => SettleOutcome::Returned,
            (Settle::Ack | Settle::Touch, _) => SettleOutcome::Acked,
        }
    }
}

/// Settles an entry's leases: `action` goes to the first one the backend still holds (the
/// primary, else a copy), and the copies after it are acked, since that settle accounts for the
/// message. `Touch` extends the primary only (a copy the backend still holds expires there and
/// comes back, to be acked from the connector's record).
async fn settle_entry(
    buffer: &SharedBuffer,
    entry: &Held,
    action: &Settle,
) -> Result<Settled, BufferError> {
    let outcome = buffer.settle(&entry.token, action.clone()).await;
    if *action == Settle::Touch || entry.copies.is_empty() {
        return outcome;
    }
    let mut outcome = outcome;
    let mut next = 0;
    while matches!(outcome, Ok(Settled::NotInFlight)) && next < entry.copies.len() {
        outcome = buffer.settle(&entry.copies[next], action.clone()).await;
        next += 1;
    }
    if matches!(&outcome, Ok(s) if *s != Settled::NotInFlight) {
        ack_copies(buffer, &entry.copies[next..]).await;
    }
    outcome
}

/// Acks copies of a message that another lease accounts for.
async fn ack_copies(buffer: &SharedBuffer, copies: &[LeaseToken]) {
    for token in copies {
        if let Err(e) = buffer.settle(token, Settle::Ack).await {
            tracing::warn!(message_id = %token.message_id, error = %e, "Extra copy not acked; it comes back after its lease");
        }
    }
}

impl Hub {
    /// Settles `message_id` for `conn` with what its connector asked for (and reported about
    /// its delivery, for the message trace).
    pub async fn settle(
        &self,
        conn: &Conn,
        message_id: &str,
        action: Settle,
        report: Option<&DeliveryReport>,
    ) -> SettleOutcome {
        let touch = action == Settle::Touch;
        let claimed = conn.lock().leases.claim(message_id, touch);
        let Some(claim) = claimed else {
            self.record(
                Some(conn),
                message_id,
                None,
                &SettleOutcome::NotInFlight,
                None,
            );
            return SettleOutcome::NotInFlight;
        };
        let answer = settle_entry(self.buffer(), &claim.entry, &action).await;
        let outcome = match &answer {
            Ok(settled) => SettleOutcome::of(&action, settled.clone()),
            Err(e) => {
                self.metrics()
                    .inc("webhook_relay_buffer_errors_total", &[("op", "settle")]);
                tracing::warn!(channel = %self.channel(), message_id, error = %e, "Settle failed; lease kept");
                SettleOutcome::Failed
            }
        };
        conn.lock().leases.finish(&claim, answer.as_ref().ok());
        self.record(
            Some(conn),
            message_id,
            Some(claim.entry.received_at),
            &outcome,
            report,
        );
        if !touch {
            self.wake_dispatcher();
        }
        outcome
    }

    /// Runs `work`, a settle `conn` started, to its end even when the request or stream that
    /// started it goes away first: the connection's close waits for it ([`Conn::settles_done`]),
    /// and so does the relay's shutdown (the hub's task tracker). Callers bound how many they
    /// start: a WebSocket reader at most `MAX_CONCURRENT_SETTLES` per socket, an HTTP ack one
    /// per request (requests are bounded by the admission budget), a peer request one per
    /// answer task.
    pub fn start_settle<F>(&self, conn: &Conn, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker().spawn(conn.settles.track_future(work))
    }

    /// Hands the leases of a connection that went away back to the buffer in the background, as
    /// failed attempts (one task per closed connection).
    pub(super) fn release(self: &Arc<Self>, conn: &Arc<Conn>, entries: Vec<(String, Held)>) {
        if entries.is_empty() {
            return;
        }
        let (hub, conn) = (self.clone(), conn.clone());
        self.tracker().spawn(async move {
            for (message_id, entry) in entries {
                let outcome = match settle_entry(hub.buffer(), &entry, &Settle::Release).await {
                    Ok(settled) => SettleOutcome::ConnectionLost(Some(settled)),
                    Err(e) => {
                        tracing::warn!(message_id, error = %e, "Release failed; the lease will expire");
                        SettleOutcome::ConnectionLost(None)
                    }
                };
                let received_at = Some(entry.received_at);
                hub.record(Some(&conn), &message_id, received_at, &outcome, None);
            }
        });
    }

    /// Returns leases no connection could take: ready again, no attempt counted. One task
    /// per batch of leases the dispatcher took.
    pub(super) fn give_back(&self, tokens: Vec<LeaseToken>) {
        if tokens.is_empty() {
            return;
        }
        for token in &tokens {
            self.record(
                None,
                token.message_id.as_str(),
                None,
                &SettleOutcome::Returned,
                None,
            );
        }
        let buffer = self.buffer().clone();
        self.tracker().spawn(async move {
            for token in tokens {
                if let Err(e) = buffer.settle(&token, Settle::Return).await {
                    tracing::warn!(message_id = %token.message_id, error = %e, "Return failed; the lease will expire");
                }
            }
        });
    }

    /// Accounts for leases of `conn` that lapsed: each comes back from the buffer as a failed
    /// attempt; the copies held with them are acked in the background (one task per sweep of a
    /// connection that held copies).
    pub(super) fn lapsed(&self, conn: &Conn, lapsed: Lapsed) {
        for message_id in &lapsed.message_ids {
            self.record(
                Some(conn),
                message_id,
                None,
                &SettleOutcome::LeaseExpired,
                None,
            );
        }
        if !lapsed.copies.is_empty() {
            let buffer = self.buffer().clone();
            self.tracker()
                .spawn(async move { ack_copies(&buffer, &lapsed.copies).await });
        }
    }

    /// Where every settle ends: counts the outcome for the channel and the connection, and
    /// adds it to the message's trace (with what the connector reported).
    pub(super) fn record(
        &self,
        conn: Option<&Conn>,
        message_id: &str,
        received_at: Option<Timestamp>,
        outcome: &SettleOutcome,
        report: Option<&DeliveryReport>,
    ) {
        tracing::trace!(channel = %self.channel(), message_id, ?outcome, "Settled");
        self.trace_settled(conn, message_id, outcome, report);
        let channel = self.channel();
        let metrics = self.metrics();
        let redelivered = |reason: &str| {
            metrics.inc(
                "webhook_relay_redeliveries_total",
                &[("channel", channel), ("reason", reason)],
            )
        };
        match outcome {
            SettleOutcome::Acked => {
                metrics.inc(
                    "webhook_relay_messages_acked_total",
                    &[("channel", channel)],
                );
                if let Some(received_at) = received_at {
                    let age = (Timestamp::now().0 - received_at.0).to_std();
                    metrics.observe(
                        "webhook_relay_end_to_end_seconds",
                        &[("channel", channel)],
                        age.unwrap_or(Duration::ZERO).as_secs_f64(),
                    );
                }
                if let Some(conn) = conn {
                    conn.lock().acked += 1;
                }
            }
            SettleOutcome::Nacked { retry, settled, .. } => {
                metrics.inc(
                    "webhook_relay_messages_nacked_total",
                    &[
                        ("channel", channel),
                        ("retry", if *retry { "true" } else { "false" }),
                    ],
                );
                match settled {
                    Settled::Requeued { .. } => redelivered("nack"),
                    Settled::DeadLettered(reason) => metrics.inc(
                        "webhook_relay_dead_lettered_total",
                        &[("channel", channel), ("reason", reason.as_str())],
                    ),
                    _ => {}
                }
                if let Some(conn) = conn {
                    conn.lock().nacked += 1;
                }
            }
            SettleOutcome::ConnectionLost(settled) => {
                redelivered("connection_lost");
                if let Some(Settled::DeadLettered(reason)) = settled {
                    metrics.inc(
                        "webhook_relay_dead_lettered_total",
                        &[("channel", channel), ("reason", reason.as_str())],
                    );
                }
            }
            SettleOutcome::LeaseExpired => redelivered("lease_expired"),
            SettleOutcome::NotInFlight
            | SettleOutcome::Extended(_)
            | SettleOutcome::Returned
            | SettleOutcome::Failed => {}
        }
    }
}

impl Conn {
    /// Waits until the settles this connection started have finished, at most `within`: a
    /// connection closes only after the acks its connector sent are settled (or the bound has
    /// passed, e.g. the shutdown deadline).
    pub async fn settles_done(&self, within: Duration) -> bool {
        self.settles.close();
        let started = Instant::now();
        let done = tokio::time::timeout(within, self.settles.wait())
            .await
            .is_ok();
        if !done {
            tracing::warn!(connection_id = %self.id, waited_ms = started.elapsed().as_millis() as u64, "Settles still running at close");
        }
        done
    }
}
