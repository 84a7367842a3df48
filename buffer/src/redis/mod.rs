//! The `redis` backend (Redis ≥ 6.2): one Stream per webhook queue read through a consumer
//! group, dead letters in one Stream per webhook, and every state change in one Lua script
//! (`scripts.rs`), so several relay instances can share one Redis:
//!
//! - publish checks capacity, draws the sequence and XADDs in one step; it
//!   never trims, and acked or dead-lettered entries are deleted, so the stream length is
//!   the live depth;
//! - a lease records a fencing generation; settling with an older generation, or after the
//!   lease ran out, answers `NotInFlight`;
//! - expired leases, requeue delays and TTL expiry are handled by the scripts with the Redis
//!   server clock, by whichever instance runs next;
//! - delivery counts are stored beside the entries and survive restarts.
//!
//! `lease` waits with a local wake-up (publishes of this process) and polls for other
//! instances' publishes.
//!
//! On a Redis Cluster (`cluster_nodes`) each channel lives in one hash slot, so channels spread
//! over the masters; see `scripts.rs` and `docs/redis-cluster.md`.

pub mod connection;
mod keys;
pub mod maintenance;
mod policy;
pub mod pubsub;

pub use keys::valid_prefix;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::{RedisError, Value};
use async_trait::async_trait;
use webhook_connect_protocol::{Envelope, Timestamp};

use crate::detached::{Detachable, lease_detached};
use crate::lease_policy::LeasePolicy;
use crate::lease_wait::{LeaseAttempt, wait_for_leases};
use crate::millis::{ms, ts};
use crate::notify::Notifiers;
use crate::stored::decode_stored;
use crate::types::replay_result;
use crate::unreadable::{Known, UNREADABLE, dead_letter_envelope};
use crate::{
    Buffer, BufferError, ChannelStats, DeadLetter, DeadLetterPage, DeadLetterQuery,
    DeadLetterReason, Lease, LeaseToken, QueueSettings, QueueStats, Settle, Settled,
};
use connection::{Conn, Endpoint};
use keys::{channel_base, channels_key, health_key, queue_key, script_keys, wake_channel};
use policy::{Policies, PolicySettings};
use scripts::Scripts;

/// How often a waiting `lease` looks for messages published by other instances.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Dead letters read per round trip when scanning for replay or purge.
const SCAN_PAGE: usize = 500;
/// Runs of a script that requeues, when the channel's settings change under it.
const POLICY_TRIES: usize = 3;
/// A reader (relay process) of a queue's consumer group without leases, idle this long, is
/// forgotten when the channel is next ensured.
const READER_IDLE_MS: u64 = 24 * 3600 * 1000;

/// Options of the Redis backend (`buffer.redis.*`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://`, `rediss://` or `unix://` URL (a secret: may hold a password). Unused when
    /// `cluster_nodes` is set.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://` or `rediss://` URLs); empty: the server at
    /// `url`.
    pub cluster_nodes: Vec<String>,
    /// Replicas that must hold a publish before it counts as accepted (`WAIT`); 0: the
    /// master's answer is enough.
    pub wait_replicas: u32,
    /// Prefix of every key, `^[A-Za-z0-9_.-]{1,64}$`.
    pub key_prefix: String,
    /// Bound of every operation.
    pub operation_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379/0".into(),
            cluster_nodes: Vec::new(),
            wait_replicas: 0,
            key_prefix: "webhook_connect".into(),
            operation_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &"<redacted>")
            .field("cluster_nodes", &self.cluster_nodes.len())
            .field("wait_replicas", &self.wait_replicas)
            .field("key_prefix", &self.key_prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// Queues in Redis Streams. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisBuffer {
    inner: Arc<Inner>,
}

