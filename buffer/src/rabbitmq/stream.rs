//! Reading a RabbitMQ stream (the dead letters of a webhook queue) by offset over AMQP 0-9-1:
//! `basic.consume` with `x-stream-offset` on a private channel. Reading never changes the
//! stream, so two reads of the same range see the same entries.
//!
//! AMQP 0-9-1 has no way to ask a stream for its last offset, and a consumer is never told
//! that it has caught up. [`tail`] therefore subscribes at `next` and then appends a small
//! probe entry (header `wc-probe`): the probe's offset, once it arrives, is the end of
//! everything appended before the call. Readers skip probes.

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

use super::link::Link;
use crate::BufferError;

/// Header of a probe entry (its value names the probe).
pub(crate) const PROBE: &str = "wc-probe";

/// Most deliveries a read holds unacked (stream consumers need a prefetch). A read starts at
/// the beginning of the chunk holding its first offset, so it may pass over up to a chunk of
/// earlier entries: the window stays wide whatever the range.
const CREDIT: u16 = 2000;

/// Deliveries acked together.
const ACK_EVERY: u64 = 500;

/// One entry of a stream.
pub(crate) struct Entry {
    pub offset: u64,
    pub properties: BasicProperties,
    pub data: Vec<u8>,
}

impl Entry {
    /// Whether this is a probe written by [`tail`] (not a dead letter).
    pub(crate) fn is_probe(&self) -> bool {
        self.properties
            .headers()
            .as_ref()
            .is_some_and(|h| h.contains_key(PROBE))
    }
}

fn offset_of(props: &BasicProperties) -> Option<u64> {
    match props.headers().as_ref()?.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        _ => None,
    }
}

/// A consumer on a private channel, starting at `start`.
async fn subscribe(
    link: &Link,
    stream: &str,
    start: AMQPValue,
    credit: u16,
) -> Result<(Channel, lapin::Consumer), BufferError> {
    let chan = link.channel().await?;
    let started = async {
        link.bounded(chan.basic_qos(credit, BasicQosOptions::default()))
            .await
            .map_err(|e| link.error(e))?;
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-stream-offset"), start);
        link.bounded(chan.basic_consume(stream, "", BasicConsumeOptions::default(), args))
            .await
            .map_err(|e| link.error(e))
    }
    .await;
    match started {
        Ok(consumer) => Ok((chan, consumer)),
        Err(e) => {
            let _ = chan.close(200, "stream read failed").await;
            Err(e)
        }
    }
}

/// The next delivery within the operation timeout.
async fn next(
    link: &Link,
    chan: &Channel,
    consumer: &mut lapin::Consumer,
) -> Result<(u64, lapin::message::Delivery), BufferError> {
    let d = match tokio::time::timeout(link.timeout(), consumer.next()).await {
        Err(_) => return Err(BufferError::Timeout),
        Ok(None) => {
            return Err(BufferError::Unavailable(
                "rabbitmq: stream read ended".into(),
            ));
        }
        Ok(Some(Err(e))) => return Err(BufferError::Unavailable(format!("rabbitmq: {e}"))),
        Ok(Some(Ok(d))) => d,
    };
    // Stream deliveries are acked only to grant credit: every [`ACK_EVERY`], all at once.
    if d.delivery_tag % ACK_EVERY == 0 {
        link.bounded(chan.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }))
            .await
            .map_err(|e| link.error(e))?;
    }
    let offset = offset_of(&d.properties)
        .ok_or_else(|| BufferError::Corrupt("stream delivery without x-stream-offset".into()))?;
    Ok((offset, d))
}

/// The offset one past every entry appended to `stream` before this call.
pub(crate) async fn tail(link: &Link, stream: &str) -> Result<u64, BufferError> {
    let (chan, mut consumer) =
        subscribe(link, stream, AMQPValue::LongString("next".into()), CREDIT).await?;
    let r = async {
        let probe = rand::random::<u64>().to_string();
        let mut h = FieldTable::default();
        h.insert(
            ShortString::from(PROBE),
            AMQPValue::LongString(LongString::from(probe.clone().into_bytes())),
        );
        let confirm = link
            .publish("", stream, &[], BasicProperties::default().with_headers(h))
            .await?;
        link.confirmed(confirm).await?;
        loop {
            let (offset, d) = next(link, &chan, &mut consumer).await?;
            let mine = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(PROBE).cloned())
                .is_some_and(
                    |v| matches!(v, AMQPValue::LongString(s) if s.as_bytes() == probe.as_bytes()),
                );
            if mine {
                return Ok(offset);
            }
        }
    }
    .await;
    let _ = chan.close(200, "tail read").await;
    r
}

/// The entries of `stream` with offsets in `from..to`, oldest first (probes included).
pub(crate) async fn read(
    link: &Link,
    stream: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Entry>, BufferError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let start = AMQPValue::LongLongInt(i64::try_from(from).unwrap_or(i64::MAX));
    let (chan, mut consumer) = subscribe(link, stream, start, CREDIT).await?;
    let r = async {
        let mut out = Vec::new();
        loop {
            let (offset, d) = next(link, &chan, &mut consumer).await?;
            if offset >= to {
                return Ok(out);
            }
            if offset >= from {
                out.push(Entry {
                    offset,
                    properties: d.properties,
                    data: d.data,
                });
            }
            if offset + 1 >= to {
                return Ok(out);
            }
        }
    }
    .await;
    let _ = chan.close(200, "stream read").await;
    r
}
