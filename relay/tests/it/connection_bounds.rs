//! Connection bounds on the relay's listeners (issue: a few hundred idle sockets must not take
//! the relay offline): the header-read timeout, the connection budget with idle connections
//! giving way, health in overflow, streams counted apart, and a shutdown that does not wait for
//! clients that never finish.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TOKEN, TestRelay, temp_dir};

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// True once the relay has closed `socket` (EOF or reset), waiting at most `within`.
async fn closed_by_relay(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            // An error answer (408 and the like) before the close: keep reading.
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

async fn metric(relay: &TestRelay, line_start: &str) -> f64 {
    let text = fresh_client()
        .get(format!("{}/metrics", relay.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn silent_and_slow_header_sockets_are_closed_after_the_header_read_timeout() {
    let relay = TestRelay::start_with_server(
        temp_dir("conn-timeout"),
        "header_read_timeout_seconds = 1",
        "",
        "",
    )
    .await;
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    let mut slow = TcpStream::connect(relay.addr).await.unwrap();
    slow.write_all(b"POST /webhook/shop HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        // One header line every 300 ms: never a complete header within the timeout.
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .write_all(format!("X-Slow-{i}: {i}\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        closed_by_relay(&mut slow, Duration::from_secs(1)).await
    });
    assert!(
        closed_by_relay(&mut silent, Duration::from_secs(5)).await,
        "a socket that sends nothing must be closed"
    );
    assert!(
        trickle.await.unwrap(),
        "a header sent a line at a time must be cut off"
    );
    // A keep-alive connection that goes quiet after a request is closed the same way.
    let mut kept = TcpStream::connect(relay.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_relay(&mut kept, Duration::from_secs(5)).await);
    assert!(
        metric(
            &relay,
            "webhook_relay_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn idle_sockets_give_way_to_a_sender_at_the_connection_limit() {
    let relay = TestRelay::start("conn-evict", "", "[limits]\nmax_connections_total = 20\n").await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    // Give the relay a moment to admit them all, then ten more arrive: each takes the place of
    // the longest idle one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut later = Vec::new();
    for _ in 0..10 {
        later.push(TcpStream::connect(relay.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = fresh_client();
    for i in 0..30 {
        let r = client
            .post(format!("{}/webhook/shop", relay.base))
            .header("content-type", "application/json")
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "webhook {i}");
    }
    let mut let_go = 0;
    for socket in &mut idle {
        if closed_by_relay(socket, Duration::from_millis(200)).await {
            let_go += 1;
        }
    }
    assert!(
        let_go >= 10,
        "only {let_go} of the first idle sockets gave way"
    );
    assert!(
        metric(
            &relay,
            "webhook_relay_connections_closed_total{reason=\"evicted\"}"
        )
        .await
            >= 10.0
    );
}

#[tokio::test]
async fn health_answers_in_overflow_while_every_connection_is_busy() {
    let relay =
        TestRelay::start("conn-overflow", "", "[limits]\nmax_connections_total = 2\n").await;
    // Two connections in the middle of a request: a body announced and never sent.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        s.write_all(
            b"POST /webhook/shop HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = fresh_client();
    let ready = client
        .get(format!("{}/readyz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let refused = client
        .post(format!("{}/webhook/shop", relay.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["connection"], "close");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Too many connections")
    );
    drop(busy);
    // Once they are gone, webhooks are accepted again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.post_ok("shop", "{}").await;
    assert!(
        metric(
            &relay,
            "webhook_relay_connections_refused_total{reason=\"overflow\"}"
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn connector_streams_cannot_take_the_requests_share() {
    let relay = TestRelay::start(
        "conn-streams",
        "",
        "[limits]\nmax_connections_total = 6\nmax_stream_connections = 1\n",
    )
    .await;
    let client = fresh_client();
    let sse = |client: &reqwest::Client| {
        client
            .get(format!("{}/connect/stream/orders/sse", relay.base))
            .bearer_auth(TOKEN)
            .send()
    };
    let first = sse(&client).await.unwrap();
    assert_eq!(first.status(), 200);
    let second = sse(&client).await.unwrap();
    assert_eq!(second.status(), 503);
    let body: serde_json::Value = second.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Too many connector streams"),
        "{body}"
    );
    // Webhooks still get in while the stream share is spent.
    relay.post_ok("shop", "{}").await;
    // The stream's slot is free again once it ends.
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        let r = sse(&client).await.unwrap();
        if r.status() == 200 {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the stream slot was never released");
}

#[tokio::test]
async fn shutdown_ends_within_its_bound_while_a_client_holds_a_half_sent_request() {
    let mut relay = TestRelay::start_with_server(
        temp_dir("conn-shutdown"),
        "header_read_timeout_seconds = 60\nbody_read_timeout_seconds = 60",
        "",
        "",
    )
    .await;
    relay.post_ok("shop", "{}").await;
    // Half a header, and a request whose body never comes: neither finishes by itself.
    let mut half_header = TcpStream::connect(relay.addr).await.unwrap();
    half_header
        .write_all(b"POST /webhook/shop HTTP/1.1\r\nHost: re")
        .await
        .unwrap();
    let mut half_body = TcpStream::connect(relay.addr).await.unwrap();
    half_body
        .write_all(b"POST /webhook/shop HTTP/1.1\r\nHost: relay\r\nContent-Length: 10\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.shutdown.cancel();
    let join = relay.join.take().unwrap();
    // shutdown_grace_seconds = 1 in the test relay; the bound adds a few seconds, far from the
    // 60 s these clients would otherwise hold it.
    tokio::time::timeout(Duration::from_secs(15), join)
        .await
        .expect("the relay must stop within its shutdown bound")
        .unwrap()
        .unwrap();
    assert!(closed_by_relay(&mut half_header, Duration::from_secs(1)).await);
    assert!(closed_by_relay(&mut half_body, Duration::from_secs(1)).await);
}
