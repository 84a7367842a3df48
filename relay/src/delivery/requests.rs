//! Ack requests of the wire protocol turned into settles: one code path for WebSocket frames,
//! `POST /connect/ack` and a peer instance's request, so all report the same outcomes.

use std::sync::Arc;
use std::time::Duration;

use webhook_connect_buffer::{Settle, Settled};
use webhook_connect_protocol::ack::{AckAction, AckRequest};
use webhook_connect_protocol::frames::{AckItemResult, AckOutcome, AckStatus};
use webhook_connect_protocol::report::DeliveryReport;

use super::{Conn, Hub, SettleOutcome};

/// What to do with each id.
#[derive(Debug, Clone)]
pub enum Action {
    /// Ack.
    Ack,
    /// Nack.
    Nack {
        /// Requeue or dead-letter.
        retry: bool,
        /// Requested delay.
        delay_ms: Option<u64>,
        /// Reason text.
        reason: Option<String>,
    },
    /// Extend the lease.
    Touch,
}

impl From<&AckRequest> for Action {
    fn from(r: &AckRequest) -> Action {
        match r.action {
            AckAction::Ack => Action::Ack,
            AckAction::Touch => Action::Touch,
            AckAction::Nack => Action::Nack {
                retry: r.retry,
                delay_ms: r.delay_ms,
                reason: r.reason.clone(),
            },
        }
    }
}

impl Action {
    fn to_settle(&self, max_delay_ms: u64) -> Settle {
        match self {
            Action::Ack => Settle::Ack,
            Action::Touch => Settle::Touch,
            Action::Nack {
                retry,
                delay_ms,
                reason,
            } => Settle::Nack {
                retry: *retry,
                delay: delay_ms.map(|ms| Duration::from_millis(ms.min(max_delay_ms))),
                reason: reason.clone(),
            },
        }
    }
}

/// The wire status and outcome of one settle.
pub fn item_result(message_id: &str, outcome: &SettleOutcome) -> AckItemResult {
    let ok = |outcome| (AckStatus::Ok, Some(outcome));
    let (status, outcome) = match outcome {
        SettleOutcome::Acked => ok(AckOutcome::Acked),
        SettleOutcome::Nacked { settled, .. } => ok(match settled {
            Settled::DeadLettered(_) => AckOutcome::DeadLettered,
            Settled::Requeued { .. } => AckOutcome::Requeued,
            _ => AckOutcome::Unknown,
        }),
        SettleOutcome::Extended(_) => ok(AckOutcome::Extended),
        SettleOutcome::NotInFlight
        | SettleOutcome::LeaseExpired
        | SettleOutcome::ConnectionLost(_)
        | SettleOutcome::Returned => (AckStatus::NotInFlight, None),
        SettleOutcome::Failed => (AckStatus::Error, None),
    };
    AckItemResult {
        message_id: message_id.to_owned(),
        status,
        outcome,
    }
}

/// Settles every id; distinct ids are settled concurrently so they can share one durable commit.
/// Results come back in request order, and an id repeated in one request is processed once and
/// reported for each occurrence (`docs/reference/wire-protocol.md` B.4).
pub async fn settle_ids(
    hub: &Hub,
    conn: &Conn,
    ids: &[String],
    action: &Action,
    report: Option<&DeliveryReport>,
) -> Vec<AckItemResult> {
    let max_delay = hub.settings().requeue_delay_max_ms;
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut distinct: Vec<&str> = Vec::with_capacity(ids.len());
    for id in ids {
        index.entry(id.as_str()).or_insert_with(|| {
            distinct.push(id.as_str());
            distinct.len() - 1
        });
    }
    let outcomes = futures_util::future::join_all(
        distinct
            .iter()
            .map(|id| hub.settle(conn, id, action.to_settle(max_delay), report)),
    )
    .await;
    ids.iter()
        .zip(
            ids.iter()
                .map(|id| index.get(id.as_str()).and_then(|&i| outcomes.get(i))),
        )
        .map(|(id, outcome)| item_result(id, outcome.unwrap_or(&SettleOutcome::Failed)))
        .collect()
}

/// Settles the entries of one `POST /connect/ack` (each with its own action). Entries are
/// settled concurrently so they share durable commits; an id repeated in the request is settled
/// once (its first entry) and reported for each occurrence.
pub async fn settle_requests(hub: &Hub, conn: &Conn, entries: &[AckRequest]) -> Vec<AckItemResult> {
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let unique: Vec<&AckRequest> = entries
        .iter()
        .filter(|r| {
            let next = first.len();
            *first.entry(r.message_id.as_str()).or_insert(next) == next
        })
        .collect();
    let actions: Vec<Action> = unique.iter().map(|r| Action::from(*r)).collect();
    let settled = futures_util::future::join_all(unique.iter().zip(&actions).map(|(r, action)| {
        let ids = std::slice::from_ref(&r.message_id);
        settle_ids(hub, conn, ids, action, r.report.as_ref())
    }))
    .await;
    entries
        .iter()
        .map(|r| {
            first
                .get(r.message_id.as_str())
                .and_then(|i| settled.get(*i)?.first().cloned())
                .unwrap_or_else(|| item_result(&r.message_id, &SettleOutcome::Failed))
        })
        .collect()
}

/// [`settle_requests`] for `conn` as a task of the hub: it runs to its end even if the caller
/// goes away meanwhile (an HTTP client that disconnects), and the connection's close and the
/// relay's shutdown wait for it.
pub async fn settle_detached(
    hub: &Arc<Hub>,
    conn: Arc<Conn>,
    entries: Vec<AckRequest>,
) -> Vec<AckItemResult> {
    let ids: Vec<String> = entries.iter().map(|r| r.message_id.clone()).collect();
    let (settler, holder) = (hub.clone(), conn.clone());
    let task = hub.start_settle(&conn, async move {
        settle_requests(&settler, &holder, &entries).await
    });
    match task.await {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(channel = %hub.channel(), error = %e, "Settle task failed");
            ids.iter()
                .map(|id| item_result(id, &SettleOutcome::Failed))
                .collect()
        }
    }
}
