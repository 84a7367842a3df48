//! Sending acks and nacks back over the transport that delivered the message: WebSocket frames,
//! or `POST /connect/ack` with `X-Connection-ID` for SSE and long-poll (A.4, B.9). HTTP acks use
//! the same client, and so the same TLS and proxy settings, as the stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use webhook_connect_protocol::ClientFrame;
use webhook_connect_protocol::ProtocolVersion;
use webhook_connect_protocol::ack::AckBatchResponse;
use webhook_connect_protocol::config_values::Secret;
use webhook_connect_protocol::frames::AckStatus;
use webhook_connect_protocol::frames::MAX_REASON_CHARS;
use webhook_connect_protocol::report::DeliveryReport;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};

/// What to tell the relay about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Local delivery succeeded.
    Ack,
    /// Local delivery failed.
    Nack {
        /// Requeue (`true`) or dead-letter at once (`false`).
        retry: bool,
        /// Reason text for v2 (no secrets).
        reason: String,
        /// Requested requeue delay (v2 `delay_ms`), when the failure asks for one.
        delay_ms: Option<u64>,
    },
}

impl Decision {
    pub(crate) fn nack(retry: bool, reason: impl Into<String>) -> Self {
        Decision::Nack {
            retry,
            reason: reason.into(),
            delay_ms: None,
        }
    }
}

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
    /// The relay granted v2 on the stream (touch and batches are v2 only).
    pub granted_v2: bool,
    batch: Option<mpsc::Sender<BatchItem>>,
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
            AckSink::Http(acker) if acker.batch.is_some() => {
                let entry = serde_json::json!({"message_id": message_id, "status": "touch"});
                match &acker.batch {
                    Some(tx) => acker.submit(tx, entry).await,
                    None => Ok(()),
                }
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
        self.send_reporting(message_id, decision, None).await
    }

    /// Sends the decision for `message_id` with the report of its local delivery (v2 only:
    /// the optional `report` of B.4 / B.9, for the relay's message trace).
    pub async fn send_reporting(
        &self,
        message_id: &str,
        decision: &Decision,
        report: Option<&DeliveryReport>,
    ) -> Result<(), AckError> {
        match self {
            AckSink::WebSocket {
                tx,
                version,
                timeout,
            } => {
                let report = report.filter(|_| version.is_v2()).cloned();
                let frame = match decision {
                    Decision::Ack => ClientFrame::Ack {
                        message_ids: vec![message_id.to_owned()],
                        reference: None,
                        report,
                    },
                    Decision::Nack {
                        retry,
                        reason,
                        delay_ms,
                    } => ClientFrame::Nack {
                        message_ids: vec![message_id.to_owned()],
                        retry: *retry,
                        delay_ms: delay_ms.filter(|_| version.is_v2()),
                        reason: version.is_v2().then(|| cut(reason)),
                        reference: None,
                        report,
                    },
                };
                tx.send_timeout(Message::Text(frame.to_json().into()), *timeout)
                    .await
                    .map_err(|_| AckError::ConnectionGone)
            }
            AckSink::Http(acker) => acker.send(message_id, decision, report).await,
        }
    }
}

/// One entry of a v2 batch ack (`{"acks":[…]}`, B.9) waiting to be sent.
#[derive(Debug)]
pub struct BatchItem {
    entry: serde_json::Value,
    done: oneshot::Sender<Result<(), AckError>>,
}

/// Most entries in one batch request (the relay accepts up to 1000).
pub const MAX_BATCH: usize = 500;

/// Most bytes of entries in one batch request (the relay accepts bodies up to 1 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// The encoded size of a batch entry, roughly (reports dominate it).
fn entry_bytes(entry: &serde_json::Value) -> usize {
    let report = entry.get("report").map_or(0, |r| {
        ["error", "response_snippet"]
            .iter()
            .filter_map(|k| r.get(k).and_then(serde_json::Value::as_str))
            .map(|t| t.len() * 2)
            .sum::<usize>()
    });
    let reason = entry
        .get("reason")
        .and_then(serde_json::Value::as_str)
        .map_or(0, str::len);
    96 + report + reason
}

impl HttpAcker {
    /// An acker for one SSE connection or long-poll session. With v2 granted, acks are sent in
    /// batches: whatever is waiting when the previous request finished goes in the next one, so
    /// a quiet channel pays no extra latency and a busy one sends far fewer requests.
    pub fn new(
        client: reqwest::Client,
        url: String,
        token: Secret,
        connection_id: String,
        v2: bool,
        granted_v2: bool,
        timeout: Duration,
    ) -> Arc<Self> {
        let batch = if granted_v2 {
            let (tx, rx) = mpsc::channel::<BatchItem>(4 * MAX_BATCH);
            let worker = BatchWorker {
                client: client.clone(),
                url: url.clone(),
                token: token.clone(),
                connection_id: connection_id.clone(),
                timeout,
            };
            // One batch worker per SSE connection or long-poll session (ends with its acker);
            // its queue is bounded.
            tokio::spawn(worker.run(rx));
            Some(tx)
        } else {
            None
        };
        Arc::new(HttpAcker {
            client,
            url,
            token,
            connection_id,
            v2,
            granted_v2,
            timeout,
            batch,
        })
    }

