//! `aws_sqs` (feature `aws_sqs`) against moto's SQS (`TEST_SQS_ENDPOINT`, default
//! `http://127.0.0.1:5000`) through `endpoint_url`: the message is received back with its
//! id attributes, a FIFO queue drops a redelivery by `message_id` (§2.3), attributes never
//! exceed 10, a missing queue is `Unavailable`, a closed port `Transient`, a body over
//! 256 KiB `Permanent`. Each test uses its own queue and deletes it.

use serde_json::{Value, json};
use webhook_connector::output::{ErrorCategory, ErrorKind, Output, aws_sqs};

use crate::moto;
use crate::sinks::{Cleanup, Entry, closed_port, delivery, payload, unique};

/// One unsigned JSON-protocol call to moto.
async fn call(endpoint: &str, action: &str, request: Value) -> Value {
    let r = moto::http("sqs")
        .post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{action}: {status} {body}");
    body
}

/// A queue name unique to the test, deleted (once the module created it) on drop.
struct Queue {
    endpoint: String,
    name: String,
    _cleanup: Cleanup,
}

impl Queue {
    async fn new(fifo: bool) -> Self {
        let endpoint = moto::endpoint("TEST_SQS_ENDPOINT").await;
        let name = format!("{}{}", unique("wc_sqs"), if fifo { ".fifo" } else { "" });
        let (e, n) = (endpoint.clone(), name.clone());
        let cleanup = Cleanup::new(move || async move {
            let http = moto::http("sqs");
            let url = http
                .post(format!("{e}/"))
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", "AmazonSQS.GetQueueUrl")
                .body(json!({"QueueName": n}).to_string())
                .send()
                .await
                .ok();
            let url: Option<Value> = match url {
                Some(r) => r.json().await.ok(),
                None => None,
            };
            if let Some(url) = url.as_ref().and_then(|v| v["QueueUrl"].as_str()) {
                let _ = http
                    .post(format!("{e}/"))
                    .header("content-type", "application/x-amz-json-1.0")
                    .header("x-amz-target", "AmazonSQS.DeleteQueue")
                    .body(json!({"QueueUrl": url}).to_string())
                    .send()
                    .await;
            }
        });
        Queue {
            endpoint,
            name,
            _cleanup: cleanup,
        }
    }

    fn entry(&self, config: Value) -> Entry {
        let mut config = config;
        config["queue_name"] = json!(self.name);
        Entry::new("aws_sqs", config).connection("queue", moto::connection("sqs", &self.endpoint))
    }

    async fn url(&self) -> String {
        let answer = call(
            &self.endpoint,
            "GetQueueUrl",
            json!({"QueueName": self.name}),
        )
        .await;
        answer["QueueUrl"].as_str().unwrap().to_owned()
    }

    /// Every message waiting in the queue (up to 10).
    async fn receive(&self) -> Vec<Value> {
        let answer = call(
            &self.endpoint,
            "ReceiveMessage",
            json!({"QueueUrl": self.url().await, "MaxNumberOfMessages": 10,
                   "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["All"],
                   "AttributeNames": ["All"], "WaitTimeSeconds": 1}),
        )
        .await;
        answer["Messages"].as_array().cloned().unwrap_or_default()
    }
}

fn attribute(message: &Value, name: &str) -> Option<String> {
    message["MessageAttributes"][name]["StringValue"]
        .as_str()
        .map(str::to_owned)
}

