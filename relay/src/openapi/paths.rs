//! One `#[utoipa::path]` per operation the router serves: method, path, parameters, request
//! and response bodies (by type) and authentication. The common error answers (401, 403,
//! 429, 503) are added to every operation by [`super::CommonErrors`].

// The functions only carry the attributes; the handlers are in `crate::http`.
#![allow(dead_code)]

use super::wire::{
    AckBatch, AckQuery, AckResponse, CompatHealth, ConnectStatus, IngestAccepted, Liveness,
    PollQuery, PollResponse, Readiness,
};
use crate::http::admin::channels::{
    AdminHealth, Disconnected, Overview, PauseState, RotateRequest, Rotated, WebhookStats,
};
use crate::http::admin::dead_letters::{
    DeadLetterList, ListQuery, OneMessageDone, PurgeQuery, Purged, ReplayRequest, Replayed,
};
use crate::http::admin::lifecycle::Deleted;
use crate::http::admin::views::{ChannelDetails, ChannelSummary, DeadLetter};
use crate::http::error::ErrorBody;
use crate::stats::ChannelStats;
use crate::trace::MessageTraceView;

#[utoipa::path(
    post,
    path = "/webhook/{webhook_id}",
    tag = "ingest",
    operation_id = "ingest",
    summary = "Receive a webhook and store it durably",
    description = "Any body and content type; the webhook's configured authentication applies \
                   (docs/reference/auth-methods.md). 200 only once the message is stored.",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body(content = String, content_type = "*/*", description = "The webhook body, as sent"),
    responses(
        (status = 200, description = "Stored", body = IngestAccepted),
        (status = 404, description = "Unknown webhook id", body = ErrorBody),
        (status = 413, description = "Body larger than the channel allows", body = ErrorBody),
    )
)]
fn ingest() {}

#[utoipa::path(
    post,
    path = "/webhook/{namespace}/{webhook_id}",
    tag = "ingest",
    operation_id = "ingestNamespaced",
    summary = "Receive a webhook on the namespaced route",
    params(
        ("namespace" = String, Path, description = "Namespace recorded with the message"),
        ("webhook_id" = String, Path, description = "Webhook id"),
    ),
    request_body(content = String, content_type = "*/*", description = "The webhook body, as sent"),
    responses(
        (status = 200, description = "Stored", body = IngestAccepted),
        (status = 404, description = "Unknown webhook id", body = ErrorBody),
        (status = 413, description = "Body larger than the channel allows", body = ErrorBody),
    )
)]
fn ingest_namespaced() {}

#[utoipa::path(
    get,
    path = "/connect/stream/{channel}",
    tag = "streaming",
    operation_id = "streamWebSocket",
    summary = "WebSocket stream of a channel (upgrade)",
    description = "Frames of docs/reference/wire-protocol.md; `X-Webhook-Connect-Protocol: 2` asks for v2.",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    ),
    security(("channelToken" = []))
)]
fn stream_websocket() {}

#[utoipa::path(
    get,
    path = "/connect/stream/{channel}/sse",
    tag = "streaming",
    operation_id = "streamSse",
    summary = "Server-Sent Events stream of a channel",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "`connected`, `webhook` and `heartbeat` events", body = String, content_type = "text/event-stream"),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    ),
    security(("channelToken" = []))
)]
fn stream_sse() {}

#[utoipa::path(
    get,
    path = "/connect/stream/{channel}/poll",
    tag = "streaming",
    operation_id = "streamPoll",
    summary = "Long-poll for messages of a channel",
    params(("channel" = String, Path, description = "Channel name"), PollQuery),
    responses(
        (status = 200, description = "One or more messages", body = PollResponse),
        (status = 204, description = "No message within the timeout"),
        (status = 404, description = "Unknown channel", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody),
    ),
    security(("channelToken" = []))
)]
fn stream_poll() {}

