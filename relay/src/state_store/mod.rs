//! The relay's persisted state (`docs/reference/config-formats.md` §2.3 `[state]`, `docs/reference/http-api.md` §4.2): token
//! hashes (and the hash of the configured token, to notice a changed configuration), rotations
//! with their grace expiry, pause state and the definitions of admin-created channels. Admin
//! changes survive restarts and are never reverted by the configuration. Tokens
//! appear only as SHA-256 hex.
//!
//! Two backends: [`file::FileStore`], one JSON document written atomically (one relay
//! instance), and [`redis::RedisStore`], one Redis hash shared by every relay instance, whose
//! changes are announced to the other instances (`docs/reference/http-api.md` §7).

pub mod file;
pub mod redis;
pub mod seal;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use webhook_connect_protocol::Timestamp;

use crate::channels::TokenHash;
use crate::config::{BackendKind, RelayConfig};

/// What is remembered per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// SHA-256 hex of the token that was configured when this record was written.
    pub configured_token: Option<String>,
    /// SHA-256 hex of the current token.
    pub current_token: String,
    /// SHA-256 hex of the previous token and when it stops being valid.
    pub previous_token: Option<(String, Timestamp)>,
    /// Last rotation.
    pub rotated_at: Option<Timestamp>,
    /// Paused by an administrator.
    pub paused: bool,
    /// First seen.
    pub created_at: Option<Timestamp>,
    /// For channels created through the admin API: their definition (without the token), so
    /// they are rebuilt at start-up. At rest its `webhooks` are in `sealed_webhooks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<serde_json::Map<String, serde_json::Value>>,
    /// The definition's `webhooks` (with their verification secrets), encrypted
    /// ([`seal::Sealer`]). Never set on the records callers see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_webhooks: Option<String>,
}

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing the file failed.
    #[error("state store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The stored state is not readable.
    #[error("state store is unreadable: {0}")]
    Corrupt(String),
    /// The shared store cannot be reached or refused the operation.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The configuration of the store is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Hex of a token hash.
pub fn hex(hash: &TokenHash) -> String {
    hex::encode(hash)
}

/// A token hash from hex (`None` when malformed).
pub fn from_hex(text: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A change made by another relay instance: one channel's record, or everything (after the
/// change feed was interrupted and changes may have been missed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The record of this channel changed or was removed.
    Channel(String),
    /// Reload every record.
    All,
}

/// Where the records live.
#[derive(Debug)]
enum Backend {
    /// One JSON file (one instance).
    File(file::FileStore),
    /// Shared by every instance through Redis.
    Redis(Box<redis::RedisStore>),
}

/// The state store of this relay. Records are sealed on the way in and opened on the way out
/// ([`seal`]), so callers see plain definitions and the store holds no verification secret.
#[derive(Debug)]
pub struct StateStore {
    backend: Backend,
    sealer: seal::Sealer,
}

/// Where the shared Redis store lives: one server, or a Redis Cluster when `cluster_nodes` is
/// not empty; keys start with `prefix`.
#[derive(Debug)]
pub struct RedisLocation<'a> {
    /// The server (or, for a cluster, the URL the nodes were configured beside).
    pub url: &'a str,
    /// The cluster's seed nodes; empty for one server.
    pub cluster_nodes: Vec<String>,
    /// The key prefix (`state.key_prefix`).
    pub prefix: &'a str,
}

/// How long a state operation may take before it counts as failed.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

impl StateStore {
    /// Opens the store the configuration selects (`state.backend`; `auto` means `redis` when
    /// the buffer is Redis, otherwise the file), with its encryption key, and checks that every
    /// stored record can be read (a sealed record without the right key is an error). Plain
    /// records left by an earlier version are sealed when a key is available.
    pub async fn open(config: &RelayConfig) -> Result<StateStore, StateError> {
        let file = &config.file;
        let configured_key = (!file.state.encryption_key_file.is_empty())
            .then(|| seal::Sealer::from_key_file(&file.state.encryption_key_file))
            .transpose()?;
        let store = if let Some(at) = Self::redis_location(config) {
            let store =
                redis::RedisStore::connect(at.url, &at.cluster_nodes, at.prefix, OPERATION_TIMEOUT)
                    .await
                    .map_err(|e| match e {
                        StateError::Unavailable(why) => StateError::Unavailable(format!(
                            "{why} (at {})",
                            webhook_connect_protocol::redact::mask_url(at.url)
                        )),
                        other => other,
                    })?;
            StateStore {
                backend: Backend::Redis(Box::new(store)),
                sealer: configured_key.unwrap_or_else(seal::Sealer::without_key),
            }
        } else {
            let path = std::path::Path::new(&file.state.path);
            let store = file::FileStore::open(path)?;
            let sealer = match configured_key {
                Some(sealer) => sealer,
                None => {
                    let has_sealed = store.all().values().any(|r| r.sealed_webhooks.is_some());
                    seal::Sealer::generated_beside(path, has_sealed)?
                }
            };
            StateStore {
                backend: Backend::File(store),
                sealer,
            }
        };
        store.check_and_migrate().await?;
        Ok(store)
    }

