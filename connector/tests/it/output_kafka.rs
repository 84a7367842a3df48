//! `kafka` against a real Kafka-compatible broker (`TEST_KAFKA_BOOTSTRAP`, default
//! `127.0.0.1:9092`; scripts/services.sh starts tansu there). Each test creates its own topic
//! (the broker does not auto-create them) and deletes it afterwards; records are read back with a
//! plain consumer assigned to the partition from the beginning: value (`json` and `raw`), key,
//! headers (the two ids always, webhook headers with `forward_headers`) and partition. Also: one
//! producer per connection for two instances, module-config `bootstrap_servers`
//! honoured, and the error kinds (unreachable broker `Transient`, oversize `Permanent`,
//! missing topic or partition `Unavailable`).

#![cfg(feature = "kafka")]

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, kafka};

use crate::sinks::{
    Cleanup, Entry, closed_port, delivery, env_or, payload, require_server, unique,
};

fn bootstrap() -> String {
    env_or("TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
}

fn connection() -> Value {
    json!({"type": "kafka", "bootstrap_servers": bootstrap(), "message_timeout_ms": 10000})
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client")
}

/// A fresh topic of `partitions` partitions, deleted when the returned guard drops.
async fn topic(partitions: i32) -> (String, Cleanup) {
    require_server("TEST_KAFKA_BOOTSTRAP", &bootstrap()).await;
    let name = unique("wc-kafka");
    let results = admin()
        .create_topics(
            &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("CreateTopics");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let delete = name.clone();
    let cleanup = Cleanup::new(move || async move {
        let _ = admin()
            .delete_topics(&[delete.as_str()], &AdminOptions::new())
            .await;
    });
    (name, cleanup)
}

/// One record as read back.
#[derive(Debug)]
struct Record {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Record {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The first `n` records of `partition` of `topic`, from the beginning.
async fn read(topic: &str, partition: i32, n: usize) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("wc-test"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .expect("offset");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()))
            .expect("consume");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            partition: m.partition(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

#[tokio::test]
async fn json_value_key_and_headers_are_read_back() {
    let (topic, _cleanup) = topic(1).await;
    let entry = Entry::new(
        "kafka",
        json!({"topic": topic, "key": "{webhook_id}/{message_id}", "forward_headers": true}),
    )
    .connection("events", connection());
    let out = entry.build(kafka::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_kafka_1", payload(1)))
        .await
        .unwrap();
    let [r] = read(&topic, 0, 1).await.try_into().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&r.value).unwrap(),
        payload(1)
    );
    assert_eq!(r.key.as_deref(), Some(&b"orders/msg_kafka_1"[..]));
    assert_eq!(r.header("webhook-message-id"), Some("msg_kafka_1"));
    assert_eq!(r.header("webhook-id"), Some("orders"));
    assert_eq!(r.header("x-event"), Some("order.created"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    out.teardown().await;
}

/// `value: raw` sends the exact body bytes; `partition` pins the partition; without
/// `forward_headers` only the two id headers are set, and without `key` the record has none.
#[tokio::test]
async fn raw_value_goes_to_the_explicit_partition_with_only_the_id_headers() {
    let (topic, _cleanup) = topic(3).await;
    let entry = Entry::new(
        "kafka",
        json!({"topic": topic, "partition": 2, "value": "raw"}),
    )
    .connection("events", connection());
    let out = entry.build(kafka::build);
    out.setup().await.unwrap();
    let mut d = delivery("msg_raw", Value::String("not json".into()));
    d.body = Arc::from(&b"\x00raw bytes \xff"[..]);
    d.content_type = Some("application/octet-stream".into());
    out.process(&d).await.unwrap();
    let [r] = read(&topic, 2, 1).await.try_into().unwrap();
    assert_eq!(r.partition, 2);
    assert_eq!(r.value, b"\x00raw bytes \xff");
    assert_eq!(r.key, None);
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["webhook-message-id", "webhook-id"]);
}

/// The idempotency the module claims: a redelivery is a second record, with the same
/// `webhook-message-id` header (and the same key) a consumer deduplicates on.
#[tokio::test]
async fn a_redelivery_carries_the_same_message_id_header_and_key() {
    let (topic, _cleanup) = topic(1).await;
    let entry = Entry::new("kafka", json!({"topic": topic, "key": "{message_id}"}))
        .connection("events", connection());
    let out = entry.build(kafka::build);
    let d = delivery("msg_again", payload(7));
    out.process(&d).await.unwrap();
    let mut again = d.clone();
    again.delivery_count = 2;
    out.process(&again).await.unwrap();
    let records = read(&topic, 0, 2).await;
    for r in &records {
        assert_eq!(r.header("webhook-message-id"), Some("msg_again"));
        assert_eq!(r.key.as_deref(), Some(&b"msg_again"[..]));
    }
}

/// `bootstrap_servers` in module-config is honoured (no connection entry), and the
/// webhook-level `topic` of the original format is the fallback.
#[tokio::test]
async fn module_config_bootstrap_servers_and_the_webhook_topic_are_honoured_r98() {
    let (topic, _cleanup) = topic(1).await;
    let entry = Entry::new("kafka", json!({"bootstrap_servers": bootstrap()}))
        .webhook(json!({"module": "kafka", "topic": topic}));
    let out = entry.build(kafka::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_mc", payload(2))).await.unwrap();
    let [r] = read(&topic, 0, 1).await.try_into().unwrap();
    assert_eq!(r.header("webhook-message-id"), Some("msg_mc"));
}

/// two instances on one connection share one producer; 50 messages through them
/// all arrive, and the producer lives until the last instance is torn down.
#[tokio::test]
async fn two_instances_share_one_producer_for_fifty_messages_r98_r101() {
    let (topic, _cleanup) = topic(1).await;
    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| {
        Entry::new("kafka", json!({"topic": topic}))
            .connection("events", connection())
            .shared(&shared)
    });
    let outs = entries.each_ref().map(|e| e.build(kafka::build));
    for out in &outs {
        out.setup().await.unwrap();
    }
    assert_eq!(shared.live().await, 1, "one producer for both instances");
    let sends = (0..50u64).map(|i| {
        let out = &outs[(i % 2) as usize];
        async move { out.process(&delivery(&format!("m{i}"), payload(i))).await }
    });
    for r in futures_util::future::join_all(sends).await {
        r.unwrap();
    }
    assert_eq!(shared.live().await, 1);
    let records = read(&topic, 0, 50).await;
    let ids: std::collections::BTreeSet<_> = records
        .iter()
        .filter_map(|r| r.header("webhook-message-id"))
        .collect();
    assert_eq!(ids.len(), 50, "{ids:?}");
    outs[0].teardown().await;
    assert_eq!(shared.live().await, 1, "the other instance still holds it");
    outs[1]
        .process(&delivery("after_teardown", payload(0)))
        .await
        .unwrap();
    outs[1].teardown().await;
    assert_eq!(shared.live().await, 0);
}

#[tokio::test]
async fn a_missing_topic_is_unavailable_at_setup() {
    require_server("TEST_KAFKA_BOOTSTRAP", &bootstrap()).await;
    let entry = Entry::new("kafka", json!({"topic": unique("wc-kafka-missing")}))
        .connection("events", connection());
    let err = entry.build(kafka::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn a_partition_the_topic_lacks_is_unavailable_at_setup() {
    let (topic, _cleanup) = topic(1).await;
    let entry = Entry::new("kafka", json!({"topic": topic, "partition": 5}))
        .connection("events", connection());
    let err = entry.build(kafka::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("partition 5"), "{err}");
}

/// librdkafka refuses a record over `message.max.bytes` (1 MB by default) before sending it:
/// the message can never be delivered.
#[tokio::test]
async fn an_oversize_message_is_permanent() {
    let (topic, _cleanup) = topic(1).await;
    let entry = Entry::new("kafka", json!({"topic": topic})).connection("events", connection());
    let out = entry.build(kafka::build);
    out.setup().await.unwrap();
    let big = Value::String("x".repeat(2 * 1024 * 1024));
    let err = out.process(&delivery("msg_big", big)).await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Permanent, ErrorCategory::InvalidData),
        "{err}"
    );
}

/// Nothing listens on the port: setup and a send fail `Transient` within about
/// `message_timeout_ms`.
#[tokio::test]
async fn an_unreachable_broker_is_transient() {
    let port = closed_port().await;
    let entry = Entry::new("kafka", json!({"topic": "wc-unreachable"})).connection(
        "events",
        json!({"type": "kafka", "bootstrap_servers": format!("127.0.0.1:{port}"),
               "message_timeout_ms": 1500}),
    );
    let out = entry.build(kafka::build);
    let started = std::time::Instant::now();
    let err = out.setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    let err = out
        .process(&delivery("msg_down", payload(0)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Timeout),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    out.teardown().await;
}

#[test]
fn bad_topics_are_load_errors_and_keyword_prefixes_are_not() {
    for bad in [
        json!("."),
        json!(".."),
        json!("a b"),
        json!("a/b"),
        json!("t".repeat(250)),
    ] {
        let p = Entry::new("kafka", json!({"topic": bad})).refused(kafka::build);
        assert!(p.errors[0].contains("module-config.topic"), "{p:?}");
    }
    let p = Entry::new("kafka", json!({})).refused(kafka::build);
    assert!(
        p.errors[0].ends_with("module-config.topic: missing field"),
        "{p:?}"
    );
    // The original refused names starting with keywords such as `delete`.
    let _ = Entry::new("kafka", json!({"topic": "delete-events"})).build(kafka::build);
}

#[test]
fn conflicting_bootstrap_servers_are_a_load_error() {
    let conn = json!({"type": "kafka", "bootstrap_servers": "127.0.0.1:9092"});
    let p = Entry::new(
        "kafka",
        json!({"topic": "t", "bootstrap_servers": "127.0.0.1:9093"}),
    )
    .connection("events", conn.clone())
    .refused(kafka::build);
    assert!(
        p.errors[0].contains("module-config.bootstrap_servers")
            && p.errors[0].contains("connections.json: events.bootstrap_servers"),
        "{p:?}"
    );
    // The same servers in both places (in either spelling) are fine.
    let _ = Entry::new(
        "kafka",
        json!({"topic": "t", "bootstrap_servers": ["127.0.0.1:9092"]}),
    )
    .connection("events", conn)
    .build(kafka::build);
}

#[test]
fn invalid_settings_are_load_errors_naming_the_path() {
    let cases = [
        (
            json!({"topic": "t", "key": "{uuid}"}),
            json!({"type": "kafka"}),
            "module-config.key",
        ),
        (
            json!({"topic": "t", "partition": -1}),
            json!({"type": "kafka"}),
            "module-config.partition",
        ),
        (
            json!({"topic": "t", "value": "xml"}),
            json!({"type": "kafka"}),
            "module-config.value",
        ),
        (
            json!({"topic": "t"}),
            json!({"type": "kafka", "security_protocol": "sasl_ssl"}),
            "events.security_protocol",
        ),
        (
            json!({"topic": "t"}),
            json!({"type": "kafka", "security_protocol": "tls"}),
            "events.security_protocol",
        ),
        (
            json!({"topic": "t"}),
            json!({"type": "kafka", "security_protocol": "sasl_plaintext",
                   "sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"}),
            "events.sasl_mechanism",
        ),
        (
            json!({"topic": "t"}),
            json!({"type": "kafka", "bootstrap_servers": "169.254.169.254:9092"}),
            "events.bootstrap_servers",
        ),
        (
            json!({"topic": "t"}),
            json!({"type": "kafka", "message_timeout_ms": 0}),
            "events.message_timeout_ms",
        ),
    ];
    for (mc, conn, path) in cases {
        let p = Entry::new("kafka", mc.clone())
            .connection("events", conn.clone())
            .refused(kafka::build);
        assert!(
            p.errors.iter().any(|e| e.contains(path)),
            "{mc} {conn}: {p:?}"
        );
    }
}

/// SASL over TLS with SCRAM builds (mechanism names in any case), and a CA file that does not
/// exist makes setup `Unavailable` (an operator has to act), with no secret in the message. A
/// SASL login the broker refuses is not tested: the test broker runs without authentication.
#[tokio::test]
async fn sasl_ssl_settings_build_and_a_missing_ca_file_is_unavailable() {
    let entry = Entry::new("kafka", json!({"topic": "t"})).connection(
        "events",
        json!({"type": "kafka", "security_protocol": "SASL_SSL", "sasl_mechanism": "scram-sha-512",
               "sasl_username": "u", "sasl_password": "s3cret-pw",
               "ssl_ca_location": "/nonexistent/ca.pem", "client_id": "orders-relay"}),
    );
    let err = entry.build(kafka::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(!err.message.contains("s3cret-pw"), "{err}");
}

/// A tansu broker of the test's own, with SASL authentication on, stopped on drop.
struct AuthBroker {
    child: std::process::Child,
    port: u16,
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `TANSU_BIN`, else where scripts/services.sh installs it, else `PATH`.
fn tansu_binary() -> String {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return bin;
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cache")))
        .unwrap_or_default();
    let installed = format!("{cache}/webhook-connect/tools/bin/tansu");
    if std::path::Path::new(&installed).exists() {
        installed
    } else {
        "tansu".to_owned()
    }
}

async fn auth_broker() -> AuthBroker {
    let port = closed_port().await;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = std::process::Command::new(tansu_binary())
        .args([
            "broker",
            "--authentication",
            "--storage-engine",
            "memory://tansu/",
        ])
        .args([
            "--kafka-listener-url",
            &url,
            "--kafka-advertised-listener-url",
            &url,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect(
            "tansu is needed for the authentication test (scripts/services.sh kafka, or TANSU_BIN)",
        );
    let broker = AuthBroker { child, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the test's tansu broker did not open port {port}");
}

/// A SCRAM login the broker refuses (no such user) is `Unavailable`/`auth`, at setup and for a
/// message, with the broker's reason, not a plain timeout.
#[tokio::test]
async fn a_refused_sasl_login_is_unavailable() {
    let broker = auth_broker().await;
    let entry = Entry::new("kafka", json!({"topic": "wc-auth"})).connection(
        "events",
        json!({"type": "kafka", "bootstrap_servers": format!("127.0.0.1:{}", broker.port),
               "security_protocol": "sasl_plaintext", "sasl_mechanism": "SCRAM-SHA-512",
               "sasl_username": "nobody", "sasl_password": "wrong-pw", "message_timeout_ms": 3000}),
    );
    let out = entry.build(kafka::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains("wrong-pw"), "{err}");
    let err = out
        .process(&delivery("msg_auth", payload(0)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    out.teardown().await;
}
