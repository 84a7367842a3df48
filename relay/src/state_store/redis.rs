//! The shared state store: one Redis hash `{prefix}:state:channels` (field = channel name,
//! value = the record as JSON) used by every relay instance (`docs/reference/http-api.md` §7).
//!
//! Updates are compare-and-set: the record is read, changed in Rust, and written by a script
//! only if nobody wrote it in between (else the change is re-applied to the new value). Each
//! write is announced on `{prefix}:state:events` as `{instance}|{channel}`, so the other
//! instances apply rotations, pauses and admin-created channels at once; after the
//! subscription was lost they reload everything ([`Change::All`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use ::redis::{AsyncCommands, Script};
use tokio::sync::{broadcast, oneshot};
use webhook_connect_buffer::redis::connection::{Conn, Endpoint};
use webhook_connect_buffer::redis::pubsub::follow_channel;
use webhook_connect_buffer::redis::valid_prefix;

use super::{Change, ChannelRecord, StateError};

/// How often a conflicting update is retried before giving up.
const MAX_CAS_ATTEMPTS: usize = 16;

/// Writes ARGV[3] (or deletes when empty) only when the field still holds ARGV[2] ('' =
/// absent), then announces the change. Returns 1 when written, 0 on conflict.
const CAS_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == false then current = '' end
if current ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// The Redis state store.
pub struct RedisStore {
    endpoint: Endpoint,
    prefix: String,
    conn: Conn,
    key: String,
    events: String,
    instance: String,
    timeout: Duration,
    cas: Script,
    /// The feed's first receiver, made at connect time so nothing announced before the relay
    /// starts following is lost.
    changes: Mutex<Option<broadcast::Receiver<Change>>>,
    stop_listener: Mutex<Option<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects (bounded by `timeout`) and starts listening for other instances' changes:
    /// to the server at `url`, or to the Redis Cluster of `cluster_nodes` when that is not
    /// empty. The store is one hash, so on a cluster it lives on one master.
    pub async fn connect(
        url: &str,
        cluster_nodes: &[String],
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisStore, StateError> {
        if !valid_prefix(prefix) {
            return Err(StateError::Invalid(
                "state.key_prefix must match ^[A-Za-z0-9_.-]{1,64}$".into(),
            ));
        }
        let endpoint = Endpoint::open(url, cluster_nodes).map_err(|e| {
            let field = if cluster_nodes.is_empty() {
                "state.redis_url"
            } else {
                "buffer.redis.cluster_nodes"
            };
            StateError::Invalid(format!("{field}: {e}"))
        })?;
        let conn = tokio::time::timeout(timeout, endpoint.connect(timeout))
            .await
            .map_err(|_| StateError::Unavailable("connecting to Redis timed out".into()))?
            .map_err(unavailable)?;
        let instance = format!("{:016x}", rand::random::<u64>());
        let events = format!("{prefix}:state:events");
        let (changes, first) = broadcast::channel(1024);
        let (stop_tx, stop_rx) = oneshot::channel();
        // One subscription task per state store (ended by `close`).
        tokio::spawn(listen(
            endpoint.clone(),
            events.clone(),
            instance.clone(),
            changes.clone(),
            stop_rx,
            timeout,
        ));
        Ok(RedisStore {
            endpoint,
            prefix: prefix.to_owned(),
            conn,
            key: format!("{prefix}:state:channels"),
            events,
            instance,
            timeout,
            cas: Script::new(CAS_SCRIPT),
            changes: Mutex::new(Some(first)),
            stop_listener: Mutex::new(Some(stop_tx)),
        })
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        tokio::time::timeout(self.timeout, op)
            .await
            .map_err(|_| StateError::Unavailable("Redis did not answer in time".into()))?
            .map_err(unavailable)
    }

    async fn raw(&self, channel: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.hget(&self.key, channel)).await
    }

