//! Following one Redis Pub/Sub channel for as long as a process runs: subscribe, hand each
//! payload to a callback, and after a lost connection subscribe again a second later. Used by
//! the buffer's wake-ups and by the relay's shared state store.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;

/// Follows `channel` until `stop` fires (or its sender is dropped). `on_subscribed` runs after
/// every successful (re)subscription, so a caller can catch up on what it may have missed;
/// `on_message` gets each text payload. Connecting and subscribing are bounded by `timeout`.
pub async fn follow_channel(
    client: ::redis::Client,
    channel: String,
    timeout: Duration,
    mut stop: oneshot::Receiver<()>,
    mut on_subscribed: impl FnMut() + Send,
    mut on_message: impl FnMut(String) + Send,
) {
    loop {
        let session = async {
            let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(timeout, pubsub.subscribe(&channel))
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
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = session => {}
        }
        tracing::debug!(channel = %channel, "Redis subscription lost; retrying");
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
