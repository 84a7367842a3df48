//! What the message trace records (`docs/operations.md` "Message trace"): one event per step
//! of a message's life, appended in order, and the view of `GET /messages/{message_id}`
//! folded from them.

use serde::{Deserialize, Serialize};
use webhook_connect_protocol::Timestamp;
use webhook_connect_protocol::report::DeliveryReport;

use super::view::{Attempt, HistoryEvent, MessageTraceView};

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The connector acked.
    Acked,
    /// The connector nacked.
    Nacked,
    /// The lease ran out before an answer.
    LeaseExpired,
    /// The connection that held it went away.
    ConnectionLost,
}

/// One step of a message's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// Stored by ingest.
    Accepted {
        /// When.
        at: Timestamp,
        /// Its webhook id.
        webhook_id: String,
        /// When its TTL ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<Timestamp>,
    },
    /// Handed to a connection.
    Delivered {
        /// When.
        at: Timestamp,
        /// The connection (or long-poll client).
        connection_id: String,
        /// `websocket`, `sse` or `long_poll`.
        transport: String,
        /// Deliveries so far, this one included.
        #[serde(default)]
        delivery_count: u32,
    },
    /// A delivery ended.
    Settled {
        /// When.
        at: Timestamp,
        /// The connection that had it, when known (a release after the connection went away
        /// names none: it ends the last open attempt).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection_id: Option<String>,
        /// How.
        outcome: AttemptOutcome,
        /// The nack's reason text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// What the connector reported about its local delivery.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<DeliveryReport>,
    },
    /// Moved to the dead letters.
    DeadLettered {
        /// When.
        at: Timestamp,
        /// `rejected`, `max_attempts` or `expired`.
        reason: String,
    },
    /// Put back from the dead letters by an administrator.
    Replayed {
        /// When.
        at: Timestamp,
    },
}

impl AttemptOutcome {
    /// Its name in the API (`acked`, `nacked`, `lease_expired`, `connection_lost`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Acked => "acked",
            AttemptOutcome::Nacked => "nacked",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::ConnectionLost => "connection_lost",
        }
    }
}

impl TraceEvent {
    /// When it happened.
    pub fn at(&self) -> Timestamp {
        match self {
            TraceEvent::Accepted { at, .. }
            | TraceEvent::Delivered { at, .. }
            | TraceEvent::Settled { at, .. }
            | TraceEvent::DeadLettered { at, .. }
            | TraceEvent::Replayed { at } => *at,
        }
    }
}

/// The events of one message, in the order they were recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageTrace {
    /// The message.
    pub message_id: String,
    /// Its channel.
    pub channel: String,
    /// Its events.
    pub events: Vec<TraceEvent>,
}

impl MessageTrace {
    /// The state the events lead to: `queued`, `in_flight`, `delivered`, `dead_lettered` or
    /// `expired` (dead-lettered for its TTL, or past its TTL and never delivered).
    pub fn state(&self, now: Timestamp) -> &'static str {
        let mut state = "queued";
        let mut expires_at = None;
        for event in &self.events {
            state = match event {
                TraceEvent::Accepted { expires_at: e, .. } => {
                    expires_at = *e;
                    state
                }
                TraceEvent::Delivered { .. } => "in_flight",
                TraceEvent::Settled {
                    outcome: AttemptOutcome::Acked,
                    ..
                } => "delivered",
                TraceEvent::Settled { .. } if state == "in_flight" => "queued",
                TraceEvent::Settled { .. } => state,
                TraceEvent::DeadLettered { reason, .. } if reason == "expired" => "expired",
                TraceEvent::DeadLettered { .. } => "dead_lettered",
                TraceEvent::Replayed { .. } => {
                    // A replayed message lives its TTL again from now (http-api §5.8).
                    expires_at = None;
                    "queued"
                }
            };
        }
        if state == "queued" && expires_at.is_some_and(|e| e <= now) {
            return "expired";
        }
        state
    }

    /// How often it was replayed.
    pub fn replays(&self) -> u32 {
        self.events
            .iter()
            .filter(|e| matches!(e, TraceEvent::Replayed { .. }))
            .count() as u32
    }

    /// The body of `GET /admin/webhook-connect/messages/{message_id}`.
    pub fn view(&self, now: Timestamp) -> MessageTraceView {
        let mut webhook_id = None;
        let mut accepted_at = None;
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut events: Vec<HistoryEvent> = Vec::new();
        for event in &self.events {
            match event {
                TraceEvent::Accepted {
                    at, webhook_id: w, ..
                } => {
                    webhook_id = Some(w.clone());
                    accepted_at = Some(*at);
                }
                TraceEvent::Delivered {
                    at,
                    connection_id,
                    transport,
                    delivery_count,
                } => attempts.push(Attempt {
                    at: *at,
                    connection_id: connection_id.clone(),
                    transport: transport.clone(),
                    delivery_count: *delivery_count,
                    outcome: IN_FLIGHT.to_owned(),
                    reason: None,
                    target_status: None,
                    error: None,
                    response_snippet: None,
                    settled_at: None,
                }),
                TraceEvent::Settled {
                    at,
                    connection_id,
                    outcome,
                    reason,
                    report,
                } => {
                    let open = attempts.iter_mut().rev().find(|a| {
                        a.outcome == IN_FLIGHT
                            && connection_id.as_ref().is_none_or(|c| a.connection_id == *c)
                    });
                    let Some(attempt) = open else {
                        continue;
                    };
                    attempt.outcome = outcome.as_str().to_owned();
                    attempt.settled_at = Some(*at);
                    attempt.reason.clone_from(reason);
                    if let Some(r) = report {
                        attempt.target_status = r.target_status;
                        attempt.error.clone_from(&r.error);
                        attempt.response_snippet.clone_from(&r.response_snippet);
                    }
                }
                TraceEvent::DeadLettered { at, reason } => events.push(HistoryEvent {
                    event: "dead_lettered".into(),
                    at: *at,
                    reason: Some(reason.clone()),
                }),
                TraceEvent::Replayed { at } => events.push(HistoryEvent {
                    event: "replayed".into(),
                    at: *at,
                    reason: None,
                }),
            }
        }
        MessageTraceView {
            message_id: self.message_id.clone(),
            channel: self.channel.clone(),
            webhook_id,
            state: self.state(now).to_owned(),
            accepted_at,
            replays: self.replays(),
            attempts,
            events,
        }
    }
}

