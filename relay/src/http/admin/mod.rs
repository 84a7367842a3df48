//! The admin API under `/admin/webhook-connect` (`docs/reference/http-api.md` §4–§6).
//!
//! Every route but `GET /health` passes the admin guard first ([`guard`]): disabled unless a
//! token is configured, constant-time comparison on bytes, and a per-IP limit on failures.

pub(crate) mod channels;
pub(crate) mod dead_letters;
mod guard;
pub(crate) mod lifecycle;
mod messages;
pub(crate) mod views;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::state::AppState;

/// Admin routes, to be nested under `/admin/webhook-connect`.
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let guarded = Router::new()
        .route("/channels", get(channels::list).post(lifecycle::create))
        .route(
            "/channels/{channel}",
            get(channels::details)
                .delete(lifecycle::delete)
                .patch(lifecycle::update),
        )
        .route(
            "/channels/{channel}/rotate-token",
            post(channels::rotate_token),
        )
        .route("/channels/{channel}/pause", post(channels::pause))
        .route("/channels/{channel}/resume", post(channels::resume))
        .route("/channels/{channel}/stats", get(channels::stats))
        .route(
            "/channels/{channel}/webhook-stats",
            get(channels::webhook_stats),
        )
        .route(
            "/channels/{channel}/connections/{connection_id}",
            delete(channels::disconnect),
        )
        .route(
            "/channels/{channel}/dead-letters",
            get(dead_letters::list).delete(dead_letters::purge_many),
        )
        .route(
            "/channels/{channel}/dead-letters/replay",
            post(dead_letters::replay_many),
        )
        .route(
            "/channels/{channel}/dead-letters/{message_id}",
            get(dead_letters::get_one).delete(dead_letters::purge_one),
        )
        .route(
            "/channels/{channel}/dead-letters/{message_id}/replay",
            post(dead_letters::replay_one),
        )
        .route("/overview", get(channels::overview))
        .route("/messages/{message_id}", get(messages::show))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            guard::require_admin,
        ));
    Router::new()
        .route("/health", get(channels::health))
        .merge(guarded)
}
