//! Exchange and queue names of the RabbitMQ backend.
//!
//! A webhook queue is `{exchange}.{channel}.{webhook_id}` as in the design, but each name is
//! written with its byte length before it (`webhook_connect.6:orders.6:stripe`), so no channel
//! or webhook id can produce another's name: channel `a` + webhook `b.c` and channel
//! `a.b` + webhook `c` differ, and the routing key of one queue is never a prefix of another's.
//! The same text is the queue's binding key on the topic exchange; names hold no `*` or `#`
//! words, so a binding matches exactly its own queue.

/// Longest queue name RabbitMQ accepts.
const MAX_NAME: usize = 255;

/// Checks an exchange name: `^[A-Za-z0-9_.-]{1,64}$` (like `buffer.redis.key_prefix`).
pub(crate) fn valid_exchange(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The names of one channel.
#[derive(Debug, Clone)]
pub(crate) struct ChannelNames {
    base: String,
}

impl ChannelNames {
    pub(crate) fn new(exchange: &str, channel: &str) -> ChannelNames {
        ChannelNames {
            base: format!("{exchange}.{}:{channel}", channel.len()),
        }
    }

    /// The webhook queue (also its routing key).
    pub(crate) fn queue(&self, webhook_id: &str) -> String {
        format!("{}.{}:{webhook_id}", self.base, webhook_id.len())
    }

    /// The queue receiving what the broker dead-letters from a webhook queue (TTL expiry; also
    /// its binding key on the DLX). The backend moves it into the dead-letter stream.
    pub(crate) fn dead_letters(&self, webhook_id: &str) -> String {
        format!("{}.dlq", self.queue(webhook_id))
    }

    /// The dead-letter stream of a webhook queue.
    pub(crate) fn dead_stream(&self, webhook_id: &str) -> String {
        format!("{}.dls", self.queue(webhook_id))
    }

    /// The queue holding the channel record (settings, sequence, counters).
    pub(crate) fn record(&self) -> String {
        format!("{}.record", self.base)
    }

    /// The queue holding the ordered-delivery token.
    pub(crate) fn order(&self) -> String {
        format!("{}.order", self.base)
    }

    /// Whether every name of the channel with these webhook ids fits RabbitMQ's limit.
    pub(crate) fn fits(&self, webhook_ids: &[String]) -> bool {
        self.record().len() <= MAX_NAME
            && webhook_ids
                .iter()
                .all(|w| self.dead_letters(w).len() <= MAX_NAME)
    }
}

/// The topic exchange of the webhook queues is `{exchange}`; these are the others.
pub(crate) fn dead_letter_exchange(exchange: &str) -> String {
    format!("{exchange}.dlx")
}

/// Headers exchange routing requeued messages into the delay queue of their bucket.
pub(crate) fn delay_exchange(exchange: &str) -> String {
    format!("{exchange}.delay")
}

/// The delay queue of one bucket (messages wait `ms` there, then dead-letter back).
pub(crate) fn delay_queue(exchange: &str, ms: u64) -> String {
    format!("{exchange}.delay.{ms}")
}

/// The queue holding the registry of channel names.
pub(crate) fn registry(exchange: &str) -> String {
    format!("{exchange}.channels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_names_get_distinct_queues_r64() {
        let a = ChannelNames::new("p", "a");
        let ab = ChannelNames::new("p", "a.b");
        assert_ne!(a.queue("b.c"), ab.queue("c"));
        assert_ne!(a.queue("x"), a.queue("x.y"));
        assert!(!ab.queue("c").starts_with(&a.queue("b")));
        assert_eq!(a.queue("x"), "p.1:a.1:x");
        assert_eq!(a.dead_letters("x"), "p.1:a.1:x.dlq");
        assert_eq!(a.dead_stream("x"), "p.1:a.1:x.dls");
        // A webhook id never names a channel's own queues.
        assert_ne!(a.queue("record"), a.record());
        assert_ne!(a.queue("order"), a.order());
    }

    #[test]
    fn exchange_rules_and_length_limit() {
        assert!(valid_exchange("webhook_connect"));
        assert!(!valid_exchange(""));
        assert!(!valid_exchange("a b"));
        assert!(!valid_exchange(&"x".repeat(65)));
        let n = ChannelNames::new("p", "c");
        assert!(n.fits(&["w".into()]));
        assert!(!n.fits(&["w".repeat(250)]));
    }
}