    /// Where the shared Redis store lives when the configuration selects it (`state.backend`;
    /// `auto` means `redis` when the buffer is Redis), else `None` (the embedded file, one
    /// instance). `state.redis_url` names one server; without it the store shares the buffer's
    /// Redis, a cluster too.
    pub fn redis_location(config: &RelayConfig) -> Option<RedisLocation<'_>> {
        let state = &config.file.state;
        let redis = match state.backend.as_str() {
            "auto" => config.backend == BackendKind::Redis,
            other => other == "redis",
        };
        if !redis {
            return None;
        }
        let (url, cluster_nodes) = if state.redis_url.is_empty() {
            (
                config.file.buffer.redis.url.expose(),
                config.file.buffer.redis.cluster_node_urls(),
            )
        } else {
            (state.redis_url.expose(), Vec::new())
        };
        Some(RedisLocation {
            url,
            cluster_nodes,
            prefix: state.key_prefix.as_str(),
        })
    }

    /// Every record must open; plain ones holding webhooks are sealed now (when there is a
    /// key) or reported (when there is none).
    async fn check_and_migrate(&self) -> Result<(), StateError> {
        let stored = self.raw_all().await?;
        for (name, record) in stored {
            let mut opened = record.clone();
            self.sealer.open(&name, &mut opened)?;
            let plain_webhooks = record
                .definition
                .as_ref()
                .is_some_and(|d| d.contains_key("webhooks"));
            if !plain_webhooks {
                continue;
            }
            if self.sealer.has_key() {
                self.update(&name, |_| {}).await?;
                tracing::info!(channel = %name, "Encrypted the stored webhook secrets of an admin-created channel");
            } else if let Some(why) = opened
                .definition
                .as_ref()
                .and_then(|d| self.sealer.refusal(d))
            {
                tracing::warn!(channel = %name, "Stored definition holds secrets in plain text ({why})");
            }
        }
        Ok(())
    }

    /// Why `definition` (an admin channel definition) cannot be persisted, or `None`.
    pub fn refusal(
        &self,
        definition: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<String> {
        self.sealer.refusal(definition)
    }

    fn opened(
        &self,
        channel: &str,
        mut record: ChannelRecord,
    ) -> Result<ChannelRecord, StateError> {
        self.sealer.open(channel, &mut record)?;
        Ok(record)
    }

    /// The record of `channel`.
    pub async fn get(&self, channel: &str) -> Result<Option<ChannelRecord>, StateError> {
        let record = match &self.backend {
            Backend::File(s) => s.get(channel),
            Backend::Redis(s) => s.get(channel).await?,
        };
        record.map(|r| self.opened(channel, r)).transpose()
    }

    /// Changes the record of `channel` durably and returns it; on failure nothing changes.
    /// `change` may run more than once (the shared store retries when another instance
    /// changed the record at the same time), so it must only set fields.
    pub async fn update(
        &self,
        channel: &str,
        change: impl Fn(&mut ChannelRecord) + Send,
    ) -> Result<ChannelRecord, StateError> {
        let failure: std::sync::Mutex<Option<StateError>> = std::sync::Mutex::new(None);
        let sealed_change = |r: &mut ChannelRecord| {
            let opened = self.sealer.open(channel, r).is_ok();
            change(r);
            let replaced = r
                .definition
                .as_ref()
                .is_some_and(|d| d.contains_key("webhooks"));
            // A record that did not open (wrong key) keeps its sealed value unless the change
            // replaced the definition.
            if (opened || replaced || r.definition.is_none())
                && let Err(e) = self.sealer.seal(channel, r)
            {
                // Never store the secrets in clear: drop them and report the failure.
                if let Some(d) = r.definition.as_mut() {
                    d.remove("webhooks");
                }
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        };
        let record = match &self.backend {
            Backend::File(s) => s.update(channel, sealed_change).await?,
            Backend::Redis(s) => s.update(channel, sealed_change).await?,
        };
        if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        self.opened(channel, record)
    }

    async fn raw_all(&self) -> Result<BTreeMap<String, ChannelRecord>, StateError> {
        match &self.backend {
            Backend::File(s) => Ok(s.all()),
            Backend::Redis(s) => s.all().await,
        }
    }

    /// Every record, by channel name.
    pub async fn all(&self) -> Result<BTreeMap<String, ChannelRecord>, StateError> {
        self.raw_all()
            .await?
            .into_iter()
            .map(|(name, r)| self.opened(&name, r).map(|r| (name, r)))
            .collect()
    }

    /// Forgets `channel`.
    pub async fn remove(&self, channel: &str) -> Result<(), StateError> {
        match &self.backend {
            Backend::File(s) => s.remove(channel).await,
            Backend::Redis(s) => s.remove(channel).await,
        }
    }

    /// Readiness probe, answered within a second.
    pub async fn health_check(&self) -> bool {
        match &self.backend {
            Backend::File(s) => s.health_check(),
            Backend::Redis(s) => s.health_check(Duration::from_secs(1)).await,
        }
    }

    /// Changes made by other instances (only the shared store has any), from the moment the
    /// store was opened. There is one feed; later calls get `None`.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        match &self.backend {
            Backend::File(_) => None,
            Backend::Redis(s) => s.changes(),
        }
    }

    /// What [`crate::peer_acks`] needs to reach the other instances (only the shared store has
    /// other instances).
    pub fn peer_link(&self) -> Option<crate::peer_acks::PeerLink> {
        match &self.backend {
            Backend::File(_) => None,
            Backend::Redis(s) => Some(s.peer_link()),
        }
    }

    /// Stops the change feed.
    pub fn close(&self) {
        if let Backend::Redis(s) = &self.backend {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let h = crate::channels::hash_token(b"x");
        assert_eq!(from_hex(&hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }
}
