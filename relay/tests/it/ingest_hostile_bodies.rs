//! Ingest under hostile or heavy bodies, on real sockets: checks that need no body answer before
//! the body is sent, the global body memory budget refuses with `503` instead of growing, and
//! big bodies never make `/readyz` or other channels fail (R-04, R-11).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestRelay, eventually, temp_dir};

const BEARER_WEBHOOK: &str = r#"
[channels.webhooks.guarded]
data_type = "blob"
authorization = "Bearer right-token"
"#;

/// Sends `head` (request line and headers, ending in an empty line) on a new socket.
async fn send_head(relay: &TestRelay, head: &str) -> TcpStream {
    let mut socket = TcpStream::connect(relay.addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// Reads one response (head and a `Content-Length` body) within `wait`; `None` when nothing
/// complete arrived in time.
async fn read_response(socket: &mut TcpStream, wait: Duration) -> Option<(u16, String, String)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = text[end + 4..end + 4 + length].to_owned();
                return Some((status, head, body));
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn post_head(path: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/octet-stream\r\ncontent-length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn wrong_bearer_token_is_refused_before_the_body_is_sent() {
    let relay =
        TestRelay::start_with_server(temp_dir("pre-body-auth"), "", BEARER_WEBHOOK, "").await;
    let five_mib = 5 * 1024 * 1024;
    // Only the head of a 5 MiB request: the relay answers 401 without waiting for the body.
    let mut wrong = send_head(
        &relay,
        &post_head(
            "/webhook/guarded",
            five_mib,
            "authorization: Bearer wrong-token\r\n",
        ),
    )
    .await;
    let (status, head, body) = read_response(&mut wrong, Duration::from_secs(5))
        .await
        .expect("an answer before the body was sent");
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body, r#"{"detail":"Unauthorized"}"#);

    // The right token with the same head: the relay waits for the body, then stores it.
    let mut right = send_head(
        &relay,
        &post_head(
            "/webhook/guarded",
            five_mib,
            "authorization: Bearer right-token\r\n",
        ),
    )
    .await;
    assert!(
        read_response(&mut right, Duration::from_millis(500))
            .await
            .is_none(),
        "no answer before the body"
    );
    right.write_all(&vec![b'a'; five_mib]).await.unwrap();
    let (status, head, body) = read_response(&mut right, Duration::from_secs(30))
        .await
        .expect("an answer after the body");
    assert_eq!(status, 200, "{head} {body}");
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_get_503_with_retry_after_until_memory_is_free() {
    const MIB: usize = 1024 * 1024;
    let relay = TestRelay::start_with_server(
        temp_dir("body-budget"),
        &format!("max_body_bytes = {MIB}"),
        "",
        &format!("[limits]\nmax_inflight_body_bytes = {}", MIB + 256 * 1024),
    )
    .await;
    // A stalled sender holds most of the budget: 900 KiB of a declared 1 MiB.
    let mut stalled = send_head(&relay, &post_head("/webhook/shop", MIB, "")).await;
    stalled.write_all(&vec![b'x'; 900 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new body that does not fit: 503, Retry-After, JSON.
    let refused = relay
        .http
        .post(format!("{}/webhook/shop", relay.base))
        .body(vec![b'y'; 600 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        refused.text().await.unwrap(),
        r#"{"detail":"Service unavailable"}"#
    );
    // Small bodies still fit.
    assert_eq!(relay.post("shop", "{}").await.status(), 200);
    let metrics = relay
        .http
        .get(format!("{}/metrics", relay.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("webhook_relay_body_budget_refusals_total") && l.ends_with(" 1")
        ),
        "{metrics}"
    );

    // The stalled sender goes away: its memory is given back and the big body fits.
    drop(stalled);
    assert!(
        eventually(Duration::from_secs(10), || async {
            relay
                .http
                .post(format!("{}/webhook/shop", relay.base))
                .header("content-type", "application/json")
                .body(format!("\"{}\"", "z".repeat(600 * 1024)))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the budget was given back when the stalled request ended"
    );
}

#[tokio::test]
async fn big_concurrent_bodies_never_fail_readyz_or_another_channel() {
    const BULK_TOKEN: &str = "bulk-channel-token-0123456789";
    let relay = TestRelay::start_with_server(
        temp_dir("big-bodies"),
        "",
        "",
        &format!(
            "[[channels]]\nname = \"bulk\"\ntoken = \"{BULK_TOKEN}\"\n[channels.webhooks.big]\n"
        ),
    )
    .await;
    // About 4 MiB of JSON: many strings, each below the string-length limit.
    let item = format!("\"{}\"", "b".repeat(1000));
    let big = format!("[{}]", vec![item; 4000].join(","));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let http = relay.http.clone();
            let url = format!("{}/webhook/big", relay.base);
            let big = big.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(big.clone())
                        .send()
                        .await
                        .unwrap();
                    statuses.push(r.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut ready = Vec::new();
    let mut small = Vec::new();
    while !senders.iter().all(|s| s.is_finished()) {
        let r = relay
            .http
            .get(format!("{}/readyz", relay.base))
            .send()
            .await
            .unwrap();
        ready.push(r.status().as_u16());
        small.push(
            relay
                .post("shop", r#"{"small":true}"#)
                .await
                .status()
                .as_u16(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut big_statuses = Vec::new();
    for s in senders {
        big_statuses.extend(s.await.unwrap());
    }
    assert!(!ready.is_empty() && !small.is_empty());
    assert!(ready.iter().all(|s| *s == 200), "/readyz: {ready:?}");
    assert!(small.iter().all(|s| *s == 200), "small webhooks: {small:?}");
    let metrics = relay
        .http
        .get(format!("{}/metrics", relay.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let interesting: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("buffer_errors") || l.contains("budget") || l.contains("status="))
        .collect();
    assert!(
        big_statuses.iter().all(|s| *s == 200),
        "big: {big_statuses:?} {interesting:#?}"
    );
}
