//! Declaring exchanges and queues, reading queue depths, and the delay buckets.
//!
//! - `{exchange}`: topic exchange; each webhook queue is bound with its own name as key.
//! - `{exchange}.dlx`: direct exchange; each webhook queue dead-letters into it (broker-side
//!   TTL expiry) with its DLQ's name as routing key, and the backend publishes its own dead
//!   letters the same way.
//! - `{exchange}.delay`: headers exchange in front of the delay queues, one per bucket
//!   (`x-message-ttl` = the bucket), which dead-letter back into `{exchange}` with the
//!   message's own routing key, i.e. into its webhook queue.

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::link::{Link, not_found};
use super::names::{ChannelNames, dead_letter_exchange, delay_exchange, delay_queue};
use crate::BufferError;

/// Requeue delays are rounded up to one of these (ms); longer ones wait the longest.
pub(crate) const BUCKETS_MS: [u64; 27] = [
    10, 20, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000,
    20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
    3_600_000,
];

/// Delays shorter than this requeue directly.
pub(crate) const MIN_DELAY_MS: u64 = 5;

/// The bucket of a delay: the smallest one at least as long.
pub(crate) fn bucket(ms: u64) -> u64 {
    BUCKETS_MS
        .iter()
        .copied()
        .find(|b| *b >= ms)
        .unwrap_or(BUCKETS_MS[BUCKETS_MS.len() - 1])
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the three exchanges and every delay queue. Idempotent.
pub(crate) async fn declare_exchanges(link: &Link, exchange: &str) -> Result<(), BufferError> {
    let chan = link.channel().await?;
    let r = async {
        let opts = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let delay = delay_exchange(exchange);
        for (name, kind) in [
            (exchange.to_owned(), ExchangeKind::Topic),
            (dead_letter_exchange(exchange), ExchangeKind::Direct),
            (delay.clone(), ExchangeKind::Headers),
        ] {
            link.bounded(chan.exchange_declare(&name, kind, opts, FieldTable::default()))
                .await
                .map_err(|e| link.error(e))?;
        }
        for ms in BUCKETS_MS {
            let q = delay_queue(exchange, ms);
            let mut args = FieldTable::default();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms as i64));
            args.insert("x-dead-letter-exchange".into(), text(exchange));
            link.bounded(chan.queue_declare(&q, durable(), args))
                .await
                .map_err(|e| link.error(e))?;
            let mut bind = FieldTable::default();
            bind.insert("x-match".into(), text("all"));
            bind.insert("wc-bucket".into(), AMQPValue::LongLongInt(ms as i64));
            link.bounded(chan.queue_bind(&q, &delay, "", QueueBindOptions::default(), bind))
                .await
                .map_err(|e| link.error(e))?;
        }
        Ok(())
    }
    .await;
    link.recycle(chan).await;
    r
}

/// Header selecting the delay bucket on the delay exchange.
pub(crate) fn bucket_headers(ms: u64, mut h: FieldTable) -> FieldTable {
    h.insert(
        ShortString::from("wc-bucket"),
        AMQPValue::LongLongInt(ms as i64),
    );
    h
}

/// Ready messages in `queue`; `None` when it does not exist. Uses its own channel, since a
/// missing queue closes the channel asking.
pub(crate) async fn depth(link: &Link, queue: &str) -> Result<Option<u64>, BufferError> {
    let chan = link.channel().await?;
    let r = depth_on(link, &chan, queue).await;
    link.recycle(chan).await;
    r
}

async fn depth_on(link: &Link, chan: &Channel, queue: &str) -> Result<Option<u64>, BufferError> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match link
        .bounded(chan.queue_declare(queue, passive, FieldTable::default()))
        .await
    {
        Ok(q) => Ok(Some(u64::from(q.message_count()))),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(link.error(e)),
    }
}

/// Declares a webhook queue, its `….dlq` (bound to the DLX) and its dead-letter stream unless
/// they exist. Arguments of an
/// existing queue cannot change, so an existing queue is left as it is: its `x-max-length`
/// stays the limit it was created with, while the backend enforces the current limit itself.
pub(crate) async fn declare_webhook_queue(
    link: &Link,
    exchange: &str,
    names: &ChannelNames,
    webhook_id: &str,
    max_len: u64,
) -> Result<(), BufferError> {
    let queue = names.queue(webhook_id);
    let dlq = names.dead_letters(webhook_id);
    let dlx = dead_letter_exchange(exchange);
    let chan = link.channel().await?;
    let r = async {
        let mut stream = FieldTable::default();
        stream.insert("x-queue-type".into(), text("stream"));
        link.bounded(chan.queue_declare(&names.dead_stream(webhook_id), durable(), stream))
            .await
            .map_err(|e| link.error(e))?;
        link.bounded(chan.queue_declare(&dlq, durable(), FieldTable::default()))
            .await
            .map_err(|e| link.error(e))?;
        link.bounded(chan.queue_bind(
            &dlq,
            &dlx,
            &dlq,
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await
        .map_err(|e| link.error(e))?;
        if depth(link, &queue).await?.is_none() {
            let mut args = FieldTable::default();
            args.insert(
                "x-max-length".into(),
                AMQPValue::LongLongInt(i64::try_from(max_len).unwrap_or(i64::MAX)),
            );
            args.insert("x-overflow".into(), text("reject-publish"));
            args.insert("x-dead-letter-exchange".into(), text(&dlx));
            args.insert("x-dead-letter-routing-key".into(), text(&dlq));
            link.bounded(chan.queue_declare(&queue, durable(), args))
                .await
                .map_err(|e| link.error(e))?;
        }
        link.bounded(chan.queue_bind(
            &queue,
            exchange,
            &queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await
        .map_err(|e| link.error(e))?;
        Ok(())
    }
    .await;
    link.recycle(chan).await;
    r
}

/// Declares a plain durable queue (record, order token).
pub(crate) async fn declare_plain(link: &Link, queue: &str) -> Result<u64, BufferError> {
    let chan = link.channel().await?;
    let r = link
        .bounded(chan.queue_declare(queue, durable(), FieldTable::default()))
        .await
        .map(|q| u64::from(q.message_count()))
        .map_err(|e| link.error(e));
    link.recycle(chan).await;
    r
}

/// Deletes queues (missing ones are fine).
pub(crate) async fn delete_queues(link: &Link, queues: &[String]) -> Result<(), BufferError> {
    for q in queues {
        let chan = link.channel().await?;
        let r = link
            .bounded(chan.queue_delete(q, QueueDeleteOptions::default()))
            .await;
        link.recycle(chan).await;
        match r {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(link.error(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_a_bucket() {
        assert_eq!(bucket(1), 10);
        assert_eq!(bucket(10), 10);
        assert_eq!(bucket(320), 500);
        assert_eq!(bucket(60_000), 60_000);
        assert_eq!(bucket(u64::MAX), 3_600_000);
        assert!(BUCKETS_MS.windows(2).all(|w| w[0] < w[1]));
    }
}