#[utoipa::path(
    post,
    path = "/connect/ack",
    tag = "streaming",
    operation_id = "ack",
    summary = "Ack, nack or touch messages delivered over SSE or long-poll",
    description = "The single form takes the query; the v2 batch form takes a JSON body. \
                   `X-Connection-ID` names the stream.",
    params(
        AckQuery,
        ("x-connection-id" = String, Header, description = "The stream's connection id"),
    ),
    request_body(content = Option<AckBatch>, description = "v2 batch form"),
    responses(
        (status = 200, description = "Settled", body = AckResponse),
        (status = 404, description = "Connection or message not found", body = ErrorBody),
        (status = 413, description = "More than 1000 entries", body = ErrorBody),
        (status = 422, description = "Malformed request", body = ErrorBody),
    ),
    security(("channelToken" = []))
)]
fn ack() {}

#[utoipa::path(
    get,
    path = "/connect/status/{channel}",
    tag = "streaming",
    operation_id = "connectStatus",
    summary = "Channel status for a connector",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "Status", body = ConnectStatus),
        (status = 404, description = "Unknown channel", body = ErrorBody),
    ),
    security(("channelToken" = []))
)]
fn connect_status() {}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Process is up",
    responses((status = 200, description = "Up", body = Liveness))
)]
fn healthz() {}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Buffer and state store reachable",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready, or shutting down", body = Readiness),
    )
)]
fn readyz() {}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "health",
    summary = "Health in the original's format",
    responses(
        (status = 200, description = "Healthy", body = CompatHealth),
        (status = 503, description = "Buffer unreachable", body = CompatHealth),
    )
)]
fn health() {}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics (text format 0.0.4)",
    description = "Totals only on the main listener without `metrics.bearer_token`; every label \
                   with the token or on `metrics.listen` (docs/reference/http-api.md §2.4).",
    responses(
        (status = 200, description = "Exposition", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong metrics token", body = ErrorBody),
        (status = 404, description = "Metrics disabled", body = ErrorBody),
    ),
    security((), ("metricsToken" = []))
)]
fn metrics() {}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This document",
    responses(
        (status = 200, description = "OpenAPI 3.1", body = Object),
        (status = 404, description = "Disabled (`server.openapi = false`)", body = ErrorBody),
    )
)]
fn openapi() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/health",
    tag = "admin",
    operation_id = "adminHealth",
    summary = "Admin health (counts for admins only)",
    responses(
        (status = 200, description = "Healthy", body = AdminHealth),
        (status = 503, description = "Unhealthy", body = AdminHealth),
    ),
    security((), ("adminToken" = []))
)]
fn admin_health() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/overview",
    tag = "admin",
    operation_id = "overview",
    summary = "Overview of channels and connections",
    responses((status = 200, description = "Overview", body = Overview)),
    security(("adminToken" = []))
)]
fn overview() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/channels",
    tag = "admin",
    operation_id = "listChannels",
    summary = "List channels",
    responses((status = 200, description = "Every channel, by name", body = Vec<ChannelSummary>)),
    security(("adminToken" = []))
)]
fn list_channels() {}

