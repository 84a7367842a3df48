//! The `ChannelStats` object (`docs/reference/http-api.md` §4.3) from the buffer's real numbers and the hub.

use serde_json::{Value, json};
use webhook_connect_buffer::BufferError;

use crate::channels::Channel;

/// `ChannelStats` of `channel`.
pub async fn channel_stats_json(channel: &Channel) -> Result<Value, BufferError> {
    let stats = channel.hub.buffer().stats(&channel.name).await?;
    let t = &stats.total;
    Ok(json!({
        "channel": channel.name,
        "messages_queued": t.queued,
        "messages_in_flight": t.in_flight,
        "messages_delivered": t.delivered,
        "messages_expired": t.expired,
        "messages_dead_lettered": t.dead_lettered,
        "connected_clients": channel.hub.connections().len(),
        "dead_letters_queued": t.dead_letters,
        "oldest_queued_age_seconds": t.oldest_queued_age_seconds,
        "paused": channel.hub.is_paused(),
    }))
}
