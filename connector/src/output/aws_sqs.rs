//! `aws_sqs` (`docs/reference/module-contract.md` §3.10, feature `aws_sqs`): one `SendMessage` per message over the
//! SQS JSON protocol, signed with SigV4 through the connection's shared client.
//!
//! - **Queue:** `queue_url`, or `queue_name` (also the webhook-level legacy key) resolved once
//!   at setup: created when missing with `create_queue` (the default, as the original did),
//!   looked up otherwise. `endpoint_url` is honoured.
//! - **Body:** the payload JSON; over 256 KiB is `Permanent`.
//! - **Attributes:** `webhook_id` and `message_id` always, plus the headers named in
//!   `attribute_headers` (at most 8, values of at most 256 characters), so never more than SQS's
//!   10 (R-108; the original attached every header).
//! - **FIFO queues** (`.fifo`) get `MessageGroupId` (`message_group_id`, default the webhook id)
//!   and `MessageDeduplicationId = message_id` (§2.3).
//! - **Errors:** throttling, 5xx and network errors `Transient`; `AccessDenied` and a missing
//!   queue `Unavailable`; `InvalidMessageContents` and a body too large `Permanent`.

use std::sync::Arc;

use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use super::aws::{self, AwsClient, AwsConnection, AwsResponse};
use super::client_slot::ClientSlot;
use super::settings;
use super::shared::SharedClients;
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

/// SQS's limit on a message body.
const MAX_BODY: usize = 256 * 1024;
/// Header names `attribute_headers` may list (SQS allows 10 attributes; two are ours).
const MAX_ATTRIBUTE_HEADERS: usize = 8;
/// Longest header value copied as an attribute.
const MAX_ATTRIBUTE_VALUE: usize = 256;

/// Where the queue is.
#[derive(Debug, Clone)]
enum Queue {
    Url(String),
    Name { name: String, create: bool },
}

