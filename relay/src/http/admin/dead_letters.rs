//! Dead-letter routes of the admin API (`docs/reference/http-api.md` §5.8, §6.5): bounded, read-only listing
//! with cursors, replay and purge per message or in bulk.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use webhook_connect_buffer::{BufferError, DeadLetter, DeadLetterQuery};

use super::channels::find;
use super::views;
use crate::http::error::{ApiError, typed_body};
use crate::http::query::parse_query;
use crate::state::AppState;
use crate::trace::TraceEvent;

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

/// Most ids one bulk request collects.
const MAX_BULK_IDS: usize = 100_000;

/// Ids of the dead letters of `channel` (optionally of one webhook) that pass `keep`, newest
/// first, reading pages until `max` are found or none is left.
async fn collect_ids(
    state: &AppState,
    channel: &str,
    webhook_id: &Option<String>,
    max: usize,
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
            Some(c) if ids.len() < max => cursor = Some(c),
            _ => {
                ids.truncate(max);
                return Ok(ids);
            }
        }
    }
}

/// Query of `GET /channels/{channel}/dead-letters`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this webhook id.
    pub webhook_id: Option<String>,
    /// Only this reason: `rejected`, `max_attempts` or `expired`.
    pub reason: Option<String>,
    /// Include each message's base64 `body`.
    pub include_body: Option<bool>,
}

/// A decoded query string; the last value of a repeated key wins.
struct Query(Vec<(String, String)>);

impl Query {
    fn new(raw: Option<&str>) -> Query {
        Query(parse_query(raw))
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// `limit`, an integer from 1 to `max`, when given.
    fn limit(&self, max: usize) -> Result<Option<usize>, ApiError> {
        self.get("limit")
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|l| (1..=max).contains(l))
                    .ok_or_else(|| {
                        ApiError::unprocessable(format!(
                            "limit must be an integer between 1 and {max}"
                        ))
                    })
            })
            .transpose()
    }

    /// `reason`, one of the three, when given.
    fn reason(&self) -> Result<Option<String>, ApiError> {
        let reason = self.get("reason");
        reason_ok(&reason)?;
        Ok(reason)
    }
}

impl ListQuery {
    fn parse(raw: Option<&str>) -> Result<ListQuery, ApiError> {
        let q = Query::new(raw);
        Ok(ListQuery {
            limit: q.limit(1000)?,
            cursor: q.get("cursor"),
            webhook_id: q.get("webhook_id"),
            reason: q.reason()?,
            include_body: q
                .get("include_body")
                .map(|v| webhook_connect_protocol::ack::parse_bool(&v) == Some(true)),
        })
    }
}

/// One page of dead letters, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterList {
    channel: String,
    /// Messages on this page.
    count: usize,
    /// Dead letters of the channel (or of `webhook_id`) in all.
    total: u64,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
    messages: Vec<views::DeadLetter>,
}

/// Records a replay in the message trace.
fn note_replayed(state: &AppState, channel: &str, message_id: &str) {
    let event = TraceEvent::Replayed {
        at: webhook_connect_protocol::Timestamp::now(),
    };
    state.trace.record(channel, message_id, event);
}

/// `GET /channels/{channel}/dead-letters`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let ListQuery {
        limit,
        mut cursor,
        webhook_id,
        reason,
        include_body,
    } = ListQuery::parse(raw.as_deref())?;
    let limit = limit.unwrap_or(100);
    let include_body = include_body.unwrap_or(false);
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
    let messages: Vec<views::DeadLetter> = items
        .iter()
        .map(|d| views::dead_letter(d, include_body))
        .collect();
    Ok(typed_body(
        StatusCode::OK,
        &DeadLetterList {
            channel: channel.name.clone(),
            count: messages.len(),
            total,
            next_cursor,
            messages,
        },
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
    Ok(typed_body(StatusCode::OK, &views::dead_letter(&d, true)))
}

/// What a per-message dead-letter operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OneMessage {
    Replay,
    Purge,
}

