//! A stored message: the envelope bytes as the AMQP body, and what can change after publishing
//! in `wc-*` headers. Every state change (requeue, dead-letter, replay) publishes a new copy
//! with updated headers and acks the old one, so the headers are durable with the message.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use webhook_connect_protocol::Envelope;

use crate::DeadLetterReason;
use crate::millis::now_ms;

/// Delivery mode of persistent messages.
const PERSISTENT: u8 = 2;

/// What the headers of a stored copy say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Webhook queue (`default` stores other ids; the envelope's id is not the queue).
    pub queue: String,
    pub message_id: String,
    pub sequence: u64,
    pub received_ms: i64,
    pub expires_ms: Option<i64>,
    /// Deliveries made before this copy was published.
    pub count: u32,
    /// Not deliverable before (ordered-channel token copies only).
    pub ready_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Set on dead letters.
    pub reason: Option<DeadLetterReason>,
    /// When it was dead-lettered.
    pub dead_at_ms: Option<i64>,
}

impl Meta {
    /// The facts of a freshly published envelope.
    pub(crate) fn fresh(queue: &str, e: &Envelope) -> Meta {
        Meta {
            queue: queue.to_owned(),
            message_id: e.message_id.as_str().to_owned(),
            sequence: e.sequence,
            received_ms: e.received_at.unix_millis(),
            expires_ms: e.expires_at.map(|t| t.unix_millis()),
            ..Meta::default()
        }
    }

    /// Properties of a copy: persistent, headers, and the time left as AMQP `expiration` for
    /// copies that wait in a webhook queue (the broker then moves them to the dead letters
    /// on time, R-65).
    pub(crate) fn properties(&self, with_expiration: bool) -> BasicProperties {
        let mut h = FieldTable::default();
        let mut put = |k: &str, v: AMQPValue| {
            h.insert(ShortString::from(k), v);
        };
        put("wc-queue", long(&self.queue));
        put("wc-id", long(&self.message_id));
        put("wc-seq", int(self.sequence));
        put("wc-rcv", AMQPValue::LongLongInt(self.received_ms));
        put("wc-count", AMQPValue::LongLongInt(i64::from(self.count)));
        if let Some(x) = self.expires_ms {
            put("wc-exp", AMQPValue::LongLongInt(x));
        }
        if let Some(x) = self.ready_ms {
            put("wc-ready", AMQPValue::LongLongInt(x));
        }
        if let Some(x) = &self.last_error {
            put("wc-err", long(x));
        }
        if let Some(r) = self.reason {
            put("wc-reason", long(r.as_str()));
        }
        if let Some(x) = self.dead_at_ms {
            put("wc-at", AMQPValue::LongLongInt(x));
        }
        let mut p = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(ShortString::from(self.message_id.clone()))
            .with_headers(h);
        if with_expiration && let Some(exp) = self.expires_ms {
            let left = (exp - now_ms()).max(0);
            p = p.with_expiration(ShortString::from(left.to_string()));
        }
        p
    }

    /// Reads the headers of a delivered copy. A copy the broker dead-lettered on its own
    /// (expired in its webhook queue) has no `wc-reason`; `x-death` says why.
    pub(crate) fn read(props: &BasicProperties) -> Meta {
        let empty = FieldTable::default();
        let h = props.headers().as_ref().unwrap_or(&empty);
        let get = |k: &str| h.inner().get(k);
        let text = |k: &str| get(k).and_then(as_text);
        let num = |k: &str| get(k).and_then(as_i64);
        let reason = text("wc-reason")
            .as_deref()
            .and_then(DeadLetterReason::parse)
            .or_else(|| broker_death(h).map(|(r, _)| r));
        Meta {
            queue: text("wc-queue").unwrap_or_default(),
            message_id: text("wc-id").unwrap_or_default(),
            sequence: num("wc-seq")
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            received_ms: num("wc-rcv").unwrap_or(0),
            expires_ms: num("wc-exp"),
            count: num("wc-count")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            ready_ms: num("wc-ready"),
            last_error: text("wc-err"),
            reason,
            dead_at_ms: num("wc-at").or_else(|| broker_death(h).and_then(|(_, at)| at)),
        }
    }

    /// Whether this dead letter was moved by the broker (TTL) and not yet counted by us.
    pub(crate) fn is_broker_dead_letter(props: &BasicProperties) -> bool {
        let Some(h) = props.headers().as_ref() else {
            return false;
        };
        !h.contains_key("wc-reason") && broker_death(h).is_some()
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn int(n: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX))
}

fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn as_i64(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// Reason and time (ms) of the broker's last `x-death` entry, if any.
fn broker_death(h: &FieldTable) -> Option<(DeadLetterReason, Option<i64>)> {
    let deaths = h.inner().get("x-death")?.as_array()?;
    let first = deaths.as_slice().first()?.as_field_table()?;
    let reason = match first.inner().get("reason").and_then(as_text).as_deref() {
        Some("expired") => DeadLetterReason::Expired,
        Some("delivery_limit") => DeadLetterReason::MaxAttempts,
        _ => DeadLetterReason::Rejected,
    };
    let at = first
        .inner()
        .get("time")
        .and_then(as_i64)
        .map(|s| s.saturating_mul(1000));
    Some((reason, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let m = Meta {
            queue: "stripe".into(),
            message_id: "msg_1".into(),
            sequence: 7,
            received_ms: 1_000,
            expires_ms: Some(2_000),
            count: 3,
            ready_ms: Some(1_500),
            last_error: Some("target down".into()),
            reason: Some(DeadLetterReason::MaxAttempts),
            dead_at_ms: Some(1_800),
        };
        assert_eq!(Meta::read(&m.properties(false)), m);
        let p = m.properties(true);
        assert!(p.expiration().is_some());
        assert!(!Meta::is_broker_dead_letter(&p));
    }
}