/// Why `name` is not a valid queue name, if it is not.
fn queue_name_problem(name: &str) -> Option<&'static str> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if base.is_empty() || base.len() > 80 {
        return Some("must be 1–80 characters (plus .fifo)");
    }
    if !base
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Some("may hold only letters, digits, '-' and '_' (and end in .fifo)");
    }
    None
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let (conn, r) = AwsConnection::read(settings, problems, "sqs", &["region_name", "region"]);
    r.finish(problems, false);

    let mut mc = settings.config_reader();
    let queue_url = mc.string(problems, "queue_url");
    let queue_name = mc.string(problems, "queue_name").or_else(|| {
        settings
            .fallback("queue_name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let create = mc.boolean(problems, "create_queue", true);
    let message_group_id = mc.string(problems, "message_group_id");
    let attribute_headers = mc
        .string_list(problems, "attribute_headers")
        .unwrap_or_default();
    if attribute_headers.len() > MAX_ATTRIBUTE_HEADERS {
        mc.error(
            problems,
            "attribute_headers",
            format!("at most {MAX_ATTRIBUTE_HEADERS} header names (SQS allows 10 attributes, 2 are webhook_id and message_id)"),
        );
    }
    let delay_seconds = mc.integer_in(problems, "delay_seconds", 0, 0, 900);
    mc.finish(problems, false);

    let queue = match (queue_url, queue_name) {
        (Some(url), _) => {
            let http_ok = conn.endpoint.as_ref().is_some_and(|e| e.scheme() == "http");
            let schemes: &[&str] = if http_ok {
                &["http", "https"]
            } else {
                &["https"]
            };
            settings
                .check_url(problems, "queue_url", &url, schemes, &[])
                .then_some(Queue::Url(url))
        }
        (None, Some(name)) => match queue_name_problem(&name) {
            Some(why) => {
                settings.error(
                    problems,
                    "module-config.queue_name",
                    format!("{name:?} {why}"),
                );
                None
            }
            None => Some(Queue::Name { name, create }),
        },
        (None, None) => {
            settings.error(problems, "module-config", "needs queue_url or queue_name");
            None
        }
    };
    let service_url = match &conn.endpoint {
        Some(e) => e.clone(),
        None => match Url::parse(&format!("https://sqs.{}.amazonaws.com/", conn.region)) {
            Ok(u) => u,
            Err(e) => {
                settings.error(problems, "connection", format!("no SQS endpoint: {e}"));
                return None;
            }
        },
    };
    let out: Box<dyn Output> = Box::new(Sqs {
        queue: queue?,
        message_group_id,
        attribute_headers: attribute_headers
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        delay_seconds,
        service_url,
        conn,
        resolved: tokio::sync::Mutex::new(None),
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

struct Sqs {
    queue: Queue,
    message_group_id: Option<String>,
    attribute_headers: Vec<String>,
    delay_seconds: i64,
    service_url: Url,
    conn: AwsConnection,
    /// The queue URL, once resolved.
    resolved: tokio::sync::Mutex<Option<String>>,
    shared: Arc<SharedClients>,
    client: ClientSlot<AwsClient>,
}

impl std::fmt::Debug for Sqs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqs")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// The error code of a failed JSON-protocol answer: the query-compatible code when present,
/// else the `__type` after its namespace.
fn failure(what: &str, answer: &AwsResponse) -> OutputError {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let type_code = body["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t))
        .unwrap_or_default();
    let code = answer.query_error.as_deref().unwrap_or(type_code);
    let message = body["message"]
        .as_str()
        .or(body["Message"].as_str())
        .unwrap_or_default();
    aws::classify(what, answer.status, code, message)
}

impl Sqs {
    async fn client(&self) -> Result<Arc<AwsClient>, OutputError> {
        self.client.get_or(self.conn.client(&self.shared)).await
    }

    /// One JSON-protocol call of `action`; the parsed answer on success.
    async fn call(&self, action: &str, request: Value) -> Result<Value, OutputError> {
        let client = self.client().await?;
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            ("x-amz-target".to_owned(), format!("AmazonSQS.{action}")),
        ];
        let answer = client
            .send(
                Method::POST,
                self.service_url.clone(),
                headers,
                request.to_string().into_bytes(),
            )
            .await?;
        if !answer.is_success() {
            return Err(failure(action, &answer));
        }
        Ok(serde_json::from_slice(&answer.body).unwrap_or(Value::Null))
    }

    /// The queue URL, resolved once (§3.10).
    async fn queue_url(&self) -> Result<String, OutputError> {
        let mut resolved = self.resolved.lock().await;
        if let Some(url) = resolved.as_ref() {
            return Ok(url.clone());
        }
        let url = match &self.queue {
            Queue::Url(url) => {
                // Checks that the queue exists. A key allowed to send need not be allowed to
                // read attributes: a refusal leaves the answer to the first SendMessage.
                let check = self
                    .call(
                        "GetQueueAttributes",
                        json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
                    )
                    .await;
                match check {
                    Err(e) if e.category != ErrorCategory::Auth => return Err(e),
                    _ => url.clone(),
                }
            }
            Queue::Name { name, create } => {
                let answer = if *create {
                    let mut req = json!({"QueueName": name});
                    if name.ends_with(".fifo") {
                        req["Attributes"] = json!({"FifoQueue": "true"});
                    }
                    self.call("CreateQueue", req).await?
                } else {
                    self.call("GetQueueUrl", json!({"QueueName": name})).await?
                };
                answer["QueueUrl"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        OutputError::transient(
                            ErrorCategory::ServerError,
                            format!("resolving queue {name}: the answer has no QueueUrl"),
                        )
                    })?
            }
        };
        *resolved = Some(url.clone());
        Ok(url)
    }

    /// `webhook_id`, `message_id` and the selected headers, never more than 10.
    fn attributes(&self, d: &Delivery) -> Map<String, Value> {
        let string = |v: &str| json!({"DataType": "String", "StringValue": v});
        let mut out = Map::new();
        out.insert("webhook_id".into(), string(&d.webhook_id));
        out.insert("message_id".into(), string(&d.message_id));
        for name in &self.attribute_headers {
            if out.len() >= 10 {
                break;
            }
            if let Some(value) = d.headers.get(name)
                && !value.is_empty()
                && value.chars().count() <= MAX_ATTRIBUTE_VALUE
            {
                out.insert(name.clone(), string(value));
            }
        }
        out
    }
}

#[async_trait::async_trait]
impl Output for Sqs {
    async fn setup(&self) -> Result<(), OutputError> {
        self.queue_url().await.map(|_| ())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let body = delivery.payload_json();
        if body.len() > MAX_BODY {
            return Err(OutputError::permanent(
                ErrorCategory::InvalidData,
                format!(
                    "message body of {} bytes exceeds SQS's {MAX_BODY}",
                    body.len()
                ),
            ));
        }
        let queue_url = self.queue_url().await?;
        let mut req = json!({
            "QueueUrl": queue_url,
            "MessageBody": body,
            "MessageAttributes": self.attributes(delivery),
        });
        if queue_url.ends_with(".fifo") {
            req["MessageGroupId"] = json!(
                self.message_group_id
                    .as_deref()
                    .unwrap_or(&delivery.webhook_id)
            );
            req["MessageDeduplicationId"] = json!(delivery.message_id);
        } else if self.delay_seconds > 0 {
            // FIFO queues take a delay per queue only.
            req["DelaySeconds"] = json!(self.delay_seconds);
        }
        self.call("SendMessage", req).await.map(|_| ())
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

#[cfg(test)]
mod tests {
    use super::queue_name_problem;

    #[test]
    fn queue_names_are_checked() {
        assert_eq!(queue_name_problem("orders"), None);
        assert_eq!(queue_name_problem("orders-1_a.fifo"), None);
        for bad in ["", ".fifo", "a.b", "a b", &"q".repeat(81)] {
            assert!(queue_name_problem(bad).is_some(), "{bad}");
        }
    }
}
