//! `GET /admin/webhook-connect/messages/{message_id}`: the trace of one message
//! (`docs/reference/http-api.md` §5.10, `docs/operations.md` "Message trace").

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use webhook_connect_protocol::Timestamp;
use webhook_connect_protocol::ids::is_valid_message_id;

use crate::http::error::{ApiError, typed_body};
use crate::state::AppState;

/// `GET /messages/{message_id}`: `200` with the trace, `404` when the trace store keeps none
/// for it (never seen, or past the retention bounds), `503` when the store is unreachable.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(message_id): Path<String>,
) -> Result<Response, ApiError> {
    if !is_valid_message_id(&message_id) {
        return Err(ApiError::unprocessable("message_id is not a message id"));
    }
    let trace = state.trace.get(&message_id).await.map_err(|e| {
        tracing::warn!(message_id, error = %e, "Trace lookup failed");
        ApiError::unavailable()
    })?;
    match trace {
        Some(t) => Ok(typed_body(StatusCode::OK, &t.view(Timestamp::now()))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "No trace of this message (unknown, or past the trace retention)",
        )),
    }
}
