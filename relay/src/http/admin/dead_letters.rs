//! Dead-letter routes of the admin API (`docs/reference/http-api.md` §5.8, §6.5): bounded, read-only listing
//! with cursors, replay and purge per message or in bulk.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use webhook_connect_buffer::{BufferError, DeadLetter, DeadLetterQuery};

use super::channels::find;
use super::views;
use crate::http::error::{ApiError, status_body};
use crate::http::query::parse_query;
use crate::state::AppState;

/// Pages read at most to fill one filtered page.
const MAX_SCAN_PAGES: usize = 20;

fn buffer_error(e: BufferError) -> ApiError {
    match e {
        BufferError::QueueFull => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Queue full, retry later").retry_after(5)
        }
        BufferError::Invalid(m) => ApiError::unprocessable(m),
        _ => ApiError::unavailable(),
    }
}

fn reason_ok(reason: &Option<String>) -> Result<(), ApiError> {
    match reason.as_deref() {
        None | Some("rejected" | "max_attempts" | "expired") => Ok(()),
        Some(_) => Err(ApiError::unprocessable(
            "reason must be one of rejected, max_attempts, expired",
        )),
    }
}

fn matches(d: &DeadLetter, reason: &Option<String>) -> bool {
    reason.as_deref().is_none_or(|r| r == d.reason.as_str())
}

/// Ids of the dead letters of `channel` (optionally of one webhook) that pass `keep`, newest
/// first, reading every page (bounded to 100 000 ids).
async fn collect_ids(
    state: &AppState,
    channel: &str,
    webhook_id: &Option<String>,
    keep: impl Fn(&DeadLetter) -> bool,
) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let query = DeadLetterQuery {
            webhook_id: webhook_id.clone(),
            limit: 1000,
            cursor,
        };
        let page = state
            .buffer
            .dead_letters(channel, &query)
            .await
            .map_err(buffer_error)?;
        ids.extend(
            page.items
                .iter()
                .filter(|d| keep(d))
                .map(|d| d.envelope.message_id.as_str().to_owned()),
        );
        match page.next_cursor {
            Some(c) if ids.len() < 100_000 => cursor = Some(c),
            _ => return Ok(ids),
        }
    }
}

/// `GET /channels/{channel}/dead-letters`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let query = parse_query(raw.as_deref());
    let get = |k: &str| {
        query
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let limit = match get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::unprocessable("limit must be an integer between 1 and 1000")
            })?,
    };
    let reason = get("reason");
    reason_ok(&reason)?;
    let include_body = get("include_body")
        .is_some_and(|v| webhook_connect_protocol::ack::parse_bool(&v) == Some(true));
    let webhook_id = get("webhook_id");
    let mut cursor = get("cursor");
    let mut items = Vec::new();
    let mut next_cursor = None;
    for _ in 0..MAX_SCAN_PAGES {
        let page = state
            .buffer
            .dead_letters(
                &name,
                &DeadLetterQuery {
                    webhook_id: webhook_id.clone(),
                    limit: limit - items.len(),
                    cursor,
                },
            )
            .await
            .map_err(buffer_error)?;
        items.extend(page.items.into_iter().filter(|d| matches(d, &reason)));
        next_cursor = page.next_cursor;
        if items.len() >= limit || next_cursor.is_none() {
            break;
        }
        cursor = next_cursor.clone();
    }
    let stats = state.buffer.stats(&name).await.map_err(buffer_error)?;
    let total = match &webhook_id {
        Some(w) => stats
            .queues
            .iter()
            .find(|q| &q.webhook_id == w)
            .map_or(0, |q| q.dead_letters),
        None => stats.total.dead_letters,
    };
    let messages: Vec<Value> = items
        .iter()
        .map(|d| views::dead_letter(d, include_body))
        .collect();
    Ok(status_body(
        StatusCode::OK,
        json!({"channel": channel.name, "count": messages.len(), "total": total, "next_cursor": next_cursor, "messages": messages}),
    ))
}

async fn find_dead(
    state: &AppState,
    channel: &str,
    message_id: &str,
) -> Result<DeadLetter, ApiError> {
    let mut cursor = None;
    loop {
        let page = state
            .buffer
            .dead_letters(
                channel,
                &DeadLetterQuery {
                    webhook_id: None,
                    limit: 1000,
                    cursor,
                },
            )
            .await
            .map_err(buffer_error)?;
        if let Some(d) = page
            .items
            .into_iter()
            .find(|d| d.envelope.message_id.as_str() == message_id)
        {
            return Ok(d);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "Dead letter not found",
                ));
            }
        }
    }
}