/// The shared state of a [`RedisBuffer`] (spawned lease calls hold it too).
pub struct Inner {
    conn: Conn,
    prefix: String,
    /// This process's name in the queues' consumer groups.
    reader: String,
    wait_replicas: u32,
    timeout: Duration,
    scripts: Scripts,
    notifiers: Arc<Notifiers>,
    /// Lease-policy settings of the channels seen, passed to the scripts that requeue.
    policies: Policies,
    closed: AtomicBool,
    /// Dropping it stops the wake-up listener.
    stop_listener: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// Where a walk over dead letters is (see `Inner::next_dead_page`).
#[derive(Debug)]
struct DeadWalk {
    base: String,
    /// Queues left to walk, the current one last.
    queues: Vec<String>,
    /// Where the next page of the current queue starts (an `XRANGE` bound).
    from: String,
    /// The current queue's newest dead letter when its walk started: entries dead-lettered
    /// during the walk (a replayed message failing again) are not walked.
    to: Option<String>,
    /// Only this message (the walk ends once it is found).
    message_id: Option<String>,
    done: bool,
}

impl std::ops::Deref for RedisBuffer {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl fmt::Debug for RedisBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBuffer")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: RedisError) -> BufferError {
    BufferError::Unavailable(format!("redis: {}", e.kind_str()))
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for RedisError {
    /// The error without the URL or arguments (they may hold secrets).
    fn kind_str(&self) -> String {
        match self.detail() {
            Some(detail) => format!("{:?}: {detail}", self.kind()),
            None => format!("{:?}", self.kind()),
        }
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d as i64),
        _ => None,
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

fn array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

fn bad_reply(what: &str) -> BufferError {
    BufferError::Unavailable(format!("redis: unexpected reply to {what}"))
}

/// One stream entry: id and its fields.
type Entry = (String, HashMap<String, Vec<u8>>);

fn entries(v: Value) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    for e in array(v)? {
        let mut parts = array(e)?.into_iter();
        let id = text(&parts.next()?)?;
        let raw = array(parts.next()?)?;
        let mut fields = HashMap::new();
        let mut it = raw.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            fields.insert(text(k)?, bytes(v)?.to_vec());
        }
        out.push((id, fields));
    }
    Some(out)
}

fn field_str(f: &HashMap<String, Vec<u8>>, k: &str) -> Option<String> {
    f.get(k).and_then(|v| String::from_utf8(v.clone()).ok())
}

fn field_i64(f: &HashMap<String, Vec<u8>>, k: &str) -> Option<i64> {
    field_str(f, k).and_then(|s| s.parse().ok())
}

/// The dead-letter id of a DLQ entry id `0-<n>`.
fn dead_id(entry_id: &str) -> Option<u64> {
    entry_id.strip_prefix("0-")?.parse().ok()
}

impl RedisBuffer {
    /// Connects (bounded by the operation timeout). Fails with `Invalid` for a bad URL or
    /// prefix and `Unavailable` when Redis cannot be reached.
    pub async fn connect(options: RedisOptions) -> Result<RedisBuffer, BufferError> {
        if !valid_prefix(&options.key_prefix) {
            return Err(BufferError::Invalid(
                "buffer.redis.key_prefix must match ^[A-Za-z0-9_.-]{1,64}$".into(),
            ));
        }
        let endpoint = Endpoint::open(&options.url, &options.cluster_nodes).map_err(|e| {
            let field = if options.cluster_nodes.is_empty() {
                "url"
            } else {
                "cluster_nodes"
            };
            BufferError::Invalid(format!("buffer.redis.{field}: {e}"))
        })?;
        let conn = tokio::time::timeout(
            options.operation_timeout,
            endpoint.connect(options.operation_timeout),
        )
        .await
        .map_err(|_| BufferError::Timeout)?
        .map_err(unavailable)?;
        let notifiers = Arc::new(Notifiers::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(wake_listener(
            endpoint,
            wake_channel(&options.key_prefix),
            notifiers.clone(),
            stop_rx,
            options.operation_timeout,
        ));
        Ok(RedisBuffer {
            inner: Arc::new(Inner {
                conn,
                prefix: options.key_prefix,
                reader: format!("relay-{:016x}", rand::random::<u64>()),
                wait_replicas: options.wait_replicas,
                timeout: options.operation_timeout,
                scripts: Scripts::new(),
                notifiers,
                policies: Policies::default(),
                closed: AtomicBool::new(false),
                stop_listener: std::sync::Mutex::new(Some(stop_tx)),
            }),
        })
    }
}

impl Inner {
    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    fn conn(&self) -> Result<Conn, BufferError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BufferError::Closed);
        }
        Ok(self.conn.clone())
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, BufferError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| BufferError::Timeout)?
            .map_err(unavailable)
    }

    /// Runs `script` with `keys` (see [`script_keys`]) and `args`.
    async fn script(
        &self,
        script: &::redis::Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<Value, BufferError> {
        let mut conn = self.conn()?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k.as_str());
        }
        for a in args {
            inv.arg(a.as_slice());
        }
        self.bounded(inv.invoke_async::<Value>(&mut conn)).await
    }

    /// Runs a script that applies the lease policy of `channel`: `args` builds its arguments
    /// from the policy (if known) and the policy's two script arguments. When the channel's
    /// stored settings are not the ones the policy was built from (changed through another
    /// instance, or not seen by this process yet), the script changes nothing and answers them;
    /// they are remembered and the script runs again.
    async fn script_with_policy(
        &self,
        channel: &str,
        script: &::redis::Script,
        keys: &[String],
        args: impl Fn(Option<&LeasePolicy>, [Vec<u8>; 2]) -> Vec<Vec<u8>>,
    ) -> Result<Value, BufferError> {
        let mut known = self.policies.get(channel);
        for _ in 0..POLICY_TRIES {
            let lease_policy = known.as_ref().map(PolicySettings::policy);
            let argv = args(lease_policy.as_ref(), policy::args(known.as_ref()));
            let reply = self.script(script, keys, &argv).await?;
            match policy::stale(&reply)? {
                None => return Ok(reply),
                Some(stored) => {
                    self.policies.remember(channel, stored);
                    known = Some(stored);
                }
            }
        }
        Err(BufferError::Unavailable(
            "redis: channel settings kept changing during the call".into(),
        ))
    }

    /// With `wait_replicas` set: waits until that many replicas of the master holding `key`
    /// have every write sent so far on this connection, and fails `Unavailable` when fewer did
    /// in time. The write itself stays on the master (a retry by the sender may store it a
    /// second time: at least once, never lost).
    async fn wait_for_replicas(&self, key: &str) -> Result<(), BufferError> {
        if self.wait_replicas == 0 {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let acked = self
            .bounded(conn.wait_replicas(key, self.wait_replicas, self.timeout / 2))
            .await?;
        if acked < i64::from(self.wait_replicas) {
            return Err(BufferError::Unavailable(format!(
                "redis: the write reached {acked} of {} replicas in time",
                self.wait_replicas
            )));
        }
        Ok(())
    }

    async fn query(&self, cmd: &::redis::Cmd) -> Result<Value, BufferError> {
        let mut conn = self.conn()?;
        self.bounded(cmd.query_async::<Value>(&mut conn)).await
    }

    fn base(&self, channel: &str) -> String {
        channel_base(&self.prefix, channel)
    }

    async fn channel_exists(&self, base: &str) -> Result<bool, BufferError> {
        let v = self
            .query(::redis::cmd("EXISTS").arg(format!("{base}:meta")))
            .await?;
        Ok(int(&v) == Some(1))
    }

    async fn all_queues(&self, base: &str) -> Result<Vec<String>, BufferError> {
        let v = self
            .query(::redis::cmd("SMEMBERS").arg(format!("{base}:allq")))
            .await?;
        let mut qs: Vec<String> = array(v)
            .ok_or_else(|| bad_reply("SMEMBERS"))?
            .iter()
            .filter_map(text)
            .collect();
        qs.sort();
        Ok(qs)
    }

    /// One lease attempt: the leases, and in how many ms something may become leasable.
    async fn lease_once(&self, channel: &str, max: usize) -> LeaseAttempt {
        let base = self.base(channel);
        let keys = script_keys(&base, &["meta", "allq", "gen", "reap", "rr"], None);
        let reply = self
            .script_with_policy(channel, &self.scripts.lease, &keys, |_, [built, delays]| {
                vec![
                    max.to_string().into_bytes(),
                    built,
                    delays,
                    self.reader.clone().into_bytes(),
                ]
            })
            .await?;
        let items = array(reply).ok_or_else(|| bad_reply("lease"))?;
        let mut it = items.into_iter();
        let wake = it
            .next()
            .and_then(|v| int(&v))
            .ok_or_else(|| bad_reply("lease"))?;
        if wake == -1 && it.len() == 0 {
            // Either nothing to wait for, or an unknown channel.
            if !self.channel_exists(&base).await? {
                return Err(BufferError::UnknownChannel(channel.to_owned()));
            }
        }
        let rest: Vec<Value> = it.collect();
        let mut leases = Vec::new();
        for chunk in rest.chunks(8) {
            let [q, id, m, seq, n, gen_, lexp, exp] = chunk else {
                return Err(bad_reply("lease"));
            };
            let (Some(queue), Some(entry_id), Some(raw)) = (text(q), text(id), bytes(m)) else {
                return Err(bad_reply("lease"));
            };
            let seq = int(seq).unwrap_or(0).max(0) as u64;
            let generation = int(gen_).unwrap_or(0);
            let expires_ms = text(exp).and_then(|s| s.parse::<i64>().ok());
            let handle = format!("{entry_id}|{generation}");
            let Some(envelope) = decode_stored(raw, seq, expires_ms) else {
                tracing::warn!(channel, webhook_id = %queue, entry_id = %entry_id, "Unreadable stored message dead-lettered");
                // On failure the lease runs out and the entry comes back here later; the other
                // leases of this call must not be lost over it.
                if let Err(e) = self
                    .settle_script(
                        channel,
                        &queue,
                        &handle,
                        "unreadable",
                        None,
                        Some(UNREADABLE),
                    )
                    .await
                {
                    tracing::warn!(channel, error = %e, "Could not dead-letter an unreadable entry");
                }
                continue;
            };
            leases.push(Lease {
                token: LeaseToken {
                    channel: channel.to_owned(),
                    queue,
                    message_id: envelope.message_id.clone(),
                    handle,
                },
                envelope,
                delivery_count: u32::try_from(int(n).unwrap_or(1)).unwrap_or(u32::MAX),
                lease_expires_at: ts(int(lexp).unwrap_or(0)),
            });
        }
        Ok((leases, u64::try_from(wake).ok()))
    }

    /// Hands back leases whose caller never received them: ready at once, attempt not counted.
    async fn unlease(&self, leases: &[Lease]) {
        for l in leases {
            let Some((entry_id, generation)) = l.token.handle.split_once('|') else {
                continue;
            };
            let keys = script_keys(
                &self.base(&l.token.channel),
                &["meta"],
                Some((&l.token.queue, &["l", "e", "n", "d"])),
            );
            let args = [
                l.token.queue.as_bytes().to_vec(),
                entry_id.as_bytes().to_vec(),
                generation.as_bytes().to_vec(),
                wake_channel(&self.prefix).into_bytes(),
                l.token.channel.as_bytes().to_vec(),
            ];
            if let Err(e) = self.script(&self.scripts.unlease, &keys, &args).await {
                tracing::warn!(message_id = %l.token.message_id, error = %e, "Could not hand back a lease; it will expire");
            }
        }
        self.notifiers
            .wake_all(leases.iter().map(|l| l.token.channel.as_str()));
    }

    async fn settle_script(
        &self,
        channel: &str,
        queue: &str,
        handle: &str,
        action: &str,
        delay: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<Settled, BufferError> {
        let Some((entry_id, generation)) = handle.split_once('|') else {
            return Ok(Settled::NotInFlight);
        };
        let base = self.base(channel);
        let mut keys = script_keys(
            &base,
            &["meta", "reap"],
            Some((queue, &["s", "l", "e", "d", "n", "t", "x", "c", "dlq"])),
        );
        keys.push(format!("{base}:dlid"));
        let argv = |policy: Option<&LeasePolicy>, [built, delays]: [Vec<u8>; 2]| {
            // A requested delay within the policy's bound; -1: the policy's own delay.
            let delay_ms = delay.map_or(-1, |d| {
                let d = policy.map_or(d, |p| p.requested_delay(d));
                i64::try_from(ms(d)).unwrap_or(i64::MAX)
            });
            vec![
                queue.as_bytes().to_vec(),
                entry_id.as_bytes().to_vec(),
                generation.as_bytes().to_vec(),
                action.as_bytes().to_vec(),
                delay_ms.to_string().into_bytes(),
                reason.unwrap_or("").as_bytes().to_vec(),
                built,
                delays,
                wake_channel(&self.prefix).into_bytes(),
                channel.as_bytes().to_vec(),
            ]
        };
        // Only a retry requeues; the other actions do not read the policy.
        let reply = if action == "retry" {
            self.script_with_policy(channel, &self.scripts.settle, &keys, argv)
                .await?
        } else {
            self.script(&self.scripts.settle, &keys, &argv(None, policy::args(None)))
                .await?
        };
        let items = array(reply).ok_or_else(|| bad_reply("settle"))?;
        let code = items
            .first()
            .and_then(int)
            .ok_or_else(|| bad_reply("settle"))?;
        let arg = items.get(1);
        // The scripts end with 1 when waiting lease calls should look again.
        let woke = items.len() >= 2 && items.last().and_then(int) == Some(1);
        if woke {
            self.notifiers.wake(channel);
        }
        Ok(match code {
            0 => Settled::NotInFlight,
            1 => Settled::Acked,
            2 => Settled::Requeued {
                ready_at: ts(arg.and_then(int).unwrap_or(0)),
            },
            3 => Settled::DeadLettered(
                arg.and_then(text)
                    .and_then(|r| DeadLetterReason::parse(&r))
                    .unwrap_or(DeadLetterReason::Rejected),
            ),
            4 => Settled::Extended(ts(arg.and_then(int).unwrap_or(0))),
            _ => return Err(bad_reply("settle")),
        })
    }

    /// Runs the stats script (which also ends expired leases and buries expired messages).
    async fn stats_script(
        &self,
        channel: &str,
    ) -> Result<Option<(u64, Vec<QueueStats>)>, BufferError> {
        let keys = script_keys(
            &self.base(channel),
            &["meta", "queues", "allq", "reap"],
            None,
        );
        let reply = self
            .script_with_policy(channel, &self.scripts.stats, &keys, |_, [built, delays]| {
                vec![built, delays]
            })
            .await?;
        let items = array(reply).ok_or_else(|| bad_reply("stats"))?;
        let moved = items
            .first()
            .and_then(int)
            .ok_or_else(|| bad_reply("stats"))?;
        if moved < 0 {
            return Ok(None);
        }
        let mut queues = Vec::new();
        for row in items[1..].chunks(10) {
            let [
                q,
                queued,
                held,
                dl,
                oldest,
                published,
                delivered,
                nacked,
                expired,
                dead,
            ] = row
            else {
                return Err(bad_reply("stats"));
            };
            let n = |v: &Value| int(v).unwrap_or(0).max(0) as u64;
            let oldest = int(oldest).unwrap_or(-1);
            queues.push(QueueStats {
                webhook_id: text(q).unwrap_or_default(),
                queued: n(queued),
                in_flight: n(held),
                dead_letters: n(dl),
                oldest_queued_age_seconds: (oldest >= 0).then(|| oldest as f64 / 1000.0),
                delivered: n(delivered),
                nacked: n(nacked),
                expired: n(expired),
                dead_lettered: n(dead),
                published: n(published),
            });
        }
        Ok(Some((moved.max(0) as u64, queues)))
    }

    /// Starts a walk over the dead letters of `channel` matching the filters. Fails with
    /// `UnknownChannel` for a channel that does not exist.
    async fn dead_walk(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<DeadWalk, BufferError> {
        let base = self.base(channel);
        if !self.channel_exists(&base).await? {
            return Err(BufferError::UnknownChannel(channel.to_owned()));
        }
        let mut queues = match webhook_id {
            Some(w) => vec![w.to_owned()],
            None => self.all_queues(&base).await?,
        };
        queues.reverse();
        Ok(DeadWalk {
            base,
            queues,
            from: "-".to_owned(),
            to: None,
            message_id: message_id.map(str::to_owned),
            done: false,
        })
    }

    /// The next page of the walk, oldest first: a queue and at most [`SCAN_PAGE`] entry ids of
    /// its dead letters. Only one page is held at a time, whatever the size of the DLQ; entries
    /// removed behind the walk (replayed, purged) do not disturb it.
    async fn next_dead_page(
        &self,
        walk: &mut DeadWalk,
    ) -> Result<Option<(String, Vec<String>)>, BufferError> {
        while !walk.done {
            let Some(q) = walk.queues.last().cloned() else {
                return Ok(None);
            };
            let key = queue_key(&walk.base, &q, "dlq");
            let to = match &walk.to {
                Some(to) => to.clone(),
                None => {
                    let v = self
                        .query(
                            ::redis::cmd("XREVRANGE")
                                .arg(&key)
                                .arg("+")
                                .arg("-")
                                .arg("COUNT")
                                .arg(1),
                        )
                        .await?;
                    let newest = entries(v).ok_or_else(|| bad_reply("XREVRANGE"))?;
                    let Some((to, _)) = newest.into_iter().next() else {
                        walk.queues.pop();
                        continue;
                    };
                    walk.to = Some(to.clone());
                    to
                }
            };
            let v = self
                .query(
                    ::redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(&walk.from)
                        .arg(&to)
                        .arg("COUNT")
                        .arg(SCAN_PAGE),
                )
                .await?;
            let page = entries(v).ok_or_else(|| bad_reply("XRANGE"))?;
            match page.last() {
                Some(last) if page.len() == SCAN_PAGE && last.0 != to => {
                    walk.from = format!("({}", last.0)
                }
                _ => {
                    walk.queues.pop();
                    walk.from = "-".to_owned();
                    walk.to = None;
                }
            }
            let ids: Vec<String> = match &walk.message_id {
                None => page.into_iter().map(|e| e.0).collect(),
                Some(m) => {
                    let one = page
                        .into_iter()
                        .find(|e| field_str(&e.1, "id").as_deref() == Some(m.as_str()));
                    walk.done = one.is_some();
                    one.into_iter().map(|e| e.0).collect()
                }
            };
            if !ids.is_empty() {
                return Ok(Some((q, ids)));
            }
        }
        Ok(None)
    }

    /// Replays one page of dead letters of queue `q`; returns how many went back, counting in
    /// `blocked` those kept because the queue is full.
    async fn replay_page(
        &self,
        channel: &str,
        base: &str,
        q: &str,
        ids: Vec<String>,
        blocked: &mut u64,
    ) -> Result<u64, BufferError> {
        let mut replayed = 0;
        for id in ids {
            let keys = script_keys(base, &["meta", "allq"], Some((q, &["s", "t", "dlq"])));
            let reply = self
                .script(
                    &self.scripts.replay,
                    &keys,
                    &[
                        q.as_bytes().to_vec(),
                        id.into_bytes(),
                        wake_channel(&self.prefix).into_bytes(),
                        channel.as_bytes().to_vec(),
                    ],
                )
                .await?;
            match array(reply).and_then(|a| a.first().and_then(int)) {
                Some(0) => replayed += 1,
                Some(1) => return Err(BufferError::UnknownChannel(channel.to_owned())),
                Some(2) => {}
                Some(4) => *blocked += 1,
                _ => return Err(bad_reply("replay")),
            }
        }
        Ok(replayed)
    }

    fn to_dead_letter(channel: &str, queue: String, f: &HashMap<String, Vec<u8>>) -> DeadLetter {
        let seq = field_i64(f, "seq").unwrap_or(0).max(0) as u64;
        let expires_ms = field_i64(f, "exp");
        let message_id = field_str(f, "id").unwrap_or_default();
        let envelope = dead_letter_envelope(
            Known {
                channel,
                queue: &queue,
                sequence: seq,
                message_id: &message_id,
                received_ms: field_i64(f, "rcv").unwrap_or(0),
                expires_ms,
            },
            f.get("m").map_or(&[][..], Vec::as_slice),
        );
        let reason = field_str(f, "reason")
            .and_then(|r| DeadLetterReason::parse(&r))
            .unwrap_or(DeadLetterReason::Rejected);
        DeadLetter {
            envelope,
            queue,
            reason,
            dead_lettered_at: ts(field_i64(f, "at").unwrap_or(0)),
            delivery_count: u32::try_from(field_i64(f, "count").unwrap_or(0)).unwrap_or(0),
            last_error: field_str(f, "err"),
        }
    }
}

impl Detachable for Inner {
    fn attempt(&self, channel: &str, max: usize) -> impl Future<Output = LeaseAttempt> + Send {
        self.lease_once(channel, max)
    }

    fn give_back(&self, leases: &[Lease]) -> impl Future<Output = ()> + Send {
        self.unlease(leases)
    }
}

/// Listens on the wake-up channel and wakes this process's waiting lease calls, so a message
/// published through another instance is leased at once rather than at the next poll.
/// Ends when the buffer is closed or dropped.
async fn wake_listener(
    endpoint: Endpoint,
    channel: String,
    notifiers: Arc<Notifiers>,
    stop: tokio::sync::oneshot::Receiver<()>,
    timeout: Duration,
) {
    pubsub::follow_channel(
        endpoint,
        channel,
        timeout,
        stop,
        || {},
        |name| notifiers.wake(&name),
    )
    .await;
}

#[async_trait]
impl Buffer for RedisBuffer {
    async fn ensure_channel(
        &self,
        channel: &str,
        webhook_ids: &[String],
        settings: &QueueSettings,
    ) -> Result<(), BufferError> {
        if channel.is_empty() || webhook_ids.iter().any(|w| w.is_empty()) {
            return Err(BufferError::Invalid("empty channel or webhook id".into()));
        }
        // Listed first: a channel listed without settings is skipped by the sweep, while one with
        // settings but not listed would never be swept.
        self.query(
            ::redis::cmd("SADD")
                .arg(channels_key(&self.prefix))
                .arg(channel),
        )
        .await?;
        let base = self.base(channel);
        let keys = script_keys(&base, &["meta", "queues", "allq", "reap", "gen"], None);
        let mut args: Vec<Vec<u8>> = Vec::new();
        for v in [
            ms(settings.ttl),
            settings.max_queue_size,
            settings.max_message_size,
            u64::from(settings.max_delivery_attempts),
            ms(settings.ack_timeout),
            ms(settings.max_lease),
            ms(settings.requeue_delay_initial),
            ms(settings.requeue_delay_max),
            u64::from(settings.ordered),
            READER_IDLE_MS,
        ] {
            args.push(v.to_string().into_bytes());
        }
        args.extend(webhook_ids.iter().map(|w| w.as_bytes().to_vec()));
        self.script(&self.scripts.ensure, &keys, &args).await?;
        self.wait_for_replicas(&keys[0]).await?;
        self.policies
            .remember(channel, PolicySettings::of(settings));
        self.notifiers.wake(channel);
        Ok(())
    }

    async fn delete_channel(&self, channel: &str) -> Result<(), BufferError> {
        let keys = script_keys(
            &self.base(channel),
            &["meta", "queues", "allq", "dlid", "rr", "reap"],
            None,
        );
        let reply = self.script(&self.scripts.delete, &keys, &[]).await?;
        self.notifiers.remove(channel);
        self.policies.forget(channel);
        match int(&reply) {
            Some(0) => {
                self.query(
                    ::redis::cmd("SREM")
                        .arg(channels_key(&self.prefix))
                        .arg(channel),
                )
                .await?;
                Ok(())
            }
            Some(1) => Err(BufferError::UnknownChannel(channel.to_owned())),
            _ => Err(bad_reply("delete")),
        }
    }

    async fn publish(&self, queue: &str, envelope: &mut Envelope) -> Result<u64, BufferError> {
        let channel = envelope.channel.clone();
        let keys = script_keys(
            &self.base(&channel),
            &["meta", "queues", "seq"],
            Some((queue, &["s", "t", "c"])),
        );
        let reply = self
            .script(
                &self.scripts.publish,
                &keys,
                &[
                    queue.as_bytes().to_vec(),
                    envelope.encode(),
                    envelope.message_id.as_str().as_bytes().to_vec(),
                    envelope.received_at.unix_millis().to_string().into_bytes(),
                    envelope
                        .expires_at
                        .map(|e| e.unix_millis().to_string())
                        .unwrap_or_default()
                        .into_bytes(),
                    envelope.body.len().to_string().into_bytes(),
                    wake_channel(&self.prefix).into_bytes(),
                    channel.as_bytes().to_vec(),
                ],
            )
            .await?;
        let items = array(reply).ok_or_else(|| bad_reply("publish"))?;
        match items.first().and_then(int) {
            Some(0) => {
                let seq = items
                    .get(1)
                    .and_then(int)
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or_else(|| bad_reply("publish"))?;
                self.wait_for_replicas(&keys[0]).await?;
                envelope.sequence = seq;
                self.notifiers.wake(&channel);
                Ok(seq)
            }
            Some(1) => Err(BufferError::UnknownChannel(channel)),
            Some(2) => Err(BufferError::UnknownChannel(format!("{channel}/{queue}"))),
            Some(3) => Err(BufferError::TooLarge),
            Some(4) => Err(BufferError::QueueFull),
            _ => Err(bad_reply("publish")),
        }
    }

    async fn lease(
        &self,
        channel: &str,
        max: usize,
        wait: Duration,
        _consumer: &str,
    ) -> Result<Vec<Lease>, BufferError> {
        wait_for_leases(
            &self.notifiers,
            channel,
            max,
            wait,
            Some(POLL_INTERVAL),
            || lease_detached(&self.inner, channel, max),
        )
        .await
    }

    async fn settle(&self, token: &LeaseToken, action: Settle) -> Result<Settled, BufferError> {
        let (name, delay, reason) = match crate::reason::bound_action(action) {
            Settle::Ack => ("ack", None, None),
            Settle::Nack {
                retry: true,
                delay,
                reason,
            } => ("retry", delay, reason),
            Settle::Nack {
                retry: false,
                reason,
                ..
            } => ("reject", None, reason),
            Settle::Release => ("retry", None, None),
            Settle::Touch => ("touch", None, None),
            Settle::Return => ("return", None, None),
        };
        let settled = self
            .settle_script(
                &token.channel,
                &token.queue,
                &token.handle,
                name,
                delay,
                reason.as_deref(),
            )
            .await?;
        Ok(settled)
    }

    async fn dead_letters(
        &self,
        channel: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, BufferError> {
        query.check_limit()?;
        let end = match &query.cursor {
            None => "+".to_owned(),
            Some(c) => match c.parse::<u64>() {
                Ok(id) => format!("(0-{id}"),
                Err(_) => return Err(BufferError::Invalid("bad cursor".into())),
            },
        };
        let base = self.base(channel);
        if !self.channel_exists(&base).await? {
            return Err(BufferError::UnknownChannel(channel.to_owned()));
        }
        let queues = match &query.webhook_id {
            Some(w) => vec![w.clone()],
            None => self.all_queues(&base).await?,
        };
        let mut pipe = ::redis::pipe();
        for q in &queues {
            pipe.cmd("XREVRANGE")
                .arg(queue_key(&base, q, "dlq"))
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(query.limit + 1);
        }
        let mut conn = self.conn()?;
        let replies: Vec<Value> = self.bounded(pipe.query_async(&mut conn)).await?;
        let mut all: Vec<(u64, String, HashMap<String, Vec<u8>>)> = Vec::new();
        for (q, v) in queues.iter().zip(replies) {
            for (id, fields) in entries(v).ok_or_else(|| bad_reply("XREVRANGE"))? {
                if let Some(n) = dead_id(&id) {
                    all.push((n, q.clone(), fields));
                }
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
        let more = all.len() > query.limit;
        all.truncate(query.limit);
        let next_cursor = if more {
            all.last().map(|e| e.0.to_string())
        } else {
            None
        };
        let items = all
            .into_iter()
            .map(|(_, q, f)| Inner::to_dead_letter(channel, q, &f))
            .collect();
        Ok(DeadLetterPage { items, next_cursor })
    }

    async fn replay_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        let base = self.base(channel);
        let mut walk = self.dead_walk(channel, webhook_id, message_id).await?;
        let mut replayed = 0u64;
        let mut blocked = 0u64;
        while let Some((q, ids)) = self.next_dead_page(&mut walk).await? {
            replayed += self
                .replay_page(channel, &base, &q, ids, &mut blocked)
                .await?;
        }
        if replayed > 0 {
            self.notifiers.wake(channel);
        }
        replay_result(replayed, blocked)
    }

    async fn purge_dead_letters(
        &self,
        channel: &str,
        webhook_id: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<u64, BufferError> {
        let base = self.base(channel);
        let mut walk = self.dead_walk(channel, webhook_id, message_id).await?;
        let mut purged = 0u64;
        while let Some((q, ids)) = self.next_dead_page(&mut walk).await? {
            let v = self
                .query(
                    ::redis::cmd("XDEL")
                        .arg(queue_key(&base, &q, "dlq"))
                        .arg(ids),
                )
                .await?;
            purged += int(&v).unwrap_or(0).max(0) as u64;
        }
        Ok(purged)
    }

    async fn stats(&self, channel: &str) -> Result<ChannelStats, BufferError> {
        let Some((_, queues)) = self.stats_script(channel).await? else {
            return Err(BufferError::UnknownChannel(channel.to_owned()));
        };
        Ok(ChannelStats::of_queues(channel, queues))
    }

    async fn sweep_expired(&self) -> Result<u64, BufferError> {
        let v = self
            .query(::redis::cmd("SMEMBERS").arg(channels_key(&self.prefix)))
            .await?;
        let channels: Vec<String> = array(v)
            .ok_or_else(|| bad_reply("SMEMBERS"))?
            .iter()
            .filter_map(text)
            .collect();
        let mut moved = 0;
        for channel in channels {
            if let Some((n, _)) = self.stats_script(&channel).await? {
                moved += n;
            }
        }
        Ok(moved)
    }

    async fn health_check(&self) -> Result<(), BufferError> {
        self.query(
            ::redis::cmd("SET")
                .arg(health_key(&self.prefix))
                .arg(Timestamp::now().unix_millis())
                .arg("EX")
                .arg(60),
        )
        .await
        .map(|_| ())
    }

    async fn close(&self) -> Result<(), BufferError> {
        self.closed.store(true, Ordering::Release);
        self.stop_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(())
    }
}