/// The outcome of an attempt not ended yet.
const IN_FLIGHT: &str = "in_flight";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + s * 1000).unwrap_or_else(Timestamp::now)
    }

    fn delivered(s: i64) -> TraceEvent {
        TraceEvent::Delivered {
            at: at(s),
            connection_id: "ws_1".into(),
            transport: "websocket".into(),
            delivery_count: 1,
        }
    }

    fn settled(s: i64, outcome: AttemptOutcome, status: u16) -> TraceEvent {
        TraceEvent::Settled {
            at: at(s),
            connection_id: Some("ws_1".into()),
            outcome,
            reason: Some(format!("target returned {status}")),
            report: Some(DeliveryReport::answered(status, b"body", None)),
        }
    }

    #[test]
    fn attempts_pair_deliveries_with_their_settlement() {
        let trace = MessageTrace {
            message_id: "msg_1".into(),
            channel: "c".into(),
            events: vec![
                TraceEvent::Accepted {
                    at: at(0),
                    webhook_id: "w".into(),
                    expires_at: None,
                },
                delivered(1),
                settled(2, AttemptOutcome::Nacked, 500),
                delivered(3),
                settled(4, AttemptOutcome::Nacked, 400),
                TraceEvent::DeadLettered {
                    at: at(4),
                    reason: "rejected".into(),
                },
            ],
        };
        let v = serde_json::to_value(trace.view(at(5))).unwrap_or_default();
        assert_eq!(v["state"], "dead_lettered");
        assert_eq!(v["attempts"][0]["target_status"], 500);
        assert_eq!(v["attempts"][1]["target_status"], 400);
        assert_eq!(v["attempts"][1]["response_snippet"], "body");
        assert_eq!(v["attempts"][1]["outcome"], "nacked");
        assert_eq!(v["events"][0]["reason"], "rejected");
    }

    #[test]
    fn state_follows_the_last_step() {
        let mut trace = MessageTrace::default();
        trace.events.push(TraceEvent::Accepted {
            at: at(0),
            webhook_id: "w".into(),
            expires_at: Some(at(10)),
        });
        assert_eq!(trace.state(at(1)), "queued");
        assert_eq!(trace.state(at(11)), "expired");
        trace.events.push(delivered(1));
        assert_eq!(trace.state(at(11)), "in_flight");
        trace.events.push(TraceEvent::Settled {
            at: at(2),
            connection_id: None,
            outcome: AttemptOutcome::ConnectionLost,
            reason: None,
            report: None,
        });
        assert_eq!(trace.state(at(2)), "queued");
        trace.events.push(TraceEvent::DeadLettered {
            at: at(3),
            reason: "max_attempts".into(),
        });
        assert_eq!(trace.state(at(3)), "dead_lettered");
        trace.events.push(TraceEvent::Replayed { at: at(4) });
        assert_eq!(trace.state(at(20)), "queued");
        assert_eq!(trace.replays(), 1);
        trace.events.push(delivered(5));
        trace.events.push(settled(6, AttemptOutcome::Acked, 200));
        assert_eq!(trace.state(at(7)), "delivered");
    }
}
