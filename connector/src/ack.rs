//! Sending acks and nacks back over the transport that delivered the message: WebSocket frames,
//! or `POST /connect/ack` with `X-Connection-ID` for SSE and long-poll (A.4, B.9). HTTP acks use
//! the same client, and so the same TLS and proxy settings, as the stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webhook_connect_protocol::ClientFrame;
use webhook_connect_protocol::ProtocolVersion;
use webhook_connect_protocol::config_values::Secret;
use webhook_connect_protocol::frames::MAX_REASON_CHARS;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};

use crate::forward::Decision;

/// Where the acks of one connection go.
#[derive(Debug, Clone)]
pub enum AckSink {
    /// Frames written by the WebSocket task.
    WebSocket {
        /// Outbound frames of the connection.
        tx: mpsc::Sender<Message>,
        /// Version negotiated on the connection.
        version: ProtocolVersion,
        /// How long to wait for room in the outbound queue.
        timeout: Duration,
    },
    /// `POST /connect/ack`.
    Http(Arc<HttpAcker>),
}

/// HTTP ack sender for one SSE connection or long-poll session.
#[derive(Debug)]
pub struct HttpAcker {
    /// The relay client (stream TLS and proxy settings).
    pub client: reqwest::Client,
    /// `{base}/connect/ack`.
    pub url: String,
    /// Channel token.
    pub token: Secret,
    /// `X-Connection-ID`.
    pub connection_id: String,
    /// Ask for v2 on the ack request.
    pub v2: bool,
    /// The relay granted v2 on the stream (touch is v2 only).
    pub granted_v2: bool,
    /// Timeout of each ack request (`ack_timeout`).
    pub timeout: Duration,
}

/// Why an ack could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The connection that delivered the message is gone.
    #[error("connection closed")]
    ConnectionGone,
    /// The relay said the message is not leased to this connection any more.
    #[error("message not in flight")]
    NotInFlight,
    /// The request failed.
    #[error("ack request failed: {0}")]
    Failed(String),
}

fn cut(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

impl AckSink {
    /// True when the relay speaks v2 here, so leases can be extended with `touch`.
    pub fn supports_touch(&self) -> bool {
        match self {
            AckSink::WebSocket { version, .. } => version.is_v2(),
            AckSink::Http(acker) => acker.granted_v2,
        }
    }

    /// Extends the lease of `message_id` (v2 `touch`, B.4 / B.9).
    pub async fn touch(&self, message_id: &str) -> Result<(), AckError> {
        match self {
            AckSink::WebSocket { tx, timeout, .. } => {
                let frame = ClientFrame::Touch {
                    message_ids: vec![message_id.to_owned()],
                    reference: None,
                };
                tx.send_timeout(Message::Text(frame.to_json().into()), *timeout)
                    .await
                    .map_err(|_| AckError::ConnectionGone)
            }
            AckSink::Http(acker) => {
                acker
                    .request(&[
                        ("message_id", message_id.to_owned()),
                        ("status", "touch".to_owned()),
                    ])
                    .await
            }
        }
    }

    /// Sends the decision for `message_id`.
    pub async fn send(&self, message_id: &str, decision: &Decision) -> Result<(), AckError> {
        match self {
            AckSink::WebSocket {
                tx,
                version,
                timeout,
            } => {
                let frame = match decision {
                    Decision::Ack => ClientFrame::Ack {
                        message_ids: vec![message_id.to_owned()],
                        reference: None,
                    },
                    Decision::Nack { retry, reason } => ClientFrame::Nack {
                        message_ids: vec![message_id.to_owned()],
                        retry: *retry,
                        delay_ms: None,
                        reason: version.is_v2().then(|| cut(reason)),
                        reference: None,
                    },
                };
                tx.send_timeout(Message::Text(frame.to_json().into()), *timeout)
                    .await
                    .map_err(|_| AckError::ConnectionGone)
            }
            AckSink::Http(acker) => acker.send(message_id, decision).await,
        }
    }
}

impl HttpAcker {
    async fn send(&self, message_id: &str, decision: &Decision) -> Result<(), AckError> {
        let mut query: Vec<(&str, String)> = vec![("message_id", message_id.to_owned())];
        match decision {
            Decision::Ack => query.push(("status", "ack".into())),
            Decision::Nack { retry, reason } => {
                query.push(("status", "nack".into()));
                query.push(("retry", retry.to_string()));
                if self.v2 {
                    query.push(("reason", cut(reason)));
                }
            }
        }
        self.request(&query).await
    }

    async fn request(&self, query: &[(&str, String)]) -> Result<(), AckError> {
        let mut last = String::new();
        // A 503 leaves the lease unchanged, so the same request may be sent again.
        for (i, pause_ms) in [0u64, 200, 1000].into_iter().enumerate() {
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            let mut req = self
                .client
                .post(&self.url)
                .query(query)
                .timeout(self.timeout)
                .bearer_auth(self.token.expose())
                .header(CONNECTION_ID_HEADER, &self.connection_id);
            if self.v2 {
                req = req.header(PROTOCOL_HEADER, "2");
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Err(AckError::NotInFlight);
                }
                Ok(resp) if resp.status().is_server_error() => {
                    last = format!("relay answered {}", resp.status());
                }
                Ok(resp) => {
                    return Err(AckError::Failed(format!(
                        "relay answered {}",
                        resp.status()
                    )));
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(attempt = i + 1, error = %last, "Ack request failed");
        }
        Err(AckError::Failed(last))
    }
}