    fn decode(channel: &str, text: &str) -> Result<ChannelRecord, StateError> {
        serde_json::from_str(text)
            .map_err(|e| StateError::Corrupt(format!("channel \"{channel}\": {e}")))
    }

    /// The record of `channel`.
    pub async fn get(&self, channel: &str) -> Result<Option<ChannelRecord>, StateError> {
        self.raw(channel)
            .await?
            .map(|text| Self::decode(channel, &text))
            .transpose()
    }

    /// Every record, by channel name.
    pub async fn all(&self) -> Result<BTreeMap<String, ChannelRecord>, StateError> {
        let mut conn = self.conn.clone();
        let raw: BTreeMap<String, String> = self.bounded(conn.hgetall(&self.key)).await?;
        raw.into_iter()
            .map(|(name, text)| Self::decode(&name, &text).map(|r| (name, r)))
            .collect()
    }

    /// Writes `next` ('' deletes) if the field still holds `expected`; true when written.
    async fn compare_and_set(
        &self,
        channel: &str,
        expected: &str,
        next: &str,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let announcement = format!("{}|{channel}", self.instance);
        let mut invocation = self.cas.key(&self.key);
        invocation
            .arg(channel)
            .arg(expected)
            .arg(next)
            .arg(&self.events)
            .arg(announcement);
        let written: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(written == 1)
    }

    /// Changes the record of `channel` atomically with respect to the other instances.
    pub async fn update(
        &self,
        channel: &str,
        change: impl Fn(&mut ChannelRecord),
    ) -> Result<ChannelRecord, StateError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.raw(channel).await?.unwrap_or_default();
            let mut record = if current.is_empty() {
                ChannelRecord::default()
            } else {
                Self::decode(channel, &current)?
            };
            change(&mut record);
            let next =
                serde_json::to_string(&record).map_err(|e| StateError::Corrupt(e.to_string()))?;
            if self.compare_and_set(channel, &current, &next).await? {
                return Ok(record);
            }
        }
        Err(StateError::Unavailable(format!(
            "channel \"{channel}\" kept changing; update abandoned"
        )))
    }

    /// Forgets `channel`.
    pub async fn remove(&self, channel: &str) -> Result<(), StateError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(current) = self.raw(channel).await? else {
                return Ok(());
            };
            if self.compare_and_set(channel, &current, "").await? {
                return Ok(());
            }
        }
        Err(StateError::Unavailable(format!(
            "channel \"{channel}\" kept changing; removal abandoned"
        )))
    }

    /// PING answered within `within`.
    pub async fn health_check(&self, within: Duration) -> bool {
        let mut conn = self.conn.clone();
        matches!(
            tokio::time::timeout(
                within,
                ::redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// Changes announced by other instances, from the moment the store connected. There is
    /// one feed; later calls get `None`.
    pub fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The connection, prefix and instance id, for the peer ack link.
    pub fn peer_link(&self) -> crate::peer_acks::PeerLink {
        crate::peer_acks::PeerLink {
            client: self.endpoint.clone(),
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            instance: self.instance.clone(),
        }
    }

    /// Stops listening for changes.
    pub fn close(&self) {
        if let Some(stop) = self
            .stop_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = stop.send(());
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Forwards other instances' announcements; after every (re)subscription it sends
/// [`Change::All`], since changes made while unsubscribed were missed.
async fn listen(
    endpoint: Endpoint,
    events: String,
    instance: String,
    changes: broadcast::Sender<Change>,
    stop: oneshot::Receiver<()>,
    timeout: Duration,
) {
    let own = format!("{instance}|");
    let on_subscribed = || {
        let _ = changes.send(Change::All);
    };
    let on_message = |text: String| {
        if text.starts_with(&own) {
            return;
        }
        if let Some((_, channel)) = text.split_once('|') {
            let _ = changes.send(Change::Channel(channel.to_owned()));
        }
    };
    follow_channel(endpoint, events, timeout, stop, on_subscribed, on_message).await;
}
