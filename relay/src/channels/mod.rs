//! The channels the relay serves: names, hashed tokens, settings, attached webhook ids and each
//! channel's delivery hub. Looked up on every request without cloning configuration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use webhook_connect_protocol::{DataType, Timestamp};

use crate::auth::WebhookAuth;
use crate::config::settings::ChannelSettings;
use crate::config::{ChannelSource, ChannelSpec};
use crate::delivery::Hub;

/// SHA-256 of a token; tokens are only ever held and compared in this form.
pub type TokenHash = [u8; 32];

/// Hashes a presented or configured token.
pub fn hash_token(token: &[u8]) -> TokenHash {
    Sha256::digest(token).into()
}

/// A channel's ingest rate limit is spent for this second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited;

/// One channel.
#[derive(Debug)]
pub struct Channel {
    /// Name.
    pub name: String,
    /// Where it is defined.
    pub source: ChannelSource,
    /// Attached webhook ids, in attach order.
    pub webhook_ids: Vec<String>,
    /// When it was first created (from the state store).
    pub created_at: Timestamp,
    tokens: RwLock<TokenState>,
    /// Delivery of its messages to connectors.
    pub hub: Arc<Hub>,
    rate: Mutex<RateWindow>,
}

/// The channel's valid tokens: the current one and, during a rotation's grace period, the
/// previous one (`docs/reference/http-api.md` §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    /// Always valid.
    pub current: TokenHash,
    /// Valid until its expiry.
    pub previous: Option<(TokenHash, Timestamp)>,
    /// When the token was last rotated.
    pub rotated_at: Option<Timestamp>,
}

/// A one-second window counter for the channel's `rate_limit_per_second`.
#[derive(Debug)]
struct RateWindow {
    started: Instant,
    count: u64,
}

impl Channel {
    /// A channel with one valid token.
    pub fn new(
        name: String,
        source: ChannelSource,
        webhook_ids: Vec<String>,
        token: TokenHash,
        hub: Arc<Hub>,
    ) -> Self {
        Channel {
            name,
            source,
            webhook_ids,
            created_at: Timestamp::now(),
            tokens: RwLock::new(TokenState {
                current: token,
                previous: None,
                rotated_at: None,
            }),
            hub,
            rate: Mutex::new(RateWindow {
                started: Instant::now(),
                count: 0,
            }),
        }
    }

    /// The same channel (hub, tokens, creation time) with another set of webhook ids.
    pub fn with_webhooks(&self, webhook_ids: Vec<String>) -> Channel {
        Channel {
            name: self.name.clone(),
            source: self.source,
            webhook_ids,
            created_at: self.created_at,
            tokens: RwLock::new(self.tokens()),
            hub: self.hub.clone(),
            rate: Mutex::new(RateWindow {
                started: Instant::now(),
                count: 0,
            }),
        }
    }

    /// The channel's ingest rate limit (step 12 of ingest): `Err(RateLimited)` once this
    /// second's allowance is spent.
    pub fn check_rate_limit(&self) -> Result<(), RateLimited> {
        let Some(limit) = self.settings().rate_limit_per_second else {
            return Ok(());
        };
        let mut w = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        if w.started.elapsed() >= Duration::from_secs(1) {
            w.started = Instant::now();
            w.count = 0;
        }
        if w.count >= limit {
            return Err(RateLimited);
        }
        w.count += 1;
        Ok(())
    }

    /// True when `presented` is a valid token of this channel (constant time per token).
    pub fn token_matches(&self, presented: &TokenHash) -> bool {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        let current = bool::from(tokens.current.ct_eq(presented));
        let previous = match &tokens.previous {
            Some((hash, expires)) => {
                bool::from(hash.ct_eq(presented)) & (Timestamp::now() < *expires)
            }
            None => false,
        };
        current | previous
    }

