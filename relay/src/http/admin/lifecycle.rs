//! Creating and deleting channels through the admin API (`docs/reference/http-api.md` §6.1, §6.3, R-55).
//! Admin-created channels are persisted (definition, token hash) and rebuilt at start-up.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use webhook_connect_protocol::{CloseReason, Timestamp};

use super::channels::{details_of, find, new_token};
use crate::channels::hash_token;
use crate::config::{ChannelSource, channel_spec_from_json};
use crate::http::error::ApiError;
use crate::http::error::typed_body;
use crate::http::query::parse_query;
use crate::lifecycle::{
    add_channel, auth_options, ensure_queues, install_definition, prepare_definition,
};
use crate::state::AppState;
use crate::state_store::hex;

/// `POST /channels`
pub async fn create(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::unprocessable("Body must be a JSON object"))?;
    let Value::Object(mut definition) = value else {
        return Err(ApiError::unprocessable("Body must be a JSON object"));
    };
    if definition.contains_key("token_file") {
        return Err(ApiError::unprocessable(
            "token_file: not allowed here; give token or let the relay generate one",
        ));
    }
    let token = match definition.get("token") {
        None | Some(Value::Null) => new_token(),
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Err(ApiError::unprocessable("token: must be a non-empty string")),
    };
    definition.insert("token".into(), Value::String(token.clone()));
    let (mut spec, _warnings) = channel_spec_from_json(definition.clone(), &state.config.file)
        .map_err(|errors| ApiError::unprocessable(errors.join("; ")))?;
    spec.source = ChannelSource::Admin;
    if state.registry.channel(&spec.name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Channel already exists",
        ));
    }
    if let Some(w) = spec
        .webhooks
        .iter()
        .find(|w| state.registry.has_route(&w.id))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Webhook ID already in use: {}", w.id),
        ));
    }
    if state.registry.channels().len() as u64 >= state.config.file.limits.max_channels {
        return Err(ApiError::new(StatusCode::CONFLICT, "Channel limit reached"));
    }
    check_webhook_limit(&state, None, spec.webhooks.len())?;
    definition.remove("token");
    if let Some(why) = state.state_store.refusal(&definition) {
        return Err(ApiError::unprocessable(why));
    }
    let now = Timestamp::now();
    let token_hash = hex(&hash_token(token.as_bytes()));
    state
        .state_store
        .update(&spec.name, |r| {
            r.current_token = token_hash.clone();
            r.previous_token = None;
            r.configured_token = None;
            r.rotated_at = None;
            r.paused = false;
            r.created_at = Some(now);
            r.definition = Some(definition.clone());
        })
        .await
        .map_err(|_| ApiError::unavailable())?;
    let options = auth_options(&state.config, &state.trusted_proxies);
    if let Err(e) = add_channel(&state, &spec, false, &options).await {
        let _ = state.state_store.remove(&spec.name).await;
        tracing::info!(action = "create-channel", channel = %spec.name, result = "failed", client_ip = %peer.ip(), "Admin change");
        return Err(ApiError::unprocessable(e));
    }
    let channel = find(&state, &spec.name)?;
    let mut body = details_of(&channel).await?;
    body.token = Some(token);
    tracing::info!(action = "create-channel", channel = %spec.name, result = "ok", client_ip = %peer.ip(), "Admin change");
    let mut response = typed_body(StatusCode::CREATED, &body);
    if let Ok(location) =
        HeaderValue::from_str(&format!("/admin/webhook-connect/channels/{}", spec.name))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The answer to deleting a channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    /// Always `deleted`.
    status: &'static str,
    channel: String,
    /// Queued and in-flight messages dropped.
    messages_deleted: u64,
    dead_letters_deleted: u64,
}

