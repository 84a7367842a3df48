//! The `ChannelStats` object (`docs/reference/http-api.md` §4.3) from the buffer's real numbers and the hub.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use webhook_connect_buffer::BufferError;

use crate::channels::Channel;

/// `ChannelStats`: queue numbers of one channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelStats {
    channel: String,
    messages_queued: u64,
    messages_in_flight: u64,
    messages_delivered: u64,
    messages_expired: u64,
    messages_dead_lettered: u64,
    connected_clients: usize,
    dead_letters_queued: u64,
    /// `null` when nothing waits.
    oldest_queued_age_seconds: Option<f64>,
    paused: bool,
    /// Messages waiting per webhook id (in channel details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_stats: Option<BTreeMap<String, u64>>,
}

/// `ChannelStats` of `channel`.
pub async fn channel_stats(channel: &Channel) -> Result<ChannelStats, BufferError> {
    let stats = channel.hub.buffer().stats(&channel.name).await?;
    let t = &stats.total;
    Ok(ChannelStats {
        channel: channel.name.clone(),
        messages_queued: t.queued,
        messages_in_flight: t.in_flight,
        messages_delivered: t.delivered,
        messages_expired: t.expired,
        messages_dead_lettered: t.dead_lettered,
        connected_clients: channel.hub.connections().len(),
        dead_letters_queued: t.dead_letters,
        oldest_queued_age_seconds: t.oldest_queued_age_seconds,
        paused: channel.hub.is_paused(),
        webhook_stats: None,
    })
}