    /// The token state.
    pub fn tokens(&self) -> TokenState {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the token state (rotation, or restoring persisted state).
    pub fn set_tokens(&self, state: TokenState) {
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The current settings (held by the hub).
    pub fn settings(&self) -> Arc<ChannelSettings> {
        self.hub.settings()
    }
}

/// Where an ingest request for a webhook id goes.
#[derive(Debug)]
pub struct WebhookRoute {
    /// The channel.
    pub channel: Arc<Channel>,
    /// The queue it is stored in (its own id, or `default`).
    pub queue: String,
    /// How its body is read.
    pub data_type: DataType,
    /// Its inbound validation, built once.
    pub auth: WebhookAuth,
}

/// All channels and webhook routes.
#[derive(Debug, Default)]
pub struct Registry {
    channels: RwLock<HashMap<String, Arc<Channel>>>,
    webhooks: RwLock<HashMap<String, Arc<WebhookRoute>>>,
    default_route: RwLock<Option<Arc<WebhookRoute>>>,
}

impl Registry {
    /// Adds (or replaces) a channel.
    pub fn insert_channel(&self, channel: Arc<Channel>) {
        let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
        map.insert(channel.name.clone(), channel);
    }

    /// Removes a channel and every route to it; returns it.
    pub fn remove_channel(&self, name: &str) -> Option<Arc<Channel>> {
        let removed = self
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.webhooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, route| route.channel.name != name);
        let mut default = self
            .default_route
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if default.as_ref().is_some_and(|r| r.channel.name == name) {
            *default = None;
        }
        removed
    }

    /// Swaps in an updated channel and its routes: detached webhook ids stop routing at once.
    pub fn replace_channel(
        &self,
        channel: Arc<Channel>,
        routes: Vec<(String, DataType, WebhookAuth)>,
    ) {
        let name = channel.name.clone();
        {
            let mut webhooks = self.webhooks.write().unwrap_or_else(|p| p.into_inner());
            webhooks.retain(|_, route| route.channel.name != name);
            for (id, data_type, auth) in routes {
                webhooks.insert(
                    id.clone(),
                    Arc::new(WebhookRoute {
                        channel: channel.clone(),
                        queue: id,
                        data_type,
                        auth,
                    }),
                );
            }
        }
        self.insert_channel(channel);
    }

    /// Adds a webhook route.
    pub fn insert_route(&self, webhook_id: String, route: Arc<WebhookRoute>) {
        let mut map = self.webhooks.write().unwrap_or_else(|p| p.into_inner());
        map.insert(webhook_id, route);
    }

    /// Sets the route used for unknown ids when the `default` webhook is enabled.
    pub fn set_default_route(&self, route: Option<Arc<WebhookRoute>>) {
        *self
            .default_route
            .write()
            .unwrap_or_else(|p| p.into_inner()) = route;
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every channel.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The route of `webhook_id`, falling back to the default route when set.
    pub fn route(&self, webhook_id: &str) -> Option<Arc<WebhookRoute>> {
        if let Some(route) = self
            .webhooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(webhook_id)
        {
            return Some(route.clone());
        }
        self.default_route
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True when `webhook_id` has its own route.
    pub fn has_route(&self, webhook_id: &str) -> bool {
        self.webhooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(webhook_id)
    }

    /// The channel `name` if `presented` is one of its valid tokens. An unknown channel and a
    /// wrong token give the same `None` (no existence oracle).
    pub fn authorize(&self, name: &str, presented: &TokenHash) -> Option<Arc<Channel>> {
        let channel = self.channel(name);
        match channel {
            Some(c) if c.token_matches(presented) => Some(c),
            _ => None,
        }
    }

    /// Every channel `presented` is valid for.
    pub fn channels_for_token(&self, presented: &TokenHash) -> Vec<Arc<Channel>> {
        self.channels()
            .into_iter()
            .filter(|c| c.token_matches(presented))
            .collect()
    }
}

/// Builds a channel from its configuration (the hub is made by the caller).
pub fn channel_from_spec(spec: &ChannelSpec, hub: Arc<Hub>) -> Channel {
    Channel::new(
        spec.name.clone(),
        spec.source,
        spec.webhooks.iter().map(|w| w.id.clone()).collect(),
        hash_token(spec.token.expose().as_bytes()),
        hub,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_compare_as_bytes_including_non_ascii_r122() {
        let a = hash_token("tök€n".as_bytes());
        assert_eq!(a, hash_token("tök€n".as_bytes()));
        assert_ne!(a, hash_token(b"token"));
        assert_ne!(hash_token(&[0xff]), hash_token(&[0xfe]));
    }
}