#[utoipa::path(
    post,
    path = "/admin/webhook-connect/channels",
    tag = "admin",
    operation_id = "createChannel",
    summary = "Create a channel",
    description = "The body is a channel definition: the `[[channels]]` schema of \
                   docs/reference/config-formats.md as JSON. The token is generated unless given, \
                   and shown only in this answer.",
    request_body(content = Object, description = "Channel definition"),
    responses(
        (status = 201, description = "Created (with `token`)", body = ChannelDetails),
        (status = 409, description = "Name or webhook id taken, or a limit reached", body = ErrorBody),
        (status = 422, description = "Invalid definition", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn create_channel() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/channels/{channel}",
    tag = "admin",
    operation_id = "getChannel",
    summary = "Channel details",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "Settings, statistics and connections", body = ChannelDetails),
        (status = 404, description = "Channel not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn get_channel() {}

#[utoipa::path(
    patch,
    path = "/admin/webhook-connect/channels/{channel}",
    tag = "admin",
    operation_id = "updateChannel",
    summary = "Change an admin-created channel (JSON merge patch, RFC 7396)",
    params(("channel" = String, Path, description = "Channel name")),
    request_body(content = Object, content_type = "application/merge-patch+json", description = "Merge patch of the definition"),
    responses(
        (status = 200, description = "Updated", body = ChannelDetails),
        (status = 404, description = "Channel not found", body = ErrorBody),
        (status = 409, description = "Defined in configuration, or a limit reached", body = ErrorBody),
        (status = 422, description = "Invalid patch", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn update_channel() {}

#[utoipa::path(
    delete,
    path = "/admin/webhook-connect/channels/{channel}",
    tag = "admin",
    operation_id = "deleteChannel",
    summary = "Delete an admin-created channel",
    params(
        ("channel" = String, Path, description = "Channel name"),
        ("force" = Option<bool>, Query, description = "Delete even when not empty"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "Channel not found", body = ErrorBody),
        (status = 409, description = "Defined in configuration, or not empty without force", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn delete_channel() {}

#[utoipa::path(
    post,
    path = "/admin/webhook-connect/channels/{channel}/rotate-token",
    tag = "admin",
    operation_id = "rotateToken",
    summary = "Rotate the channel token with a grace period",
    params(("channel" = String, Path, description = "Channel name")),
    request_body(content = Option<RotateRequest>, description = "Optional; empty means 3600 s of grace"),
    responses(
        (status = 200, description = "The new token, shown only here", body = Rotated),
        (status = 404, description = "Channel not found", body = ErrorBody),
        (status = 422, description = "Bad grace period", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn rotate_token() {}

#[utoipa::path(
    post,
    path = "/admin/webhook-connect/channels/{channel}/pause",
    tag = "admin",
    operation_id = "pauseChannel",
    summary = "Pause deliveries (ingest goes on)",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "Paused", body = PauseState),
        (status = 404, description = "Channel not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn pause_channel() {}

#[utoipa::path(
    post,
    path = "/admin/webhook-connect/channels/{channel}/resume",
    tag = "admin",
    operation_id = "resumeChannel",
    summary = "Resume deliveries",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "Resumed", body = PauseState),
        (status = 404, description = "Channel not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn resume_channel() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/channels/{channel}/stats",
    tag = "admin",
    operation_id = "channelStats",
    summary = "Channel statistics",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "Statistics", body = ChannelStats),
        (status = 404, description = "Channel not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn channel_stats() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/channels/{channel}/webhook-stats",
    tag = "admin",
    operation_id = "webhookStats",
    summary = "Per-webhook statistics",
    params(("channel" = String, Path, description = "Channel name")),
    responses(
        (status = 200, description = "By webhook id", body = WebhookStats),
        (status = 404, description = "Channel not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn webhook_stats() {}

#[utoipa::path(
    delete,
    path = "/admin/webhook-connect/channels/{channel}/connections/{connection_id}",
    tag = "admin",
    operation_id = "disconnect",
    summary = "Close a connection (its leased messages are delivered again)",
    params(
        ("channel" = String, Path, description = "Channel name"),
        ("connection_id" = String, Path, description = "Connection id"),
    ),
    responses(
        (status = 200, description = "Closed", body = Disconnected),
        (status = 400, description = "Connection of another channel", body = ErrorBody),
        (status = 404, description = "Channel or connection not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn disconnect() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/channels/{channel}/dead-letters",
    tag = "admin",
    operation_id = "listDeadLetters",
    summary = "List dead letters, newest first (paged by cursor)",
    params(("channel" = String, Path, description = "Channel name"), ListQuery),
    responses(
        (status = 200, description = "One page", body = DeadLetterList),
        (status = 404, description = "Channel not found", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn list_dead_letters() {}

#[utoipa::path(
    delete,
    path = "/admin/webhook-connect/channels/{channel}/dead-letters",
    tag = "admin",
    operation_id = "purgeDeadLetters",
    summary = "Purge matching dead letters (at most `limit`; repeat until 0 for any number)",
    params(("channel" = String, Path, description = "Channel name"), PurgeQuery),
    responses(
        (status = 200, description = "Purged", body = Purged),
        (status = 404, description = "Channel not found", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn purge_dead_letters() {}

#[utoipa::path(
    post,
    path = "/admin/webhook-connect/channels/{channel}/dead-letters/replay",
    tag = "admin",
    operation_id = "replayDeadLetters",
    summary = "Replay matching dead letters, oldest first (at most `limit`; repeat for more)",
    params(("channel" = String, Path, description = "Channel name")),
    request_body(content = Option<ReplayRequest>, description = "Optional filter and limit"),
    responses(
        (status = 200, description = "Replayed", body = Replayed),
        (status = 404, description = "Channel not found", body = ErrorBody),
        (status = 422, description = "Bad filter", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn replay_dead_letters() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/channels/{channel}/dead-letters/{message_id}",
    tag = "admin",
    operation_id = "getDeadLetter",
    summary = "One dead letter with its body",
    params(
        ("channel" = String, Path, description = "Channel name"),
        ("message_id" = String, Path, description = "Message id"),
    ),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetter),
        (status = 404, description = "Channel or dead letter not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn get_dead_letter() {}

#[utoipa::path(
    delete,
    path = "/admin/webhook-connect/channels/{channel}/dead-letters/{message_id}",
    tag = "admin",
    operation_id = "purgeDeadLetter",
    summary = "Purge one dead letter",
    params(
        ("channel" = String, Path, description = "Channel name"),
        ("message_id" = String, Path, description = "Message id"),
    ),
    responses(
        (status = 200, description = "Purged", body = OneMessageDone),
        (status = 404, description = "Channel or dead letter not found", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn purge_dead_letter() {}

#[utoipa::path(
    post,
    path = "/admin/webhook-connect/channels/{channel}/dead-letters/{message_id}/replay",
    tag = "admin",
    operation_id = "replayDeadLetter",
    summary = "Replay one dead letter",
    params(
        ("channel" = String, Path, description = "Channel name"),
        ("message_id" = String, Path, description = "Message id"),
    ),
    responses(
        (status = 200, description = "Replayed", body = OneMessageDone),
        (status = 404, description = "Channel or dead letter not found", body = ErrorBody),
        (status = 429, description = "The webhook queue is full", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn replay_dead_letter() {}

#[utoipa::path(
    get,
    path = "/admin/webhook-connect/messages/{message_id}",
    tag = "admin",
    operation_id = "getMessageTrace",
    summary = "The trace of one message: state and every delivery attempt",
    description = "Kept within the trace retention (`[trace]`, docs/operations.md \"Message trace\").",
    params(("message_id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The trace", body = MessageTraceView),
        (status = 404, description = "No trace kept of this message", body = ErrorBody),
        (status = 422, description = "Not a message id", body = ErrorBody),
    ),
    security(("adminToken" = []))
)]
fn get_message_trace() {}

#[utoipa::path(
    get,
    path = "/admin/ui",
    tag = "dashboard",
    operation_id = "dashboardRedirect",
    summary = "Redirect to the dashboard at /admin/ui/",
    responses(
        (status = 308, description = "To /admin/ui/"),
    )
)]
fn dashboard_redirect() {}

#[utoipa::path(
    get,
    path = "/admin/ui/",
    tag = "dashboard",
    operation_id = "dashboardPage",
    summary = "The dashboard page (public file; it signs in with the admin token)",
    description = "Served only when the admin API is enabled; 404 otherwise.",
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "Admin API disabled", body = ErrorBody),
    )
)]
fn dashboard_page() {}

#[utoipa::path(
    get,
    path = "/admin/ui/{file}",
    tag = "dashboard",
    operation_id = "dashboardFile",
    summary = "A file of the dashboard (app.js, app.css, index.html)",
    params(("file" = String, Path, description = "File name")),
    responses(
        (status = 200, description = "The file", body = String, content_type = "text/plain"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such file, or admin API disabled", body = ErrorBody),
    )
)]
fn dashboard_file() {}