/// `DELETE /channels/{channel}?force=false`
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    if channel.source == ChannelSource::Config {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Channel is defined in configuration",
        ));
    }
    let force = parse_query(raw.as_deref())
        .iter()
        .rev()
        .find(|(k, _)| k == "force")
        .is_some_and(|(_, v)| webhook_connect_protocol::ack::parse_bool(v) == Some(true));
    let stats = state
        .buffer
        .stats(&name)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let t = &stats.total;
    let busy = !channel.hub.connections().is_empty()
        || t.queued > 0
        || t.in_flight > 0
        || t.dead_letters > 0;
    if busy && !force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Channel is not empty; use force=true",
        ));
    }
    state.registry.remove_channel(&name);
    channel.hub.close_all(CloseReason::ChannelDeleted);
    channel.hub.stop_leasing();
    state
        .buffer
        .delete_channel(&name)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let _ = state.state_store.remove(&name).await;
    if let Err(e) = state.trace.remove_channel(&name).await {
        tracing::warn!(channel = %name, error = %e, "Traces of the deleted channel stay until they age out");
    }
    tracing::info!(action = "delete-channel", channel = %name, result = "ok", client_ip = %peer.ip(), "Admin change");
    Ok(typed_body(
        StatusCode::OK,
        &Deleted {
            status: "deleted",
            channel: name,
            messages_deleted: t.queued + t.in_flight,
            dead_letters_deleted: t.dead_letters,
        },
    ))
}

/// RFC 7396 merge patch: objects merge key by key, `null` removes, anything else replaces. An
/// object patched onto a non-object (or a missing key) merges into an empty object, so the
/// patch's `null`s are dropped there too rather than stored.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// `PATCH /channels/{channel}`
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    if channel.source == ChannelSource::Config {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Channel is defined in configuration",
        ));
    }
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::unprocessable("Body must be a JSON object"))?;
    let Value::Object(patch_map) = &patch else {
        return Err(ApiError::unprocessable("Body must be a JSON object"));
    };
    for fixed in ["name", "token", "token_file"] {
        if patch_map.contains_key(fixed) {
            return Err(ApiError::unprocessable(format!(
                "{fixed}: cannot be changed (tokens change only through rotate-token)"
            )));
        }
    }
    let record = state
        .state_store
        .get(&name)
        .await
        .ok()
        .flatten()
        .ok_or_else(ApiError::unavailable)?;
    let mut definition = Value::Object(record.definition.clone().unwrap_or_default());
    merge_patch(&mut definition, &patch);
    let Value::Object(definition) = definition else {
        return Err(ApiError::unprocessable("Body must be a JSON object"));
    };
    let prepared = prepare_definition(&state, &name, &definition)?;
    let attached = definition
        .get("webhooks")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    check_webhook_limit(&state, Some(&name), attached)?;
    if let Some(why) = state.state_store.refusal(&definition) {
        return Err(ApiError::unprocessable(why));
    }
    ensure_queues(&state, &name, &prepared)
        .await
        .map_err(|_| ApiError::unavailable())?;
    state
        .state_store
        .update(&name, |r| r.definition = Some(definition.clone()))
        .await
        .map_err(|_| ApiError::unavailable())?;
    let replacement = install_definition(&state, &channel, prepared);
    tracing::info!(action = "update-channel", channel = %name, result = "ok", client_ip = %peer.ip(), "Admin change");
    Ok(typed_body(StatusCode::OK, &details_of(&replacement).await?))
}

/// `limits.max_webhooks` bounds the webhook ids of every channel together (configured and
/// admin-created): `409 Webhook limit reached` when `attached` ids for channel `replacing`
/// (a new channel when `None`) would exceed it.
fn check_webhook_limit(
    state: &AppState,
    replacing: Option<&str>,
    attached: usize,
) -> Result<(), ApiError> {
    let others: usize = state
        .registry
        .channels()
        .iter()
        .filter(|c| Some(c.name.as_str()) != replacing)
        .map(|c| c.webhook_ids.len())
        .sum();
    if (others + attached) as u64 > state.config.file.limits.max_webhooks {
        return Err(ApiError::new(StatusCode::CONFLICT, "Webhook limit reached"));
    }
    Ok(())
}
