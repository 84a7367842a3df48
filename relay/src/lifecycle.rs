//! The lifecycle of channels on a running relay: building a channel from its definition
//! (queues, hub, routes), restoring admin-created channels and persisted tokens from the state
//! store, and the shared steps of redefining one. HTTP handlers and the state-sync job call
//! these; nothing here knows about HTTP.

use std::sync::Arc;

use serde_json::{Map, Value};
use webhook_connect_buffer::BufferError;
use webhook_connect_protocol::{DataType, Timestamp};

use crate::auth::{AuthBuildOptions, TrustedProxies, WebhookAuth};
use crate::channels::{Channel, TokenState, WebhookRoute, channel_from_spec, hash_token};
use crate::config::settings::ChannelSettings;
use crate::config::{ChannelSource, ChannelSpec, RelayConfig, channel_spec_from_json};
use crate::delivery::Hub;
use crate::state::AppState;
use crate::state_store::{from_hex, hex};

pub(crate) fn auth_options(config: &RelayConfig, trusted: &TrustedProxies) -> AuthBuildOptions {
    crate::config::auth_build_options(&config.file, trusted)
}

/// Creates a channel's queues, hub and routes. Every webhook's authentication is built first,
/// so a definition that fails changes nothing.
pub(crate) async fn add_channel(
    state: &Arc<AppState>,
    spec: &ChannelSpec,
    with_default_queue: bool,
    options: &AuthBuildOptions,
) -> Result<(), String> {
    let mut auths = Vec::new();
    let mut errors = Vec::new();
    for webhook in &spec.webhooks {
        match WebhookAuth::from_entry(&webhook.entry, &webhook.path, options) {
            Ok(auth) => auths.push(auth),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let mut queues: Vec<String> = spec.webhooks.iter().map(|w| w.id.clone()).collect();
    if with_default_queue {
        queues.push("default".into());
    }
    state
        .buffer
        .ensure_channel(&spec.name, &queues, &spec.settings.queue_settings())
        .await
        .map_err(|e| format!("channel \"{}\": cannot create its queues: {e}", spec.name))?;
    let hub = Hub::new(
        spec.name.clone(),
        state.buffer.clone(),
        spec.settings.clone(),
        state.hub_options.clone(),
        state.shutdown.clone(),
        state.tracker.clone(),
    );
    let mut channel = channel_from_spec(spec, hub);
    restore_persisted(state, &mut channel, spec).await?;
    let channel = Arc::new(channel);
    for (webhook, auth) in spec.webhooks.iter().zip(auths) {
        state.registry.insert_route(
            webhook.id.clone(),
            Arc::new(WebhookRoute {
                channel: channel.clone(),
                queue: webhook.id.clone(),
                data_type: webhook.data_type,
                auth,
            }),
        );
    }
    state.registry.insert_channel(channel);
    Ok(())
}

/// Rebuilds the channels created through the admin API from the state store (unless the
/// configuration now defines a channel of the same name, which takes it over).
pub(crate) async fn restore_admin_channels(
    state: &Arc<AppState>,
    options: &AuthBuildOptions,
    errors: &mut Vec<String>,
) {
    let records = match state.state_store.all().await {
        Ok(records) => records,
        Err(e) => {
            errors.push(format!("state store: {e}"));
            return;
        }
    };
    for (name, record) in records {
        let Some(definition) = record.definition else {
            continue;
        };
        if state.registry.channel(&name).is_some() {
            tracing::warn!(channel = %name, "A configured channel takes over the admin-created channel of the same name");
            continue;
        }
        if let Err(e) = add_admin_channel(state, &name, definition, options).await {
            errors.push(e);
        }
    }
}

/// Builds the admin-created channel `name` from its stored definition; its tokens and pause
/// state come from the state store.
pub(crate) async fn add_admin_channel(
    state: &Arc<AppState>,
    name: &str,
    mut definition: serde_json::Map<String, serde_json::Value>,
    options: &AuthBuildOptions,
) -> Result<(), String> {
    // The token is known only as a hash; restore_persisted sets it from the record.
    definition.insert(
        "token".into(),
        serde_json::Value::String("restored-from-state".into()),
    );
    match crate::config::channel_spec_from_json(definition, &state.config.file) {
        Ok((mut spec, _)) => {
            spec.source = crate::config::ChannelSource::Admin;
            add_channel(state, &spec, false, options).await
        }
        Err(e) => Err(format!("state store: channel \"{name}\": {}", e.join("; "))),
    }
}

/// The token state a record holds (the current hash, or `fallback` when it is unreadable; the
/// previous token only while its grace lasts).
pub(crate) fn stored_tokens(
    r: &crate::state_store::ChannelRecord,
    fallback: Option<crate::channels::TokenHash>,
    now: Timestamp,
) -> Option<TokenState> {
    let current = from_hex(&r.current_token).or(fallback)?;
    let previous = r
        .previous_token
        .as_ref()
        .and_then(|(h, at)| from_hex(h).map(|h| (h, *at)))
        .filter(|(_, at)| *at > now);
    Some(TokenState {
        current,
        previous,
        rotated_at: r.rotated_at,
    })
}

/// Applies the state store to a config-defined channel: a token rotated through the admin API
/// stays in force unless the configured token changed since (then the configured one wins and
/// earlier tokens stop working); the pause state is restored.
async fn restore_persisted(
    state: &AppState,
    channel: &mut Channel,
    spec: &ChannelSpec,
) -> Result<(), String> {
    let now = Timestamp::now();
    let record = state
        .state_store
        .get(&spec.name)
        .await
        .map_err(|e| format!("channel \"{}\": state store: {e}", spec.name))?;
    if spec.source == crate::config::ChannelSource::Admin {
        // Admin-created: the record written at creation (or rotation) is the truth.
        if let Some(r) = &record {
            if let Some(tokens) = stored_tokens(r, None, now) {
                channel.set_tokens(tokens);
            }
            channel.hub.set_paused(r.paused);
            if let Some(created) = r.created_at {
                channel.created_at = created;
            }
        }
        return Ok(());
    }
    let configured = hash_token(spec.token.expose().as_bytes());
    let configured_hex = hex(&configured);
    let keep_rotation = record
        .as_ref()
        .is_some_and(|r| r.configured_token.as_deref() == Some(configured_hex.as_str()));
    if let Some(r) = &record {
        if keep_rotation {
            if let Some(tokens) = stored_tokens(r, Some(configured), now) {
                channel.set_tokens(tokens);
            }
        } else {
            tracing::warn!(channel = %spec.name, "Configured token changed; it replaces every earlier token");
        }
        channel.hub.set_paused(r.paused);
        if let Some(created) = r.created_at {
            channel.created_at = created;
        }
    }
    let created_at = channel.created_at;
    state
        .state_store
        .update(&spec.name, |r| {
            r.configured_token = Some(configured_hex.clone());
            r.definition = None;
            if !keep_rotation {
                r.current_token = configured_hex.clone();
                r.previous_token = None;
                r.rotated_at = None;
            }
            r.created_at.get_or_insert(created_at);
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("channel \"{}\": state store: {e}", spec.name))
}

/// Why an admin channel definition cannot be put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DefinitionError {
    /// The definition does not parse or a webhook's authentication does not build.
    #[error("{0}")]
    Invalid(String),
    /// One of its webhook ids belongs to another channel.
    #[error("Webhook ID already in use: {0}")]
    WebhookIdInUse(String),
}

/// An admin channel definition, checked and with every webhook's authentication built.
pub(crate) struct PreparedDefinition {
    settings: ChannelSettings,
    ids: Vec<String>,
    routes: Vec<(String, DataType, WebhookAuth)>,
}

/// Checks `definition` for channel `name` (its webhook ids must not belong to another
/// channel) and builds its routes. Changes nothing.
pub(crate) fn prepare_definition(
    state: &AppState,
    name: &str,
    definition: &Map<String, Value>,
) -> Result<PreparedDefinition, DefinitionError> {
    let mut with_token = definition.clone();
    with_token.insert("token".into(), Value::String("unchanged".into()));
    let (mut spec, _) = channel_spec_from_json(with_token, &state.config.file)
        .map_err(|errors| DefinitionError::Invalid(errors.join("; ")))?;
    spec.source = ChannelSource::Admin;
    if let Some(w) = spec.webhooks.iter().find(|w| {
        state
            .registry
            .route(&w.id)
            .is_some_and(|r| r.channel.name != name)
            && state.registry.has_route(&w.id)
    }) {
        return Err(DefinitionError::WebhookIdInUse(w.id.clone()));
    }
    let options = auth_options(&state.config, &state.trusted_proxies);
    let mut routes = Vec::new();
    for webhook in &spec.webhooks {
        let auth = WebhookAuth::from_entry(&webhook.entry, &webhook.path, &options)
            .map_err(|e| DefinitionError::Invalid(e.join("; ")))?;
        routes.push((webhook.id.clone(), webhook.data_type, auth));
    }
    Ok(PreparedDefinition {
        settings: spec.settings,
        ids: spec.webhooks.iter().map(|w| w.id.clone()).collect(),
        routes,
    })
}

/// Creates the queues a prepared definition needs (idempotent).
pub(crate) async fn ensure_queues(
    state: &AppState,
    name: &str,
    prepared: &PreparedDefinition,
) -> Result<(), BufferError> {
    state
        .buffer
        .ensure_channel(name, &prepared.ids, &prepared.settings.queue_settings())
        .await
}

/// Puts a prepared definition in force for the running `channel`: settings and routes.
pub(crate) fn install_definition(
    state: &AppState,
    channel: &Channel,
    prepared: PreparedDefinition,
) -> Arc<Channel> {
    channel.hub.set_settings(prepared.settings);
    let replacement = Arc::new(channel.with_webhooks(prepared.ids));
    state
        .registry
        .replace_channel(replacement.clone(), prepared.routes);
    replacement
}

/// Makes `tokens` the channel's token state and closes the connections whose token stopped
/// being valid; those on a previous token still in its grace period are closed when the grace
/// ends (`docs/reference/wire-protocol.md` C.5 rule 2). Used by rotation here and by changes another relay
/// instance made.
pub(crate) fn install_tokens(state: &AppState, channel: &Arc<Channel>, tokens: TokenState) {
    let old = channel.tokens();
    channel.set_tokens(tokens.clone());
    let hub = channel.hub.clone();
    let before = std::iter::once(old.current).chain(old.previous.map(|(h, _)| h));
    for hash in before {
        if !channel.token_matches(&hash) {
            hub.close_token(&hash);
        }
    }
    if let Some((previous, expires)) = tokens.previous {
        let wait = (expires.0 - Timestamp::now().0)
            .to_std()
            .unwrap_or(std::time::Duration::ZERO);
        let stop = state.shutdown.clone();
        let check = channel.clone();
        state.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    // A later rotation may have ended it already; close only if it is not valid.
                    if !check.token_matches(&previous) {
                        hub.close_token(&previous);
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}