/// `GET /channels/{channel}/dead-letters/{message_id}`
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    Path((name, message_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    find(&state, &name)?;
    let d = find_dead(&state, &name, &message_id).await?;
    Ok(status_body(StatusCode::OK, views::dead_letter(&d, true)))
}

/// What a per-message dead-letter operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OneMessage {
    Replay,
    Purge,
}

/// Replays or purges one dead letter: `200 {"status": "replayed"|"purged", …}` or `404`.
async fn one_message(
    state: &AppState,
    name: &str,
    message_id: &str,
    op: OneMessage,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    find(state, name)?;
    let done = match op {
        OneMessage::Replay => {
            state
                .buffer
                .replay_dead_letters(name, None, Some(message_id))
                .await
        }
        OneMessage::Purge => {
            state
                .buffer
                .purge_dead_letters(name, None, Some(message_id))
                .await
        }
    }
    .map_err(buffer_error)?;
    let status = if op == OneMessage::Replay {
        "replayed"
    } else {
        "purged"
    };
    tracing::info!(action = status, channel = %name, message_id, count = done, client_ip = %peer.ip(), "Admin change");
    if done == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Dead letter not found",
        ));
    }
    Ok(status_body(
        StatusCode::OK,
        json!({"status": status, "message_id": message_id}),
    ))
}

/// `POST /channels/{channel}/dead-letters/{message_id}/replay`
pub async fn replay_one(
    State(state): State<Arc<AppState>>,
    Path((name, message_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    one_message(&state, &name, &message_id, OneMessage::Replay, peer).await
}

/// `POST /channels/{channel}/dead-letters/replay`
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let filter: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| ApiError::unprocessable("Body must be a JSON object"))?
    };
    let Value::Object(filter) = filter else {
        return Err(ApiError::unprocessable("Body must be a JSON object"));
    };
    if let Some(key) = filter
        .keys()
        .find(|k| !["webhook_id", "reason", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::unprocessable(format!("{key}: unknown field")));
    }
    let webhook_id = filter
        .get("webhook_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let reason = filter
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    reason_ok(&reason)?;
    let limit = match filter.get("limit") {
        None => 1000,
        Some(v) => v
            .as_u64()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| {
                ApiError::unprocessable("limit must be an integer between 1 and 10000")
            })?,
    };
    // Oldest first, one message at a time, so a full queue stops the run cleanly.
    let mut ids = collect_ids(&state, &name, &webhook_id, |d| matches(d, &reason)).await?;
    ids.reverse();
    let mut replayed = 0u64;
    let mut stopped = None;
    for id in ids.iter().take(limit as usize) {
        match state
            .buffer
            .replay_dead_letters(&name, None, Some(id))
            .await
        {
            Ok(n) => replayed += n,
            Err(BufferError::QueueFull) => {
                stopped = Some("queue_full");
                break;
            }
            Err(e) => return Err(buffer_error(e)),
        }
    }
    let remaining = ids.len() as u64 - replayed;
    tracing::info!(action = "replay-all", channel = %name, replayed, client_ip = %peer.ip(), "Admin change");
    let mut out = json!({"channel": channel.name, "replayed": replayed, "remaining": remaining});
    if let Some(s) = stopped {
        out["stopped"] = json!(s);
    }
    Ok(status_body(StatusCode::OK, out))
}

/// `DELETE /channels/{channel}/dead-letters/{message_id}`
pub async fn purge_one(
    State(state): State<Arc<AppState>>,
    Path((name, message_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    one_message(&state, &name, &message_id, OneMessage::Purge, peer).await
}

/// `DELETE /channels/{channel}/dead-letters`
pub async fn purge_many(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let query = parse_query(raw.as_deref());
    let get = |k: &str| {
        query
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let webhook_id = get("webhook_id");
    let reason = get("reason");
    reason_ok(&reason)?;
    let before = match get("before") {
        None => None,
        Some(t) => Some(
            t.parse::<webhook_connect_protocol::Timestamp>()
                .map_err(|_| ApiError::unprocessable("before must be an RFC 3339 timestamp"))?,
        ),
    };
    let purged = if reason.is_none() && before.is_none() {
        state
            .buffer
            .purge_dead_letters(&name, webhook_id.as_deref(), None)
            .await
            .map_err(buffer_error)?
    } else {
        let ids = collect_ids(&state, &name, &webhook_id, |d| {
            matches(d, &reason) && before.is_none_or(|b| d.dead_lettered_at < b)
        })
        .await?;
        let mut n = 0;
        for id in ids {
            n += state
                .buffer
                .purge_dead_letters(&name, None, Some(&id))
                .await
                .map_err(buffer_error)?;
        }
        n
    };
    tracing::info!(action = "purge-all", channel = %name, purged, client_ip = %peer.ip(), "Admin change");
    Ok(status_body(
        StatusCode::OK,
        json!({"channel": channel.name, "purged": purged}),
    ))
}
