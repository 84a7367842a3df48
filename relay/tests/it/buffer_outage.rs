//! The buffer going away and coming back (`docs/reference/config-formats.md` §2.8, `docs/design.md` delivery
//! semantics 1 and 3): a relay started while Redis is down starts anyway, answers `503` and
//! connects once Redis is up; while Redis is down ingest answers `503` and stores nothing, and
//! everything accepted before the outage is delivered after it. Each test runs its own
//! `redis-server` (append-only file, fsync always) on a free port, so stopping it disturbs no
//! other test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{TestRelay, eventually, free_port, temp_dir};

const WAIT: Duration = Duration::from_secs(20);

/// A `redis-server` owned by one test; killed on drop.
struct PrivateRedis {
    child: Child,
}

impl PrivateRedis {
    async fn start(port: u16, dir: &Path) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/services.sh installs it)");
        let up = eventually(WAIT, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "private redis-server did not start on port {port}");
        PrivateRedis { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Relay settings for a Redis buffer on `port`; the state stays in the test directory.
fn redis_on(port: u16) -> String {
    // The first line is a key of the `[state]` table the test relay's file ends with.
    format!(
        "backend = \"embedded\"\n[buffer]\nbackend = \"redis\"\n[buffer.redis]\nurl = \"redis://127.0.0.1:{port}/0\"\noperation_timeout_ms = 500\n"
    )
}

async fn ready(relay: &TestRelay) -> (u16, serde_json::Value) {
    let r = relay
        .http
        .get(format!("{}/readyz", relay.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn redis_dir(tag: &str) -> PathBuf {
    temp_dir(tag)
}

#[tokio::test]
async fn a_relay_started_while_redis_is_down_answers_503_and_connects_when_it_comes_up() {
    let port = free_port();
    let relay = TestRelay::start("outage-start", "", &redis_on(port)).await;
    let (status, body) = ready(&relay).await;
    assert_eq!(
        (status, &body["buffer"]),
        (503, &serde_json::json!(false)),
        "{body}"
    );
    assert_eq!(relay.post("shop", "{}").await.status(), 503);
    let stream = relay
        .http
        .get(format!("{}/connect/stream/orders/sse", relay.base))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 503, "streams are refused too");

    let dir = redis_dir("outage-start-redis");
    let _redis = PrivateRedis::start(port, &dir).await;
    assert!(
        eventually(WAIT, || async { ready(&relay).await.0 == 200 }).await,
        "the relay connected (retries 1 s doubling to 30 s)"
    );
    // The channel's queues were created on connect: a webhook is accepted and delivered.
    let id = relay.post_ok("shop", r#"{"after":"outage"}"#).await;
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let frame = ws.next_of("webhook", WAIT).await;
    assert_eq!(frame["message_id"].as_str(), Some(id.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn while_redis_is_down_ingest_answers_503_and_what_was_accepted_is_delivered_after() {
    let port = free_port();
    let dir = redis_dir("outage-mid-redis");
    let redis = PrivateRedis::start(port, &dir).await;
    let relay = TestRelay::start("outage-mid", "", &redis_on(port)).await;
    let before = relay.post_ok("shop", r#"{"n":1}"#).await;
    redis.stop();
    let refused = relay.post("shop", r#"{"n":2}"#).await;
    assert_eq!(refused.status(), 503, "never 200 and drop");
    assert!(
        eventually(WAIT, || async { ready(&relay).await.0 == 503 }).await,
        "readyz notices the outage"
    );
    let _redis = PrivateRedis::start(port, &dir).await;
    let after = {
        let mut id = None;
        for _ in 0..200 {
            let r = relay.post("shop", r#"{"n":3}"#).await;
            if r.status() == 200 {
                let v: serde_json::Value = r.json().await.unwrap();
                id = v["message_id"].as_str().map(str::to_owned);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        id.expect("ingest works again once Redis is back")
    };
    assert!(
        eventually(WAIT, || async { ready(&relay).await.0 == 200 }).await,
        "readyz recovers"
    );
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let frame = ws.next_of("webhook", WAIT).await;
        got.push(frame["message_id"].as_str().unwrap().to_owned());
    }
    got.sort();
    let mut want = vec![before, after];
    want.sort();
    assert_eq!(
        got, want,
        "exactly the two accepted messages, the refused one nowhere"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_relay_whose_rabbitmq_cannot_be_reached_starts_and_answers_503_without_leaking_r137() {
    let port = free_port();
    let relay = TestRelay::start(
        "outage-rabbitmq",
        "",
        &format!(
            "[buffer]\nbackend = \"rabbitmq\"\n[buffer.rabbitmq]\nurl = \"amqp://guest:guest@127.0.0.1:{port}/%2f\"\noperation_timeout_ms = 500\n"
        ),
    )
    .await;
    let (status, body) = ready(&relay).await;
    assert_eq!(
        (status, &body["buffer"]),
        (503, &serde_json::json!(false)),
        "{body}"
    );
    let refused = relay.post("shop", "{}").await;
    assert_eq!(refused.status(), 503, "never 200 and drop");
    // R-137: the 5xx body is a fixed text; the broker URL and its credentials stay inside.
    let text = refused.text().await.unwrap();
    for secret in [port.to_string().as_str(), "guest", "amqp", "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let ready_text = relay
        .http
        .get(format!("{}/readyz", relay.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !ready_text.contains("guest") && !ready_text.contains(&port.to_string()),
        "{ready_text}"
    );
}
