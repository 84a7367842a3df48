//! `redis_publish` (`docs/reference/module-contract.md` §3.8, R-96): `PUBLISH <channel>` of
//! `{"payload","headers","message_id","webhook_id"}` over the shared Redis connection.
//!
//! Settings, first match wins: channel from module-config `channel`, the webhook-level
//! `redis.channel`, then `"webhook_events"`; server from the `connection` entry, then the
//! webhook-level `redis` object. Zero subscribers is still success: pub/sub keeps nothing.

use std::sync::Arc;

use super::client_slot::ClientSlot;
use super::redis_client::{RedisClient, RedisServer};
use super::settings;
use super::shared::SharedClients;
use super::{Delivery, ModuleSettings, Output, OutputError, record};
use crate::settings::Problems;
use crate::settings::Reader;

const DEFAULT_CHANNEL: &str = "webhook_events";

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let channel = mc.string(problems, "channel");
    mc.finish(problems, false);

    let redis_object = match settings.fallback("redis") {
        Some(serde_json::Value::Object(o)) => Some(o),
        Some(other) => {
            settings.error(
                problems,
                "redis",
                format!("expected an object, got {other}"),
            );
            None
        }
        None => None,
    };
    let mut legacy = redis_object.map(|o| Reader::detached(o, format!("{}.redis", settings.path)));
    let legacy_channel = legacy.as_mut().and_then(|r| r.string(problems, "channel"));

    let server = match (settings.connection.is_some(), redis_object, legacy.as_mut()) {
        (false, Some(object), Some(r)) => {
            RedisServer::from_webhook_object(r, problems, object, settings.outbound_strict)
        }
        _ => RedisServer::from_connection(settings, problems),
    };
    if let Some(r) = legacy.as_mut() {
        // Read so they are not reported as unknown; with a connection they are not used.
        if settings.connection.is_some() {
            let _ = (r.get("host"), r.get("port"), r.get("allowed_hosts"));
        }
        r.finish(problems, false);
    }

    let channel = channel
        .or(legacy_channel)
        .unwrap_or_else(|| DEFAULT_CHANNEL.to_owned());
    if channel.is_empty() {
        mc.error(problems, "channel", "must not be empty");
        return None;
    }
    let out: Box<dyn Output> = Box::new(RedisPublish {
        channel,
        server: server?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

struct RedisPublish {
    channel: String,
    server: RedisServer,
    shared: Arc<SharedClients>,
    client: ClientSlot<RedisClient>,
}

impl RedisPublish {
    async fn client(&self) -> Result<Arc<RedisClient>, OutputError> {
        self.client.get_or(self.server.client(&self.shared)).await
    }
}

#[async_trait::async_trait]
impl Output for RedisPublish {
    async fn setup(&self) -> Result<(), OutputError> {
        self.client().await.map(|_| ())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let client = self.client().await?;
        let message = record::envelope(delivery).to_string();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(message);
        let _receivers: i64 = client.query("PUBLISH", &cmd).await?;
        Ok(())
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

impl std::fmt::Debug for RedisPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPublish")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}
