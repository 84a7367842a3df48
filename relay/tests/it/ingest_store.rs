//! Ingest with durable accept against a real in-process relay on the embedded store.

use std::time::Duration;

use crate::support::Store;
use crate::support::TestRelay;

#[tokio::test]
async fn full_queues_refuse_with_429_and_retry_after_r02() {
    full_queues_refuse_with_429_and_retry_after_r02_on(Store::Embedded).await;
}

pub(crate) async fn full_queues_refuse_with_429_and_retry_after_r02_on(store: Store) {
    let relay = TestRelay::start_on(store, "r02", "max_queue_size = 3", "").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = relay.post("shop", &format!(r#"{{"i":{i}}}"#)).await;
        if r.status() == 429 {
            assert_eq!(r.headers().get("retry-after").unwrap(), "5");
            assert_eq!(
                r.text().await.unwrap(),
                r#"{"detail":"Queue full, retry later"}"#
            );
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    assert_eq!(relay.status().await["stats"]["messages_queued"], 3);
}

#[tokio::test]
async fn the_queue_limit_is_atomic_under_concurrency_r03() {
    the_queue_limit_is_atomic_under_concurrency_r03_on(Store::Embedded).await;
}

pub(crate) async fn the_queue_limit_is_atomic_under_concurrency_r03_on(store: Store) {
    let relay = TestRelay::start_on(store, "r03", "max_queue_size = 10", "").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = relay.http.clone();
        let url = format!("{}/webhook/shop", relay.base);
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(format!(r#"{{"i":{i}}}"#))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(relay.status().await["stats"]["messages_queued"], 10);
}

#[tokio::test]
async fn declared_and_streamed_bodies_over_the_limit_get_413_and_store_nothing_r04() {
    let relay = TestRelay::start("r04", "max_message_size = 100", "").await;
    let ok = relay
        .post("shop", &format!(r#"{{"p":"{}"}}"#, "x".repeat(90)))
        .await;
    assert_eq!(ok.status(), 200, "just under the limit passes");
    let over = relay
        .post("shop", &format!(r#"{{"p":"{}"}}"#, "x".repeat(100)))
        .await;
    assert_eq!(over.status(), 413);
    assert_eq!(
        over.text().await.unwrap(),
        r#"{"detail":"Payload too large: 108 bytes (max: 100)"}"#
    );
    // A chunked body (no Content-Length) is cut off while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 10])).collect();
    let streamed = relay
        .http
        .post(format!("{}/webhook/shop", relay.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert_eq!(
        streamed.text().await.unwrap(),
        r#"{"detail":"Payload too large: more than 100 bytes (max: 100)"}"#
    );
    assert_eq!(
        relay.status().await["stats"]["messages_queued"],
        1,
        "R-11: rejected requests store nothing"
    );
}

#[tokio::test]
async fn rejected_requests_change_nothing_and_consume_no_sequence_r11() {
    let relay = TestRelay::start("r11", "", "").await;
    relay.post_ok("shop", "{}").await;
    assert_eq!(relay.post("shop", "{not json").await.status(), 400);
    assert_eq!(relay.post("unknown-hook", "{}").await.status(), 404);
    assert_eq!(relay.post("admin", "{}").await.status(), 400);
    let form = relay
        .http
        .post(format!("{}/webhook/shop", relay.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(false, &[]).await;
    ws.next_of("connected", Duration::from_secs(10)).await;
    let a = ws.next_of("webhook", Duration::from_secs(10)).await;
    let b = ws.next_of("webhook", Duration::from_secs(10)).await;
    assert_eq!(
        (a["sequence"].as_u64(), b["sequence"].as_u64()),
        (Some(1), Some(2))
    );
}

#[tokio::test]
async fn webhook_id_rules_and_namespace_give_the_original_messages_r10_r16() {
    let relay = TestRelay::start("r10", "", "").await;
    let long = "a".repeat(70);
    let r = relay.post(&long, "{}").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Webhook ID too long: 70 characters (max: 64)"}"#
    );
    let r = relay
        .http
        .post(format!("{}/webhook/bad.ns/shop", relay.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Invalid namespace format"}"#
    );
    let r = relay
        .http
        .post(format!("{}/webhook/team-a/shop", relay.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", Duration::from_secs(10)).await;
    let w = ws.next_of("webhook", Duration::from_secs(10)).await;
    assert_eq!(
        (w["webhook_id"].as_str(), w["namespace"].as_str()),
        (Some("shop"), Some("team-a"))
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let relay = TestRelay::start("routes", "", "").await;
    let r = relay
        .http
        .get(format!("{}/nope", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
    assert_eq!(r.text().await.unwrap(), r#"{"detail":"Not Found"}"#);
    let r = relay
        .http
        .get(format!("{}/webhook/shop", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = relay
        .http
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
    let r = relay
        .http
        .get(format!("{}/readyz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
