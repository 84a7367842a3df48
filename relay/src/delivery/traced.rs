//! What delivery tells the message trace ([`crate::trace`]): a lease handed to a connection, and
//! how each delivery ended. The hub calls these where a delivery is sent and from
//! [`Hub::record`], where every settle ends; recording never waits (the trace store queues or
//! writes in memory).

use webhook_connect_buffer::Settled;
use webhook_connect_protocol::Timestamp;
use webhook_connect_protocol::report::DeliveryReport;

use super::{Conn, Hub, SettleOutcome};
use crate::trace::{AttemptOutcome, TraceEvent};

impl Hub {
    /// How often `message_id` was replayed, when the trace knows it here (for the v2
    /// `replay_count` of the delivery).
    pub(super) fn replays_of(&self, message_id: &str) -> u32 {
        self.trace_store().replays_known_locally(message_id)
    }

    /// `message_id` went to `conn` as its `delivery_count`-th delivery.
    pub(super) fn trace_delivered(&self, conn: &Conn, message_id: &str, delivery_count: u32) {
        self.trace_store().record(
            self.channel(),
            message_id,
            TraceEvent::Delivered {
                at: Timestamp::now(),
                connection_id: conn.id.as_str().to_owned(),
                transport: conn.info.kind.as_str().to_owned(),
                delivery_count,
            },
        );
    }

    /// A settle of `message_id` (by `conn`, when known) ended as `outcome`, with what the
    /// connector reported: an attempt's end is traced (and a dead-lettering after it); touches,
    /// stale settles, returns and buffer failures end no attempt and are not.
    pub(super) fn trace_settled(
        &self,
        conn: Option<&Conn>,
        message_id: &str,
        outcome: &SettleOutcome,
        report: Option<&DeliveryReport>,
    ) {
        let (attempt, reason, settled) = match outcome {
            SettleOutcome::Acked => (AttemptOutcome::Acked, None, None),
            SettleOutcome::Nacked {
                reason, settled, ..
            } => (AttemptOutcome::Nacked, reason.clone(), Some(settled)),
            SettleOutcome::LeaseExpired => (AttemptOutcome::LeaseExpired, None, None),
            SettleOutcome::ConnectionLost(settled) => {
                (AttemptOutcome::ConnectionLost, None, settled.as_ref())
            }
            SettleOutcome::NotInFlight
            | SettleOutcome::Extended(_)
            | SettleOutcome::Returned
            | SettleOutcome::Failed => return,
        };
        let at = Timestamp::now();
        let trace = self.trace_store();
        trace.record(
            self.channel(),
            message_id,
            TraceEvent::Settled {
                at,
                connection_id: conn.map(|c| c.id.as_str().to_owned()),
                outcome: attempt,
                reason,
                report: report.cloned(),
            },
        );
        if let Some(Settled::DeadLettered(why)) = settled {
            trace.record(
                self.channel(),
                message_id,
                TraceEvent::DeadLettered {
                    at,
                    reason: why.as_str().to_owned(),
                },
            );
        }
    }
}