/// The answer to replaying or purging one dead letter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneMessageDone {
    /// `replayed` or `purged`.
    status: &'static str,
    message_id: String,
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
    if op == OneMessage::Replay && done > 0 {
        note_replayed(state, name, message_id);
    }
    if done == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Dead letter not found",
        ));
    }
    Ok(typed_body(
        StatusCode::OK,
        &OneMessageDone {
            status,
            message_id: message_id.to_owned(),
        },
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

/// The body of `POST /channels/{channel}/dead-letters/replay` (empty: every dead letter, up
/// to 1000).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this webhook id.
    pub webhook_id: Option<String>,
    /// Only this reason: `rejected`, `max_attempts` or `expired`.
    pub reason: Option<String>,
    /// Replay at most this many, 1–10000 (default 1000).
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
}

impl ReplayRequest {
    /// Reads the body: empty, or a JSON object of the three members.
    fn parse(body: &[u8]) -> Result<ReplayRequest, ApiError> {
        let filter: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
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
        let text = |key: &str| filter.get(key).and_then(Value::as_str).map(str::to_owned);
        let reason = text("reason");
        reason_ok(&reason)?;
        let limit = filter
            .get("limit")
            .map(|v| {
                v.as_u64()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| {
                        ApiError::unprocessable("limit must be an integer between 1 and 10000")
                    })
            })
            .transpose()?;
        Ok(ReplayRequest {
            webhook_id: text("webhook_id"),
            reason,
            limit,
        })
    }
}

/// The answer to a bulk replay.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replayed {
    channel: String,
    replayed: u64,
    /// Matching dead letters not replayed by this call.
    remaining: u64,
    /// `queue_full` when a full queue stopped the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<&'static str>,
}

/// `POST /channels/{channel}/dead-letters/replay`
pub async fn replay_many(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let ReplayRequest {
        webhook_id,
        reason,
        limit,
    } = ReplayRequest::parse(&body)?;
    let limit = limit.unwrap_or(1000);
    // Oldest first, one message at a time, so a full queue stops the run cleanly.
    let mut ids = collect_ids(&state, &name, &webhook_id, MAX_BULK_IDS, |d| {
        matches(d, &reason)
    })
    .await?;
    ids.reverse();
    let mut replayed = 0u64;
    let mut stopped = None;
    for id in ids.iter().take(limit as usize) {
        match state
            .buffer
            .replay_dead_letters(&name, None, Some(id))
            .await
        {
            Ok(n) => {
                replayed += n;
                if n > 0 {
                    note_replayed(&state, &name, id);
                }
            }
            Err(BufferError::QueueFull) => {
                stopped = Some("queue_full");
                break;
            }
            Err(e) => return Err(buffer_error(e)),
        }
    }
    let remaining = ids.len() as u64 - replayed;
    tracing::info!(action = "replay-all", channel = %name, replayed, client_ip = %peer.ip(), "Admin change");
    Ok(typed_body(
        StatusCode::OK,
        &Replayed {
            channel: channel.name.clone(),
            replayed,
            remaining,
            stopped,
        },
    ))
}

/// `DELETE /channels/{channel}/dead-letters/{message_id}`
pub async fn purge_one(
    State(state): State<Arc<AppState>>,
    Path((name, message_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    one_message(&state, &name, &message_id, OneMessage::Purge, peer).await
}

/// Query of `DELETE /channels/{channel}/dead-letters`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurgeQuery {
    /// Only this webhook id.
    pub webhook_id: Option<String>,
    /// Only this reason: `rejected`, `max_attempts` or `expired`.
    pub reason: Option<String>,
    /// Only those dead-lettered before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub before: Option<webhook_connect_protocol::Timestamp>,
    /// Purge at most this many, 1–10000 (default: every match).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

impl PurgeQuery {
    fn parse(raw: Option<&str>) -> Result<PurgeQuery, ApiError> {
        let q = Query::new(raw);
        let before = q
            .get("before")
            .map(|t| {
                t.parse::<webhook_connect_protocol::Timestamp>()
                    .map_err(|_| ApiError::unprocessable("before must be an RFC 3339 timestamp"))
            })
            .transpose()?;
        Ok(PurgeQuery {
            webhook_id: q.get("webhook_id"),
            reason: q.reason()?,
            before,
            limit: q.limit(10_000)?,
        })
    }
}

/// The answer to a bulk purge.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purged {
    channel: String,
    purged: u64,
}

/// `DELETE /channels/{channel}/dead-letters`
pub async fn purge_many(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let PurgeQuery {
        webhook_id,
        reason,
        before,
        limit,
    } = PurgeQuery::parse(raw.as_deref())?;
    let purged = if reason.is_none() && before.is_none() && limit.is_none() {
        state
            .buffer
            .purge_dead_letters(&name, webhook_id.as_deref(), None)
            .await
            .map_err(buffer_error)?
    } else {
        let ids = collect_ids(
            &state,
            &name,
            &webhook_id,
            limit.unwrap_or(MAX_BULK_IDS),
            |d| matches(d, &reason) && before.is_none_or(|b| d.dead_lettered_at < b),
        )
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
    Ok(typed_body(
        StatusCode::OK,
        &Purged {
            channel: channel.name.clone(),
            purged,
        },
    ))
}
