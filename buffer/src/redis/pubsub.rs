//! Following one Redis Pub/Sub channel for as long as a process runs: subscribe, hand each
//! payload to a callback, and after a lost connection subscribe again a second later. Used by
//! the buffer's wake-ups and by the relay's shared state store and peer ack link.
//!
//! On a Redis Cluster the subscription goes to the master serving the Pub/Sub channel name's
//! slot, where a `PUBLISH` through the cluster connection goes too: so `PUBLISH` counts every
//! instance's subscription (the peer ack link relies on that count), and a message published
//! by a script on another node reaches it as well (Redis forwards `PUBLISH` to every node).

use std::time::Duration;

use ::redis::{ConnectionInfo, ProtocolVersion, PushKind, Value};
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::connection::{Endpoint, cluster_builder};

/// Pause before subscribing again after the subscription was lost.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Follows `channel` until `stop` fires (or its sender is dropped). `on_subscribed` runs after
/// every successful (re)subscription, so a caller can catch up on what it may have missed;
/// `on_message` gets each text payload. Connecting and subscribing are bounded by `timeout`.
pub async fn follow_channel(
    endpoint: Endpoint,
    channel: String,
    timeout: Duration,
    mut stop: oneshot::Receiver<()>,
    mut on_subscribed: impl FnMut() + Send,
    mut on_message: impl FnMut(String) + Send,
) {
    loop {
        let session = async {
            match &endpoint {
                Endpoint::Single(client) => {
                    single_session(
                        client,
                        &channel,
                        timeout,
                        &mut on_subscribed,
                        &mut on_message,
                    )
                    .await
                }
                Endpoint::Cluster(nodes) => {
                    cluster_session(
                        nodes,
                        &channel,
                        timeout,
                        &mut on_subscribed,
                        &mut on_message,
                    )
                    .await
                }
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = session => {}
        }
        tracing::debug!(channel = %channel, "Redis subscription lost; retrying");
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
        }
    }
}

/// One subscription on a single server, until its connection ends.
async fn single_session(
    client: &::redis::Client,
    channel: &str,
    timeout: Duration,
    on_subscribed: &mut (impl FnMut() + Send),
    on_message: &mut (impl FnMut(String) + Send),
) -> Option<()> {
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(timeout, pubsub.subscribe(channel))
        .await
        .ok()?
        .ok()?;
    on_subscribed();
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        if let Ok(text) = msg.get_payload::<String>() {
            on_message(text);
        }
    }
    Some(())
}

/// One subscription on a cluster (RESP3 pushes), until a node's connection is lost: the
/// session then ends and the caller subscribes again with a fresh view of the cluster, which
/// after a failover names the promoted replica.
async fn cluster_session(
    nodes: &[ConnectionInfo],
    channel: &str,
    timeout: Duration,
    on_subscribed: &mut (impl FnMut() + Send),
    on_message: &mut (impl FnMut(String) + Send),
) -> Option<()> {
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let client = cluster_builder(nodes, timeout)
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
        .ok()?;
    let mut conn = tokio::time::timeout(timeout, client.get_async_connection())
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(timeout, conn.subscribe(channel))
        .await
        .ok()?
        .ok()?;
    on_subscribed();
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                if let Some(Value::BulkString(payload)) = push.data.get(1)
                    && let Ok(text) = String::from_utf8(payload.clone())
                {
                    on_message(text);
                }
            }
            PushKind::Disconnection => break,
            _ => {}
        }
    }
    // Kept open until here: dropping it ends the subscription.
    drop(conn);
    Some(())
}
