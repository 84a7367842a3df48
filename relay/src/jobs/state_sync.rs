//! Applies the state changes other relay instances made through the shared state store
//! (`docs/reference/http-api.md` §7): rotated tokens (their old connections close as on the instance that
//! rotated), pause and resume, and admin-created channels created, changed or deleted. Only the
//! Redis state store announces changes; with the file store there is nothing to follow.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;
use webhook_connect_protocol::{CloseReason, Timestamp};

use crate::channels::{Channel, hash_token};
use crate::config::ChannelSource;
use crate::lifecycle::{add_admin_channel, auth_options, stored_tokens};
use crate::state::AppState;
use crate::state_store::{Change, ChannelRecord, hex};

/// Follows the store's change feed until shutdown.
pub(crate) fn spawn(state: &Arc<AppState>) {
    let Some(mut changes) = state.state_store.changes() else {
        return;
    };
    let state = state.clone();
    let stop = state.shutdown.clone();
    state.tracker.clone().spawn(async move {
        // The definitions in force here, so an unrelated change (a pause) does not rebuild a
        // channel's routes.
        let mut applied: HashMap<String, Map<String, Value>> = HashMap::new();
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                _ = stop.cancelled() => break,
            };
            match change {
                Ok(Change::Channel(name)) => match state.state_store.get(&name).await {
                    Ok(record) => apply(&state, &name, record, &mut applied).await,
                    Err(e) => {
                        tracing::warn!(channel = %name, error = %e, "Cannot read a changed channel's state")
                    }
                },
                Ok(Change::All) | Err(RecvError::Lagged(_)) => {
                    apply_all(&state, &mut applied).await
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// Reloads every record (after the feed was interrupted, changes may have been missed).
async fn apply_all(state: &Arc<AppState>, applied: &mut HashMap<String, Map<String, Value>>) {
    let records = match state.state_store.all().await {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot reload the shared state");
            return;
        }
    };
    for channel in state.registry.channels() {
        if channel.source == ChannelSource::Admin && !records.contains_key(&channel.name) {
            remove_local(state, &channel, applied);
        }
    }
    for (name, record) in records {
        apply(state, &name, Some(record), applied).await;
    }
}

/// Brings channel `name` here in line with its record (`None`: deleted).
async fn apply(
    state: &Arc<AppState>,
    name: &str,
    record: Option<ChannelRecord>,
    applied: &mut HashMap<String, Map<String, Value>>,
) {
    let local = state.registry.channel(name);
    match (record, local) {
        (None, Some(channel)) if channel.source == ChannelSource::Admin => {
            remove_local(state, &channel, applied)
        }
        (None, _) => {}
        (Some(record), None) => {
            let Some(definition) = record.definition else {
                return;
            };
            let options = auth_options(&state.config, &state.trusted_proxies);
            match add_admin_channel(state, name, definition.clone(), &options).await {
                Ok(()) => {
                    applied.insert(name.to_owned(), definition);
                    tracing::info!(channel = %name, "Channel created by another instance");
                }
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "Cannot build a channel created by another instance")
                }
            }
        }
        (Some(record), Some(channel)) => {
            let channel = match &record.definition {
                Some(definition)
                    if channel.source == ChannelSource::Admin
                        && applied.get(name) != Some(definition) =>
                {
                    match redefine(state, name, &channel, definition).await {
                        Some(replacement) => {
                            applied.insert(name.to_owned(), definition.clone());
                            replacement
                        }
                        None => channel,
                    }
                }
                _ => channel,
            };
            apply_tokens(state, &channel, &record);
            channel.hub.set_paused(record.paused);
        }
    }
}

/// Applies a changed definition of an admin-created channel.
async fn redefine(
    state: &Arc<AppState>,
    name: &str,
    channel: &Channel,
    definition: &Map<String, Value>,
) -> Option<Arc<Channel>> {
    use crate::lifecycle::{ensure_queues, install_definition, prepare_definition};
    let prepared = match prepare_definition(state, name, definition) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(channel = %name, error = ?e, "Cannot apply a definition changed by another instance");
            return None;
        }
    };
    if let Err(e) = ensure_queues(state, name, &prepared).await {
        tracing::warn!(channel = %name, error = ?e, "Cannot create the queues of a changed definition");
        return None;
    }
    Some(install_definition(state, channel, prepared))
}

/// Installs the record's tokens, unless it was written for another configured token (the
/// instances disagree on the configuration; each keeps its own until they agree).
fn apply_tokens(state: &AppState, channel: &Arc<Channel>, record: &ChannelRecord) {
    if channel.source == ChannelSource::Config {
        let Some(spec) = state
            .config
            .channels
            .iter()
            .find(|s| s.name == channel.name)
        else {
            return;
        };
        let configured = hex(&hash_token(spec.token.expose().as_bytes()));
        if record.configured_token.as_deref() != Some(configured.as_str()) {
            return;
        }
    }
    let Some(tokens) = stored_tokens(record, None, Timestamp::now()) else {
        return;
    };
    if tokens != channel.tokens() {
        crate::lifecycle::install_tokens(state, channel, tokens);
    }
}

/// Drops a channel another instance deleted (its queues are already gone).
fn remove_local(
    state: &AppState,
    channel: &Channel,
    applied: &mut HashMap<String, Map<String, Value>>,
) {
    state.registry.remove_channel(&channel.name);
    channel.hub.close_all(CloseReason::ChannelDeleted);
    channel.hub.stop_leasing();
    applied.remove(&channel.name);
    tracing::info!(channel = %channel.name, "Channel deleted by another instance");
}