    async fn submit(
        &self,
        tx: &mpsc::Sender<BatchItem>,
        entry: serde_json::Value,
    ) -> Result<(), AckError> {
        let (done, wait) = oneshot::channel();
        tx.send_timeout(BatchItem { entry, done }, self.timeout)
            .await
            .map_err(|_| AckError::Failed("ack batcher unavailable".into()))?;
        // The worker bounds each request by the timeout and retries at most three times.
        match tokio::time::timeout(self.timeout * 4 + Duration::from_secs(2), wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AckError::Failed("ack batcher stopped".into())),
            Err(_) => Err(AckError::Failed("ack timed out".into())),
        }
    }

    async fn send(
        &self,
        message_id: &str,
        decision: &Decision,
        report: Option<&DeliveryReport>,
    ) -> Result<(), AckError> {
        if let Some(tx) = &self.batch {
            let mut entry = match decision {
                Decision::Ack => serde_json::json!({"message_id": message_id, "status": "ack"}),
                Decision::Nack {
                    retry,
                    reason,
                    delay_ms,
                } => {
                    let mut entry = serde_json::json!({
                        "message_id": message_id, "status": "nack", "retry": retry, "reason": cut(reason)
                    });
                    if let Some(d) = delay_ms {
                        entry["delay_ms"] = serde_json::Value::from(*d);
                    }
                    entry
                }
            };
            if let Some(r) = report.filter(|r| !r.is_empty()) {
                entry["report"] = r.to_value();
            }
            return self.submit(tx, entry).await;
        }
        let mut query: Vec<(&str, String)> = vec![("message_id", message_id.to_owned())];
        match decision {
            Decision::Ack => query.push(("status", "ack".into())),
            Decision::Nack {
                retry,
                reason,
                delay_ms,
            } => {
                query.push(("status", "nack".into()));
                query.push(("retry", retry.to_string()));
                if self.v2 {
                    query.push(("reason", cut(reason)));
                    if let Some(d) = delay_ms {
                        query.push(("delay_ms", d.to_string()));
                    }
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

/// Sends the batches of one [`HttpAcker`]; ends when the acker is dropped.
#[derive(Debug)]
struct BatchWorker {
    client: reqwest::Client,
    url: String,
    token: Secret,
    connection_id: String,
    timeout: Duration,
}

impl BatchWorker {
    async fn run(self, mut rx: mpsc::Receiver<BatchItem>) {
        let mut carried: Option<BatchItem> = None;
        loop {
            let first = match carried.take() {
                Some(item) => item,
                None => match rx.recv().await {
                    Some(item) => item,
                    None => break,
                },
            };
            // Entries with delivery reports are larger: the body stays well under the relay's
            // 1 MiB limit (B.9) by bytes as well as by count.
            let mut bytes = entry_bytes(&first.entry);
            let mut items = vec![first];
            while items.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => {
                        let size = entry_bytes(&item.entry);
                        if bytes + size > MAX_BATCH_BYTES {
                            carried = Some(item);
                            break;
                        }
                        bytes += size;
                        items.push(item);
                    }
                    Err(_) => break,
                }
            }
            let results = self.send(&items).await;
            for (item, result) in items.into_iter().zip(results) {
                let _ = item.done.send(result);
            }
        }
    }

    async fn send(&self, items: &[BatchItem]) -> Vec<Result<(), AckError>> {
        let body = serde_json::json!({
            "acks": items.iter().map(|i| i.entry.clone()).collect::<Vec<_>>()
        });
        let all = |e: AckError| -> Vec<Result<(), AckError>> {
            items
                .iter()
                .map(|_| {
                    Err(match &e {
                        AckError::NotInFlight => AckError::NotInFlight,
                        AckError::ConnectionGone => AckError::ConnectionGone,
                        AckError::Failed(m) => AckError::Failed(m.clone()),
                    })
                })
                .collect()
        };
        let mut last = String::new();
        for pause_ms in [0u64, 200, 1000] {
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            let response = self
                .client
                .post(&self.url)
                .timeout(self.timeout)
                .bearer_auth(self.token.expose())
                .header(CONNECTION_ID_HEADER, &self.connection_id)
                .header(PROTOCOL_HEADER, "2")
                .json(&body)
                .send()
                .await;
            match response {
                Ok(resp) if resp.status().is_success() => {
                    let parsed: Result<AckBatchResponse, _> = resp.json().await;
                    let Ok(parsed) = parsed else {
                        return all(AckError::Failed("unreadable batch ack response".into()));
                    };
                    // Results come in request order.
                    return items
                        .iter()
                        .enumerate()
                        .map(|(i, _)| match parsed.results.get(i).map(|r| r.status) {
                            Some(AckStatus::Ok) => Ok(()),
                            Some(AckStatus::NotInFlight) => Err(AckError::NotInFlight),
                            Some(_) | None => {
                                Err(AckError::Failed("relay could not apply the ack".into()))
                            }
                        })
                        .collect();
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                    return all(AckError::NotInFlight);
                }
                Ok(resp) if resp.status().is_server_error() => {
                    last = format!("relay answered {}", resp.status());
                }
                Ok(resp) => {
                    return all(AckError::Failed(format!(
                        "relay answered {}",
                        resp.status()
                    )));
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(error = %last, entries = items.len(), "Batch ack request failed");
        }
        all(AckError::Failed(last))
    }
}
