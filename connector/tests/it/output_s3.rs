//! `s3` (feature `s3`) against moto's S3 (`TEST_S3_ENDPOINT`, default `http://127.0.0.1:5000`),
//! path-style through `endpoint_url`: the object is read back under its dated key, a
//! redelivery overwrites the same object (§2.3), a missing bucket is `Unavailable`, a closed
//! port `Transient`. Each test uses its own bucket and deletes it.

use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, s3};

use crate::moto;
use crate::sinks::{Cleanup, Entry, closed_port, delivery, payload, unique};

/// A fresh bucket on moto, emptied and deleted on drop.
struct Bucket {
    endpoint: String,
    name: String,
    _cleanup: Cleanup,
}

impl Bucket {
    async fn new() -> Self {
        let endpoint = moto::endpoint("TEST_S3_ENDPOINT").await;
        let name = unique("wc-s3").replace('_', "-");
        let http = moto::http("s3");
        let status = http
            .put(format!("{endpoint}/{name}"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "CreateBucket: {status}");
        let (e, n) = (endpoint.clone(), name.clone());
        let cleanup = Cleanup::new(move || async move {
            let http = moto::http("s3");
            for key in list(&http, &e, &n).await {
                let _ = http.delete(format!("{e}/{n}/{key}")).send().await;
            }
            let _ = http.delete(format!("{e}/{n}")).send().await;
        });
        Bucket {
            endpoint,
            name,
            _cleanup: cleanup,
        }
    }

    fn entry(&self, config: Value) -> Entry {
        let mut config = config;
        config["bucket"] = json!(self.name);
        Entry::new("s3", config).connection("store", moto::connection("s3", &self.endpoint))
    }

    async fn keys(&self) -> Vec<String> {
        list(&moto::http("s3"), &self.endpoint, &self.name).await
    }

    async fn get(&self, key: &str) -> reqwest::Response {
        let r = moto::http("s3")
            .get(format!("{}/{}/{key}", self.endpoint, self.name))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GetObject {key}: {}", r.status());
        r
    }
}

async fn list(http: &reqwest::Client, endpoint: &str, bucket: &str) -> Vec<String> {
    let text = http
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    xml_values(&text, "Key")
}

/// delivered through `endpoint_url`, stored under `prefix/YYYY/MM/DD/HH/` of
/// `received_at`, the payload JSON indented by 2.
#[tokio::test]
async fn put_object_stores_the_payload_under_its_dated_key() {
    let bucket = Bucket::new().await;
    let out = bucket.entry(json!({})).build(s3::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_s3", payload(1))).await.unwrap();
    let key = "webhooks/2026/01/02/03/webhook_msg_s3.json";
    assert_eq!(bucket.keys().await, vec![key.to_owned()]);
    let r = bucket.get(key).await;
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("\n  \"order\": 1"), "indented by 2: {text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), payload(1));
}

/// §2.3: the default object name is the message id, so a redelivery overwrites the object.
#[tokio::test]
async fn a_redelivery_overwrites_the_same_object() {
    let bucket = Bucket::new().await;
    let out = bucket
        .entry(json!({"prefix": "/in/", "filename_pattern": "{webhook_id}-{message_id}.json"}))
        .build(s3::build);
    out.process(&delivery("msg_again", payload(1)))
        .await
        .unwrap();
    out.process(&delivery("msg_again", payload(2)))
        .await
        .unwrap();
    let key = "in/2026/01/02/03/orders-msg_again.json";
    assert_eq!(bucket.keys().await, vec![key.to_owned()]);
    let stored: Value = bucket.get(key).await.json().await.unwrap();
    assert_eq!(stored, payload(2));
}

/// `body: raw` keeps the bytes and their content type; `include_headers` adds metadata.
#[tokio::test]
async fn raw_body_keeps_its_bytes_and_headers_become_metadata() {
    let bucket = Bucket::new().await;
    let out = bucket
        .entry(
            json!({"body": "raw", "include_headers": true, "filename_pattern": "{message_id}.bin"}),
        )
        .build(s3::build);
    let mut d = delivery("msg_raw", payload(0));
    d.body = std::sync::Arc::from(&b"plain text body"[..]);
    d.content_type = Some("text/plain".into());
    out.process(&d).await.unwrap();
    let r = bucket.get("webhooks/2026/01/02/03/msg_raw.bin").await;
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), "text/plain");
    assert_eq!(
        r.headers()["x-amz-meta-x-event"].to_str().unwrap(),
        "order.created"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"plain text body");
}

/// A bucket that does not exist is `Unavailable` (an operator must act), at setup and per
/// message.
#[tokio::test]
async fn a_missing_bucket_is_unavailable() {
    let endpoint = moto::endpoint("TEST_S3_ENDPOINT").await;
    let name = unique("wc-none").replace('_', "-");
    let out = Entry::new("s3", json!({"bucket": name}))
        .connection("store", moto::connection("s3", &endpoint))
        .build(s3::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("NoSuchBucket"), "{err}");
}

/// Nothing listens on the endpoint's port: `Transient`/`connection`.
#[tokio::test]
async fn a_wrong_endpoint_port_is_transient() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port().await);
    let out = Entry::new("s3", json!({"bucket": "any-bucket"}))
        .connection("store", moto::connection("s3", &endpoint))
        .build(s3::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

/// Instances on one connection entry share one client (§2.2 rule 3).
#[tokio::test]
async fn instances_on_one_connection_share_one_client() {
    let bucket = Bucket::new().await;
    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| bucket.entry(json!({})).shared(&shared));
    let outs = entries.each_ref().map(|e| e.build(s3::build));
    for (i, out) in outs.iter().enumerate() {
        out.process(&delivery(&format!("m{i}"), payload(i as u64)))
            .await
            .unwrap();
    }
    assert_eq!(shared.live().await, 1);
    assert_eq!(bucket.keys().await.len(), 2);
}

#[test]
fn bad_buckets_and_metadata_endpoints_are_load_errors() {
    let p = Entry::new("s3", json!({"bucket": "Bad_Bucket"})).refused(s3::build);
    assert!(p.errors[0].contains("module-config.bucket"), "{p:?}");
    let p = Entry::new("s3", json!({})).refused(s3::build);
    assert!(p.errors[0].contains("module-config.bucket"), "{p:?}");
    let p = Entry::new("s3", json!({"bucket": "fine-bucket"}))
        .connection("store", moto::connection("s3", "http://169.254.169.254"))
        .refused(s3::build);
    assert!(p.errors[0].contains("endpoint_url"), "{p:?}");
}

/// The texts of every `<tag>…</tag>` in `xml`.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split_once(close.as_str()).map(|(v, _)| v.to_owned()))
        .collect()
}