/// the queue is created through `endpoint_url` at setup and the message received back
/// with its id attributes.
#[tokio::test]
async fn send_message_is_received_back_with_its_id_attributes() {
    let queue = Queue::new(false).await;
    let out = queue.entry(json!({})).build(aws_sqs::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_sqs", payload(1))).await.unwrap();
    let messages = queue.receive().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body: Value = serde_json::from_str(messages[0]["Body"].as_str().unwrap()).unwrap();
    assert_eq!(body, payload(1));
    assert_eq!(
        attribute(&messages[0], "message_id").as_deref(),
        Some("msg_sqs")
    );
    assert_eq!(
        attribute(&messages[0], "webhook_id").as_deref(),
        Some("orders")
    );
}

/// §2.3: a FIFO queue gets `MessageDeduplicationId = message_id`, so a redelivery is dropped.
#[tokio::test]
async fn a_fifo_queue_drops_a_redelivery_by_message_id() {
    let queue = Queue::new(true).await;
    let out = queue
        .entry(json!({"message_group_id": "group-1"}))
        .build(aws_sqs::build);
    let d = delivery("msg_fifo", payload(2));
    out.process(&d).await.unwrap();
    out.process(&d).await.unwrap();
    let messages = queue.receive().await;
    assert_eq!(messages.len(), 1, "the redelivery was deduplicated");
    assert_eq!(
        messages[0]["Attributes"]["MessageDeduplicationId"],
        "msg_fifo"
    );
    assert_eq!(messages[0]["Attributes"]["MessageGroupId"], "group-1");
}

/// with many headers, only the selected ones are attributes, and never more than 10.
#[tokio::test]
async fn attributes_never_exceed_ten_whatever_the_headers() {
    let queue = Queue::new(false).await;
    let selected: Vec<String> = (0..8).map(|i| format!("x-h{i}")).collect();
    let out = queue
        .entry(json!({"attribute_headers": selected}))
        .build(aws_sqs::build);
    let mut d = delivery("msg_attrs", payload(3));
    for i in 0..20 {
        d.headers.insert(format!("x-h{i}"), format!("v{i}"));
    }
    d.headers.insert("x-h0".into(), "x".repeat(300));
    out.process(&d).await.unwrap();
    let messages = queue.receive().await;
    let attrs = messages[0]["MessageAttributes"].as_object().unwrap();
    assert!(attrs.len() <= 10, "{attrs:?}");
    assert_eq!(attrs.len(), 9, "two ids and seven headers: {attrs:?}");
    assert!(
        !attrs.contains_key("x-h0"),
        "a value over 256 characters is left out"
    );
    assert_eq!(attribute(&messages[0], "x-h7").as_deref(), Some("v7"));
    assert!(!attrs.contains_key("x-h8"), "not selected");
}

/// A missing queue is `Unavailable`: by name without `create_queue`, and by URL.
#[tokio::test]
async fn a_missing_queue_is_unavailable() {
    let queue = Queue::new(false).await;
    let out = queue
        .entry(json!({"create_queue": false}))
        .build(aws_sqs::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");

    let url = format!("{}/123456789012/{}", queue.endpoint, unique("absent"));
    let out = Entry::new("aws_sqs", json!({"queue_url": url}))
        .connection("queue", moto::connection("sqs", &queue.endpoint))
        .build(aws_sqs::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
}

/// Nothing listens on the endpoint's port: `Transient`/`connection`.
#[tokio::test]
async fn a_wrong_endpoint_port_is_transient() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port().await);
    let out = Entry::new("aws_sqs", json!({"queue_name": "any"}))
        .connection("queue", moto::connection("sqs", &endpoint))
        .build(aws_sqs::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
}

/// A body over 256 KiB is `Permanent` (dead letter), without a request.
#[tokio::test]
async fn a_body_over_256_kib_is_permanent() {
    let queue = Queue::new(false).await;
    let out: Box<dyn Output> = queue.entry(json!({})).build(aws_sqs::build);
    let big = json!({"blob": "x".repeat(256 * 1024)});
    let err = out.process(&delivery("m_big", big)).await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Permanent, ErrorCategory::InvalidData),
        "{err}"
    );
}

#[test]
fn queue_settings_are_checked_at_load() {
    let cases = [
        (json!({}), "module-config"),
        (
            json!({"queue_name": "bad name"}),
            "module-config.queue_name",
        ),
        (
            json!({"queue_name": "q", "delay_seconds": 901}),
            "module-config.delay_seconds",
        ),
        (
            json!({"queue_name": "q", "attribute_headers": ["a","b","c","d","e","f","g","h","i"]}),
            "module-config.attribute_headers",
        ),
        (
            json!({"queue_url": "http://sqs.us-east-1.amazonaws.com/1/q"}),
            "module-config.queue_url",
        ),
    ];
    for (config, path) in cases {
        let p = Entry::new("aws_sqs", config.clone()).refused(aws_sqs::build);
        assert!(p.errors[0].contains(path), "{config}: {p:?}");
    }
}

/// the webhook-level `queue_name` of the original format names the queue.
#[tokio::test]
async fn the_legacy_webhook_level_queue_name_is_used() {
    let queue = Queue::new(false).await;
    let out = Entry::new("aws_sqs", json!({}))
        .webhook(json!({"queue_name": queue.name}))
        .connection("queue", moto::connection("sqs", &queue.endpoint))
        .build(aws_sqs::build);
    out.process(&delivery("msg_legacy", payload(5)))
        .await
        .unwrap();
    let messages = queue.receive().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        attribute(&messages[0], "message_id").as_deref(),
        Some("msg_legacy")
    );
}
