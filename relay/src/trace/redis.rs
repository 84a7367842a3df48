//! The trace store shared by every relay instance of a Redis state store: per message one list
//! `{prefix}:trace:msg:{message_id}` (the first element names the channel, then one JSON event
//! per step, at most `max_events`), expiring `max_age` after its last event; per channel one
//! sorted set `{prefix}:trace:channel:{channel}` of message ids by first-seen time, trimmed to
//! `max_messages` (the lists of the dropped ids are deleted with them). On a Redis Cluster the
//! keys of one round trip lie in different slots, so the writes are sent one command at a time,
//! each to the master of its key's slot ([`RedisTraces::apply`]).

use std::collections::BTreeSet;
use std::time::Duration;

use webhook_connect_buffer::redis::connection::{Conn, Endpoint};
use webhook_connect_protocol::Timestamp;

use super::event::{MessageTrace, TraceEvent};
use super::{Limits, Record, TraceError};

/// The Redis trace store.
pub struct RedisTraces {
    conn: Conn,
    prefix: String,
    limits: Limits,
    timeout: Duration,
}

impl std::fmt::Debug for RedisTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTraces")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> TraceError {
    TraceError(format!("trace store unavailable: {e}"))
}

/// The first element of a message's list: which channel it belongs to.
const CHANNEL_MARK: &str = "channel:";

impl RedisTraces {
    /// Connects (bounded by `timeout`) to the server at `url`, or to the Redis Cluster of
    /// `cluster_nodes` when that is not empty.
    pub async fn connect(
        url: &str,
        cluster_nodes: &[String],
        prefix: &str,
        limits: Limits,
        timeout: Duration,
    ) -> Result<RedisTraces, TraceError> {
        let endpoint = Endpoint::open(url, cluster_nodes)
            .map_err(|e| TraceError(format!("the trace store's Redis: {e}")))?;
        let conn = tokio::time::timeout(timeout, endpoint.connect(timeout))
            .await
            .map_err(|_| unavailable("connecting to Redis timed out"))?
            .map_err(unavailable)?;
        Ok(RedisTraces {
            conn,
            prefix: prefix.to_owned(),
            limits,
            timeout,
        })
    }

    fn message_key(&self, message_id: &str) -> String {
        format!("{}:trace:msg:{message_id}", self.prefix)
    }

    fn channel_key(&self, channel: &str) -> String {
        format!("{}:trace:channel:{channel}", self.prefix)
    }

    async fn run<T: ::redis::FromRedisValue>(
        &self,
        pipe: &::redis::Pipeline,
    ) -> Result<T, TraceError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .map_err(|_| unavailable("Redis did not answer in time"))?
            .map_err(unavailable)
    }

    /// Runs the commands of `pipe`, whose answers are not needed: in one round trip on a
    /// single server, one command after the other on a cluster (a pipeline must stay in one
    /// slot there), in order either way.
    async fn apply(&self, pipe: &::redis::Pipeline) -> Result<(), TraceError> {
        if !matches!(self.conn, Conn::Cluster(_)) {
            return self.run::<()>(pipe).await;
        }
        let mut conn = self.conn.clone();
        for cmd in pipe.cmd_iter() {
            tokio::time::timeout(self.timeout, cmd.query_async::<::redis::Value>(&mut conn))
                .await
                .map_err(|_| unavailable("Redis did not answer in time"))?
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Appends the records in one round trip, then trims the channels they touched.
    pub async fn write(&self, records: Vec<Record>) -> Result<(), TraceError> {
        let now = Timestamp::now().unix_millis();
        let ttl = self.limits.max_age.as_secs().max(1);
        let max_list = self.limits.max_events as isize; // + the channel mark
        let mut pipe = ::redis::pipe();
        let mut channels = BTreeSet::new();
        for record in &records {
            let Ok(event) = serde_json::to_string(&record.event) else {
                continue;
            };
            let key = self.message_key(&record.message_id);
            // The channel mark goes first, once (only onto a list that does not exist yet).
            pipe.cmd("EVAL")
                .arg("if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('RPUSH', KEYS[1], ARGV[1]) end return 1")
                .arg(1)
                .arg(&key)
                .arg(format!("{CHANNEL_MARK}{}", record.channel))
                .ignore();
            pipe.cmd("RPUSH").arg(&key).arg(event).ignore();
            pipe.cmd("LTRIM").arg(&key).arg(0).arg(max_list).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
            pipe.cmd("ZADD")
                .arg(self.channel_key(&record.channel))
                .arg("NX")
                .arg(now)
                .arg(&record.message_id)
                .ignore();
            channels.insert(record.channel.clone());
        }
        self.apply(&pipe).await?;
        for channel in channels {
            self.trim(&channel, now).await?;
        }
        Ok(())
    }

    /// Drops the channel's ids older than `max_age` and those past `max_messages`, with
    /// their lists.
    async fn trim(&self, channel: &str, now: i64) -> Result<(), TraceError> {
        let key = self.channel_key(channel);
        let oldest = now - self.limits.max_age.as_millis() as i64;
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({oldest}"))
            .cmd("ZCARD")
            .arg(&key);
        let (old, count): (Vec<String>, usize) = self.run(&pipe).await?;
        let excess = count.saturating_sub(old.len() + self.limits.max_messages);
        let mut dropped = old;
        if excess > 0 {
            let mut pipe = ::redis::pipe();
            pipe.cmd("ZRANGE")
                .arg(&key)
                .arg(dropped.len())
                .arg(dropped.len() + excess - 1);
            let (more,): (Vec<String>,) = self.run(&pipe).await?;
            dropped.extend(more);
        }
        if dropped.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for chunk in dropped.chunks(500) {
            pipe.cmd("ZREM").arg(&key).arg(chunk).ignore();
            for id in chunk {
                pipe.cmd("DEL").arg(self.message_key(id)).ignore();
            }
        }
        self.apply(&pipe).await
    }

    /// The trace of `message_id`, if it is still kept.
    pub async fn get(&self, message_id: &str) -> Result<Option<MessageTrace>, TraceError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("LRANGE")
            .arg(self.message_key(message_id))
            .arg(0)
            .arg(-1);
        let (items,): (Vec<String>,) = self.run(&pipe).await?;
        let mut items = items.into_iter();
        let Some(channel) = items
            .next()
            .and_then(|m| m.strip_prefix(CHANNEL_MARK).map(str::to_owned))
        else {
            return Ok(None);
        };
        let events: Vec<TraceEvent> = items
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        Ok(Some(MessageTrace {
            message_id: message_id.to_owned(),
            channel,
            events,
        }))
    }

    /// Forgets every trace of `channel`.
    pub async fn remove_channel(&self, channel: &str) -> Result<(), TraceError> {
        let key = self.channel_key(channel);
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZRANGE").arg(&key).arg(0).arg(-1);
        let (ids,): (Vec<String>,) = self.run(&pipe).await?;
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.cmd("DEL").arg(self.message_key(id)).ignore();
        }
        pipe.cmd("DEL").arg(&key).ignore();
        self.apply(&pipe).await
    }
}
